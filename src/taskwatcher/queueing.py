"""The line: queued tasks (groups with slots, dependencies, retries' delays) and their start.

A queued task is a row, not a process: its ``spec`` holds everything starting it
needs (argv, working folder, environment, launch options). Nobody runs a daemon, so
whoever changes what the line waits for starts what is ready:

- whoever archives a task (its launcher, or a command archiving a lost task) calls
  :func:`start_ready` after the history row is written;
- every command's reconciliation calls it too (a starter may have died);
- a foreground ``launch --group`` waits for its own turn (:func:`wait_turn`) and
  then runs the task itself.

Taking a turn is one atomic store operation (``take_queued``: QUEUED -> RESERVED for
:data:`QUEUE_TTL` seconds if the group has a free slot); the taker then spawns a
detached launcher (``taskwatcher launch --queued ID``, double-forked, its own session
and its own store connection) which claims the reservation as any launch does. A
starter that dies leaves a reservation that expires back to the line. Of two
commands racing for one turn, one takes it; of two launchers racing for one
reservation, one claims it: a task is never started twice.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .errors import ReservationError
from .logs import Logger
from .status import HOLDS_SLOT, TaskStatus

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .launcher import LaunchRequest
    from .model import TaskRow, Waiter
    from .store import TaskStore
    from .supervisor import SignalFlags

log = Logger(__name__)

QUEUE_TTL = 30.0  # seconds a taken turn waits for its launcher's claim before going back to the line
RETRY_KINDS = ("failure", "timeout", "lost")
DEFAULT_RETRY_ON = RETRY_KINDS  # as systemd's Restart=on-failure: every end but success and a kill
DEFAULT_RETRY_DELAY = 1.0  # seconds: a command failing at once must not spin (supervisord's users' loops)
DEPENDENCY_FAILED = 125  # the exit status of a task whose dependency failed: it never ran
TURN_LOOK = 1.0  # seconds a waiting foreground launcher sleeps at most between two looks at the line


def wants_queue(req: LaunchRequest) -> bool:
    """Whether the launch goes through the line (a row with a spec), not straight to a claim."""
    return bool(req.group or req.after or req.retries or req.on_end)


def check_request(req: LaunchRequest) -> None:
    """Refuse queue options that cannot work together, before anything is written."""
    if req.taskid is not None:
        raise ReservationError(
            "--taskid goes without --group, --after, --retries and --on-end (they make the task's id)"
        )
    if req.slots is not None and not req.group:
        raise ReservationError("--slots goes with --group")
    if req.slots is not None and req.slots < 1:
        raise ReservationError("--slots must be at least 1")
    if req.retries is not None and req.retries < 0:
        raise ReservationError("--retries must be 0 or more")
    if req.retry_backoff is not None and req.retry_backoff < 1:
        raise ReservationError("--retry-backoff must be 1 or more (1: the same delay each time)")
    for kind in req.retry_on or ():
        if kind not in RETRY_KINDS:
            raise ReservationError(f"--retry-on: unknown kind {kind!r} (failure, timeout, lost)")
    if req.group is not None and not req.group.strip():
        raise ReservationError("--group needs a name")


def spec_text(req: LaunchRequest, foreground: bool) -> str:
    """What starting the task needs, as the row's ``spec`` (JSON, ASCII: any argv byte survives);
    its environment is kept apart (``environ``: read only by whoever starts the task, not by
    every listing)."""
    return json.dumps(
        {
            "command": list(req.command),
            "cwd": os.getcwd(),
            "umask": _umask(),
            "feedpath": None if req.feedpath is None else os.path.abspath(req.feedpath),
            "timeout": req.timeout,
            "grace": req.grace,
            "log": None if req.logfile is None else os.path.abspath(req.logfile),
            "logmax": req.logmax,
            "nolog": req.nolog,
            "after": list(req.after or ()),
            "after_any": bool(req.after_any),
            "retries": req.retries or 0,
            "retry_delay": DEFAULT_RETRY_DELAY if req.retry_delay is None else req.retry_delay,
            "retry_backoff": req.retry_backoff or 1.0,
            "retry_on": list(req.retry_on or DEFAULT_RETRY_ON),
            "on_end": req.on_end,
            "lease": req.lease,
            "foreground": foreground,
        }
    )


def _umask() -> int:
    mask = os.umask(0o077)  # (reading it means setting it: put back at once)
    os.umask(mask)
    return mask


def spec_of(row: TaskRow) -> dict[str, Any]:
    try:
        spec = json.loads(row.spec) if row.spec else {}
    except ValueError:
        spec = {}
    return spec if isinstance(spec, dict) else {}


def environment_of(store: TaskStore, taskid: int) -> dict[str, str]:
    """The environment a task was queued with ({} if none is kept)."""
    try:
        env = json.loads(store.task_environment(taskid) or "{}")
    except ValueError:
        env = {}
    return env if isinstance(env, dict) else {}


def request_of(row: TaskRow) -> LaunchRequest:
    """The launch request a queued row's spec holds (for the launcher that starts it)."""
    from .launcher import LaunchRequest
    from .model import DEFAULT_GRACE
    from .output import DEFAULT_LOG_MAX

    spec = spec_of(row)
    return LaunchRequest(
        command=spec["command"],
        taskid=row.id,
        feedpath=spec.get("feedpath"),
        timeout=spec.get("timeout"),
        grace=DEFAULT_GRACE if spec.get("grace") is None else spec["grace"],
        detach=True,
        logfile=spec.get("log"),
        logmax=spec.get("logmax") or DEFAULT_LOG_MAX,
        group=row.queue,
        slots=row.slots,
        after=spec.get("after"),
        after_any=spec.get("after_any"),
        retries=spec.get("retries"),
        retry_delay=spec.get("retry_delay"),
        retry_backoff=spec.get("retry_backoff"),
        retry_on=spec.get("retry_on"),
        on_end=spec.get("on_end"),
        lease=spec.get("lease"),
    )


