"""Operations on tasks, over the store: reserve, list, update, kill and killall, wait.

No SQL and no transaction here: each step is one of the store's atomic operations,
and what touches processes (signals, pidfds, /proc) happens between them. Every
command reconciles first (:mod:`taskwatcher.reconcile`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Sequence

from . import process
from .crash import crash_point
from .errors import LauncherTimeout, NoSuchTask, NotAllStopped, NotPermitted, RunsElsewhere, WaitTimeout
from .liveness import elsewhere, launcher_gone, launcher_identity
from .logs import Logger
from .model import DEFAULT_GRACE
from .reconcile import reconcile
from .status import WAITING, TaskStatus, heartbeat_status
from .store import RESERVATION_TTL, storable

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .model import HistoryRow, TaskRow
    from .store import TaskStore

log = Logger(__name__)

DEFAULT_TTL = RESERVATION_TTL

KILL_WAIT_MARGIN = 10.0  # beyond the task's grace period, for the launcher to archive it


# -- reservations ----------------------------------------------------------------------
def reserve(
    store: TaskStore, name: str | None, infos: Sequence[str | None], unique: bool, ttl: float = DEFAULT_TTL
) -> int:
    """A new task id, held for ``ttl`` seconds for a launch."""
    return store.reserve(name, infos, unique, ttl)


# -- listing ---------------------------------------------------------------------------
def live_heartbeat(row: TaskRow) -> float | None:
    """The latest heartbeat: what the launcher recorded, or the file's own mtime if newer."""
    beat = row.heartbeat
    if row.feedpath:
        try:
            beat = max(beat or 0.0, os.lstat(row.feedpath).st_mtime)  # a link is never followed
        except OSError:
            pass
    return beat


def describe_task(row: TaskRow, t: float, place: int | None = None) -> dict[str, Any]:
    """One task as ``--list --json`` shows it (the seed's columns, plus ``timer``; a queued
    task's ``place`` in its group's line).

    A task of another host is not judged from here: its status is the one its launcher
    recorded, and its feedback file (a path on its host) is not looked at."""
    running = row.status not in WAITING
    foreign = running and elsewhere(row) is not None
    spec: dict[str, Any] = {}
    if row.spec:
        from .queueing import spec_of

        spec = spec_of(row)
    started = row.started or row.starttime
    duration = timer = None
    status: str = row.status  # the column's text (an unknown status is shown as it is)
    lastupdate = row.lastupdate
    if running and started is not None:
        duration = max(0.0, t - started)
        beat = (row.heartbeat if foreign else live_heartbeat(row)) if row.feedback else started
        timer = max(0.0, t - (beat or started))
        if not foreign:
            status = heartbeat_status(timer, row.timeout, bool(row.feedback))
        lastupdate = int(beat) if beat else lastupdate
    return {
        "name": row.name,
        "info1": row.info1,
        "info2": row.info2,
        "info3": row.info3,
        "pid": row.pid,
        "status": str(status),
        "feedback": bool(row.feedback),
        "reservetime": row.reservetime,
        "starttime": row.starttime,
        "duration": None if duration is None else int(duration),
        "lastupdate": lastupdate,
        "timeout": _number(row.timeout),
        "timer": None if timer is None else round(timer, 3),
        "expiretime": None if row.expiretime is None else int(row.expiretime),
        "unique": bool(row.uniq),
        "command": json.loads(row.command) if row.command else spec.get("command"),
        "feedpath": row.feedpath,
        "logfile": row.logfile,
        "host": row.host,
        "group": row.queue,
        "slots": row.slots,
        "place": place,
        "attempt": row.attempt or 1,
        "after": spec.get("after") or None,
    }


def list_tasks(store: TaskStore, host: str | None = None) -> dict[str, dict[str, Any]]:
    """Queued, reserved and running tasks (running on ``host``), keyed by task id (as a string)."""
    return describe_tasks(store.tasks(), host)


def describe_tasks(rows: Sequence[TaskRow], host: str | None = None) -> dict[str, dict[str, Any]]:
    """Those task rows (running on ``host``) as ``--list --json`` shows them (a queued one
    with its place in line), keyed by task id (as a string)."""
    t = time.time()
    if host is not None:
        rows = [r for r in rows if r.host == host and r.status not in WAITING]
    places: dict[int, int] = {}
    if any(r.status == TaskStatus.QUEUED for r in rows):
        from .queueing import places as line_places

        places = line_places(rows)
    return {str(r.id): describe_task(r, t, places.get(r.id)) for r in rows}


