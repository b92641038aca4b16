"""Finish hooks: shell commands run once per task end (``launch --on-end``, the
configuration file's ``[hooks] on_end`` and ``on_failure``).

Whoever archives a task runs its hooks, after the history row is written (the row
says ``hook = "pending"`` from that same transaction on): it spawns a detached
runner (``taskwatcher launch --run-hooks HISTORYID``, a grandchild in a session of
its own) and goes on, so a hook never blocks or fails the archive. The runner runs
each hook under ``sh -c`` in a process group of its own, with the task's end in its
environment, stops it at the time limit (SIGTERM, then SIGKILL after
:data:`HOOK_GRACE`), and writes what happened into the history row's ``hook``:
``--on-end: exit 0``, ``on_failure: killed at the 60 s limit``, ``on_end: could not
start: ...``. A hook that fails or hangs is recorded, never retried.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    import subprocess

    from .model import TaskRow
    from .store import TaskStore

log = Logger(__name__)

DEFAULT_HOOK_TIMEOUT = 60.0  # seconds a hook may run ([hooks] timeout)
HOOK_GRACE = 2.0  # seconds between SIGTERM and SIGKILL at the limit
PENDING = "pending"
_HOOKS_VARIABLE = "TASKWATCHER_HOOKS_RUN"  # the runner's orders, in its environment only


def due_hooks(row: TaskRow, exitcode: int | None) -> list[tuple[str, str]]:
    """The hooks this end runs, as (where it comes from, shell command), in order:
    the task's ``--on-end``, then the configuration's ``on_end``, then, for an end
    that is not exit 0, its ``on_failure``."""
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
        return hooks
    if config.on_end:
        hooks.append(("on_end", config.on_end))
    if config.on_failure and exitcode != 0:
        hooks.append(("on_failure", config.on_failure))
    return hooks


def hook_environment(
    row: TaskRow, end: dict[str, object], feedback: dict[str, str], queued_with: dict[str, str]
) -> dict[str, str]:
    """The environment the task was queued with (else ours) with the end in ``TASKWATCHER_*``."""
    env = dict(queued_with or os.environ)
    for name in ("TASKWATCHER_TOKEN", "TASKWATCHER_FEEDBACK"):  # the task's secrets stay its own
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


def _host() -> str:
    from .process import host_name

    return host_name()


def spawn_runner(store: TaskStore, historyid: int, hooks: list[tuple[str, str]], env: dict[str, str]) -> None:
    """Start the detached runner of ``hooks`` for history row ``historyid``."""
    from .queueing import spawn_detached

    try:
        from .config import load

        limit = load().hook_timeout
    except Exception:
        limit = None
    orders = {"hooks": hooks, "limit": DEFAULT_HOOK_TIMEOUT if limit is None else limit}
    argv = [sys.executable, "-m", "taskwatcher", "launch", "--db", store.key, "--run-hooks", str(historyid)]
    try:
        spawn_detached(argv, {**env, _HOOKS_VARIABLE: json.dumps(orders)})
    except OSError as e:
        store.record_hook(historyid, f"could not start: {e.strerror}")


def run_hooks(db: str, historyid: int) -> None:
    """The runner: each hook in turn, each stopped at the limit; the outcome into history."""
    orders = json.loads(os.environ.pop(_HOOKS_VARIABLE, "{}") or "{}")
    limit = float(orders.get("limit", DEFAULT_HOOK_TIMEOUT))
    outcomes = [f"{where}: {run_one(command, limit)}" for where, command in orders.get("hooks", [])]
    from .store import Store

    with Store(db) as store:
        store.record_hook(historyid, "; ".join(outcomes) or "none")


def run_one(command: str, limit: float) -> str:
    """Run one hook under the shell; what became of it, in words."""
    import subprocess  # here: every archive imports this module, only the runner runs a hook

    # Its output goes nowhere (a hook that wants a record writes one); its group is its own, to stop.
    _HOOK_PROCESS = dict(
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        # A hook is a shell command by contract (SPEC: --on-end 'SHELL COMMAND'): the user's own text.
        proc = subprocess.Popen(command, shell=True, **_HOOK_PROCESS)
    except OSError as e:
        return f"could not start: {e.strerror}"
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