def enqueue(store: TaskStore, req: LaunchRequest, waiter: Waiter | None) -> int:
    """Put the task in line (a QUEUED row); its id. An unknown dependency is refused."""
    from .errors import NameTaken
    from .store import command_text

    for dep in req.after or ():
        if store.task(dep) is None and store.finished(dep) is None:
            raise ReservationError(f"--after: no task {dep}: nothing started")
    name = req.name or os.path.basename(req.command[0])
    try:
        taskid = store.enqueue(
            name,
            tuple(req.infos),
            req.unique,
            queue=req.group,
            slots=(req.slots or 1) if req.group else None,
            spec=spec_text(req, foreground=waiter is not None),
            environ=json.dumps(dict(os.environ)),
            command=command_text(req.command),
            waiter=waiter,
        )
    except NameTaken as e:
        raise ReservationError(f"not started: {e}") from None
    log.debug("task %d queued (group %s)", taskid, req.group)
    return taskid


# -- whose turn it is ---------------------------------------------------------------------
def dependency_verdict(store: TaskStore, row: TaskRow) -> tuple[str, int | None]:
    """``("ready", None)``, ``("waiting", id)`` or ``("failed", id)`` for a queued row's dependencies.

    A dependency is met once it has ended (its last attempt) with exit 0 — with
    ``--after-any`` whatever its outcome. One that is gone without a history row (pruned,
    cleared) counts as failed: nothing says it succeeded.
    """
    spec = spec_of(row)
    for dep in spec.get("after") or ():
        if store.task(dep) is not None:
            return "waiting", dep
        entry = store.finished(dep)
        if entry is None or (entry.exitcode != 0 and not spec.get("after_any")):
            return "failed", dep
    return "ready", None


def _waiter_alive(row: TaskRow) -> bool:
    from .liveness import launcher_gone

    return row.launcherpid is not None and not launcher_gone(row)


def start_ready(store: TaskStore, own: int | None = None, rows: list[TaskRow] | None = None) -> bool:
    """Start every queued task whose turn has come; True if ``own`` (a foreground
    launcher's own task) was taken for it.

    Tasks are looked at oldest first. A task whose dependency failed is ended without
    running (``dependency N failed``, exit 125). In a group, the oldest task that may
    start takes a free slot; a foreground launcher's task is left to it (its slot kept
    for it: it looks at the line within :data:`TURN_LOOK`, and at once on a change). A
    task waiting for its dependencies or its retry's delay keeps no one else waiting.
    ``rows``: the tasks as the caller has just read them (spares a read).
    """
    taken_own = False
    while True:
        rows = store.tasks() if rows is None else rows
        queued = [r for r in rows if r.status == TaskStatus.QUEUED]
        if not queued:
            return taken_own
        busy: dict[str, int] = {}
        for r in rows:
            if r.queue is not None and r.status in HOLDS_SLOT:
                busy[r.queue] = busy.get(r.queue, 0) + 1
        full: set[str] = set()
        ended = False
        t = time.time()
        for row in queued:
            if row.queue is not None and row.queue in full:
                continue
            verdict, dep = dependency_verdict(store, row)
            if verdict == "failed":
                ended |= _end_unrun(store, row, f"dependency {dep} failed")
                continue
            if verdict == "waiting" or (row.notbefore is not None and row.notbefore > t):
                continue
            if row.queue is not None and busy.get(row.queue, 0) >= max(1, row.slots or 1):
                full.add(row.queue)
                continue
            mine = own is not None and row.id == own
            if row.launcherpid is not None and not mine:
                if _waiter_alive(row) and row.queue is not None:
                    busy[row.queue] = busy.get(row.queue, 0) + 1  # its slot is kept for it
                continue  # a dead waiter's row is archived by reconciliation
            if not store.take_queued(row.id, QUEUE_TTL):
                if row.queue is not None:
                    full.add(row.queue)  # another starter took the slot first
                continue
            if row.queue is not None:
                busy[row.queue] = busy.get(row.queue, 0) + 1
            if mine:
                taken_own = True
                continue
            try:
                spawn_launcher(store, row.id)
            except OSError as e:  # no process to be had: its turn expires back to the line (QUEUE_TTL)
                log.debug("task %d: cannot start its launcher: %s", row.id, e)
        if not ended:
            return taken_own
        rows = None


