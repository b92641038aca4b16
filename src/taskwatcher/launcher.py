"""The launcher: validate the request, claim the task, open its output, spawn it,
supervise it (:mod:`taskwatcher.supervisor`), read its final feedback, archive it
(or keep its end aside), apply the retention; ``--detach``.

One launcher process supervises one task. No transaction is ever held while a
process is spawned or waited for: each step is one of the store's operations.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from collections.abc import Callable

from . import process
from .archive import archive_task
from .crash import crash_point
from .errors import ReservationError, StartFailed, StoreError, TaskwatcherError
from .feedback import FEEDBACK_VARIABLE, FeedbackName
from .feedstate import feedback_holder, final_feedback
from .liveness import TOKEN_VARIABLE
from .logs import Logger
from .model import DEFAULT_GRACE, Claim, Ending
from .output import DEFAULT_LOG_MAX, LogFile, Relay, claim_standard_fds
from .paths import placed_log_folder
from .pending import keep_pending_end
from .reconcile import reconcile
from .retention import prune_by_config
from .spawn import EXIT_CANNOT_START, foreground_terminal, fork_held
from .store import Store, command_text
from .supervisor import SignalFlags, Supervisor

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .filewatch import FileWatch
    from .model import TaskRow
    from .store import TaskStore

log = Logger(__name__)

__all__ = ["DEFAULT_GRACE", "Ending", "LaunchRequest", "launch", "validate"]


# (namedtuples, not typing.NamedTuple or dataclasses: the launcher's memory is a
# figure users watch, and typing alone weighs 1.7 MB.)
class LaunchRequest(
    namedtuple(
        "LaunchRequest",
        "command taskid name infos feedpath timeout grace unique detach logfile logmax nolog lease"
        " group slots after after_any retries retry_delay retry_backoff retry_on on_end",
        defaults=(
            None,
            None,
            (None, None, None),
            None,
            None,
            DEFAULT_GRACE,
            False,
            False,
            None,
            DEFAULT_LOG_MAX,
            False,
            *(None,) * 10,
        ),
    )
):
    """What ``taskwatcher launch`` was asked to run, and how: the argv (list of str);
    a reserved task id or None; name; (info1, info2, info3); the feedback folder;
    timeout and grace in seconds; unique, detach; the log file (None: the default
    one), its cap in bytes, and nolog (foreground only: no log, the terminal as is); the
    lease in seconds on a store many hosts share (None: the default).
    The line (:mod:`taskwatcher.queueing`): the group and its slots; the task ids it
    runs after (with ``after_any``, whatever their outcome); retries, their delay,
    its backoff factor and the kinds of end retried; the ``--on-end`` hook."""

    __slots__ = ()


def validate(req: LaunchRequest) -> None:
    """Refuse a request that cannot run, before anything is reserved or started."""
    if not req.command or not req.command[0]:
        raise ReservationError("no command given (put it after --)")
    if req.timeout is not None and req.timeout <= 0:
        raise ReservationError("--timeout must be a positive number of seconds")
    if req.grace < 0:
        raise ReservationError("--grace must be zero or a positive number of seconds")
    if req.feedpath is not None:
        if not req.feedpath:
            raise ReservationError("--feedpath needs a folder")
        if not os.path.isdir(req.feedpath):
            what = "is not a folder" if os.path.exists(req.feedpath) else "does not exist"
            raise ReservationError(f"feedback folder {req.feedpath} {what}")
        if not os.access(req.feedpath, os.W_OK | os.X_OK):
            raise ReservationError(f"feedback folder {req.feedpath} is not writable")
    elif any("{feedback}" in arg for arg in req.command):
        raise ReservationError("{feedback} is used in the command but --feedpath is not given")
    if req.nolog and (req.detach or req.logfile):
        raise ReservationError(
            "--no-log goes without --detach and --log: a detached task's output needs a log"
        )
    if req.logmax < 1:
        raise ReservationError("--log-max must be at least 1 byte")
    if req.logfile:  # like --feedpath: a typo in a folder's name does not silently create it
        folder = os.path.dirname(os.path.abspath(req.logfile))
        if not os.path.isdir(folder):
            what = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise ReservationError(f"log folder {folder} {what}")


def claim(store: TaskStore, req: LaunchRequest) -> TaskRow:
    """Turn the reservation (made now if none is named) into a RUNNING task row."""
    logfolder = placed_log_folder(store) if not req.nolog and req.logfile is None else None
    launcherpid = os.getpid()
    return store.claim(
        req.taskid,
        Claim(
            name=req.name,
            default_name=os.path.basename(req.command[0]),
            infos=tuple(req.infos),
            unique=req.unique,
            timeout=req.timeout,
            grace=req.grace,
            command=command_text(req.command),
            feedfolder=req.feedpath or None,
            logfile=None if req.nolog else (req.logfile or ""),
            logfolder=logfolder,
            token=os.urandom(8).hex(),
            host=process.host_name(),
            bootid=process.boot_id(),
            launcherpid=launcherpid,
            launcherstart=process.start_ticks(launcherpid),
            pidns=process.pid_namespace(),
            lease=req.lease,
        ),
    )


def substitute(command: list[str], taskid: int, feedfile: str | None) -> list[str]:
    """Replace ``{taskid}`` and ``{feedback}`` inside each argument."""
    out = []
    for arg in command:
        arg = arg.replace("{taskid}", str(taskid))
        if feedfile is not None:
            arg = arg.replace("{feedback}", feedfile)
        out.append(arg)
    return out


def run_task(
    store: TaskStore,
    task: TaskRow,
    req: LaunchRequest,
    flags: SignalFlags,
    on_start: Callable[[tuple[int, str] | None], None] | None = None,
    closed: frozenset[int] = frozenset(),
) -> Ending:
    """Spawn the claimed task, supervise it to its end and archive it.

    ``on_start`` hears whether exec succeeded (None) or failed (status, reason);
    ``closed``: the launcher's standard fds that were closed (see claim_standard_fds).
    """
    relay = open_output(store, task, req, closed)
    try:
        return _run(store, task, req, flags, relay, on_start)
    finally:
        if relay is not None:
            relay.close_unused()


def open_output(
    store: TaskStore, task: TaskRow, req: LaunchRequest, closed: frozenset[int] = frozenset()
) -> Relay | None:
    """The task's log and the relay of its output; a log that cannot be opened is a failed start."""
    if task["logfile"] is None:
        return None
    try:
        log_file = LogFile(str(task["logfile"]), req.logmax, fresh=req.logfile is None)
    except OSError as e:
        # makedirs says "File exists" for a file where the folder should be: say what is wrong
        folder = os.path.dirname(str(task["logfile"]))
        why = f"{folder} is a file" if isinstance(e, FileExistsError) else e.strerror
        reason = f"cannot open log file {task['logfile']}: {why}"
        archive_task(store, task, termerror=reason, exitcode=EXIT_CANNOT_START, feedback={})
        raise StartFailed(EXIT_CANNOT_START, reason) from None
    relay = Relay(log_file, closed)
    relay.capture(foreground=not req.detach)
    return relay


