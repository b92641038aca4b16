"""The real taskwatcher 1.7 beside ours: a throw-away venv with taskwatcher==1.7 from PyPI,
made once per session, and runners for the same 1.7 command line against either.

Where the registry cannot be reached, the tests that need 1.7 are skipped, and the
reason is printed (a skip must never hide that the side-by-side tests did not run).
Any other failure to install 1.7 fails them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compat.sides import Side

# What pip says when it cannot reach the registry (as opposed to any other failure).
_UNREACHABLE = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "No matching distribution found for taskwatcher==1.7",
)


@pytest.fixture(scope="session")
def v17_python(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """The python of a venv holding taskwatcher 1.7 (and psutil, which 1.7 imports but does not declare)."""
    venv = tmp_path_factory.mktemp("taskwatcher-1.7-venv")
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # Short network timeouts: an unreachable registry must skip in seconds, not minutes.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-input",
           "--timeout", "15", "--retries", "2", "taskwatcher==1.7", "psutil"]  # fmt: skip
    try:
        proc = subprocess.run(pip, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(pip, 1, "", "ReadTimeoutError: pip did not finish in 240 s")
    if proc.returncode != 0:
        if any(sign in proc.stderr for sign in _UNREACHABLE):
            reason = (
                f"taskwatcher 1.7 side-by-side tests SKIPPED: PyPI cannot be reached ({_first_error(proc)})"
            )
            _say_out_loud(pytestconfig, f"\n*** {reason} ***\n")
            pytest.skip(reason)
        pytest.fail(f"cannot install taskwatcher 1.7 into a venv: {proc.stderr[-2000:]}")
    return python


def _say_out_loud(config: pytest.Config, text: str) -> None:
    """Write on the terminal even while pytest captures output (a skip alone is easy to miss)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        sys.stderr.write(text)


def _first_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line or "Error" in line]
    return (lines or proc.stderr.splitlines() or ["no output"])[-1].strip()


def _env_without_taskwatcher(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "PYTHONPATH" and not k.startswith("TASKWATCHER_")}


@pytest.fixture
def ours(tmp_path: Path, env: dict[str, str]) -> Side:
    """Our package (this worktree's src), in a folder of its own."""
    return Side("ours", Path(sys.executable), tmp_path / "ours", env)


@pytest.fixture
def theirs(tmp_path: Path, env: dict[str, str], v17_python: Path) -> Side:
    """The real taskwatcher 1.7, in a folder of its own (it writes debug.log there)."""
    return Side("1.7", v17_python, tmp_path / "v17", _env_without_taskwatcher(env))


@pytest.fixture
def testprog(v17_python: Path) -> list[str]:
    """1.7's own test program, as a command: ``[python, -E, -m, taskwatcher.testprog]`` of the 1.7 venv
    (-E: our launcher's PYTHONPATH, which points at our package, is not the program's)."""
    return [str(v17_python), "-E", "-m", "taskwatcher.testprog"]
