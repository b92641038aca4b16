"""taskwatcher 1.7's command lines on ours where ours does what 1.7 documented rather than
what its code did: 1.7's own test program (sleeping, feedbacking, progressing) under our
launcher through the 1.7 entry point, the timeout that stops a silent task, real exit
statuses, commands 1.7 accepted and ignored, and no command exiting 0 having done nothing.
MIGRATING.md lists each of these differences."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from compat.sides import Side, assert_nothing_written_in
from conftest import wait_for
from taskwatcher import TaskWatcher
from taskwatcher.compat import v17

SEED_FEEDBACK = (
    "[info]Starting test\n[playbook]myPlaybook\n[info]\n[heartbeat]\n[testcase_id]001\n"
    "[testcase_name]Initialization\n[progress]12\n[progress]15\n[testcase_id]002\n"
    "[testcase_name]Setting up topology\n[progress]10\n"
)
SEED_RESULT = {"playbook": "myPlaybook", "testcase_id": "002", "testcase_name": "Setting up topology",
               "progress": "10"}  # fmt: skip


def reserve(side: Side, *args: str) -> int:
    proc = side.run("control", "task", "--reserve", *args)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[1])


def history(side: Side) -> list[dict]:
    """``history --list``'s entries (read in this process: the output itself is test_side_by_side's)."""
    return list(json.loads(TaskWatcher(side.cwd / "sqlite.db").history_json()).values())


def listed(side: Side) -> dict:
    """``task --list --json``'s tasks, read in this process."""
    return v17.tasks_as_1x(TaskWatcher(side.cwd / "sqlite.db").tasks_json())


@pytest.fixture
def feedpath(ours: Side) -> str:
    """The task's folder: 1.7 tasks write ``--feedback feedback_ID.log`` (a file name) where they run."""
    folder = ours.cwd / "run"
    folder.mkdir()
    return str(folder)


def launch(ours: Side, taskid: int, *args: str, **kw) -> subprocess.CompletedProcess:
    return ours.run("launch", "--db", str(ours.cwd / "sqlite.db"), "--taskid", str(taskid), *args, **kw)


# -- 1.7's test program under our launcher -------------------------------------------------------
def test_testprog_sleeping_runs_and_the_timeout_does_not_apply_to_a_task_that_does_not_report(
    ours, testprog, feedpath
):
    taskid = reserve(ours, "--taskname", "sleeper")
    proc = launch(ours, taskid, "--feedpath", feedpath, "--timeout", "0.3", "--",
                  *testprog, "--scenario", "sleeping", "--sleep", "1", cwd=feedpath)  # fmt: skip
    line = f"Command_line={' '.join(testprog)} --scenario sleeping --sleep 1\n"
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, line, "")
    (entry,) = history(ours)
    assert (entry["taskname"], entry["exitcode"], entry["termerror"]) == ("sleeper", 0, "")
    assert entry["duration"] >= 1  # 1.7 never watched such a task: 0.3 s is no limit here either
    assert_nothing_written_in(ours.cwd, "sqlite.db", "sqlite.db-wal", "sqlite.db-shm", "sqlite-logs", "run")


def test_testprog_feedbacking_its_final_feedback_is_kept_and_its_file_removed(ours, testprog, feedpath):
    text = ours.cwd / "feedback.txt"
    text.write_text(SEED_FEEDBACK)
    taskid = reserve(ours)
    proc = launch(ours, taskid, "--feedpath", feedpath, "--timeout", "5", "--", *testprog,
                  "--scenario", "feedbacking", "--textfile", str(text), "--delay", "0.01",
                  "--feedback", f"feedback_{taskid}.log", cwd=feedpath)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = history(ours)
    assert entry["feedback"] == SEED_RESULT  # 1.7 stored "to be implemented"
    assert f"feedback_{taskid}.log" not in os.listdir(feedpath)  # 1.7 left the file


