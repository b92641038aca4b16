"""The line under faults: launchers SIGKILLed while a batch drains, commands racing to
start the next in line. Every task runs exactly once (or is retried exactly as asked),
none twice, and no slot is leaked (a leaked slot would stall the line: it drains).
Finish hooks under crashes (``TASKWATCHER_CRASH_AT``): an archiver killed between the
history row and its hooks' runner loses no hook, and a runner killed mid-hook is
recorded, never run again (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from conftest import Taskwatcher, wait_for
from support import reaper  # noqa: F401
from taskwatcher.launcher import LaunchRequest
from taskwatcher.queueing import enqueue
from taskwatcher.store import Store

TASKS = 60
SLOTS = 4
KILLS = 8


def queue_batch(db: Path, env: dict[str, str], monkeypatch, log: Path, count: int, **options) -> list[int]:
    """Put ``count`` tasks in line through the library (as ``launch --detach --group`` does,
    without a process per launch); the environment they are queued with is the test's."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    script = f'echo "$TASKWATCHER_TASKID/$TASKWATCHER_ATTEMPT" >> "{log}"; sleep 0.5'
    with Store(db) as store:
        return [
            enqueue(
                store,
                LaunchRequest(["sh", "-c", script], detach=True, group=f"g{i % 2}", slots=SLOTS, **options),
                None,
            )
            for i in range(count)
        ]


def rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.timeout(180)  # about 25 s on 2 idle cores; a loaded machine starts 60 launchers slower
def test_a_batch_drains_with_launchers_killed_each_task_run_once_or_retried_as_asked(
    tw, db, env, monkeypatch, tmp_path
):
    log = tmp_path / "runs.log"
    ids = queue_batch(db, env, monkeypatch, log, TASKS, retries=1, retry_on=["lost"], retry_delay=0.0)
    tw.run("control", "--update", check=True)  # the first command starts the line
    rng = random.Random(7)
    killed = 0

    def done() -> bool:
        return not rows(db, "SELECT 1 FROM tasks LIMIT 1")

    def running_now() -> list[sqlite3.Row]:
        return [r for r in rows(db, "SELECT id, launcherpid, queue FROM tasks WHERE status = 'RUNNING'")
                if r["launcherpid"]]  # fmt: skip

    while not done():
        # a look runs a command: its reconciliation archives what was lost and starts the next
        running = running_now()
        busy = Counter(r["queue"] for r in running)
        assert all(n <= SLOTS for n in busy.values()), busy  # never more than the slots, even now
        if killed < KILLS and not running:  # the kills are what this test is about: one to kill
            wait_for(lambda: done() or running_now(), 30, "a task to run")
            continue
        if killed < KILLS:
            victim = rng.choice(running)
            try:
                os.kill(victim["launcherpid"], signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        before = len(rows(db, "SELECT id FROM history"))

        def moved(b: int = before) -> bool:
            tw.run("control", "--update", check=True)  # a command: it reconciles, starts what is ready
            return done() or len(rows(db, "SELECT id FROM history")) > b

        wait_for(moved, timeout=60, what="the line to move")
    assert killed >= 3
    runs = Counter(log.read_text().split())  # "taskid/attempt" for each attempt that got to run
    assert max(runs.values()) == 1, runs  # no attempt was ever started twice
    history = rows(db, "SELECT taskid, attempt, termerror, exitcode FROM history ORDER BY id")
    by_task: dict[int, list[sqlite3.Row]] = {}
    for h in history:
        by_task.setdefault(h["taskid"], []).append(h)
    assert sorted(by_task) == ids  # every task ended, none is left in line
    lost = 0
    for taskid in ids:
        attempts = by_task[taskid]
        # An attempt whose launcher was killed may have died before its first line: not the others.
        assert all(runs[f"{taskid}/{a['attempt']}"] == 1 for a in attempts if a["exitcode"] == 0), taskid
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert len(attempts) <= 2  # --retries 1: never more
        assert all(a["termerror"] == "launcher lost" for a in attempts[:-1])  # only a lost end is retried
        if attempts[-1]["termerror"] != "launcher lost":
            assert attempts[-1]["exitcode"] == 0
        lost += sum(a["termerror"] == "launcher lost" for a in attempts)
    assert lost >= 1


def test_commands_racing_to_start_the_next_in_line_start_it_once(tw, db, tmp_path):
    log = tmp_path / "runs.log"
    gate = tmp_path / "gate"
    blocker = f'echo "$TASKWATCHER_TASKID" >> "{log}"; while [ ! -e "{gate}" ]; do sleep 0.02; done'
    first = int(tw.run("launch", "--detach", "--group", "race", "sh", "-c", blocker, check=True).stdout)
    second = int(tw.run("launch", "--detach", "--group", "race", "sh", "-c", blocker, check=True).stdout)
    wait_for(lambda: log.exists() and log.read_text().split() == [str(first)], what="the first task")
    (launcher,) = rows(db, f"SELECT launcherpid FROM tasks WHERE id = {first}")
    os.kill(launcher[0], signal.SIGKILL)  # nobody archives it: the next command does, and starts the next
    racers = [tw.popen("control", "--update") for _ in range(8)]
    for p in racers:
        p.communicate(timeout=60)
        assert p.returncode == 0
    wait_for(lambda: str(second) in log.read_text().split(), what="the second task to start")
    gate.touch()
    assert tw.run("control", "--wait", str(second), timeout=60).returncode == 0
    assert Counter(log.read_text().split()) == {str(first): 1, str(second): 1}
    assert [r[0] for r in rows(db, "SELECT taskid FROM history ORDER BY id")] == [first, second]
    assert rows(db, f"SELECT termerror FROM history WHERE taskid = {first}")[0][0] == "launcher lost"


# -- finish hooks under crashes -----------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def any_tw(request, tmp_path: Path, env: dict[str, str]) -> Taskwatcher:
    """The CLI on a database file, or on a database of the private PostgreSQL cluster."""
    db = request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "tw.db"
    return Taskwatcher(db, env)  # type: ignore[arg-type]


def hook_outcome(tw: Taskwatcher, taskid: int) -> str:
    """The hooks' outcome in the task's history row, once recorded; each look is a command
    (whose reconciliation is what starts a lost hook's runner)."""

    def recorded():
        entry = tw.history_of(taskid)
        return entry and entry["hook"] not in (None, "pending") and entry["hook"]

    return wait_for(recorded, 60, f"the hooks of task {taskid} recorded")


@pytest.mark.timeout(120)
def test_a_hook_whose_archiver_died_before_starting_it_runs_once_started_by_the_next_commands(
    any_tw, tmp_path
):
    tw, out = any_tw, tmp_path / "hook.log"
    hook = f'echo "$TASKWATCHER_TASKID $TASKWATCHER_EXITCODE $TASKWATCHER_ATTEMPT" >> "{out}"'
    # The launcher is SIGKILLed right after the end and its hooks' orders are committed.
    crash = {"TASKWATCHER_CRASH_AT": "hooks-kept"}
    taskid = int(
        tw.run("launch", "--detach", "--on-end", hook, "sh", "-c", "exit 3", env=crash, check=True).stdout
    )
    entry = wait_for(lambda: tw.history_of(taskid), 60, "the end in history")
    assert entry["exitcode"] == 3
    # Commands racing: every one reconciles, one takes the orders over, one runner runs them.
    racers = [tw.popen("control", "--list") for _ in range(6)]
    for p in racers:
        p.communicate(timeout=60)
    assert hook_outcome(tw, taskid) == "--on-end: exit 0"
    for _ in range(3):  # and nobody runs them again
        tw.run("control", "--list", check=True)
    assert out.read_text().splitlines() == [f"{taskid} 3 1"]


@pytest.mark.timeout(120)
def test_a_hook_runner_killed_mid_hook_is_recorded_and_the_hook_never_run_again(any_tw, tmp_path):
    tw, out = any_tw, tmp_path / "hook.log"
    # The runner (started by the launcher, with its environment) SIGKILLs itself once the hook runs.
    crash = {"TASKWATCHER_CRASH_AT": "hook-running"}
    hook = f'echo ran >> "{out}"'
    taskid = int(tw.run("launch", "--detach", "--on-end", hook, "true", env=crash, check=True).stdout)
    assert hook_outcome(tw, taskid) == "hook runner lost"
    wait_for(lambda: out.exists() and out.read_text(), 30, "the hook's own run")
    for _ in range(3):
        tw.run("control", "--list", check=True)
    assert out.read_text().splitlines() == ["ran"]
