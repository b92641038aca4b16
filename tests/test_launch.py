"""``taskwatcher launch`` through the real CLI: exit statuses, argv and environment, placeholders,
names and infos, reservations, foreground and --detach (SPEC, "Reservation and launch")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from conftest import TW, wait_for
from support import (  # noqa: F401  (reaper: an autouse fixture)
    HELPERS,
    PY,
    Launches,
    ended,
    gone,
    helper,
    kill_own_processes,
    one_line_error,
    own_processes,
    reaper,
    reserve,
    running_task,
)

launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


# -- exit statuses --------------------------------------------------------------------------
def test_exit_status_is_the_commands_own(tw):
    proc = tw.run("launch", "--", "sh", "-c", "exit 3")
    assert proc.returncode == 3
    (entry,) = tw.history().values()
    assert entry["exitcode"] == 3
    assert entry["termerror"] == "exit code 3"
    assert entry["termsignal"] == ""


def test_exit_status_zero_leaves_termerror_empty(tw):
    proc = tw.run("launch", "--", "true")
    assert proc.returncode == 0
    (entry,) = tw.history().values()
    assert (entry["exitcode"], entry["termsignal"], entry["termerror"]) == (0, "", "")


def test_exit_status_124_on_timeout(tw):
    proc = tw.run("launch", "--timeout", "0.5", "--grace", "0.5", "--", "sleep", "30")
    assert proc.returncode == 124
    (entry,) = tw.history().values()
    assert entry["exitcode"] == 124
    assert "timeout" in entry["termerror"]


def test_exit_status_128_plus_signal(tw):
    proc = tw.run("launch", "--", "sh", "-c", "kill -KILL $$")
    assert proc.returncode == 128 + signal.SIGKILL
    (entry,) = tw.history().values()
    assert entry["termsignal"] == "SIGKILL"
    assert entry["exitcode"] == 137


def test_exit_status_127_command_not_found(tw, tmp_path):
    proc = tw.run("launch", "--", "no-such-command-xyz")
    assert proc.returncode == 127
    assert "Traceback" not in proc.stderr
    (entry,) = tw.history().values()
    assert entry["termerror"] == "command not found: no-such-command-xyz"
    assert entry["exitcode"] == 127


def test_exit_status_127_for_a_missing_path(tw, tmp_path):
    proc = tw.run("launch", "--", str(tmp_path / "nothing-here"))
    assert proc.returncode == 127


def test_exit_status_126_file_without_execute_bit(tw, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    proc = tw.run("launch", "--", str(script))
    assert proc.returncode == 126
    assert "Traceback" not in proc.stderr
    (entry,) = tw.history().values()
    assert entry["exitcode"] == 126
    assert entry["termerror"].startswith("command not executable")


def test_exit_status_126_directory(tw, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    proc = tw.run("launch", "--", str(folder))
    assert proc.returncode == 126


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--taskid", "abc"], id="taskid-not-integer"),
        pytest.param(["--taskid", "0"], id="taskid-zero"),
        pytest.param(["--feedpath", "{missing}"], id="feedpath-missing"),
        pytest.param(["--timeout", "soon"], id="timeout-not-number"),
        pytest.param(["--timeout", "-1"], id="timeout-negative"),
        pytest.param(["--grace", "-0.5"], id="grace-negative"),
        pytest.param(["--timeout", "0"], id="timeout-zero"),
    ],
)
def test_exit_status_125_when_it_cannot_start(tw, tmp_path, args):
    marker = tmp_path / "ran"
    args = [a.replace("{missing}", str(tmp_path / "no" / "such")) for a in args]
    proc = tw.run("launch", *args, "--", "touch", str(marker))
    assert proc.returncode == 125
    one_line_error(proc)
    assert proc.stdout == ""
    assert not marker.exists()
    assert tw.history() == {}
    assert tw.tasks() == {}


@pytest.mark.parametrize("argv", [["--"], []], ids=["dashdash-alone", "nothing"])
def test_exit_status_125_without_a_command(tw, argv):
    proc = tw.run("launch", *argv)
    assert proc.returncode == 125
    one_line_error(proc)
    assert tw.tasks() == {}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--no-such-option", "--", "touch", "{marker}"], id="unknown-option"),
        pytest.param(["-touch", "{marker}"], id="command-starting-with-a-dash-without-dashdash"),
        pytest.param(["--timout", "5", "touch", "{marker}"], id="misspelt-option"),
    ],
)
def test_exit_status_125_for_any_bad_launch_usage(tw, tmp_path, args):
    """Every launch that does not start is 125: 0-123 and 126-255 belong to the command."""
    marker = tmp_path / "ran"
    proc = tw.run("launch", *(a.replace("{marker}", str(marker)) for a in args))
    assert not marker.exists()
    one_line_error(proc)
    assert proc.returncode == 125


# -- argv, environment, placeholders --------------------------------------------------------
def test_argv_arrives_exactly_as_given(tw, tmp_path):
    out = tmp_path / "argv.json"
    args = ["two words", "it's", '"quoted"', "$HOME", "*", "", "a\\b", "  padded  ", "semi;colon", "-x"]
    proc = tw.run("launch", "--", *helper("record", out), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["argv"] == args


def test_argv_not_resplit_with_python_c(tw, tmp_path):
    out = tmp_path / "argv.json"
    code = "import json,sys; open(sys.argv[1],'w').write(json.dumps(sys.argv[2:]))"
    args = ["a b", "$HOME", "*", ""]
    proc = tw.run("launch", "--", PY, "-c", code, str(out), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == args


def test_env_taskid_without_feedpath(tw, tmp_path):
    out = tmp_path / "facts.json"
    taskid = reserve(tw)
    proc = tw.run("launch", "--taskid", str(taskid), "--", *helper("record", out))
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())
    assert facts["taskid"] == str(taskid)
    assert facts["feedback"] is None


def test_env_feedback_is_absolute_even_for_a_relative_feedpath(tw, tmp_path):
    out = tmp_path / "facts.json"
    (tmp_path / "fb").mkdir()
    proc = tw.run("launch", "--feedpath", "fb", "--", *helper("record", out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())
    taskid = facts["taskid"]
    assert facts["feedback"] == str(tmp_path / "fb" / f"feedback_{taskid}.log")
    assert os.path.isabs(facts["feedback"])
    assert tw.history_of(taskid) is not None


def test_placeholders_replaced_inside_arguments(tw, tmp_path):
    out = tmp_path / "facts.json"
    (tmp_path / "fb").mkdir()
    proc = tw.run(
        "launch",
        "--feedpath",
        "fb",
        "--",
        *helper("record", out),
        "{taskid}",
        "id={taskid}!",
        "--feedback={feedback}",
        "{feedback}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())
    taskid = facts["taskid"]
    feedfile = str(tmp_path / "fb" / f"feedback_{taskid}.log")
    assert facts["argv"] == [taskid, f"id={taskid}!", f"--feedback={feedfile}", feedfile]


def test_placeholder_taskid_without_feedpath_and_with_reservation(tw, tmp_path):
    out = tmp_path / "facts.json"
    taskid = reserve(tw)
    proc = tw.run("launch", "--taskid", str(taskid), "--", *helper("record", out), "{taskid}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["argv"] == [str(taskid)]


# -- names and infos ------------------------------------------------------------------------
def test_name_defaults_to_basename_of_command(tw):
    assert tw.run("launch", "--", "/bin/true").returncode == 0
    (entry,) = tw.history().values()
    assert entry["taskname"] == "true"


def test_name_option_and_infos_at_launch(tw):
    assert tw.run("launch", "--name", "job", "--info1", "a", "--info3", "c", "--", "true").returncode == 0
    (entry,) = tw.history().values()
    assert (entry["taskname"], entry["info1"], entry["info2"], entry["info3"]) == ("job", "a", None, "c")


def test_infos_at_launch_override_the_reservations(tw):
    taskid = reserve(tw, "--name", "job", "--info1", "r1", "--info2", "r2", "--info3", "r3")
    proc = tw.run("launch", "--taskid", str(taskid), "--info2", "L2", "--", "true")
    assert proc.returncode == 0, proc.stderr
    entry = tw.history_of(taskid)
    assert entry is not None
    assert (entry["taskname"], entry["info1"], entry["info2"], entry["info3"]) == ("job", "r1", "L2", "r3")


# -- reservations ---------------------------------------------------------------------------
def test_taskid_unknown_runs_nothing(tw, tmp_path):
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--taskid", "42", "--", "touch", str(marker))
    assert proc.returncode == 125
    assert "42" in one_line_error(proc)
    assert not marker.exists()
    assert tw.history() == {}


def test_taskid_already_used_runs_nothing(tw, tmp_path):
    taskid = reserve(tw)
    assert tw.run("launch", "--taskid", str(taskid), "--", "true").returncode == 0
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--taskid", str(taskid), "--", "touch", str(marker))
    assert proc.returncode == 125
    one_line_error(proc)
    assert not marker.exists()
    assert len(tw.history()) == 1


def test_taskid_of_a_running_task_runs_nothing(tw, tmp_path, launches):
    taskid = reserve(tw)
    go = tmp_path / "go"
    launches.start("--taskid", taskid, "--", *helper("waiter", go))
    running_task(tw)
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--taskid", str(taskid), "--", "touch", str(marker))
    assert proc.returncode == 125
    one_line_error(proc)
    assert not marker.exists()
    go.touch()
    assert ended(tw, taskid)["exitcode"] == 0


def test_taskid_expired_runs_nothing(tw, tmp_path):
    taskid = reserve(tw, "--ttl", "0.2")
    wait_for(lambda: str(taskid) not in tw.tasks(), 10, "the reservation to expire")
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--taskid", str(taskid), "--", "touch", str(marker))
    assert proc.returncode == 125
    one_line_error(proc)
    assert not marker.exists()
    assert tw.history() == {}


def test_taskid_reservation_is_used(tw):
    taskid = reserve(tw, "--name", "reserved-name")
    assert tw.run("launch", "--taskid", str(taskid), "--", "true").returncode == 0
    entry = tw.history_of(taskid)
    assert entry is not None
    assert entry["taskname"] == "reserved-name"
    assert tw.tasks() == {}


def test_without_taskid_a_reservation_is_made(tw, tmp_path):
    first = reserve(tw)
    out = tmp_path / "facts.json"
    assert tw.run("launch", "--", *helper("record", out)).returncode == 0
    taskid = int(json.loads(out.read_text())["taskid"])
    assert taskid > first
    assert tw.history_of(taskid) is not None
    assert list(tw.tasks()) == [str(first)]  # the earlier reservation is untouched


def test_unique_launch_refused_while_reserved(tw, tmp_path):
    holder = reserve(tw, "--name", "job", "--unique")
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--name", "job", "--unique", "--", "touch", str(marker))
    assert proc.returncode == 125
    assert str(holder) in one_line_error(proc)
    assert not marker.exists()
    assert tw.history() == {}


def test_unique_launch_refused_while_running(tw, tmp_path, launches):
    go = tmp_path / "go"
    launches.start("--name", "job", "--", *helper("waiter", go))
    holder, _ = running_task(tw, "job")
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--name", "job", "--unique", "--", "touch", str(marker))
    assert proc.returncode == 125
    assert holder in one_line_error(proc)
    assert not marker.exists()
    go.touch()
    ended(tw, holder)
    # once the holder has ended the name is free
    assert tw.run("launch", "--name", "job", "--unique", "--", "touch", str(marker)).returncode == 0
    assert marker.exists()


# -- foreground -----------------------------------------------------------------------------
def test_foreground_stdout_is_only_the_commands(tw):
    proc = tw.run("launch", "--name", "x", "--", "printf", "exactly this")
    assert proc.returncode == 0
    assert proc.stdout == "exactly this"


def test_foreground_stdout_empty_for_a_silent_command(tw, tmp_path):
    (tmp_path / "fb").mkdir()
    proc = tw.run("launch", "--feedpath", str(tmp_path / "fb"), "--timeout", "5", "--", "true")
    assert proc.returncode == 0
    assert proc.stdout == ""


def test_foreground_stderr_is_the_commands(tw):
    proc = tw.run("launch", "--", "sh", "-c", "echo oops >&2")
    assert proc.returncode == 0
    assert proc.stderr == "oops\n"


def test_foreground_command_inherits_stdin(tw):
    proc = tw.run("launch", "--", "cat", input="line one\nline two\n")
    assert proc.returncode == 0
    assert proc.stdout == "line one\nline two\n"


def test_foreground_launcher_waits_until_the_end(tw, tmp_path, launches):
    go = tmp_path / "go"
    proc = launches.start("--", *helper("waiter", go, "--exit", "5"))
    taskid, _ = running_task(tw)
    assert proc.poll() is None  # still there while the task runs
    assert tw.history() == {}
    go.touch()
    assert proc.wait(timeout=15) == 5
    assert tw.history_of(taskid)["exitcode"] == 5


def test_exit_is_noticed_quickly(tw):
    start = time.monotonic()
    proc = tw.run("launch", "--", "true")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0
    assert elapsed < 2.0


# -- detach ---------------------------------------------------------------------------------
def test_detach_prints_the_id_and_returns_while_the_task_runs(tw, tmp_path):
    go = tmp_path / "go"
    proc = tw.run(
        "launch", "--detach", "--name", "bg", "--", *helper("waiter", go, "--print", "hello from task")
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()
    assert proc.stdout == proc.stdout.strip() + "\n"
    taskid = proc.stdout.strip()
    assert not go.exists()
    task = tw.tasks()[taskid]
    assert task["name"] == "bg"
    assert task["status"] == "RUNNING"
    assert task["pid"] and not gone(task["pid"])
    logfile = Path(task["logfile"])
    wait_for(lambda: logfile.exists() and "hello from task" in logfile.read_text(), 10, "output in the log")
    go.touch()
    entry = ended(tw, taskid)
    assert entry["exitcode"] == 0
    assert entry["termerror"] == ""
    assert tw.tasks() == {}


def test_detach_records_a_failing_end(tw, tmp_path):
    go = tmp_path / "go"
    go.touch()
    proc = tw.run("launch", "--detach", "--", *helper("waiter", go, "--exit", "4"))
    assert proc.returncode == 0, proc.stderr
    entry = ended(tw, proc.stdout.strip())
    assert entry["exitcode"] == 4
    assert entry["termerror"] == "exit code 4"


def test_detach_task_is_still_supervised_for_its_timeout(tw):
    proc = tw.run("launch", "--detach", "--timeout", "0.5", "--grace", "0.5", "--", "sleep", "30")
    assert proc.returncode == 0, proc.stderr
    taskid = proc.stdout.strip()
    entry = ended(tw, taskid)
    assert entry["exitcode"] == 124
    assert "timeout" in entry["termerror"]
    assert gone(entry["pid"])


def test_detach_of_a_missing_command_is_127(tw):
    proc = tw.run("launch", "--detach", "--", "no-such-command-xyz")
    assert proc.returncode == 127
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    (entry,) = tw.history().values()
    assert entry["termerror"] == "command not found: no-such-command-xyz"
    assert tw.tasks() == {}


def test_an_executable_script_without_a_shebang_runs_under_sh_as_execvp_does(tw, tmp_path):
    """The kernel refuses such a file (ENOEXEC); timeout(1), env(1) and POSIX execvp run it
    with /bin/sh, found on PATH or named by its path, with its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nosb"
    script.write_text('echo "ran $0 with $*"\nexit 7\n')
    script.chmod(0o755)
    env = dict(tw.env, PATH=f"{bin_dir}{os.pathsep}{tw.env['PATH']}")
    cmd = [*TW, "launch", "--db", str(tw.db), "--", "nosb", "a b", "c"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (7, f"ran {script} with a b c\n"), proc.stderr
    proc = tw.run("launch", "--", str(script), "d")
    assert (proc.returncode, proc.stdout) == (7, f"ran {script} with d\n"), proc.stderr


def test_a_file_that_is_not_executable_is_still_126_not_run_by_sh(tw, tmp_path):
    script = tmp_path / "nosb"
    script.write_text("echo ran\n")
    script.chmod(0o644)
    proc = tw.run("launch", "--", str(script))
    assert proc.returncode == 126 and proc.stdout == ""
    assert "Permission denied" in proc.stderr


# The task lists its own open fds (the one listdir opens is the last): only 0, 1 and 2.
OWN_FDS = (
    "import os, sys; fds = sorted(map(int, os.listdir('/proc/self/fd')))[:-1];"
    " print('fds', fds, file=sys.stderr)"
)


def test_the_task_holds_only_its_three_standard_fds_in_every_mode(tw):
    import select

    cmd = [sys.executable, "-c", OWN_FDS]
    clean = dict(env=tw.env, close_fds=True, stdin=subprocess.DEVNULL, timeout=30)
    piped = subprocess.run([*TW, "launch", "--db", str(tw.db), "--", *cmd], capture_output=True, **clean)
    assert piped.stderr == b"fds [0, 1, 2]\n"
    detached = subprocess.run(
        [*TW, "launch", "--db", str(tw.db), "--detach", "--", *cmd], capture_output=True, **clean
    )
    taskid = detached.stdout.decode().strip()
    ended(tw, int(taskid))
    assert tw.run("control", "--log", taskid).stdout == "fds [0, 1, 2]\n"
    master, slave = os.openpty()
    seen = b""
    with subprocess.Popen([*TW, "launch", "--db", str(tw.db), "--", *cmd], stdout=slave, stderr=slave,
                          **{k: v for k, v in clean.items() if k != "timeout"}) as p:  # fmt: skip
        os.close(slave)
        while select.select([master], [], [], 15)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the launcher has gone
                break
            if not chunk:
                break
            seen += chunk
        assert p.wait(15) == 0
    os.close(master)
    assert b"fds [0, 1, 2]" in seen