def test_testprog_progressing_is_listed_running_with_its_feedback(ours, testprog, feedpath):
    taskid = reserve(ours, "--taskname", "progress")
    task = ours.popen("launch", "--db", "../sqlite.db", "--taskid", str(taskid), "--feedpath", ".",
                      "--", *testprog, "--scenario", "progressing", "--delay", "0.001",
                      "--feedback", f"feedback_{taskid}.log", cwd=feedpath)  # fmt: skip
    wait_for(lambda: listed(ours).get(str(taskid), {}).get("status") == "RUNNING", what="running")
    running = listed(ours)[str(taskid)]
    assert (running["name"], running["feedback"], running["timeout"]) == ("progress", 1, 30)  # 1.7's default
    got = ours.run("control", "task", "--feedback", str(taskid))
    assert got.returncode == 0
    assert json.loads(got.stdout).get("playbook") == "testprogr"
    _, err = task.communicate(timeout=60)
    assert task.returncode == 0, err
    (entry,) = history(ours)
    assert entry["feedback"]["progress"] == "100"
    assert entry["feedback"]["testcase_progress"] == "100"
    assert entry["feedback"]["testcase_name"] == "testcase_nb_010"
    final = ours.run("control", "task", "--feedback", str(taskid))  # a finished task: its final feedback
    assert json.loads(final.stdout) == entry["feedback"]


def test_a_silent_task_is_stopped_at_its_timeout(ours, testprog, feedpath):
    """1.7 only stopped watching a silent task (its launcher then waited for it forever)."""
    text = ours.cwd / "slow.txt"
    text.write_text("[progress]1\n[progress]2\n")
    taskid = reserve(ours)
    # (2 s: time for the program to start and write its first line, even on a loaded machine)
    proc = launch(ours, taskid, "--feedpath", feedpath, "--timeout", "2", "--", *testprog,
                  "--scenario", "feedbacking", "--textfile", str(text), "--delay", "30",
                  "--feedback", f"feedback_{taskid}.log", cwd=feedpath, timeout=20)  # fmt: skip
    assert proc.returncode == 124, proc.stderr
    (entry,) = history(ours)
    assert entry["termerror"].startswith("timeout")
    assert entry["feedback"] == {"progress": "1"}


def test_kill_and_killall_stop_running_tasks_and_return_once_archived(ours, testprog, feedpath):
    first, second = reserve(ours, "--taskname", "a"), reserve(ours, "--taskname", "b")
    args = ("--", *testprog, "--scenario", "sleeping", "--sleep", "60")
    tasks = [ours.popen("launch", "--db", "sqlite.db", "--taskid", str(i), *args) for i in (first, second)]
    wait_for(lambda: {t["status"] for t in listed(ours).values()} == {"RUNNING"}, what="both running")
    killed = ours.run("control", "task", "--kill", str(first))
    assert (killed.returncode, killed.stdout, killed.stderr) == (0, "", "")
    assert str(first) not in listed(ours)  # archived already
    killed = ours.run("control", "task", "--killall", "b")
    assert (killed.returncode, killed.stdout, killed.stderr) == (0, "", "")
    assert listed(ours) == {}
    assert [t.wait(timeout=30) for t in tasks] == [128 + 15] * 2  # 1.7's launcher exited 0
    assert [e["termerror"] for e in history(ours)] == ["killed by request"] * 2


# -- exit statuses and refusals --------------------------------------------------------------------
def test_launch_exits_with_the_task_status(ours, tmp_path):
    """1.7's launcher exited 0 whatever its task did."""
    (tmp_path / "exit3.sh").write_text("exit 3\n")
    taskid = reserve(ours)
    assert launch(ours, taskid, "--", "sh", str(tmp_path / "exit3.sh")).returncode == 3
    taskid = reserve(ours)
    proc = launch(ours, taskid, "--", "no-such-command-here")
    assert (proc.returncode, proc.stderr) == (127, "taskwatcher: command not found: no-such-command-here\n")
    assert [e["exitcode"] for e in history(ours)] == [3, 127]


def test_launch_keeps_the_reservation_name_and_info_unless_given(ours):
    taskid = reserve(ours, "--taskname", "nightly", "--info1", "kept")  # 1.7 dropped the info
    assert launch(ours, taskid, "--info2", "given", "--", "true").returncode == 0
    (entry,) = history(ours)
    assert (entry["taskname"], entry["info1"], entry["info2"]) == ("nightly", "kept", "given")


