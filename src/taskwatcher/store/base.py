"""The storage interface: what every backend does, each method's contract in its docstring.

Everything above the store speaks in these domain operations, never in SQL, and
never holds a transaction: each operation is atomic inside the backend. Writes
that end or change a running task compare-and-set on the task's ``token`` (the
secret in the environment of every process of the task), so a stale writer — a
launcher whose row was archived as lost, a second command archiving the same
task — changes nothing. Moves between statuses follow ``status.TRANSITIONS``.

Rows come back as :class:`~taskwatcher.model.TaskRow` and
:class:`~taskwatcher.model.HistoryRow`; failures as
:class:`~taskwatcher.errors.StoreError` (and its subclasses). No driver type,
connection or SQL fragment crosses this interface, so a PostgreSQL backend
implements it unchanged and passes the same contract suite (tests/contract).

Side effects outside the database (signals, /proc scans, reading feedback
files) are never done inside a backend's transaction: the callers do them
between operations.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ..feedback import FeedbackState
    from ..model import Claim, HistoryFilter, HistoryRow, PendingHook, TaskRow, Waiter


class TaskStore:
    """A taskwatcher database. Subclasses implement every method below."""

    #: What names this store in host-local paths (logs, kept-aside ends) and in the
    #: feedback file's lock: the same for every process using the same database.
    key: str
    #: What opens this store again, ``Store(target)`` (a detached supervisor does): the
    #: file's path, or the whole URL (its password too: never shown, unlike ``key``).
    target: str
    #: True if processes on other hosts use this store too (then liveness is by lease).
    shared: bool = False

    # -- the store itself ------------------------------------------------------------
    def local_folder(self, suffix: str) -> str:
        """A folder on this host that belongs to this store, for ``suffix`` ("logs",
        "pending"): not made here; whoever makes it checks it is ours alone."""
        raise NotImplementedError

    def close(self) -> None:
        """Let the connection go; the store is not used after."""
        raise NotImplementedError

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks -----------------------------------------------------------------------
    def reserve(self, name: str | None, infos: Sequence[str | None], unique: bool, ttl: float) -> int:
        """Insert a RESERVED task held ``ttl`` seconds; its id.

        Ids are never handed out twice, not even after the task is in history or
        pruned (only :meth:`recreate` starts them again). With ``unique``, a name a
        reserved or running task holds raises :class:`~taskwatcher.errors.NameTaken`:
        of N simultaneous unique reservations of one name exactly one wins.
        """
        raise NotImplementedError

    def claim(self, taskid: int | None, launch: Claim) -> TaskRow:
        """Turn a reservation (or, with ``taskid`` None, a new id) into a RUNNING task
        held by the launcher ``launch`` names; the row as stored.

        Refused with :class:`~taskwatcher.errors.ReservationError` (nothing changed) if
        ``taskid`` is not a live reservation (running, ended, never reserved, expired),
        if ``launch.name`` would rename a unique reservation, or if a unique name is
        held by another task. Two claims of one reservation: exactly one wins.
        """
        raise NotImplementedError

    def record_spawn(
        self, taskid: int, token: str, pid: int, procstart: int, command: str, launcherpid: int,
        launcherstart: int | None,
    ) -> TaskRow | None:  # fmt: skip
        """Record the task's main process (pid, start ticks), the command as executed
        and the launcher now holding it (a ``--detach`` fork is another process); the
        row after, which carries any stop request (``stopreason``). None, and nothing
        written, if the row is no longer this token's (archived as lost meanwhile)."""
        raise NotImplementedError

    def record_status(
        self, taskid: int, token: str, status: str, heartbeat: float, feedback: FeedbackState | None = None
    ) -> bool:
        """Record a running task's status (RUNNING, SILENT, STALLED) and its latest
        heartbeat (unix time), and with ``feedback`` the task's latest feedback as its
        launcher read it (the reader's place and what it had read), all in one step;
        False, and nothing written, if the row is not this token's or not running.

        The launcher is the one writer of a running task's feedback: readers read what
        it stored (and, on its host, may read the file on from there without writing)."""
        raise NotImplementedError

    def record_observed(self, observed: Sequence[tuple[int, int | None, str, int | None]]) -> int:
        """Write (id, duration, status, lastupdate) as readers computed them into running
        rows (``control --update``, for taskwatcher 1.x readers); how many rows there were."""
        raise NotImplementedError

    def request_stop(self, taskid: int, reason: str, notify: bool = True) -> TaskRow | None:
        """Mark a running task to be stopped, ``reason`` saying why; the row after, or
        None if there is no such running task (ended, or only reserved: see
        :meth:`cancel_reservation`). The launcher reads it when signalled; on a store many
        hosts share, with ``notify``, the store also wakes the task's launcher wherever it
        runs. A caller that signals a launcher of its own host itself says ``notify=False``:
        one request, one delivery (a second one would be taken for a second kill, which
        skips the grace period)."""
        raise NotImplementedError

    def cancel_reservation(self, taskid: int) -> bool:
        """Drop a reservation; False, and nothing changed, if it is not reserved (any
        more: a launch may have claimed it)."""
        raise NotImplementedError

    def expire_reservations(self, now: float) -> list[int]:
        """Drop the reservations whose expiry time is ``now`` or earlier; their ids. A queued
        task's reservation goes back to QUEUED instead (and is not among the ids)."""
        raise NotImplementedError

    def finish(
        self, taskid: int, token: str, *, termsignal: str, termerror: str, exitcode: int | None,
        feedback: dict[str, str], endtime: float | None = None, hook: str | None = None,
        retry_at: float | None = None, keep_waiter: bool = False, hook_orders: str | None = None,
        holder: Waiter | None = None, lapsed: bool = False,
    ) -> int | None:  # fmt: skip
        """End a task: write its history row and remove the task (and the feedback
        reader's place) in one step; the history id.

        The history row carries the task's ``attempt`` and ``hook`` (``"pending"`` when
        finish hooks are to run). ``hook_orders`` (JSON text: the hooks, their limit, their
        environment) are kept with the end in that same step, held by ``holder`` (the
        archiver: :meth:`pending_hooks`), so that hooks are never lost to a crash between
        the history row and their runner's start. ``lapsed``: only if the task's lease ran
        out by the database's clock (a shared store's ``host lost``; nothing replaced then).
        With ``retry_at`` the task is not removed: in the same step it goes back to QUEUED
        for its next attempt (attempt + 1, not started before ``retry_at``, a fresh token
        so that the last attempt's writers are refused, no process; its launcher's
        identity kept only with ``keep_waiter``, a foreground launcher that starts the next attempt itself).

        Compare-and-set on ``token``: if the row is gone or is another task's
        (archived meanwhile, or the id reused by a recreated database), nothing is
        written and None is returned, so a double or stale finish gives one history
        row.
        """
        raise NotImplementedError

    # -- the line: queued tasks ----------------------------------------------------------
    def enqueue(
        self, name: str | None, infos: Sequence[str | None], unique: bool, *, queue: str | None,
        slots: int | None, spec: str, environ: str | None = None, command: str | None = None,
        waiter: Waiter | None = None,
    ) -> int:  # fmt: skip
        """Insert a QUEUED task (a fresh token, no process): in group ``queue`` (None: none)
        of ``slots`` at once, ``spec`` the JSON text of what starting it needs (only its
        starters read it), ``environ`` the JSON text of the environment it is queued with
        (kept apart: :meth:`task_environment`, never in a :class:`TaskRow`), ``command``
        the command column's text until a launcher claims it, ``waiter`` the foreground
        launcher that will start it itself
        (None: whoever finds its turn come spawns a launcher for it); its id. With
        ``unique``, a name a queued, reserved or running task holds raises NameTaken."""
        raise NotImplementedError

    def take_queued(self, taskid: int, ttl: float) -> bool:
        """Take a queued task's turn, in one step: if it is QUEUED, its ``notbefore`` has
        come, and its group (if any) has fewer than its ``slots`` tasks RESERVED or
        running, it becomes RESERVED for ``ttl`` seconds (its launcher then claims it);
        False, and nothing changed, otherwise. Of two takers exactly one wins; the
        caller picks the oldest eligible task of a group first (first come, first served).
        A queued reservation that expires goes back to QUEUED
        (:meth:`expire_reservations`), never dropped."""
        raise NotImplementedError

    def task_environment(self, taskid: int) -> str | None:
        """The ``environ`` a queued task was given at :meth:`enqueue` (None: none, or no such task);
        kept through its retries, gone with the row."""
        raise NotImplementedError

    def record_hook(self, historyid: int, outcome: str, holder: Waiter | None = None) -> bool:
        """Write the finish hooks' outcome into a history row (``hook``) and drop their orders, in
        one step; False if the row is gone. With ``holder``: only if the orders are still
        held by it (else nothing is written: False)."""
        raise NotImplementedError

    def pending_hooks(self) -> list[PendingHook]:
        """The finish hooks whose outcome is not recorded yet (their orders kept), oldest first."""
        raise NotImplementedError

    def take_hook(
        self, historyid: int, holder: Waiter, *, run: bool, was: Waiter | None = None
    ) -> str | None:
        """Take hooks waiting for a runner, in one step; their orders, or None if not taken.
        ``run``: a runner claims them (then they are ``running``, held by it: of two runners
        one gets them); else a command takes over hooks still held by ``was`` (their holder,
        gone) to start a runner for them."""
        raise NotImplementedError

    # -- the task's latest feedback ----------------------------------------------------
    def feedback_state(self, taskid: int) -> FeedbackState | None:
        """The task's latest feedback as its launcher read and stored it (with
        :meth:`record_status`): where in the file it stopped, and what it had read;
        None if nothing was stored yet."""
        raise NotImplementedError

    # -- reads -------------------------------------------------------------------------
    def task(self, taskid: int) -> TaskRow | None:
        """The reserved or running task of that id."""
        raise NotImplementedError

    def tasks(self, name: str | None = None) -> list[TaskRow]:
        """Reserved and running tasks (of ``name``), by id."""
        raise NotImplementedError

    def finished(self, taskid: int) -> HistoryRow | None:
        """The latest history row of that task id."""
        raise NotImplementedError

    def iter_history(self, only: HistoryFilter | None = None, chunk: int = 1000) -> Iterator[HistoryRow]:
        """Finished tasks, oldest first, as ``only`` filters them (name; task id; ended at
        or after ``since``; history id below ``before``; the newest ``last`` of those), read
        ``chunk`` rows at a time."""
        raise NotImplementedError

    def history_json(self, only: HistoryFilter | None = None, chunk: int = 5000) -> Iterator[str]:
        """``control --history --json`` as text in pieces: exactly the object
        ``history.describe_entry`` gives for each row of :meth:`iter_history`, keyed by
        history id. A backend may build it in the database (a fast path)."""
        raise NotImplementedError

    def newest_taskid(self) -> int | None:
        """The highest task id of a reserved, running or finished task."""
        raise NotImplementedError

    def recent_taskids(self, finished: int = 20) -> list[int]:
        """Ids of the reserved and running tasks, then of the newest finished ones."""
        raise NotImplementedError

    # -- retention ---------------------------------------------------------------------
    def prune(self, keep: int | None = None, before: float | None = None) -> tuple[int, list[str]]:
        """Delete the history rows beyond the newest ``keep`` or ended before ``before``
        (oldest first); how many, and the logs taskwatcher placed for them (to remove)."""
        raise NotImplementedError

    def clear_history(self) -> tuple[int, list[str]]:
        """Delete every history row; how many, and the logs taskwatcher placed for them."""
        raise NotImplementedError

    def recreate(self) -> list[str]:
        """Drop everything and start again (ids from 1); the logs taskwatcher placed for
        the history dropped. Refused with :class:`~taskwatcher.errors.TasksRunning`, and
        nothing dropped, while a task runs (the check and the drop are one step)."""
        raise NotImplementedError

    # -- forking ------------------------------------------------------------------------
    def release_for_fork(self) -> None:
        """Before a fork whose child opens a store of its own: let go of what the child must
        not inherit (SQLite's connection: the library's file locks and shared memory are the
        process's, never to be used across fork). :meth:`resume_after_fork` takes it again."""

    def resume_after_fork(self) -> None:
        """After :meth:`release_for_fork`, in the parent: usable again."""

    # -- many hosts (a shared store only) -----------------------------------------------
    def renew_lease(self, taskid: int, token: str, lease: float) -> TaskRow | None:
        """Extend a running task's lease to ``lease`` seconds from now by the database's clock;
        the row after (its stop request), or None if the row is no longer this token's."""
        raise NotImplementedError

    def bound_operations(self, seconds: float | None) -> None:
        """From now on, an operation taking longer than ``seconds`` fails with StoreError (its
        connection is cut) rather than wait on a stalled link; None: no bound. A backend
        without a link to stall ignores it."""

    def lapsed_leases(self) -> list[TaskRow]:
        """The tasks whose lease ran out by the database's clock: running ones, and queued ones
        whose foreground launcher waits in line (it renews a lease too). Archive them with
        ``finish(..., lapsed=True)``."""
        return []

    def next_lease_end(self) -> float | None:
        """Seconds until the first lease held now runs out, by the database's clock (a
        duration, never compared with this host's clock); None if no lease is held."""
        return None

    # -- change notification -----------------------------------------------------------
    def notify_fd(self, taskid: int | None = None) -> int | None:
        """A file descriptor that becomes readable when another process changes the
        store (for a ``poll()`` set), or None if the backend has none. With ``taskid``, one
        that at least wakes for a stop request of that task and need not wake for other
        changes (:meth:`wait_for_change` then reads what arrived)."""
        raise NotImplementedError

    def wait_for_change(self, timeout: float, taskid: int | None = None) -> bool:
        """Block until another process commits a change (True) or ``timeout`` seconds pass.
        With ``taskid``, a backend that can tell may count only a stop request of that task
        (its launcher's wait: :meth:`notify_fd` with ``taskid``)."""
        raise NotImplementedError


