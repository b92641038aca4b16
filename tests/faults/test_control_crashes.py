"""Crashes of control commands (issue 3, item 1 for ``control``): a ``control`` call SIGKILLs
itself half-way (``TASKWATCHER_CRASH_AT``, test-only, see ``crash.crash_point``), then the
next ordinary command must leave a consistent state: the task archived exactly once,
nothing lost (exit code, final feedback), no process of the task alive.

Points: ``archiving`` (inside any archive's transaction, history row inserted, not
committed: here in ``control --update`` and ``control --kill`` of a lost task),
``kill-requested`` (``--kill`` recorded the request, its launcher not signalled yet),
``feedback-saving`` (a launcher storing the feedback it read, not committed),
``pending-archived`` (a kept-aside end archived, its file not removed yet).
Each scenario runs ``TASKWATCHER_FAULT_CONTROL_RUNS`` times (default 3).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import TW, db_rows, wait_for
from support import kill_own_processes, own_processes, reaper  # noqa: F401  (reaper: an autouse fixture)

RUNS = int(os.environ.get("TASKWATCHER_FAULT_CONTROL_RUNS", "3"))
FEED = 'echo "[progress]50" >> "$TASKWATCHER_FEEDBACK"; '


def crashed(tw, point: str, *args: str) -> None:
    """Run ``control ARGS`` with the crash switch: it must die of SIGKILL at the point."""
    proc = subprocess.run(
        [*TW, "control", "--db", str(tw.db), *args],
        env={**tw.env, "TASKWATCHER_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, f"{args} at {point}: exit {proc.returncode} {proc.stderr!r}"


def _has_a_line(path: Path) -> bool:
    """The task wrote its first feedback line (the launcher makes the file empty before it runs)."""
    try:
        return path.read_bytes().endswith(b"\n")
    except FileNotFoundError:
        return False


def start_task(tw, name: str, feeds: Path, script: str, **env: str) -> tuple[subprocess.Popen, int]:
    """A foreground launcher of ``sh -c SCRIPT`` with a feedback file; (launcher, task id)
    once the task's pid is stored and its first feedback line written."""
    launcher = subprocess.Popen(
        [
            *TW,
            "launch",
            "--db",
            str(tw.db),
            "--name",
            name,
            "--feedpath",
            str(feeds),
            "--",
            "sh",
            "-c",
            script,
        ],
        env={**tw.env, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def running() -> int | None:
        rows = db_rows(tw.db, "SELECT id, pid FROM tasks WHERE name = ?", (name,)) if tw.db.exists() else []
        if rows and rows[0]["pid"] and _has_a_line(feeds / f"feedback_{rows[0]['id']}.log"):
            return int(rows[0]["id"])
        return None

    return launcher, wait_for(running, 15, f"task {name} to run")


def settle(tw, home: Path, name: str) -> sqlite3.Row:
    """One ordinary command, then: no process left, no tasks row, exactly one history row."""
    listing = tw.run("control", "--list", "--json")
    assert (listing.returncode, listing.stderr) == (0, ""), listing.stderr
    wait_for(lambda: not own_processes(home), 5, "the task's processes to be gone")
    assert not db_rows(tw.db, "SELECT id FROM tasks WHERE name = ?", (name,)), "tasks row left"
    rows = db_rows(tw.db, "SELECT * FROM history WHERE taskname = ?", (name,))
    assert len(rows) == 1, f"archived {len(rows)} times"
    return rows[0]


def lose_launcher(launcher: subprocess.Popen) -> None:
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=10)


@pytest.mark.parametrize("command", ["--update", "--kill"])
def test_archiving_a_lost_task_crashes_then_the_next_command_archives_it_once(tw, tmp_path, command):
    home, feeds = Path(tw.env["HOME"]), tmp_path / "feeds"
    feeds.mkdir()
    for run in range(RUNS):
        name = f"lost-{command[2:]}-{run}"
        launcher, taskid = start_task(tw, name, feeds, FEED + "sleep 300 & exec sleep 300")
        lose_launcher(launcher)  # the task's orphaned `sleep 300 &` is still alive
        args = ["--update"] if command == "--update" else ["--kill", str(taskid)]
        crashed(tw, "archiving", *args)
        assert db_rows(tw.db, "SELECT id FROM tasks WHERE id = ?", (taskid,)), "the archive was committed"
        row = settle(tw, home, name)
        # --kill recorded its request before the crash; --update did not ask for anything
        reasons = ["launcher lost"] + (["killed by request"] if command == "--kill" else [])
        assert row["termerror"] in reasons
        assert json.loads(row["feedback"]) == {"progress": "50"}
        assert not any(feeds.iterdir()), "feedback file left"
    assert db_rows(tw.db, "SELECT count(*) AS n FROM history")[0]["n"] == RUNS


def test_a_kill_that_crashes_before_signalling_is_done_by_the_next_kill(tw, tmp_path):
    home, feeds = Path(tw.env["HOME"]), tmp_path / "feeds"
    feeds.mkdir()
    for run in range(RUNS):
        name = f"kill-{run}"
        launcher, taskid = start_task(tw, name, feeds, FEED + "sleep 300 & exec sleep 300")
        crashed(tw, "kill-requested", "--kill", str(taskid))
        # The request is recorded but nobody acted on it: the task still runs, supervised.
        listed = tw.tasks()
        assert listed[str(taskid)]["status"] == "RUNNING"
        assert launcher.poll() is None
        again = tw.run("control", "--kill", str(taskid))
        assert (again.returncode, again.stdout, again.stderr) == (0, f"task {taskid}: killed\n", "")
        assert launcher.wait(timeout=15) == 143  # 128 + SIGTERM, the task's own end
        row = settle(tw, home, name)
        assert row["termerror"] == "killed by request"
        assert json.loads(row["feedback"]) == {"progress": "50"}


def test_a_launcher_that_crashes_storing_feedback_loses_no_line(tw, tmp_path):
    """The launcher stores the task's feedback as the file changes; killed inside that
    transaction (nothing committed), the task is lost: the next command archives it once,
    with every line of the file, those written after the crash too."""
    home, feeds = Path(tw.env["HOME"]), tmp_path / "feeds"
    feeds.mkdir()
    for run in range(RUNS):
        name = f"feedback-{run}"
        launcher, taskid = start_task(
            tw, name, feeds, FEED + "exec sleep 300", TASKWATCHER_CRASH_AT="feedback-saving"
        )
        assert launcher.wait(timeout=15) == -signal.SIGKILL  # at its first store of the feedback
        with open(feeds / f"feedback_{taskid}.log", "a") as f:
            f.write("[progress]70\n[phase]two\n")
        row = settle(tw, home, name)
        assert row["termerror"] == "launcher lost"
        assert json.loads(row["feedback"]) == {"progress": "70", "phase": "two"}


def test_archiving_a_kept_aside_end_crashes_then_it_is_archived_once(tw, tmp_path):
    """An end the locked database would not take is kept in <db>-pending/; the command that
    archives it dies before removing the file: the next one must not archive it again."""
    home, feeds = Path(tw.env["HOME"]), tmp_path / "feeds"
    feeds.mkdir()
    tw.run("control", "--list", check=True)
    pending = tw.db.parent / f"{tw.db.stem}-pending"
    for run in range(RUNS):
        name = f"pending-{run}"
        go = tmp_path / f"go-{run}"
        script = FEED + f'while [ ! -e "{go}" ]; do sleep 0.02; done; exit 7'
        # the launcher gives up on the locked database after 0.5 s (30 s by default)
        launcher, taskid = start_task(tw, name, feeds, script, TASKWATCHER_BUSY_TIMEOUT="0.5")
        holder = sqlite3.connect(tw.db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            go.touch()
            kept = pending / f"task_{taskid}.json"
            wait_for(kept.exists, 15, "the end kept aside")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert launcher.wait(timeout=15) == 7
        crashed(tw, "pending-archived", "--list")
        assert (pending / f"task_{taskid}.json").exists()
        row = settle(tw, home, name)
        assert (row["exitcode"], row["termerror"]) == (7, "exit code 7")
        assert json.loads(row["feedback"]) == {"progress": "50"}
        assert not (pending / f"task_{taskid}.json").exists()