def _run(
    store: TaskStore,
    task: TaskRow,
    req: LaunchRequest,
    flags: SignalFlags,
    relay: Relay | None,
    on_start: Callable[[tuple[int, str] | None], None] | None,
) -> Ending:
    feedfile = task["feedpath"]
    assert feedfile is None or isinstance(feedfile, str)
    name = None if feedfile is None else claim_feedback_name(store, task, feedfile)
    try:
        return _run_owning(store, task, req, flags, relay, on_start, feedfile)
    finally:
        if name is not None:
            name.release()  # the file is read (into history or the kept end): remove it


def claim_feedback_name(store: TaskStore, task: TaskRow, feedfile: str) -> FeedbackName:
    """Hold the feedback file's name for the task's life and make the file, empty, before it starts.

    A stale file of that name (its launcher gone) is removed, whatever it is (a
    link is removed, never followed). A name held by a live launcher belongs to
    another task, of another database sharing the folder: nothing is run (125).
    """
    name = FeedbackName(feedfile)
    try:
        if not _acquire(name, feedback_holder(store, int(task["id"]))):  # type: ignore[call-overload]
            raise StartFailed(
                EXIT_CANNOT_START,
                f"feedback file {feedfile} is in use by a running task (of another database sharing"
                " this --feedpath): nothing started",
            )
        name.create_file()
    except TaskwatcherError as e:
        name.release(remove_file=False)
        archive_task(store, task, termerror=str(e), exitcode=EXIT_CANNOT_START, feedback={})
        raise StartFailed(EXIT_CANNOT_START, str(e)) from None
    return name


