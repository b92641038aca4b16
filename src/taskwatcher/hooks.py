"""Finish hooks: shell commands run once per task end (``launch --on-end``, the
configuration file's ``[hooks] on_end`` and ``on_failure``).

Whoever archives a task runs its hooks, after the history row is written. In that same
transaction the row says ``hook = "pending"`` and the hooks' *orders* are kept beside it
(table ``hookruns``: the commands, their time limit, the environment they run in), held
by the archiver. It then spawns a detached runner (``taskwatcher launch --run-hooks
HISTORYID``, a grandchild in a session of its own) and goes on, so a hook never blocks
or fails the archive. The runner *claims* the orders (one atomic store step: of two
runners, one runs them), runs each hook under ``sh -c`` in a process group of its own,
with the task's end in its environment, stops it at the time limit (SIGTERM, then
SIGKILL after :data:`HOOK_GRACE`), and writes what happened into the history row's
``hook`` (``--on-end: exit 0``, ``on_failure: killed at the 60 s limit``, ``on_end: could
not start: ...``), dropping the orders in that same step.

Nothing is lost to a crash: every command's reconciliation (:func:`resume_hooks`) looks
at the orders left. Orders not yet claimed whose holder is gone (the archiver died
before its runner started, or the runner never claimed) are taken over, in one step, by
that command, which starts a runner for them. Orders claimed by a runner that is gone
(killed mid-hook) are recorded as :data:`RUNNER_LOST`, never run again: a hook runs at
most once per end, and exactly once unless its runner dies while running it. Liveness
is judged only on the holder's own host (as a launcher's is).
"""

from __future__ import annotations

import json
import os
import signal

from .crash import crash_point
from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    import subprocess

    from .model import PendingHook, TaskRow, Waiter
    from .store import TaskStore

log = Logger(__name__)

DEFAULT_HOOK_TIMEOUT = 60.0  # seconds a hook may run ([hooks] timeout)
HOOK_GRACE = 2.0  # seconds between SIGTERM and SIGKILL at the limit
PENDING = "pending"
RUNNER_LOST = "hook runner lost"  # the outcome of hooks whose runner died while running them
_SECRETS = ("TASKWATCHER_TOKEN", "TASKWATCHER_FEEDBACK")  # a task's own: never a hook's or a runner's


def due_hooks(row: TaskRow, exitcode: int | None) -> tuple[list[tuple[str, str]], float]:
    """The hooks this end runs, as (where it comes from, shell command), in order — the
    task's ``--on-end``, then the configuration's ``on_end``, then, for an end that is not
    exit 0, its ``on_failure`` — and their time limit in seconds."""
    hooks: list[tuple[str, str]] = []
    if row.spec:
        from .queueing import spec_of

        own = spec_of(row).get("on_end")
        if own:
            hooks.append(("--on-end", own))
    from .config import load

    try:
        config = load()
    except Exception as e:  # a broken file must not stop an archive: the launch said so already
        log.debug("hooks: configuration not read: %s", e)
        return hooks, DEFAULT_HOOK_TIMEOUT
    if config.on_end:
        hooks.append(("on_end", config.on_end))
    if config.on_failure and exitcode != 0:
        hooks.append(("on_failure", config.on_failure))
    limit = DEFAULT_HOOK_TIMEOUT if config.hook_timeout is None else config.hook_timeout
    return hooks, limit


def hook_environment(
    row: TaskRow, end: dict[str, object], feedback: dict[str, str], queued_with: dict[str, str]
) -> dict[str, str]:
    """The environment the task was queued with (else ours) with the end in ``TASKWATCHER_*``."""
    env = dict(queued_with or os.environ)
    for name in _SECRETS:  # the task's secrets stay its own
        env.pop(name, None)
    exitcode = end.get("exitcode")
    env.update(
        TASKWATCHER_TASKID=str(row.id),
        TASKWATCHER_NAME=row.name or "",
        TASKWATCHER_EXITCODE="" if exitcode is None else str(exitcode),
        TASKWATCHER_TERMSIGNAL=str(end.get("termsignal") or ""),
        TASKWATCHER_TERMERROR=str(end.get("termerror") or ""),
        TASKWATCHER_FEEDBACK=json.dumps(feedback, ensure_ascii=False),
        TASKWATCHER_LOGFILE=row.logfile or "",
        TASKWATCHER_HOST=row.host or _host(),
        TASKWATCHER_ATTEMPT=str(row.attempt or 1),
    )
    return env


