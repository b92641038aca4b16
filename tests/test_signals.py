"""Signals to a launcher (SPEC Part 2, "Launch, signals, durations"): Ctrl-C through a real
pseudo-terminal reaches the task as SIGINT, the launcher then ends by that signal so a shell loop
stops; SIGTERM, SIGHUP and SIGQUIT likewise; a second one skips the grace; signals ignored at
start (nohup) stay ignored; control --kill and --detach keep SIGTERM."""

from __future__ import annotations

import os
import pty
import select
import shlex
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import support
from conftest import TW, wait_for
from support import Launches, gone, helper, kill_own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)

launches = support.launches  # a fixture (imported by name, a parameter would shadow it)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def started(log: Path, label: str = "1") -> int:
    """The pid of the task once it noted its start."""
    line = wait_for(
        lambda: next((x for x in lines(log) if x.startswith(f"started {label} ")), None), 10, "the task"
    )
    return int(line.split()[2])


class Terminal:
    """A program run on a real pseudo-terminal, as a session leader, in its foreground group."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: only exec, or _exit
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = b""
        self.status: int | None = None

    def interrupt(self) -> None:
        """Type the terminal's interrupt character: the kernel sends SIGINT to the foreground group."""
        intr = termios.tcgetattr(self.master)[6][termios.VINTR]
        os.write(self.master, intr)

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"still running after {timeout} s; output: {self.output!r}")
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        os.close(self.master)
        return self.status


def launch_cmd(db: Path, *args: str) -> str:
    return shlex.join([*TW, "launch", "--db", str(db), *args])


def test_ctrl_c_in_a_shell_loop_reaches_the_task_and_stops_the_loop(tw, tmp_path, env):
    log = tmp_path / "task.log"
    task = launch_cmd(tw.db, "--grace", "5", "--", *helper("interrupted", log, "$i"))
    # "$i" must reach the shell unquoted: shlex quoted it, so put it back
    script = f"for i in 1 2 3; do {task.replace(shlex.quote('$i'), '$i')}; done; echo loop went on"
    term = Terminal(["bash", "-c", script], env)
    started(log, "1")
    t0 = time.monotonic()
    term.interrupt()
    status = term.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, (status, term.output)
    assert time.monotonic() - t0 < 4  # the task's own clean-up, not the grace period
    assert b"loop went on" not in term.output
    noted = lines(log)
    assert noted[1:] == ["got SIGINT", "cleanup 1"], noted  # SIGINT once, as KeyboardInterrupt
    assert not any(x.startswith("started 2") for x in noted)
    (entry,) = tw.history().values()
    assert entry["termerror"] == "launcher interrupted by SIGINT"
    assert entry["termsignal"] == "SIGINT"
    assert entry["exitcode"] == 128 + signal.SIGINT


def test_a_second_ctrl_c_skips_the_grace_period(tw, tmp_path, env):
    log = tmp_path / "task.log"
    argv = [*TW, "launch", "--db", str(tw.db), "--grace", "30", "--",
            *helper("interrupted", log, "1", "--survive", "SIGINT")]  # fmt: skip
    term = Terminal(argv, env)
    pid = started(log)
    running_task(tw)
    term.interrupt()
    wait_for(lambda: "got SIGINT" in lines(log), 10, "the task to get the first SIGINT")
    assert not gone(pid)  # it survives SIGINT: the grace period has begun
    t0 = time.monotonic()
    term.interrupt()
    status = term.wait()
    assert time.monotonic() - t0 < 5
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT
    assert gone(pid)
    (entry,) = tw.history().values()
    assert entry["termsignal"] == "SIGKILL"
    assert entry["termerror"] == "launcher interrupted by SIGINT"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: s.name)
def test_the_launcher_passes_that_same_signal_and_ends_by_it(tw, tmp_path, launches, sig):
    log = tmp_path / "task.log"
    proc = launches.start("--grace", "5", "--", *helper("interrupted", log, "1"))
    started(log)
    running_task(tw)
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == -sig  # ended by the signal itself, not exit 128+N
    assert lines(log)[1:] == [f"got {sig.name}"]
    (entry,) = tw.history().values()
    assert entry["termerror"] == f"launcher interrupted by {sig.name}"
    assert entry["termsignal"] == sig.name
    assert entry["exitcode"] == 128 + sig
    assert not list(Path(tw.env["HOME"]).parent.joinpath("cwd").glob("core*"))


