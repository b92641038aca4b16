"""A task's output: captured from the task, kept in a capped log file, relayed to the terminal.

The task's stdout and stderr are pipes (or, where the launcher's own stream is a
terminal, one pseudo-terminal, so that the task still line-buffers and colours its
output as on a terminal). The launcher reads them in its poll loop and writes what
comes to the task's log file and, in the foreground, to its own stdout/stderr.

The log keeps the tail: once the file reaches half the cap it is renamed to
``FILE.1`` (replacing the older half) and a new ``FILE`` is started, so a chatty
task never holds more than the cap on disk. Readers print ``FILE.1`` then ``FILE``.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import BinaryIO

DEFAULT_LOG_MAX = 8 * 2**20  # bytes kept per task: two halves of 4 MiB
CHUNK = 65536  # bytes read from a file at a time
PIPE_SIZE = 1 << 20  # bytes the task's pipes hold, and read from them at a time
TERMINAL_BACKLOG = 1 << 20  # bytes waiting for a slow terminal before the task is made to wait
PIPE_BUF = select.PIPE_BUF  # a pipe that polls writable takes this much without blocking


def older_half(path: str) -> str:
    return path + ".1"


class LogFile:
    """The task's log: appended to, and rotated at half the cap when it is a regular file."""

    def __init__(self, path: str, cap: int = DEFAULT_LOG_MAX, fresh: bool = False) -> None:
        """``fresh``: the file is this task's alone (the default path), so an old one is replaced."""
        self.path, self.half = path, max(1, cap // 2)
        # Never world-writable, whatever the umask (a planted symlink would redirect the output).
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        if fresh:  # ids start again at 1 after --initialize: an old task_1.log is not this task's
            remove_log(path)
        self.fd = self._open()
        st = os.fstat(self.fd)
        # /dev/null or a fifo given as --log is written to, never renamed.
        self.rotates = stat.S_ISREG(st.st_mode)
        self.size = st.st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        if self.rotates and len(view) > 2 * self.half:
            view = view[-2 * self.half :]  # the rest would be rotated away at once
        while view:
            if self.rotates and self.size >= self.half:
                self._rotate()
            piece = view[: self.half - self.size] if self.rotates else view
            n = os.write(self.fd, piece)
            view = view[n:]
            self.size += n

    def _rotate(self) -> None:
        os.replace(self.path, older_half(self.path))
        os.close(self.fd)
        self.fd = self._open()
        self.size = 0

    def close(self) -> None:
        os.close(self.fd)


class _Sink:
    """The launcher's stdout or stderr, written to without ever blocking the launcher.

    A pipe or a terminal is written through a file description of our own, opened
    non-blocking (setting O_NONBLOCK on fd 1 itself would change it for every
    process sharing it). A regular file or /dev/null never makes anyone wait on a
    reader, so it is written as is; anything else (a socket) gets what select()
    says it takes, PIPE_BUF at a time.
    """

    def __init__(self, fd: int) -> None:
        self.target, self.fd, self.mode = fd, fd, "select"
        try:
            kind = os.fstat(fd).st_mode
        except OSError:
            return
        if stat.S_ISREG(kind) or (stat.S_ISCHR(kind) and not _isatty(fd)):
            self.mode = "plain"
        elif stat.S_ISFIFO(kind) or stat.S_ISCHR(kind):
            try:
                self.fd = os.open(
                    f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
                )
                self.mode = "nonblocking"
            except OSError:  # no /proc, or a pipe without a reader (ENXIO)
                pass

    def write(self, data: bytearray) -> int:
        """Write what the sink takes now; the bytes taken (0 if none). OSError if it is gone."""
        if self.mode == "plain":
            return os.write(self.fd, data)
        if self.mode == "nonblocking":
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                return 0
        if not select.select([], [self.fd], [], 0)[1]:
            return 0
        return os.write(self.fd, memoryview(data)[:PIPE_BUF])

    def close(self) -> None:
        if self.fd != self.target:
            os.close(self.fd)
            self.fd = self.target


class _Stream:
    """One readable end from the task, and where its bytes go besides the log."""

    def __init__(self, fd: int, terminal: int | None) -> None:
        self.fd = fd
        self.sink = None if terminal is None else _Sink(terminal)
        self.backlog = bytearray()  # read from the task, not yet taken by the terminal
        self.open = True


class Relay:
    """Copies the task's output to the log and, in the foreground, to the launcher's stdout/stderr.

    It lives in the launcher's poll loop: ``register`` its fds, hand it the events
    of those fds, ``drain`` it once the task's processes are gone. A terminal that
    does not keep up gets a backlog of up to 1 MiB, then the task is made to wait
    (its writes block), exactly as if it wrote to that terminal itself; the
    launcher never blocks on it, so timeouts and signals are still handled.
    """

    def __init__(self, log: LogFile | None, closed: frozenset[int] = frozenset()) -> None:
        """``closed``: which of the launcher's fds 0-2 were closed when it started."""
        self.log, self.closed = log, closed
        self.streams: list[_Stream] = []
        self.poller: select.poll | None = None
        self.child_fds: list[int] = [0, 1, 2]  # the task's stdin, stdout, stderr
        self.terminal: int | None = None  # the task's pseudo-terminal (slave), if it has one
        self._to_close: list[int] = []

    # -- setting up, before the fork --------------------------------------------------
    def capture(self, foreground: bool) -> list[int]:
        """Make the task's stdout and stderr; return its stdin, stdout, stderr fds.

        Detached: stdin is /dev/null and both streams are one pipe to the log.
        Foreground: stdin is the launcher's; a stream whose launcher side is a
        terminal goes through a pseudo-terminal (one for both, if both are), the
        other through a pipe, and each is relayed to the launcher's own.
        """
        is_open = {target: target not in self.closed for target in (0, 1, 2)}
        if not foreground:
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            r, w = os.pipe2(os.O_CLOEXEC)
            self._add(r, None)
            self.child_fds = [stdin, w, w]
            self._to_close = [stdin, w]
            return self.child_fds
        fds = [0]
        pty_slave = None
        for target in (1, 2):
            if is_open[target] and _isatty(target):
                if pty_slave is None:
                    master, pty_slave = _open_pty(target)
                    self.terminal = pty_slave
                    self._add(master, target)
                    self._to_close.append(pty_slave)
                fds.append(pty_slave)
            else:
                r, w = os.pipe2(os.O_CLOEXEC)
                self._add(r, target if is_open[target] else None)
                self._to_close.append(w)
                fds.append(w)
        self.child_fds = fds
        return fds

    def _add(self, fd: int, terminal: int | None) -> None:
        os.set_blocking(fd, False)
        _widen_pipe(fd)
        self.streams.append(_Stream(fd, terminal))

    def child_started(self) -> None:
        """The task holds its ends now: ours are closed, so that its exit gives us end of file."""
        for fd in self._to_close:
            os.close(fd)
        self._to_close = []
        self.terminal = None

    def resize_terminal(self) -> None:
        """Give the task's pseudo-terminal the size of the launcher's terminal (after SIGWINCH)."""
        for s in self.streams:
            if s.sink is not None and _isatty(s.fd):
                _copy_window_size(s.sink.target, s.fd)

    # -- in the poll loop ---------------------------------------------------------------
    def register(self, poller: select.poll) -> None:
        self.poller = poller
        for s in self.streams:
            poller.register(s.fd, select.POLLIN)

    def readable_fds(self) -> list[int]:
        return [s.fd for s in self.streams if s.open]

    def owns(self, fd: int) -> bool:
        return any(s.fd == fd or (s.sink is not None and s.sink.fd == fd) for s in self.streams)

    def handle(self, fd: int, events: int) -> None:
        for s in self.streams:
            if s.fd == fd and s.open:
                self._read(s)
            if s.sink is not None and s.sink.fd == fd and s.backlog:
                self._flush(s)
        self._update_registrations()

    def _read(self, s: _Stream) -> bool:
        """Read what is there; False once the task's end is closed (or nothing more comes now)."""
        try:
            data = os.read(s.fd, PIPE_SIZE)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: a pseudo-terminal whose last writer has gone
                raise
            data = b""
        if not data:
            self._close(s)
            return False
        if self.log is not None:
            try:
                self.log.write(data)
            except OSError as e:
                self._log_failed(e)
        if s.sink is not None:
            s.backlog += data
            self._flush(s)
        return True

    def _flush(self, s: _Stream) -> None:
        """Write to the terminal only what it takes without blocking the launcher."""
        assert s.sink is not None
        while s.backlog:
            try:
                n = s.sink.write(s.backlog)
            except OSError:
                # The reader left (| head) or the stream is closed: the task is told so as
                # if it wrote there itself (its next write fails with EPIPE / SIGPIPE).
                self._drop_sink(s)
                self._close(s)
                return
            if not n:
                return
            del s.backlog[:n]

    def _drop_sink(self, s: _Stream) -> None:
        if s.sink is None:
            return
        if self.poller is not None:
            try:
                self.poller.unregister(s.sink.fd)
            except KeyError:
                pass
        s.sink.close()
        s.sink, s.backlog = None, bytearray()

    def _update_registrations(self) -> None:
        if self.poller is None:
            return
        for s in self.streams:
            if s.open:
                # A full backlog stops reading: the task's own writes then wait.
                self.poller.modify(s.fd, 0 if len(s.backlog) >= TERMINAL_BACKLOG else select.POLLIN)
            if s.sink is not None:
                try:
                    if s.backlog:
                        self.poller.register(s.sink.fd, select.POLLOUT)
                    else:
                        self.poller.unregister(s.sink.fd)
                except KeyError:
                    pass

    def _close(self, s: _Stream) -> None:
        if not s.open:
            return
        s.open = False
        if self.poller is not None:
            try:
                self.poller.unregister(s.fd)
            except KeyError:
                pass
        os.close(s.fd)

    def _log_failed(self, e: OSError) -> None:
        from .logs import Logger

        Logger(__name__).warning("cannot write the task's log %s: %s", self.log.path, e.strerror)  # type: ignore[union-attr]
        if self.log is not None:
            self.log.close()
        self.log = None

    # -- the end ------------------------------------------------------------------------
    def drain(self, deadline: float = 5.0) -> None:
        """The task's processes are gone: take what is left in the pipes, then close everything.

        A pipe held open by a process that is not the task's (it was handed the fd)
        does not keep the launcher: whatever is readable now is taken, no more.
        """
        for fd in self._to_close:
            os.close(fd)
        self._to_close = []
        for s in self.streams:
            while s.open and self._read(s):
                pass
            self._close(s)
        end = time.monotonic() + deadline
        for s in self.streams:
            # The task has ended: waiting for the terminal to take the rest is all that is left.
            while s.sink is not None and s.backlog and time.monotonic() < end:
                select.select([], [s.sink.fd], [], max(0.0, end - time.monotonic()))
                self._flush(s)
            self._drop_sink(s)
        if self.log is not None:
            self.log.close()
            self.log = None

    def close_unused(self) -> None:
        """The task never ran: close every fd the relay made."""
        for fd in self._to_close:
            os.close(fd)
        self._to_close = []
        for s in self.streams:
            self._close(s)
            self._drop_sink(s)
        if self.log is not None:
            self.log.close()
            self.log = None


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe (the unprivileged maximum) instead of 64 KiB: 16 times fewer wake-ups
    and system calls for a chatty task."""
    import fcntl

    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass


def claim_standard_fds() -> frozenset[int]:
    """Put /dev/null on whichever of fds 0-2 is closed; return those that were.

    Called first thing in the launcher: a launcher started with stdout closed (as some
    daemons start programs) would otherwise hand fd 1 to the first pipe it makes, and
    take that pipe for its stdout. What was closed stays closed to the task's output.
    """
    closed = frozenset(fd for fd in (0, 1, 2) if not _is_open(fd))
    for fd in sorted(closed):
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    return closed


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _open_pty(terminal: int) -> tuple[int, int]:
    import termios

    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    # Output passes through unchanged ("\n" stays "\n" in the log); the real terminal
    # does its own newline translation when the launcher writes to it.
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    _copy_window_size(terminal, slave)
    return master, slave


def _copy_window_size(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def remove_log(path: str) -> None:
    for part in (path, older_half(path)):
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
        except OSError as e:
            from .logs import Logger

            Logger(__name__).warning("cannot remove log %s: %s", part, e.strerror)


# -- reading a log ----------------------------------------------------------------------
def open_log_part(path: str) -> BinaryIO:
    """A log (or its older half) for reading: only a regular file. A FIFO given as --log
    would block the reader until some writer came, a device might never end."""
    from .errors import NoLog

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NoLog(f"log {path} is not a regular file: not read")
    return os.fdopen(fd, "rb")


def copy_log(path: str, write: Callable[[bytes], object]) -> int:
    """Hand the whole log (the older half, then the current file) to ``write``; the bytes given."""
    total = 0
    for part in (older_half(path), path):
        try:
            with open_log_part(part) as f:
                while chunk := f.read(CHUNK):
                    write(chunk)
                    total += len(chunk)
        except FileNotFoundError:
            continue
    return total


def read_log_range(path: str, offset: int, limit: int, missing: Callable[[], Exception]) -> tuple[bytes, int]:
    """Up to ``limit`` bytes from ``offset`` of the older half then the current file, and
    the offset after them. Offsets count from the start of what is kept now: a rotation
    between two reads moves that start by half the cap (an offset beyond the end is
    answered with no bytes and the end, lower than it: the reader's sign to start again)."""
    parts: list[bytes] = []
    at, found = 0, False
    for part in (older_half(path), path):
        try:
            with open_log_part(part) as f:
                found = True
                size = os.fstat(f.fileno()).st_size
                if offset < at + size and limit > 0:
                    f.seek(max(0, offset - at))
                    chunk = f.read(min(limit, size - max(0, offset - at)))
                    parts.append(chunk)
                    limit -= len(chunk)
                at += size
        except FileNotFoundError:
            continue
    if not found:
        raise missing()
    data = b"".join(parts)
    return data, (offset + len(data) if data else min(offset, at))


def follow_log(path: str, still_running: Callable[[], bool], interval: float = 0.1) -> Iterator[bytes]:
    """The log's content, then what is appended to it, until ``still_running`` says no.

    Like ``tail -F``: a rotation (a new file of that name) is followed from its
    start. Looked at every ``interval`` seconds while nothing comes.
    """
    f = None
    ino = None
    try:
        yield from _whole_if_not(older_half(path), None)
        while True:
            running = still_running()  # asked before reading, so nothing written before the end is missed
            if f is None:
                try:
                    f = open_log_part(path)  # kept open across iterations
                    ino = os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    f = None
            got = False
            if f is not None:
                while chunk := f.read(CHUNK):
                    got = True
                    yield chunk
                try:
                    rotated = os.stat(path).st_ino != ino
                except FileNotFoundError:
                    rotated = False
                if rotated:  # the old file is complete now: take its last bytes, then the new one
                    while chunk := f.read(CHUNK):
                        yield chunk
                    f.close()
                    f = None
                    # Rotated twice since the last look: the older half is a generation not seen yet.
                    yield from _whole_if_not(older_half(path), ino)
                    continue
            if not running:
                return
            if not got:
                time.sleep(interval)
    finally:
        if f is not None:
            f.close()


def _whole_if_not(path: str, ino: int | None) -> Iterator[bytes]:
    """The whole file, unless it is missing or is the file of inode ``ino`` (already read)."""
    try:
        with open_log_part(path) as f:
            if os.fstat(f.fileno()).st_ino == ino:
                return
            while chunk := f.read(CHUNK):
                yield chunk
    except FileNotFoundError:
        return


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
