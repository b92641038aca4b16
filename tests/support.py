"""Helpers every test module shares: task programs, the processes a test started (and the
autouse ``reaper`` that kills what is left of them), background launches, the one-line
error check, reservations through the CLI, waiting for a task to run or end.

Import what a module needs: ``from support import reaper, one_line_error`` (a fixture
imported into a module is that module's fixture, autouse included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import wait_for
from taskwatcher import process
from taskwatcher.model import Claim

HELPERS = Path(__file__).parent / "helpers"
PY = sys.executable


def helper(name: str, *args: str | Path) -> list[str]:
    """The command line of a task program from tests/helpers."""
    return [PY, str(HELPERS / f"{name}.py"), *(str(a) for a in args)]


# -- processes: every one a test starts is gone at teardown ---------------------------------
def own_processes(home: Path, exclude: tuple[int, ...] = ()) -> list[psutil.Process]:
    """Live (not zombie) processes started with this test's HOME: launchers and task trees."""
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid() or p.pid in exclude:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("HOME") == str(home):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


# A "host" of the tests across hosts: pid and UTS namespaces of its own (its pids collide with
# this host's, its host name is its own), killed with the unshare that made it.
HOST_NAMESPACES = ("unshare", "--pid", "--uts", "--fork", "--mount-proc", "--kill-child", "--")


def gone(pid: int) -> bool:
    """The process no longer runs (vanished, or a zombie nobody has reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_own_processes(home: Path) -> None:
    for _ in range(3):
        procs = own_processes(home)
        if not procs:
            return
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=3)


@pytest.fixture(autouse=True)
def reaper(tmp_path: Path) -> Iterator[None]:
    """Kill whatever this test started that still runs (found by the per-test HOME)."""
    yield
    kill_own_processes(tmp_path / "home")


class Launches:
    """Launchers started in the background by a test; all are reaped at teardown."""

    def __init__(self, tw) -> None:
        self.tw = tw
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str | Path, **kw) -> subprocess.Popen:
        proc = self.tw.popen("launch", *(str(a) for a in args), **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        # first what may hold the launchers' pipes open (an escaped grandchild, say)
        kill_own_processes(Path(self.tw.env["HOME"]))
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def launches(tw) -> Iterator[Launches]:
    lx = Launches(tw)
    try:
        yield lx
    finally:
        lx.close()


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def reserve(tw, *args: str) -> int:
    return int(tw.run("control", "--reserve", *args, check=True).stdout)


def running_task(tw, name: str | None = None, timeout: float = 10) -> tuple[str, dict]:
    """The one running task (of that name) once its process is known."""

    def find():
        for tid, t in tw.tasks().items():
            if t["status"] != "RESERVED" and t["pid"] and (name is None or t["name"] == name):
                return tid, t
        return None

    return wait_for(find, timeout, f"a running task {name or ''}")


def ended(tw, taskid, timeout: float = 15) -> dict:
    return wait_for(lambda: tw.history_of(taskid), timeout, f"task {taskid} in history")


def a_claim(name: str | None = None, *, unique: bool = False, token: str | None = None, **kw) -> Claim:
    """A launcher's claim made by this test process (so its launcher is alive)."""
    fields = dict(
        name=name,
        default_name="cmd",
        infos=(None, None, None),
        unique=unique,
        timeout=None,
        grace=5.0,
        command='["cmd"]',
        feedfolder=None,
        logfile=None,
        logfolder=None,
        token=token or os.urandom(8).hex(),
        host=process.host_name(),
        bootid=process.boot_id(),
        launcherpid=os.getpid(),
        launcherstart=process.start_ticks(os.getpid()),
        pidns=process.pid_namespace(),
    )
    fields.update(kw)
    return Claim(**fields)


def wakeups(pid: int) -> int:
    """Context switches of every thread of ``pid`` so far: each is a wake-up (or a preemption)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:  # a thread that just ended
            continue
    return total