def sig_ignored(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(mask & (1 << (sig - 1)))


def test_nohup_launch_ignores_sighup_and_so_does_its_task(tw, tmp_path, launches):
    proc = launches.start("--name", "plain", "--grace", "1", "--", "sleep", "60")
    nohup = subprocess.Popen(
        ["nohup", *TW, "launch", "--db", str(tw.db), "--name", "nohupped", "--", "sleep", "61"],
        env=tw.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    launches.procs.append(nohup)
    _, plain = running_task(tw, "plain")
    _, task = running_task(tw, "nohupped")
    assert sig_ignored(nohup.pid, signal.SIGHUP) and sig_ignored(task["pid"], signal.SIGHUP)
    assert not sig_ignored(task["pid"], signal.SIGINT)  # only what was ignored at start stays ignored
    assert not sig_ignored(plain["pid"], signal.SIGHUP)
    nohup.send_signal(signal.SIGHUP)
    proc.send_signal(signal.SIGHUP)  # the other launcher, not nohup'd: stopped by it
    assert proc.wait(timeout=10) == -signal.SIGHUP
    assert nohup.poll() is None and not gone(task["pid"])
    nohup.send_signal(signal.SIGTERM)
    assert nohup.wait(timeout=10) == -signal.SIGTERM
    assert gone(task["pid"])


def test_control_kill_stops_a_foreground_task_with_sigterm_and_its_status(tw, tmp_path, launches):
    log = tmp_path / "task.log"
    proc = launches.start("--grace", "5", "--", *helper("interrupted", log, "1"))
    started(log)
    taskid, _ = running_task(tw)
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"task {taskid}: killed"
    assert (
        proc.wait(timeout=10) == 128 + signal.SIGTERM
    )  # the task's status: the launcher was not interrupted
    assert lines(log)[1:] == ["got SIGTERM"]
    assert tw.history_of(taskid)["termerror"] == "killed by request"


def test_a_detached_supervisor_interrupted_stops_its_task_with_sigterm(tw, tmp_path):
    log = tmp_path / "task.log"
    out = tw.run("launch", "--detach", "--grace", "5", "--", *helper("interrupted", log, "1"), check=True)
    taskid = out.stdout.strip()
    started(log)
    row = wait_for(lambda: _launcher_pid(tw, int(taskid)), 5, "the supervisor's pid")
    os.kill(row, signal.SIGINT)
    entry = wait_for(lambda: tw.history_of(taskid), 10, "the end")
    assert lines(log)[1:] == ["got SIGTERM"]
    assert entry["termerror"] == "launcher interrupted by SIGINT"


def _launcher_pid(tw, taskid: int) -> int | None:
    from conftest import db_sql

    rows = db_sql(tw.db, "SELECT launcherpid FROM tasks WHERE id = ?", (taskid,))
    return rows[0][0] if rows else None


API_RUN = """
import signal, sys
from taskwatcher import TaskWatcher
mine = lambda *_: None
signal.signal(signal.SIGTERM, mine)
before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)}
ending = TaskWatcher(sys.argv[1]).run(["true"])
assert ending.exitcode == 0 and ending.interrupted is None, ending
assert signal.getsignal(signal.SIGTERM) is mine
assert {s: signal.getsignal(s) for s in before} == before
assert signal.set_wakeup_fd(-1) == -1
print("ok")
"""


def test_the_api_puts_back_the_scripts_own_signal_handlers(tw):
    done = subprocess.run(
        [sys.executable, "-c", API_RUN, str(tw.db)], env=tw.env, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_a_background_job_of_a_script_keeps_sigint_ignored_and_so_does_its_task(tw, tmp_path):
    """A non-interactive shell starts its background jobs with SIGINT and SIGQUIT ignored."""
    launch = launch_cmd(tw.db, "--name", "bg", "--", "sleep", "60")
    script = subprocess.Popen(
        ["sh", "-c", f"{launch} & job=$!; echo $job; wait $job"],
        env=tw.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        launcher = int(script.stdout.readline())
        _, task = running_task(tw, "bg")
        for pid in (launcher, task["pid"]):
            assert sig_ignored(pid, signal.SIGINT) and sig_ignored(pid, signal.SIGQUIT)
            assert not sig_ignored(pid, signal.SIGTERM)
        os.kill(launcher, signal.SIGINT)  # ignored: nothing happens
        os.kill(launcher, signal.SIGTERM)
        assert script.wait(timeout=10) == 128 + signal.SIGTERM  # sh's $? of a job killed by SIGTERM
        assert tw.history_of(1)["termerror"] == "launcher interrupted by SIGTERM"
    finally:
        if script.poll() is None:
            script.kill()
        script.communicate()
