"""1,000 queued tasks: what they hold, what listing them costs, how soon a freed slot is used.

    .venv/bin/python benchmarks/queue_1000.py [COUNT]   # default 1000

In a fresh database in a temporary folder: one task of group ``b`` (1 slot) runs and
holds the slot; COUNT tasks are queued behind it (through the library, as
``launch --detach --group b`` queues them). Then: the processes of the run (a queued
task should have none), the database's size, ``control --list --json`` and
``control --list`` (best of three, wall clock), and the time from the running task's
end (a file the test creates) to the next task's first line. Everything is stopped at
the end. Not part of ``benchmarks/run``; BENCHMARKS.md reports a run.
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
        open(gate, "w").close()
        freed = time.time()
        first = started + str(ids[0])
        while not (os.path.exists(first) and os.path.getsize(first)):
            time.sleep(0.001)  # a benchmark's own poll
        with open(first) as f:
            print(f"slot freed -> next task running: {float(f.read()) - freed:.3f} s")
        subprocess.run([*tw, "control", "--db", db, "--killall", "sh"], capture_output=True)


if __name__ == "__main__":
    main()
