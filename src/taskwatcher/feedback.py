"""The feedback file format: its grammar, and an incremental reader of a growing file.

A feedback file is a log of ``[KEY]VALUE`` lines; replaying it gives a dict of
strings (SPEC, "Feedback file format"). The reader keeps a byte offset and the
file's identity so that each look reads only what was appended since the last.
"""

from __future__ import annotations

import os
import re

from .errors import FeedbackFileError
from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import BinaryIO

log = Logger(__name__)

# A key: no white space, no brackets, not starting with a digit.
_KEY = re.compile(r"(?!\d)[^\s\[\]]+")
# Any "[...]..." line, loosely: apply_text checks keys and strips values per key, not per line.
_BRACKET_LINE = re.compile(r"^[^\S\n]*\[([^\]\n]*)\]([^\n]*)", re.M)
_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"


def apply_line(data: dict[str, str], raw: str, lineno: int = 0) -> None:
    """Apply one line of a feedback file to ``data`` (in place)."""
    line = raw.strip()
    if not line or line[0] == "#":
        return
    if line[0] != "[":
        _ignored(lineno, line, "not a [key]value line")
        return
    if line[1:2] == "]":
        data.clear()
        return
    end = line.find("]")
    if end < 0:
        _ignored(lineno, line, "no closing ]")
        return
    key = line[1:end]
    if not _KEY.fullmatch(key):
        _ignored(lineno, line, "key has white space or [, or starts with a digit")
        return
    value = line[end + 1 :]
    if value:
        data[key] = value
    else:
        data.pop(key, None)


def _ignored(lineno: int, line: str, why: str) -> None:
    if log.debugging():
        log.debug("line %d ignored (%s): %.80r", lineno, why, line)


def apply_text(data: dict[str, str], text: str, first_line: int = 1) -> None:
    """Apply every line of ``text`` to ``data`` in order, as :func:`apply_line` would.

    Done per block rather than with one Python call per line, which is what
    makes a 100 MB file quick: only what follows the last clearing line counts;
    of the rest, a regex keeps each "[key]value" line and a dict keeps the last
    value of each key; then, once per key, invalid keys are dropped, values are
    stripped as their line would have been, and a key whose last value is empty
    is removed. Under ``--debug`` each line goes through :func:`apply_line`,
    which says why a line is ignored.
    """
    if log.debugging():
        for lineno, line in enumerate(text.split("\n"), first_line):
            apply_line(data, line, lineno)
        return
    text = _after_last_clear(data, text)
    last: dict[str, str] = {}
    last.update(_BRACKET_LINE.findall(text))
    for key, value in last.items():
        if not _KEY.fullmatch(key):
            continue
        value = value.rstrip()
        if value:
            data[key] = value
        else:
            data.pop(key, None)


def _after_last_clear(data: dict[str, str], text: str) -> str:
    """If ``text`` has a line starting with "[]", clear ``data``; return the text after it."""
    pos = text.rfind("[]")
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        lead = text[start:pos].lstrip()
        if not lead or lead.startswith("[]"):  # "[]" opens the line: a later one changes nothing
            data.clear()
            end = text.find("\n", pos)
            return "" if end < 0 else text[end + 1 :]
        pos = text.rfind("[]", 0, start)
    return text


def parse_text(text: str) -> dict[str, str]:
    """Replay a whole feedback text (every line, complete or not)."""
    data: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        apply_line(data, line, lineno)
    return data