RELEASE_WAIT = 5.0  # seconds a retry waits for its last attempt's launcher to let go of the file's name


def _acquire(name: FeedbackName, holder: str) -> bool:
    """Take the feedback file's name. One held under this very holder (this database, this
    task id) is the task's last attempt's launcher finishing: its retry may be started by a
    fork of it before it lets go of the name (just after the archive). That one is waited
    for, a few seconds at most, looking every 10 ms (a lock's release has no event to wait on)."""
    import time

    deadline = time.monotonic() + RELEASE_WAIT
    while not name.acquire(holder):
        if name.holder() != holder or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _run_owning(
    store: TaskStore,
    task: TaskRow,
    req: LaunchRequest,
    flags: SignalFlags,
    relay: Relay | None,
    on_start: Callable[[tuple[int, str] | None], None] | None,
    feedfile: str | None,
) -> Ending:
    taskid = int(task["id"])  # type: ignore[call-overload]
    env = dict(os.environ, TASKWATCHER_TASKID=str(taskid), TASKWATCHER_ATTEMPT=str(task["attempt"] or 1))
    env[TOKEN_VARIABLE] = str(task["token"])
    if feedfile is not None:
        env[FEEDBACK_VARIABLE] = feedfile
    else:  # a task launched from inside another must not write over the outer task's feedback
        env.pop(FEEDBACK_VARIABLE, None)
    argv = substitute(req.command, taskid, feedfile)
    # Watched before the task can write: its first line is a change the launcher sees.
    watch = None if feedfile is None else _watch(feedfile)
    try:
        return _spawn_and_supervise(store, task, req, flags, relay, on_start, env, argv, watch)
    finally:
        if watch is not None:
            watch.close()


def _watch(feedfile: str) -> FileWatch:
    from .filewatch import FileWatch  # only for a task with a feedback file

    return FileWatch(feedfile)


