"""A zombie thread-group leader with live threads is alive: the launcher's stop and the next
command's token search both find it and stop it, and neither waits on it forever."""

from __future__ import annotations

import os
import time
from pathlib import Path

import support
from conftest import wait_for
from support import Launches, helper, kill_own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)
from taskwatcher import process

GRACE = 1.0


launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


def threads_gone(pid: int) -> bool:
    """Not one thread of the process lives (psutil and ``gone`` take a zombie leader for dead)."""
    try:
        tids = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
    except FileNotFoundError:
        return True
    return not tids


def zombie_leader(pidfile: Path) -> int:
    pid = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), 10, "the leftover")
    wait_for(lambda: (s := process.read_stat(pid)) and s.state == "Z", 10, "its main thread to end")
    return pid


def test_a_zombie_leader_with_live_threads_is_alive(tmp_path):
    pidfile = tmp_path / "leader.pid"
    import subprocess

    proc = subprocess.Popen(helper("zombie_leader", pidfile, "--then-exit"))
    try:
        pid = zombie_leader(pidfile)
        assert process.is_running(process.read_stat(pid))
        assert process.Identity.of(pid).is_alive()
    finally:
        proc.wait(timeout=10)
        process.signal_verified(process.Identity.of(pid), 9)


def test_a_zombie_leader_left_behind_is_stopped_at_once(tw, tmp_path, launches):
    pidfile = tmp_path / "leader.pid"
    proc = launches.start("--grace", str(GRACE), "--", *helper("zombie_leader", pidfile, "--then-exit"))
    pid = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), 10, "the leftover")
    t0 = time.monotonic()
    assert proc.wait(timeout=15) == 0  # its main process saw the leftover Z before it exited
    assert time.monotonic() - t0 < GRACE + 1.5  # not the 60 s its thread would live
    assert threads_gone(pid)


def test_a_zombie_leader_is_found_by_its_token_after_the_launcher_is_killed(tw, tmp_path, launches):
    pidfile = tmp_path / "leader.pid"
    proc = launches.start("--", *helper("zombie_leader", pidfile))
    pid = zombie_leader(pidfile)
    taskid, _ = running_task(tw)
    proc.kill()
    proc.wait(timeout=10)
    assert tw.run("control", "--update").returncode == 0
    assert tw.history_of(taskid)["termerror"] == "launcher lost"
    wait_for(lambda: threads_gone(pid), 5, "the zombie leader's threads to be killed")
