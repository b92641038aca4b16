"""The configuration file: where it is, what it may say, and its defaults.

It is optional and small (TOML)::

    [history]
    keep = 10000        # finished tasks kept; older ones are pruned
    max_age = "90d"     # finished tasks older than this are pruned (90, 500ms, 90s, 30m, 12h, 90d, 2w)

    [log]
    max = "8M"          # each task's log keeps the last this-many bytes

    [database]
    db = "postgresql://tw@dbhost/tasks"   # the database when neither --db nor $TASKWATCHER_DB says
    [hooks]
    on_end = "notify-send \"$TASKWATCHER_NAME ended: $TASKWATCHER_TERMERROR\""  # after every end
    on_failure = "mail -s failed me < $TASKWATCHER_LOGFILE"  # after an end that is not exit 0
    timeout = "60s"     # a hook still running then is stopped

It is looked for at ``$TASKWATCHER_CONFIG``, else
``$XDG_CONFIG_HOME/taskwatcher/config.toml`` (``~/.config/...``). Reading it is
a stat when it does not exist: commands that do not need it never open it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from .errors import ConfigError

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

MAX_SECONDS = 1e9  # about 31 years: any longer is a typo, and overflows system timeouts
MAX_SIZE = 2**63 - 1  # bytes: what a file offset can hold
DURATION_FORMS = "seconds, or a number with a unit: 500ms, 90s, 30m, 2h, 1d, 2w"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A plain decimal number (no sign, no "inf" or "nan", as float() would take) and a unit.
_DURATION = re.compile(r"(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(ms|s|m|h|d|w)?\Z")
_SIZES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
MAX_CONFIG_BYTES = 1024 * 1024  # a configuration is a few lines: anything larger is a mistake


class Config:
    """What the configuration file sets; None where it says nothing."""

    __slots__ = ("db", "hook_timeout", "keep", "log_max", "max_age", "on_end", "on_failure", "path")

    def __init__(
        self,
        keep: int | None = None,
        max_age: float | None = None,
        log_max: int | None = None,
        path: str | None = None,
        db: str | None = None,
        on_end: str | None = None,
        on_failure: str | None = None,
        hook_timeout: float | None = None,
    ) -> None:
        self.keep, self.max_age, self.log_max, self.path = keep, max_age, log_max, path
        self.db = db
        self.on_end, self.on_failure, self.hook_timeout = on_end, on_failure, hook_timeout

    @property
    def prunes(self) -> bool:
        return self.keep is not None or self.max_age is not None


def config_path() -> str:
    explicit = os.environ.get("TASKWATCHER_CONFIG")
    if explicit:
        return explicit
    from .store.sqlite import xdg_base

    base = xdg_base("XDG_CONFIG_HOME", ".config")
    return os.path.join(base, "taskwatcher", "config.toml")


def load(path: str | None = None) -> Config:
    """The configuration; an empty one if there is no file."""
    named = path or os.environ.get("TASKWATCHER_CONFIG")
    path = path or config_path()
    try:
        raw = _read_small_file(path)
    except FileNotFoundError:
        if named:  # a file named on purpose and not there is a mistake, not "no configuration"
            raise ConfigError(f"configuration file {path}: no such file") from None
        return Config(path=path)
    except OSError as e:
        raise ConfigError(f"configuration file {path}: cannot read it: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"configuration file {path}: {e}") from None
    data = plain_toml(text)
    if data is None:  # anything beyond the plain lines: TOML's own parser, and its errors
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration file {path}: {e}") from None
    return _read(data, path)


# The lines a configuration file holds in practice: ``[section]``, ``key = "text"``,
# ``key = 'text'``, ``key = 123``, comments and blank lines, with TOML's whitespace.
_PLAIN_LINE = re.compile(
    r"[ \t]*(?:"
    r"\[[ \t]*(?P<table>[A-Za-z0-9_-]+)[ \t]*\]"
    r"|(?P<key>[A-Za-z0-9_-]+)[ \t]*=[ \t]*"
    r"(?:\"(?P<basic>[^\"\\\x00-\x08\x0a-\x1f\x7f]*)\"|'(?P<literal>[^'\x00-\x08\x0a-\x1f\x7f]*)'"
    r"|(?P<int>0|[1-9][0-9]*))"
    r")?[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?\Z"
)


def plain_toml(text: str) -> dict[str, Any] | None:
    """The file as ``tomllib.loads`` reads it, if every line is a plain one; else None.

    Why: importing ``tomllib`` costs 35 M instructions (a quarter of a launch), paid
    by every launch and archive where a configuration file exists. A line of any other
    form (dotted or quoted keys, escapes, floats, arrays, a table or key given twice)
    gives None, and the caller asks ``tomllib``, which also words every error.
    """
    data: dict[str, Any] = {}
    table = data
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.endswith("\r") and i < len(lines) - 1:  # CRLF; a CR not before a newline is not TOML
            line = line[:-1]
        match = _PLAIN_LINE.match(line)
        if match is None:
            return None
        name, key = match.group("table"), match.group("key")
        if name is not None:
            if name in data:
                return None
            table = data[name] = {}
        elif key is not None:
            if key in table:
                return None
            basic, literal, number = match.group("basic", "literal", "int")
            table[key] = int(number) if number is not None else basic if basic is not None else literal
    return data


def _read_small_file(path: str) -> bytes:
    """The file's bytes, if it is a regular file of at most MAX_CONFIG_BYTES.

    Opened non-blocking (a FIFO named by TASKWATCHER_CONFIG must not hang every
    command) and checked with fstat after opening; read with a bound (/dev/zero
    never ends)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"configuration file {path}: not a regular file")
        raw = os.read(fd, MAX_CONFIG_BYTES + 1)
        while len(raw) <= MAX_CONFIG_BYTES and (more := os.read(fd, MAX_CONFIG_BYTES + 1 - len(raw))):
            raw += more
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"configuration file {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    return raw