def claimed_fields(row: TaskRow, launch: Claim, name: str, t: float) -> dict[str, object]:
    """The columns a claim writes into the task's row (every backend writes the same): the
    running task as ``launch`` describes it at time ``t``, its files placed by its id."""
    import os

    from ..status import TaskStatus

    infos = [new if new is not None else row[f"info{i}"] for i, new in enumerate(launch.infos, 1)]
    feedfile = None
    if launch.feedfolder is not None:
        feedfile = os.path.join(os.path.abspath(launch.feedfolder), f"feedback_{row.id}.log")
    logfile = launch.logfile
    if logfile == "":
        logfile = os.path.join(launch.logfolder, f"task_{row.id}.log")
    return dict(
        name=name,
        info1=infos[0],
        info2=infos[1],
        info3=infos[2],
        status=str(TaskStatus.RUNNING),
        feedback=int(feedfile is not None),
        starttime=int(t),
        started=t,
        duration=0,
        lastupdate=int(t),
        heartbeat=t,
        timeout=launch.timeout,
        grace=launch.grace,
        uniq=int(launch.unique or bool(row.uniq)),
        expiretime=None,
        token=launch.token,
        command=launch.command,
        feedpath=feedfile,
        logfile=os.path.abspath(logfile) if logfile else None,
        logplaced=int(launch.logfile == ""),
        host=launch.host,
        bootid=launch.bootid,
        launcherpid=launch.launcherpid,
        launcherstart=launch.launcherstart,
        pidns=launch.pidns,
    )


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