def update(store: TaskStore) -> int:
    """Write fresh durations and statuses into the tasks table (for 1.x readers); how many rows."""
    t = time.time()
    observed = []
    for row in store.tasks():
        if row["status"] not in WAITING:
            d = describe_task(row, t)
            observed.append((row["id"], d["duration"], d["status"], d["lastupdate"]))
    return store.record_observed(observed)


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- stopping --------------------------------------------------------------------------
def kill(store: TaskStore, taskid: int) -> str:
    """Stop one task (or cancel a reservation); return what was done, in words."""
    row = store.task(taskid)
    if row is None:
        if store.finished(taskid) is not None:
            raise NoSuchTask(f"task {taskid} has already ended")
        raise NoSuchTask(f"no task {taskid}")
    return _stop_all(store, [row])[0]


def killall(store: TaskStore, name: str) -> list[str]:
    """Stop every reserved or running task of that name; what was done, one line each.

    On a store only this host uses, a task running elsewhere (another pid namespace) cannot
    be stopped from here: every other one is stopped first, then :class:`NotAllStopped`
    names those (with what was done). On a store many hosts share, every launcher hears it.
    """
    rows = store.tasks(name)
    if not rows:
        raise NoSuchTask(f"no task named '{storable(name)}'")
    foreign = [r for r in rows if r["status"] not in WAITING and elsewhere(r) and not store.shared]
    done = _stop_all(store, [r for r in rows if r not in foreign])
    if foreign:
        where = ", ".join(f"task {r['id']} ({elsewhere(r)})" for r in foreign)
        raise NotAllStopped(done, f"not stopped, stop them where they run: {where}")
    return done


def _stop_all(store: TaskStore, rows: Sequence[TaskRow]) -> list[str]:
    """Ask each task's launcher to stop it, then wait until each is archived."""
    from .archive import archive_task

    done: list[str] = []
    waiting: list[tuple[TaskRow, int]] = []
    remote: list[TaskRow] = []
    for row in rows:
        current = _request_stop(store, row["id"], done)
        if current is None:
            continue
        crash_point("kill-requested")  # the request is recorded, the launcher not signalled
        if elsewhere(current):  # a shared store: its launcher was notified by the request itself
            remote.append(current)
            continue
        fd = _signal_launcher(current)
        if fd is None:  # no launcher to do it: stop and archive the task here
            if not archive_task(store, current, termerror="killed by request", kill_remains=True):
                _still_there(store, current)
            done.append(f"task {row['id']}: killed")
        else:
            waiting.append((current, fd))
    for row, fd in waiting:
        limit = (row["grace"] if row["grace"] is not None else DEFAULT_GRACE) + KILL_WAIT_MARGIN
        try:
            if not select.select([fd], [], [], limit)[0]:
                raise LauncherTimeout(f"task {row['id']} was asked to stop but its launcher has not finished")
        finally:
            os.close(fd)
        done.append(_after_launcher_exit(store, row))
    for row in remote:
        done.append(_wait_archived(store, row))
    return done


def _wait_archived(store: TaskStore, row: TaskRow) -> str:
    """Wait until a task of another host is archived (its launcher stopped it, or its lease
    ran out and it was archived as lost); what became of it, in words."""
    limit = (row["grace"] if row["grace"] is not None else DEFAULT_GRACE) + KILL_WAIT_MARGIN
    deadline = time.monotonic() + limit
    while True:
        current = store.task(row["id"])
        if current is None or current["token"] != row["token"]:
            return f"task {row['id']}: killed (on {elsewhere(row)})"
        left = deadline - time.monotonic()
        if left <= 0:
            raise LauncherTimeout(
                f"task {row['id']} was asked to stop but its launcher on {elsewhere(row)} has not finished"
            )
        store.wait_for_change(min(left, 1.0))  # a change wakes it; a look each second all the same
        reconcile(store)  # a lease that ran out meanwhile: archived as lost


def _request_stop(store: TaskStore, taskid: int, done: list[str]) -> TaskRow | None:
    """Cancel the reservation, or record the stop request in the running row (which the
    launcher reads when signalled); the running row, or None once ``done`` says what became of it."""
    while True:
        current = store.task(taskid)
        if current is None:
            done.append(f"task {taskid}: already ended")
            return None
        if current["status"] in WAITING and current["spec"]:  # in line: taken out of it, history says so
            from .archive import archive_task
            from .queueing import DEPENDENCY_FAILED

            if archive_task(store, current, termerror="killed by request before it started",
                            exitcode=DEPENDENCY_FAILED):  # fmt: skip
                done.append(f"task {taskid}: taken out of the line")
                return None
            continue  # its turn came meanwhile: it runs now
        if current["status"] == TaskStatus.RESERVED:
            if store.cancel_reservation(taskid):
                done.append(f"task {taskid}: reservation cancelled")
                return None
            continue  # claimed meanwhile: it runs now
        where = elsewhere(current)
        if where and not store.shared:
            raise RunsElsewhere(f"task {taskid} runs in {where}: stop it there")
        # A launcher of this host is signalled (below), one elsewhere hears it from the store:
        # never both, or the second would count as a second kill and cut the grace short.
        requested = store.request_stop(taskid, "killed by request", notify=bool(where))
        if requested is not None:
            return requested
        # ended meanwhile: the loop says so


