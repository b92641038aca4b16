"""The launcher's watch on its task's feedback file: an inotify descriptor for its poll() set.

The launcher keeps the task's latest feedback in the store as the file changes, so
that readers only read. inotify tells it of every change at no cost while the task
is quiet; where inotify cannot be had (no instance left, a kernel without it) the
watch says so and the launcher looks at the file every second instead
(:data:`taskwatcher.supervisor.FALLBACK_LOOK`).

Two watches: one on the file itself (written, truncated, its attributes changed,
moved or deleted), and one on its folder for entries created or moved in under the
file's name only, for a task that replaces the file (write elsewhere, then rename).
Watching the folder for writes would wake every launcher of a shared feedback
folder at every task's write. Links are never followed (``IN_DONT_FOLLOW``).
Imported only for a task with a feedback file.
"""

from __future__ import annotations

import os
import sys

from .crash import unavailable
from .process import libc
from .status import feedback_signature

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x80, 0x100, 0x400, 0x800
_IN_IGNORED, _IN_ONLYDIR, _IN_DONT_FOLLOW = 0x8000, 0x01000000, 0x02000000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_FILE_EVENTS = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_DONT_FOLLOW
_FOLDER_EVENTS = _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR | _IN_DONT_FOLLOW
# struct inotify_event: int wd; uint32 mask, cookie, len; then the name, len bytes. Read with
# int.from_bytes rather than the struct module: the launcher's memory is a figure users watch.
_EVENT_SIZE = 16


class FeedbackWatch:
    """Tells the launcher when its feedback file may have changed.

    Made before the task is let run, so that no write of the task comes before it.
    ``fd`` is the descriptor to poll (None: no inotify, the launcher looks every
    second); :meth:`changed` reads what is pending and says whether any of it
    concerns the file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Made before the task runs: the file as the launcher made it, the first look's base.
        self.signature = feedback_signature(path)
        self._name = os.fsencode(os.path.basename(path))
        self.fd: int | None = None
        self._file_wd = -1
        fd = -1 if unavailable("inotify") else libc().inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return
        folder = os.fsencode(os.path.dirname(path) or ".")
        if libc().inotify_add_watch(fd, folder, _FOLDER_EVENTS) < 0:
            os.close(fd)
            return
        self.fd = fd
        self._watch_file()

    def _watch_file(self) -> None:
        """Watch whatever is at the path now (a replaced file is a new inode to watch)."""
        assert self.fd is not None
        self._file_wd = libc().inotify_add_watch(self.fd, os.fsencode(self.path), _FILE_EVENTS)

    def changed(self) -> bool:
        """Read the pending events (never blocking); True if one is about the file."""
        if self.fd is None:
            return True  # no watch: every look may find a change
        concerned = rewatch = False
        while True:
            try:
                data = os.read(self.fd, 64 << 10)
            except BlockingIOError:
                break
            if not data:
                break
            at = 0
            while at + _EVENT_SIZE <= len(data):
                wd = int.from_bytes(data[at : at + 4], sys.byteorder, signed=True)
                mask = int.from_bytes(data[at + 4 : at + 8], sys.byteorder)
                size = int.from_bytes(data[at + 12 : at + 16], sys.byteorder)
                name = data[at + _EVENT_SIZE : at + _EVENT_SIZE + size].rstrip(b"\0")
                at += _EVENT_SIZE + size
                if wd == self._file_wd:
                    concerned = True
                    rewatch |= bool(mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED))
                elif name == self._name:  # created or moved in under the file's name
                    concerned = rewatch = True
        if rewatch or self._file_wd < 0:
            self._watch_file()
        return concerned

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