def _end_unrun(store: TaskStore, row: TaskRow, why: str) -> bool:
    from .archive import archive_task

    log.debug("task %d: %s", row.id, why)
    return archive_task(store, row, termerror=why, exitcode=DEPENDENCY_FAILED, start_next=False)


def places(rows: list[TaskRow]) -> dict[int, int]:
    """Each queued task's place in its group's line (1 is next), by id; a queued task of
    no group (waiting for its dependencies or its delay) has none."""
    out: dict[int, int] = {}
    seen: dict[str, int] = {}
    for r in rows:
        if r.status == TaskStatus.QUEUED and r.queue is not None:
            seen[r.queue] = seen.get(r.queue, 0) + 1
            out[r.id] = seen[r.queue]
    return out


# -- starting a launcher ---------------------------------------------------------------------
# Set in a launcher process (a detached supervisor, a queued task's launcher): it has the
# launcher's code imported and no threads of a caller's, so it starts the next in line by
# forking itself (:func:`fork_detached`) rather than exec'ing a fresh interpreter (a tenth of a
# second saved per start). Everywhere else (a command, a foreground launch, the Python API in a
# caller's process that may have threads) a new interpreter is exec'd.
forking = False


def spawn_launcher(store: TaskStore, taskid: int) -> None:
    """Start a detached launcher for a queued task (``taskwatcher launch --queued ID``, or a
    fork of this launcher doing the same)."""
    from .launcher import start_queued

    start_detached(store, start_queued, taskid, ["--queued", str(taskid)])


