"""What a task's row says about processes on this host: where it runs, whether its
launcher lives, and stopping what is left of a task whose launcher is gone.

Only reads of /proc and signals: never the store (callers do those outside any
transaction, between the store's operations).
"""

from __future__ import annotations

import signal

from . import process
from .process import Identity
from .status import TaskStatus

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .model import TaskRow

TOKEN_VARIABLE = "TASKWATCHER_TOKEN"  # in the environment of every process of a task


def elsewhere(row: TaskRow) -> str | None:
    """Where a task runs if not here: ``host NAME``, ``another pid namespace``; None if here.

    A row from another host, or from another pid namespace of this host (a container
    sharing the database), names processes this command cannot see or judge: it is
    never signalled, never archived as lost from here.
    """
    if row.host and row.host != process.host_name():
        return f"host {row.host}"
    if row.pidns is not None and row.pidns != process.pid_namespace():
        return "another pid namespace"
    return None


def launcher_identity(row: TaskRow) -> Identity | None:
    """The launcher's identity as the row records it (None for a taskwatcher 1.x row)."""
    if row.launcherpid is None:
        return None
    return Identity(row.launcherpid, row.launcherstart, row.bootid)


def launcher_gone(row: TaskRow) -> bool:
    """True if a running task's launcher no longer runs (a row only its host and namespace can judge)."""
    if row.status == TaskStatus.RESERVED or (row.status == TaskStatus.QUEUED and row.launcherpid is None):
        return False  # no launcher yet (a queued task's foreground launcher waiting in line is judged)
    if elsewhere(row):
        return False
    launcher = launcher_identity(row)
    if launcher is None:  # a taskwatcher 1.x row: its pid and start are all there is
        return _legacy_identity(row) is None
    if row.bootid != process.boot_id():
        return True
    return not launcher.is_alive()


def stop_remains(row: TaskRow, refused: set[Identity] | None = None) -> str:
    """SIGKILL what is left of a task whose launcher is gone; the signal name, or ''.

    What this user may not signal (a setuid program the task ran) goes to ``refused``.
    The main process is known by its pid and start time, which anyone may read;
    the others by the token in their environment, which a setuid program's user
    may not read (RELIABILITY.md says what that leaves).
    """
    if row["launcherpid"] is None:
        legacy = _legacy_identity(row)
        return "SIGKILL" if legacy and process.signal_verified(legacy, signal.SIGKILL, refused) else ""
    if row["pid"] is None or row["procstart"] is None or row["bootid"] != process.boot_id() or elsewhere(row):
        return ""  # from another boot or namespace, or never started: nothing here is ours to signal
    # The task's processes are its main process (pid and start time) and those that carry
    # its token. Not "its process group": once the group is empty its id is free, and a
    # stranger's new session may hold it.
    victims = [Identity(row["pid"], row["procstart"], row["bootid"])]
    if row["token"]:
        victims += process.processes_with_env(TOKEN_VARIABLE, row["token"], row["procstart"])
    hit = [v for v in set(victims) if process.signal_verified(v, signal.SIGKILL, refused)]
    return "SIGKILL" if hit else ""


def _legacy_identity(row: TaskRow) -> Identity | None:
    if row["pid"] is None or row["starttime"] is None:
        return None
    return process.identity_started_near(row["pid"], row["starttime"])


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
