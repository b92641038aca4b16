"""The wall-clock figures (where time is the point), each measured against a baseline taken in the same run.

Each function returns a :class:`Figure`: our value, taskwatcher 1.7's and the
coreutils timeout(1) floor where they apply, and whether the goal is met.
Shared measurements (the `python -c pass` baseline, a plain launch) go into ``ctx``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dbgen
from common import (
    DEVNULL,
    BenchError,
    Sizes,
    Tools,
    children,
    cpu_ns,
    cpu_ticks_ns,
    interleaved,
    log,
    median,
    rss_kib,
    run,
    spread,
    wait_for,
    wall,
)

BARE_LOOP = (
    "import sys\n"
    "with open(sys.argv[1], encoding='utf-8', errors='replace') as f:\n"
    "    for line in f:\n"
    "        pass\n"
)


@dataclass(frozen=True)
class Cell:
    value: float | None
    text: str


NA = Cell(None, "—")


@dataclass
class Figure:
    key: str
    title: str
    baseline: str
    goal: str
    ours: Cell = NA
    v17: Cell = NA
    floor: Cell = NA
    peers: dict[str, Cell] = field(default_factory=dict)  # task-spooler, supervisord
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def with_spread(cell: Cell, xs: list[float]) -> Cell:
    """The cell, followed by min / median / max of the samples it was made from (in ms)."""
    return Cell(cell.value, f"{cell.text}; {spread(xs, ms)}")


def ratio_cell(x: float, base: float) -> Cell:
    return Cell(x / base, f"{x / base:.2f}x ({ms(x)} / {ms(base)})")


def mib(n: int) -> str:
    return f"{n / (1 << 20):g} MB" if n >= 1 << 20 else f"{n / 1024:g} kB"


class Ctx(dict):
    """Shared values (baselines, databases) and things to clean up."""

    def __init__(self, tools: Tools, sizes: Sizes, with_17: bool) -> None:
        super().__init__()
        self.tools, self.sizes, self.with_17 = tools, sizes, with_17 and tools.v17_python is not None
        self.cleanups: list[Callable[[], None]] = []
        self.scaling: dict[str, Any] = {}

    @property
    def slow_17(self) -> bool:
        """1.7's launches take 3 s or more each (its poll period): full runs only."""
        return self.with_17 and not self.sizes.quick

    def path(self, name: str) -> str:
        return os.path.join(self.tools.scratch, name)

    def fresh_dir(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=name + "-", dir=self.tools.scratch)

    def python_pass(self) -> float:
        if "python_pass" not in self:
            self["python_pass"] = median(
                interleaved({"b": lambda: wall([self.tools.python, "-c", "pass"])}, self.sizes.reps)["b"]
            )
        return self["python_pass"]


# -- helpers for taskwatcher 1.7 -------------------------------------------------------------
def reserve_17(ctx: Ctx, db: str) -> int:
    out = run([*ctx.tools.v17("control"), "--db", db, "task", "--reserve"], cwd=ctx.tools.scratch)
    m = re.search(r"Taskid (\d+) has been reserved", out)
    if not m:
        raise BenchError(f"1.7 reserve printed {out!r}")
    return int(m.group(1))


def _read_stamp(p: subprocess.Popen) -> float:
    """The wall clock the task printed just before exiting."""
    buf = b""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            raise BenchError(f"no STAMP from the task (got {buf[-200:]!r})")
        buf += chunk
        m = re.search(rb"STAMP ([0-9.]+)\n", buf)
        if m:
            return float(m.group(1))


