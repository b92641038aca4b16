"""Watching files for changes with inotify: a descriptor for a poll() set, no CPU while
nothing changes.

Two users: the launcher, which keeps its task's latest feedback in the store as the
feedback file changes (so that readers only read), and the SQLite store, whose
``wait_for_change`` wakes when the database or its WAL is written (the web server's
change notification). Where inotify cannot be had (the user's instances used up, a
kernel without it) ``fd`` is None and each user falls back to looking now and then.

For each file, two kinds of watch: one on the file itself (written, truncated, its
attributes changed, moved or deleted), and one on its folder for entries created or
moved in under the file's name only, for a file replaced by a rename (or made later,
as SQLite's WAL is). Watching the folder for writes would wake every launcher of a
shared feedback folder at every task's write. Links are never followed
(``IN_DONT_FOLLOW``). Imported only where a watch is made.
"""

from __future__ import annotations

import os
import sys

from .crash import unavailable
from .process import libc

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_TO, _IN_CREATE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x80, 0x100, 0x400, 0x800
_IN_IGNORED, _IN_ONLYDIR, _IN_DONT_FOLLOW = 0x8000, 0x01000000, 0x02000000
_FILE_EVENTS = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_DONT_FOLLOW
_FOLDER_EVENTS = _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR | _IN_DONT_FOLLOW
# struct inotify_event: int wd; uint32 mask, cookie, len; then the name, len bytes. Read with
# int.from_bytes rather than the struct module: the launcher's memory is a figure users watch.
_EVENT_SIZE = 16


class FileWatch:
    """Tells when any of some files of one folder may have changed.

    ``fd`` is the descriptor to poll (None: no inotify: look now and then instead);
    :meth:`changed` reads what is pending, never blocking, and says whether any of it
    concerns the files. Made before anything may write them, it misses no change.
    """

    def __init__(self, *paths: str) -> None:
        self.paths = paths
        self._names = {os.fsencode(os.path.basename(p)): p for p in paths}
        self._file_wds: dict[str, int] = {}
        self.fd: int | None = None
        fd = -1 if unavailable("inotify") else libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return
        folder = os.fsencode(os.path.dirname(paths[0]) or ".")
        if libc().inotify_add_watch(fd, folder, _FOLDER_EVENTS) < 0:
            os.close(fd)
            return
        self.fd = fd
        for path in paths:
            self._watch_file(path)

    def _watch_file(self, path: str) -> None:
        """Watch whatever is at the path now (a replaced file is a new inode to watch)."""
        assert self.fd is not None
        self._file_wds[path] = libc().inotify_add_watch(self.fd, os.fsencode(path), _FILE_EVENTS)

    def changed(self) -> bool:
        """Read the pending events; True if one is about the files (always, without inotify)."""
        if self.fd is None:
            return True
        concerned, rewatch = False, set()
        by_wd = {wd: path for path, wd in self._file_wds.items() if wd >= 0}
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
                if wd in by_wd:
                    concerned = True
                    if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                        rewatch.add(by_wd[wd])
                elif name in self._names:  # created or moved in under a watched name
                    concerned = True
                    rewatch.add(self._names[name])
        rewatch.update(p for p, wd in self._file_wds.items() if wd < 0)
        for path in rewatch:
            self._watch_file(path)
        return concerned

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