def _spawn_and_supervise(
    store: TaskStore,
    task: TaskRow,
    req: LaunchRequest,
    flags: SignalFlags,
    relay: Relay | None,
    on_start: Callable[[tuple[int, str] | None], None] | None,
    env: dict[str, str],
    argv: list[str],
    watch: FileWatch | None,
) -> Ending:
    taskid = int(task["id"])  # type: ignore[call-overload]
    process.set_child_subreaper()
    stdio, terminal = (relay.child_fds, relay.terminal) if relay is not None else (None, None)
    # --no-log on the terminal: the task takes the terminal's foreground, as a shell's job does.
    foreground = foreground_terminal() if req.nolog and not req.detach else None
    child = fork_held(argv, env, stdio, flags.ignored, terminal, foreground)
    flags.job = child.pid  # a stop of the launcher (Ctrl-Z) is passed to the task's group
    flags.terminal, flags.holder = foreground, child.pid
    if relay is not None:
        relay.child_started()
    crash_point("spawned")
    log.debug("task %d: spawned pid %d: %s", taskid, child.pid, argv)
    token = str(task["token"])
    row = store.record_spawn(
        taskid,
        token,
        pid=child.pid,
        procstart=child.identity.start,
        command=command_text(argv),
        launcherpid=os.getpid(),
        launcherstart=process.start_ticks(os.getpid()),
    )
    if row is None:  # archived as lost meanwhile: do not run it
        child.abort()
        raise StoreError(f"task {taskid} vanished from the database before it started")
    # A stop asked for before the command runs (control --kill, which may have signalled
    # the --detach parent rather than us, or a signal to us) means it never runs.
    early = None if row["stopreason"] else next(iter(flags.drain()), None)
    stopped = row["stopreason"] or (early and f"launcher interrupted by {process.signal_name(early)}")
    if stopped:
        child.abort()
        failure: tuple[int, str] | None = (EXIT_CANNOT_START, f"{stopped} before it started")
    else:
        failure = child.release()
        if failure is not None:
            os.waitpid(child.pid, 0)
    if on_start is not None:
        on_start(failure)
    read = None  # what the supervisor read of the feedback file (and stored)
    if failure is not None:
        interrupted = early if not req.detach else None
        ending = Ending(failure[0], "", failure[1], exec_failed=not stopped, interrupted=interrupted)
    else:
        lease = None
        if store.shared:  # many hosts: a lease on the database's clock, kills by notification
            from .lease import Lease

            lease = Lease.of(store, taskid, token, req.lease, req.grace)
        supervisor = Supervisor(
            store, taskid, token, child, flags, watch, req.timeout, req.grace, relay, not req.detach, lease
        )
        ending = supervisor.run()
        read = supervisor.feedstate
    flags.give_back_terminal()
    if child.pidfd is not None:
        os.close(child.pidfd)
    # Read here, by the file's holder, outside any transaction; kept with the end if that must wait.
    feedback = final_feedback(store, task, read)
    end = dict(termsignal=ending.termsignal, termerror=ending.termerror, exitcode=ending.exitcode)
    log.debug("task %d ended: exit %s %s %s", taskid, ending.exitcode, ending.termsignal, ending.termerror)
    if failure is None:
        end["retry_kind"] = retry_kind(ending)
    if archive_end(store, task, end, feedback):
        try:
            prune_by_config(store)  # history grows here, so here it is kept to its configured size
        except TaskwatcherError as e:
            sys.stderr.write(f"taskwatcher: history not pruned: {e}\n")
    return ending


def retry_kind(ending: Ending) -> str | None:
    """What kind of end this is for ``--retry-on``: ``timeout``, ``failure`` (a non-zero
    exit, or death by a signal nobody asked for), or None (success; a kill, an
    interrupted launcher: never retried)."""
    if ending.interrupted is not None or ending.exec_failed:
        return None
    if ending.termerror.startswith("timeout"):
        return "timeout"
    if ending.termerror.startswith(("killed by request", "launcher interrupted")):
        return None
    return "failure" if ending.exitcode != 0 or ending.termsignal else None


