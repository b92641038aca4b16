"""PostgreSQL beside SQLite, in one run: ``.venv/bin/python benchmarks/postgres.py [--quick]``.

Starts the suite's private throw-away cluster (tests/pgcluster.py: initdb as an unprivileged
user, a unix socket, fsync off: the server's own costs are not what is measured) and prints,
for each backend: ``control --list --json`` with 200 tasks over 4 hosts, ``control --kill``
of a running task, the kill's latency from the stop request to the task's SIGTERM (the
launcher woken by NOTIFY; SQLite has no such path: its kill signals the launcher), a lease
renewal, 50 launches at once, and the import cost of psycopg on every command.
Wall-clock medians on this machine: compare the columns, not the absolute figures.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
TW = [sys.executable, "-m", "taskwatcher"]


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t)
    return out


def fill(db: str, count: int) -> None:
    """``count`` running rows spread over 4 hosts (their launchers are not this host's to judge)."""
    from support import a_claim
    from taskwatcher.store import open_store

    with open_store(db) as store:
        for i in range(count):
            store.claim(None, a_claim(f"job{i % 10}", host=f"bench-host-{i % 4}", pidns=1))


def kill_latency(db: str, env: dict[str, str], runs: int, folder: Path) -> list[float]:
    from taskwatcher.store import open_store

    out = []
    for i in range(runs):
        flag = folder / f"term{i}"
        script = (
            f'trap "date +%s.%N > {flag}; exit 0" TERM; echo up > {flag}.up; while :; do sleep 0.01; done'
        )
        proc = subprocess.Popen([*TW, "launch", "--db", db, "sh", "-c", script], env=env)
        while not Path(f"{flag}.up").exists():
            time.sleep(0.01)  # the benchmark's own start-up, not a measured figure
        with open_store(db) as store:
            taskid = max(r.id for r in store.tasks())
            asked = time.time()
            store.request_stop(taskid, "killed by request")
        while not (flag.exists() and flag.read_text().strip()):
            time.sleep(0.001)
        out.append(float(flag.read_text()) - asked)
        proc.wait(30)
    return out


def launches_at_once(db: str, env: dict[str, str], count: int) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen([*TW, "launch", "--db", db, "true"], env=env, stdout=subprocess.DEVNULL)
             for _ in range(count)]  # fmt: skip
    for p in procs:
        p.wait(300)
    return time.perf_counter() - t


def renewals(db: str, runs: int) -> list[float]:
    from support import a_claim
    from taskwatcher.store import open_store

    with open_store(db) as store:
        row = store.claim(None, a_claim("lease"))
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            store.renew_lease(row.id, row.token, 60)
            out.append(time.perf_counter() - t)
        store.finish(row.id, row.token, termsignal="", termerror="", exitcode=0, feedback={})
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    runs = 3 if quick else 10
    import pgcluster

    try:
        cluster = pgcluster.start_cluster()
    except BaseException as e:  # pytest's skip/fail outside pytest: say why and stop
        sys.exit(f"no PostgreSQL cluster: {e}")
    scratch = Path(tempfile.mkdtemp(prefix="tw-bench-pg-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKWATCHER_")}
    env.update(XDG_STATE_HOME=str(scratch / "state"), PYTHONPATH=str(ROOT / "src"))
    os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]
    try:
        dbs = {"sqlite": str(scratch / "bench.db"), "postgres": cluster.new_database()}
        rows: dict[str, list[str]] = {}
        for db in dbs.values():
            fill(db, 200)
            listing = timed([*TW, "control", "--db", db, "--list", "--json"], env, runs)
            rows.setdefault("control --list --json, 200 tasks over 4 hosts", []).append(median_ms(listing))
        for name, db in dbs.items():
            empty = db + "-empty" if name == "sqlite" else cluster.new_database()
            startup = timed([*TW, "control", "--db", empty, "--list", "--json"], env, runs)
            rows.setdefault("control --list --json, no task (start-up)", []).append(median_ms(startup))
        rows["kill latency: stop request to SIGTERM"] = [
            "(a signal)",
            median_ms(kill_latency(dbs["postgres"], env, runs, scratch)),
        ]
        rows["lease renewal (one statement, client side)"] = ["-", median_ms(renewals(dbs["postgres"], 50))]
        for name in dbs:
            fresh = str(scratch / "launch.db") if name == "sqlite" else cluster.new_database()
            seconds = launches_at_once(fresh, env, 20 if quick else 50)
            rows.setdefault(f"{20 if quick else 50} launches at once (all done)", []).append(
                f"{seconds:8.2f} s "
            )
        imports = timed([sys.executable, "-c", "import psycopg"], env, runs)
        bare = timed([sys.executable, "-c", "pass"], env, runs)
        extra = statistics.median(imports) - statistics.median(bare)
        rows["import psycopg (every command on PostgreSQL)"] = ["-", f"{extra * 1000:8.1f} ms"]
        width = max(map(len, rows))
        print(f"{'':{width}}  {'SQLite':>11}  {'PostgreSQL':>11}")
        for label, cells in rows.items():
            print(f"{label:{width}}  {cells[0]:>11}  {cells[1]:>11}")
    finally:
        cluster.stop("immediate")
        import shutil

        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
