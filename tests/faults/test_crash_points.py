"""Fault injection: the launcher SIGKILLs itself at each crash point (issue 3, item 1).

``TASKWATCHER_CRASH_AT=NAME`` (test-only, see ``crash.crash_point``) kills the
launcher at one of four moments: ``reserved`` (claim committed, before fork),
``spawned`` (child forked and held at its barrier, pid not stored), ``waiting``
(the task runs, the launcher enters its loop) and ``archiving`` (history row
inserted, not committed). After each crash ONE ``control --list --json`` (without
the variable) must leave: no process of the task alive, the task archived exactly
once as ``launcher lost`` (or never started: no history row and no tasks row), its
final feedback kept and its feedback file gone, and its ``--unique`` name free.

Runs per point: ``TASKWATCHER_FAULT_RUNS`` (default 25, so 100 runs in the suite).
Every run is checked; failures are collected and reported together, each naming
its point and run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import TW, db_rows, wait_for
from support import kill_own_processes, own_processes, reaper  # noqa: F401  (reaper: an autouse fixture)

RUNS = int(os.environ.get("TASKWATCHER_FAULT_RUNS", "25"))

# Every task writes one feedback line, then leaves a grandchild behind (sleep 300 &).
# The first three never end on their own; the last ends at once (exit 3) so that its
# launcher reaches the archive, after stopping the grandchild.
FEED = 'echo "[progress]50" >> "$TASKWATCHER_FEEDBACK"; '
SCRIPTS = {
    "reserved": FEED + "sleep 300 & exec sleep 300",
    "spawned": FEED + "sleep 300 & exec sleep 300",
    "waiting": FEED + "sleep 300 & exec sleep 300",
    "archiving": FEED + "sleep 300 & exit 3",
}
FINAL = {"progress": "50"}
# Was the task's pid stored when the launcher died? (it tells which point was hit)
PID_STORED = {"reserved": False, "spawned": False, "waiting": True, "archiving": True}


def crash_run(tw, point: str, run: int, feeds: Path, logs: Path) -> None:
    """One launch crashed at ``point``, one ``control --list --json``, then every check."""
    home = Path(tw.env["HOME"])
    name = f"crash-{point}-{run}"
    err = logs / f"{name}.err"
    with open(err, "w") as errfile:
        launcher = subprocess.Popen(
            [
                *TW,
                "launch",
                "--db",
                str(tw.db),
                "--name",
                name,
                "--unique",
                "--feedpath",
                str(feeds),
                "--",
                "sh",
                "-c",
                SCRIPTS[point],
            ],
            env={**tw.env, "TASKWATCHER_CRASH_AT": point},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # not pipes: the orphaned grandchild would hold them open
            stderr=errfile,
        )
        code = launcher.wait(timeout=30)
    assert code == -9, f"launcher exited {code}, not SIGKILLed: {err.read_text()!r}"

    listing = tw.run("control", "--list", "--json")
    assert listing.returncode == 0 and listing.stderr == "", (
        f"--list: {listing.returncode} {listing.stderr!r}"
    )
    listed = [t for t in json.loads(listing.stdout).values() if t["name"] == name]
    assert not listed, f"--list still shows the task: {listed}"

    # SIGKILL is sent by the --list call; allow the kernel a moment to finish the victims.
    try:
        wait_for(lambda: not own_processes(home), 5, "the task's processes to be gone")
    except AssertionError:
        left = [(p.pid, p.cmdline()) for p in own_processes(home)]
        raise AssertionError(f"processes of the task still alive after --list: {left}") from None

    rows = db_rows(tw.db, "SELECT * FROM history WHERE taskname = ?", (name,))
    tasks = db_rows(tw.db, "SELECT id, status FROM tasks WHERE name = ?", (name,))
    assert not tasks, f"tasks row left: {[dict(t) for t in tasks]}"
    assert len(rows) <= 1, f"archived {len(rows)} times"
    if rows:  # archived as lost (else: never started, no trace at all)
        (row,) = rows
        assert row["termerror"] == "launcher lost", f"termerror {row['termerror']!r}"
        assert (row["pid"] is not None) == PID_STORED[point], f"pid {row['pid']} in history"
        feedback = json.loads(row["feedback"] or "{}")
        if point == "archiving":  # the task ended after writing it: the final feedback is known
            assert feedback == FINAL, f"final feedback {feedback}"
        else:
            assert feedback in ({}, FINAL), f"final feedback {feedback}"
    left_files = sorted(p.name for p in feeds.iterdir())
    assert not left_files, f"feedback files left: {left_files}"

    again = tw.run("control", "--reserve", "--name", name, "--unique")
    assert again.returncode == 0, f"name not free again: exit {again.returncode} {again.stderr!r}"


@pytest.mark.timeout(max(60, RUNS * 4))
@pytest.mark.parametrize("point", list(SCRIPTS))
def test_a_launcher_killed_at_a_crash_point_loses_nothing(tw, tmp_path, point):
    tw.run("control", "--list", check=True)  # the database exists, with no lost task in it
    feeds, logs = tmp_path / "feeds", tmp_path / "logs"
    feeds.mkdir()
    logs.mkdir()
    failures = []
    for run in range(RUNS):
        try:
            crash_run(tw, point, run, feeds, logs)
        except AssertionError as e:
            failures.append(f"{point} run {run}: {e}")
            kill_own_processes(Path(tw.env["HOME"]))  # so that later runs are judged on their own
            for f in feeds.iterdir():
                f.unlink()
    # Later commands (the --reserve of each run) must not archive anything a second time.
    dupes = db_rows(tw.db, "SELECT taskname, count(*) AS n FROM history GROUP BY taskname HAVING n > 1")
    failures += [f"{point}: {r['taskname']} archived {r['n']} times" for r in dupes]
    archived = db_rows(tw.db, "SELECT count(*) AS n FROM history")[0]["n"]
    print(f"{point}: {RUNS} runs, {archived} archived as lost, {RUNS - archived} never started")
    assert not failures, f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures)