def archive_end(store: TaskStore, task: TaskRow, end: dict[str, object], feedback: dict[str, str]) -> bool:
    """Archive the task's end; True if it is in history now.

    The end is never dropped: a database locked past the busy timeout (or
    unwritable, or out of reach) gets it kept beside it for the next command (and, on a
    store many hosts share, for a recorder that retries until it is back); if that cannot be
    written either (disk full), the database is tried once more, and failing
    that the end is said on stderr in one line, with all history would hold.
    ``feedback`` is the final feedback, read by the launcher (which holds the file).
    """
    taskid, token = task["id"], task["token"]
    try:
        if not archive_task(store, task, feedback=feedback, **end) and store.shared:  # type: ignore[arg-type]
            # Archived meanwhile by another host as lost (its lease ran out): the real end replaces
            # that (in the history row: the task is no longer in line to be retried).
            plain = {k: v for k, v in end.items() if k != "retry_kind"}
            store.finish(taskid, token, feedback=feedback, **plain)  # type: ignore[arg-type]
        log.debug("task %d archived", taskid)
        return True
    except StoreError as e:
        failure = str(e)
    end = {k: v for k, v in end.items() if k != "retry_kind"}  # an end kept aside is not retried
    try:
        kept = keep_pending_end(store, taskid, token, {**end, "feedback": feedback})
    except (OSError, StoreError) as e:  # disk full; or a pending folder that is not ours
        log.debug("could not keep the end aside: %s", e)
        try:
            archive_task(store, task, feedback=feedback, **end)  # type: ignore[arg-type]
            return True
        except StoreError as again:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            failure = f"{failure}; cannot keep it aside either ({why}); {again}"
        import json  # only here: the launcher's start-up does not need it

        sys.stderr.write(
            f"taskwatcher: task {taskid} ended but its end could not be recorded ({failure}):"
            f" {json.dumps({**end, 'feedback': feedback})}\n"
        )
        return False
    if store.shared:  # the next command on this host may be long in coming: a recorder retries
        from .pending import record_when_back

        record_when_back(store)
        later = "; it is recorded once the database is back"
    else:
        later = " for the next command"
    sys.stderr.write(f"taskwatcher: task {taskid} ended but {failure}: its end is kept in {kept}{later}\n")
    return False


def launch(db: str | None, req: LaunchRequest) -> Ending:
    """``taskwatcher launch``: run the task; return how it ended.

    In the foreground that is the task's own end; with ``detach`` it is exit 0
    as soon as the task runs under a supervisor of its own.
    """
    validate(req)
    from .queueing import check_request, wants_queue

    queued = wants_queue(req)
    if queued:
        check_request(req)
    closed = claim_standard_fds()  # before any fd is made: none may take 0-2's place
    flags = SignalFlags()
    try:
        with Store(db) as store:
            reconcile(store)
            if queued:
                return _launch_queued(store, req, flags, closed)
            task = claim(store, req)
            log.debug("claimed task %s (%s) in %s; log %s", task["id"], task["name"], store.key,
                      task["logfile"])  # fmt: skip
            crash_point("reserved")
            if not req.detach:
                return run_task(store, task, req, flags, closed=closed)
            relay = open_output(store, task, req, closed)
        _detach(store.target, task, req, relay, flags.ignored)
        return Ending(0)
    finally:
        flags.close()


def _launch_queued(
    store: TaskStore, req: LaunchRequest, flags: SignalFlags, closed: frozenset[int]
) -> Ending:
    """A launch through the line: with ``detach``, the task is queued (a row) and its id
    printed at once, whoever finds its turn come starts it; in the foreground this
    launcher waits in line for its turn, runs the task, and again for each retry."""
    from .model import Waiter
    from .queueing import enqueue, start_ready, wait_turn

    if req.detach:
        taskid = enqueue(store, req, None)
        print(taskid, flush=True)
        try:
            start_ready(store)  # its turn may be now: then a launcher starts it
        except TaskwatcherError as e:  # it is queued: the next command starts it
            log.debug("task %d queued, not started yet: %s", taskid, e)
        return Ending(0)
    me = os.getpid()
    identity = (process.start_ticks(me), process.boot_id(), process.host_name(), process.pid_namespace())
    waiter = Waiter(me, *identity)
    taskid = enqueue(store, req, waiter)
    req = req._replace(taskid=taskid)
    while True:
        row = wait_turn(store, taskid, flags, req.lease)
        if row is None:
            return _ending_of(store, taskid, flags)
        task = claim(store, req)
        ending = run_task(store, task, req, flags, closed=closed)
        again = store.task(taskid)
        if again is None or again.status != "QUEUED" or ending.interrupted is not None:
            return ending


def _ending_of(store: TaskStore, taskid: int, flags: SignalFlags) -> Ending:
    """How a task that left the line without running ended (killed, a dependency failed)."""
    entry = store.finished(taskid)
    interrupted = flags.received[0] if flags.received else None
    if entry is None:
        return Ending(EXIT_CANNOT_START, "", "left the line", exec_failed=True, interrupted=interrupted)
    return Ending(entry.exitcode, entry.termsignal or "", entry.termerror or "", exec_failed=True,
                  interrupted=interrupted)  # fmt: skip


