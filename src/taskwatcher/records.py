"""The typed records the Python API returns: a task that is reserved or running, and a finished one.

Their fields are SPEC's column names, exactly the keys of ``control --list --json``
and ``control --history --json``, so code written against the JSON reads the same
against the API. (This module imports dataclasses, 25 ms of start-up: the CLI's JSON
commands do not import it.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _progress(feedback: dict[str, str] | None) -> float | None:
    try:
        return min(100.0, max(0.0, float((feedback or {})["progress"])))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Task:
    """A queued, reserved or running task, as ``control --list --json`` shows it.

    ``feedback`` says whether the task reports through a feedback file;
    ``latest`` is that feedback (filled by ``TaskWatcher.tasks(feedback=True)``
    and ``TaskWatcher.task``), else None.
    """

    taskid: int
    name: str | None
    info1: str | None
    info2: str | None
    info3: str | None
    pid: int | None
    status: str
    feedback: bool
    reservetime: int | None
    starttime: int | None
    duration: int | None
    lastupdate: int | None
    timeout: float | None
    timer: float | None
    expiretime: int | None = None
    unique: bool = False
    command: list[str] | None = None
    feedpath: str | None = None
    logfile: str | None = None
    host: str | None = None
    group: str | None = None
    slots: int | None = None
    place: int | None = None
    attempt: int = 1
    after: list[int] | None = None
    latest: dict[str, str] | None = field(default=None, compare=False)

    @classmethod
    def from_json(
        cls, taskid: str | int, fields: dict[str, Any], latest: dict[str, str] | None = None
    ) -> Task:
        return cls(taskid=int(taskid), latest=latest, **fields)

    @property
    def running(self) -> bool:
        return self.status not in ("RESERVED", "QUEUED")

    @property
    def progress(self) -> float | None:
        """The feedback key ``progress`` as a number from 0 to 100, if the task reports one."""
        return _progress(self.latest)


@dataclass(frozen=True)
class FinishedTask:
    """A finished task, as ``control --history --json`` shows it (``historyid`` is its key there)."""

    historyid: int
    taskid: int
    taskname: str | None
    info1: str | None
    info2: str | None
    info3: str | None
    termsignal: str
    termerror: str
    starttime: int | None
    endtime: int | None
    duration: float | None
    feedback: dict[str, str] | Any
    exitcode: int | None
    pid: int | None = None
    host: str | None = None
    command: list[str] | None = None
    logfile: str | None = None
    attempt: int = 1
    hook: str | None = None

    @classmethod
    def from_json(cls, historyid: str | int, fields: dict[str, Any]) -> FinishedTask:
        return cls(historyid=int(historyid), **fields)

    @property
    def status(self) -> str:
        return "FINISHED"

    @property
    def progress(self) -> float | None:
        return _progress(self.feedback if isinstance(self.feedback, dict) else None)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