def start_detached(
    store: TaskStore, target: Callable[[str, Any], None], arg: Any, launch_args: list[str],
    env: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Run ``target(store.target, arg)`` detached from this process: in a fork of it where it
    is a launcher that may fork itself (:data:`forking`: the store's URL, password and all,
    stays in memory), else as ``taskwatcher launch --db KEY LAUNCH_ARGS`` in a fresh
    interpreter (with ``env``: its environment)."""
    if forking:
        store.release_for_fork()
        try:
            fork_detached(target, store.target, arg)
        finally:
            store.resume_after_fork()
        return
    spawn_detached([sys.executable, "-m", "taskwatcher", "launch", "--db", store.key, *launch_args], env)


def spawn_detached(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run ``argv`` in a session of its own, a grandchild (nobody's zombie), stdio on /dev/null.

    The intermediate child only forks and exits: no Python code of the caller's runs in
    the grandchild before exec (the caller may be a threaded server). What the grandchild
    execs opens its own store connection: none is ever used across fork.
    """
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    environ = os.environ if env is None else env
    try:
        pid = os.fork()
        if pid == 0:  # the intermediate child
            try:
                os.setsid()
                if os.fork() == 0:
                    for target in (0, 1, 2):
                        os.dup2(null, target)
                    os.chdir("/")
                    os.execve(argv[0], argv, environ)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    finally:
        os.close(null)


def fork_detached(target: Callable[..., None], *args: object) -> None:
    """Run ``target(*args)`` in a detached grandchild of this launcher process, as
    :func:`spawn_detached` would run a fresh interpreter doing it: its own session,
    nobody's zombie, stdio on /dev/null, no descriptor of ours (the store's connection
    among them: ``target`` opens its own; an SQLite or PostgreSQL connection is never
    used across fork), signal handlers and the wakeup fd reset, in "/".

    The objects of this process stay in the child untouched: they are frozen out of the
    garbage collector (``gc.freeze``), so that no finalizer of ours ever closes a
    descriptor number the child reuses, and the child leaves by ``os._exit``."""
    import gc
    import signal

    pid = os.fork()
    if pid == 0:  # the intermediate child
        try:
            os.setsid()
            if os.fork() == 0:
                gc.freeze()
                try:
                    signal.set_wakeup_fd(-1)
                    for sig in signal.valid_signals():
                        handler = signal.getsignal(sig)
                        if callable(handler) and handler is not signal.default_int_handler:
                            signal.signal(sig, signal.SIG_DFL)  # ours: as after exec
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    signal.pthread_sigmask(signal.SIG_SETMASK, [])
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # (close_range(2): one system call)
                    os.chdir("/")
                    target(*args)
                except BaseException as e:  # nowhere to say it but the debug log
                    log.debug("forked start failed: %s", e)
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def wait_turn(
    store: TaskStore, taskid: int, flags: SignalFlags, lease: float | None = None
) -> TaskRow | None:
    """A foreground launcher's wait in line for its own task; the row once RESERVED for it,
    or None if it left the line meanwhile (killed, a dependency failed, its lease ran out:
    history says why).

    No busy loop: between looks it waits for a change of the store (``wait_for_change``),
    at most :data:`TURN_LOOK` seconds or until its retry's delay ends. A stop signal
    takes it out of the line (history: interrupted before it started). On a store many
    hosts share it renews its row's lease (``lease`` seconds, as a running task's launcher
    does): if this host dies, any other archives the row once the lease runs out, and the
    slot kept for it is free again."""
    renew_at = 0.0  # at once: the row's lease so far is enqueue's default
    while True:
        if store.shared and time.monotonic() >= renew_at:
            renew_at = _renew_waiting(store, taskid, lease)
        if start_ready(store, own=taskid):
            return store.task(taskid)
        row = store.task(taskid)
        if row is None:
            return None
        if row.status == TaskStatus.RESERVED:
            return row
        if flags.received:
            from .archive import archive_task
            from .process import signal_name

            why = f"launcher interrupted by {signal_name(flags.received[0])} before it started"
            archive_task(store, row, termerror=why, exitcode=DEPENDENCY_FAILED)
            return None
        left = TURN_LOOK
        if row.notbefore is not None:
            left = max(0.01, min(left, row.notbefore - time.time()))
        if store.shared:
            left = max(0.01, min(left, renew_at - time.monotonic()))
        store.wait_for_change(left)


def _renew_waiting(store: TaskStore, taskid: int, lease: float | None) -> float:
    """Renew a waiting row's lease; when to renew it next (monotonic). A renewal that fails
    (the database out of reach) is tried again soon; a row gone is seen by the caller."""
    from .errors import StoreError
    from .lease import LEASE, RETRY, renew_every

    lease = LEASE if lease is None else lease
    row = store.task(taskid)
    try:
        if row is not None:
            store.renew_lease(taskid, row.token, lease)
    except StoreError as e:
        log.debug("task %d: lease in line not renewed: %s", taskid, e)
        return time.monotonic() + min(RETRY, renew_every(lease))
    return time.monotonic() + renew_every(lease)


def wait_delay_then_start(store: TaskStore, taskid: int) -> None:
    """For ``launch --queued ID`` on a task still QUEUED: its retry's delay is running.
    Sleep until it is over (the task may be killed meanwhile), then start what is ready."""
    row = store.task(taskid)
    while row is not None and row.status == TaskStatus.QUEUED and row.notbefore is not None:
        left = row.notbefore - time.time()
        if left <= 0:
            break
        store.wait_for_change(min(left, TURN_LOOK))
        row = store.task(taskid)
    start_ready(store)


# -- after an end -------------------------------------------------------------------------------
def retry_time(row: TaskRow, kind: str | None) -> float | None:
    """When the task's next attempt may start, if this end (``kind``: failure, timeout,
    lost; None: success or a kill, never retried) is one to retry; else None.

    At most ``--retries`` more attempts; the delay is ``--retry-delay`` times
    ``--retry-backoff`` to the power of the attempts already retried."""
    if kind is None or not row.spec:
        return None
    spec = spec_of(row)
    attempt = row.attempt or 1
    if attempt > int(spec.get("retries") or 0) or kind not in (spec.get("retry_on") or DEFAULT_RETRY_ON):
        return None
    delay = float(spec.get("retry_delay") or 0.0) * float(spec.get("retry_backoff") or 1.0) ** (attempt - 1)
    return time.time() + delay


def after_end(store: TaskStore, row: TaskRow, retried: bool, start_next: bool) -> None:
    """What follows an end (the history row written): the next in line. A retried task
    waiting for its delay, with no foreground launcher of its own, gets a detached
    launcher that sleeps out the delay (the only process a queued task ever has)."""
    if retried:
        current = store.task(row.id)
        if current is not None and current.launcherpid is None and (current.notbefore or 0) > time.time():
            spawn_launcher(store, row.id)
    if start_next:
        start_ready(store)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
