"""Ends kept aside: a launcher whose store would not take its task's end (locked past
the busy timeout, unwritable, a database server out of reach) writes it beside the store,
and the next command archives it as recorded, once it has proved itself (a regular file
of ours, naming a task that is still there with the same token). On a store many hosts
share, the next command on this host may be long in coming: a detached recorder of this
host retries until the database takes the end (:func:`record_when_back`).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time

from .crash import crash_point
from .errors import NoDatabase, NotADatabase, StoreError
from .logs import Logger
from .paths import pending_dir
from .store import check_own_folder

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .store import TaskStore

log = Logger(__name__)

PENDING_MAX = 65536  # bytes: a kept-aside end is a few hundred; a larger file is not one
# A recorder's pauses between two attempts: the first, and the longest (doubling between).
RECORD_PAUSE = (1.0, 10.0)
RECORD_FOR = 86400.0  # seconds a recorder keeps trying; what is left then waits for a command
RECORD_BOUND = 10.0  # seconds one attempt's operation may take on a stalled link


def keep_pending_end(store: TaskStore, taskid: int, token: str, ending: dict[str, Any]) -> str:
    """Write a task's end beside the database, for the next command to archive; its path.

    Whole or not at all: on a failure (disk full) the half-written ``.tmp`` is
    removed and the OSError raised for the caller to say the end another way.
    """
    path = pending_path(store, taskid)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)  # private, like the database's folder
    check_own_folder(os.path.dirname(path), "folder of kept-aside ends")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump({"token": token, **ending}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def pending_path(store: TaskStore, taskid: int) -> str:
    """Where the end of that task is kept aside, if it is."""
    return os.path.join(pending_dir(store), f"task_{taskid}.json")


def archive_pending_ends(store: TaskStore, *, keep_unknown: bool = False) -> set[str]:
    """Archive the ends that launchers kept aside, as they recorded them; the names of the
    files left in place (not ends of ours, or, with ``keep_unknown``, ends of a task the
    database does not have: left for a command to say so, where a recorder cannot).

    An end is trusted only as far as it proves itself: a regular file of ours (never
    through a symlink) in a folder of ours, naming a task that is still there with the
    same token (a secret of the task's processes and of the private database), or, on a
    store many hosts share, whose ``host lost`` history row has that token.
    """
    folder = pending_dir(store)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return set()
    except OSError as e:
        raise StoreError(f"cannot read the folder of kept-aside ends {folder}: {e.strerror}") from None
    check_own_folder(folder, "folder of kept-aside ends")
    left = set()
    for name in names:
        path = os.path.join(folder, name)
        end = _read_pending_end(path) if _is_end_name(name) else None
        if end is None:
            left.add(name)
            continue
        taskid = int(name[5:-5])
        row = store.task(taskid)
        archived = False
        if row is not None and row["token"] and row["token"] == end["token"]:
            from .archive import archive_task

            # The launcher read the final feedback (it held the file): kept with the end.
            archived = archive_task(store, row, termsignal=end["termsignal"], termerror=end["termerror"],
                                    exitcode=end["exitcode"], feedback=end["feedback"])  # fmt: skip
            crash_point("pending-archived")  # archived, its file not yet removed
        if not archived and store.shared:
            # Archived as lost by another host (meanwhile, or maybe back in line for a retry
            # under a fresh token): the real end replaces that `host lost` row.
            store.finish(taskid, end["token"], termsignal=end["termsignal"],
                         termerror=end["termerror"], exitcode=end["exitcode"],
                         feedback=end["feedback"] or {})  # fmt: skip
        if row is None and store.finished(taskid) is None:
            # Its task is in neither list (a database made anew, its history pruned, or a
            # server that lost its last commits): nothing to record it in; said, not dropped silently.
            if keep_unknown:
                left.add(name)
                continue
            log.warning("task %d's end kept aside in %s is not recorded: the database has no such task"
                        " (none running, none in history)", taskid, path)  # fmt: skip
        try:
            os.unlink(path)  # archived now, or not this task's end (the task is gone, or forged)
        except FileNotFoundError:
            pass
    return left


def _is_end_name(name: str) -> bool:
    return name.startswith("task_") and name.endswith(".json") and name[5:-5].isdigit()


def record_when_back(store: TaskStore) -> None:
    """Start this host's recorder of the ends kept aside for ``store`` (one many hosts
    share), unless one is at work: a detached process that archives them, as a command
    would, as soon as the database takes them, so that a task's real end replaces a ``host
    lost`` guess even when no command is run on this host. It retries with growing pauses
    for :data:`RECORD_FOR` seconds at most, then leaves what is left to the next command.
    A launcher forks it; elsewhere (a foreground launch, the Python API in a caller's
    process) a fresh interpreter runs it, as for every process taskwatcher starts."""
    from . import queueing

    folder = pending_dir(store)
    try:
        queueing.start_detached(store, record_kept_ends, folder, ["--record-kept-ends", folder])
    except OSError as e:  # no process to be had: the next command records it
        log.debug("no recorder of kept ends: %s", e)


def record_kept_ends(target: str, folder: str) -> None:
    """The recorder: while ends are kept in ``folder`` (that of the store ``target``), try to
    archive them. One at a time per store and host: it holds flock(2) on the folder itself
    (no lock file beside the ends); one that finds it held leaves (the holder sees its end
    too). The holder lets go only once nothing is left for it, then looks again: an end kept
    while it let go is recorded by whichever recorder holds the lock then. What a pass left
    in place (not an end of ours; an end of a task the database does not have) is left to
    the next command, which says why."""
    import fcntl

    try:
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    deadline, pause = time.monotonic() + RECORD_FOR, RECORD_PAUSE[0]
    left: set[str] = set()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        while time.monotonic() < deadline:
            if not _kept_ends(folder) - left:
                fcntl.flock(lock, fcntl.LOCK_UN)
                if not _kept_ends(folder) - left:
                    return
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a newer one: it records
                continue
            time.sleep(pause)  # a pause between attempts on a database out of reach
            pause = min(pause * 2, RECORD_PAUSE[1])
            try:
                left = _record_once(target, folder)
            except (NoDatabase, NotADatabase):
                return  # no such database (any more): nothing to record in; a command will say so
            except StoreError as e:
                log.debug("kept ends not recorded yet: %s", e)
    except BlockingIOError:
        return  # another recorder holds the folder
    finally:
        os.close(lock)


def _record_once(target: str, folder: str) -> set[str]:
    """One attempt: open the store (every operation bounded: a stalled link fails it) and
    archive what is kept; what was left in place (all of ``folder``, should it not be the
    store's folder of kept ends: nothing there is this recorder's)."""
    from .store import open_store

    with open_store(target, create=False, bound=RECORD_BOUND) as store:
        if os.path.realpath(pending_dir(store)) != os.path.realpath(folder):
            return _kept_ends(folder)
        return archive_pending_ends(store, keep_unknown=True)


def _kept_ends(folder: str) -> set[str]:
    try:
        return {n for n in os.listdir(folder) if _is_end_name(n)}
    except OSError:
        return set()


def _read_pending_end(path: str) -> dict[str, Any] | None:
    """A kept-aside end as a launcher wrote it, or None (not a regular file of ours, too
    large, not such JSON): never opened through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > PENDING_MAX:
            log.warning("ignoring %s: not a kept-aside end of this user", path)
            return None
        end = json.loads(os.read(fd, PENDING_MAX + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(end, dict):
        return None
    code = end.get("exitcode")
    fields = {"token": end.get("token"), "termsignal": end.get("termsignal", ""),
              "termerror": end.get("termerror", ""), "exitcode": code}  # fmt: skip
    texts_ok = all(isinstance(fields[k], str) for k in ("token", "termsignal", "termerror"))
    if not texts_ok or not fields["token"] or not (code is None or type(code) is int):
        return None
    # The final feedback the launcher read (None: an older launcher's end; read the file then).
    feedback = end.get("feedback")
    if isinstance(feedback, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in feedback.items()
    ):
        fields["feedback"] = feedback
    else:
        fields["feedback"] = None
    return fields


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
