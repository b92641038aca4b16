"""PostgreSQL beside SQLite, in one run: ``benchmarks/run --postgres`` (or alone:
``.venv/bin/python benchmarks/postgres.py [--quick] [--json FILE]``).

Runs under the measured taskwatcher's own interpreter (it has psycopg; benchmarks/run calls
it so). Starts the suite's private throw-away cluster (tests/pgcluster.py: initdb as an
unprivileged user, a unix socket, fsync off: the server's durability is not what is
measured) and measures, on both backends where both apply:

- ``control --list --json`` with 200 running tasks over 4 hosts: callgrind instructions
  (children included) and wall time;
- a kill across hosts: the stop request written (PostgreSQL: the row, and NOTIFY) to the
  SIGTERM at the task, the task running in a namespace "host" of its own; and ``control
  --kill``'s start to that SIGTERM, on both;
- a lease renewal: client instructions per renewal, and its wall time (one server round
  trip) beside a bare ``SELECT 1``'s;
- 50 launches at once: launches a second, and each launch's wall time;
- psycopg's import: instructions of ``import psycopg`` and of the alternatives (its libpq
  layer alone, libpq through ctypes, the standard modules psycopg pulls in), what it adds
  to a command, and ``-X importtime``'s largest parts.

Wall times move with the machine's load (printed with the results): compare the columns.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
PY = sys.executable
TW = [PY, "-m", "taskwatcher"]
HOSTS = 4
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.M)


# -- formatting ------------------------------------------------------------------------------
def ms(s: float) -> str:
    return f"{s * 1000:.2f} ms" if s < 0.01 else f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def spread(xs: list[float]) -> str:
    """min / median / max."""
    return f"{ms(min(xs))} / {ms(statistics.median(xs))} / {ms(max(xs))}"


def mi(n: float) -> str:
    return f"{n / 1e6:.1f} M"


# -- measuring -------------------------------------------------------------------------------
def callgrind(argv: list[str], env: dict[str, str]) -> int:
    """Instructions executed by ``argv`` and every process it starts."""
    out = tempfile.mkdtemp(prefix="tw-pg-cg-")
    try:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out}/cg.%p",
            *argv,
        ]
        r = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if r.returncode != 0:
            raise RuntimeError(f"{argv}: exit {r.returncode} under callgrind: {r.stderr[-300:]!r}")
        total = 0
        for path in glob.glob(f"{out}/cg.*"):
            with open(path, "rb") as f:
                found = _TOTALS.search(f.read())
            total += int(found.group(1)) if found else 0
        return total
    finally:
        shutil.rmtree(out, ignore_errors=True)


def instructions(argv: list[str], env: dict[str, str], reps: int) -> list[int]:
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # the bytecode cache
    return [callgrind(argv, env) for _ in range(reps)]


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t)
    return out


def wait_until(cond, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)  # the benchmark's own waiting, not a measured figure


# -- the figures -------------------------------------------------------------------------------
def fill(db: str, count: int) -> None:
    """``count`` running rows spread over 4 hosts (rows of other hosts: never judged from
    here), with leases long enough for the run."""
    from support import a_claim
    from taskwatcher.store import open_store

    with open_store(db) as store:
        for i in range(count):
            row = store.claim(None, a_claim(f"job{i % 10}", host=f"bench-host-{i % HOSTS}", pidns=1))
            if store.shared:
                store.renew_lease(row.id, row.token, 3600)


def on_host(name: str) -> list[str]:
    """A command prefix running in a namespace "host" of its own, where that can be had."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        ns = ["unshare", "--pid", "--uts", "--fork", "--mount-proc", "--kill-child", "--"]
        return [*ns, "sh", "-c", f'hostname {name} && exec "$@"', "sh"]
    return []


def kills(db: str, env: dict[str, str], runs: int, folder: Path, by_command: bool) -> list[float]:
    """Request (or ``control --kill``'s start) to the task's SIGTERM, ``runs`` times."""
    from taskwatcher.store import open_store

    out = []
    remote = on_host("bench-remote") if db.startswith("postgres") else []
    for _ in range(runs):
        flag = Path(tempfile.mkdtemp(dir=folder)) / "term"
        task = f'trap "date +%s.%N > {flag}; exit 0" TERM; echo up > {flag}.up; while :; do sleep 0.01; done'
        proc = subprocess.Popen(
            [*remote, *TW, "launch", "--db", db, "--name", "victim", "sh", "-c", task], env=env
        )
        wait_until(lambda f=flag: Path(f"{f}.up").exists())
        with open_store(db) as store:
            (row,) = [r for r in store.tasks() if r.name == "victim"]
            if by_command:
                asked = time.time()
                subprocess.run([*TW, "control", "--db", db, "--kill", str(row.id)], env=env,
                               stdout=subprocess.DEVNULL, check=True)  # fmt: skip
            else:
                asked = time.time()
                store.request_stop(row.id, "killed by request")
        wait_until(lambda f=flag: f.exists() and f.read_text().strip())
        out.append(float(flag.read_text()) - asked)
        proc.wait(60)
    return out


