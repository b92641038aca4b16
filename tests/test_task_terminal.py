"""The task's terminal and job control, through real pseudo-terminals: where the launcher's
output is a terminal the task's pseudo-terminal is its controlling terminal (/dev/tty opens,
its group is the foreground group, a resize reaches it as SIGWINCH); Ctrl-Z stops the task
with the launcher, and continuing the launcher continues it; the timeout runs on meanwhile."""

from __future__ import annotations

import fcntl
import os
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TW, wait_for
from test_launch import ended, kill_own_processes
from test_signals import Terminal

PY = sys.executable


@pytest.fixture(autouse=True)
def reaper(tmp_path: Path) -> Iterator[None]:
    yield
    kill_own_processes(tmp_path / "home")


def state(pid: int) -> str:
    """The process's state letter (T: stopped), or "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def read_until(term: Terminal, text: bytes, timeout: float = 15) -> bytes:
    def seen() -> bool:
        if select.select([term.master], [], [], 0.05)[0]:
            try:
                term.output += os.read(term.master, 65536)
            except OSError:
                pass
        return text in term.output

    wait_for(seen, timeout, f"{text!r} on the terminal")
    return term.output


def launch(tw, *args: str) -> list[str]:
    return [*TW, "launch", "--db", str(tw.db), *args]


def test_the_tasks_pseudo_terminal_is_its_controlling_terminal(tw, env):
    script = (
        "import os\n"
        "with open('/dev/tty', 'w') as tty: tty.write('tty ok\\n')\n"
        "print('foreground', os.tcgetpgrp(1) == os.getpgrp(), flush=True)\n"
    )
    term = Terminal(launch(tw, "--", PY, "-c", script), env)
    status = term.wait()
    assert os.waitstatus_to_exitcode(status) == 0, term.output
    assert b"tty ok" in term.output and b"foreground True" in term.output


def test_a_resize_of_the_outer_terminal_reaches_the_task_as_sigwinch_with_the_new_size(tw, env):
    script = (
        "import os, signal\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGWINCH])\n"
        "print('ready', flush=True)\n"
        "got = signal.sigtimedwait([signal.SIGWINCH], 15)\n"
        "print('winch' if got else 'no winch', os.get_terminal_size(1), flush=True)\n"
    )
    term = Terminal(launch(tw, "--timeout", "20", "--", PY, "-c", script), env)
    try:
        read_until(term, b"ready")
        # The kernel sends SIGWINCH to the launcher (the outer terminal's foreground); it sizes
        # the task's terminal, and the kernel sends SIGWINCH to that terminal's foreground: the task.
        fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        read_until(term, b"winch os.terminal_size(columns=111, lines=33)")
    finally:
        assert os.waitstatus_to_exitcode(term.wait()) == 0, term.output


def waiting_task(pidfile: Path, go: Path) -> str:
    """A task that notes its pid, then waits for the file ``go`` (one process, never forking:
    a shell's vforking parent would wait in state D for its stopped child)."""
    return (
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('task done', flush=True)\n"
    )


def pid_in(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), 10, f"a pid in {path}"))


def suspend_and_fg(tw, env: dict[str, str], tmp_path: Path, *options: str, then: str = "") -> bytes:
    """Launch a waiting task as the foreground job of a job-control shell (``set -m``, as an
    interactive shell) on a pseudo-terminal; type Ctrl-Z; check the shell saw the job stop
    and the task is stopped; ``fg``; let the task end (running ``then``). All it printed."""
    pidfile, go, resume = tmp_path / "pid", tmp_path / "go", tmp_path / "resume"
    cmd = shlex.join(launch(tw, *options, "--", PY, "-c", waiting_task(pidfile, go) + then))
    wait_resume = f"while [ ! -e {resume} ]; do sleep 0.02; done"
    script = f"set -m; {cmd}; echo stopped=$?; {wait_resume}; fg; echo after-fg=$?"
    term = Terminal(["bash", "-c", script], env)
    pid = pid_in(pidfile)
    os.write(term.master, termios.tcgetattr(term.master)[6][termios.VSUSP])
    read_until(term, b"stopped=148")  # 128 + SIGTSTP: bash saw its job stop
    # the task stopped with it, not running on unsupervised (it stops once it is next scheduled)
    wait_for(lambda: state(pid) == "T", 5, "the task to stop")
    resume.touch()
    wait_for(lambda: state(pid) != "T", 10, "fg to continue the task")
    go.touch()
    assert os.waitstatus_to_exitcode(term.wait()) == 0, term.output
    assert b"task done" in term.output and b"after-fg=0" in term.output
    return term.output


def test_ctrl_z_in_a_job_control_shell_stops_the_task_and_fg_continues_it(tw, env, tmp_path):
    suspend_and_fg(tw, env, tmp_path)
    assert ended(tw, 1)["exitcode"] == 0


