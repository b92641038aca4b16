"""What a launcher's private memory could be at best: the floor of a supervising Python process.

Not part of ``benchmarks/run``: ``.venv/bin/python benchmarks/launcher_floor.py [--rounds N]``.
Each candidate is a real process, sleeping after its start-up as a quiet launcher sleeps in
its poll loop, read from /proc/PID/smaps_rollup 2 s after it started (USS = Private_Clean +
Private_Dirty), against a bare sleeping interpreter started in the same minutes: the figure
"a launcher's memory" of ``benchmarks/run`` and its goal (≤ 1.3x), asked of designs that do
not exist, to learn whether building one would meet the goal.

The candidates go from the least any supervising process written in Python needs (the
interpreter without ``site``, the C modules for polling, signals and SQLite, a database in
WAL mode written once) to the present launcher, adding what a re-executed lean supervisor
would need on the way: the feedback grammar's regular expressions, the present supervision
modules. A candidate with ``-S`` gets the project environment's ``sys.path`` by hand, as a
re-executed supervisor would be given it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import uss_pss_kib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
OURS = str(REPO / ".venv" / "bin" / "taskwatcher")

# What each candidate does after its start-up, before it sleeps: open the database as a
# launcher does (WAL) and write one heartbeat-sized row, so SQLite's page cache and shared
# memory are counted.
_DB_WRITE = (
    "c = _sqlite3.connect({db!r}); c.execute('PRAGMA journal_mode=WAL');"
    " c.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, at REAL)');"
    " c.execute('INSERT INTO t (at) VALUES (1.0)'); c.commit()"
)
_SLEEP = "import time; time.sleep(3600)"


def candidates(db: str, path: list[str]) -> list[tuple[str, list[str]]]:
    write = _DB_WRITE.format(db=db)
    given_path = f"import sys; sys.path[:] = {path!r}"
    c_modules = "import os, select, _signal, _sqlite3"
    return [
        ("`python -S` (no `site`), sleeping", [PYTHON, "-S", "-c", _SLEEP]),
        (
            "`-S` + os, select, _signal, _sqlite3, a WAL database written once",
            [PYTHON, "-S", "-c", f"{c_modules}; {write}; {_SLEEP}"],
        ),
        (
            "the same + `re` (the feedback grammar's regexes)",
            [PYTHON, "-S", "-c", f"{c_modules}, re; {write}; {_SLEEP}"],
        ),
        (
            "`-S` + the present supervision modules (supervisor, output, filewatch, store)",
            [
                PYTHON,
                "-S",
                "-c",
                f"{given_path}; {c_modules}; import taskwatcher.supervisor, taskwatcher.output,"
                f" taskwatcher.filewatch, taskwatcher.store.sqlite; {write}; {_SLEEP}",
            ],
        ),
    ]


def uss_of(argv: list[str]) -> int:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        time.sleep(2)  # past start-up: sleeping, as a quiet launcher sleeps in poll()
        if proc.poll() is not None:
            raise SystemExit(f"candidate ended early ({proc.returncode}): {argv}")
        return uss_pss_kib(proc.pid)[0]
    finally:
        proc.kill()
        proc.wait()


def launcher_uss(folder: str) -> int:
    """A real quiet launcher, as ``benchmarks/run``'s memory figure starts it."""
    db = os.path.join(folder, "launcher.db")
    env = dict(os.environ, XDG_STATE_HOME=folder, HOME=folder)
    feed = os.path.join(folder, "feed")
    os.makedirs(feed, exist_ok=True)
    options = ["--db", db, "--detach", "--name", "floor", "--feedpath", feed, "--timeout", "3600"]
    subprocess.run(
        [OURS, "launch", *options, "--", "sleep", "3600"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        listing = json.loads(
            subprocess.run(
                [OURS, "control", "--db", db, "--list", "--json"], env=env, check=True, capture_output=True
            ).stdout
        )
        (task,) = listing.values()
        with open(f"/proc/{task['pid']}/stat") as f:
            launcher = int(f.read().rsplit(")", 1)[1].split()[1])
        time.sleep(2)
        return uss_pss_kib(launcher)[0]
    finally:
        subprocess.run([OURS, "control", "--db", db, "--killall", "floor"], env=env, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    # As benchmarks/run measures: with bytecode cached (compiling from source would leave more
    # garbage in every candidate), the cache in a folder of ours.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(HERE / ".pycache")
    path = json.loads(
        subprocess.run(
            [PYTHON, "-c", "import sys, json; print(json.dumps(sys.path))"], check=True, capture_output=True
        ).stdout
    )
    with tempfile.TemporaryDirectory() as folder:
        rows: list[tuple[str, list[int]]] = [("a bare sleeping interpreter (the baseline)", [])]
        for name, _ in candidates("", path):
            rows.append((name, []))
        rows.append(("the present launcher (`launch --detach --feedpath ... sleep 3600`)", []))
        for r in range(args.rounds):
            db = os.path.join(folder, f"floor-{r}.db")
            rows[0][1].append(uss_of([PYTHON, "-c", _SLEEP]))
            for i, (_, argv) in enumerate(candidates(db, path), start=1):
                rows[i][1].append(uss_of(argv))
            rows[-1][1].append(launcher_uss(os.path.join(folder, f"l{r}")))
    base = statistics.median(rows[0][1])
    print(f"{'candidate':<84} {'USS, MB (min/med/max)':>22} {'÷ bare':>7}")
    for name, xs in rows:
        med = statistics.median(xs)
        spread = f"{min(xs) / 1024:.2f}/{med / 1024:.2f}/{max(xs) / 1024:.2f}"
        print(f"{name:<84} {spread:>22} {med / base:>6.2f}x")
    print(f"goal: ≤ 1.3x = {1.3 * base / 1024:.2f} MB; python {sys.version.split()[0]}; {args.rounds} rounds")


if __name__ == "__main__":
    main()
