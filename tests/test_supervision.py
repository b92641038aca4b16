"""Supervision through the real CLI: heartbeat statuses, timeouts, stopping whole process trees,
an interrupted or killed launcher, the history row; and recycled-pid safety at unit level
(SPEC, "Supervision")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import support
from conftest import SEED_HISTORY_COLUMNS, wait_for
from support import Launches, ended, gone, helper, kill_own_processes, own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)
from taskwatcher import process
from taskwatcher.process import Identity

launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


HISTORY_SEED_KEYS = set(SEED_HISTORY_COLUMNS) - {"id"}


def tree(root: int) -> list[psutil.Process]:
    try:
        return psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def sleeps_under(launcher: int, count: int = 2) -> list[int]:
    """Wait until ``count`` sleep processes run under the launcher; their pids."""

    def find():
        pids = []
        for p in tree(launcher):
            try:
                if p.name() == "sleep" and p.status() != psutil.STATUS_ZOMBIE:
                    pids.append(p.pid)
            except psutil.Error:
                pass
        return pids if len(pids) >= count else None

    return wait_for(find, 10, f"{count} sleep processes in the task's tree")


def all_gone(pids, timeout: float = 10) -> None:
    wait_for(lambda: all(gone(p) for p in pids), timeout, f"processes {pids} to be gone")


def read_pid(path: Path) -> int:
    wait_for(path.exists, 10, f"{path.name}")
    return int(path.read_text())


# -- heartbeat statuses and timeouts --------------------------------------------------------
def test_silent_task_goes_running_silent_stalled_then_times_out(tw, tmp_path, launches):
    timeout = 6.0  # each status lasts a quarter of it or more: a look (on PostgreSQL, a second) sees each
    fb = tmp_path / "fb"
    fb.mkdir()
    go = tmp_path / "go"
    t0 = time.monotonic()
    proc = launches.start(
        "--feedpath", fb, "--timeout", timeout, "--grace", "0.5", "--", *helper("waiter", go)
    )
    taskid, _ = running_task(tw)
    seen: list[tuple[str, float]] = []  # (status, seconds since before the launch)

    def observe():
        task = tw.tasks().get(taskid)
        if task is None:
            return True
        if not seen or seen[-1][0] != task["status"]:
            seen.append((task["status"], time.monotonic() - t0))
        return False

    wait_for(observe, timeout + 10, "the task to end")
    assert proc.wait(timeout=10) == 124
    elapsed = time.monotonic() - t0
    first = dict(reversed(seen))  # each status: when it was first seen
    # RUNNING is missed only by a first look that came after its time (a slow command)
    assert [s for s, _ in seen] in (["RUNNING", "SILENT", "STALLED"], ["SILENT", "STALLED"]), seen
    assert "RUNNING" in first or first["SILENT"] >= 0.25 * timeout, seen
    assert first["SILENT"] >= 0.25 * timeout
    assert first["STALLED"] >= 0.50 * timeout
    assert timeout <= elapsed
    entry = tw.history_of(taskid)
    # stopped at its timeout, as the launcher measured it (whatever the launcher's start cost)
    assert timeout - 1 <= entry["duration"] <= timeout + 2, entry
    assert entry["exitcode"] == 124
    assert "timeout" in entry["termerror"]
    assert "feedback" in entry["termerror"]
    assert entry["termsignal"] == "SIGTERM"


def test_heartbeats_keep_a_task_alive_beyond_its_timeout(tw, tmp_path, launches):
    timeout = 1.0
    fb = tmp_path / "fb"
    fb.mkdir()
    stop = tmp_path / "stop"
    proc = launches.start(
        "--feedpath", fb, "--timeout", timeout, "--", *helper("feeder", "--every", "0.1", "--until", stop)
    )
    taskid, _ = running_task(tw)
    feedfile = fb / f"feedback_{taskid}.log"
    first_beat = wait_for(
        lambda: feedfile.exists() and feedfile.stat().st_size > 0 and time.monotonic(),
        10,
        "a first heartbeat",
    )

    def lived_long_enough():
        task = tw.tasks().get(taskid)
        assert task is not None, "stopped although it kept writing its feedback file"
        assert task["status"] != "STALLED", task
        return time.monotonic() - first_beat > 3 * timeout

    wait_for(lived_long_enough, 20, "3 timeouts to pass")
    stop.touch()
    assert proc.wait(timeout=10) == 0
    entry = tw.history_of(taskid)
    assert (entry["exitcode"], entry["termerror"], entry["termsignal"]) == (0, "", "")
    assert entry["duration"] >= 3
    assert int(entry["feedback"]["beat"]) > 10


def test_timeout_without_feedpath_is_a_maximum_run_time(tw, tmp_path):
    timeout = 1.0
    t0 = time.monotonic()
    proc = tw.run("launch", "--timeout", str(timeout), "--grace", "0.5", "--", "sleep", "30")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 124
    assert timeout <= elapsed <= timeout + 3
    (entry,) = tw.history().values()
    assert entry["exitcode"] == 124
    assert "timeout" in entry["termerror"]


def test_without_feedpath_status_stays_running(tw, tmp_path, launches):
    go = tmp_path / "go"
    launches.start("--timeout", "30", "--", *helper("waiter", go))
    taskid, _ = running_task(tw)
    t0 = time.monotonic()

    def still_running_after_a_while():
        task = tw.tasks()[taskid]
        assert task["status"] == "RUNNING", task
        return time.monotonic() - t0 > 1.0  # 25 % of a 4 s heartbeat timeout would be SILENT

    wait_for(still_running_after_a_while, 10, "1 s of observation")
    go.touch()
    assert ended(tw, taskid)["exitcode"] == 0


def test_without_timeout_status_stays_running(tw, tmp_path, launches):
    fb = tmp_path / "fb"
    fb.mkdir()
    go = tmp_path / "go"
    launches.start("--feedpath", fb, "--", *helper("waiter", go))
    taskid, _ = running_task(tw)

    def silent_for_a_while():
        task = tw.tasks()[taskid]
        assert task["status"] == "RUNNING", task
        return task["timer"] is not None and task["timer"] >= 1.0

    wait_for(silent_for_a_while, 10, "1 s of silence")
    go.touch()
    entry = ended(tw, taskid)
    assert (entry["exitcode"], entry["termerror"]) == (0, "")


def test_a_task_writing_its_feedback_in_a_tight_loop_is_read_at_a_bounded_pace(tw, tmp_path):
    """Thousands of writes in about a second: the launcher reads and stores the file at most
    every 0.1 s (the changes meanwhile folded into one), not once per write, and what
    history keeps is still the file's result."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    writer = (
        "import os, sys, time\n"
        "end = time.monotonic() + 1.0\n"
        "n = 0\n"
        "with open(os.environ['TASKWATCHER_FEEDBACK'], 'a') as f:\n"
        "    while time.monotonic() < end or n < 2000:\n"
        "        n += 1\n"
        "        f.write(f'[n]{n}\\n')\n"
        "        f.flush()\n"
        "print(n)\n"
    )
    began = time.monotonic()
    proc = tw.run("launch", "--debug", "--feedpath", str(feeds), "--", sys.executable, "-c", writer)
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    writes = int(proc.stdout.split()[-1])
    reads = proc.stderr.count("feedback read to byte")
    assert 1 <= reads <= took / 0.1 + 2, f"{reads} reads of {writes} writes in {took:.2f} s"
    (entry,) = tw.history().values()
    assert entry["feedback"] == {"n": str(writes)}