def test_the_timeout_runs_on_while_suspended_and_is_enforced_on_resume(tw, tmp_path):
    pidfile = tmp_path / "pid"
    argv = launch(
        tw, "--timeout", "10", "--grace", "1", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"
    )
    # A group of its own, whose parent (the tests) is in another group of this session: the
    # kernel ignores SIGTSTP's stop for an orphaned group, as it would the launcher's then.
    kw = dict(env=tw.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, process_group=0)
    with subprocess.Popen(argv, **kw) as p:
        pid = pid_in(pidfile)
        started = time.monotonic()  # the task runs: its timeout's clock started before this
        p.send_signal(signal.SIGTSTP)
        wait_for(lambda: state(p.pid) == "T" and state(pid) == "T", 10, "launcher and task stopped")
        wait_for(lambda: time.monotonic() - started > 10.5, 13, "the timeout to pass meanwhile")
        assert state(pid) == "T" and not tw.history_of(1)  # nothing acts while suspended
        resumed = time.monotonic()
        p.send_signal(signal.SIGCONT)
        assert p.wait(10) == 124
    # At once, not another full timeout (10 s) after resuming: a wide margin either way, for a
    # loaded machine (with a 5 s timeout and 4 s allowed, one failed at 5.1 s under load).
    assert time.monotonic() - resumed < 7
    entry = ended(tw, 1)
    assert entry["termerror"].startswith("timeout: ran for more than 10 s")


# -- --no-log: the task takes the launcher's own terminal, as a shell's job does ------------
# The task says whether it holds the terminal in a group of its own (not a session of its
# own), writes to /dev/tty, then waits (15 s at most) for SIGWINCH and prints the new size.
FOREGROUND_TASK = (
    "import os, signal\n"
    "with open('/dev/tty', 'w') as tty: tty.write('tty ok\\n')\n"
    "print('foreground', os.tcgetpgrp(0) == os.getpgrp() != os.getsid(0), flush=True)\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGWINCH])\n"
    "got = signal.sigtimedwait([signal.SIGWINCH], 15)\n"
    "print('winch' if got else 'no winch', os.get_terminal_size(0), flush=True)\n"
)


def test_no_log_gives_the_task_the_launchers_terminal_and_takes_it_back_after(tw, env):
    after = "import os; print('shell has it', os.tcgetpgrp(0) == os.getpgrp())"
    cmd = shlex.join(launch(tw, "--no-log", "--", PY, "-c", FOREGROUND_TASK))
    term = Terminal(["bash", "-c", f"{cmd}; echo status=$?; {shlex.join([PY, '-c', after])}"], env)
    read_until(term, b"foreground True")
    assert b"tty ok" in term.output
    fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", 31, 97, 0, 0))
    read_until(term, b"winch os.terminal_size(columns=97, lines=31)")  # straight from the kernel
    assert os.waitstatus_to_exitcode(term.wait()) == 0, term.output
    assert b"status=0" in term.output and b"shell has it True" in term.output


def test_no_log_ctrl_z_stops_the_task_and_the_launcher_and_fg_gives_the_task_the_terminal(tw, env, tmp_path):
    # The terminal stops the task (its foreground group); the launcher sees it and stops too.
    holds = "import os; print('holds it', os.tcgetpgrp(0) == os.getpgrp())\n"
    assert b"holds it True" in suspend_and_fg(tw, env, tmp_path, "--no-log", then=holds)


def test_no_log_ctrl_c_reaches_the_task_and_the_launcher_ends_by_it_so_a_shell_loop_stops(tw, env, tmp_path):
    pidfile, go = tmp_path / "pid", tmp_path / "go"
    cmd = shlex.join(launch(tw, "--no-log", "--", PY, "-c", waiting_task(pidfile, go)))
    term = Terminal(["bash", "-c", f"for i in 1 2; do {cmd}; done; echo loop went on"], env)
    pid_in(pidfile)
    os.write(term.master, termios.tcgetattr(term.master)[6][termios.VINTR])
    status = term.wait()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, term.output
    assert b"loop went on" not in term.output
    (entry,) = tw.history().values()
    assert (entry["termsignal"], entry["exitcode"]) == ("SIGINT", 130)


def test_no_log_in_a_pipeline_leaves_the_terminal_to_the_pipeline(tw, env):
    """``launch --no-log cmd | reader``: the reader, in the launcher's group, may need the
    terminal (``less``); the task then keeps a session of its own, as without --no-log."""
    task = "import os; print('own session', os.getsid(0) == os.getpid(), flush=True)"
    reader = (
        "import os; tty = os.open('/dev/tty', os.O_RDONLY)\n"
        "print('reader holds it', os.tcgetpgrp(tty) == os.getpgrp()); print(input())\n"
    )
    cmd = shlex.join(launch(tw, "--no-log", "--", PY, "-c", task))
    term = Terminal(["bash", "-c", f"{cmd} | {shlex.join([PY, '-c', reader])}"], env)
    assert os.waitstatus_to_exitcode(term.wait()) == 0, term.output
    assert b"reader holds it True" in term.output and b"own session True" in term.output
