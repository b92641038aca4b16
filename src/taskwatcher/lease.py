"""A launcher's lease on its task, for a store many hosts share (PostgreSQL).

The supervisor's poll loop asks this module three things: which file descriptor to
add to poll() (the store's connection, listening on the task's own channel: a kill
asked on any host wakes it at once), when to wake next (the next renewal), and, on
waking, whether the task is to be stopped and why; and during a stop's grace period,
whether the lease still holds (``keep``: renewed on its schedule, or the grace is cut
short). It answers from the row, re-read
after a notification and at each renewal (a notification is only a speed-up: one
missed while the connection was down is caught by the next renewal's row).

The lease is written with the database's clock (``now()`` of the server): hosts'
clocks are never compared. A launcher that cannot reach the database keeps its task
running and retries; if it could not renew before its lease would run out, it stops
the task first, so that a unique name is never held by two hosts at once.
"""

from __future__ import annotations

import time

from .errors import StoreError
from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .store import TaskStore

log = Logger(__name__)

LEASE = 60.0  # seconds, by default (launch --lease)
RETRY = 1.0  # seconds between two attempts while the database cannot be reached
SAFETY = 2.0  # seconds before the lease runs out by which the task is to be dead
# How long one attempt may block on a stalled link (the store's connect and TCP timeouts):
# the task is stopped early enough that a last attempt blocking this long is not too late.
BLOCKING = 10.0


def renew_every(lease: float) -> float:
    """How often a lease of ``lease`` seconds is renewed: a sixth of it (10 s of 60 s)."""
    return lease / 6


class Lease:
    """The lease of one running task, held by its launcher (a store not shared: no lease)."""

    def __init__(self, store: TaskStore, taskid: int, token: str, lease: float, grace: float) -> None:
        self.store, self.taskid, self.token = store, taskid, token
        self.lease, self.grace = lease, grace
        self.renewed = time.monotonic()  # when the last renewal that succeeded was asked for
        self.next_renewal = self.renewed  # the first one at once (the claim wrote this lease a moment ago)
        self.fd: int | None = None
        # No operation of the loop may outlast what the lease can spare (a stalled link).
        self.blocking = min(BLOCKING, lease / 4)
        store.bound_operations(self.blocking)
        self._listen()

    @classmethod
    def of(cls, store: TaskStore, taskid: int, token: str, lease: float | None, grace: float) -> Lease | None:
        if not store.shared:
            return None
        return cls(store, taskid, token, LEASE if lease is None else lease, grace)

    def _listen(self) -> None:
        try:
            self.fd = self.store.notify_fd(self.taskid)
        except StoreError as e:
            log.debug("cannot listen for a stop of task %d: %s", self.taskid, e)
            self.fd = None

    def wake_in(self, now: float) -> float:
        """Seconds until this lease wants a look: its next renewal (or the next attempt)."""
        return max(0.0, self.next_renewal - now)

    def check(self) -> str | None:
        """At any wake-up of the loop: why the task must stop (a kill request, a lost lease),
        or None. Notifications that arrived (on the descriptor, or read meanwhile by another
        operation of the connection, which keeps them) are taken and the row re-read; a due
        renewal is done."""
        now = time.monotonic()
        try:
            if self.store.wait_for_change(0, self.taskid):  # nothing blocks: only what already arrived
                row = self.store.task(self.taskid)
                if row is not None and row.stopreason:
                    return str(row.stopreason)
        except StoreError as e:
            log.debug("task %d: cannot read its notifications: %s", self.taskid, e)
            self.fd = None  # the connection broke: the next renewal connects again
            self.next_renewal = min(self.next_renewal, now + RETRY)
            return self._deadline(now)
        if now < self.next_renewal:
            return None
        try:
            row = self.store.renew_lease(self.taskid, self.token, self.lease)
            if self.fd is None or self.store.notify_fd(self.taskid) != self.fd:
                self._listen()  # connected again: listening again; the row just read covers the gap
        except StoreError as e:
            log.warning("task %d: lease not renewed (retrying): %s", self.taskid, e)
            self.fd = None
            self.next_renewal = now + min(RETRY, renew_every(self.lease))
            return self._deadline(now)
        self.renewed, self.next_renewal = now, now + renew_every(self.lease)
        if row is None:
            return "its row was archived meanwhile (lease lost)"
        return str(row.stopreason) if row.stopreason else None

    def keep(self) -> bool:
        """While the task is being stopped (its grace period): the renewal due, if one is, so
        that a long grace does not let the row's lease run out under a healthy link; False once
        the lease is lost (the row is gone, or the lease is about to run out: the task must
        be dead by then, grace or not): the task is then to be killed at once."""
        now = time.monotonic()
        if now < self.next_renewal:
            return True
        try:
            row = self.store.renew_lease(self.taskid, self.token, self.lease)
        except StoreError as e:
            log.debug("task %d: lease not renewed while stopping (retrying): %s", self.taskid, e)
            now = time.monotonic()  # (the attempt may have blocked on a stalled link)
            self.next_renewal = now + min(RETRY, renew_every(self.lease))
            return self._left(now) > SAFETY + self.blocking
        self.renewed, self.next_renewal = now, now + renew_every(self.lease)
        return row is not None

    def _left(self, now: float) -> float:
        """Seconds the lease is known to hold from ``now`` (from the last renewal that got through)."""
        return self.renewed + self.lease - now

    def _deadline(self, now: float) -> str | None:
        """Stop the task while the lease still holds: it must be dead before it runs out."""
        if self._left(now) <= self.grace + SAFETY + self.blocking:
            return f"lease lost: the database could not be reached for {now - self.renewed:.0f} s"
        return None


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
