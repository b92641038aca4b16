"""Fault injection: many processes against one database, and a locked database (issue 3,
items 3 and 4).

- ``TASKWATCHER_FAULT_LAUNCHES`` launches of ``true`` at once (default 200), while
  ``control --list --json`` and ``control --feedback ID`` run in a loop;
- 50 simultaneous ``--reserve --name X --unique``: exactly one wins;
- another process holds ``BEGIN EXCLUSIVE`` for ``TASKWATCHER_FAULT_LOCK_SECONDS``
  (default 10) while tasks end and others start: nothing is lost.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from conftest import TW, Taskwatcher, db_rows, wait_for
from support import gone, kill_own_processes, reaper  # noqa: F401  (reaper: an autouse fixture)

LAUNCHES = int(os.environ.get("TASKWATCHER_FAULT_LAUNCHES", "200"))
RESERVERS = int(os.environ.get("TASKWATCHER_FAULT_RESERVERS", "50"))
LOCK_SECONDS = float(os.environ.get("TASKWATCHER_FAULT_LOCK_SECONDS", "10"))


def start(tw, *args: str) -> subprocess.Popen:
    """A CLI call in the background, stdout and stderr in one pipe (both must stay empty)."""
    return subprocess.Popen(
        [*TW, args[0], "--db", str(tw.db), *args[1:]],
        env=tw.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


FEEDER = 'i=0; while :; do i=$((i+1)); echo "[count]$i" >> "$TASKWATCHER_FEEDBACK"; sleep 0.02; done'


class Reader(threading.Thread):
    """One ``control`` command in a loop until stopped; every error, non-JSON answer
    (or, for ``--feedback``, a count going backwards) is noted, with each call's times."""

    def __init__(self, tw, *args: str) -> None:
        super().__init__(daemon=True)
        self.tw, self.args = tw, args
        self.stop = threading.Event()
        self.calls: list[tuple[float, float]] = []  # (start, end), monotonic
        self.last_count = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            proc = self.tw.run("control", *self.args, timeout=60)
            self.calls.append((began, time.monotonic()))
            what = f"call {len(self.calls)} of {' '.join(self.args)}"
            if proc.returncode != 0 or proc.stderr:
                self.errors.append(f"{what}: exit {proc.returncode} {proc.stderr!r}")
            try:
                answer = json.loads(proc.stdout)
            except ValueError as e:
                self.errors.append(f"{what}: not JSON ({e}): {proc.stdout[:200]!r}")
                continue
            if self.args[0] == "--feedback":
                count = int(answer.get("count", 0))
                if count < self.last_count:
                    self.errors.append(f"{what}: feedback went back from {self.last_count} to {count}")
                self.last_count = count

    def within(self, start: float, end: float) -> list[float]:
        """Durations of the calls made wholly between ``start`` and ``end``."""
        return [b - a for a, b in self.calls if a >= start and b <= end]


@pytest.mark.timeout(max(120, LAUNCHES))
def test_simultaneous_launches_lose_nothing_while_list_and_feedback_loop(tw, tmp_path):
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    # A task that keeps writing feedback for the whole test, for the --feedback loop to read.
    feeder_id = tw.run("control", "--reserve", "--name", "feeder", check=True).stdout.strip()
    feeder = tw.popen(
        "launch", "--taskid", feeder_id, "--feedpath", str(feeds), "--", "sh", "-c", FEEDER,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    readers = [Reader(tw, "--list", "--json"), Reader(tw, "--feedback", feeder_id)]
    procs: list[subprocess.Popen] = []
    try:
        wait_for(lambda: tw.tasks().get(feeder_id, {}).get("pid"), 10, "the feeder to run")
        wait_for(lambda: tw.json("control", "--feedback", feeder_id), 10, "the feeder's first feedback")
        for r in readers:
            r.start()
        t0 = time.monotonic()
        procs = [start(tw, "launch", "--", "true") for _ in range(LAUNCHES)]
        spawned = time.monotonic() - t0
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        t1 = time.monotonic()
    finally:
        for r in readers:
            r.stop.set()
        for r in readers:
            r.join(timeout=60)
        for p in procs:
            if p.poll() is None:
                p.kill()
        tw.run("control", "--kill", feeder_id, timeout=60)
        feeder.wait(timeout=30)

    results = zip(procs, outputs, strict=True)
    bad = [(i, p.returncode, out) for i, (p, out) in enumerate(results) if p.returncode or out]
    during = [r.within(t0, t1) for r in readers]
    print(
        f"\n{LAUNCHES} launches: all spawned in {spawned:.1f} s, all ended in {t1 - t0:.1f} s,"
        f" {len(bad)} failed; during them "
        + "; ".join(
            f"{' '.join(r.args)}: {len(d)} calls, longest {max(d, default=0):.2f} s, {len(r.errors)} errors"
            for r, d in zip(readers, during, strict=True)
        )
    )
    assert not bad, f"{len(bad)} of {LAUNCHES} launches failed: {bad[:5]}"
    assert all(during), "the --list/--feedback loops did not run while the launches did"
    errors = [e for r in readers for e in r.errors]
    assert not errors, "\n".join(errors[:20])
    rows = db_rows(tw.db, "SELECT taskid, exitcode, termerror FROM history WHERE taskname = 'true'")
    assert len(rows) == LAUNCHES
    assert len({r["taskid"] for r in rows}) == LAUNCHES, "a task id was handed out twice"
    assert all(r["exitcode"] == 0 and r["termerror"] == "" for r in rows), [dict(r) for r in rows][:5]
    feeder_row = db_rows(tw.db, "SELECT termerror, feedback FROM history WHERE taskname = 'feeder'")
    assert [r["termerror"] for r in feeder_row] == ["killed by request"]
    assert int(json.loads(feeder_row[0]["feedback"])["count"]) >= readers[1].last_count
    assert tw.tasks() == {}


def test_simultaneous_unique_reservations_of_one_name_exactly_one_wins(tw):
    tw.run("control", "--list", check=True)  # the database exists
    procs = [
        subprocess.Popen(
            [*TW, "control", "--db", str(tw.db), "--reserve", "--name", "X", "--unique"],
            env=tw.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RESERVERS)
    ]
    results = [(p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=60)]]
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] == 3]
    assert len(winners) == 1, winners
    assert len(losers) == RESERVERS - 1, [r for r in results if r[0] not in (0, 3)]
    holder = winners[0][1].strip()
    assert holder.isdigit() and winners[0][2] == ""
    for _, out, err in losers:
        assert out == "" and holder in err and len(err.strip().splitlines()) == 1, err
    assert [t["name"] for t in tw.tasks().values()] == ["X"]


