r"""The task lifecycle: its statuses, the transitions between them (one table, one guard),
and the heartbeat thresholds that move a running task between RUNNING, SILENT and
STALLED (SPEC, Supervision).

    (none) --reserve--> RESERVED --claim--> RUNNING <--> SILENT <--> STALLED
       |                 ^  |                  \___________|___________/
       +--enqueue--> QUEUED |                   |  (retry) |
       |             ^ |  \ +--cancel/expire-->  |          v
       |    (expired)| |   +--------------------+-> ENDED <--finish (history row)
       |             +-+ take (a free slot, its dependencies met)
       +------launch-------> RUNNING

A QUEUED task waits in line (a group's free slot, its dependencies, a retry's
delay); taking it makes it RESERVED for a short while, the starter's launcher
claims it; a queued reservation that expires goes back to the line. An attempt
that ends and is to be retried goes back to QUEUED under the same id.
"""

from __future__ import annotations

import os
from enum import Enum

# Fractions of the timeout since the last heartbeat at which the status changes.
SILENT_AT = 0.25
STALLED_AT = 0.50


class TaskStatus(str, Enum):
    """The status column of a reserved or running task."""

    QUEUED = "QUEUED"
    RESERVED = "RESERVED"
    RUNNING = "RUNNING"
    SILENT = "SILENT"
    STALLED = "STALLED"

    def __str__(self) -> str:
        return self.value


QUEUED = TaskStatus.QUEUED
# The end of the lifecycle that is not a row's status column: the row is gone, a finished
# task is its history row.
ENDED = "ENDED"
_LIVE = (TaskStatus.RUNNING, TaskStatus.SILENT, TaskStatus.STALLED)
# Statuses of a task that does not run (yet): it has no process.
WAITING = (TaskStatus.QUEUED, TaskStatus.RESERVED)
# Statuses that hold a slot of the task's group (a queued reservation is being started).
HOLDS_SLOT = (TaskStatus.RESERVED, *_LIVE)
# Every move a task may make, from (None: no row yet) to. Stores make a move only from
# a status this table allows (a compare on the row's status), so a stale writer changes
# nothing: a reservation already claimed is not cancelled, an ended task not revived.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({TaskStatus.RESERVED, TaskStatus.RUNNING, QUEUED}),
    QUEUED: frozenset({TaskStatus.RESERVED, ENDED}),
    # (back to QUEUED: a queued reservation that expired before its launcher claimed it)
    TaskStatus.RESERVED: frozenset({TaskStatus.RUNNING, QUEUED, ENDED}),
    # (to QUEUED: an attempt ended and the task is to be retried)
    **{s: frozenset({*_LIVE, QUEUED, ENDED}) for s in _LIVE},
}


class BadTransition(ValueError):
    """A task asked to move where the lifecycle does not go (a bug, never user input)."""


def check_transition(old: str | None, new: str) -> None:
    """The guard: raise :class:`BadTransition` unless ``old`` -> ``new`` is in the table."""
    if new not in TRANSITIONS.get(old, frozenset()):
        raise BadTransition(f"a task cannot go from {old} to {new}")


def sources(new: str) -> tuple[str, ...]:
    """The statuses a task may reach ``new`` from (a store's compare-and-set on the status)."""
    return tuple(str(s) for s, to in TRANSITIONS.items() if s is not None and new in to)


def heartbeat_status(silence: float, timeout: float | None, has_feedback: bool) -> TaskStatus:
    """The status of a running task that has been silent for ``silence`` seconds.

    Only a task with both a feedback file and a timeout can be SILENT or STALLED;
    without a feedback file the timeout is a maximum run time, not a heartbeat.
    """
    if not has_feedback or not timeout:
        return TaskStatus.RUNNING
    if silence < SILENT_AT * timeout:
        return TaskStatus.RUNNING
    if silence < STALLED_AT * timeout:
        return TaskStatus.SILENT
    return TaskStatus.STALLED


def feedback_signature(path: str) -> tuple[int, int, int] | None:
    """The feedback file's (inode, mtime, size): a change of it is a heartbeat. None if
    there is no file."""
    try:
        st = os.lstat(path)  # a link put in its place is a change of the link, never of its target
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def next_status_change(silence: float, timeout: float) -> float:
    """Seconds of further silence until the status next changes, or the timeout fires."""
    for fraction in (SILENT_AT, STALLED_AT, 1.0):
        if silence < fraction * timeout:
            return fraction * timeout - silence
    return 0.0


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
