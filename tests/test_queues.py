"""Queues, dependencies, retries and finish hooks (SPEC: "Queues, dependencies, retries,
hooks"), through the CLI and the Python API, with real processes.

Tasks are small shell commands paced by the test through files: a task notes its start
in LOG (its id, and how many of its group run at that moment) and waits for GATE.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

import support
from conftest import Taskwatcher, db_sql, wait_for
from support import own_processes, reaper  # noqa: F401
from taskwatcher import TaskWatcher
from taskwatcher.errors import StartFailed


class Paced:
    """A task program the test paces: ``task(i)`` notes its start, then waits for its gate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "started.log"
        self.running = root / "running"
        self.running.mkdir()
        self.gates = root / "gates"
        self.gates.mkdir()

    def task(self, gate: str = "all", exit: int = 0) -> list[str]:
        script = (
            f'touch "{self.running}/$TASKWATCHER_TASKID"; '
            f'echo "$TASKWATCHER_TASKID $(ls "{self.running}" | wc -l)" >> "{self.log}"; '
            f'while [ ! -e "{self.gates}/{gate}" ] && [ ! -e "{self.gates}/$TASKWATCHER_TASKID" ];'
            " do sleep 0.02; done; "
            f'rm -f "{self.running}/$TASKWATCHER_TASKID"; exit {exit}'
        )
        return ["sh", "-c", script]

    def open(self, gate: str | int = "all") -> None:
        (self.gates / str(gate)).touch()

    def starts(self) -> list[tuple[int, int]]:
        if not self.log.exists():
            return []
        return [tuple(map(int, line.split())) for line in self.log.read_text().splitlines()]  # type: ignore[misc]

    def started(self) -> list[int]:
        return [taskid for taskid, _ in self.starts()]


launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


@pytest.fixture
def paced(tmp_path: Path) -> Paced:
    return Paced(tmp_path)


