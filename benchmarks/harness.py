"""benchmarks/run: every figure of BENCHMARKS.md, ours beside taskwatcher 1.7's and timeout(1)'s.

Prints a table of ratios against baselines measured in the same run, writes it
with the raw samples to benchmarks/results/, and draws the scaling plot.
Benchmarks are not tests: nothing here fails on a slow figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict

import figures
import instructions
import peers
import serve
from common import FULL, QUICK, BenchError, Tools, log, machine, median
from figures import Cell, Ctx, Figure
from plot import plot, plot_peers

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = [
    # in instructions and private memory
    "list",
    "reserve",
    "launch",
    "parse",
    "memory",
    "history-constant",
    "retention",
    "peers",
    # in time, where time is the point
    "history",
    "tables",
    "timeout",
    "exit",
    "quiet",
    "feedback",
    "burst",
    "output",
    "scaling",
    "web",
    "postgres",  # only with --postgres (or --only postgres): a private PostgreSQL cluster
]
# The goals, in the order the table gives them: figure keys.
GOALS = [
    "list",
    "reserve",
    "launch",
    "memory",
    "history-last",
    "history-since",
    "retention-keep",
    "retention-max_age",
    "parse",
    "burst",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes, one or three rounds: keeps the harness working"
    )
    p.add_argument("--no-1.7", dest="with_17", action="store_false", help="skip taskwatcher 1.7")
    p.add_argument("--only", nargs="+", choices=ORDER, help="run these figures only")
    p.add_argument(
        "--postgres", action="store_true", help="also PostgreSQL beside SQLite (a private cluster of its own)"
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (databases, files)")
    p.add_argument("--ours", required=True, help="the `taskwatcher` console script to measure")
    p.add_argument("--python", required=True, help="its environment's python (for the baselines)")
    p.add_argument("--v17-python", default="", help="python of an environment with taskwatcher 1.7")
    return p.parse_args()


def version_of(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main() -> int:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    # Measure programs as installed programs run: with their bytecode cached. This machine's
    # environment sets PYTHONDONTWRITEBYTECODE, which would make every taskwatcher command
    # compile its modules from source (~30 ms); pip-installed 1.7 has its .pyc files. The
    # cache goes to a folder of ours, not into src/.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(HERE, ".pycache")
    source_before = source_state()
    scratch = tempfile.mkdtemp(prefix="twbench-")
    # No configuration file but the ones a figure writes: the user's own would change launches.
    os.environ["XDG_CONFIG_HOME"] = os.path.join(scratch, "no-config")
    os.environ.pop("TASKWATCHER_CONFIG", None)
    os.environ["MPLCONFIGDIR"] = os.path.join(HERE, ".pycache", "matplotlib")  # not in the scratch folder
    tools = Tools(
        ours=[args.ours],
        python=args.python,
        v17_python=args.v17_python or None,
        timeout=shutil.which("timeout"),
        scratch=scratch,
        here=HERE,
        harness_python=sys.executable,
    )
    ctx = Ctx(tools, sizes, args.with_17)
    info = machine()
    info["python"] = f"{platform.python_implementation()} " + version_of(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"]
    )
    info["taskwatcher (ours)"] = version_of([args.ours, "--version"])
    info["taskwatcher 1.7"] = (
        version_of([args.v17_python, "-c", "import importlib.metadata as m; print(m.version('taskwatcher'))"])
        if ctx.with_17
        else "not measured"
    )
    info["mode"] = (
        "quick (tiny sizes, not for the record; 1.7's launches, 3 s each, skipped)" if args.quick else "full"
    )
    for k, v in info.items():
        log(f"{k}: {v}")

    wanted = list(args.only or [k for k in ORDER if k != "postgres"])
    if args.postgres and "postgres" not in wanted:
        wanted.append("postgres")
    results: list[Figure] = []
    failures: dict[str, str] = {}
    started = time.monotonic()
    steps = {
        "list": lambda: [instructions.list_instr(ctx)],
        "reserve": lambda: [instructions.reserve_instr(ctx)],
        "launch": lambda: [instructions.launch_instr(ctx)],
        "parse": lambda: [instructions.parse_instr(ctx)],
        "memory": lambda: [instructions.launcher_memory(ctx)],
        "history-constant": lambda: instructions.history_constant(ctx),
        "retention": lambda: instructions.retention_launch(ctx),
        "peers": lambda: peers.peer_scaling(ctx),
        "history": lambda: [figures.history_json(ctx)],
        "tables": lambda: [figures.history_table(ctx)],
        "timeout": lambda: [figures.timeout_fires(ctx)],
        "exit": lambda: [figures.exit_noticed(ctx)],
        "quiet": lambda: [figures.quiet_launchers(ctx)[0]],  # its CPU (memory: "memory", in USS)
        "feedback": lambda: [figures.feedback_increment(ctx)],
        "burst": lambda: [figures.burst(ctx)],
        "output": lambda: [figures.output_relay(ctx)],
        "scaling": lambda: (figures.history_scaling(ctx), figures.feedback_scaling(ctx), [])[-1],
        "web": lambda: serve.web_figures(ctx),
        "postgres": lambda: figures.postgres_figures(ctx),
    }
    try:
        for key in ORDER:
            if key not in wanted:
                continue
            log(f"{key} ...")
            t0 = time.monotonic()
            try:
                results += steps[key]()
            except (BenchError, OSError, subprocess.SubprocessError, ValueError) as e:
                failures[key] = f"{type(e).__name__}: {e}"
                log(f"{key} FAILED: {e}")
                if os.environ.get("BENCH_DEBUG"):
                    traceback.print_exc()
            log(f"{key} done in {time.monotonic() - t0:.1f} s")
    finally:
        for clean in reversed(ctx.cleanups):
            try:
                clean()
            except Exception as e:  # a cleanup failing must not hide the results
                log(f"cleanup: {e}")
        if args.keep:
            log(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    info["run took"] = f"{time.monotonic() - started:.0f} s"
    info["source"] = source_before[0]
    if source_state()[1] != source_before[1]:
        info["source"] += " — WARNING: src/ changed during the run, figures mix versions"
        log(info["source"])

    fill_peer_columns(results, ctx)
    table = render(results, failures, info)
    print(table)
    out_dir = os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as fh:
        fh.write(table + "\n")
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as fh:
        json.dump(
            {
                "machine": info,
                "figures": [asdict(f) for f in results],
                "failures": failures,
                "scaling": ctx.scaling,
            },
            fh,
            indent=1,
            default=str,
        )
    if ctx.scaling.get("history") or ctx.scaling.get("feedback"):
        png = (
            os.path.join(HERE, "scaling.png")
            if not args.quick and not args.only
            else os.path.join(out_dir, f"{stem}-scaling.png")
        )
        title = (
            f"{info['taskwatcher (ours)']} vs taskwatcher 1.7 — {info['date']}, "
            f"{info['nproc']} CPUs, Python {info['python']}"
        )
        if plot(ctx.scaling, ctx.get("python_pass"), png, title):
            log(f"plot: {png}")
        else:
            log("no plot: matplotlib is not installed")
    if ctx.scaling.get("peers"):
        png = (
            os.path.join(HERE, "peers.png")
            if not args.quick and not args.only
            else os.path.join(out_dir, f"{stem}-peers.png")
        )
        title = (
            f"{info['taskwatcher (ours)']}, task-spooler, supervisord — {info['date']}, {info['nproc']} CPUs"
        )
        if plot_peers(ctx.scaling["peers"], png, title):
            log(f"plot: {png}")
    log(f"results: {out_dir}/{stem}.md, {stem}.json")
    return 0


def source_state() -> tuple[str, str]:
    """The measured source: git commit and changed files, and a digest of src/."""
    repo = os.path.dirname(HERE)
    src = os.path.join(repo, "src", "taskwatcher")
    digest = hashlib.sha256()
    for name in sorted(os.listdir(src)) if os.path.isdir(src) else []:
        if name.endswith(".py"):
            with open(os.path.join(src, name), "rb") as fh:
                digest.update(name.encode() + fh.read())
    head = version_of(["git", "-C", repo, "rev-parse", "--short", "HEAD"]) or "?"
    status = version_of(["git", "-C", repo, "status", "--porcelain", "--", "src"])
    dirty = [line.split(maxsplit=1)[1] for line in status.splitlines() if line.strip()]
    text = f"git {head}" + (f" + uncommitted {', '.join(dirty)}" if dirty else "")
    return text, digest.hexdigest()


def fill_peer_columns(results: list[Figure], ctx: Ctx) -> None:
    """The goals table's peer columns, from the side-by-side run at its largest N."""
    rows = ctx.scaling.get("peers")
    if not rows:
        return
    top = rows[-1]
    by_key = {f.key: f for f in results}
    if "list" in by_key and "pass_instr" in ctx:
        base = median(ctx["pass_instr"])
        for name, cost in top["list"].items():
            if name == "ours":
                continue
            x = median(cost["client instructions"])
            command = "tsp -l" if name == "task-spooler" else "supervisorctl status"
            by_key["list"].peers[name] = Cell(
                x / base,
                f"{x / base:.2f}x, N={top['n']} (`{command}` client; "
                f"its server {median(cost['server ms']):.1f} ms CPU)",
            )
    if "memory" in by_key:
        bare = median([u for u, _ in by_key["memory"].raw["bare uss/pss kib"]])
        for name in ("task-spooler", "supervisord"):
            per = peers.per_task_uss(ctx, name)
            if per is not None:
                by_key["memory"].peers[name] = Cell(
                    per / bare, f"{per / bare:.2f}x ({per / 1024:.2f} MB per task, N={top['n']})"
                )


