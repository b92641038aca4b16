"""The launcher: claim a reservation, spawn the task, supervise it, stop it, archive it.

One launcher process supervises one task. It sleeps in poll() on the child's
pidfd and a signal wake-up pipe, with the next deadline (a status change, the
timeout, the end of a grace period) as poll's timeout: no fixed tick, no CPU
while the task is quiet. It is the task's child subreaper, so every process the
task starts, even one that left its process group, is its descendant and is
stopped with it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections import namedtuple
from collections.abc import Callable
from functools import cache

from . import process
from .control import (
    TOKEN_VARIABLE,
    archive_task,
    feedback_holder,
    final_feedback,
    keep_pending_end,
    placed_log_path,
    prune_by_config,
    reconcile,
)
from .errors import ReservationError, StartFailed, StoreError, TaskwatcherError
from .feedback import FEEDBACK_VARIABLE, FeedbackName
from .logs import Logger
from .output import DEFAULT_LOG_MAX, LogFile, Relay, claim_standard_fds
from .spawn import (
    EXIT_CANNOT_START,
    EXIT_TIMEOUT,
    Child,
    decode_wait_status,
    foreground_terminal,
    fork_held,
    give_terminal,
)
from .status import TaskStatus, heartbeat_status, next_status_change
from .store import Store, command_text

log = Logger(__name__)

DEFAULT_GRACE = 5.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Job control: Ctrl-Z, or a background launcher touching its terminal, stops the task too.
_JOB_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
KILL_MARGIN = 1.0  # seconds after SIGKILL before what still lives is reported and left
_LEFTOVER_LOOK = 0.05  # seconds between looks at leftovers during a grace period


# (namedtuples, not typing.NamedTuple or dataclasses: the launcher's memory is a
# figure users watch, and typing alone weighs 1.7 MB.)
class LaunchRequest(
    namedtuple(
        "LaunchRequest",
        "command taskid name infos feedpath timeout grace unique detach logfile logmax nolog",
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
        ),
    )
):
    """What ``taskwatcher launch`` was asked to run, and how: the argv (list of str);
    a reserved task id or None; name; (info1, info2, info3); the feedback folder;
    timeout and grace in seconds; unique, detach; the log file (None: the default
    one), its cap in bytes, and nolog (foreground only: no log, the terminal as is)."""

    __slots__ = ()


class Ending(
    namedtuple(
        "Ending", "exitcode termsignal termerror exec_failed interrupted", defaults=("", "", False, None)
    )
):
    """How a task ended, as history records it: the exit status (None if unknown),
    the signal name or "", the reason in words, and whether exec itself failed;
    ``interrupted``: the signal that interrupted a foreground launcher (which the
    CLI then ends itself by, see :func:`process.end_by_signal`), or None."""

    __slots__ = ()


def feedback_file(feedpath: str, taskid: int) -> str:
    return os.path.join(os.path.abspath(feedpath), f"feedback_{taskid}.log")


def default_logfile(db_path: str, taskid: int) -> str:
    return placed_log_path(db_path, taskid)


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


class SignalFlags:
    """Signal handlers only note the signal and wake poll(); the main loop acts.

    A stop signal ignored when the launcher starts (``nohup``, SIG_IGN inherited)
    stays ignored, here and in the task (``ignored``). :meth:`close` puts back
    the handlers found, so a script calling the API gets its own Ctrl-C back.
    """

    def __init__(self, ignored: frozenset[int] | None = None) -> None:
        if ignored is None:
            ignored = frozenset(
                s for s in _STOP_SIGNALS + _JOB_SIGNALS if signal.getsignal(s) == signal.SIG_IGN
            )
        self.ignored = ignored
        self.job: int | None = None  # the task's process group, once it is spawned
        self.terminal: int | None = None  # the launcher's terminal, while the task has its foreground
        self.holder: int | None = None  # the task's group, given that terminal
        self.received: list[int] = []
        self.resized = False  # SIGWINCH: the terminal the task's pseudo-terminal mirrors changed size
        self.wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._previous: dict[int, object] = {}
        for sig in _STOP_SIGNALS:
            if sig not in ignored:
                self._previous[sig] = signal.signal(sig, self._note)
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        self._previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._resize)
        for sig in _JOB_SIGNALS:
            if sig not in ignored:
                self._previous[sig] = signal.signal(sig, self._suspend)

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def _resize(self, _signum: int, _frame: object) -> None:
        self.resized = True

    def _suspend(self, signum: int, _frame: object) -> None:
        self.suspend(signum)

    def suspend(self, signum: int) -> None:
        """Stop the task's group, then this launcher, by the signal's default action;
        continued (``fg``, ``bg``), continue the task. Done here, not in the loop: a
        background write that raised SIGTTOU is retried at once, the loop never ran.

        SIGTSTP first, for a program that tidies up before it stops; then SIGSTOP, since
        the kernel drops a terminal stop signal to a group in a session of its own (an
        orphaned group), as the task's is but under --no-log. The timeout's clock runs on: the
        loop, woken by this signal, enforces it as soon as the launcher is continued.
        """
        self._signal_job(signum)
        self._signal_job(signal.SIGSTOP)
        self._take_terminal_back()  # the shell gets it back from us, as from a stopped job
        if signum in self._previous:
            # Stopped by that very signal, so the shell says why ("Stopped", "Stopped (tty output)").
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            signal.signal(signum, self._suspend)
        else:  # the task was stopped by a signal of someone else's (SIGSTOP)
            os.kill(os.getpid(), signal.SIGSTOP)
        if self.terminal is not None and self.job is not None and foreground_terminal() is not None:
            give_terminal(self.terminal, self.job)  # continued in the foreground (fg, not bg)
        self._signal_job(signal.SIGCONT)

    def give_back_terminal(self) -> None:
        """The task has ended: its terminal's foreground is the launcher's group again."""
        self._take_terminal_back()
        self.terminal = None

    def _take_terminal_back(self) -> None:
        """Only from the task's group: not if the launcher runs in the background (``bg``),
        where the shell holds the terminal."""
        if self.terminal is None:
            return
        try:
            held = os.tcgetpgrp(self.terminal) == self.holder
        except OSError:
            return
        if held:
            give_terminal(self.terminal, os.getpgrp())

    def _signal_job(self, sig: int) -> None:
        if self.job is None:
            return
        try:
            os.killpg(self.job, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def drain(self) -> list[int]:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass
        got, self.received = self.received, []
        return got

    def close(self) -> None:
        """Put back the signal handlers and wake-up fd found at start."""
        self.give_back_terminal()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self.wake_r)
        os.close(self._wake_w)


class Supervisor:
    """Supervises one spawned task until it and all its descendants are gone."""

    def __init__(
        self,
        store: Store,
        task_id: int,
        token: str,
        child: Child,
        flags: SignalFlags,
        feedfile: str | None,
        timeout: float | None,
        grace: float,
        relay: Relay | None = None,
        forward: bool = True,
    ) -> None:
        self.store, self.task_id, self.token, self.child, self.flags = store, task_id, token, child, flags
        self.feedfile, self.timeout, self.grace, self.relay = feedfile, timeout, grace, relay
        # Foreground: a signal to the launcher reaches the task as that same signal
        # (Ctrl-C as SIGINT). Detached, or asked by control --kill: SIGTERM.
        self.forward = forward
        self.started = self.last_heartbeat = self.last_look = time.monotonic()
        self.status = TaskStatus.RUNNING
        # The feedback file's (ino, mtime, size): the launcher made it empty, which is no heartbeat.
        self.signature = None if feedfile is None else _signature(feedfile)
        self.stop_reason: str | None = None
        self.stop_exitcode: int | None = None
        self.kill_at: float | None = None  # when the grace period of a stop ends
        self.sent: int | None = None  # the last signal sent to the tree
        self.signalled: set[process.Identity] = set()  # who got it (newcomers get it too)
        self.refused: set[process.Identity] = set()  # processes this user may not signal
        self.refusal_told = False
        self.interrupted: int | None = None  # the signal that interrupted this launcher
        self.reaped = False

    # -- the loop --------------------------------------------------------------
    def run(self) -> Ending:
        poller = select.poll()
        poller.register(self.flags.wake_r, select.POLLIN)
        if self.child.pidfd is not None:
            poller.register(self.child.pidfd, select.POLLIN)
        if self.relay is not None:
            self.relay.register(poller)
        process.crash_point("waiting")
        while True:
            wait = self._next_wake()
            due = None if wait is None else time.monotonic() + wait
            # poll() takes an int of milliseconds: a far deadline is approached a day at a time.
            events = poller.poll(None if wait is None else max(0, int(min(wait, 86400.0) * 1000) + 1))
            if self.relay is not None:
                output_only = bool(events)
                for fd, mask in events:
                    if self.relay.owns(fd):
                        self.relay.handle(fd, mask)
                    else:
                        output_only = False
                if self.flags.resized:
                    self.flags.resized = False
                    self.relay.resize_terminal()
                # Output alone changes nothing else: a chatty task costs a read and a write
                # per chunk, not a look at /proc. An exit or a signal wakes a non-output fd.
                if output_only and (due is None or time.monotonic() < due):
                    continue
            for sig in self.flags.drain():
                self._on_signal(sig)
            status = self._reap_main()
            if status is not None:
                return self._finish(status)
            self._reap_orphans()
            now = time.monotonic()
            if self.stop_reason is None:
                self._check_heartbeat(now)
                self._check_timeout(now)
            elif self.kill_at is not None and now >= self.kill_at:
                self._signal_tree(signal.SIGKILL)
                self.kill_at = None
            elif self.kill_at is not None:
                self._signal_newcomers()
            if self.refused and not self.refusal_told:
                self._tell_refused("it runs on: waiting for it to end")

    def _next_wake(self) -> float | None:
        now = time.monotonic()
        if self.stop_reason is not None:
            # during the grace period, a look every 50 ms gives what the tree forks meanwhile the signal too
            return None if self.kill_at is None else min(_LEFTOVER_LOOK, self.kill_at - now)
        if not self.timeout:
            return None
        if self.feedfile is None:
            return self.started + self.timeout - now
        return next_status_change(now - self.last_heartbeat, self.timeout)

    # -- heartbeat and timeout -------------------------------------------------
    def _check_heartbeat(self, now: float) -> None:
        if self.feedfile is None:
            return
        sig = _signature(self.feedfile)
        beat = sig != self.signature
        if beat:
            # The change happened after the last look; the file's mtime says when.
            written = now - max(0.0, time.time() - sig[1] / 1e9) if sig else now
            self.last_heartbeat = min(max(written, self.last_look), now)
            self.signature = sig
        self.last_look = now
        silence = now - self.last_heartbeat
        status = heartbeat_status(silence, self.timeout, True)
        if beat or status != self.status:
            self.status = status
            when = time.time() - silence
            self._record(status=str(status), heartbeat=when, lastupdate=int(when))

    def _check_timeout(self, now: float) -> None:
        if not self.timeout:
            return
        if self.feedfile is None:
            if now - self.started >= self.timeout:
                self._begin_stop(f"timeout: ran for more than {self.timeout:g} s", EXIT_TIMEOUT)
        elif now - self.last_heartbeat >= self.timeout:
            self._begin_stop(f"timeout: no feedback for {self.timeout:g} s", EXIT_TIMEOUT)

    def _record(self, **fields: object) -> None:
        try:
            self.store.update_task(self.task_id, where_token=self.token, **fields)
        except StoreError as e:  # a status is not worth dying for; the archive is
            log.warning("could not record status: %s", e)

    # -- stopping ----------------------------------------------------------------
    def _on_signal(self, sig: int) -> None:
        if self.stop_reason is not None:
            log.debug("second %s: killing now", process.signal_name(sig))
            self._signal_tree(signal.SIGKILL)
            self.kill_at = None
            return
        requested = self._requested_stop()
        if requested:  # control --kill: the row says why, and the task gets SIGTERM
            self._begin_stop(requested, None)
            return
        self.interrupted = sig
        reason = f"launcher interrupted by {process.signal_name(sig)}"
        self._begin_stop(reason, None, sig if self.forward else signal.SIGTERM)

    def _requested_stop(self) -> str | None:
        try:
            row = self.store.task(self.task_id)
        except StoreError as e:  # unreadable now: the signal is taken as an interruption
            log.warning("could not read the task's row: %s", e)
            return None
        return row["stopreason"] if row is not None else None

    def _begin_stop(self, reason: str, exitcode: int | None, sig: int = signal.SIGTERM) -> None:
        log.debug("stopping task %d: %s", self.task_id, reason)
        self.stop_reason, self.stop_exitcode = reason, exitcode
        self._signal_tree(sig)
        self.kill_at = time.monotonic() + self.grace

    def _signal_tree(self, sig: int) -> None:
        """Send ``sig`` to every process of the task, each once (a second SIGINT would cut
        a task's own clean-up short), noting those this user may not signal."""
        self.sent = sig
        self.signalled = process.signal_descendants(os.getpid(), sig, refused=self.refused)
        if not self.signalled and not self.refused and not self.reaped:
            # /proc lists no children here (some sandboxes): the group is what we can reach.
            # The main process is our unreaped child, so its group id cannot be anyone else's.
            try:
                os.killpg(self.child.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _signal_newcomers(self) -> None:
        """Give the stop signal to what was forked or re-parented since it was sent."""
        if self.sent is not None:
            self.signalled |= process.signal_descendants(
                os.getpid(), self.sent, skip=self.signalled, refused=self.refused
            )

    def _tell_refused(self, then: str) -> None:
        """Say once, plainly, which of the task's processes this user may not signal."""
        self.refusal_told = True
        sys.stderr.write(
            f"taskwatcher: task {self.task_id}: cannot stop {_describe(self.refused)}"
            f" (not permitted: a setuid program?); {then}\n"
        )

    # -- the end -----------------------------------------------------------------
    def _reap_main(self) -> int | None:
        """The main process's wait status once it has exited, else None."""
        # Where the task has the launcher's terminal, Ctrl-Z stops the task, not the launcher:
        # its stop is seen here, and the launcher stops too, so that the shell sees the job stop.
        watch_stop = os.WUNTRACED if self.flags.terminal is not None else 0
        pid, status = os.waitpid(self.child.pid, os.WNOHANG | watch_stop)
        if pid and os.WIFSTOPPED(status):
            self.flags.suspend(os.WSTOPSIG(status))
            return None
        if pid:
            self.reaped = True
            self.flags.job = None  # its group id may be another's once its last member ends
            return status
        return None

    def _reap_orphans(self) -> None:
        for kid in process.children(os.getpid()):
            if kid != self.child.pid or self.reaped:
                try:
                    os.waitpid(kid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def _finish(self, status: int) -> Ending:
        code, sig = decode_wait_status(status)
        self._stop_leftovers()
        if self.relay is not None:
            self.relay.drain()
        refused = f"; could not stop {_describe(self.refused)}: not permitted" if self.refused else ""
        if self.stop_reason is not None:
            signame = process.signal_name(sig or self.sent or signal.SIGTERM)
            exitcode = self.stop_exitcode if self.stop_exitcode is not None else code
            return Ending(exitcode, signame, self.stop_reason + refused, interrupted=self.interrupted)
        if sig is not None:
            name = process.signal_name(sig)
            # Ctrl-C (or Ctrl-\) on the terminal the task held reached the task's group alone.
            # Had the task been in the launcher's group, the terminal would have sent it to that
            # group too (a script's shell): it is sent there, and the launcher ends by it, so
            # that a calling shell loop stops as it would without taskwatcher.
            typed = self.flags.terminal is not None and sig in (signal.SIGINT, signal.SIGQUIT)
            if typed:
                os.killpg(os.getpgrp(), sig)
            return Ending(code, name, f"killed by signal {name}{refused}", interrupted=sig if typed else None)
        return Ending(code, "", (f"exit code {code}" if code else "") + refused)

    def _stop_leftovers(self) -> None:
        """The task's main process is gone: stop what it left behind, then reap it all.

        Every descendant gets SIGTERM (those forked or re-parented meanwhile too),
        the rest of the grace period, then SIGKILL. Reaping never blocks: a
        leftover that outlives SIGKILL by KILL_MARGIN (one this user may not
        signal) is reported and left, so the launcher ends within grace + margin.
        """
        me = os.getpid()
        if not self._leftovers():
            return
        if self.sent != signal.SIGKILL:
            deadline = time.monotonic() + self.grace if self.kill_at is None else self.kill_at
            if self.sent is None:
                self.sent = signal.SIGTERM
                self.signalled = process.signal_descendants(me, signal.SIGTERM, refused=self.refused)
            while self._leftovers() and time.monotonic() < deadline:
                if self._pause(min(_LEFTOVER_LOOK, max(0.0, deadline - time.monotonic()))):
                    break  # asked again: no more grace
                self._signal_newcomers()
        give_up = time.monotonic() + KILL_MARGIN
        while self._leftovers():
            # each round kills what the last one's victims forked
            process.signal_descendants(me, signal.SIGKILL, refused=self.refused)
            if time.monotonic() >= give_up:
                self._tell_left(me)
                return
            self._pause(0.01)

    def _leftovers(self) -> bool:
        """Reap what has ended (never blocking); True if some descendant still lives."""
        self._reap_orphans()
        return bool(process.children(os.getpid()))

    def _pause(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (a SIGCHLD or a signal wakes it), taking the task's output
        meanwhile so that no leftover blocks on a full pipe; True if a stop signal came."""
        outputs = self.relay.readable_fds() if self.relay is not None else []
        for fd in select.select([self.flags.wake_r, *outputs], [], [], seconds)[0]:
            if fd != self.flags.wake_r:
                self.relay.handle(fd, select.POLLIN)  # type: ignore[union-attr]
        return bool(set(self.flags.drain()) & set(_STOP_SIGNALS))

    def _tell_left(self, me: int) -> None:
        left = set(process.descendants(me))
        if left and left <= self.refused:
            if not self.refusal_told:
                self._tell_refused("left running")
            return
        sys.stderr.write(
            f"taskwatcher: task {self.task_id}: {_describe(left)} still running"
            f" {KILL_MARGIN:g} s after SIGKILL; left running\n"
        )


def _describe(idents: set[process.Identity]) -> str:
    """``pid 12 (sleep)``, or ``pids 12 (sleep), 13 (sudo)``: who, for a message."""
    named = [f"{i.pid} ({_comm(i)})" for i in sorted(idents)]
    return ("pid " if len(named) == 1 else "pids ") + ", ".join(named)


@cache  # the name as first seen: history is written once the process is gone
def _comm(ident: process.Identity) -> str:
    try:
        with open(f"/proc/{ident.pid}/comm", "rb") as f:
            return f.read().strip().decode(errors="replace")
    except OSError:
        return "?"


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)  # a link put in its place is a change of the link, never of its target
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# -- the launch ------------------------------------------------------------------
def claim(store: Store, req: LaunchRequest) -> dict[str, object]:
    """Turn the reservation (made now if none is named) into a RUNNING task row."""
    with store.transaction() as conn:
        t = time.time()  # once the write lock is ours: waiting for it is not run time
        if req.taskid is None:
            name = req.name or os.path.basename(req.command[0])
            try:
                taskid = store.reserve(name, req.infos, req.unique, 0, conn)
            except TaskwatcherError as e:
                raise ReservationError(f"not started: {e}") from None
            row = store.task(taskid)
        else:
            taskid = req.taskid
            row = store.task(taskid)
            if row is None or row["status"] != TaskStatus.RESERVED:
                what = "is running" if row is not None else "is not reserved"
                if row is None and store.history_of(taskid) is not None:
                    what = "has already run"
                raise ReservationError(f"task {taskid} {what}: nothing started")
            if row["expiretime"] is not None and row["expiretime"] <= t:
                raise ReservationError(f"the reservation of task {taskid} has expired: nothing started")
            if row["uniq"] and req.name and row["name"] and req.name != row["name"]:
                raise ReservationError(
                    f"task {taskid} holds the name {row['name']!r} uniquely: --name cannot change it"
                )
            name = req.name or row["name"] or os.path.basename(req.command[0])
            unique = bool(row["uniq"]) or req.unique
            holder = store.name_holder(name, taskid) if unique else None
            if holder is not None:
                raise ReservationError(f"not started: name {name!r} is held by task {holder}")
        assert row is not None
        infos = [new if new is not None else row[f"info{i}"] for i, new in enumerate(req.infos, 1)]
        feedfile = feedback_file(req.feedpath, taskid) if req.feedpath else None
        logfile = None if req.nolog else req.logfile or default_logfile(store.path, taskid)
        fields = dict(
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
            timeout=req.timeout,
            grace=req.grace,
            uniq=int(req.unique or bool(row["uniq"])),
            expiretime=None,
            token=os.urandom(8).hex(),
            command=command_text(req.command),
            feedpath=feedfile,
            logfile=os.path.abspath(logfile) if logfile else None,
            logplaced=int(req.logfile is None and logfile is not None),
            host=process.host_name(),
            bootid=process.boot_id(),
            launcherpid=os.getpid(),
            launcherstart=process.start_ticks(os.getpid()),
            pidns=process.pid_namespace(),
        )
        store.update_task(taskid, conn, **fields)
    return {"id": taskid, **fields}


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
    store: Store,
    task: dict[str, object],
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
    store: Store, task: dict[str, object], req: LaunchRequest, closed: frozenset[int] = frozenset()
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
        archive_task(store, task, termerror=reason, exitcode=EXIT_CANNOT_START, feedback={})  # type: ignore[arg-type]
        raise StartFailed(EXIT_CANNOT_START, reason) from None
    relay = Relay(log_file, closed)
    relay.capture(foreground=not req.detach)
    return relay


def _run(
    store: Store,
    task: dict[str, object],
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


def claim_feedback_name(store: Store, task: dict[str, object], feedfile: str) -> FeedbackName:
    """Hold the feedback file's name for the task's life and make the file, empty, before it starts.

    A stale file of that name (its launcher gone) is removed, whatever it is (a
    link is removed, never followed). A name held by a live launcher belongs to
    another task, of another database sharing the folder: nothing is run (125).
    """
    name = FeedbackName(feedfile)
    try:
        if not name.acquire(feedback_holder(store, int(task["id"]))):  # type: ignore[call-overload]
            raise StartFailed(
                EXIT_CANNOT_START,
                f"feedback file {feedfile} is in use by a running task (of another database sharing"
                " this --feedpath): nothing started",
            )
        name.create_file()
    except TaskwatcherError as e:
        name.release(remove_file=False)
        archive_task(store, task, termerror=str(e), exitcode=EXIT_CANNOT_START, feedback={})  # type: ignore[arg-type]
        raise StartFailed(EXIT_CANNOT_START, str(e)) from None
    return name


def _run_owning(
    store: Store,
    task: dict[str, object],
    req: LaunchRequest,
    flags: SignalFlags,
    relay: Relay | None,
    on_start: Callable[[tuple[int, str] | None], None] | None,
    feedfile: str | None,
) -> Ending:
    taskid = int(task["id"])  # type: ignore[call-overload]
    env = dict(os.environ, TASKWATCHER_TASKID=str(taskid))
    env[TOKEN_VARIABLE] = str(task["token"])
    if feedfile is not None:
        env[FEEDBACK_VARIABLE] = feedfile
    else:  # a task launched from inside another must not write over the outer task's feedback
        env.pop(FEEDBACK_VARIABLE, None)
    argv = substitute(req.command, taskid, feedfile)
    process.set_child_subreaper()
    stdio, terminal = (relay.child_fds, relay.terminal) if relay is not None else (None, None)
    # --no-log on the terminal: the task takes the terminal's foreground, as a shell's job does.
    foreground = foreground_terminal() if req.nolog and not req.detach else None
    child = fork_held(argv, env, stdio, flags.ignored, terminal, foreground)
    flags.job = child.pid  # a stop of the launcher (Ctrl-Z) is passed to the task's group
    flags.terminal, flags.holder = foreground, child.pid
    if relay is not None:
        relay.child_started()
    process.crash_point("spawned")
    log.debug("task %d: spawned pid %d: %s", taskid, child.pid, argv)
    token = str(task["token"])
    with store.transaction() as conn:
        row = store.task(taskid)
        if row is None or row["token"] != token:  # archived as lost meanwhile: do not run it
            child.abort()
            raise StoreError(f"task {taskid} vanished from the database before it started")
        store.update_task(
            taskid,
            conn,
            pid=child.pid,
            command=command_text(argv),
            pgid=child.pid,
            procstart=child.identity.start,
            launcherpid=os.getpid(),
            launcherstart=process.start_ticks(os.getpid()),
        )
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
    if failure is not None:
        interrupted = early if not req.detach else None
        ending = Ending(failure[0], "", failure[1], exec_failed=not stopped, interrupted=interrupted)
    else:
        ending = Supervisor(
            store, taskid, token, child, flags, feedfile, req.timeout, req.grace, relay, not req.detach
        ).run()
    flags.give_back_terminal()
    if child.pidfd is not None:
        os.close(child.pidfd)
    # Read here, by the file's holder, outside any transaction; kept with the end if that must wait.
    feedback = final_feedback(store, {"id": taskid, "feedpath": feedfile})  # type: ignore[arg-type]
    end = dict(termsignal=ending.termsignal, termerror=ending.termerror, exitcode=ending.exitcode)
    log.debug("task %d ended: exit %s %s %s", taskid, ending.exitcode, ending.termsignal, ending.termerror)
    if archive_end(store, taskid, token, end, feedback):
        try:
            prune_by_config(store)  # history grows here, so here it is kept to its configured size
        except TaskwatcherError as e:
            sys.stderr.write(f"taskwatcher: history not pruned: {e}\n")
    return ending


def archive_end(
    store: Store, taskid: int, token: str, end: dict[str, object], feedback: dict[str, str]
) -> bool:
    """Archive the task's end; True if it is in history now.

    The end is never dropped: a database locked past the busy timeout (or
    unwritable) gets it kept beside it for the next command; if that cannot be
    written either (disk full), the database is tried once more, and failing
    that the end is said on stderr in one line, with all history would hold.
    ``feedback`` is the final feedback, read by the launcher (which holds the file).
    """
    try:
        archive_task(store, {"id": taskid, "token": token}, feedback=feedback, **end)  # type: ignore[arg-type]
        log.debug("task %d archived", taskid)
        return True
    except StoreError as e:
        failure = str(e)
    try:
        kept = keep_pending_end(store, taskid, token, {**end, "feedback": feedback})
    except (OSError, StoreError) as e:  # disk full; or a pending folder that is not ours
        log.debug("could not keep the end aside: %s", e)
        try:
            archive_task(store, {"id": taskid, "token": token}, feedback=feedback, **end)  # type: ignore[arg-type]
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
    sys.stderr.write(
        f"taskwatcher: task {taskid} ended but {failure}: its end is kept in {kept} for the next command\n"
    )
    return False


def launch(db: str | None, req: LaunchRequest) -> Ending:
    """``taskwatcher launch``: run the task; return how it ended.

    In the foreground that is the task's own end; with ``detach`` it is exit 0
    as soon as the task runs under a supervisor of its own.
    """
    validate(req)
    closed = claim_standard_fds()  # before any fd is made: none may take 0-2's place
    flags = SignalFlags()
    try:
        with Store(db) as store:
            reconcile(store)
            task = claim(store, req)
            log.debug("claimed task %s (%s) in %s; log %s", task["id"], task["name"], store.path,
                      task["logfile"])  # fmt: skip
            process.crash_point("reserved")
            if not req.detach:
                return run_task(store, task, req, flags, closed=closed)
            relay = open_output(store, task, req, closed)
        _detach(store.path, task, req, relay, flags.ignored)
        return Ending(0)
    finally:
        flags.close()


def _detach(
    db: str, task: dict[str, object], req: LaunchRequest, relay: Relay | None, ignored: frozenset[int]
) -> None:
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
