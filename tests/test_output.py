"""A task's output: the per-task log (capped, keeping the tail), the relay to the terminal,
control --log [--follow], and where the log is named (--list --json, history)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TW, wait_for
from support import ended, kill_own_processes, one_line_error, running_task
from taskwatcher.output import LogFile, copy_log, follow_log

PY = sys.executable


def log_of(tw, taskid) -> str:
    proc = tw.run("control", "--log", str(taskid))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- foreground -------------------------------------------------------------------------
def test_foreground_output_reaches_the_terminal_and_the_log(tw):
    proc = tw.run("launch", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "to-out\n"  # stdout and stderr stay apart on the launcher's side
    assert proc.stderr == "to-err\n"
    entry = ended(tw, 1)
    assert entry["logfile"] == str(tw.logs_folder() / "task_1.log")
    assert sorted(log_of(tw, 1).splitlines()) == ["to-err", "to-out"]


def test_output_written_just_before_the_end_is_not_lost(tw):
    # 200 KB in one go, then exit: more than a pipe holds, all of it read after the exit.
    script = "import sys; sys.stdout.write('x' * 200000 + '\\nend\\n')"
    proc = tw.run("launch", "--", PY, "-c", script)
    assert proc.returncode == 0
    assert proc.stdout.endswith("x\nend\n") and len(proc.stdout) == 200005
    assert log_of(tw, 1) == proc.stdout


def test_output_of_a_left_behind_grandchild_is_logged_until_it_is_stopped(tw):
    proc = tw.run("launch", "--grace", "5", "--", "sh", "-c", "(sleep 0.2; echo late) & echo early")
    assert proc.returncode == 0
    # the grandchild was sent SIGTERM when the main process ended; whatever it wrote before is kept
    assert "early" in log_of(tw, 1)


def test_a_terminal_sees_a_terminal(tw, tmp_path):
    """Where the launcher's stdout is a terminal, the task's is one too (line buffering,
    colours), and the log gets the bytes unchanged (no \\r added)."""
    master, slave = os.openpty()
    script = "import sys; print(sys.stdout.isatty(), sys.stderr.isatty()); print('two')"
    cmd = [*TW, "launch", "--db", str(tw.db), "--", PY, "-c", script]
    with subprocess.Popen(cmd, env=tw.env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave) as p:
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 15
        while b"two" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert p.wait(15) == 0
    os.close(master)
    assert b"True True" in seen
    assert log_of(tw, 1) == "True True\ntwo\n"


def test_a_reader_that_leaves_stops_the_task_as_it_would_without_taskwatcher(tw, tmp_path):
    # yes | head -1: yes dies of SIGPIPE once head has gone, supervised or not.
    pipeline = f"{' '.join(TW)} launch --db {tw.db} -- yes | head -n 1"
    proc = subprocess.run(["sh", "-c", pipeline], env=tw.env, capture_output=True, text=True, timeout=30)
    assert proc.stdout == "y\n"
    entry = ended(tw, 1)
    assert entry["termsignal"] == "SIGPIPE"
    assert entry["exitcode"] == 141


def test_a_terminal_that_does_not_read_does_not_stop_supervision(tw):
    """The task fills a pipe nobody reads: the launcher still enforces the timeout."""
    cmd = [*TW, "launch", "--db", str(tw.db), "--timeout", "1", "--grace", "0.5", "--", "yes"]
    with subprocess.Popen(cmd, env=tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        entry = wait_for(lambda: tw.history_of(1), 30, "the timeout, with nobody reading")
        assert entry["exitcode"] == 124
        assert entry["termerror"].startswith("timeout")
        p.stdout.close()  # now the launcher's last bytes for the terminal go nowhere, and it exits
        assert p.wait(15) == 124


def test_no_log_keeps_the_terminal_and_no_log(tw):
    proc = tw.run("launch", "--no-log", "--", "sh", "-c", "echo hi")
    assert proc.returncode == 0 and proc.stdout == "hi\n"
    assert ended(tw, 1)["logfile"] is None
    fail = tw.run("control", "--log", "1")
    assert fail.returncode == 1
    assert one_line_error(fail) == "taskwatcher: task 1 keeps no log"
    assert not tw.logs_folder().exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--no-log", "--detach"),
        ("--no-log", "--log", "x.log"),
        ("--log-max", "0"),
        ("--log-max", "lots"),
        ("--log-max", "-1M"),
    ],
)
def test_bad_log_options_start_nothing(tw, args):
    proc = tw.run("launch", *args, "--", "true")
    assert proc.returncode == 125
    one_line_error(proc)
    assert tw.history() == {}


def test_a_log_that_cannot_be_opened_starts_nothing(tw, tmp_path):
    marker = tmp_path / "ran"
    proc = tw.run("launch", "--log", str(tmp_path / "no" / "such" / "file"), "--", "touch", str(marker))
    # like --feedpath: a missing folder is refused, not made (a typo would silently create it)
    assert proc.returncode == 125
    assert one_line_error(proc) == f"taskwatcher: log folder {tmp_path / 'no' / 'such'} does not exist"
    assert not (tmp_path / "no").exists()
    (tmp_path / "a-file").write_text("")
    proc = tw.run("launch", "--log", str(tmp_path / "a-file" / "log"), "--", "touch", str(marker))
    assert proc.returncode == 125
    assert one_line_error(proc) == f"taskwatcher: log folder {tmp_path / 'a-file'} is not a folder"
    assert tw.history() == {}
    (tmp_path / "a-folder").mkdir()
    proc = tw.run("launch", "--log", str(tmp_path / "a-folder"), "--", "touch", str(marker))
    assert proc.returncode == 125
    assert "cannot open log file" in one_line_error(proc)
    assert not marker.exists()
    assert next(iter(tw.history().values()))["termerror"].startswith("cannot open log file")


# -- detached ---------------------------------------------------------------------------
def test_a_detached_tasks_output_goes_to_its_log(tw):
    proc = tw.run("launch", "--detach", "--", "sh", "-c", "echo one; echo two >&2")
    assert proc.returncode == 0
    taskid = proc.stdout.strip()
    entry = ended(tw, taskid)
    assert entry["logfile"].endswith(f"task_{taskid}.log")
    assert sorted(log_of(tw, taskid).split()) == ["one", "two"]


def test_the_log_is_named_in_list_and_history(tw, tmp_path):
    go = tmp_path / "go"
    log = tmp_path / "mine.log"
    taskid = tw.run(
        "launch",
        "--detach",
        "--log",
        str(log),
        "--",
        "sh",
        "-c",
        f"echo hi; while [ ! -e {go} ]; do sleep 0.05; done",
    ).stdout.strip()
    tid, task = running_task(tw)
    assert tid == taskid and task["logfile"] == str(log)
    wait_for(lambda: log.exists() and log.read_text() == "hi\n", 10, "the log")
    go.touch()
    assert ended(tw, taskid)["logfile"] == str(log)


def test_the_log_keeps_the_tail_within_its_cap(tw):
    # 3 MB of numbered lines through a 256 KiB cap: at most 256 KiB (+ one read) on disk,
    # the last lines kept, the first ones gone.
    script = "import sys\nfor i in range(300000): sys.stdout.write(f'{i:09d}\\n')"
    proc = tw.run("launch", "--detach", "--log-max", "256K", "--", PY, "-c", script)
    taskid = proc.stdout.strip()
    entry = ended(tw, taskid, 60)
    assert entry["exitcode"] == 0
    log = Path(entry["logfile"])
    on_disk = log.stat().st_size + Path(str(log) + ".1").stat().st_size
    assert on_disk <= 256 * 1024 + 65536
    text = log_of(tw, taskid)
    assert len(text) == on_disk
    lines = text.splitlines()
    assert lines[-1] == "000299999"
    assert "000000000" not in lines
    # the tail is contiguous: no line lost or cut inside the kept part (but the first)
    numbers = [int(n) for n in lines[1:]]
    assert numbers == list(range(numbers[0], 300000))


def test_log_max_of_the_config_file(tw, tmp_path):
    config = tmp_path / "home" / ".config" / "taskwatcher"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('[log]\nmax = "64K"\n')
    proc = tw.run("launch", "--", PY, "-c", "print('z' * 300000)")
    assert proc.returncode == 0
    log = Path(ended(tw, 1)["logfile"])
    assert log.stat().st_size + Path(str(log) + ".1").stat().st_size <= 64 * 1024 + 65536


# -- control --log ----------------------------------------------------------------------
def test_log_of_an_unknown_task_is_4(tw):
    tw.run("control", "--update", check=True)  # a database with no task 99 (a missing one is said so)
    proc = tw.run("control", "--log", "99")
    assert proc.returncode == 4
    assert one_line_error(proc) == "taskwatcher: no task 99"


def test_follow_goes_on_until_the_task_ends(tw, tmp_path):
    go = tmp_path / "go"
    script = f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second; exit 5"
    taskid = tw.run("launch", "--detach", "--", "sh", "-c", script).stdout.strip()
    follow = tw.popen("control", "--log", taskid, "--follow")
    try:
        assert follow.stdout.readline() == "first\n"  # printed while the task still runs
        assert follow.poll() is None
        go.touch()
        out, err = follow.communicate(timeout=15)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert out == "second\n" and err == ""
    assert follow.returncode == 0
    assert tw.history_of(taskid)["exitcode"] == 5


def test_follow_of_a_finished_task_prints_it_and_returns(tw):
    tw.run("launch", "--", "echo", "done")
    proc = tw.run("control", "--log", "1", "--follow", timeout=10)
    assert proc.returncode == 0 and proc.stdout == "done\n"


def test_follow_goes_with_log_only(tw):
    proc = tw.run("control", "--list", "--follow")
    assert proc.returncode == 2
    one_line_error(proc)


def test_follow_crosses_a_rotation(tw, tmp_path):
    """Lines written while it follows, through several rotations: none lost, none twice.

    The task writes 2000 lines (14 KB) at a time and waits for the test to have read them
    through the follower before it writes more: the follower is never more than a chunk
    behind, so each rotation (every 64 KB here) is one it can follow, however loaded the
    machine. (Without that, a follower kept from running for three rotations would find the
    oldest half of the log gone: what the cap is for.)"""
    go, acks = tmp_path / "go", tmp_path / "acks"
    acks.mkdir()
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "for chunk in range(30):\n"
        "    sys.stdout.write(''.join(f'{i:06d}\\n' for i in range(chunk * 2000, chunk * 2000 + 2000)))\n"
        "    sys.stdout.flush()\n"
        f"    while not os.path.exists(os.path.join({str(acks)!r}, str(chunk))): time.sleep(0.005)\n"
    )
    taskid = tw.run("launch", "--detach", "--log-max", "128K", "--", PY, "-c", script).stdout.strip()
    follow = tw.popen("control", "--log", taskid, "--follow")
    numbers: list[int] = []
    try:
        go.touch()
        deadline = time.monotonic() + 60
        for line in follow.stdout:
            numbers.append(int(line))
            if numbers[-1] % 2000 == 1999:
                (acks / str(numbers[-1] // 2000)).touch()
            assert time.monotonic() < deadline, "the follower fell silent"
        follow.wait(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert numbers == list(range(60000)), "a line was lost or repeated"


def test_clear_removes_the_logs_taskwatcher_kept_but_not_a_users(tw, tmp_path):
    mine = tmp_path / "mine.log"
    tw.run("launch", "--", "echo", "a", check=True)
    tw.run("launch", "--log", str(mine), "--", "echo", "b", check=True)
    ours = Path(tw.history_of(1)["logfile"])
    assert ours.exists() and mine.exists()
    tw.run("control", "--clear", check=True)
    assert not ours.exists()
    assert mine.read_text() == "b\n"


def test_ids_reused_after_initialize_get_a_fresh_log(tw):
    tw.run("launch", "--", "echo", "old", check=True)
    tw.run("control", "--initialize", check=True)
    tw.run("launch", "--", "echo", "new", check=True)
    assert log_of(tw, 1) == "new\n"


def test_the_log_honours_the_umask(tw):
    proc = subprocess.run(
        ["sh", "-c", f"umask 077; exec {' '.join(TW)} launch --db {tw.db} -- true"], env=tw.env, timeout=30
    )
    assert proc.returncode == 0
    log = Path(tw.history_of(1)["logfile"])
    assert log.stat().st_mode & 0o777 == 0o600


@pytest.fixture(autouse=True)
def _no_strays(tmp_path):
    yield
    kill_own_processes(tmp_path / "home")


def test_follow_takes_every_generation_of_a_double_rotation(tmp_path):
    """Two rotations between two looks of the follower: the generation in between is in
    the older half by then, and is read from there. Deterministic: the writer writes
    inside the follower's own "still running?" call."""
    path = str(tmp_path / "task.log")
    log = LogFile(path, cap=40)  # halves of 20 bytes: two lines each
    log.write(b"gen1-abcd\n")
    batches = iter([[], [b"gen1-more\n", b"gen2-abcd\n", b"gen2-more\n", b"gen3-abcd\n"]])

    def still_running() -> bool:
        batch = next(batches, None)
        for data in batch or []:
            log.write(data)
        return batch == []  # running at the first look only

    got = b"".join(follow_log(path, still_running, interval=0))
    assert got.split() == [b"gen1-abcd", b"gen1-more", b"gen2-abcd", b"gen2-more", b"gen3-abcd"]