def _kill_tree(pid: int) -> None:
    for kid in children(pid):
        _kill_tree(kid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- a plain launch, in wall time: what the timeout figure subtracts ---------------------------------
def launch_true(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    f = Figure("launch", "`launch -- true`, end to end, wall", "`python3 -c pass`", "≤ 4x")
    db = ctx.path("launch.db")
    dbgen.create_ours(t, db)
    cases = {
        "python -c pass": lambda: wall([t.python, "-c", "pass"]),
        "ours": lambda: wall([*t.ours, "launch", "--db", db, "--", "true"]),
    }
    if t.timeout:
        cases["timeout 10 true"] = lambda: wall([t.timeout, "10", "true"])
    sm = interleaved(cases, s.reps)
    base = ctx["python_pass"] = median(sm["python -c pass"])
    ctx["launch_true"] = median(sm["ours"])
    f.ours = ratio_cell(ctx["launch_true"], base)
    if t.timeout:
        ctx["timeout_true"] = median(sm["timeout 10 true"])
        f.floor = ratio_cell(ctx["timeout_true"], base)
    if ctx.slow_17:
        db17 = ctx.path("launch17.db")
        dbgen.create_17(t, db17)
        xs = []
        for _ in range(s.slow_reps):
            tid = reserve_17(ctx, db17)
            xs.append(
                wall([*t.v17("launch"), "--db", db17, "--taskid", str(tid), "--", "true"], cwd=t.scratch)
            )
        f.v17 = ratio_cell(median(xs), base)
        sm["1.7"] = xs
        f.notes.append("1.7: `launch --taskid N` after a `task --reserve` (untimed): 1.7 needs a reservation")
    f.met = f.ours.value is not None and f.ours.value <= 4
    f.raw = sm
    return f


# -- 8, 15. --history on a big database ---------------------------------------------------------
def _build_list_dbs(ctx: Ctx) -> None:
    if "list_db" in ctx:
        return
    t, s = ctx.tools, ctx.sizes
    db = ctx.path("list.db")
    dbgen.create_ours(t, db)
    dbgen.add_ours_history(db, s.history_rows)
    dbgen.add_ours_reservations(db, s.tasks - s.running)
    feed = ctx.fresh_dir("listfeed")
    for _ in range(s.running):
        run([*t.ours, "launch", "--db", db, "--detach", "--name", "bench-running", "--feedpath", feed,
             "--timeout", "3600", "--", "sleep", "3600"])  # fmt: skip
    ctx.cleanups.append(
        lambda: run([*t.ours, "control", "--db", db, "--killall", "bench-running"], ok=(0, 4))
    )
    if dbgen.count(db, "tasks") != s.tasks:
        raise BenchError(f"list.db has {dbgen.count(db, 'tasks')} tasks, not {s.tasks}")
    ctx["list_db"] = db
    if ctx.with_17:
        db17 = ctx.path("list17.db")
        dbgen.create_17(t, db17)
        dbgen.add_17_history(db17, s.history_rows)
        dbgen.add_17_tasks(db17, s.tasks - s.running, s.running)
        ctx["list_db17"] = db17


def history_json(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    n = s.history_rows
    f = Figure("history", f"`control --history --json`, {n // 1000}k rows", "—", "≥ 100k rows/s")
    _build_list_dbs(ctx)
    db = ctx["list_db"]
    out = run([*t.ours, "control", "--db", db, "--history", "--json"])
    if len(json.loads(out)) != n:
        raise BenchError("--history --json did not give every row")
    cases = {"ours": lambda: wall([*t.ours, "control", "--db", db, "--history", "--json"])}
    if ctx.with_17:
        db17 = ctx["list_db17"]
        cases["1.7"] = lambda: wall([*t.v17("control"), "--db", db17, "history", "--list"], cwd=t.scratch)
    sm = interleaved(cases, max(3, s.reps // 3))

    def rate(xs: list[float]) -> Cell:
        m = median(xs)
        return Cell(n / m, f"{n / m / 1000:.0f}k rows/s ({ms(m)} for {n} rows)")

    f.ours = with_spread(rate(sm["ours"]), sm["ours"])
    if "1.7" in sm:
        f.v17 = rate(sm["1.7"])
        f.notes.append("1.7: `control --db X history --list` (its JSON output)")
    f.notes.append("rows / wall time of the whole command, start-up included")
    f.met = f.ours.value >= 100_000
    f.raw = sm
    return f


def history_table(ctx: Ctx) -> Figure:
    """The history as a table for people, written whole (output that is not a terminal)."""
    t, s = ctx.tools, ctx.sizes
    n = s.history_rows
    f = Figure(
        "tables",
        f"`control --history` as a table (not a terminal: whole values), {n // 1000}k rows",
        "the same, `--last 10`",
        "≥ 20k rows/s; peak RSS ≤ 1.5x `--last 10`'s",
    )
    _build_list_dbs(ctx)
    db = ctx["list_db"]
    out = run([*t.ours, "control", "--db", db, "--history"])
    if out.count("\n") < n + 1:
        raise BenchError(f"--history gave {out.count(chr(10))} lines for {n} rows")
    history = [*t.ours, "control", "--db", db, "--history"]
    sm = interleaved({"all": lambda: wall(history), "last 10": lambda: wall([*history, "--last", "10"])},
                     max(3, s.reps // 3))  # fmt: skip
    peak = int(run([t.python, t.script("maxrss.py"), *history]))
    small = int(run([t.python, t.script("maxrss.py"), *history, "--last", "10"]))
    m = median(sm["all"])
    f.ours = Cell(n / m, f"{n / m / 1000:.0f}k rows/s ({ms(m)} for {n} rows); peak RSS {peak / 1024:.1f} MB "
                  f"({peak / small:.2f}x `--last 10`'s {small / 1024:.1f} MB)")  # fmt: skip
    f.notes.append("the table streams a page (500 rows) at a time: its memory does not grow with the history")
    f.met = n / m >= 20_000 and peak <= 1.5 * small
    f.raw = {**sm, "rss_kib": {"all": peak, "last 10": small}}
    return f


# -- 9. a 1 s timeout --------------------------------------------------------------------------
_LOG17_TIME = re.compile(r"^(\d{8}:\d\d:\d\d:\d\d),\s*(\d+)")


def _detect_time_17(debug_log: str, marker: str) -> float | None:
    with open(debug_log, errors="replace") as fh:
        for line in fh:
            if marker in line:
                m = _LOG17_TIME.match(line)
                if m:
                    return (
                        datetime.strptime(m.group(1), "%Y%m%d:%H:%M:%S").timestamp() + int(m.group(2)) / 1000
                    )
    return None


def timeout_fires(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    f = Figure("timeout", "a 1 s timeout fires", "the deadline", "≤ 100 ms late, beyond a plain launch")
    if "launch_true" not in ctx:
        launch_true(ctx)
    db = ctx.path("launch.db")
    cases = {
        "ours": lambda: wall(
            [*t.ours, "launch", "--db", db, "--timeout", "1", "--", "sleep", "30"], ok=(124,)
        )
    }
    if t.timeout:
        cases["timeout 1 sleep 30"] = lambda: wall([t.timeout, "1", "sleep", "30"], ok=(124,))
    sm = interleaved(cases, 2 if s.quick else 5, warmup=False)
    late = median(sm["ours"]) - 1.0 - ctx["launch_true"]
    f.ours = with_spread(
        Cell(
            late,
            f"{late * 1000:+.0f} ms ({ms(median(sm['ours']))} - 1 s - plain launch {ms(ctx['launch_true'])})",
        ),
        sm["ours"],
    )
    if t.timeout:
        fl = median(sm["timeout 1 sleep 30"]) - 1.0 - ctx["timeout_true"]
        f.floor = Cell(fl, f"{fl * 1000:+.0f} ms")
    if ctx.slow_17:
        lates = []
        for _ in range(s.slow_reps):
            cwd = ctx.fresh_dir("t17")
            tid = reserve_17(ctx, ctx.path("launch17.db"))
            feedfile = os.path.join(cwd, f"feedback_{tid}.log")
            task = [t.python, t.script("feeder.py"), "--feedback", feedfile, "--sleep", "5"]
            opts = [
                "--db",
                ctx.path("launch17.db"),
                "--taskid",
                str(tid),
                "--feedpath",
                cwd,
                "--timeout",
                "1",
            ]
            wall([*t.v17("launch"), *opts, "--", *task], cwd=cwd)
            seen = _detect_time_17(os.path.join(cwd, "debug.log"), "has timeout")
            if seen is None:
                raise BenchError("1.7 never logged its timeout")
            lates.append(seen - (os.stat(feedfile).st_mtime + 1.0))
        sm["1.7 detection late"] = lates
        f.v17 = Cell(median(lates), f"{median(lates) * 1000:+.0f} ms to notice; never stops the task")
        f.notes.append(
            "1.7 has no run-time limit: its timeout is feedback silence only, seen at its 3 s polls "
            "(time read from its debug.log); it then waits for the task to end on its own"
        )
    f.met = late <= 0.100
    f.raw = sm
    return f


# -- 10. child exit noticed -----------------------------------------------------------------------
def exit_noticed(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    f = Figure("exit", "child exit noticed", "the child's exit", "≤ 10 ms")
    db = ctx.path("exit.db")
    dbgen.create_ours(t, db)
    task = [t.python, t.script("exit_stamp.py")]

    def until_exit(argv: list[str], cwd: str | None = None) -> float:
        p = subprocess.Popen(argv, stdin=DEVNULL, stdout=subprocess.PIPE, cwd=cwd)
        stamp = _read_stamp(p)
        p.wait()
        end = time.time()
        p.stdout.close()  # type: ignore[union-attr]
        if p.returncode != 0:
            raise BenchError(f"{argv[:3]}... exit {p.returncode}")
        return end - stamp

    poll = sqlite3.connect(db, isolation_level=None)

    def until_history() -> float:
        top = poll.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0]
        p = subprocess.Popen(
            [*t.ours, "launch", "--db", db, "--", *task], stdin=DEVNULL, stdout=subprocess.PIPE
        )
        stamp = _read_stamp(p)
        while poll.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0] == top:
            time.sleep(0.0002)
        seen = time.time()
        p.wait()
        p.stdout.close()  # type: ignore[union-attr]
        return seen - stamp

    cases = {
        "ours: to launcher exit": lambda: until_exit([*t.ours, "launch", "--db", db, "--", *task]),
        "ours: to history row": until_history,
    }
    if t.timeout:
        cases["timeout: to its exit"] = lambda: until_exit([t.timeout, "10", *task])
    sm = interleaved(cases, s.reps)
    poll.close()
    row, gone = median(sm["ours: to history row"]), median(sm["ours: to launcher exit"])
    f.ours = Cell(
        row,
        f"{row * 1000:.1f} ms to the history row ({spread(sm['ours: to history row'], ms)}); "
        f"{gone * 1000:.1f} ms to the launcher's exit ({spread(sm['ours: to launcher exit'], ms)})",
    )
    if t.timeout:
        fl = median(sm["timeout: to its exit"])
        f.floor = Cell(fl, f"{fl * 1000:.1f} ms to its exit")
    if ctx.slow_17:
        db17 = ctx.path("launch17.db")
        xs = []
        for _ in range(s.slow_reps):
            tid = reserve_17(ctx, db17)
            xs.append(
                until_exit([*t.v17("launch"), "--db", db17, "--taskid", str(tid), "--", *task], cwd=t.scratch)
            )
        sm["1.7: to launcher exit"] = xs
        f.v17 = Cell(median(xs), f"{median(xs) * 1000:.0f} ms to the launcher's exit")
    f.met = row <= 0.010
    f.raw = sm
    return f


# -- 11. a quiet task: launcher CPU (and RSS) ------------------------------------------------------
def quiet_launchers(ctx: Ctx) -> tuple[Figure, Figure]:
    t, s = ctx.tools, ctx.sizes
    window = s.quiet_window
    tmo = int(window * 3)  # the 25 % status change (RUNNING -> SILENT) falls inside the window
    nap = str(window + 30)
    cpu = Figure(
        "cpu", f"launcher CPU while its task is quiet (feedpath + timeout {tmo} s)", "—", "≤ 5 ms per minute"
    )
    mem = Figure("memory", "launcher memory (RSS)", "a bare sleeping interpreter", "≤ 1.5x RSS")
    db = ctx.path("quiet.db")
    dbgen.create_ours(t, db)
    feed = ctx.fresh_dir("quietfeed")
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str], cwd: str | None = None) -> None:
        procs[name] = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, cwd=cwd)

    try:
        start("bare", [t.python, "-c", f"import time; time.sleep({nap})"])
        quiet = [t.python, t.script("feeder.py"), "--sleep", nap, "--feedback"]
        start(
            "ours",
            [
                *t.ours,
                "launch",
                "--db",
                db,
                "--feedpath",
                feed,
                "--timeout",
                str(tmo),
                "--",
                *quiet,
                "{feedback}",
            ],
        )
        if t.timeout:
            start("timeout", [t.timeout, str(tmo), *quiet, os.path.join(feed, "timeout.log")])
        if ctx.with_17:
            db17 = ctx.path("quiet17.db")
            dbgen.create_17(t, db17)
            tid = reserve_17(ctx, db17)
            feed17 = ctx.fresh_dir("quietfeed17")
            opts = ["--db", db17, "--taskid", str(tid), "--feedpath", feed17, "--timeout", str(tmo)]
            feedfile = os.path.join(feed17, f"feedback_{tid}.log")
            start("1.7", [*t.v17("launch"), *opts, "--", *quiet, feedfile], cwd=t.scratch)
        for name in ("ours", "timeout", "1.7"):
            if name in procs:
                wait_for(lambda n=name: children(procs[n].pid), 10, f"{name}'s task to start")
        time.sleep(1.5)  # past start-up: the task has written its line, the launcher has looked
        for name, p in procs.items():
            if p.poll() is not None:
                raise BenchError(f"{name} exited early ({p.returncode})")
        before = {n: (cpu_ns(p.pid), cpu_ticks_ns(p.pid)) for n, p in procs.items()}
        t0 = time.monotonic()
        series: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
        while (now := time.monotonic()) < t0 + window:
            for n, p in procs.items():
                series[n].append((round(now - t0, 2), (cpu_ns(p.pid) - before[n][0]) / 1e6))
            time.sleep(min(1.0, max(0.0, t0 + window - now)))
        after = {n: (cpu_ns(p.pid), cpu_ticks_ns(p.pid)) for n, p in procs.items()}
        dt = time.monotonic() - t0
        rss = {n: rss_kib(p.pid) for n, p in procs.items()}
    finally:
        for name, p in procs.items():
            if name == "ours":
                p.send_signal(signal.SIGTERM)  # ours stops its task and archives it
            else:
                _kill_tree(p.pid)
        for p in procs.values():
            p.wait()

    per_min = {n: (after[n][0] - before[n][0]) / dt * 60 / 1e6 for n in before}
    per_min_ticks = {n: (after[n][1] - before[n][1]) / dt * 60 / 1e6 for n in before}

    def cpu_cell(n: str) -> Cell:
        return Cell(per_min[n], f"{per_min[n]:.2f} ms/min")

    cpu.ours = cpu_cell("ours")
    cpu.ours = Cell(cpu.ours.value, f"{cpu.ours.text} (one window; per-second samples in the JSON)")
    if "timeout" in per_min:
        cpu.floor = cpu_cell("timeout")
    if "1.7" in per_min:
        cpu.v17 = cpu_cell("1.7")
    cpu.met = per_min["ours"] <= 5
    cpu.notes.append(
        f"on-CPU time of the launcher process alone (/proc/PID/task/*/schedstat, ns) over {dt:.0f} s, "
        "scaled to a minute; the task's own CPU is not counted"
    )
    cpu.raw = {
        "ms_per_min": per_min,
        "ms_per_min_from_stat_ticks": per_min_ticks,
        "window_s": dt,
        "cumulative_ms_by_second": series,
        "timeout_s": tmo,
    }

    bare = rss["bare"]

    def mem_cell(n: str) -> Cell:
        return Cell(rss[n] / bare, f"{rss[n] / bare:.2f}x ({rss[n] / 1024:.1f} MB / {bare / 1024:.1f} MB)")

    mem.ours = mem_cell("ours")
    if "timeout" in rss:
        mem.floor = mem_cell("timeout")
    if "1.7" in rss:
        mem.v17 = mem_cell("1.7")
    mem.met = rss["ours"] / bare <= 1.5
    mem.notes.append(
        "VmRSS of the launcher at the end of the quiet window; "
        "the bare interpreter is `python3 -c 'import time; time.sleep(N)'`"
    )
    mem.raw = {"rss_kib": rss}
    return cpu, mem


# -- 12. control --feedback: incremental ---------------------------------------------------------------
_FEED_LINES = (
    "[progress]{i}\n[phase]step {i} of the campaign\n# checkpoint {i}\n[heartbeat]\n"
    "[detail]processing item {i}, nothing to report\n"
)


def feedback_block() -> bytes:
    """About 1 MB of varied feedback lines (files are made of copies of it)."""
    return (
        "".join(_FEED_LINES.format(i=i) for i in range(9000)).encode()[: 1 << 20].rsplit(b"\n", 1)[0] + b"\n"
    )


def write_feedback(path: str, size: int) -> None:
    block = feedback_block()
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        left = size
        while left > 0:
            piece = block[:left]
            if len(piece) < len(block):
                piece = piece.rsplit(b"\n", 1)[0] + b"\n" if b"\n" in piece else b"#\n"
            fh.write(piece)
            left -= len(block)
    os.replace(tmp, path)  # a new inode: readers start again from 0


def _feedback_tasks(ctx: Ctx, n: int) -> tuple[str, list[str], list[str]]:
    """``n`` detached tasks with a feedback file the benchmark writes; (db, [file...])."""
    t = ctx.tools
    db = ctx.path("feedback.db")
    dbgen.create_ours(t, db)
    feed = ctx.fresh_dir("feedfiles")
    ids = [
        run(
            [
                *t.ours,
                "launch",
                "--db",
                db,
                "--detach",
                "--name",
                "bench-feedback",
                "--feedpath",
                feed,
                "--",
                "sleep",
                "3600",
            ]
        ).strip()
        for _ in range(n)
    ]
    ctx.cleanups.append(
        lambda: run([*t.ours, "control", "--db", db, "--killall", "bench-feedback"], ok=(0, 4))
    )
    return db, ids, [os.path.join(feed, f"feedback_{i}.log") for i in ids]


def feedback_increment(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    big = s.feedback_big
    f = Figure(
        "feedback",
        f"`control --feedback` after one appended line, {mib(big)} file",
        "the same on a 1 kB file",
        "≤ 1.5x",
    )
    db, ids, files = _feedback_tasks(ctx, 2)
    ctx["feedback_task"] = (db, ids[1], files[1])
    write_feedback(files[0], 1 << 10)
    write_feedback(files[1], big)
    for i in ids:
        run([*t.ours, "control", "--db", db, "--feedback", i])  # the first, whole read: untimed here
    counter = [0]

    def after_line(i: str, path: str) -> float:
        counter[0] += 1
        with open(path, "a") as fh:
            fh.write(f"[progress]{counter[0]}\n")
        return wall([*t.ours, "control", "--db", db, "--feedback", i])

    sm = interleaved(
        {"1 kB": lambda: after_line(ids[0], files[0]), mib(big): lambda: after_line(ids[1], files[1])}, s.reps
    )
    got = json.loads(run([*t.ours, "control", "--db", db, "--feedback", ids[1]]))
    if got.get("progress") != str(counter[0]):
        raise BenchError(f"--feedback did not see the appended line: {got}")
    small, large = median(sm["1 kB"]), median(sm[mib(big)])
    f.ours = with_spread(ratio_cell(large, small), sm[mib(big)])
    f.v17 = Cell(None, "no such command")
    f.notes.append("1.7 parses `task --feedback ID` but does nothing with it")
    f.met = large / small <= 1.5
    f.raw = sm
    return f


def feedback_scaling(ctx: Ctx) -> None:
    """For the plot: --feedback time against the file's size, first read and after one line."""
    t, s = ctx.tools, ctx.sizes
    if "feedback_task" not in ctx:
        feedback_increment(ctx)
    db, tid, path = ctx["feedback_task"]
    rows = []
    for size in s.scale_feedback:
        write_feedback(path, size)
        first = wall([*t.ours, "control", "--db", db, "--feedback", tid])
        incr = []
        for k in range(max(3, s.reps // 3)):
            with open(path, "a") as fh:
                fh.write(f"[progress]{k}\n")
            incr.append(wall([*t.ours, "control", "--db", db, "--feedback", tid]))
        parse = wall([*t.ours, "parse", "--feedback", path]) if size <= (100 << 20) else None
        rows.append({"bytes": size, "first_read": first, "after_one_line": median(incr), "parse": parse})
        log(f"  feedback {mib(size)}: first read {ms(first)}, after one line {ms(median(incr))}")
    ctx.scaling["feedback"] = rows


# -- 13. 50 launches at once ----------------------------------------------------------------------------
def _burst(argvs: list[list[str]], cwd: str | None = None) -> tuple[float, int, list[str]]:
    t0 = time.perf_counter()
    ps = [subprocess.Popen(a, stdin=DEVNULL, stdout=DEVNULL, stderr=subprocess.PIPE, cwd=cwd) for a in argvs]
    errs = [p.communicate()[1].decode(errors="replace").strip() for p in ps]
    dt = time.perf_counter() - t0
    ok = sum(p.returncode == 0 for p in ps)
    return dt, ok, [e for p, e in zip(ps, errs, strict=True) if p.returncode != 0]


def burst(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    n = s.launches
    f = Figure(
        "burst", f"{n} launches started at once (`launch -- true`)", "—", f"{n}/{n} succeed, ≥ 20 tasks/s"
    )
    sm: dict[str, Any] = {}

    def measure(label: str, make_db: Callable[[], str], argv: Callable[[str, int], list[str]], reps: int,
                cwd: str | None = None, rows: Callable[[str], int] | None = None) -> Cell:  # fmt: skip
        walls, worst, errors = [], n, []
        for _ in range(reps):
            db = make_db()
            before = rows(db) if rows else 0
            dt, ok, errs = _burst([argv(db, k) for k in range(n)], cwd)
            if rows:
                ok = min(ok, rows(db) - before)
            walls.append(dt)
            worst = min(worst, ok)
            errors += errs
        sm[label] = {"walls": walls, "least_succeeded": worst, "errors": errors[:5]}
        m = median(walls)
        return Cell(n / m if worst == n else 0.0, f"{worst}/{n} ok, {n / m:.1f} tasks/s ({ms(m)})")

    def ours_db() -> str:
        db = ctx.fresh_dir("burst") + "/burst.db"
        dbgen.create_ours(t, db)
        return db

    f.ours = measure(
        "ours",
        ours_db,
        lambda db, k: [*t.ours, "launch", "--db", db, "--", "true"],
        s.slow_reps,
        rows=lambda db: dbgen.count(db, "history"),
    )
    f.ours = with_spread(f.ours, sm["ours"]["walls"])
    if t.timeout:
        f.floor = measure("timeout", lambda: "", lambda db, k: [t.timeout, "10", "true"], s.slow_reps)
    if ctx.slow_17:
        ids17: list[int] = []

        def db17() -> str:
            db = ctx.fresh_dir("burst17") + "/burst17.db"
            dbgen.create_17(t, db)
            ids17[:] = dbgen.add_17_tasks(db, n, 0)
            return db

        f.v17 = measure(
            "1.7",
            db17,
            lambda db, k: [*t.v17("launch"), "--db", db, "--taskid", str(ids17[k]), "--", "true"],
            1,
            cwd=t.scratch,
            rows=lambda db: dbgen.count(db, "history"),
        )
        f.notes.append(
            "1.7: its reservations inserted beforehand (as `task --reserve` writes them); one round"
        )
    # The ceiling any Python launcher has here: the same burst of bare interpreters.
    measure("python", lambda: "", lambda db, k: [t.python, "-c", "pass"], s.slow_reps)
    bare = n / median(sm["python"]["walls"])
    f.notes.append(
        f"{n} `python -c pass` at once, the same way: {bare:.1f} a second"
        f" ({spread(sm['python']['walls'], ms)}): a launch is ~4x their instructions"
    )
    f.notes.append(
        "success: exit 0 and a history row for each; tasks/s = launches / wall time until the last exits"
    )
    f.met = sm["ours"]["least_succeeded"] == n and n / median(sm["ours"]["walls"]) >= 20
    f.raw = sm
    return f


# -- 14. a chatty task's output, relayed and logged --------------------------------------------------------
def output_relay(ctx: Ctx) -> Figure:
    t, s = ctx.tools, ctx.sizes
    size = s.parse_bytes
    f = Figure(
        "output",
        f"`launch -- cat FILE | cat`, {mib(size)} of output relayed and logged",
        "`cat FILE | tee LOG | cat` (the same copies, in C)",
        "≤ 2x",  # a Python relay against C's tee, the launcher's start-up (~70 ms) included
    )
    data = ctx.path("output.bin")
    with open(data, "wb") as fh:
        for _ in range(size >> 20 or 1):
            fh.write(os.urandom(1 << 20))
    db = ctx.path("output.db")
    dbgen.create_ours(t, db)
    tee_log, our_log = ctx.path("tee.log"), ctx.path("ours.log")
    ours = " ".join([*t.ours, "launch", "--db", db, "--log", our_log, "--log-max", "4G", "--", "cat", data])
    sm = interleaved(
        {
            "tee": lambda: wall(
                ["sh", "-c", f"rm -f {tee_log}; cat {data} | tee {tee_log} | cat > /dev/null"]
            ),
            "ours": lambda: wall(["sh", "-c", f"rm -f {our_log}; {ours} | cat > /dev/null"]),
        },
        s.slow_reps + 2,
    )
    if os.path.getsize(our_log) != os.path.getsize(data):
        raise BenchError(f"the task's log has {os.path.getsize(our_log)} bytes of {os.path.getsize(data)}")
    f.ours = with_spread(ratio_cell(median(sm["ours"]), median(sm["tee"])), sm["ours"])
    f.notes.append(
        "the launcher reads the task's pipe, writes each chunk to the task's log and to its own "
        "stdout (here a pipe); each repetition writes its log anew, tee's too"
    )
    f.met = f.ours.value <= 2
    f.raw = sm
    return f


# -- the plot's other half: --list and --history against history size -----------------------------------
def history_scaling(ctx: Ctx) -> None:
    t, s = ctx.tools, ctx.sizes
    db = ctx.path("scale.db")
    dbgen.create_ours(t, db)
    dbgen.add_ours_reservations(db, s.tasks)
    db17 = None
    if ctx.with_17:
        db17 = ctx.path("scale17.db")
        dbgen.create_17(t, db17)
        dbgen.add_17_tasks(db17, s.tasks, 0)
    have, rows = 0, []
    for size in s.scale_history:
        dbgen.add_ours_history(db, size - have)
        if db17:
            dbgen.add_17_history(db17, size - have)
        have = size
        cases = {
            "ours list": lambda: wall([*t.ours, "control", "--db", db, "--list", "--json"]),
            "ours history": lambda: wall([*t.ours, "control", "--db", db, "--history", "--json"]),
        }
        if db17:
            cases["1.7 list"] = lambda: wall(
                [*t.v17("control"), "--db", db17, "task", "--list", "--json"], cwd=t.scratch
            )
            cases["1.7 history"] = lambda: wall(
                [*t.v17("control"), "--db", db17, "history", "--list"], cwd=t.scratch
            )
        reps = 1 if size >= 1_000_000 else (2 if size >= 100_000 or s.quick else 5)
        sm = interleaved(cases, reps, warmup=size < 1_000_000)
        rows.append({"rows": size, **{k: median(v) for k, v in sm.items()}})
        log("  history " + f"{size}: " + ", ".join(f"{k} {ms(median(v))}" for k, v in sm.items()))
    ctx.scaling["history"] = rows


def postgres_figures(ctx: Ctx) -> list[Figure]:
    """PostgreSQL beside SQLite (``--postgres``): benchmarks/postgres.py, run by the measured
    taskwatcher's interpreter (it has psycopg; this one need not), its rows as figures."""
    out = ctx.path("postgres.json")
    argv = [ctx.tools.python, os.path.join(ctx.tools.here, "postgres.py"), "--json", out]
    r = subprocess.run([*argv, *(["--quick"] if ctx.sizes.quick else [])], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(out):
        raise BenchError((r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1])
    with open(out) as fh:
        data = json.load(fh)
    found = []
    for row in data["rows"]:
        f = Figure(row["key"], row["title"], "SQLite, same run", "")
        f.ours = Cell(None, f"PostgreSQL {row['postgres']}; SQLite {row['sqlite']}")
        f.raw = {"sqlite/postgres": row["raw"]}
        found.append(f)
    if found:
        found[0].notes.append(f"load average at the end of the PostgreSQL figures: {data['load'][0]:.1f}")
    return found
