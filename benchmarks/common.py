"""What every figure needs: the tools under test, timing a command, medians, /proc readings."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DEVNULL = subprocess.DEVNULL


class BenchError(RuntimeError):
    """A command under measurement did not do what it should: the figure is void."""


@dataclass
class Tools:
    """The commands under test, as argv prefixes."""

    ours: list[str]  # the `taskwatcher` console script of the project
    python: str  # the interpreter of the project's environment: `python -c pass` and friends
    v17_python: str | None  # an environment with taskwatcher 1.7 (None: not available)
    timeout: str | None  # coreutils timeout(1)
    scratch: str  # a folder for databases, feedback files and 1.7's debug.log
    here: str  # the benchmarks folder (helper scripts)
    harness_python: str  # benchmarks/.venv's python: supervisord is installed beside it

    def v17(self, module: str) -> list[str]:
        assert self.v17_python
        return [self.v17_python, "-m", f"taskwatcher.{module}"]

    def script(self, name: str) -> str:
        return os.path.join(self.here, "scripts", name)


@dataclass
class Sizes:
    """How big each figure is: the full run, or --quick."""

    quick: bool
    reps: int
    slow_reps: int  # for commands that take seconds (1.7's launches, big files)
    history_rows: int  # for --list and --history (the issue: 50k)
    tasks: int  # rows in `tasks` for --list (the issue: 200)
    running: int  # of which really running
    feedback_big: int  # bytes (the issue: 50 MB)
    launches: int  # started at once (the issue: 50)
    parse_bytes: int  # (the issue: 100 MB)
    parse_bytes_17: int  # 1.7 logs every line to ./debug.log: a smaller file keeps it in minutes
    quiet_window: float  # seconds of CPU watching (scaled to a minute)
    instr_reps: int  # callgrind runs per command: instruction counts repeat to a fraction of a percent
    running_tasks: int  # real running tasks behind `--list` in instructions (the issue: 200)
    parse_instr_bytes: int  # the feedback file `parse` reads under callgrind (it runs ~50x slower)
    constant_history: list[int]  # history sizes for `--last 10` / `--since 1h` (the issue: 1k to 1M)
    peers_n: list[int]  # quiet tasks held by ours, task-spooler and supervisord (the issue: 10, 50, 200)
    peers_window: float  # seconds of CPU watching for the peers (the issue: a minute)
    scale_history: list[int] = field(default_factory=list)
    scale_feedback: list[int] = field(default_factory=list)


FULL = Sizes(
    quick=False,
    reps=15,
    slow_reps=3,
    history_rows=50_000,
    tasks=200,
    running=5,
    feedback_big=50 << 20,
    launches=50,
    parse_bytes=100 << 20,
    parse_bytes_17=2 << 20,
    quiet_window=30.0,
    instr_reps=3,
    running_tasks=200,
    parse_instr_bytes=20 << 20,
    constant_history=[1_000, 10_000, 100_000, 1_000_000],
    peers_n=[10, 50, 200],
    peers_window=60.0,
    scale_history=[1_000, 10_000, 100_000, 1_000_000],
    scale_feedback=[1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20, 100 << 20],
)
QUICK = Sizes(
    quick=True,
    reps=3,
    slow_reps=1,
    history_rows=2_000,
    tasks=200,
    running=2,
    feedback_big=1 << 20,
    launches=5,
    parse_bytes=2 << 20,
    parse_bytes_17=256 << 10,
    quiet_window=3.0,
    instr_reps=1,
    running_tasks=10,
    parse_instr_bytes=1 << 20,
    constant_history=[1_000, 20_000],
    peers_n=[3, 10],
    peers_window=5.0,
    scale_history=[1_000, 10_000],
    scale_feedback=[1 << 10, 100 << 10, 1 << 20],
)


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def run(argv: Sequence[str], *, cwd: str | None = None, ok: Sequence[int] = (0,), **kw) -> str:
    """Run a command for its side effects or output (not timed); its stdout."""
    r = subprocess.run(list(argv), cwd=cwd, stdin=DEVNULL, capture_output=True, text=True, **kw)
    if r.returncode not in ok:
        raise BenchError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.stdout


def wall(argv: Sequence[str], *, cwd: str | None = None, ok: Sequence[int] = (0,)) -> float:
    """Seconds from spawning a command to its exit, output to /dev/null."""
    t0 = time.perf_counter()
    r = subprocess.run(list(argv), cwd=cwd, stdin=DEVNULL, stdout=DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode not in ok:
        raise BenchError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
    return dt


def interleaved(
    cases: dict[str, Callable[[], float]], reps: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Run each case in turn, ``reps`` rounds (after one unrecorded warm-up round).

    Interleaving spreads the machine's noise over every case instead of one.
    """
    if warmup:
        for fn in cases.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(reps):
        for k, fn in cases.items():
            samples[k].append(fn())
    return samples


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# -- /proc -------------------------------------------------------------------------------
def cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of ``pid``, in ns (schedstat; the stat ticks are 10 ms coarse)."""
    total = 0
    tasks = f"/proc/{pid}/task"
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_ticks_ns(pid: int) -> int:
    """utime + stime from /proc/PID/stat, in ns (10 ms resolution): a cross-check of schedstat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    if not m:
        raise BenchError(f"no VmRSS for pid {pid}")
    return int(m.group(1))


def uss_pss_kib(pid: int) -> tuple[int, int]:
    """Private memory (USS: Private_Clean + Private_Dirty) and PSS of ``pid``, in KiB.

    RSS counts the interpreter's shared pages in every process; USS is what one more
    process really costs, PSS its fair share of what it shares.
    """
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", f.read(), re.M))
    return int(fields["Private_Clean"]) + int(fields["Private_Dirty"]), int(fields["Pss"])


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def spread(xs: Sequence[float], fmt: Callable[[float], str]) -> str:
    """min / median / max of the samples, each written by ``fmt``."""
    if len(xs) == 1:
        return f"one run: {fmt(xs[0])}"
    return f"min {fmt(min(xs))} / med {fmt(median(xs))} / max {fmt(max(xs))}"


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def wait_for(cond: Callable[[], object], timeout: float, what: str, step: float = 0.01) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise BenchError(f"timed out waiting for {what}")


def machine() -> dict[str, str]:
    r = subprocess.run(["uname", "-sr"], capture_output=True, text=True)
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            model = m.group(1) if m else ""
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": r.stdout.strip(),
        "loadavg at start": load,
    }
