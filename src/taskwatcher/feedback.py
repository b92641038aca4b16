"""The feedback file format: its grammar, an incremental reader, the writer, the launcher's hold.

A feedback file is a log of ``[KEY]VALUE`` lines; replaying it gives a dict of
strings (SPEC, "Feedback file format"). The reader keeps a byte offset, the
file's identity and a fingerprint of the bytes before the offset, so that each
look reads only what was appended since the last and still sees a file
rewritten in place. A launcher holds its task's file name for the task's life
(:class:`FeedbackName`), so that two databases sharing a folder never take
each other's file for a stale one.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import stat

from .errors import FeedbackFileError, FeedbackNotAFile
from .logs import Logger

log = Logger(__name__)

# A key: no white space, no brackets, not starting with a digit.
_KEY = re.compile(r"(?!\d)[^\s\[\]]+")
# Any "[...]..." line, loosely: apply_text checks keys and strips values per key, not per line.
# It is matched from the newline before it, in "\n" + text (what "^" with re.M would match): a
# pattern that starts with one literal character is searched for with a scan for that character,
# while one that starts with "^" is tried at every position (10 % of parse's instructions).
_BRACKET_LINE = re.compile(r"\n[^\S\n]*\[([^\]\n]*)\]([^\n]*)")
# Only the key of each such line: one string a line, and the rest of the line is not scanned.
_BRACKET_KEY = re.compile(r"\n[^\S\n]*\[([^\]\n]*)\]")
# Past this many keys in one block, each key's last line is not searched for from the end (a
# search per key would read the block once per key) but taken from one pass over every line.
_FEW_KEYS = 16
_SAMPLE = 1 << 16  # characters of a block whose keys are counted before the rest's
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
    of the rest, the last value of each key is kept (:func:`_last_values`); then,
    once per key, invalid keys are dropped, values are
    stripped as their line would have been, and a key whose last value is empty
    is removed. Under ``--debug`` each line goes through :func:`apply_line`,
    which says why a line is ignored.
    """
    if log.debugging():
        for lineno, line in enumerate(text.split("\n"), first_line):
            apply_line(data, line, lineno)
        return
    collecting = gc.isenabled()
    # The cyclic garbage collector is kept out of findall: the strings it makes hold no
    # cycles, yet their number sets off a collection every 700, each walking them (5 % of parse).
    gc.disable()
    try:
        last = _last_values("\n" + text, data)
    finally:
        if collecting:
            gc.enable()
    for key, value in last.items():
        if not _KEY.fullmatch(key):
            continue
        value = value.rstrip()
        if value:
            data[key] = value
        else:
            data.pop(key, None)


def _last_values(text: str, data: dict[str, str]) -> dict[str, str]:
    """Each key's value on its last "[key]value" line of ``text`` (which starts with a newline),
    in the order the keys first appear; what precedes a clearing line ("[]") is dropped, and
    ``data`` cleared, as that line would.

    A feedback file names a few keys over and over (``[progress]41``, ``[progress]42``...):
    the keys are found first, one string a line, and then each key's last line is found
    by searching back from the end, where it usually is, rather than making a pair of
    strings of every line. A block of many keys is read the plain way.
    """
    keys = _keys(text)
    many = len(keys) > _FEW_KEYS  # then the keys were perhaps counted in part of the text only
    if many or "" in keys:  # a clearing line: only what follows the last one counts
        text = "\n" + _after_last_clear(data, text[1:])
        if not many:
            keys = _keys(text)
    if many:
        return dict(_BRACKET_LINE.findall(text))
    return {key: _last_value(text, key) for key in keys if _KEY.fullmatch(key)}


def _keys(text: str) -> dict[str, None]:
    """The keys of ``text``'s bracket lines in order, or more than _FEW_KEYS of them: its first
    _SAMPLE bytes are looked at first, so that a block of many keys is read twice only there."""
    cut = text.find("\n", _SAMPLE)  # a line's start: no match spans it
    if cut < 0:
        return dict.fromkeys(_BRACKET_KEY.findall(text))
    keys = dict.fromkeys(_BRACKET_KEY.findall(text, 0, cut))
    if len(keys) <= _FEW_KEYS:
        keys.update(dict.fromkeys(_BRACKET_KEY.findall(text, cut)))
    return keys