def test_stale_feedback_file_is_removed_before_start(tw, tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    taskid = int(tw.run("control", "--reserve", check=True).stdout)
    stale = fb / f"feedback_{taskid}.log"
    stale.write_text("[stale]1\n")
    proc = tw.run(
        "launch", "--taskid", str(taskid), "--feedpath", str(fb), "--", *helper("feeder", "fresh=1")
    )
    assert proc.returncode == 0, proc.stderr
    entry = tw.history_of(taskid)
    assert entry["feedback"] == {"fresh": "1"}
    assert not stale.exists()


def test_stale_feedback_file_is_replaced_by_an_empty_one_when_the_command_starts(tw, tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    out = tmp_path / "facts.json"
    taskid = int(tw.run("control", "--reserve", check=True).stdout)
    (fb / f"feedback_{taskid}.log").write_text("[stale]1\n")
    proc = tw.run("launch", "--taskid", str(taskid), "--feedpath", str(fb), "--", *helper("record", out))
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())
    # Decision: the launcher makes the file itself, empty, before the command starts (it owns it).
    assert facts["feedback_content"] == ""
    assert "stale" not in tw.history_of(taskid)["feedback"]


def test_history_row_after_a_normal_end(tw, tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    before = int(time.time())
    proc = tw.run(
        "launch",
        "--name",
        "report",
        "--info1",
        "one",
        "--info2",
        "two",
        "--info3",
        "three",
        "--feedpath",
        str(fb),
        "--",
        *helper("feeder", "progress=100", "stage=done"),
    )
    after = int(time.time()) + 1
    assert proc.returncode == 0, proc.stderr
    (entry,) = tw.history().values()
    assert set(entry) >= HISTORY_SEED_KEYS | {"exitcode"}
    taskid = entry["taskid"]
    assert entry["taskname"] == "report"
    assert (entry["info1"], entry["info2"], entry["info3"]) == ("one", "two", "three")
    assert (entry["termsignal"], entry["termerror"], entry["exitcode"]) == ("", "", 0)
    assert entry["feedback"] == {"progress": "100", "stage": "done"}
    assert isinstance(entry["starttime"], int) and isinstance(entry["endtime"], int)
    assert before <= entry["starttime"] <= entry["endtime"] <= after
    assert entry["duration"] is not None and 0 <= entry["duration"] <= after - before
    assert tw.run("control", "--feedback", str(taskid), check=True).stdout.strip() == (
        '{"progress": "100", "stage": "done"}'
    )
    assert not (fb / f"feedback_{taskid}.log").exists()
    assert os.listdir(fb) == []
    assert tw.tasks() == {}


# -- stopping whole process trees -----------------------------------------------------------
def test_timeout_stops_grandchildren(tw, launches):
    proc = launches.start("--timeout", "2", "--grace", "0.5", "--", "sh", "-c", "sleep 301 & sleep 302")
    pids = sleeps_under(proc.pid)
    assert proc.wait(timeout=15) == 124
    all_gone(pids)


def test_kill_stops_grandchildren(tw, launches):
    proc = launches.start("--grace", "0.5", "--", "sh", "-c", "sleep 301 & sleep 302")
    pids = sleeps_under(proc.pid)
    taskid, task = running_task(tw)
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0, killed.stderr
    all_gone([*pids, task["pid"]])
    proc.wait(timeout=10)
    entry = tw.history_of(taskid)
    assert entry["termerror"] == "killed by request"


def test_child_ignoring_sigterm_is_killed_after_grace(tw, tmp_path, launches):
    ready = tmp_path / "ready"
    proc = launches.start(
        "--grace", "0.5", "--", *helper("waiter", tmp_path / "never", "--ignore-term", "--ready", ready)
    )
    pid = read_pid(ready)
    taskid, _ = running_task(tw)
    t0 = time.monotonic()
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0, killed.stderr
    assert time.monotonic() - t0 >= 0.45  # SIGTERM, the grace period, then SIGKILL
    assert gone(pid)
    proc.wait(timeout=10)
    entry = tw.history_of(taskid)
    assert entry["termsignal"] == "SIGKILL"
    assert entry["termerror"] == "killed by request"


def test_one_kill_gives_the_whole_grace_period(tw, tmp_path, launches):
    """One --kill is one request: on a store many hosts share, the launcher of this host is
    signalled and not also notified (a second delivery would count as a second kill, which
    skips the grace). The task notes its SIGTERM and lives on until the SIGKILL."""
    term = tmp_path / "term"
    ready = tmp_path / "ready"
    # The moment is read from /proc/uptime by the shell's own `read` and written by its own
    # `echo` (no fork: on a loaded machine a `date` forked by the trap could still be on its
    # way when the SIGKILL comes, leaving the file empty); it is the boot clock's.
    script = (
        f'trap \'read up _ < /proc/uptime; echo "$up" > "{term}"\' TERM; echo go > "{ready}";'
        " while :; do sleep 0.02; done"
    )
    proc = launches.start("--grace", "3", "--", "sh", "-c", script)
    wait_for(ready.exists, 30, "the task to start")
    taskid, _ = running_task(tw)
    assert tw.run("control", "--kill", taskid, timeout=60).returncode == 0  # returns once it is archived
    killed = time.clock_gettime(time.CLOCK_BOOTTIME)
    proc.wait(timeout=30)
    entry = tw.history_of(taskid)
    assert entry["termsignal"] == "SIGKILL" and entry["termerror"] == "killed by request"
    assert term.exists(), "the task never had its SIGTERM"
    assert killed - float(term.read_text()) >= 2.5  # the grace (3 s) between SIGTERM and SIGKILL


def test_timeout_of_a_child_ignoring_sigterm_ends_with_sigkill(tw, tmp_path, launches):
    ready = tmp_path / "ready"
    fb = tmp_path / "fb"
    fb.mkdir()
    proc = launches.start(
        "--feedpath",
        fb,
        "--timeout",
        "2",
        "--grace",
        "0.5",
        "--",
        *helper("waiter", tmp_path / "never", "--ignore-term", "--ready", ready),
    )
    pid = read_pid(ready)
    taskid, _ = running_task(tw)
    assert proc.wait(timeout=15) == 124
    assert gone(pid)
    entry = tw.history_of(taskid)
    assert entry["termsignal"] == "SIGKILL"
    assert "timeout" in entry["termerror"]


def test_setsid_escapee_is_killed_with_the_task(tw, tmp_path, launches):
    pidfile = tmp_path / "escapee.pid"
    proc = launches.start("--grace", "0.5", "--", *helper("escape", pidfile))
    escapee = read_pid(pidfile)
    taskid, task = running_task(tw)
    assert os.getsid(escapee) != os.getsid(task["pid"])  # it really left the task's session
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0, killed.stderr
    all_gone([escapee, task["pid"]])
    proc.wait(timeout=10)


def test_setsid_escapee_is_stopped_when_the_command_exits(tw, tmp_path):
    """The command never outlives its supervision: what it leaves behind is stopped too."""
    pidfile = tmp_path / "escapee.pid"
    proc = tw.run("launch", "--grace", "0.5", "--", *helper("escape", pidfile, "--then-exit"))
    assert proc.returncode == 0, proc.stderr
    all_gone([read_pid(pidfile)], timeout=5)


def test_setsid_escapee_is_stopped_on_timeout(tw, tmp_path, launches):
    pidfile = tmp_path / "escapee.pid"
    proc = launches.start("--timeout", "2", "--grace", "0.5", "--", *helper("escape", pidfile))
    escapee = read_pid(pidfile)
    assert proc.wait(timeout=15) == 124
    all_gone([escapee], timeout=5)


# -- the launcher interrupted or killed -----------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_launcher_interrupted_stops_the_task(tw, tmp_path, launches, sig):
    proc = launches.start("--grace", "0.5", "--", "sh", "-c", "sleep 301 & sleep 302")
    pids = sleeps_under(proc.pid)
    taskid, task = running_task(tw)
    proc.send_signal(sig)
    proc.wait(timeout=15)
    all_gone([*pids, task["pid"]])
    entry = tw.history_of(taskid)
    assert entry is not None
    assert entry["termerror"] == f"launcher interrupted by {sig.name}"
    assert tw.tasks() == {}


def test_launcher_killed_task_is_stopped_and_archived_as_lost(tw, tmp_path, launches):
    proc = launches.start("--name", "lostjob", "--unique", "--", "sh", "-c", "sleep 301 & sleep 302")
    pids = sleeps_under(proc.pid)
    taskid, task = running_task(tw, "lostjob")
    child = task["pid"]
    proc.kill()
    proc.wait(timeout=10)
    # the parent-death signal, before any other taskwatcher command runs
    wait_for(lambda: gone(child), 5, "the direct child to die with its launcher")
    listed = tw.tasks()  # the next command archives the row
    assert taskid not in listed
    entry = tw.history_of(taskid)
    assert entry is not None
    assert entry["termerror"] == "launcher lost"
    all_gone([child, *pids])
    assert own_processes(tmp_path / "home") == []
    again = tw.run("control", "--reserve", "--name", "lostjob", "--unique")
    assert again.returncode == 0, again.stderr


def test_launcher_killed_setsid_escapee_does_not_survive(tw, tmp_path, launches):
    """SPEC: if the launcher is killed outright the task is stopped too (its whole tree)."""
    pidfile = tmp_path / "escapee.pid"
    proc = launches.start("--", *helper("escape", pidfile))
    escapee = read_pid(pidfile)
    taskid, _ = running_task(tw)
    proc.kill()
    proc.wait(timeout=10)
    assert tw.run("control", "--update").returncode == 0
    assert tw.history_of(taskid)["termerror"] == "launcher lost"
    all_gone([escapee], timeout=3)


# -- recycled pids (unit level) -------------------------------------------------------------
@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_signal_verified_spares_a_process_with_another_start_time(sleeper):
    ident = Identity.of(sleeper.pid)
    assert ident is not None
    recycled = Identity(sleeper.pid, ident.start - 1, process.boot_id())
    assert process.signal_verified(recycled, signal.SIGTERM) is False
    assert sleeper.poll() is None
    assert Identity.of(sleeper.pid) == ident


def test_signal_verified_hits_the_same_process(sleeper):
    ident = Identity(sleeper.pid, process.start_ticks(sleeper.pid), process.boot_id())
    assert process.signal_verified(ident, signal.SIGTERM) is True
    assert sleeper.wait(timeout=10) == -signal.SIGTERM


def test_signal_verified_spares_a_process_from_another_boot(sleeper):
    ident = Identity.of(sleeper.pid)
    other_boot = Identity(sleeper.pid, ident.start, "00000000-0000-0000-0000-000000000000")
    assert process.signal_verified(other_boot, signal.SIGTERM) is False
    assert sleeper.poll() is None


def test_signal_verified_of_a_reaped_process_is_false():
    proc = subprocess.Popen(["true"])
    ident = Identity.of(proc.pid)
    proc.wait()
    if ident is not None:
        assert process.signal_verified(ident, signal.SIGTERM) is False
    assert Identity(proc.pid, 1, process.boot_id()).is_alive() is False


def test_identity_of_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = Identity.of(proc.pid)
    wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie")
    try:
        assert ident is not None and ident.is_alive() is False
    finally:
        proc.wait()
