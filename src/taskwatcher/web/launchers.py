"""A pidfd per running local launcher, in one poll set: the server learns of a launcher's
death without looking.

A launcher that ends normally archives its task first (a store change the server hears);
one that is killed writes nothing, and only reconciliation finds it. Instead of looking
every few seconds, the server holds a pidfd of each launcher that runs here (readable
once it exits) and reconciles when one becomes readable. A pidfd is only trusted for the
launcher the row names: after opening it, the process's start time is checked against
the row's (a pid recycled before the open is a stranger, and means the launcher is gone).
Where no pidfd can be had (an old kernel, a seccomp filter), ``available`` turns False
and the caller looks now and then instead.
"""

from __future__ import annotations

import logging
import os
import select
import threading

from ..process import Identity, pidfd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("taskwatcher.web")

Key = tuple  # (taskid, launcher pid, launcher start ticks): one launcher of one task


class LauncherWatch:
    """A thread polling the pidfds of the launchers given to :meth:`watch`; ``on_exit()`` is
    called (in that thread) each time some of them have exited."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self.on_exit = on_exit
        self.available = _pidfds_here()  # False: none to be had (the caller looks now and then)
        self._wanted: dict[Key, Identity] = {}
        self._gone: set[Key] = set()  # reported as exited: not watched again, should a row still name it
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="taskwatcher-launchers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._poke()

    def watch(self, launchers: dict[Key, Identity]) -> None:
        """Watch these launchers, and no others (those no longer given are let go)."""
        with self._lock:
            self._gone &= launchers.keys()
            wanted = {k: v for k, v in launchers.items() if k not in self._gone}
            if wanted.keys() == self._wanted.keys():
                return
            self._wanted = wanted
        self._poke()

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the thread has wake-ups pending anyway
            pass

    def _loop(self) -> None:
        held: dict[Key, int] = {}  # the pidfds, opened and closed by this thread only
        try:
            while not self._stop:
                with self._lock:
                    wanted = dict(self._wanted)
                exited, gone = False, set()
                for key in [k for k in held if k not in wanted]:
                    os.close(held.pop(key))
                for key, ident in wanted.items():
                    if key in held:
                        continue
                    fd = pidfd(ident.pid)
                    if fd is not None and ident.is_alive():  # checked after the open: the fd is its
                        held[key] = fd
                        continue
                    if fd is not None:
                        os.close(fd)
                    elif ident.is_alive():  # alive, yet no pidfd: none to be had here
                        self.available = False
                        continue
                    exited = True  # gone already (or its pid is a stranger's now)
                    gone.add(key)
                poller = select.poll()
                poller.register(self._wake_r, select.POLLIN)
                by_fd = {fd: key for key, fd in held.items()}
                for fd in by_fd:
                    poller.register(fd, select.POLLIN)
                if not exited:
                    ready = poller.poll()  # no timeout: nothing here is time-driven
                    for fd, _ in ready:
                        if fd == self._wake_r:
                            _drain(self._wake_r)
                        else:
                            exited = True
                            key = by_fd[fd]
                            os.close(held.pop(key))
                            gone.add(key)
                if exited and not self._stop:
                    with self._lock:
                        self._gone |= gone
                        for key in gone:
                            self._wanted.pop(key, None)
                    try:
                        self.on_exit()
                    except Exception:  # tried again when a row next names these launchers
                        log.exception("reconciling after a launcher's exit failed")
                        with self._lock:
                            self._gone -= gone
        finally:
            for fd in held.values():
                os.close(fd)


def _pidfds_here() -> bool:
    fd = pidfd(os.getpid())
    if fd is None:
        return False
    os.close(fd)
    return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
