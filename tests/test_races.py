"""Regressions from review: stops that arrive before the command runs, pid and id reuse,
and bounds on what the command line accepts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import db_sql, wait_for
from support import gone, kill_own_processes, one_line_error, reaper  # noqa: F401  (reaper: an autouse fixture)
from taskwatcher import process


def holds_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def plant(tw, name: str, **fields: object) -> int:
    """A reservation made by the CLI, then given ``fields`` directly in its row (on either backend)."""
    taskid = int(tw.run("control", "--reserve", "--name", name, check=True).stdout)
    sets = ", ".join(f"{column} = ?" for column in fields)
    db_sql(tw.db, f"UPDATE tasks SET {sets} WHERE id = ?", (*fields.values(), taskid))
    return taskid


@pytest.mark.sqlite_only("holds the SQLite file's write lock so that the launcher waits on the file")
def test_a_launch_interrupted_before_its_command_runs_never_runs_it(tw, tmp_path):
    """SIGINT while the launcher waits for the database: the command must not start afterwards."""
    tw.run("control", "--list", check=True)  # the database exists
    marker = tmp_path / "ran"
    lock = sqlite3.connect(tw.db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the launcher's claim waits behind this
    try:
        launcher = tw.popen("launch", "--name", "early", "--", "touch", str(marker))
        wait_for(lambda: holds_open(launcher.pid, tw.db), 10, "the launcher to open the database")
        launcher.send_signal(signal.SIGINT)
    finally:
        lock.execute("COMMIT")
        lock.close()
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == -signal.SIGINT, err  # it ends by the signal (history says 125)
    assert not marker.exists()
    entry = tw.history_of(1)
    assert entry is not None and entry["termerror"] == "launcher interrupted by SIGINT before it started"
    assert entry["exitcode"] == 125


def test_a_lost_task_never_kills_a_stranger_holding_its_old_group_id(tw, tmp_path):
    """After the task's group is gone its id is free: a new session with that id is not the task."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        me = process.Identity.of(os.getpid())
        taskid = plant(
            tw,
            "old",
            status="RUNNING",
            pid=stranger.pid + 1_000_000,  # long dead
            pgid=stranger.pid,  # the stranger's session and group now
            procstart=0,  # "started before the stranger": group checks alone would pass
            launcherpid=stranger.pid + 1_000_001,
            launcherstart=1,
            bootid=me.boot,
            host=process.host_name(),
            token="0123456789abcdef",
            starttime=int(time.time()),
            started=time.time(),
        )
        tw.run("control", "--list", check=True)
        entry = tw.history_of(taskid)
        assert entry is not None and entry["termerror"] == "launcher lost"
        assert stranger.poll() is None, "the stranger was killed"
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize("detach", [False, True])
def test_a_stop_requested_before_the_command_runs_is_obeyed(tw, tmp_path, detach):
    """control --kill landing between the claim and the start (seen with --detach, where it
    signalled the short-lived parent): the supervisor reads the request and runs nothing.
    The request is planted on the reservation so that it is there at that moment, every time."""
    marker = tmp_path / "ran"
    taskid = int(tw.run("control", "--reserve", check=True).stdout)
    db_sql(tw.db, "UPDATE tasks SET stopreason = 'killed by request' WHERE id = ?", (taskid,))
    proc = tw.run(
        "launch", *(["--detach"] if detach else []), "--taskid", str(taskid), "--", "touch", str(marker)
    )
    assert proc.returncode == 125
    entry = wait_for(lambda: tw.history_of(taskid), 10, "the history row")
    assert entry["termerror"] == "killed by request before it started"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("launch", "--timeout", "1e300", "--", "true"), 125),
        (("launch", "--grace", "1e12", "--", "true"), 125),
        (("launch", "--taskid", "99999999999999999999", "--", "true"), 125),
        (("control", "--kill", "99999999999999999999"), 2),
        (("control", "--feedback", "9223372036854775808"), 2),
    ],
)
def test_out_of_range_numbers_are_usage_errors(tw, args, code):
    proc = tw.run(*args)
    assert proc.returncode == code
    message = one_line_error(proc)
    assert "too long" in message or "an integer from 1 to" in message


def test_a_large_timeout_is_accepted(tw):
    assert tw.run("launch", "--timeout", "1e8", "--", "true").returncode == 0


@pytest.mark.parametrize(("tool", "code"), [("control", 2), ("launch", 125)])
def test_an_empty_db_path_is_refused_not_taken_for_the_default(tw, env, state, tool, code):
    args = ["--list"] if tool == "control" else ["--", "true"]
    proc = subprocess.run(
        [*__import__("conftest").TW, tool, "--db", "", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == code
    assert "--db needs a path" in proc.stderr
    assert not (state / "taskwatcher").exists()


def test_signal_verified_does_not_count_a_zombie(tmp_path):
    child = subprocess.Popen(["true"])
    ident = process.Identity.of(child.pid)
    wait_for(lambda: process.read_stat(child.pid).state == "Z", 10, "the child to be a zombie")
    assert ident is not None and not process.signal_verified(ident, signal.SIGTERM)
    child.wait()
    assert gone(child.pid)


def test_a_row_from_a_previous_boot_is_archived_without_signalling_anything(tw):
    """Same pid, same start ticks, other boot: after a reboot those numbers name a stranger."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ident = process.Identity.of(stranger.pid)
        taskid = plant(
            tw,
            "before-reboot",
            status="RUNNING",
            pid=stranger.pid,
            pgid=stranger.pid,
            procstart=ident.start,
            launcherpid=stranger.pid,  # even the "launcher" looks alive on this boot
            launcherstart=ident.start,
            bootid="00000000-0000-0000-0000-000000000000",
            host=process.host_name(),
            token="fedcba9876543210",
            starttime=int(time.time()),
            started=time.time(),
        )
        tw.run("control", "--list", check=True)
        entry = tw.history_of(taskid)
        assert entry is not None
        assert (entry["termerror"], entry["termsignal"]) == ("launcher lost (reboot)", "")
        assert stranger.poll() is None, "a process of this boot was signalled"
    finally:
        stranger.kill()
        stranger.wait()