def start_queued(db: str, taskid: int) -> None:
    """``launch --queued ID``: the detached launcher a starter spawned for a queued task.

    Its turn taken (RESERVED): claim it and run it, in the folder and environment it was
    queued with, as ``--detach`` does. Still QUEUED: its retry's delay is running; sleep
    it out, then start what is ready. Anything else (killed, claimed by another
    launcher): nothing to do.
    """
    from . import queueing
    from .queueing import environment_of, request_of, wait_delay_then_start

    queueing.forking = True  # a launcher: the next in line is started by a fork of this one
    closed = claim_standard_fds()
    with Store(db) as store:
        row = store.task(taskid)
        if row is None or not row.spec:
            return
        if row.status == "QUEUED":
            wait_delay_then_start(store, taskid)
            return
        if row.status != "RESERVED":
            return
        from .queueing import spec_of

        spec = spec_of(row)
        req = request_of(row)
        os.environ.clear()
        os.environ.update(environment_of(store, taskid))
        if isinstance(spec.get("umask"), int):
            os.umask(spec["umask"])
        try:
            os.chdir(spec.get("cwd") or "/")
        except OSError as e:
            archive_task(store, row, termerror=f"cannot start in {spec.get('cwd')}: {e.strerror}",
                         exitcode=EXIT_CANNOT_START)  # fmt: skip
            return
        try:
            task = claim(store, req)
        except ReservationError as e:  # claimed by another launcher, or killed: not ours to run
            log.debug("task %d: %s", taskid, e)
            return
        relay = open_output(store, task, req, closed)
        null = os.open(os.devnull, os.O_RDWR)
        messages = relay.log.fd if relay is not None and relay.log is not None else null
        for target, fd in enumerate((null, null, messages)):
            os.dup2(fd, target)
        try:
            _run(store, task, req, SignalFlags(frozenset()), relay, None)
        finally:
            if relay is not None:
                relay.close_unused()


def _detach(db: str, task: TaskRow, req: LaunchRequest, relay: Relay | None, ignored: frozenset[int]) -> None:
    """Fork a supervisor in its own session; print the id once the task runs."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    if os.fork():
        os.close(report_w)
        if relay is not None:
            relay.close_unused()
        report = b""
        while chunk := os.read(report_r, 4096):
            report += chunk
        code, _, message = report.decode(errors="replace").partition(" ")
        if code == "0":
            print(task["id"], flush=True)
            return
        raise StartFailed(int(code or EXIT_CANNOT_START), message or "the supervisor died")
    # The supervisor: its own session, so that a closing terminal does not stop it.
    os.close(report_r)
    from . import queueing

    queueing.forking = True  # a launcher: the next in line is started by a fork of this one
    report = _Report(report_w)
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        # The supervisor's own few words (a warning, a kept end) go to the task's log.
        messages = relay.log.fd if relay is not None and relay.log is not None else null
        for target, fd in enumerate((null, null, messages)):
            os.dup2(fd, target)
        with Store(db) as store:  # a connection is never reused across fork
            try:
                _run(store, task, req, SignalFlags(ignored), relay, report.started)
            finally:
                if relay is not None:
                    relay.close_unused()
    except BaseException as e:
        report.send(f"{EXIT_CANNOT_START} {e}")
        if not isinstance(e, TaskwatcherError):  # one the parent says in its one line needs no traceback
            log.exception("detached supervisor failed")
    finally:
        os._exit(0)


class _Report:
    """The detached supervisor's one message to the waiting parent, sent at most once."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def started(self, failure: tuple[int, str] | None) -> None:
        self.send("0 " if failure is None else f"{failure[0]} {failure[1]}")

    def send(self, text: str) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, text.encode())
        except OSError:
            pass
        os.close(fd)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
