"""One database used from two pid namespaces of one host (containers sharing a volume): a row
made in another namespace is judged like one from another host, never signalled or archived as
lost from here (SPEC "Supervision"; RELIABILITY.md)."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess

import psutil
import pytest

from conftest import TW, wait_for
from support import gone, kill_own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)
from taskwatcher.store import SCHEMA_VERSION

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def pid_namespaces_or_skip() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("NOT TESTED: unshare(1) is not installed, so no second pid namespace can be made")
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"NOT TESTED: the kernel refuses a new pid namespace here: {probe.stderr.strip()}")


@pytest.mark.sqlite_only(
    "SQLite refuses a kill across pid namespaces; PostgreSQL asks the owning launcher by NOTIFY"
    " and it is obeyed (tests/test_many_hosts.py)"
)
def test_a_task_of_another_pid_namespace_is_left_alone(tw, tmp_path):
    pid_namespaces_or_skip()
    inner = subprocess.Popen(
        [*UNSHARE, *TW, "launch", "--db", str(tw.db), "--name", "inside", "--grace", "1",
         "--", "sleep", "300"],
        env=tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        taskid, task = running_task(tw, "inside")
        launcher = wait_for(lambda: psutil.Process(inner.pid).children(), 10, "the launcher")[0]
        sleeper = wait_for(
            lambda: [p for p in launcher.children() if p.name() == "sleep"], 10, "the task outside"
        )[0]
        assert task["pid"] != sleeper.pid  # the row holds the pid as seen inside
        for _ in range(3):  # every command reconciles; none may judge the inside launcher dead
            assert taskid in tw.tasks(), f"the task ended: {tw.history()}"
        assert tw.history() == {}
        assert not gone(sleeper.pid)
        refused = tw.run("control", "--kill", taskid)
        assert refused.returncode != 0
        assert f"task {taskid} runs in another pid namespace: stop it there" in refused.stderr
        assert not gone(sleeper.pid)
        # From its own namespace it is stopped as usual (its launcher handles SIGTERM, even as pid 1).
        launcher.send_signal(signal.SIGTERM)
        inner.wait(timeout=15)
        entry = wait_for(lambda: tw.history_of(taskid), 10, "the end, archived from inside")
        assert entry["termerror"] == "launcher interrupted by SIGTERM"
        assert gone(sleeper.pid)
    finally:
        if inner.poll() is None:
            inner.kill()
        inner.communicate(timeout=10)


@pytest.mark.sqlite_only("an upgrade of an SQLite file of schema 2")
def test_a_database_of_the_previous_schema_gets_the_namespace_column(tw):
    assert tw.run("control", "--reserve", check=True).stdout.strip() == "1"
    with sqlite3.connect(tw.db) as conn:
        conn.execute("ALTER TABLE tasks DROP COLUMN pidns")
        conn.execute("PRAGMA user_version=2")
    conn.close()
    assert "1" in tw.tasks()  # opened, upgraded in place, the reservation kept
    with sqlite3.connect(tw.db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert "pidns" in columns and version == SCHEMA_VERSION
    done = tw.run("launch", "--", "true")
    assert done.returncode == 0, done.stderr