def burst(db: str, env: dict[str, str], count: int) -> tuple[float, list[float]]:
    """``count`` launches started at once: the whole, and each one's wall time."""
    start = time.perf_counter()
    procs = [subprocess.Popen([*TW, "launch", "--db", db, "true"], env=env, stdout=subprocess.DEVNULL)
             for _ in range(count)]  # fmt: skip
    ended: dict[int, float] = {}
    while len(ended) < count:
        for k, p in enumerate(procs):
            if k not in ended and p.poll() is not None:
                ended[k] = time.perf_counter() - start
        time.sleep(0.005)  # the benchmark's own polling: 5 ms of resolution
    return max(ended.values()), sorted(ended.values())


RENEW = """
import os, sys, time
from taskwatcher import process
from taskwatcher.model import Claim
from taskwatcher.store import open_store
n = int(sys.argv[2])
me = os.getpid()
claim = Claim(name="lease", default_name="cmd", infos=(None, None, None), unique=False, timeout=None,
              grace=5.0, command='["cmd"]', feedfolder=None, logfile=None, logfolder=None,
              token=os.urandom(8).hex(), host=process.host_name(), bootid=process.boot_id(),
              launcherpid=me, launcherstart=process.start_ticks(me), pidns=process.pid_namespace())
with open_store(sys.argv[1]) as store:
    row = store.claim(None, claim)
    store.renew_lease(row.id, row.token, 60)  # the statement prepared, the connection warm
    times, trips = [], []
    for _ in range(n):
        t = time.perf_counter()
        store.renew_lease(row.id, row.token, 60)
        times.append(time.perf_counter() - t)
    for _ in range(n if len(sys.argv) > 3 else 0):
        t = time.perf_counter()
        store._query("SELECT 1")
        trips.append(time.perf_counter() - t)
    store.finish(row.id, row.token, termsignal="", termerror="", exitcode=0, feedback={})
if len(sys.argv) > 3:
    print(repr((times, trips)))
"""


def renewals(db: str, env: dict[str, str], n: int, reps: int) -> tuple[list[float], list[float], list[float]]:
    """Wall times of ``n`` renewals and ``n`` bare round trips; client instructions per renewal."""
    out = subprocess.run(
        [PY, "-c", RENEW, db, str(n), "times"], env=env, capture_output=True, text=True, check=True
    )
    times, trips = eval(out.stdout)  # our own repr, just printed
    per = []
    for _ in range(reps):
        none = callgrind([PY, "-c", RENEW, db, "0"], env)
        many = callgrind([PY, "-c", RENEW, db, str(n)], env)
        per.append((many - none) / n)
    return times, trips, per


IMPORTS = {
    "import psycopg": "import psycopg",
    "import psycopg.pq (any part of psycopg imports all of it)": "import psycopg.pq",
    "libpq through ctypes": "import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library('pq'))",
    "logging, asyncio, importlib.metadata, typing_extensions": (
        "import logging, asyncio, importlib.metadata, typing_extensions"
    ),
}


def importtime_top(env: dict[str, str], n: int = 8) -> list[tuple[str, int]]:
    """The modules whose own import time (-X importtime's "self", µs) is largest."""
    r = subprocess.run(
        [PY, "-X", "importtime", "-c", "import psycopg"], env=env, capture_output=True, text=True
    )
    parts = []
    for line in r.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
        if found:
            parts.append((found.group(3), int(found.group(1))))
    total = sum(us for _, us in parts)
    return [("(all)", total), *sorted(parts, key=lambda p: -p[1])[:n]]