def parse_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Replay a whole feedback file, its last line included even without a newline."""
    try:
        with open(path, "rb") as f:
            state = FeedbackState()
            _consume(f, state, final=True)
            return state.data
    except OSError as e:
        raise FeedbackFileError(f"cannot read feedback file {os.fspath(path)}: {e.strerror}") from None


class FeedbackState:
    """Where the reader stands in one feedback file, and what it has read so far."""

    __slots__ = ("data", "dev", "ino", "lines", "offset")

    # A plain class, not a dataclass: importing dataclasses costs every command ~8 ms.
    def __init__(
        self, dev: int = 0, ino: int = 0, offset: int = 0, lines: int = 0, data: dict[str, str] | None = None
    ) -> None:
        self.dev, self.ino, self.offset, self.lines = dev, ino, offset, lines
        self.data: dict[str, str] = {} if data is None else data

    def __repr__(self) -> str:
        return f"FeedbackState(dev={self.dev}, ino={self.ino}, offset={self.offset}, lines={self.lines})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeedbackState):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


def read_increment(path: str, state: FeedbackState, final: bool = False) -> bool:
    """Bring ``state`` up to date with what was appended to ``path``.

    A replaced (other inode) or truncated file is read again from the start.
    Unless ``final``, a last line without a newline is left for a later look,
    since the task may still be writing it. A missing file changes nothing.
    Returns whether ``state`` changed.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed below; the open alone may fail)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise FeedbackFileError(f"cannot read feedback file {path}: {e.strerror}") from None
    with f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != (state.dev, state.ino) or st.st_size < state.offset:
            log.debug("feedback file %s is new, replaced or truncated: reading from 0", path)
            state.dev, state.ino, state.offset, state.lines = st.st_dev, st.st_ino, 0, 0
            state.data = {}
            changed = True
        else:
            changed = False
        if st.st_size == state.offset:
            return changed
        f.seek(state.offset)
        return _consume(f, state, final) or changed


def _consume(f: BinaryIO, state: FeedbackState, final: bool) -> bool:
    """Read ``f`` from its position to the end into ``state``; advance the offset."""
    data, lineno, offset = state.data, state.lines, state.offset
    pending = b""
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        if offset == 0 and not pending and block.startswith(_BOM):
            block, offset = block[len(_BOM) :], len(_BOM)  # editors' byte-order mark: not data
        block = pending + block
        cut = block.rfind(b"\n")
        if cut < 0:
            pending = block
            continue
        pending = block[cut + 1 :]
        apply_text(data, block[:cut].decode("utf-8", "replace"), lineno + 1)
        lineno += block.count(b"\n", 0, cut + 1)
        offset += cut + 1
    if final and pending:
        lineno += 1
        apply_line(data, pending.decode("utf-8", "replace"), lineno)
        offset += len(pending)
    moved = offset != state.offset
    state.offset, state.lines = offset, lineno
    return moved


# -- writing -----------------------------------------------------------------------------
FEEDBACK_VARIABLE = "TASKWATCHER_FEEDBACK"


def feedback_line(key: str | None, value: str = "") -> str:
    """One line of the format: ``[key]value``; ``[key]`` removes; key None gives ``[]`` (clear all)."""
    if key is None:
        return "[]\n"
    if not _KEY.fullmatch(key):
        raise ValueError(f"bad feedback key {key!r}: no white space or brackets, not starting with a digit")
    if "\n" in value or "\r" in value:
        raise ValueError("a feedback value is one line: it cannot hold a line break")
    return f"[{key}]{value}\n"


class Feedback:
    """Write a task's feedback file, one whole line per write (readers never see half a line).

    ``Feedback()`` writes to ``$TASKWATCHER_FEEDBACK``, which ``taskwatcher launch
    --feedpath`` gives the task. As a context manager with ``every=N`` it also
    beats a heartbeat every N seconds from a thread, for work that is busy but
    has nothing to report.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, every: float | None = None) -> None:
        if path is None:
            path = os.environ.get(FEEDBACK_VARIABLE)
            if not path:
                raise FeedbackFileError(
                    f"{FEEDBACK_VARIABLE} is not set: run this under taskwatcher launch --feedpath"
                )
        self.path = os.fspath(path)
        self.every = every
        self._stop: object = None

    def set(self, key: str, value: object) -> None:
        self._write(feedback_line(key, str(value)))

    def clear(self, key: str) -> None:
        self._write(feedback_line(key))

    def clear_all(self) -> None:
        self._write(feedback_line(None))

    def heartbeat(self) -> None:
        """A change of the file that changes no data: it only resets the timeout."""
        self._write(feedback_line("heartbeat"))

    def _write(self, line: str) -> None:
        data = line.encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise FeedbackFileError(f"cannot write feedback file {self.path}: {e.strerror}") from None
        try:
            os.write(fd, data)  # O_APPEND and one write: the line lands whole, after the others
        finally:
            os.close(fd)

    def __enter__(self) -> Feedback:
        if self.every:
            import threading

            stop = threading.Event()
            self._stop = stop

            def beat() -> None:
                while not stop.wait(self.every):
                    self.heartbeat()

            threading.Thread(target=beat, name="taskwatcher-heartbeat", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop.set()  # type: ignore[attr-defined]
            self._stop = None


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
