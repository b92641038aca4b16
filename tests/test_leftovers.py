"""What a task leaves behind is stopped with it, whatever it tried: every descendant gets
SIGTERM (also one re-parented to the launcher mid-stop, or forked during the grace period), then
SIGKILL after the grace period, and the launcher never blocks on one (SPEC "Supervision")."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import support
from conftest import wait_for
from support import Launches, gone, helper, kill_own_processes, own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)

GRACE = 1.0
MARGIN = 2.5  # beyond the grace period: KILL_MARGIN (1 s), reaping, archiving, on a loaded machine
KINDS = ["double-fork", "setpgid", "env-i", "ignoring", "spawning", "chain", "storm"]


launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


def noted(log: Path, word: str, before_stop: bool = False) -> set[int]:
    text = log.read_text()
    if before_stop:
        text = text[: text.index("all ready")]
    return {int(x.split()[1]) for x in text.splitlines() if x.startswith(word + " ")}


def all_ready(log: Path) -> None:
    wait_for(lambda: log.exists() and "all ready" in log.read_text(), 15, "the leftovers to be set up")


def assert_stopped(tw, log: Path) -> None:
    """Every leftover is gone, and each got SIGTERM before SIGKILL.

    (The one a spawning leftover starts during the stop is signalled as it starts, but a
    program signalled between its fork and its exec can lose the signal: it is only checked gone.)
    """
    ready = noted(log, "ready")
    assert ready
    assert all(gone(pid) for pid in ready), [p for p in ready if not gone(p)]
    before = noted(log, "ready", before_stop=True)
    assert noted(log, "term") >= before, before - noted(log, "term")
    assert own_processes(Path(tw.env["HOME"])) == []  # the storm's children too


@pytest.mark.parametrize("kind", KINDS)
def test_leftovers_of_a_main_process_that_exits_are_stopped_without_blocking(tw, tmp_path, launches, kind):
    log = tmp_path / "task.log"
    proc = launches.start("--grace", str(GRACE), "--", *helper("leftovers", log, "1", kind, "--exit"))
    all_ready(log)
    t0 = time.monotonic()
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - t0 < GRACE + MARGIN
    assert_stopped(tw, log)
    (entry,) = tw.history().values()
    assert entry["termerror"] == "" and entry["exitcode"] == 0


def test_leftovers_are_stopped_at_the_timeout_without_blocking(tw, tmp_path, launches):
    log = tmp_path / "task.log"
    args = ("--timeout", "1.5", "--grace", str(GRACE))
    proc = launches.start(*args, "--", *helper("leftovers", log, str(len(KINDS)), *KINDS))
    all_ready(log)
    t0 = time.monotonic()
    assert proc.wait(timeout=15) == 124
    assert time.monotonic() - t0 < 1.5 + GRACE + MARGIN
    assert_stopped(tw, log)
    (entry,) = tw.history().values()
    assert entry["termerror"] == "timeout: ran for more than 1.5 s"
    assert entry["termsignal"] == "SIGTERM"  # what ended the main process


def test_leftovers_are_stopped_by_kill_which_reports_the_task_killed(tw, tmp_path, launches):
    log = tmp_path / "task.log"
    proc = launches.start("--grace", str(GRACE), "--", *helper("leftovers", log, str(len(KINDS)), *KINDS))
    all_ready(log)
    taskid, _ = running_task(tw)
    t0 = time.monotonic()
    killed = tw.run("control", "--kill", taskid)
    assert time.monotonic() - t0 < GRACE + MARGIN + 0.5  # the control command's own start-up
    assert (killed.returncode, killed.stdout.strip()) == (0, f"task {taskid}: killed"), killed.stderr
    proc.wait(timeout=5)
    assert_stopped(tw, log)
    assert tw.history_of(taskid)["termerror"] == "killed by request"


def test_the_direct_children_of_the_launcher_are_reaped(tw, tmp_path):
    """No zombie is left: a leftover re-parented to the launcher is reaped by it."""
    log = tmp_path / "task.log"
    done = tw.run("launch", "--grace", str(GRACE), "--", *helper("leftovers", log, "1", "chain", "--exit"))
    assert done.returncode == 0, done.stderr
    assert_stopped(tw, log)
    assert subprocess.run(["true"]).returncode == 0


def term_pending(pid: int) -> bool:
    """SIGTERM waits in the (stopped) process's shared pending set."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("ShdPnd:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def test_kill_racing_a_sigkilled_launcher_stops_the_remains_and_says_so(tw, tmp_path, launches):
    pidfile = tmp_path / "escapee.pid"
    proc = launches.start("--grace", str(GRACE), "--", *helper("escape", pidfile))
    escapee = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), 10, "the escapee")
    taskid, task = running_task(tw)
    os.kill(proc.pid, signal.SIGSTOP)  # the launcher cannot act on the request...
    killer = tw.popen("control", "--kill", taskid)
    wait_for(lambda: term_pending(proc.pid), 10, "--kill's SIGTERM to reach the launcher")
    os.kill(proc.pid, signal.SIGKILL)  # ...and is SIGKILLed by someone else first
    out, err = killer.communicate(timeout=15)
    assert killer.returncode == 0, err
    assert (
        out.strip() == f"task {taskid}: its launcher died first; what was left was killed, archived as lost"
    )
    wait_for(lambda: gone(escapee) and gone(task["pid"]), 5, "the task's processes to be gone")
    assert tw.history_of(taskid)["termerror"] == "launcher lost"
    assert tw.tasks() == {}


def test_a_process_name_in_a_message_is_shown_escaped():
    """A process may name itself anything (prctl PR_SET_NAME): the launcher's messages that name
    the processes it could not stop show escape sequences escaped, never raw."""
    import sys

    from taskwatcher import process, supervisor

    code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, b'ev\\x1b[2Jil', 0, 0, 0);"
            " print('named', flush=True); time.sleep(30)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "named\n"
        ident = process.Identity.of(child.pid)
        shown = supervisor._shown(supervisor._describe({ident}))
        assert shown == f"pid {child.pid} (ev\\e[2Jil)"
    finally:
        child.kill()
        child.wait()