def _read(data: dict, path: str) -> Config:
    known = {
        "history": {"keep", "max_age"},
        "log": {"max"},
        "database": {"db"},
        "hooks": {"on_end", "on_failure", "timeout"},
    }
    for section, values in data.items():
        if section not in known or not isinstance(values, dict):
            raise ConfigError(f"configuration file {path}: unknown section [{section}]")
        for key in values:
            if key not in known[section]:
                raise ConfigError(f"configuration file {path}: unknown key {key!r} in [{section}]")
    history, log, hooks = data.get("history", {}), data.get("log", {}), data.get("hooks", {})
    try:
        keep = history.get("keep")
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
            raise ValueError(f"[history] keep must be a whole number of rows, not {keep!r}")
        max_age = _setting("[history] max_age", history.get("max_age"), parse_age)
        log_max = _setting("[log] max", log.get("max"), parse_size)
        db = data.get("database", {}).get("db")
        if db is not None and (not isinstance(db, str) or not db):
            raise ValueError(f"[database] db must be a path or a postgresql:// URL, not {db!r}")
        hook_timeout = _setting("[hooks] timeout", hooks.get("timeout"), parse_age)
        for key in ("on_end", "on_failure"):
            if not isinstance(hooks.get(key, ""), str):
                raise ValueError(f"[hooks] {key} must be a shell command (a string)")
    except ValueError as e:
        raise ConfigError(f"configuration file {path}: {e}") from None
    on_end, on_failure = hooks.get("on_end") or None, hooks.get("on_failure") or None
    return Config(keep, max_age, log_max, path, db, on_end, on_failure, hook_timeout)


def _setting(name: str, value: object, parse: Callable[[object], Any]) -> Any:
    """``parse(value)``, None for None; a bad value's error names the setting."""
    try:
        return None if value is None else parse(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def parse_duration(value: object) -> float:
    """Seconds, from a number or a text: ``90``, ``0.5``, ``500ms``, ``90s``, ``30m``, ``2h``,
    ``1d``, ``2w``. Zero is allowed (a grace of 0); at most :data:`MAX_SECONDS`.

    The one parser of every duration and age taskwatcher reads: the CLI's options
    (``--timeout``, ``--grace``, ``--ttl``, ``--max-age``, ``--since 2h``) and this file's.
    Raises ValueError with a one-line reason.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds, text = float(value), repr(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        number, unit = match.groups()
        seconds, text = float(number) * _UNITS[unit or "s"], repr(value)
    else:
        raise ValueError(f"not a duration: {value!r} ({DURATION_FORMS})")
    if seconds != seconds or seconds < 0:  # NaN, or a negative number given as a number
        raise ValueError(f"not a duration: {text} ({DURATION_FORMS})")
    if seconds > MAX_SECONDS:
        raise ValueError(f"too long: {text} (at most {MAX_SECONDS:.0e} seconds, about 31 years)")
    return seconds


def parse_age(value: object) -> float:
    """A duration that must be more than 0 (``[history] max_age``, ``--max-age``)."""
    seconds = parse_duration(value)
    if not seconds > 0:
        raise ValueError(f"an age must be more than 0 seconds, not {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes, from a number or a text such as ``512K``, ``8M``, ``1G``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value)
    elif isinstance(value, str) and value[-1:].upper() in _SIZES and _is_number(value[:-1]):
        size = float(value[:-1]) * _SIZES[value[-1].upper()]
    elif isinstance(value, str) and _is_number(value):
        size = float(value)
    else:
        raise ValueError(f"not a size in bytes: {value!r} (512K, 8M, 1G...)")
    if size > MAX_SIZE:  # compared as a float: 99999999999G must not overflow first
        raise ValueError(f"too large: {value!r} (at most {MAX_SIZE} bytes)")
    if size < 1:
        raise ValueError(f"a size must be at least 1 byte, not {value!r}")
    return int(size)


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
