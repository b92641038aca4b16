"""The supervisor: the poll loop that watches one spawned task to its end.

It sleeps in poll() on the child's pidfd and a signal wake-up pipe, with the next
deadline (a status change, the timeout, the end of a grace period) as poll's
timeout: no fixed tick, no CPU while the task is quiet. The launcher is the task's
child subreaper, so every process the task starts, even one that left its process
group, is its descendant and is stopped with it. What it learns (status, heartbeat,
the latest feedback) goes to the store in one short operation each; how the task
ended is returned.

The feedback file is watched with inotify (:mod:`taskwatcher.filewatch`): a change
wakes the loop, which reads what was added and stores it with the heartbeat, so that
readers only read. A task that writes its file many times a second is read at most
every :data:`FEEDBACK_COALESCE` seconds: the watch leaves the poll set until then,
and the kernel folds the changes meanwhile into one event.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from functools import cache

from . import process
from .crash import crash_point
from .errors import StoreError, TaskwatcherError
from .feedback import FeedbackState, read_increment
from .logs import Logger
from .model import Ending
from .spawn import EXIT_TIMEOUT, Child, decode_wait_status, foreground_terminal, give_terminal
from .status import TaskStatus, feedback_signature, heartbeat_status, next_status_change

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .filewatch import FileWatch
    from .lease import Lease
    from .output import Relay
    from .store import TaskStore

log = Logger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Job control: Ctrl-Z, or a background launcher touching its terminal, stops the task too.
_JOB_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
KILL_MARGIN = 1.0  # seconds after SIGKILL before what still lives is reported and left
_LEFTOVER_LOOK = 0.05  # seconds between looks at leftovers during a grace period
# Seconds between two reads of a feedback file that keeps changing: a change after a quiet
# spell is read at once; a stream of them reaches the store at most this late, at this pace.
FEEDBACK_COALESCE = 0.1
FALLBACK_LOOK = 1.0  # seconds between looks at the feedback file where inotify cannot be had


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
        store: TaskStore,
        task_id: int,
        token: str,
        child: Child,
        flags: SignalFlags,
        watch: FileWatch | None,
        timeout: float | None,
        grace: float,
        relay: Relay | None = None,
        forward: bool = True,
        lease: Lease | None = None,
    ) -> None:
        self.store, self.task_id, self.token, self.child, self.flags = store, task_id, token, child, flags
        self.watch, self.timeout, self.grace, self.relay = watch, timeout, grace, relay
        self.feedfile = None if watch is None else watch.paths[0]
        # Foreground: a signal to the launcher reaches the task as that same signal
        # (Ctrl-C as SIGINT). Detached, or asked by control --kill: SIGTERM.
        self.forward = forward
        self.started = self.last_heartbeat = self.last_look = time.monotonic()
        self.status = TaskStatus.RUNNING
        # The feedback file's (ino, mtime, size): the launcher made it empty, which is no heartbeat.
        # Written to already (the task ran before this), it is read at the first look.
        sig = None if self.feedfile is None else feedback_signature(self.feedfile)
        self.signature = sig if sig is None or sig[2] == 0 else (0, 0, 0)
        self.feedstate = FeedbackState()  # what the launcher has read of the file, as stored
        self.poller = select.poll()
        # When the file is next read: after a change that came too soon after the last read,
        # or, without inotify, at the next look. None: at the next change.
        self.feedback_due: float | None = None
        if watch is not None and watch.fd is None:
            self.feedback_due = self.started + (FALLBACK_LOOK if self.signature == sig else 0.0)
        self.stop_reason: str | None = None
        self.stop_exitcode: int | None = None
        self.kill_at: float | None = None  # when the grace period of a stop ends
        self.sent: int | None = None  # the last signal sent to the tree
        self.signalled: set[process.Identity] = set()  # who got it (newcomers get it too)
        self.refused: set[process.Identity] = set()  # processes this user may not signal
        self.refusal_told = False
        self.interrupted: int | None = None  # the signal that interrupted this launcher
        self.reaped = False
        # A store many hosts share: the lease, renewed on its schedule, and its descriptor,
        # through which a kill asked on any host wakes the loop (lease.py).
        self.lease, self.lease_fd = lease, None

    # -- the loop --------------------------------------------------------------
    def run(self) -> Ending:
        poller = self.poller
        poller.register(self.flags.wake_r, select.POLLIN)
        if self.watch is not None and self.watch.fd is not None:
            poller.register(self.watch.fd, select.POLLIN)
        if self.child.pidfd is not None:
            poller.register(self.child.pidfd, select.POLLIN)
        if self.relay is not None:
            self.relay.register(poller)
        crash_point("waiting")
        while True:
            self._watch_lease(poller)
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
                self._check_heartbeat(now, self._feedback_changed(events, now))
                self._check_timeout(now)
                self._check_lease()
            elif self.kill_at is not None and (now >= self.kill_at or not self._lease_kept()):
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
        wait = self._next_status_wake(now)
        if self.lease is not None:
            renew = self.lease.wake_in(now)
            wait = renew if wait is None else min(wait, renew)
        return wait

    def _next_status_wake(self, now: float) -> float | None:
        feedback = None if self.feedback_due is None else max(0.0, self.feedback_due - now)
        if not self.timeout:
            return feedback
        if self.feedfile is None:
            return self.started + self.timeout - now
        status = next_status_change(now - self.last_heartbeat, self.timeout)
        return status if feedback is None else min(status, feedback)

    # -- the lease (a shared store) ---------------------------------------------
    def _watch_lease(self, poller: select.poll) -> None:
        """The lease's descriptor in the poll set (it changes when the store connects again)."""
        fd = None if self.lease is None or self.stop_reason is not None else self.lease.fd
        if fd != self.lease_fd:
            if self.lease_fd is not None:
                poller.unregister(self.lease_fd)
            if fd is not None:
                poller.register(fd, select.POLLIN)
            self.lease_fd = fd

    def _lease_kept(self) -> bool:
        """During the grace period: the lease renewed on its schedule; False once it is lost
        (the grace is cut short: the task must be dead before the lease runs out)."""
        return self.lease is None or self.lease.keep()

    def _check_lease(self) -> None:
        if self.lease is not None and self.stop_reason is None:
            reason = self.lease.check()
            if reason:
                self._begin_stop(reason, None)

    # -- feedback, heartbeat and timeout ---------------------------------------
    def _feedback_changed(self, events: list[tuple[int, int]], now: float) -> bool:
        """Whether the feedback file is to be read now: the watch saw a change (and the
        last read is FEEDBACK_COALESCE old), or a read put off until now is due."""
        watch = self.watch
        if watch is None:
            return False
        due = self.feedback_due is not None and now >= self.feedback_due
        if watch.fd is None:  # no inotify: a look at the file's signature every FALLBACK_LOOK
            if due:
                self.feedback_due = now + FALLBACK_LOOK
            return False  # read if the look finds it changed
        if due:  # back in the poll set; what came meanwhile is read now
            self.feedback_due = None
            self.poller.register(watch.fd, select.POLLIN)
            return watch.changed()
        if not any(fd == watch.fd for fd, _ in events) or not watch.changed():
            return False
        # Read now, then keep out of the poll set for FEEDBACK_COALESCE: a task writing in
        # a tight loop wakes the launcher once per period, not once per line.
        self.feedback_due = now + FEEDBACK_COALESCE
        self.poller.unregister(watch.fd)
        return True

    def _check_heartbeat(self, now: float, read: bool = False) -> None:
        """Look at the feedback file: a change of its (inode, mtime, size) is a heartbeat;
        with ``read`` (it changed, the watch says), what was added is read and stored
        with the heartbeat, in one operation."""
        if self.feedfile is None:
            return
        sig = feedback_signature(self.feedfile)
        beat = sig != self.signature
        if beat:
            # The change happened after the last look; the file's mtime says when.
            written = now - max(0.0, time.time() - sig[1] / 1e9) if sig else now
            self.last_heartbeat = min(max(written, self.last_look), now)
            self.signature = sig
        self.last_look = now
        feedback = self._read_feedback() if beat or read else None
        silence = now - self.last_heartbeat
        status = heartbeat_status(silence, self.timeout, True)
        if beat or feedback is not None or status != self.status:
            self.status = status
            when = time.time() - silence
            self._record(status, when, feedback)

    def _read_feedback(self) -> FeedbackState | None:
        """The file read on from the last read; the state if that changed it, else None."""
        try:
            changed = read_increment(self.feedfile, self.feedstate)  # type: ignore[arg-type]
        except TaskwatcherError as e:  # not a regular file any more, or unreadable: no news
            log.debug("%s: the feedback last read stands", e)
            return None
        if not changed:
            return None
        log.debug("task %d: feedback read to byte %d", self.task_id, self.feedstate.offset)
        return self.feedstate

    def _check_timeout(self, now: float) -> None:
        if not self.timeout:
            return
        if self.feedfile is None:
            if now - self.started >= self.timeout:
                self._begin_stop(f"timeout: ran for more than {self.timeout:g} s", EXIT_TIMEOUT)
        elif now - self.last_heartbeat >= self.timeout:
            self._begin_stop(f"timeout: no feedback for {self.timeout:g} s", EXIT_TIMEOUT)

    def _record(self, status: TaskStatus, heartbeat: float, feedback: FeedbackState | None = None) -> None:
        try:
            self.store.record_status(self.task_id, self.token, str(status), heartbeat, feedback)
        except StoreError as e:  # a status is not worth dying for; the archive is
            log.warning("could not record status: %s", e)
            # The whole state is stored each time: the next record carries what this one lost.

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
            f"taskwatcher: task {self.task_id}: cannot stop {_shown(_describe(self.refused))}"
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
                if not self._lease_kept():
                    break  # the lease is lost: what is left must be dead before it runs out
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
            f"taskwatcher: task {self.task_id}: {_shown(_describe(left))} still running"
            f" {KILL_MARGIN:g} s after SIGKILL; left running\n"
        )


def _describe(idents: set[process.Identity]) -> str:
    """``pid 12 (sleep)``, or ``pids 12 (sleep), 13 (sudo)``: who, for a message."""
    named = [f"{i.pid} ({_comm(i)})" for i in sorted(idents)]
    return ("pid " if len(named) == 1 else "pids ") + ", ".join(named)


def _shown(text: str) -> str:
    """``text`` for the terminal: a process may name itself anything, escape sequences included."""
    from .display import escape_control  # only for these rare messages: the launcher stays small

    return escape_control(text)


@cache  # the name as first seen: history is written once the process is gone
def _comm(ident: process.Identity) -> str:
    try:
        with open(f"/proc/{ident.pid}/comm", "rb") as f:
            return f.read().strip().decode(errors="replace")
    except OSError:
        return "?"


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