@pytest.fixture
def db(request, tmp_path: Path):
    """The test's database: a file, or with ``both_backends`` also a PostgreSQL URL of the
    private cluster (tests/pgcluster.py), for the line's core tests."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "tw.db"


both_backends = pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)


def cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:  # ended meanwhile
        return []


def detach(tw, *args: str) -> int:
    return int(tw.run("launch", "--detach", *args, check=True).stdout)


def queued_ids(tw) -> list[int]:
    return [int(i) for i, t in tw.tasks().items() if t["status"] == "QUEUED"]


def hook_done(tw, taskid: int, attempt: int = 1) -> dict:
    def done():
        for entry in tw.history().values():
            if (
                entry["taskid"] == taskid
                and entry["attempt"] == attempt
                and entry["hook"] not in (None, "pending")
            ):
                return entry
        return None

    return wait_for(done, 20, f"the hook of task {taskid}")


# -- groups with slots ---------------------------------------------------------------------------
@both_backends
def test_a_group_runs_at_most_its_slots_the_rest_wait_in_line_in_order(tw, paced, tmp_path):
    ids = [detach(tw, "--group", "batch", "--slots", "2", *paced.task()) for _ in range(5)]
    wait_for(lambda: len(paced.started()) == 2, what="two tasks of the group to start")
    assert paced.started() == ids[:2] or sorted(paced.started()) == ids[:2]
    listed = tw.tasks()
    assert [listed[str(i)]["status"] for i in ids] == ["RUNNING"] * 2 + ["QUEUED"] * 3
    assert [listed[str(i)]["place"] for i in ids[2:]] == [1, 2, 3]
    assert all(listed[str(i)]["group"] == "batch" and listed[str(i)]["slots"] == 2 for i in ids)
    assert listed[str(ids[2])]["command"][0] == "sh" and listed[str(ids[2])]["pid"] is None
    shown = tw.json("control", "--show", str(ids[3]), "--json")
    assert (shown["status"], shown["group"], shown["place"], shown["attempt"]) == ("QUEUED", "batch", 2, 1)
    table = tw.run("control", "--list", check=True).stdout
    assert "QUEUED" in table and "batch #1" in table and "batch #3" in table
    # A queued task is a row, not a process: no launcher, no process of its own.
    commands = [cmdline(p) for p in own_processes(tmp_path / "home")]
    assert not [c for c in commands if "--queued" in c and set(c) & {str(i) for i in ids[2:]}], commands
    paced.open(ids[0])
    wait_for(lambda: len(paced.started()) == 3, what="the first in line to take the free slot")
    assert paced.started()[2] == ids[2]  # first come, first served
    paced.open()
    assert tw.run("control", "--wait", str(ids[-1]), timeout=60).returncode == 0
    wait_for(lambda: all(tw.history_of(i) for i in ids), what="every task in history")
    assert sorted(paced.started()) == ids  # each ran once
    assert max(n for _, n in paced.starts()) <= 2
    assert tw.tasks() == {}


def test_groups_do_not_share_slots_and_slots_default_to_one(tw, paced):
    a = detach(tw, "--group", "a", *paced.task())
    a2 = detach(tw, "--group", "a", *paced.task())
    b = detach(tw, "--group", "b", *paced.task())
    wait_for(lambda: sorted(paced.started()) == [a, b], what="one task of each group")
    assert tw.tasks()[str(a2)]["status"] == "QUEUED"
    paced.open()
    assert tw.run("control", "--wait", str(a2), timeout=60).returncode == 0


@both_backends
def test_a_foreground_launch_waits_its_turn_then_runs_as_usual(tw, paced, launches):
    first = detach(tw, "--group", "fg", *paced.task())
    wait_for(lambda: paced.started() == [first], what="the first task")
    proc = launches.start("--group", "fg", "sh", "-c", 'echo "out $TASKWATCHER_TASKID"; exit 7')
    waiting = wait_for(lambda: queued_ids(tw), what="the foreground task in line")
    (taskid,) = waiting
    assert tw.tasks()[str(taskid)]["place"] == 1
    assert psutil.Process(proc.pid).cpu_times().user < 1.0  # it waits, it does not spin
    paced.open()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert out == f"out {taskid}\n"  # its output on the launcher's own stdout, as a foreground task's
    assert tw.history_of(taskid)["exitcode"] == 7


def test_kill_takes_a_task_out_of_the_line_and_wait_waits_through_it(tw, paced, launches):
    first = detach(tw, "--group", "k", *paced.task())
    second = detach(tw, "--group", "k", *paced.task())
    third = detach(tw, "--group", "k", *paced.task())
    wait_for(lambda: paced.started() == [first], what="the first task")
    waiter = tw.popen("control", "--wait", str(third))
    killed = tw.run("control", "--kill", str(second), check=True)
    assert "taken out of the line" in killed.stdout
    entry = tw.history_of(second)
    assert (entry["exitcode"], entry["termerror"]) == (125, "killed by request before it started")
    assert tw.run("control", "--wait", str(second)).returncode == 125
    paced.open()
    waiter.communicate(timeout=60)
    assert waiter.returncode == 0
    assert paced.started() == [first, third]  # the killed one never ran


def test_a_foreground_launch_killed_in_line_exits_125(tw, paced, launches):
    first = detach(tw, "--group", "kf", *paced.task())
    wait_for(lambda: paced.started() == [first], what="the first task")
    proc = launches.start("--group", "kf", *paced.task())
    (taskid,) = wait_for(lambda: queued_ids(tw), what="the foreground task in line")
    tw.run("control", "--kill", str(taskid), check=True)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 125 and err.strip() == "taskwatcher: killed by request before it started"
    paced.open()
    assert paced.started() == [first]


def test_a_killed_foreground_waiter_leaves_the_line(tw, paced, launches):
    first = detach(tw, "--group", "w", *paced.task())
    wait_for(lambda: paced.started() == [first], what="the first task")
    proc = launches.start("--group", "w", *paced.task())
    (taskid,) = wait_for(lambda: queued_ids(tw), what="the foreground task in line")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT  # it ends by the signal, as a foreground launch does
    entry = tw.history_of(taskid)
    assert entry["termerror"] == "launcher interrupted by SIGINT before it started"
    paced.open()
    assert paced.started() == [first]


# -- dependencies -----------------------------------------------------------------------------------
def test_after_starts_once_the_dependencies_succeeded(tw, paced):
    a = detach(tw, *paced.task("a"))
    b = detach(tw, *paced.task("b"))
    c = detach(tw, "--after", f"{a},{b}", *paced.task())
    wait_for(lambda: sorted(paced.started()) == [a, b], what="the dependencies to run")
    assert tw.tasks()[str(c)]["status"] == "QUEUED" and tw.tasks()[str(c)]["after"] == [a, b]
    assert "after " in tw.run("control", "--list", check=True).stdout
    paced.open("a")
    wait_for(lambda: tw.history_of(a), what="a to end")
    assert tw.tasks()[str(c)]["status"] == "QUEUED"  # b still runs
    paced.open("b")
    paced.open()
    assert tw.run("control", "--wait", str(c), timeout=60).returncode == 0
    assert paced.started() == [a, b, c] or sorted(paced.started()[:2]) == [a, b]


@both_backends
def test_a_failed_dependency_ends_the_dependants_unrun(tw, paced):
    a = detach(tw, *paced.task("a", exit=3))
    b = detach(tw, "--after", str(a), *paced.task())
    c = detach(tw, "--after", str(b), *paced.task())
    anyway = detach(tw, "--after-any", str(a), *paced.task())
    paced.open("a")
    assert tw.run("control", "--wait", str(c), timeout=60).returncode == 125
    assert tw.history_of(b)["termerror"] == f"dependency {a} failed"
    assert tw.history_of(c)["termerror"] == f"dependency {b} failed"
    assert tw.history_of(b)["exitcode"] == 125
    paced.open()
    assert tw.run("control", "--wait", str(anyway), timeout=60).returncode == 0
    assert paced.started() == [a, anyway]


def test_a_foreground_dependant_of_a_failed_task_exits_125(tw, paced):
    a = detach(tw, *paced.task("a", exit=1))
    paced.open("a")
    wait_for(lambda: tw.history_of(a), what="a to end")
    proc = tw.run("launch", "--after", str(a), "true")
    assert proc.returncode == 125
    assert proc.stderr.strip() == f"taskwatcher: dependency {a} failed"


def test_an_unknown_dependency_is_refused_at_launch(tw):
    proc = tw.run("launch", "--detach", "--after", "999", "true")
    assert (
        proc.returncode == 125 and proc.stderr.strip() == "taskwatcher: --after: no task 999: nothing started"
    )
    assert tw.tasks() == {} and tw.history() == {}
    assert tw.run("launch", "--after", "x", "true").returncode == 125
    both = tw.run("launch", "--after", "1", "--after-any", "1", "true")
    assert both.returncode == 125 and "one at a time" in both.stderr


# -- retries ------------------------------------------------------------------------------------------
@both_backends
def test_retries_run_the_same_task_again_up_to_n_times(tw, tmp_path):
    counter = tmp_path / "count"
    script = f'echo x >> "{counter}"; exit 4'
    taskid = detach(tw, "--retries", "2", "--retry-delay", "0", "sh", "-c", script)
    assert tw.run("control", "--wait", str(taskid), timeout=60).returncode == 4
    rows = [e for e in tw.history().values() if e["taskid"] == taskid]
    assert [e["attempt"] for e in rows] == [1, 2, 3] and {e["exitcode"] for e in rows} == {4}
    assert counter.read_text() == "x\n" * 3


@both_backends
def test_a_retry_that_succeeds_ends_the_retries_and_wait_has_the_last_status(tw, tmp_path):
    counter = tmp_path / "count"
    script = f'echo x >> "{counter}"; [ "$(wc -l < "{counter}")" -ge 2 ]'
    tw.run("launch", "--name", "other", "false")  # another task's history is not its attempts
    proc = tw.run("launch", "--retries", "5", "--retry-delay", "0", "sh", "-c", script)
    assert proc.returncode == 0  # the foreground launcher ran both attempts itself
    (taskid,) = {e["taskid"] for e in tw.history().values() if e["taskname"] != "other"}
    mine = [e for e in tw.history().values() if e["taskid"] == taskid]
    assert [(e["attempt"], e["exitcode"]) for e in mine] == [(1, 1), (2, 0)]
    assert tw.run("control", "--wait", str(taskid)).returncode == 0
    # --show tells every attempt, in JSON and in its table
    shown = tw.json("control", "--show", str(taskid), "--json")
    assert [(a["attempt"], a["exitcode"], a["termsignal"]) for a in shown["attempts"]] == [
        (1, 1, ""),
        (2, 0, ""),
    ]
    assert shown["attempts"][-1]["historyid"] == shown["historyid"]
    table = tw.run("control", "--show", str(taskid), check=True).stdout
    assert "1: exit code 1, 2: exit 0" in table
    once = tw.json("control", "--show", str(taskid - 1), "--json")  # a task run once: one attempt
    assert [a["attempt"] for a in once["attempts"]] == [1] and "attempts" not in tw.run(
        "control", "--show", str(taskid - 1), check=True
    ).stdout


def test_the_retry_delay_grows_by_the_backoff(tw, tmp_path):
    times = tmp_path / "times"
    script = f'date +%s.%N >> "{times}"; exit 1'
    taskid = detach(tw, "--retries", "2", "--retry-delay", "0.3", "--retry-backoff", "3", "sh", "-c", script)
    assert tw.run("control", "--wait", str(taskid), timeout=60).returncode == 1
    t = [float(x) for x in times.read_text().split()]
    assert len(t) == 3 and t[1] - t[0] >= 0.3 and t[2] - t[1] >= 0.9


def test_retry_on_names_the_kinds_retried(tw, tmp_path):
    counter = tmp_path / "count"
    taskid = detach(
        tw,
        "--retries",
        "3",
        "--retry-delay",
        "0",
        "--retry-on",
        "timeout",
        "sh",
        "-c",
        f'echo x >> "{counter}"; exit 2',
    )
    assert tw.run("control", "--wait", str(taskid), timeout=60).returncode == 2
    assert counter.read_text() == "x\n"  # a failure, not a timeout: not retried
    timed = detach(
        tw,
        "--retries",
        "1",
        "--retry-delay",
        "0",
        "--retry-on",
        "timeout",
        "--timeout",
        "0.2",
        "sh",
        "-c",
        f'echo t >> "{counter}"; sleep 30',
    )
    assert tw.run("control", "--wait", str(timed), timeout=60).returncode == 124
    assert counter.read_text() == "x\nt\nt\n"
    bad = tw.run("launch", "--retries", "1", "--retry-on", "oops", "true")
    assert bad.returncode == 125 and "unknown kind 'oops'" in bad.stderr


def test_a_killed_task_is_never_retried_and_list_shows_the_attempt(tw, paced, tmp_path):
    marker = tmp_path / "failed-once"
    script = f'if [ ! -e "{marker}" ]; then touch "{marker}"; exit 1; fi; ' + paced.task()[2]
    taskid = detach(tw, "--retries", "5", "--retry-delay", "0", "sh", "-c", script)
    wait_for(lambda: paced.started() == [taskid], 60, "the second attempt to run")
    listed = tw.tasks()[str(taskid)]
    assert listed["attempt"] == 2 and listed["status"] == "RUNNING"
    assert " 2 " in tw.run("control", "--list", check=True).stdout.splitlines()[1] + " "
    tw.run("control", "--kill", str(taskid), check=True)
    rows = [e for e in tw.history().values() if e["taskid"] == taskid]
    assert [(e["attempt"], e["termerror"]) for e in rows] == [(1, "exit code 1"), (2, "killed by request")]
    assert tw.tasks() == {}


def test_a_kill_whose_launcher_died_before_stopping_the_task_is_never_retried(tw, paced):
    """The stop request is in the row, but the launcher died before it could act on it (here
    --kill itself dies right after recording it, then the launcher is SIGKILLed): the lost
    end that the next command archives is the end of a killed task, so not retried."""
    taskid = detach(tw, "--retries", "3", "--retry-on", "lost", "--retry-delay", "0", *paced.task())
    wait_for(lambda: paced.started() == [taskid], 60, "the task to run")  # (two interpreters start)
    asked = tw.run("control", "--kill", str(taskid), env={"TASKWATCHER_CRASH_AT": "kill-requested"})
    assert asked.returncode == -signal.SIGKILL, asked.stderr
    ((launcher, reason),) = db_sql(tw.db, "SELECT launcherpid, stopreason FROM tasks WHERE id = ?", (taskid,))
    assert reason == "killed by request"
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: tw.history_of(taskid), what="the lost task archived")
    assert tw.tasks() == {}, "put back in line for a retry"
    assert [(e["attempt"], e["termerror"]) for e in tw.history().values()] == [(1, "launcher lost")]
    assert paced.started() == [taskid]


def test_a_task_killed_between_attempts_is_taken_out_of_the_line(tw, tmp_path):
    taskid = detach(tw, "--retries", "3", "--retry-delay", "1h", "sh", "-c", "exit 1")
    wait_for(lambda: tw.tasks().get(str(taskid), {}).get("attempt") == 2, what="the retry in line")
    assert tw.tasks()[str(taskid)]["status"] == "QUEUED"
    tw.run("control", "--kill", str(taskid), check=True)
    assert tw.run("control", "--wait", str(taskid)).returncode == 125
    assert tw.tasks() == {}


# -- finish hooks -----------------------------------------------------------------------------------
@both_backends
def test_on_end_runs_once_per_end_with_the_end_in_its_environment(tw, tmp_path):
    out = tmp_path / "hook.jsonl"
    hook = f'python3 -c "import json, os; print(json.dumps(dict(os.environ)))" >> "{out}"'
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    taskid = detach(
        tw,
        "--name",
        "hooked",
        "--feedpath",
        str(feeds),
        "--retries",
        "1",
        "--retry-delay",
        "0",
        f"--on-end={hook}",  # joined to its value, spaces and all: still launch's option
        "sh",
        "-c",
        'echo "[k]v" > "$TASKWATCHER_FEEDBACK"; exit 3',
    )
    second = hook_done(tw, taskid, attempt=2)
    first = hook_done(tw, taskid, attempt=1)
    assert first["hook"] == second["hook"] == "--on-end: exit 0"
    envs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(envs) == 2
    env = max(envs, key=lambda e: e["TASKWATCHER_ATTEMPT"])
    assert env["TASKWATCHER_TASKID"] == str(taskid) and env["TASKWATCHER_NAME"] == "hooked"
    assert (env["TASKWATCHER_EXITCODE"], env["TASKWATCHER_TERMSIGNAL"]) == ("3", "")
    assert env["TASKWATCHER_TERMERROR"] == "exit code 3" and env["TASKWATCHER_ATTEMPT"] == "2"
    assert json.loads(env["TASKWATCHER_FEEDBACK"]) == {"k": "v"}
    assert env["TASKWATCHER_LOGFILE"] == second["logfile"] and env["TASKWATCHER_HOST"] == second["host"]
    assert "TASKWATCHER_TOKEN" not in env


def config_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"TASKWATCHER_CONFIG": str(path)}


def test_the_configuration_s_hooks_on_end_and_on_failure(tw, tmp_path):
    log = tmp_path / "hooks.log"
    extra = config_file(
        tmp_path,
        f"[hooks]\non_end = 'echo end $TASKWATCHER_TASKID >> {log}'\n"
        f"on_failure = 'echo failed $TASKWATCHER_TASKID >> {log}; exit 9'\n",
    )
    tw.env.update(extra)
    ok = detach(tw, "true")
    bad = detach(tw, "false")
    assert hook_done(tw, ok)["hook"] == "on_end: exit 0"
    assert hook_done(tw, bad)["hook"] == "on_end: exit 0; on_failure: exit 9"
    assert sorted(log.read_text().splitlines()) == sorted([f"end {ok}", f"end {bad}", f"failed {bad}"])


def test_a_hanging_hook_is_stopped_at_its_limit_and_recorded(tw, tmp_path):
    pidfile = tmp_path / "hook.pid"
    tw.env.update(config_file(tmp_path, "[hooks]\ntimeout = '0.5s'\n"))
    start = time.monotonic()
    taskid = detach(tw, "--on-end", f'echo $$ > "{pidfile}"; exec sleep 300', "true")
    entry = hook_done(tw, taskid)
    assert entry["hook"] == "--on-end: killed at the 0.5 s limit"
    assert time.monotonic() - start < 30
    assert (
        not psutil.pid_exists(int(pidfile.read_text()))
        or psutil.Process(int(pidfile.read_text())).status() == psutil.STATUS_ZOMBIE
    )


def test_a_lost_task_s_hook_runs_and_a_lost_end_is_retried(tw, paced, tmp_path):
    out = tmp_path / "hook.log"
    taskid = detach(
        tw,
        "--retries",
        "1",
        "--retry-on",
        "lost",
        "--retry-delay",
        "0",
        "--on-end",
        f'echo "$TASKWATCHER_ATTEMPT $TASKWATCHER_TERMERROR" >> "{out}"',
        *paced.task(),
    )
    wait_for(lambda: paced.started() == [taskid], 60, "the task to run")  # (two interpreters start)
    launcher = tw.tasks()[str(taskid)]
    (row,) = db_sql(tw.db, "SELECT launcherpid FROM tasks WHERE id = ?", (taskid,))
    assert launcher["status"] == "RUNNING"
    os.kill(row[0], signal.SIGKILL)
    # Each look runs a command, whose reconciliation archives the lost task (and starts its retry).
    wait_for(lambda: tw.tasks() is not None and len(paced.started()) == 2, what="the lost task's retry")
    paced.open()
    assert tw.run("control", "--wait", str(taskid), timeout=60).returncode == 0
    hook_done(tw, taskid, attempt=1)
    hook_done(tw, taskid, attempt=2)
    # each attempt's hook once; their runners are separate processes, so in either order
    assert sorted(out.read_text().splitlines()) == ["1 launcher lost", "2 "]


def test_a_hook_that_cannot_run_is_recorded_not_retried(tw, tmp_path):
    taskid = detach(tw, "--on-end", "/no/such/hook", "true")
    assert hook_done(tw, taskid)["hook"] == "--on-end: exit 127 (command not found?)"


# -- the Python API -----------------------------------------------------------------------------------
@both_backends
def test_the_api_queues_retries_and_hooks(db, env, monkeypatch, paced, tmp_path):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    api = TaskWatcher(db)
    first = api.launch(paced.task(), group="api", slots=1)
    second = api.launch(paced.task(), group="api")
    after = api.launch(
        ["sh", "-c", "exit 5"],
        after=[second],
        retries=1,
        retry_delay=0,
        on_end=f'echo "$TASKWATCHER_ATTEMPT" >> "{tmp_path / "api.hook"}"',
    )
    anyway = api.launch(["true"], after=[after], after_any=True)
    wait_for(lambda: paced.started() == [first], what="the first task")
    tasks = {t.taskid: t for t in api.tasks()}
    assert (tasks[second].status, tasks[second].place, tasks[second].group) == ("QUEUED", 1, "api")
    assert tasks[after].after == [second]
    paced.open()
    entry = api.wait(after, timeout=60)
    assert (entry.exitcode, entry.attempt) == (5, 2), entry
    assert api.wait(anyway, timeout=60).exitcode == 0
    with pytest.raises(StartFailed) as refused:
        api.launch(["true"], after=[10_000])
    assert refused.value.exit_code == 125
    ending = api.run(["sh", "-c", "exit 6"], group="api", retries=1, retry_delay="0s")
    assert ending.exitcode == 6
    assert [e.attempt for e in api.history() if e.exitcode == 6] == [1, 2]
    wait_for(
        lambda: (tmp_path / "api.hook").exists() and len((tmp_path / "api.hook").read_text().split()) == 2,
        what="the API task's hooks",
    )


# -- the schema -------------------------------------------------------------------------------------------
def test_a_schema_3_database_gets_the_queue_columns_in_place(tmp_path):
    from taskwatcher.store import Store

    db = tmp_path / "tw.db"
    with Store(db) as s:
        row = s.claim(None, support.a_claim("old"))
        s.finish(row.id, row.token, termsignal="", termerror="", exitcode=0, feedback={})
    with sqlite3.connect(db) as c:  # what taskwatcher with schema 3 left
        for table, column in (
            ("tasks", "queue"),
            ("tasks", "slots"),
            ("tasks", "notbefore"),
            ("tasks", "attempt"),
            ("tasks", "spec"),
            ("tasks", "environ"),
            ("history", "attempt"),
            ("history", "hook"),
        ):
            c.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        c.execute("PRAGMA user_version=3")
    with Store(db) as s:
        (old,) = list(s.iter_history())
        assert (old.attempt, old.hook, old.taskname) == (1, None, "old")
        taskid = s.enqueue("new", (None, None, None), False, queue="g", slots=2, spec="{}")
        assert s.task(taskid).status == "QUEUED"
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 5


# -- the next in line, started by a fork of the launcher ---------------------------------------------
@both_backends
def test_the_next_in_line_is_a_fork_of_the_launcher_in_its_own_folder_environment_and_umask(
    db, env, paced, tmp_path
):
    tw = Taskwatcher(db, env)
    first = detach(tw, "--group", "f", *paced.task())
    wait_for(lambda: paced.started() == [first], what="the first task")
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "second.out"
    elsewhere.mkdir()
    script = f'pwd > "{out}.tmp"; umask >> "{out}.tmp"; echo "$MARK" >> "{out}.tmp"; mv "{out}.tmp" "{out}"; '
    second = int(
        tw.run("launch", "--detach", "--group", "f", "sh", "-c", script + " ".join(paced.task()[2:]),
               cwd=elsewhere, umask=0o027, env={"MARK": "second's own"}, check=True).stdout
    )  # fmt: skip
    paced.open(first)  # its launcher archives it and starts the next in line
    wait_for(out.exists, 30, "the second task")
    assert out.read_text().splitlines() == [str(elsewhere), "0027", "second's own"]

    def launcher_of(taskid: int) -> list[str] | None:
        for p in own_processes(tmp_path / "home"):
            try:
                if p.environ().get("TASKWATCHER_TASKID") == str(taskid) and p.name() == "sh":
                    return cmdline(p.parent())
            except psutil.Error:
                continue
        return None

    # Not a fresh interpreter (``launch --queued SECOND``): the first task's launcher, forked
    # (its command line is the first one's).
    forked = wait_for(lambda: launcher_of(second), 30, "the second task's launcher")
    assert forked == launcher_of(first) or forked[-2:] == ["--queued", str(first)], forked
    assert ["--queued", str(second)] != forked[-2:]
    paced.open()
    assert tw.run("control", "--wait", str(second), timeout=60).returncode == 0


# -- finish hooks' orders in the store ------------------------------------------------------------------
@both_backends
def test_hook_orders_are_kept_with_the_end_taken_by_one_and_recorded_only_by_their_holder(db):
    from taskwatcher.model import PendingHook, Waiter
    from taskwatcher.store import Store

    archiver, command = Waiter(11, 1, "boot", "h", 1), Waiter(12, 2, "boot", "h", 1)
    with Store(db) as s:
        row = s.claim(None, support.a_claim("h"))
        end = dict(termsignal="", termerror="", exitcode=0, feedback={})
        hid = s.finish(row.id, row.token, **end, hook="pending", hook_orders='{"hooks": []}', holder=archiver)
        assert s.pending_hooks() == [PendingHook(hid, False, archiver)]  # in the end's own step
        assert s.take_hook(hid, command, run=False, was=command) is None  # not held by that one
        assert s.take_hook(hid, command, run=False, was=archiver) == '{"hooks": []}'  # taken over
        assert s.take_hook(hid, archiver, run=False, was=archiver) is None  # of two, one
        assert s.take_hook(hid, archiver, run=True) == '{"hooks": []}'  # a runner claims them
        assert s.take_hook(hid, command, run=True) is None  # and no second runner
        assert s.pending_hooks() == [PendingHook(hid, True, archiver)]
        assert not s.record_hook(hid, "hook runner lost", holder=command)  # not the holder: nothing
        assert s.record_hook(hid, "--on-end: exit 0", holder=archiver)
        assert s.pending_hooks() == [] and s.finished(row.id).hook == "--on-end: exit 0"
