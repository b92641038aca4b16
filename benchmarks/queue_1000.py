"""1,000 queued tasks: what they hold, what listing them costs, how soon a freed slot is used.

    .venv/bin/python benchmarks/queue_1000.py [COUNT]   # default 1000

In a fresh database in a temporary folder: one task of group ``b`` (1 slot) runs and
holds the slot; COUNT tasks are queued behind it (through the library, as
``launch --detach --group b`` queues them). Then: the processes of the run (a queued
task should have none), the database's size, ``control --list --json`` and
``control --list`` (best of three, wall clock), and the time from the running task's
end (a file the test creates) to the next task's first line. Then the in-process part of
that: from the end archived (``start_ready``, what the archiving launcher calls next) to the
next task's first line, with the next launcher a fork of the archiver (what a launcher does)
and with a fresh interpreter (``launch --queued ID``, what a command does), five of each.
Everything is stopped at the end (the line first, newest first: nothing else starts). Not
part of ``benchmarks/run``; BENCHMARKS.md reports a run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        home = os.path.join(tmp, "home")
        os.mkdir(home)
        os.environ.update(HOME=home, XDG_STATE_HOME=os.path.join(tmp, "state"))
        db = os.path.join(tmp, "db", "bench.db")
        gate = os.path.join(tmp, "gate")
        tw = [sys.executable, "-m", "taskwatcher"]
        blocker = f'while [ ! -e "{gate}" ]; do sleep 0.005; done'
        launch = [*tw, "launch", "--db", db, "--detach", "--group", "b"]
        subprocess.run([*launch, "sh", "-c", blocker], check=True, capture_output=True)
        from taskwatcher.launcher import LaunchRequest
        from taskwatcher.queueing import enqueue
        from taskwatcher.store import Store

        started = os.path.join(tmp, "started_")
        script = f'date +%s.%N > "{started}$TASKWATCHER_TASKID"; sleep 600'
        t = time.perf_counter()
        with Store(db) as store:
            ids = [
                enqueue(store, LaunchRequest(["sh", "-c", script], detach=True, group="b", slots=1), None)
                for _ in range(count)
            ]
        print(f"queue {count}: {time.perf_counter() - t:.2f} s")
        print(f"database: {os.path.getsize(db) / 1e6:.1f} MB")
        import psutil

        mine = [p for p in psutil.process_iter(["environ"]) if (p.info["environ"] or {}).get("HOME") == home]
        print(f"processes of the run: {len(mine)} (the running task: its launcher and its shell)")
        for args in (["--list", "--json"], ["--list"]):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                subprocess.run([*tw, "control", "--db", db, *args], check=True, capture_output=True)
                times.append(time.perf_counter() - t)
            print(f"control {' '.join(args)} with {count} queued: {min(times):.3f} s (best of 3)")
        freed = time.time()  # before the gate opens: a pause of this process between the two
        open(gate, "w").close()  # (a loaded machine) must not make the figure smaller, or negative
        first = started + str(ids[0])
        while not (os.path.exists(first) and os.path.getsize(first)):
            time.sleep(0.001)  # a benchmark's own poll
        with open(first) as f:
            print(f"slot freed -> next task running: {float(f.read()) - freed:.3f} s")
        for forking in (True, False):
            times, own = start_latency(db, tmp, forking)
            how = "a fork of the archiver" if forking else "a fresh interpreter"
            print(f"end archived -> next task running, {how}: {spread(times)}"
                  f" (of which start_ready, in the archiver: {spread(own)})")  # fmt: skip
        from taskwatcher.control import kill
        from taskwatcher.errors import TaskwatcherError

        with Store(db) as store:
            for taskid in reversed(ids):  # the line first, newest first: no kill starts another task
                try:
                    kill(store, taskid)
                except TaskwatcherError:
                    pass


def spread(times: list[float]) -> str:
    median = sorted(times)[len(times) // 2]
    return f"min {min(times) * 1000:.0f} ms, median {median * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"


def start_latency(db: str, tmp: str, forking: bool, runs: int = 5) -> tuple[list[float], list[float]]:
    """Seconds from ``start_ready`` (called once an end is archived, the 1,000 still queued)
    to the first line of the task it starts, a group of its own each time; and how long
    ``start_ready`` itself took (reading the line, taking the turn, starting the launcher)."""
    from taskwatcher import queueing
    from taskwatcher.launcher import LaunchRequest
    from taskwatcher.queueing import enqueue
    from taskwatcher.store import Store

    queueing.forking = forking
    times: list[float] = []
    own: list[float] = []
    try:
        with Store(db) as store:
            for k in range(runs):
                mark = os.path.join(tmp, f"latency_{forking}_{k}")
                script = f'date +%s.%N > "{mark}.tmp" && mv "{mark}.tmp" "{mark}"'
                enqueue(store, LaunchRequest(["sh", "-c", script], detach=True, group=f"l{forking}{k}"), None)
                t = time.time()
                queueing.start_ready(store)
                own.append(time.time() - t)
                while not os.path.exists(mark):
                    time.sleep(0.001)  # a benchmark's own poll
                with open(mark) as f:
                    times.append(float(f.read()) - t)
    finally:
        queueing.forking = False
    return times, own


if __name__ == "__main__":
    main()