@pytest.mark.timeout(60 + 3 * LOCK_SECONDS)
def test_a_database_locked_for_seconds_loses_nothing(tw, tmp_path):
    """Tasks that end while another process holds the write lock, and tasks launched
    during it, all reach history with their own exit codes once it is released."""
    tw.run("control", "--list", check=True)  # the database exists (WAL)
    feeds, go = tmp_path / "feeds", tmp_path / "go"
    feeds.mkdir()
    # Five tasks running before the lock; they end (exit 10..14) while it is held.
    enders = [
        tw.popen(
            "launch",
            "--name",
            f"ender{k}",
            "--feedpath",
            str(feeds),
            "--",
            "sh",
            "-c",
            f'echo "[k]{k}" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0" ]; do sleep .02; done; exit {10 + k}',
            str(go),
        )
        for k in range(5)
    ]
    pids = wait_for(
        lambda: (ps := [t["pid"] for t in tw.tasks().values() if t["pid"]]) and len(ps) == 5 and ps,
        20,
        "the five tasks to run",
    )
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(float(sys.argv[2]))\n"  # the fault itself: the lock held this long
         "c.execute('COMMIT')\n",
         str(tw.db), str(LOCK_SECONDS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        go.touch()
        # Five launched while the database is locked (exit 20..24).
        starters = [
            tw.popen(
                "launch",
                "--name",
                f"starter{k}",
                "--feedpath",
                str(feeds),
                "--",
                "sh",
                "-c",
                f'echo "[k]{k}" >> "$TASKWATCHER_FEEDBACK"; exit {20 + k}',
            )
            for k in range(5)
        ]
        wait_for(lambda: all(gone(p) for p in pids), LOCK_SECONDS / 2, "the five tasks to end")
        still_locked = holder.poll() is None
        ended_while_locked = time.monotonic() - locked_at
        assert still_locked, f"the lock was released before the tasks ended ({ended_while_locked:.1f} s)"
        assert all(p.poll() is None for p in enders), "a launcher finished while the database was locked"
        holder.wait(timeout=LOCK_SECONDS + 30)
        results = [(p.returncode, *p.communicate(timeout=40)) for p in enders + starters]
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
    print(
        f"\nlock held {LOCK_SECONDS:g} s;"
        f" launchers done {time.monotonic() - locked_at:.1f} s after it was taken"
    )
    for k, proc in enumerate(enders + starters):
        proc.wait()
        expected = 10 + k if k < 5 else 15 + k
        code, out, err = proc.returncode, *[r for r in results[k][1:]]
        assert (code, out, err) == (expected, "", ""), (k, code, out, err)
    rows = db_rows(tw.db, "SELECT taskname, exitcode, termerror, feedback FROM history ORDER BY taskname")
    got = {r["taskname"]: (r["exitcode"], r["termerror"], json.loads(r["feedback"])) for r in rows}
    want = {f"ender{k}": (10 + k, f"exit code {10 + k}", {"k": str(k)}) for k in range(5)}
    want |= {f"starter{k}": (20 + k, f"exit code {20 + k}", {"k": str(k)}) for k in range(5)}
    assert got == want
    assert len(rows) == 10
    assert tw.tasks() == {}
    assert not list(feeds.iterdir())


BUSY_TIMEOUT = 1.0  # TASKWATCHER_BUSY_TIMEOUT for the launcher: its writes give up after this


def test_an_end_that_cannot_be_written_is_recovered_on_the_next_use(tw, tmp_path):
    tw.run("control", "--list", check=True)
    go = tmp_path / "go"
    impatient = Taskwatcher(tw.db, {**tw.env, "TASKWATCHER_BUSY_TIMEOUT": str(BUSY_TIMEOUT)})
    launcher = impatient.popen(
        "launch", "--name", "late", "--", "sh", "-c", 'until [ -e "$0" ]; do sleep .02; done; exit 7', str(go)
    )
    (pid,) = wait_for(lambda: [t["pid"] for t in tw.tasks().values() if t["pid"]], 10, "the task to run")
    lock = sqlite3.connect(tw.db, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        go.touch()
        wait_for(lambda: gone(pid), 10, "the task to end")
        # The lock outlasts the launcher's busy timeout: its archive write finally fails.
        _, err = launcher.communicate(timeout=BUSY_TIMEOUT + 30)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err  # said on stderr
    assert "is kept in" in err
    tw.run("control", "--list", check=True)  # the next use
    (entry,) = tw.history().values()
    assert (entry["taskname"], entry["exitcode"], entry["termerror"]) == ("late", 7, "exit code 7")
    assert launcher.returncode == 7, "the command's own status, even if its record was delayed"