def _last_value(text: str, key: str) -> str:
    """The rest of the last line of ``text`` that starts (after white space) with ``[key]``,
    a valid key (no brackets: two of its tags never overlap); there is one such line."""
    tag = f"[{key}]"
    end = len(text)
    while True:
        pos = text.rfind(tag, 0, end)
        start = text.rfind("\n", 0, pos) + 1  # the text starts with a newline: always found
        if pos == start or text[start:pos].isspace():
            stop = text.find("\n", pos)
            return text[pos + len(tag) : None if stop < 0 else stop]
        end = pos  # inside a line, not at its start: look before it (the line's start too)


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
    """Replay a whole feedback file, its last line included even without a newline.

    This is ``taskwatcher parse``: the file the user names, followed if it is a
    link, a pipe read to its end. A task's feedback file is read with
    :func:`read_increment`, which is stricter.
    """
    try:
        with open(path, "rb") as f:
            state = FeedbackState()
            _consume(f.fileno(), state, _Prefix(), final=True)
            return state.data
    except OSError as e:
        raise FeedbackFileError(f"cannot read feedback file {os.fspath(path)}: {e.strerror}") from None


class FeedbackState:
    """Where the reader stands in one feedback file, and what it has read so far.

    ``fingerprint`` stands for the bytes before ``offset`` (see :class:`_Prefix`):
    the next look checks them against the file before reading on.
    """

    __slots__ = ("data", "dev", "fingerprint", "ino", "lines", "offset")

    # A plain class, not a dataclass: importing dataclasses costs every command ~8 ms.
    def __init__(
        self,
        dev: int = 0,
        ino: int = 0,
        offset: int = 0,
        lines: int = 0,
        data: dict[str, str] | None = None,
        fingerprint: str = "",
    ) -> None:
        self.dev, self.ino, self.offset, self.lines = dev, ino, offset, lines
        self.data: dict[str, str] = {} if data is None else data
        self.fingerprint = fingerprint

    def copy(self) -> FeedbackState:
        return FeedbackState(self.dev, self.ino, self.offset, self.lines, dict(self.data), self.fingerprint)

    def __repr__(self) -> str:
        return (
            f"FeedbackState(dev={self.dev}, ino={self.ino}, offset={self.offset}, lines={self.lines},"
            f" fingerprint={self.fingerprint!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeedbackState):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


# -- the fingerprint of what was read ------------------------------------------------------
# A file rewritten in place (`echo "[progress]$n" > "$F"`) keeps its inode and may keep or
# pass its old size: only its bytes tell it from a file appended to. Comparing every byte
# before the offset would be exact but would read the whole file at each look; the
# fingerprint covers the first HEAD bytes and the last TAIL bytes before the offset, so a
# look reads at most HEAD + TAIL old bytes. Up to HEAD + TAIL bytes read that is every byte
# (exact, but for a CRC-32 collision); beyond, a rewrite that keeps both windows byte for
# byte and changes only the middle is taken for an append (README: decisions).
# Why a matching prefix is enough, rewritten or not: the result is a function of the bytes
# alone, and the offset always follows a newline or the byte-order mark (or is the end, for
# a final look), so replaying the lines after it on the result of the bytes before it gives
# the result of the whole file. A rewrite that keeps the bytes before the offset, which no reader can tell
# from an append, therefore reads the same as reading the new file from 0.
# The file's size and mtime at the look are kept with the windows ("WINDOWS/SIZE/MTIME_NS"):
# an append always grows the file, so a file of the very size last seen whose mtime moved
# was rewritten (or touched) and is read again from 0, whatever its size. What is left to
# chance is a rewrite that also grows the file and keeps both windows byte for byte.
FINGERPRINT_HEAD = 16 << 10
FINGERPRINT_TAIL = 48 << 10


class _Prefix:
    """What the fingerprint needs of the bytes read so far: the first HEAD bytes, and the
    last TAIL bytes of those after them."""

    __slots__ = ("head", "length", "tail")

    def __init__(self, head: bytes = b"", tail: bytes = b"", length: int = 0) -> None:
        self.head, self.tail, self.length = head, tail, length

    def add(self, piece: bytes) -> None:
        self.length += len(piece)
        if len(self.head) < FINGERPRINT_HEAD:
            room = FINGERPRINT_HEAD - len(self.head)
            self.head += piece[:room]
            piece = piece[room:]
        if piece:
            self.tail = (self.tail + piece[-FINGERPRINT_TAIL:])[-FINGERPRINT_TAIL:]

    def fingerprint(self) -> str:
        import zlib  # 0.6 ms, and only a feedback read needs it

        return f"{zlib.crc32(self.head):08x}{zlib.crc32(self.tail):08x}" if self.length else ""


def _prefix_of(fd: int, offset: int) -> _Prefix:
    """The fingerprint windows of the file's first ``offset`` bytes, as they are now."""
    head = os.pread(fd, min(offset, FINGERPRINT_HEAD), 0)
    start = max(FINGERPRINT_HEAD, offset - FINGERPRINT_TAIL)
    tail = os.pread(fd, offset - start, start) if offset > start else b""
    return _Prefix(head, tail, offset)


# -- reading a task's feedback file ----------------------------------------------------------
# Never follow a link (a link planted in a shared folder would put another file's content
# into history), never block (a FIFO at the path would hang the reader), never take a
# terminal as the controlling one; and only a regular file is read.
_SAFE_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
FILE_MODE = 0o644  # less the umask: a feedback file is never writable by others, even under umask 000


def open_regular(path: str, flags: int = os.O_RDONLY, doing: str = "read") -> int | None:
    """A file descriptor on ``path`` if it is a regular file; None if there is nothing there.

    A link, FIFO, device, socket or folder is refused at once (FeedbackFileError):
    ``flags`` always get O_NOFOLLOW, O_NONBLOCK and O_NOCTTY.
    """
    try:
        fd = os.open(path, flags | _SAFE_FLAGS, FILE_MODE)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FeedbackNotAFile(f"feedback file {path} is a symbolic link: not followed") from None
        if e.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing with no reader
            raise FeedbackNotAFile(f"feedback file {path} is not a regular file: not used") from None
        raise FeedbackFileError(f"cannot {doing} feedback file {path}: {e.strerror}") from None
    mode_bits = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode_bits):
        os.close(fd)
        raise FeedbackNotAFile(f"feedback file {path} is not a regular file ({_kind(mode_bits)}): not used")
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "not a file"


