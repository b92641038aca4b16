"""A task's feedback as readers see it: the file's path a row may name, the launcher's
place kept in the store, the latest and the final feedback.

Every file is read outside any transaction (a FIFO there, or a huge file, must never
hold the database's write lock). Readers never write: the launcher stores what it
reads as the file changes, and the archive what it read last.
"""

from __future__ import annotations

import os

from .errors import NoSuchTask, TaskwatcherError
from .feedback import FeedbackState, read_increment
from .liveness import elsewhere
from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .model import TaskRow
    from .store import TaskStore

log = Logger(__name__)


def row_feedpath(row: TaskRow) -> str | None:
    """The row's feedback file, if it is one taskwatcher would have named: an absolute,
    normalised path (no ``..``) to a ``feedback_*.log``. Any other value is not read,
    not removed: a row is data, never a licence to open or delete an arbitrary file."""
    path = row["feedpath"]
    if not path:
        return None
    name = os.path.basename(path) if isinstance(path, str) else ""
    if not (os.path.isabs(name and path) and os.path.normpath(path) == path
            and name.startswith("feedback_") and name.endswith(".log")):  # fmt: skip
        log.warning("task %s: ignoring feedback path %r, not one taskwatcher names", row["id"], path)
        return None
    return path


def feedback_holder(store: TaskStore, taskid: int) -> str:
    """Who holds a task's feedback file name, as written in its lock file: a digest of the
    store's key and the task id, the same for its launcher and any command archiving it
    (never the task's token, which must stay secret; two checksums, not hashlib, which
    costs a launch 5 ms to import)."""
    import zlib

    key = f"{store.key}\0{taskid}".encode()
    return f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


def load_feedback_state(store: TaskStore, taskid: int) -> FeedbackState:
    """Where the last reader stopped (a fresh state if none saved one)."""
    saved = store.feedback_state(taskid)
    return FeedbackState() if saved is None else saved


def _read_feedback(path: str, state: FeedbackState, final: bool = False) -> bool:
    """:func:`read_increment`, a file that cannot be read counting as no news."""
    try:
        return read_increment(path, state, final)
    except TaskwatcherError as e:
        log.debug("%s: the feedback last read stands", e)
        return False


def final_feedback(store: TaskStore, row: TaskRow, read: FeedbackState | None = None) -> dict[str, str]:
    """The feedback as the task left it, read on from ``read`` (what its launcher read)
    or from what the store holds.

    Call it outside any transaction. A file that is not a regular file (a FIFO,
    a link) or cannot be read leaves the feedback last read, said under --debug.
    """
    path = row_feedpath(row)
    if not path:
        return {}
    state = load_feedback_state(store, row["id"]) if read is None else read
    _read_feedback(path, state, final=True)
    return state.data


def task_feedback(store: TaskStore, taskid: int) -> dict[str, str]:
    """The latest feedback of a running task, or the final one of a finished task.

    Nothing is written: the task's launcher stores the feedback as the file changes
    (:mod:`taskwatcher.supervisor`). On the task's own host the file is read on from
    where the launcher stopped (outside any transaction), so the answer is exact even
    between two of the launcher's reads; a task of another host or pid namespace is
    answered from the store alone.
    """
    import json

    row = store.task(taskid)
    if row is None:
        entry = store.finished(taskid)
        if entry is None:
            raise NoSuchTask(f"no task {taskid}")
        return json.loads(entry["feedback"] or "{}")
    if not row_feedpath(row):
        return {}
    state = load_feedback_state(store, taskid)
    if not elsewhere(row):
        _read_feedback(row["feedpath"], state)
    return state.data


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
