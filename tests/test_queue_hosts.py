"""The line across hosts on PostgreSQL (hosts are pid and UTS namespaces, as in
test_many_hosts.py): a task whose host went quiet past its lease is archived as ``host
lost``, retried and hooked as a lost launcher's task is on one host, and its real end, when
it comes, replaces that row without anything run twice; a foreground launcher waiting in
line holds a lease, so a dead host's waiter leaves the line instead of blocking its group."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from conftest import TW, Taskwatcher, wait_for
from support import HOST_NAMESPACES, wakeups
from test_many_hosts import Host, pytestmark  # noqa: F401  (the same skips and time limit)


@pytest.fixture
def tw(pg_url: str, env: dict[str, str]) -> Taskwatcher:
    return Taskwatcher(pg_url, env)  # type: ignore[arg-type]


@pytest.fixture
def host(tw) -> Host:
    made = Host("hosta", tw)
    yield made
    made.close()


def detached_on(host: Host, *args: str) -> subprocess.Popen:
    """``launch --detach`` on the host; the namespace lives on (its pid 1 sleeps) so that the
    detached launcher keeps running there."""
    script = f'hostname {host.name} && "$@"; exec sleep 600'
    launch = [*TW, "launch", "--db", str(host.tw.db), "--detach", *args]
    cmd = [*HOST_NAMESPACES, "sh", "-c", script, "sh", *launch]
    proc = subprocess.Popen(cmd, env=host.tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    host.procs.append(proc)
    return proc


def launcher_in(proc: subprocess.Popen) -> psutil.Process:
    def find():
        for p in psutil.Process(proc.pid).children(recursive=True):
            if "launch" in p.cmdline():
                return p
        return None

    return wait_for(find, 60, "the detached launcher in its namespace")


def entries(tw: Taskwatcher, taskid: int) -> list[dict]:
    return sorted((e for e in tw.history().values() if e["taskid"] == taskid), key=lambda e: e["attempt"])


def test_a_task_whose_lease_ran_out_is_retried_and_hooked_once_and_its_real_end_replaces_host_lost(
    tw, host, tmp_path: Path
):
    runs, hooks, gate = tmp_path / "runs.log", tmp_path / "hooks.log", tmp_path / "gate"
    script = (
        f'echo "$TASKWATCHER_ATTEMPT $(hostname)" >> "{runs}"; while [ ! -e "{gate}" ]; do sleep 0.05; done'
    )
    hook = f'echo "$TASKWATCHER_ATTEMPT $TASKWATCHER_TERMERROR" >> "{hooks}"'
    proc = detached_on(
        host, "--name", "quiet", "--lease", "2", "--grace", "1", "--retries", "1", "--retry-on", "lost",
        "--retry-delay", "0", "--on-end", hook, "sh", "-c", script,
    )  # fmt: skip
    wait_for(lambda: runs.exists() and runs.read_text() == "1 hosta\n", 60, "the first attempt on hosta")
    taskid = int(next(iter(tw.tasks())))
    launcher = launcher_in(proc)
    launcher.send_signal(signal.SIGSTOP)  # its host goes quiet: no renewal
    try:
        # Each look is a command here: once the lease ran out, it archives the task as host
        # lost, puts it back in line (--retry-on lost) and starts its hook, then the retry.
        wait_for(lambda: tw.tasks() is not None and len(runs.read_text().splitlines()) == 2, 60, "the retry")
        assert runs.read_text().splitlines()[1] == f"2 {socket.gethostname()}"
        first = wait_for(lambda: [e for e in entries(tw, taskid) if e["hook"] not in (None, "pending")], 60,
                         "the lost attempt's hook")[0]  # fmt: skip
        assert (first["attempt"], first["termerror"], first["hook"]) == (1, "host lost", "--on-end: exit 0")
    finally:
        launcher.send_signal(signal.SIGCONT)
    # Back, the launcher finds its row gone: it stops its task and its real end replaces host lost.
    replaced = wait_for(
        lambda: entries(tw, taskid)[0]["termerror"] != "host lost" and entries(tw, taskid)[0],
        60,
        "the real end of the first attempt",
    )
    assert replaced["termerror"] == "its row was archived meanwhile (lease lost)"
    assert replaced["hook"] == "--on-end: exit 0"  # its hook ran for that end: kept, not run again
    gate.touch()
    assert tw.run("control", "--wait", str(taskid), timeout=60).returncode == 0
    wait_for(lambda: hooks.exists() and len(hooks.read_text().splitlines()) == 2, 60, "the retry's hook")
    for _ in range(3):  # more commands: nothing more is run
        tw.run("control", "--list", check=True)
    assert [(e["attempt"], e["exitcode"]) for e in entries(tw, taskid)] == [(1, replaced["exitcode"]), (2, 0)]
    assert hooks.read_text().splitlines() == ["1 host lost", "2 "]  # one hook per end, none twice
    assert len(runs.read_text().splitlines()) == 2  # no third attempt: the real end is not retried


def test_a_foreground_launcher_waiting_in_line_on_a_dead_host_leaves_the_line_when_its_lease_runs_out(
    tw, host, tmp_path: Path
):
    gate, started = tmp_path / "gate", tmp_path / "third"
    blocker = f'while [ ! -e "{gate}" ]; do sleep 0.05; done'
    first = int(tw.run("launch", "--detach", "--group", "g", "sh", "-c", blocker, check=True).stdout)
    proc = host.launch("--group", "g", "--lease", "2", "true")  # in line, in the foreground, on hosta

    def waiter():
        listed = tw.tasks().items()
        return next((int(i) for i, t in listed if t["status"] == "QUEUED" and t["host"] == "hosta"), None)

    waiting = wait_for(waiter, 60, "hosta's launcher waiting in line")
    third = int(tw.run("launch", "--detach", "--group", "g", "touch", str(started), check=True).stdout)
    host.kill_whole(proc)  # the host dies with its launcher waiting
    proc.wait(15)
    gate.touch()  # the slot is free: it was kept for the first in line, whose host is dead
    assert tw.run("control", "--wait", str(first), timeout=60).returncode == 0
    # Each look is a command: once the waiter's lease ran out, its row leaves the line.
    wait_for(lambda: tw.history_of(waiting), 60, "the dead waiter out of the line")
    assert tw.history_of(waiting)["termerror"] == "host lost (its launcher, waiting in line)"
    assert tw.run("control", "--wait", str(third), timeout=60).returncode == 0
    assert started.exists()


def test_a_launcher_that_went_through_the_line_is_not_woken_by_other_tasks_changes(tw, pg_url, tmp_path):
    """Waiting in line, a foreground launcher listens for every change (a slot may free); once
    its task runs, only a stop request of its own wakes it, as any launcher's."""
    import psycopg

    from taskwatcher.store.postgres import PostgresStore

    gate = tmp_path / "gate"
    blocker = f'while [ ! -e "{gate}" ]; do sleep 0.05; done'
    first = tw.run("launch", "--detach", "--group", "g", "sh", "-c", blocker, check=True).stdout.strip()
    launcher = tw.popen("launch", "--group", "g", "sleep", "300")
    try:
        wait_for(lambda: [t["status"] for t in tw.tasks().values()] == ["RUNNING", "QUEUED"], 60, "in line")
        gate.touch()
        assert tw.run("control", "--wait", first, timeout=60).returncode == 0
        wait_for(lambda: any(t["pid"] for t in tw.tasks().values()), 60, "its turn: the task runs")
        with PostgresStore(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as listener:
            listener.execute("LISTEN taskwatcher")
            before = wakeups(launcher.pid)
            for n in range(20):  # each change announced (this listener heard it) before the next
                store.reserve(f"other-{n}", (None, None, None), False, 600)
                assert next(listener.notifies(timeout=10, stop_after=1), None) is not None
            woken = wakeups(launcher.pid) - before
        assert woken <= 3, f"woken {woken} times by 20 changes of other tasks"  # (a renewal, at most)
    finally:
        launcher.kill()
        launcher.wait(15)
