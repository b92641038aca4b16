"""Start-up and history figures in CPU instructions (callgrind), memory in USS/PSS.

Wall time on a shared 2-core machine moves with the load; the number of instructions a
command executes does not (callgrind repeats it to a fraction of a percent), so start-up
costs are counted, not timed: every command ÷ `python -c pass` under the same interpreter,
both run under ``valgrind --tool=callgrind --trace-children=yes`` (children included: the
console script's interpreter, a launcher's task).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time

import dbgen
from common import (
    DEVNULL,
    BenchError,
    log,
    median,
    parent_of,
    run,
    spread,
    uss_pss_kib,
)
from figures import BARE_LOOP, Cell, Ctx, Figure, write_feedback

_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.M)


def mi(n: float) -> str:
    return f"{n / 1e6:.1f} M"


def callgrind(ctx: Ctx, argv: list[str], *, profile: str = "", env: dict | None = None) -> int:
    """Instructions executed by ``argv`` and every process it starts (one callgrind file each).

    With ``profile``, the files of this run are kept under results/profiles/PROFILE for
    ``callgrind_annotate`` (which functions take the instructions).
    """
    out = ctx.fresh_dir("callgrind")
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}/cg.%p", *argv]
    r = subprocess.run(cmd, stdin=DEVNULL, stdout=DEVNULL, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: exit {r.returncode} under callgrind: {r.stderr[-400:]!r}")
    files = glob.glob(f"{out}/cg.*")
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            m = _TOTALS.search(fh.read())
        if not m:
            raise BenchError(f"no totals in {path}")
        total += int(m.group(1))
    if profile:
        keep = os.path.join(ctx.tools.here, "results", "profiles", profile)
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(out, keep)
    shutil.rmtree(out, ignore_errors=True)
    return total


def counts(ctx: Ctx, argv: list[str], profile: str = "", env: dict | None = None) -> list[int]:
    """``instr_reps`` callgrind runs of ``argv`` (after one native run that warms the bytecode cache)."""
    subprocess.run(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, env=env)
    return [
        callgrind(ctx, argv, profile=profile if k == 0 else "", env=env) for k in range(ctx.sizes.instr_reps)
    ]


def python_pass(ctx: Ctx) -> list[int]:
    """The floor every start-up figure is divided by: `python -c pass`, same interpreter."""
    if "pass_instr" not in ctx:
        ctx["pass_instr"] = counts(ctx, [ctx.tools.python, "-c", "pass"], profile="python-pass")
    return ctx["pass_instr"]


def ratio_of(xs: list[int], base: list[int]) -> Cell:
    b = median(base)
    return Cell(
        median(xs) / b,
        f"{median(xs) / b:.2f}x ({mi(median(xs))} / {mi(b)}; {spread(xs, mi)})",
    )


def _instr_figure(ctx: Ctx, key: str, title: str, goal: float, argv: list[str], **kw) -> Figure:
    f = Figure(key, title, "`python -c pass`, instructions", f"≤ {goal}x")
    xs = counts(ctx, argv, profile=key, **kw)
    f.ours = ratio_of(xs, python_pass(ctx))
    f.met = f.ours.value <= goal
    f.raw = {"ours": xs, "python -c pass": python_pass(ctx)}
    return f


# -- the fixture: real running tasks ------------------------------------------------------------
def start_running(ctx: Ctx, db: str, n: int, name: str, feed: str | None = None) -> list[int]:
    """``n`` real quiet tasks (`launch --detach ... sleep 3600`); their launchers' pids.

    They are stopped by ``--killall NAME`` when the run ends.
    """
    t = ctx.tools
    ctx.cleanups.append(lambda: run([*t.ours, "control", "--db", db, "--killall", name], ok=(0, 4)))
    opts = ["--feedpath", feed, "--timeout", "3600"] if feed else []
    for _ in range(n):
        run([*t.ours, "launch", "--db", db, "--detach", "--name", name, *opts, "--", "sleep", "3600"])
    tasks = json.loads(run([*t.ours, "control", "--db", db, "--list", "--json"]))
    pids = [v["pid"] for v in tasks.values() if v["status"] == "RUNNING" and v["name"] == name]
    if len(pids) != n:
        raise BenchError(f"{len(pids)} of {n} tasks running")
    return [parent_of(pid) for pid in pids]  # the task's parent is its launcher


# -- start-up figures ---------------------------------------------------------------------------
def list_instr(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    db = ctx.path("list-running.db")
    dbgen.create_ours(t, db)
    dbgen.add_ours_history(db, s.history_rows)
    log(f"  starting {s.running_tasks} running tasks")
    start_running(ctx, db, s.running_tasks, "bench-list", ctx.fresh_dir("listfeed"))
    argv = [*t.ours, "control", "--db", db, "--list", "--json"]
    f = _instr_figure(
        ctx,
        "list",
        f"`control --list --json`, {s.running_tasks} running tasks, {s.history_rows // 1000}k history rows",
        2.0,
        argv,
    )
    run([*t.ours, "control", "--db", db, "--killall", "bench-list"])  # not left running under other figures
    return f


def reserve_instr(ctx: Ctx) -> Figure:
    db = ctx.path("reserve.db")
    dbgen.create_ours(ctx.tools, db)
    argv = [*ctx.tools.ours, "control", "--db", db, "--reserve", "--ttl", "1"]
    return _instr_figure(ctx, "reserve", "`control --reserve`", 2.0, argv)


def launch_instr(ctx: Ctx) -> Figure:
    t = ctx.tools
    db = ctx.path("launch-instr.db")
    dbgen.create_ours(t, db)
    f = _instr_figure(ctx, "launch", "`launch -- true` (the launcher, and `true`)", 2.5,
                      [*t.ours, "launch", "--db", db, "--", "true"])  # fmt: skip
    if t.timeout:
        floor = counts(ctx, [t.timeout, "10", "true"])
        f.floor = ratio_of(floor, python_pass(ctx))
        f.raw["timeout 10 true"] = floor
    return f


def parse_instr(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    path = ctx.path("parse-instr.log")
    write_feedback(path, s.parse_instr_bytes)
    size = f"{s.parse_instr_bytes >> 20} MB"
    f = Figure("parse", f"`parse` of a {size} feedback file", "a bare Python loop over its lines", "≤ 3x")
    loop = counts(ctx, [t.python, "-c", BARE_LOOP, path])
    ours = counts(ctx, [*t.ours, "parse", "--feedback", path], profile="parse")
    f.ours = ratio_of(ours, loop)
    f.met = f.ours.value <= 3
    base = median(python_pass(ctx))
    net = (median(ours) - base) / (median(loop) - base)
    f.notes.append(f"start-up included in both; without `python -c pass` on each side: {net:.2f}x")
    f.raw = {"ours": ours, "bare loop": loop}
    return f


# -- history that should not grow the cost ------------------------------------------------------
def history_constant(ctx: Ctx) -> list[Figure]:
    """`--history --last 10` and `--since 1h` on 1k to 1M rows: largest ÷ smallest."""
    t, s = ctx.tools, ctx.sizes
    db = ctx.path("history-big.db")
    dbgen.create_ours(t, db)
    commands = {
        "last": [*t.ours, "control", "--db", db, "--history", "--last", "10"],
        "since": [*t.ours, "control", "--db", db, "--history", "--since", "1h"],
    }
    have, by_size = 0, {}
    for size in s.constant_history:
        dbgen.add_ours_history(db, size - have)
        have = size
        by_size[size] = {k: counts(ctx, argv, profile=f"history-{k}-{size}") for k, argv in commands.items()}
        log(f"  history {size} rows: " + ", ".join(f"{k} {mi(median(v))}" for k, v in by_size[size].items()))
    ctx["big_history_db"] = db
    ctx.scaling["history_instr"] = [{"rows": n, **v} for n, v in by_size.items()]
    small, big = s.constant_history[0], s.constant_history[-1]
    figs = []
    for key, what in (("last", "`--history --last 10`"), ("since", "`--history --since 1h`")):
        f = Figure(
            f"history-{key}",
            f"{what}, {big:,} rows against {small:,}",
            f"the same on {small:,} rows, instructions",
            "≤ 1.10x",
        )
        f.ours = ratio_of(by_size[big][key], by_size[small][key])
        f.met = f.ours.value <= 1.10
        f.raw = {str(n): v[key] for n, v in by_size.items()}
        figs.append(f)
    figs[1].notes.append("the generated rows end 7 to 30 days ago: `--since 1h` finds none of them")
    return figs


def retention_launch(ctx: Ctx) -> list[Figure]:
    """`launch -- true` on the big history, with retention in the configuration file and without."""
    t, s = ctx.tools, ctx.sizes
    if "big_history_db" not in ctx:
        history_constant(ctx)
    db, rows = ctx["big_history_db"], s.constant_history[-1]
    argv = [*t.ours, "launch", "--db", db, "--", "true"]
    without = counts(ctx, argv)
    # A configuration file that sets no retention: what reading the file costs (tomllib), apart
    # from what the retention does on a big history.
    plain = ctx.path("retention-none.toml")
    with open(plain, "w") as fh:
        fh.write("[history]\n")
    with_file = counts(ctx, argv, env={**os.environ, "TASKWATCHER_CONFIG": plain})
    figs = []
    # keep = the rows there are: each launch deletes its oldest row, the steady state of a full
    # history; max_age 30d: the oldest generated rows are that old, so a few go at each launch.
    for key, setting in (("keep", f"keep = {rows}"), ("max_age", 'max_age = "30d"')):
        conf = ctx.path(f"retention-{key}.toml")
        with open(conf, "w") as fh:
            fh.write(f"[history]\n{setting}\n")
        env = {**os.environ, "TASKWATCHER_CONFIG": conf}
        xs = counts(ctx, argv, profile=f"retention-{key}", env=env)
        f = Figure(
            f"retention-{key}",
            f"`launch -- true` on {rows:,} history rows, retention `{setting}`",
            "the same launch without a configuration file, instructions",
            "≤ 1.10x",
        )
        f.ours = ratio_of(xs, without)
        f.met = f.ours.value <= 1.10
        f.notes.append(
            f"÷ the same launch with a configuration file that sets no retention ({mi(median(with_file))}):"
            f" {median(xs) / median(with_file):.2f}x; that file alone:"
            f" {median(with_file) / median(without):.2f}x a launch without one"
        )
        f.raw = {"with": xs, "without": without, "file without retention": with_file}
        figs.append(f)
    return figs


# -- memory --------------------------------------------------------------------------------------
def launcher_memory(ctx: Ctx) -> Figure:
    """USS and PSS of quiet launchers against bare sleeping interpreters started with them."""
    t = ctx.tools
    n = 2 if ctx.sizes.quick else 5
    f = Figure(
        "memory", "a launcher's memory (USS), quiet task", "a bare sleeping interpreter's USS", "≤ 1.3x"
    )
    db = ctx.path("memory.db")
    dbgen.create_ours(t, db)
    bare = [
        subprocess.Popen([t.python, "-c", "import time; time.sleep(3600)"], stdin=DEVNULL) for _ in range(n)
    ]
    try:
        launchers = start_running(ctx, db, n, "bench-memory", ctx.fresh_dir("memfeed"))
        time.sleep(2)  # past start-up: the launchers sleep in their loop
        ours = [uss_pss_kib(p) for p in launchers]
        base = [uss_pss_kib(p.pid) for p in bare]
    finally:
        for p in bare:
            p.kill()
            p.wait()
    run([*t.ours, "control", "--db", db, "--killall", "bench-memory"], ok=(0, 4))
    uss, buss = [u for u, _ in ours], [u for u, _ in base]
    f.ours = Cell(
        median(uss) / median(buss),
        f"{median(uss) / median(buss):.2f}x (USS {mb(median(uss))} / {mb(median(buss))}; "
        f"{spread(uss, mb)}); PSS {mb(median([p for _, p in ours]))} / {mb(median([p for _, p in base]))}",
    )
    f.met = f.ours.value <= 1.3
    f.notes.append(
        "launchers: `launch --detach --feedpath DIR --timeout 3600 -- sleep 3600`, read from "
        "/proc/PID/smaps_rollup 2 s after start; the bare one: `python -c 'import time; time.sleep(3600)'`"
    )
    f.raw = {"ours uss/pss kib": ours, "bare uss/pss kib": base}
    return f


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"