def read_increment(path: str, state: FeedbackState, final: bool = False) -> bool:
    """Bring ``state`` up to what ``path`` says now, reading only what is new if it can.

    The bytes already read are checked first (inode, size, fingerprint): a file
    replaced, truncated or rewritten in place is read again from the start, so
    that ``state.data`` always equals :func:`parse_file` of the file as it is.
    Unless ``final``, a last line without a newline is left for a later look,
    since the task may still be writing it. A missing file changes nothing; one
    that is not a regular file (a FIFO, a link...) raises FeedbackFileError at
    once, never blocks. Returns whether ``state`` changed.
    """
    fd = open_regular(path)
    if fd is None:
        return False
    try:
        before = state.copy()
        st = os.fstat(fd)
        prefix = None
        windows, size, mtime = _parts(state.fingerprint)
        if (st.st_dev, st.st_ino) == (state.dev, state.ino) and st.st_size >= state.offset:
            prefix = _prefix_of(fd, state.offset)
            if prefix.fingerprint() != windows or (st.st_size == size and st.st_mtime_ns != mtime):
                prefix = None
        if prefix is None:
            if state.offset or state.data:
                log.debug("feedback file %s is new, replaced or rewritten: reading from 0", path)
            state.dev, state.ino, state.offset, state.lines, state.data = st.st_dev, st.st_ino, 0, 0, {}
            prefix = _Prefix()
        os.lseek(fd, state.offset, os.SEEK_SET)
        _consume(fd, state, prefix, final)
        # The size and mtime as they were before this read: bytes that came during it make
        # the file larger than that, which is never taken for a rewrite.
        state.fingerprint = f"{prefix.fingerprint()}/{st.st_size}/{st.st_mtime_ns}"
        return _what_was_read(state) != _what_was_read(before)
    finally:
        os.close(fd)


def _what_was_read(state: FeedbackState) -> tuple[object, ...]:
    """A state but for the size and mtime seen: a look that read nothing new changed nothing
    (a caller need not save it), even if the file grew by part of a line."""
    return state.dev, state.ino, state.offset, state.lines, state.data, _parts(state.fingerprint)[0]


def _parts(fingerprint: str) -> tuple[str, int | None, int | None]:
    """A saved fingerprint's windows, and the size and mtime seen with them (None if not kept:
    an older taskwatcher's)."""
    windows, _, seen = fingerprint.partition("/")
    size, _, mtime = seen.partition("/")
    try:
        return windows, int(size), int(mtime)
    except ValueError:
        return windows, None, None


# Bytes the reader has scanned for line ends or copied, over the process's life: a linear
# reader's cost is a small multiple of what it reads (a test holds it to that).
bytes_handled = 0


def _consume(fd: int, state: FeedbackState, prefix: _Prefix, final: bool) -> None:
    """Read ``fd`` from its position to the end into ``state``; advance the offset.

    An unfinished line is kept as a list of its blocks, joined once when its
    newline comes: each byte is scanned and copied a bounded number of times,
    however long the line.
    """
    global bytes_handled
    data, lineno, offset = state.data, state.lines, state.offset
    pending: list[bytes] = []  # the line being read, not yet ended
    first = offset == 0
    while True:
        block = os.read(fd, _BLOCK)
        if not block:
            break
        if first:
            first = False
            if block.startswith(_BOM):  # editors' byte-order mark: not data
                prefix.add(_BOM)
                block, offset = block[len(_BOM) :], len(_BOM)
        cut = block.rfind(b"\n")
        bytes_handled += len(block)
        if cut < 0:
            pending.append(block)
            continue
        lines = b"".join((*pending, block[: cut + 1])) if pending else block[: cut + 1]
        bytes_handled += len(lines)
        pending = [block[cut + 1 :]] if cut + 1 < len(block) else []
        prefix.add(lines)
        apply_text(data, lines.decode("utf-8", "replace"), lineno + 1)
        lineno += lines.count(b"\n")
        offset += len(lines)
    if final and pending:
        rest = b"".join(pending)
        bytes_handled += len(rest)
        prefix.add(rest)
        lineno += 1
        apply_line(data, rest.decode("utf-8", "replace"), lineno)
        offset += len(rest)
    state.offset, state.lines = offset, lineno


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
        fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, doing="write")
        assert fd is not None  # O_CREAT: there is a file now
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