def measure(quick: bool) -> dict:
    import pgcluster

    runs, reps = (3, 1) if quick else (10, 3)
    launches = 10 if quick else 50
    cluster = pgcluster.start_cluster()  # (outside pytest: a RuntimeError or pytest's skip, said by main)
    scratch = Path(tempfile.mkdtemp(prefix="tw-bench-pg-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKWATCHER_")}
    env.update(
        XDG_STATE_HOME=str(scratch / "state"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
    )
    os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]
    rows: list[dict] = []

    def row(key: str, title: str, sqlite: str, postgres: str, raw: object = None) -> None:
        rows.append(dict(key=key, title=title, sqlite=sqlite, postgres=postgres, raw=raw))
        print(f"[bench] {title}: SQLite {sqlite} | PostgreSQL {postgres}", file=sys.stderr)

    try:
        dbs = {"sqlite": str(scratch / "bench.db"), "postgres": cluster.new_database()}
        instr, walls = {}, {}
        med = statistics.median
        for name, db in dbs.items():
            fill(db, 200)
            argv = [*TW, "control", "--db", db, "--list", "--json"]
            instr[name], walls[name] = instructions(argv, env, reps), timed(argv, env, runs)
        row("pg-list", "`control --list --json`, 200 tasks over 4 hosts, instructions",
            mi(med(instr["sqlite"])), mi(med(instr["postgres"])), instr)  # fmt: skip
        row("pg-list-wall", "`control --list --json`, 200 tasks over 4 hosts, wall (min / median / max)",
            spread(walls["sqlite"]), spread(walls["postgres"]), walls)  # fmt: skip

        empty = {"sqlite": str(scratch / "empty.db"), "postgres": cluster.new_database()}
        for db in empty.values():
            subprocess.run(
                [*TW, "control", "--db", db, "--reserve"], env=env, capture_output=True, check=True
            )
        startup = {
            n: instructions([*TW, "control", "--db", db, "--list", "--json"], env, reps)
            for n, db in empty.items()
        }
        row("pg-startup", "`control --list --json`, one reserved task (start-up), instructions",
            mi(med(startup["sqlite"])), mi(med(startup["postgres"])), startup)  # fmt: skip

        request = kills(dbs["postgres"], env, runs, scratch, by_command=False)
        row("pg-kill", "kill across hosts: stop request written to the task's SIGTERM (min / median / max)",
            "(no request: `--kill` signals the launcher)", spread(request), request)  # fmt: skip
        command = {n: kills(db, env, runs, scratch, by_command=True) for n, db in dbs.items()}
        row("pg-kill-command", "`control --kill` started to the task's SIGTERM (min / median / max)",
            spread(command["sqlite"]), spread(command["postgres"]), command)  # fmt: skip

        times, trips, per = renewals(dbs["postgres"], env, 200, reps)
        row("pg-lease", "lease renewal: client instructions; wall (min / median / max) beside `SELECT 1`'s",
            "(no lease)", f"{statistics.median(per) / 1e3:.0f} k instructions; {spread(times)} "
            f"(`SELECT 1`: {spread(trips)})", dict(times=times, trips=trips, per=per))  # fmt: skip

        rates = {}
        for name in dbs:
            fresh = str(scratch / "launch.db") if name == "sqlite" else cluster.new_database()
            subprocess.run([*TW, "launch", "--db", fresh, "true"], env=env, check=True)  # made, cached
            total, each = burst(fresh, env, launches)
            rates[name] = (total, each)
        row("pg-burst", f"{launches} launches at once: launches a second; each launch (min / median / max)",
            *(f"{launches / t:.1f}/s; {spread(e)}" for t, e in rates.values()), rates)  # fmt: skip

        floor = instructions([PY, "-c", "pass"], env, reps)
        costs = {label: instructions([PY, "-c", code], env, reps) for label, code in IMPORTS.items()}
        base = statistics.median(floor)
        for label, xs in costs.items():
            row("pg-import", f"{label}, instructions over `python -c pass` ({mi(base)})", "-",
                mi(statistics.median(xs) - base), dict(xs=xs, floor=floor))  # fmt: skip
        added = statistics.median(startup["postgres"]) - statistics.median(startup["sqlite"])
        row("pg-import-command", "what PostgreSQL adds to a command (start-up above: PostgreSQL - SQLite)",
            "-", mi(added))  # fmt: skip
        top = importtime_top(env)
        row("pg-importtime", "`python -X importtime -c 'import psycopg'`: all, then the largest own times",
            "-", "; ".join(f"{m} {us / 1000:.1f} ms" for m, us in top), top)  # fmt: skip
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return {"load": os.getloadavg(), "rows": rows}


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the cluster is stopped too
    quick = "--quick" in sys.argv
    try:
        result = measure(quick)
    except BaseException as e:  # pytest's skip/fail outside pytest too: say why and stop
        if isinstance(e, KeyboardInterrupt):
            raise
        sys.exit(f"PostgreSQL benchmark not run: {type(e).__name__}: {e}")
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(result, f, indent=1)
    width = max(len(r["title"]) for r in result["rows"])
    print(f"{'':{width}}  SQLite | PostgreSQL   (load average at the end: {result['load'][0]:.1f})")
    for r in result["rows"]:
        print(f"{r['title']:{width}}  {r['sqlite']} | {r['postgres']}")


if __name__ == "__main__":
    main()
