"""The configuration file: where it is, what it may say, and its defaults.

It is optional and small (TOML)::

    [history]
    keep = 10000        # finished tasks kept; older ones are pruned
    max_age = "90d"     # finished tasks older than this are pruned (s, m, h, d, w)

    [log]
    max = "8M"          # each task's log keeps the last this-many bytes

It is looked for at ``$TASKWATCHER_CONFIG``, else
``$XDG_CONFIG_HOME/taskwatcher/config.toml`` (``~/.config/...``). Reading it is
a stat when it does not exist: commands that do not need it never open it.
"""

from __future__ import annotations

import os

from .errors import TaskwatcherError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class ConfigError(TaskwatcherError):
    """The configuration file cannot be read or says something taskwatcher cannot use."""

    exit_code = 1


class Config:
    """What the configuration file sets; None where it says nothing."""

    __slots__ = ("keep", "log_max", "max_age", "path")

    def __init__(
        self,
        keep: int | None = None,
        max_age: float | None = None,
        log_max: int | None = None,
        path: str | None = None,
    ) -> None:
        self.keep, self.max_age, self.log_max, self.path = keep, max_age, log_max, path

    @property
    def prunes(self) -> bool:
        return self.keep is not None or self.max_age is not None


def config_path() -> str:
    explicit = os.environ.get("TASKWATCHER_CONFIG")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "taskwatcher", "config.toml")


def load(path: str | None = None) -> Config:
    """The configuration; an empty one if there is no file."""
    path = path or config_path()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return Config(path=path)
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file {path}: {e.strerror}") from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"configuration file {path}: {e}") from None
    return _read(data, path)


def _read(data: dict, path: str) -> Config:
    known = {"history": {"keep", "max_age"}, "log": {"max"}}
    for section, values in data.items():
        if section not in known or not isinstance(values, dict):
            raise ConfigError(f"configuration file {path}: unknown section [{section}]")
        for key in values:
            if key not in known[section]:
                raise ConfigError(f"configuration file {path}: unknown key {key!r} in [{section}]")
    history, log = data.get("history", {}), data.get("log", {})
    try:
        keep = history.get("keep")
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
            raise ValueError(f"[history] keep must be a whole number of rows, not {keep!r}")
        max_age = None if history.get("max_age") is None else parse_age(history["max_age"])
        log_max = None if log.get("max") is None else parse_size(log["max"])
    except ValueError as e:
        raise ConfigError(f"configuration file {path}: {e}") from None
    return Config(keep, max_age, log_max, path)


def parse_age(value: object) -> float:
    """Seconds, from a number or a text such as ``90s``, ``30m``, ``12h``, ``90d``, ``4w``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value[-1:] in _UNITS and _is_number(value[:-1]):
        seconds = float(value[:-1]) * _UNITS[value[-1]]
    elif isinstance(value, str) and _is_number(value):
        seconds = float(value)
    else:
        raise ValueError(f"not an age: {value!r} (seconds, or 90s, 30m, 12h, 90d, 4w)")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"an age must be more than 0 seconds, not {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes, from a number or a text such as ``512K``, ``8M``, ``1G``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and value[-1:].upper() in _SIZES and _is_number(value[:-1]):
        size = int(float(value[:-1]) * _SIZES[value[-1].upper()])
    elif isinstance(value, str) and _is_number(value):
        size = int(float(value))
    else:
        raise ValueError(f"not a size in bytes: {value!r} (512K, 8M, 1G...)")
    if not 1 <= size <= 2**63 - 1:
        raise ValueError(f"a size must be at least 1 byte, not {value!r}")
    return size


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