# -- the launcher's hold on its task's file name ----------------------------------------------
class FeedbackName:
    """The right to the name ``DIR/feedback_ID.log``, held by one launcher for its task's life.

    Two databases sharing a ``--feedpath`` both hand out task 1: the name says
    nothing of which database it belongs to. The hold is an ``flock`` on a
    hidden sibling, ``DIR/.feedback_ID.log.lock``, not on the feedback file
    itself: a task may replace its file by renaming a new one over it, which
    would leave a lock on the file behind with the old inode. Whoever removes a
    feedback file (the launcher before and after its task, the command that
    archives a lost task) holds the name first; a name another process holds is
    never touched.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        folder, name = os.path.split(path)
        self.lock_path = os.path.join(folder, f".{name}.lock")
        self.fd: int | None = None

    def acquire(self, holder: str = "") -> bool:
        """Take the name if no live process holds it; False if one does. Never blocks.

        ``holder`` (no secret: anyone may read it) is written in the lock file,
        for :meth:`holder` to tell whose task holds the name.
        """
        import fcntl

        for _ in range(10):  # the lock file may be removed and made again by others meanwhile
            fd = self._open_lock_file()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if self._names(fd):
                self.fd = fd
                if holder:
                    self._write_holder(fd, holder)
                return True
            os.close(fd)  # we locked a file its holder had just removed: try the one there now
        raise FeedbackFileError(f"cannot lock {self.lock_path}: it keeps being replaced")

    def holder(self) -> str:
        """What the process holding the name wrote in the lock file ("" if nothing)."""
        try:
            fd = open_regular(self.lock_path)
        except FeedbackFileError:
            return ""
        if fd is None:
            return ""
        try:
            return os.read(fd, 256).decode("utf-8", "replace")
        finally:
            os.close(fd)

    @staticmethod
    def _write_holder(fd: int, holder: str) -> None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        except OSError:  # a lock file of another user's, opened read-only: the lock is what counts
            pass

    def _open_lock_file(self) -> int:
        for _ in range(10):
            try:
                fd = open_regular(self.lock_path, os.O_RDWR | os.O_CREAT, doing="lock")
            except FeedbackNotAFile:
                # Not a regular file (a link or FIFO planted there): no live holder made it.
                _unlink(self.lock_path, "lock file")
                continue
            except FeedbackFileError:  # another user's lock file: reading it is enough to lock it
                fd = open_regular(self.lock_path, os.O_RDONLY | os.O_CREAT, doing="lock")
            assert fd is not None  # O_CREAT: there is a file now
            return fd
        raise FeedbackFileError(f"cannot lock {self.lock_path}: it keeps being replaced")

    def _names(self, fd: int) -> bool:
        """Whether the lock file's path still names the file ``fd`` has open."""
        try:
            there = os.lstat(self.lock_path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def create_file(self) -> None:
        """Make a fresh, empty feedback file, removing whatever had the name (held: it is stale)."""
        for _ in range(10):
            _unlink(self.path, "stale feedback file")  # a link is removed, never followed
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                os.close(os.open(self.path, flags, FILE_MODE))
                return
            except FileExistsError:
                continue  # planted again between the unlink and the create
            except OSError as e:
                raise FeedbackFileError(f"cannot create feedback file {self.path}: {e.strerror}") from None
        raise FeedbackFileError(f"cannot create feedback file {self.path}: it keeps being replaced")

    def release(self, remove_file: bool = True) -> None:
        """Remove the feedback file (unless told not to) and the lock file, then let the name go."""
        if self.fd is None:
            return
        try:
            if remove_file:
                _unlink(self.path, "feedback file", quiet=True)
            _unlink(self.lock_path, "lock file", quiet=True)  # still ours: nobody else removes it unheld
        finally:
            os.close(self.fd)
            self.fd = None


def _unlink(path: str, what: str, quiet: bool = False) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if not quiet:
            raise FeedbackFileError(f"cannot remove {what} {path}: {e.strerror}") from None
        log.warning("cannot remove %s %s: %s", what, path, e.strerror)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
