"""A child its user may not signal: user nobody launches a setuid-root program that makes
itself root for good (real uid too, as sudo does), so pidfd_send_signal and killpg answer EPERM.
The launcher never crashes: at the timeout it says on stderr what it cannot stop, waits for it,
and records it; the user's other commands keep working; a launcher SIGKILLed meanwhile leaves
a row the next commands keep (its process still runs) until the program ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_for
from faults import osfaults

ROOT_SLEEP = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (setresuid(0, 0, 0) != 0) return 99;   /* root for good: its user may not signal it */
    usleep((useconds_t)(atof(argv[1]) * 1e6));
    return 0;
}
"""


@pytest.fixture
def world() -> Iterator[dict]:
    """A folder nobody may use (its own state folder), the setuid program, nobody's CLI."""
    python, why = osfaults.nobody_python()
    if python is None:
        pytest.skip(f"NOT TESTED: {why}")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("NOT TESTED: no C compiler here to build the setuid program")
    top = Path(tempfile.mkdtemp(prefix="tw-setuid-"))
    try:
        os.chmod(top, 0o755)
        source, prog = top / "rootsleep.c", top / "rootsleep"
        source.write_text(ROOT_SLEEP)
        subprocess.run([cc, "-o", str(prog), str(source)], check=True, capture_output=True)
        os.chmod(prog, 0o4755)
        state = top / "state"
        state.mkdir()
        osfaults.give_to_nobody(state)
        env = {"PYTHONPATH": osfaults.SRC, "PATH": os.environ.get("PATH", ""), "HOME": str(top)}
        tw = [python, "-m", "taskwatcher"]
        yield {"top": top, "prog": str(prog), "db": str(state / "tw.db"), "env": env, "tw": tw}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def nobody(w: dict, *args: str, **kw) -> subprocess.Popen:
    tool, rest = args[0], args[1:]
    return subprocess.Popen(
        [*w["tw"], tool, "--db", w["db"], *rest], env=w["env"], cwd=w["top"], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **osfaults.as_nobody(), **kw,
    )  # fmt: skip


def nobody_run(w: dict, *args: str) -> subprocess.CompletedProcess:
    proc = nobody(w, *args)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def root_sleeper(w: dict) -> int:
    """The pid of the setuid program once it has made itself root."""

    def find():
        for entry in os.listdir("/proc"):
            try:
                if not entry.isdigit() or Path(f"/proc/{entry}/exe").resolve() != Path(w["prog"]):
                    continue
                status = Path(f"/proc/{entry}/status").read_text().splitlines()
                uids = next(x for x in status if x.startswith("Uid:"))
            except OSError:
                continue
            if uids.split()[1:] == ["0", "0", "0", "0"]:
                return int(entry)
        return None

    return wait_for(find, 10, "the setuid program to run as root")


def ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_a_child_that_may_not_be_signalled_is_reported_not_a_crash(world):
    w = world
    launcher = nobody(w, "launch", "--timeout", "0.5", "--grace", "0.2", "--", w["prog"], "2.5")
    try:
        pid = root_sleeper(w)
        listed = nobody_run(w, "control", "--list", "--json")
        assert listed.returncode == 0, listed.stderr  # the user's other commands keep working
        _, err = launcher.communicate(timeout=15)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 124, err
    assert "internal error" not in err and "Traceback" not in err, err
    assert f"cannot stop pid {pid} (rootsleep) (not permitted: a setuid program?)" in err
    history = nobody_run(w, "control", "--history", "--json")
    (entry,) = json.loads(history.stdout).values()
    stop = f"could not stop pid {pid} (rootsleep): not permitted"
    assert entry["termerror"] == f"timeout: ran for more than 0.5 s; {stop}"


def test_the_next_command_keeps_the_row_of_a_setuid_child_its_user_cannot_stop(world):
    w = world
    launcher = nobody(w, "launch", "--", w["prog"], "2")
    try:
        pid = root_sleeper(w)
        launcher.send_signal(signal.SIGKILL)  # the parent-death signal was cleared by the setuid exec
        launcher.wait(timeout=10)
        listed = nobody_run(w, "control", "--list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "1" in json.loads(listed.stdout)  # still running: not archived as lost
        assert os.path.exists(f"/proc/{pid}")
        killed = nobody_run(w, "control", "--kill", "1")
        assert killed.returncode == 3 and "cannot be stopped" in killed.stderr, killed.stderr
        wait_for(lambda: ended(pid), 10, "the program to end")
        assert nobody_run(w, "control", "--update").returncode == 0
        history = json.loads(nobody_run(w, "control", "--history", "--json").stdout)
        assert [e["termerror"] for e in history.values()] == ["launcher lost"]
    finally:
        if launcher.poll() is None:
            launcher.kill()
