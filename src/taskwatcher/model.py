"""The store's domain types: a task row, a history row, a claim, a history filter.

Every backend returns these (never a driver's row type), so everything above the
store — reconciliation, the launcher, the JSON, the API's records — sees one shape.
Rows are namedtuples (the launcher's memory is a figure users watch: no dataclasses,
no typing) that can also be read by column name, ``row["status"]``, as the code and
the tests written against the database's columns do.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

# The columns of a reserved or running task, in the order a backend gives them.
TASK_FIELDS = (
    "id name info1 info2 info3 pid status feedback reservetime starttime duration lastupdate"
    " timeout uniq expiretime procstart bootid host launcherpid launcherstart pidns command"
    " feedpath logfile grace started heartbeat stopreason token logplaced"
    " queue slots notbefore attempt spec"
)
# The columns of a finished task.
HISTORY_FIELDS = (
    "id taskid taskname info1 info2 info3 termsignal termerror starttime endtime duration"
    " feedback exitcode pid host command logfile reservetime timeout logplaced"
    " attempt hook"
)


class _ByName:
    """``row["column"]`` as well as ``row.column``; ``keys()`` for ``dict(row)``."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str:
            try:
                return getattr(self, key)
            except AttributeError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)  # type: ignore[arg-type]

    def keys(self) -> tuple[str, ...]:
        return self._fields  # type: ignore[attr-defined,no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class TaskRow(_ByName, namedtuple("TaskRow", TASK_FIELDS)):
    """A reserved or running task as the store keeps it (times are unix seconds; ``command``
    is the JSON array text; ``token`` the secret in every process of the task)."""

    __slots__ = ()


class HistoryRow(_ByName, namedtuple("HistoryRow", HISTORY_FIELDS)):
    """A finished task as the store keeps it (``feedback`` is the JSON object's text; a row
    from taskwatcher 1.x may hold anything there)."""

    __slots__ = ()


class Claim(
    namedtuple(
        "Claim",
        "name default_name infos unique timeout grace command feedfolder logfile logfolder token"
        " host bootid launcherpid launcherstart pidns lease",
        defaults=(None,),
    )
):
    """What a launcher claims a task with: the name it asks for (None: the reservation's,
    else ``default_name``), (info1, info2, info3) (None keeps the reservation's), unique,
    timeout and grace, the command (JSON text), the feedback folder (None: no feedback
    file), the log (a path, None: no log, or ``""``: taskwatcher places it in
    ``logfolder``), the task's token, the launcher's identity, and on a store many hosts share
    the lease the claim writes (seconds; None: the default's), which the launcher renews."""

    __slots__ = ()


HOST_LOST = "host lost"  # why a task whose lease ran out (a store many hosts share) was archived
DEFAULT_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a task is stopped, by default


class Ending(
    namedtuple(
        "Ending", "exitcode termsignal termerror exec_failed interrupted", defaults=("", "", False, None)
    )
):
    """How a task ended, as history records it: the exit status (None if unknown),
    the signal name or "", the reason in words, and whether exec itself failed;
    ``interrupted``: the signal that interrupted a foreground launcher (which the
    CLI then ends itself by, see :func:`process.end_by_signal`), or None."""

    __slots__ = ()


class Waiter(namedtuple("Waiter", "launcherpid launcherstart bootid host pidns")):
    """The foreground launcher waiting in line for its own queued task (its identity, as a
    claim records a launcher's): while it lives, nobody else starts that task."""

    __slots__ = ()


class PendingHook(namedtuple("PendingHook", "historyid running holder")):
    """Finish hooks not yet recorded: the history row they are for, whether a runner has
    claimed them (``running``) or they wait for one, and who holds them (a
    :class:`Waiter`-shaped identity: the archiver that wrote them, a command that took them
    over to start a runner, or their runner)."""

    __slots__ = ()


class HistoryFilter:
    """Which finished tasks to show: of one name, ended since a time, with a history id
    below ``before`` (a page of a long history: the next page's ``before`` is this one's
    lowest id), the last N of them; of one task id (its attempts)."""

    __slots__ = ("before", "last", "name", "since", "taskid")

    def __init__(
        self,
        name: str | None = None,
        since: float | None = None,
        last: int | None = None,
        before: int | None = None,
        taskid: int | None = None,
    ) -> None:
        self.name, self.since, self.last, self.before = name, since, last, before
        self.taskid = taskid


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