def render(results: list[Figure], failures: dict[str, str], info: dict[str, str]) -> str:
    met = {True: "met", False: "**NOT met**", None: "?"}
    by_key = {f.key: f for f in results}
    lines = [
        "machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "### Goals",
        "",
        "| figure | baseline | goal | ours (min / median / max) | goal | floor | task-spooler"
        " | supervisord |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in GOALS:
        f = by_key.get(key)
        if f is None:
            lines.append(f"| {key} | | | not in this run | ? | | | |")  # --only, or it failed (below)
            continue
        cells = [f.peers.get(p, Cell(None, "—")).text for p in ("task-spooler", "supervisord")]
        lines.append(
            f"| {f.title} | {f.baseline} | {f.goal} | {f.ours.text} | {met[f.met]} | {f.floor.text} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "### Every other figure",
        "",
        "| figure | baseline, same run | goal | ours | goal | taskwatcher 1.7 | floor | task-spooler"
        " | supervisord |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in results:
        if f.key in GOALS:
            continue
        cells = [f.peers.get(p, Cell(None, "—")).text for p in ("task-spooler", "supervisord")]
        verdict = met[f.met] if f.goal else "—"  # a figure without a goal (PostgreSQL beside SQLite)
        lines.append(
            f"| {f.title} | {f.baseline} | {f.goal} | {f.ours.text} | {verdict} | {f.v17.text} | "
            f"{f.floor.text} | " + " | ".join(cells) + " |"
        )
    for key, why in failures.items():
        lines.append(f"| {key} | | | not measured: {why} | ? | | | | |")
    notes = [f"- {f.key}: {n}" for f in results for n in f.notes]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
