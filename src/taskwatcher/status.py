"""Task status and the heartbeat thresholds that move a task between them (SPEC, Supervision)."""

from __future__ import annotations

from enum import Enum

# Fractions of the timeout since the last heartbeat at which the status changes.
SILENT_AT = 0.25
STALLED_AT = 0.50


class TaskStatus(str, Enum):
    """The status column of a reserved or running task."""

    RESERVED = "RESERVED"
    RUNNING = "RUNNING"
    SILENT = "SILENT"
    STALLED = "STALLED"

    def __str__(self) -> str:
        return self.value


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


def next_status_change(silence: float, timeout: float) -> float:
    """Seconds of further silence until the status next changes, or the timeout fires."""
    for fraction in (SILENT_AT, STALLED_AT, 1.0):
        if silence < fraction * timeout:
            return fraction * timeout - silence
    return 0.0


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
