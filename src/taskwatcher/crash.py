"""Test-only crash points: ``TASKWATCHER_CRASH_AT=NAME`` SIGKILLs this process at NAME.

The fault tests (tests/faults) kill a launcher (reserved, spawned, waiting), any
archive (archiving, inside its transaction) or a control command (kill-requested,
feedback-saving, pending-archived) at the worst moments. Unset, as it always is
outside those tests, a crash point does nothing.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """SIGKILL this process here if ``TASKWATCHER_CRASH_AT`` names this point."""
    if os.environ.get("TASKWATCHER_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
