"""Host-local paths that belong to a store: the logs taskwatcher places, its kept-aside ends.

They are keyed by the store (``TaskStore.local_folder``), never derived from "the
database is a file": a database on a server has them on each host all the same.
"""

from __future__ import annotations

import os

from .store import check_own_folder

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .store import TaskStore


def log_dir(store: TaskStore) -> str:
    """Where task logs go by default (SQLite: ``<db stem>-logs/`` beside the database)."""
    return store.local_folder("logs")


def pending_dir(store: TaskStore) -> str:
    """Where a launcher keeps a task's end that the store would not take (locked too long)."""
    return store.local_folder("pending")


def placed_log_folder(store: TaskStore) -> str:
    """The folder of the logs taskwatcher places, made (private to us as the umask allows)
    and checked to be ours alone."""
    folder = log_dir(store)
    try:
        os.mkdir(folder, 0o755)  # never world-writable, whatever the umask (as LogFile does)
    except OSError:
        pass  # it exists (checked below), or opening the log says why, as a failed start
    if os.path.isdir(folder):
        check_own_folder(folder, "logs folder")
    return folder


def placed_log_inside(path: str, real_folder: str) -> bool:
    """``path`` names a file directly in ``real_folder`` once resolved (``..``, symlinked folders)."""
    name = os.path.basename(path)
    if not (name.startswith("task_") and name.endswith(".log")):
        return False
    return os.path.realpath(os.path.dirname(path)) == real_folder


def check_user_log(db_path: str, logfile: str) -> None:
    """Refuse a ``--log`` that would write over (or rotate away) the database, its -wal,
    -shm or journal, or anything in its folder of kept-aside ends."""
    from .errors import ReservationError
    from .store import is_url, sibling_folder

    if is_url(db_path):  # a database on a server: none of its files is on this host
        return
    target = os.path.realpath(logfile)
    real_db = os.path.realpath(db_path)
    own = {real_db + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    pending = os.path.realpath(sibling_folder(db_path, "pending"))
    # The log is rotated to FILE.1: that name must not be the database's either.
    if own & {target, target + ".1"}:
        raise ReservationError(
            f"--log {logfile} is the database {db_path} or one of its files: nothing started"
        )
    if os.path.commonpath([target, pending]) == pending:
        raise ReservationError(
            f"--log {logfile} is inside {pending}, taskwatcher's own folder: nothing started"
        )


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