def test_a_reservation_used_once_is_not_clear_to_start_again(ours):
    taskid = reserve(ours)
    assert launch(ours, taskid, "--", "true").returncode == 0
    proc = launch(ours, taskid, "--", "true")
    assert (proc.returncode, proc.stderr) == (1, f"taskid={taskid} is not clear to start\n")


def test_initialize_is_refused_while_a_task_runs(ours, tmp_path):
    """1.7 deleted the database under its running tasks."""
    go = tmp_path / "go"
    taskid = reserve(ours)
    script = tmp_path / "task.sh"  # (a script: 1.7's grammar splits "sh -c '...'" on spaces)
    script.write_text(f"while [ ! -e {go} ]; do sleep 0.05; done\n")
    task = ours.popen("launch", "--db", "sqlite.db", "--taskid", str(taskid), "--", "sh", str(script))
    wait_for(lambda: listed(ours).get(str(taskid), {}).get("status") == "RUNNING", what="running")
    proc = ours.run("control", "database", "--initialize")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("taskwatcher: database not initialized: tasks are running")
    assert len(proc.stderr.splitlines()) == 1
    go.touch()
    assert task.wait(timeout=30) == 0
    proc = ours.run("control", "database", "--initialize")
    assert (proc.returncode, proc.stdout) == (0, "Initializing database sqlite.db\n")


def test_history_clear_and_task_feedback_do_what_1_7_documented(ours):
    """1.7 accepted ``history --clear`` and ``task --feedback ID`` and did nothing."""
    taskid = reserve(ours)
    assert launch(ours, taskid, "--", "true").returncode == 0
    assert ours.run("control", "task", "--feedback", str(taskid)).stdout == "{}\n"
    unknown = ours.run("control", "task", "--feedback", "999")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (1, "", "unknown taskid 999\n")
    proc = ours.run("control", "history", "--clear")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert history(ours) == []


NOTHING_TO_DO = {
    (): "a command is needed: task, history or database",
    ("task",): "one of --list, --reserve, --kill, --killall, --feedback is needed",
    ("task", "--json"): "one of --list, --reserve, --kill, --killall, --feedback is needed",
    ("history",): "one of --list, --clear is needed",
    ("history", "--human"): "one of --list, --clear is needed",
    ("database",): "one of --initialize, --update is needed",
}


def test_a_control_line_that_does_nothing_is_a_usage_error(ours):
    """1.7 exited 0 on these, having done nothing."""
    lines = [("control", *args) for args in NOTHING_TO_DO]
    ((*done,),) = Side.run_together([(ours, lines)])
    for proc, message in zip(done, NOTHING_TO_DO.values(), strict=True):
        assert (proc.returncode, proc.stdout) == (2, ""), proc.args
        assert proc.stderr.splitlines()[-1].endswith(f"error: {message}"), proc.args


def test_debug_logs_on_stderr_and_nothing_is_written_in_the_current_folder(ours):
    proc = ours.run("control", "-d", "--db", "../elsewhere.db", "task", "--reserve")
    assert proc.returncode == 0
    assert proc.stdout == "Taskid 1 has been reserved\n"
    assert_nothing_written_in(ours.cwd)  # 1.7 wrote debug.log here, -d or not


def test_launch_interrupted_by_sigint_passes_it_to_the_task_and_ends_by_it(ours, tmp_path):
    """As 1.7's launcher (Python's KeyboardInterrupt) and taskwatcher 2's did: a shell loop stops."""
    script = tmp_path / "task.py"  # catches Ctrl-C, cleans up, exits 0: the launcher must still end by it
    script.write_text(
        # START inside the try: a Ctrl-C that comes right after it is still caught
        "import sys, time\ntry:\n    print('START', flush=True)\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('CLEANED', flush=True)\n"
    )
    taskid = reserve(ours)
    launcher = ours.popen("launch", "--db", "sqlite.db", "--taskid", str(taskid), "--",
                          sys.executable, str(script))  # fmt: skip
    assert launcher.stdout.readline().startswith("Command_line=")
    assert launcher.stdout.readline() == "START\n"
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=30)
    assert (launcher.returncode, out) == (-signal.SIGINT, "CLEANED\n"), err
    (entry,) = history(ours)
    assert (entry["exitcode"], entry["termerror"]) == (0, "launcher interrupted by SIGINT")