def _after_launcher_exit(store: TaskStore, row: TaskRow) -> str:
    """What became of a task whose launcher, asked to stop it, has exited: in words.

    A launcher SIGKILLed meanwhile (by someone else) archived nothing: what is
    left of the task is stopped and it is archived as lost here, and the answer
    says so rather than "killed".
    """
    from .archive import archive_task
    from .pending import archive_pending_ends

    archive_pending_ends(store)  # a launcher that could not write its end kept it aside
    if archive_task(
        store, row, termerror="launcher lost", kill_remains=True, unless=lambda r: not launcher_gone(r)
    ):
        return f"task {row['id']}: its launcher died first; what was left was killed, archived as lost"
    _still_there(store, row)
    return f"task {row['id']}: killed"


def _still_there(store: TaskStore, row: TaskRow) -> None:
    """Raise if the task was not archived: its processes live on (ones we may not signal)."""
    current = store.task(row["id"])
    if current is not None and current["token"] == row["token"]:
        raise NotPermitted(
            f"task {row['id']} cannot be stopped: its processes may not be signalled by this user"
            " (a setuid program?)"
        )


def _signal_launcher(row: TaskRow) -> int | None:
    """SIGTERM the task's launcher; a pidfd that becomes readable when it exits, or None."""
    launcher = launcher_identity(row)
    if launcher is None or launcher_gone(row):
        return None
    fd = process.pidfd(launcher.pid)
    if fd is None:
        return None
    if not process.signal_verified(launcher, signal.SIGTERM):
        os.close(fd)
        return None
    return fd


# -- waiting ---------------------------------------------------------------------------
RESERVATION_POLL = 0.2  # seconds between looks at a reservation that is not launched yet
REMOTE_POLL = 1.0  # seconds between looks at a task of another host, should no change be notified


def wait(store: TaskStore, taskid: int, timeout: float | None = None) -> HistoryRow:
    """Block until the task ends; return its (last attempt's) history row.

    A running task is waited for on its launcher's pidfd (no polling); a finished
    one answers at once; a reservation or a queued task (in line, or between two
    attempts) is looked at every 0.2 s until it is launched (or expires: then there
    is nothing to wait for).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = store.task(taskid)
        if row is None:
            entry = store.finished(taskid)
            if entry is None:
                raise NoSuchTask(f"no task {taskid} (or a reservation that expired or was cancelled)")
            return entry
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimeout(f"task {taskid} is still running")
        if store.shared and elsewhere(row):  # its launcher is on another host: the database says
            store.wait_for_change(REMOTE_POLL if left is None else max(0.0, min(REMOTE_POLL, left)))
        elif row["status"] in WAITING or not _wait_for_launcher(row, left):
            time.sleep(RESERVATION_POLL if left is None else max(0.0, min(RESERVATION_POLL, left)))
        reconcile(store)  # a launcher that died without archiving: its row is archived now


def _wait_for_launcher(row: TaskRow, limit: float | None) -> bool:
    """Wait until the row's launcher exits (or ``limit`` passes); False if it cannot be waited on."""
    launcher = launcher_identity(row)
    if launcher is None or elsewhere(row):
        return False
    fd = process.pidfd(launcher.pid)
    if fd is None:
        return False
    try:
        if process.read_stat(launcher.pid) is None or not launcher.is_alive():
            return True  # already gone: reconcile archives it
        select.select([fd], [], [], limit)
        return True
    finally:
        os.close(fd)


# -- the database as a whole -----------------------------------------------------------
def initialize(store: TaskStore, force: bool = False) -> None:
    """Recreate the database; running tasks refuse it, or with ``force`` are stopped first."""
    from .retention import initialize as recreate

    recreate(store, force, lambda rows: _stop_all(store, rows))


if __name__ == "__main__":  # python -m taskwatcher.control: taskwatcher 1.7's command line
    from .compat.v17 import control_main

    raise SystemExit(control_main())