def orders(hooks: list[tuple[str, str]], limit: float, env: dict[str, str]) -> str:
    """The orders kept with the end (JSON text): what the runner runs, for how long, in what environment."""
    return json.dumps({"hooks": hooks, "limit": limit, "env": env})


def _host() -> str:
    from .process import host_name

    return host_name()


def me() -> Waiter:
    """This process's identity, as the holder of hooks' orders."""
    from . import process
    from .model import Waiter

    pid = os.getpid()
    return Waiter(
        pid, process.start_ticks(pid), process.boot_id(), process.host_name(), process.pid_namespace()
    )


def holder_gone(holder: Waiter) -> bool:
    """True if the process holding hooks' orders no longer runs (judged on its own host and
    pid namespace only: elsewhere, it is taken to live)."""
    from . import process

    if holder.launcherpid is None:
        return True
    if holder.host and holder.host != process.host_name():
        return False
    if holder.pidns is not None and holder.pidns != process.pid_namespace():
        return False
    if holder.bootid != process.boot_id():
        return True
    return not process.Identity(holder.launcherpid, holder.launcherstart, holder.bootid).is_alive()


def spawn_runner(store: TaskStore, historyid: int) -> None:
    """Start the detached runner of history row ``historyid``'s hooks (it reads their
    orders from the store)."""
    from . import queueing

    env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
    try:  # (a launcher's fork claims them sooner than a fresh interpreter)
        queueing.start_detached(store, run_hooks, historyid, ["--run-hooks", str(historyid)], env)
    except OSError as e:  # no process to be had: said in the row (no runner will ever come)
        store.record_hook(historyid, f"could not start: {e.strerror}")


def resume_hooks(store: TaskStore, pending: list[PendingHook]) -> None:
    """Reconciliation's part, for the hooks ``pending`` (as :meth:`TaskStore.pending_hooks`
    just read them): those whose holder is gone get a runner, or, if their runner died while
    running them, the outcome :data:`RUNNER_LOST`."""
    mine = None
    for hook in pending:
        if not holder_gone(hook.holder):
            continue
        if hook.running:
            if store.record_hook(hook.historyid, RUNNER_LOST, holder=hook.holder):
                log.debug("history %d: %s", hook.historyid, RUNNER_LOST)
            continue
        mine = mine or me()
        if store.take_hook(hook.historyid, mine, run=False, was=hook.holder) is not None:
            log.debug("history %d: its hooks' runner is started again", hook.historyid)
            spawn_runner(store, hook.historyid)


def run_hooks(db: str, historyid: int) -> None:
    """The runner: claim the orders, run each hook in turn, each stopped at the limit; the
    outcome into history. Orders another runner claimed first are left to it."""
    from .store import Store

    with Store(db) as store:
        holder = me()
        text = store.take_hook(historyid, holder, run=True)
        if text is None:
            return
        try:
            given = json.loads(text)
        except ValueError:
            given = {}
        limit = float(given.get("limit", DEFAULT_HOOK_TIMEOUT))
        env = given.get("env") or {k: v for k, v in os.environ.items() if k not in _SECRETS}
        outcomes = [f"{where}: {run_one(command, limit, env)}" for where, command in given.get("hooks", [])]
        store.record_hook(historyid, "; ".join(outcomes) or "none", holder=holder)


def run_one(command: str, limit: float, env: dict[str, str] | None = None) -> str:
    """Run one hook under the shell; what became of it, in words."""
    import subprocess  # here: every archive imports this module, only the runner runs a hook

    # Its output goes nowhere (a hook that wants a record writes one); its group is its own, to stop.
    _HOOK_PROCESS = dict(
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        # A hook is a shell command by contract (SPEC: --on-end 'SHELL COMMAND'): the user's own text.
        proc = subprocess.Popen(command, shell=True, env=env, **_HOOK_PROCESS)
    except OSError as e:
        return f"could not start: {e.strerror}"
    crash_point("hook-running")  # the runner dies while its hook runs: recorded, never run again
    try:
        code = proc.wait(limit)
    except subprocess.TimeoutExpired:
        _stop_group(proc, signal.SIGTERM)
        try:
            proc.wait(HOOK_GRACE)
        except subprocess.TimeoutExpired:
            _stop_group(proc, signal.SIGKILL)
            proc.wait()
        return f"killed at the {limit:g} s limit"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == 127:
        return "exit 127 (command not found?)"
    return f"exit {code}"


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # its group is its own (start_new_session), and not yet reaped
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