def test_log_of_a_reservation_says_it_has_not_started(tw):
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    proc = tw.run("control", "--log", taskid)
    assert proc.returncode == 1
    assert one_line_error(proc) == f"taskwatcher: task {taskid} is reserved, not started: it has no log yet"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(2, 64), writes=st.lists(st.binary(min_size=1, max_size=200), max_size=30))
def test_the_log_is_always_a_tail_of_the_output_within_the_cap(tmp_path_factory, cap, writes):
    path = str(tmp_path_factory.mktemp("cap") / "task.log")
    log = LogFile(path, cap)
    for data in writes:
        log.write(data)
    log.close()
    kept: list[bytes] = []
    copy_log(path, kept.append)
    everything, tail = b"".join(writes), b"".join(kept)
    assert everything.endswith(tail)  # only the newest bytes, in order, none changed
    assert len(tail) <= cap
    assert len(tail) >= min(len(everything), cap // 2)  # at least half the cap is always kept


def test_a_launcher_with_closed_streams_still_logs_the_output(tw):
    """Started with stdout, stderr and stdin closed (as some daemons start things): the
    pipes it makes must not take fds 0-2 and pass for them."""
    launch = f"{' '.join(TW)} launch --db {tw.db} -- sh -c 'echo out; echo err >&2'"
    proc = subprocess.run(["sh", "-c", f"exec {launch} <&- >&- 2>&-"], env=tw.env, timeout=30)
    assert proc.returncode == 0
    assert log_of(tw, 1) == "out\nerr\n"


def test_a_closed_stdout_is_never_taken_by_a_pipe_of_the_launchers(tw, tmp_path):
    """The first pipe the launcher made (its signal wake-up pipe) once took fd 1, and the
    task's output was relayed into it. Fds 0-2 hold /dev/null before anything is made."""
    go = tmp_path / "go"
    launch = f"{' '.join(TW)} launch --db {tw.db} -- sh -c 'while [ ! -e {go} ]; do sleep 0.05; done'"
    with subprocess.Popen(["sh", "-c", f"exec {launch} <&- >&-"], env=tw.env, stderr=subprocess.PIPE) as p:
        try:
            wait_for(lambda: tw.tasks().get("1", {}).get("pid"), 10, "the task")
            assert [os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in (0, 1)] == ["/dev/null", "/dev/null"]
        finally:
            go.touch()
        assert p.wait(15) == 0


def test_a_log_that_was_deleted_is_an_error_not_an_empty_answer(tw):
    tw.run("launch", "--", "echo", "hi", check=True)
    Path(tw.history_of(1)["logfile"]).unlink()
    proc = tw.run("control", "--log", "1")
    assert proc.returncode == 1
    assert one_line_error(proc).startswith("taskwatcher: the log of task 1 is gone: ")


def test_the_tasks_terminal_has_the_size_of_the_launchers_and_follows_it(tw):
    import fcntl
    import signal
    import struct
    import termios

    # The task prints its terminal's size, then again once it changes (for 15 s at most).
    script = (
        "import os, time\n"
        "first = os.get_terminal_size(1)\n"
        "print(first, flush=True)\n"
        "end = time.monotonic() + 15\n"
        "while os.get_terminal_size(1) == first and time.monotonic() < end: time.sleep(0.02)\n"
        "print(os.get_terminal_size(1), flush=True)\n"
    )
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    cmd = [*TW, "launch", "--db", str(tw.db), "--", PY, "-c", script]
    seen = b""

    def read_until(text: bytes) -> bool:
        nonlocal seen
        if select.select([master], [], [], 0.1)[0]:
            seen += os.read(master, 4096)
        return text in seen

    with subprocess.Popen(cmd, env=tw.env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave) as p:
        try:
            wait_for(lambda: read_until(b"columns=160, lines=40"), 15, "the first size")
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 100, 0, 0))
            p.send_signal(signal.SIGWINCH)  # what the terminal sends its foreground group
            wait_for(lambda: read_until(b"columns=100, lines=50"), 15, "the new size")
        finally:
            os.close(slave)
        assert p.wait(15) == 0
    os.close(master)
