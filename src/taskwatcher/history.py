"""Finished tasks as the commands and the API show them: one history row, one JSON shape.

``--history --json`` is :func:`describe_entry` of every row of the store's history
(the store may build the same text itself, faster: ``TaskStore.history_json``).
"""

from __future__ import annotations

import contextlib
import json
import time

from .errors import UsageError
from .model import HistoryFilter

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from .model import HistoryRow
    from .store import TaskStore

__all__ = ["HistoryFilter", "describe_entry", "history", "history_entry", "history_json", "iter_history"]


def describe_entry(row: HistoryRow) -> dict[str, Any]:
    """One finished task as ``--history --json`` shows it."""
    return {
        "taskid": row["taskid"],
        "taskname": row["taskname"],
        "info1": row["info1"],
        "info2": row["info2"],
        "info3": row["info3"],
        "termsignal": row["termsignal"] or "",
        "termerror": row["termerror"] or "",
        "starttime": row["starttime"],
        "endtime": row["endtime"],
        "duration": row["duration"],
        "feedback": _feedback_object(row["feedback"]),
        "exitcode": row["exitcode"],
        "pid": row["pid"],
        "host": row["host"],
        "command": json.loads(row["command"]) if row["command"] else None,
        "logfile": row["logfile"],
        "attempt": row["attempt"] or 1,
        "hook": row["hook"],
    }


def history(store: TaskStore, only: HistoryFilter | None = None) -> dict[str, dict[str, Any]]:
    """Finished tasks, oldest first, keyed by history id (as a string)."""
    return {str(hid): fields for hid, fields in iter_history(store, only)}


def iter_history(
    store: TaskStore, only: HistoryFilter | None = None, chunk: int = 1000
) -> Iterator[tuple[int, dict[str, Any]]]:
    """What :func:`history` gives, as (history id, fields), read ``chunk`` rows at a time:
    a long history is never held whole."""
    for row in store.iter_history(only, chunk):
        yield row["id"], describe_entry(row)


def history_json(store: TaskStore, only: HistoryFilter | None = None, chunk: int = 5000) -> Iterator[str]:
    """``--history --json`` as text, in pieces: the same object as :func:`history` gives."""
    return store.history_json(only, chunk)


def history_entry(store: TaskStore, taskid: int) -> tuple[int, dict[str, Any]] | None:
    """The latest history entry of a task id, as (history id, ``--history --json`` fields)."""
    row = store.finished(taskid)
    return None if row is None else (row["id"], describe_entry(row))


def parse_when(text: str, now: float | None = None) -> float:
    """A point in time: unix seconds, an ISO date or date and time (local), or an age
    such as ``90s``, ``30m``, ``2h``, ``7d`` (that long ago)."""
    import datetime as dt

    from .config import parse_duration

    now = time.time() if now is None else now
    if text[-1:].isalpha():  # an age (one parser for every duration), or an ISO time ending in Z
        with contextlib.suppress(ValueError):
            return now - parse_duration(text)
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return dt.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise UsageError(
            f"not a time: {text!r} (unix seconds, 2026-11-28, 2026-11-28T14:30, or an age like 2h)"
        ) from None


def _feedback_object(raw: Any) -> Any:
    if raw in (None, b"", ""):
        return {}
    try:
        return json.loads(raw)
    except (ValueError, TypeError):  # a 1.x row may hold anything
        return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
