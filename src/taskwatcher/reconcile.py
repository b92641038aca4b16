"""Reconciliation: how a store with no daemon stays true.

Whoever uses the store next archives the ends launchers kept aside, expires old
reservations, and archives the tasks whose launcher is gone (after stopping what is
left of them); on a store many hosts share, also those whose lease ran out (by the
database's clock), whatever host they ran on. Each step is a short store operation;
the side effects — signals, /proc scans, reading feedback files — happen between
them, never inside a transaction. Every command runs it; a read-heavy caller (a web server) may run it
periodically instead (``TaskWatcher(reconcile_every=...)``).
"""

from __future__ import annotations

import os
import time

from . import process
from .liveness import launcher_gone
from .logs import Logger
from .pending import archive_pending_ends, pending_path
from .status import TaskStatus

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .model import TaskRow
    from .store import TaskStore

log = Logger(__name__)


def reconcile(store: TaskStore) -> list[int]:
    """Archive kept-aside ends, expire reservations, archive lost tasks, start the queued
    tasks whose turn has come; the ids archived as lost."""
    return _reconcile(store)[0]


def reconciled_tasks(store: TaskStore) -> list[TaskRow]:
    """Reconcile, then the reserved and running tasks as they are after it: the rows that
    reconciling read, when it changed none of them (the common case: the task table is
    read once for a listing, not twice), else read again."""
    rows = _reconcile(store)[1]
    return store.tasks() if rows is None else rows


def _reconcile(store: TaskStore) -> tuple[list[int], list[TaskRow] | None]:
    """The ids archived as lost, and the task rows it read; None for those if it changed any."""
    archive_pending_ends(store)
    t = time.time()
    rows = store.tasks()
    changed = False
    if any(_expired(r, t) for r in rows):
        changed = True
        for taskid in store.expire_reservations(t):  # only those still reserved: a launch may claim one
            log.debug("reservation %d expired", taskid)
    lost = []
    if store.shared:  # leases, on the database's clock: any host archives one that ran out
        lost = _archive_lapsed(store)
        if lost:
            changed, rows = True, store.tasks()
    for row in rows:
        if not launcher_gone(row):
            continue
        changed = True  # (even if not archived below: its row is changing)
        current = store.task(row.id)
        if current is None or not launcher_gone(current):
            continue
        from .archive import archive_task  # (here: a read of a quiet store never needs it)

        why = "launcher lost" if current["bootid"] in (None, process.boot_id()) else "launcher lost (reboot)"
        if archive_task(
            store,
            current,
            termerror=why,
            kill_remains=True,
            unless=lambda r: _not_lost(store, r),
            retry_kind=None if current["status"] == TaskStatus.QUEUED else "lost",
        ):
            log.debug("task %d lost its launcher", current["id"])
            lost.append(current["id"])
    pending = store.pending_hooks()
    if pending:  # hooks whose archiver or runner died: started again, or recorded as lost
        from .hooks import resume_hooks

        resume_hooks(store, pending)
    if any(r.spec for r in rows):  # a queued task whose turn has come, should its starter have died
        from .queueing import start_ready

        # (the rows read above, unless this changed them: a lost task, an expired reservation)
        start_ready(store, rows=None if changed else rows)
        # a queued task may have started: a listing then reads the table again
        changed = changed or any(r.status == TaskStatus.QUEUED for r in rows)
    return lost, None if changed else rows


def _archive_lapsed(store: TaskStore) -> list[int]:
    """Archive the tasks whose lease ran out (by the database's clock) as ``host lost``, as a
    lost launcher's task is on one host: retried per ``--retry-on lost``, its hooks run. A
    foreground launcher's row waiting in line leaves the line (its slot is not held). A row of
    this host whose launcher is dead is left to :func:`_reconcile`'s lost launchers: what is
    left of its task is stopped here, and it is archived as ``launcher lost``, as on one host."""
    from .archive import archive_task
    from .feedstate import load_feedback_state
    from .model import HOST_LOST

    lost = []
    for row in store.lapsed_leases():
        if launcher_gone(row):  # of this host, its launcher dead: the caller's loop kills its remains
            continue
        waiting = row.status == TaskStatus.QUEUED
        why = f"{HOST_LOST} (its launcher, waiting in line)" if waiting else HOST_LOST
        # Its feedback file is on its host: the feedback last saved is its final feedback.
        feedback = {} if waiting else load_feedback_state(store, row.id).data
        if archive_task(store, row, termerror=why, feedback=feedback, retry_kind=None if waiting else "lost",
                        lapsed=True):  # fmt: skip
            log.debug("task %d: its lease ran out (%s)", row.id, why)
            lost.append(row.id)
    return lost


def _expired(row: TaskRow, t: float) -> bool:
    if row.status != TaskStatus.RESERVED:
        return False
    expires = row.expiretime
    return expires is not None and expires <= t


def _not_lost(store: TaskStore, row: TaskRow) -> bool:
    """Its launcher is back, or it left the task's end aside (the next command archives that)."""
    return not launcher_gone(row) or os.path.exists(pending_path(store, row.id))


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
