"""Test-only crash points: ``TASKWATCHER_CRASH_AT=NAME`` SIGKILLs this process at NAME.

The fault tests (tests/faults) kill a launcher (reserved, spawned, waiting,
feedback-saving: inside the transaction storing the task's latest feedback), any
archive (archiving, inside its transaction; hooks-kept: the end and its finish hooks'
orders committed, their runner not yet started), a hook runner (hook-running: its hook
started) or a control command (kill-requested, pending-archived) at the worst moments.
Unset, as it always is outside those tests, a crash point does nothing.

``TASKWATCHER_WITHOUT=inotify`` makes the launcher do without inotify, as on a system
whose inotify instances are used up, so that the tests reach the fallback for real.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """SIGKILL this process here if ``TASKWATCHER_CRASH_AT`` names this point."""
    if os.environ.get("TASKWATCHER_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def unavailable(facility: str) -> bool:
    """True if ``TASKWATCHER_WITHOUT`` names ``facility``: do as if the system had none."""
    return os.environ.get("TASKWATCHER_WITHOUT") == facility


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
