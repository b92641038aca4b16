"""Everything known about one task, running or finished: ``control --show`` and ``TaskWatcher.show``.

One shape for both (the keys the README lists under control --show): what does not
apply to a live or a finished task is None, so a reader never tests for keys.
"""

from __future__ import annotations

import os
import stat
import time

from . import control
from .errors import NoSuchTask
from .feedstate import task_feedback
from .history import describe_entry
from .status import WAITING

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .model import HistoryRow, TaskRow
    from .store import TaskStore

LOG_TAIL_LINES = 10
_TAIL_BYTES = 64 * 1024  # read from the end of the log: enough for ten lines of any sane output


def task_detail(store: TaskStore, taskid: int) -> dict[str, Any]:
    """One task by id: reserved or running (latest feedback), else finished (from history);
    with every attempt that has ended (its history rows)."""
    row = store.task(taskid)
    detail = None
    if row is not None:
        try:
            detail = _live(store, row)
        except NoSuchTask:  # it ended between the two reads: history has it now
            pass
    if detail is None:
        entry = store.finished(taskid)
        if entry is None:
            raise NoSuchTask(f"no task {taskid}")
        detail = _finished(entry)
    detail["attempts"] = attempts(store, taskid)
    return detail


_ATTEMPT_KEYS = ("attempt", "historyid", "starttime", "endtime", "duration", "exitcode", "termsignal",
                 "termerror", "hook")  # fmt: skip


def attempts(store: TaskStore, taskid: int) -> list[dict[str, Any]]:
    """The ended attempts of a task, oldest first: one per history row of its id (a task run
    again by ``--retries`` keeps its id)."""
    from .model import HistoryFilter

    found = []
    for entry in store.iter_history(HistoryFilter(taskid=taskid)):
        fields = describe_entry(entry)
        fields["historyid"] = entry["id"]
        found.append({key: fields.get(key) for key in _ATTEMPT_KEYS})
    return found


def _live(store: TaskStore, row: TaskRow) -> dict[str, Any]:
    place = None
    if row["status"] == "QUEUED":
        from .queueing import places

        place = places(store.tasks()).get(row["id"])
    fields = control.describe_task(row, time.time(), place)
    reserved = row["status"] in WAITING
    feedback = {} if reserved or not row["feedpath"] else task_feedback(store, row["id"])
    return _shape(
        row["id"],
        fields,
        feedback=feedback,
        finished=False,
        historyid=None,
        endtime=None,
        exitcode=None,
        termsignal="",
        termerror="",
    )


def _finished(entry: HistoryRow) -> dict[str, Any]:
    fields = describe_entry(entry)
    fields.update(
        name=fields.pop("taskname"),
        status="FINISHED",
        feedpath=None,  # deleted once the task was archived
        reservetime=entry["reservetime"],
        lastupdate=None,
        timer=None,
        timeout=_number(entry["timeout"]),
        expiretime=None,
        unique=None,  # not kept in history
    )
    return _shape(entry["taskid"], fields, finished=True, historyid=entry["id"])


_KEYS = ("name", "info1", "info2", "info3", "status", "host", "pid", "command", "feedpath", "logfile",
         "reservetime", "starttime", "endtime", "duration", "lastupdate", "timer", "timeout",
         "expiretime", "unique", "feedback", "exitcode", "termsignal", "termerror",
         "group", "place", "attempt", "after", "hook")  # fmt: skip


def _shape(taskid: int, fields: dict[str, Any], **more: Any) -> dict[str, Any]:
    merged = {**fields, **more}
    detail: dict[str, Any] = {"taskid": taskid}
    detail.update(finished=merged["finished"], historyid=merged["historyid"])
    detail.update((key, merged.get(key)) for key in _KEYS)
    detail["log_tail"] = log_tail(detail["logfile"])
    return detail


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def log_tail(path: str | None, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a task's log (its older half too if needed); [] if none."""
    if not path:
        return []
    from .output import older_half

    data = _file_tail(path)
    if data.count(b"\n") <= lines:
        data = _file_tail(older_half(path)) + data
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return text.splitlines()[-lines:]


def _file_tail(path: str) -> bytes:
    """The last bytes of a regular file; b"" for anything else (never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b""
        offset = max(0, st.st_size - _TAIL_BYTES)
        return os.pread(fd, _TAIL_BYTES, offset)
    except OSError:
        return b""
    finally:
        os.close(fd)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
