"""The scaling plot: --list and --history against history size, --feedback against file size."""

from __future__ import annotations

from statistics import median
from typing import Any


def plot(scaling: dict[str, Any], python_pass: float | None, out: str, title: str) -> bool:
    """Write the PNG; False if matplotlib is not there (the table does not need it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    hist = scaling.get("history", [])
    if hist:
        xs = [r["rows"] for r in hist]
        styles = {
            "ours list": ("C0", "-", "o", "ours `control --list --json`"),
            "ours history": ("C1", "-", "s", "ours `control --history --json`"),
            "1.7 list": ("C0", ":", "o", "1.7 `task --list --json`"),
            "1.7 history": ("C1", ":", "s", "1.7 `history --list`"),
        }
        for key, (color, ls, marker, label) in styles.items():
            if key in hist[0]:
                left.plot(xs, [r[key] * 1000 for r in hist], color=color, ls=ls, marker=marker, label=label)
        if python_pass:
            left.axhline(python_pass * 1000, color="grey", ls="--", lw=1, label="`python3 -c pass`")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("history rows (plus 200 reserved tasks)")
        left.set_ylabel("wall time per command (ms, median)")
        left.set_title("--list and --history against history size")
        left.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
    feed = scaling.get("feedback", [])
    if feed:
        xs = [r["bytes"] for r in feed]
        right.plot(
            xs,
            [r["after_one_line"] * 1000 for r in feed],
            "C2-o",
            label="`control --feedback` after one appended line",
        )
        right.plot(
            xs,
            [r["first_read"] * 1000 for r in feed],
            "C3-s",
            label="`control --feedback`, first read of the file",
        )
        if all(r.get("parse") for r in feed):
            right.plot(xs, [r["parse"] * 1000 for r in feed], "C4:^", label="`parse --feedback FILE`")
        if python_pass:
            right.axhline(python_pass * 1000, color="grey", ls="--", lw=1, label="`python3 -c pass`")
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("feedback file size (bytes)")
        right.set_ylabel("wall time per command (ms, median)")
        right.set_title("--feedback against feedback file size (ours; 1.7 has none)")
        right.grid(True, which="both", alpha=0.3)
        right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_peers(rows: list[dict[str, Any]], out: str, title: str) -> bool:
    """Ours, task-spooler and supervisord against N quiet tasks: memory, CPU, listing, stopping."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = [r["n"] for r in rows]
    names = [name for name in ("ours", "task-spooler", "supervisord") if name in rows[0]["memory_kib"]]
    panels = [
        ("supervisor memory per task (USS, MB)", lambda r, k: r["memory_kib"][k] / 1024 / r["n"]),
        ("supervisor CPU while quiet (ms per minute)", lambda r, k: r["cpu_ms_per_min"][k]),
        (
            "one listing: client instructions (M)",
            lambda r, k: median(r["list"][k]["client instructions"]) / 1e6,
        ),
        ("time to stop all (ms)", lambda r, k: r["stop_s"][k] * 1000),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
    for ax, (label, value) in zip(axes, panels, strict=True):
        for color, name in zip(("C0", "C1", "C2"), names, strict=False):
            ax.plot(ns, [value(r, name) for r in rows], color=color, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.1)  # a log scale that still shows 0 (no CPU at all)
        ax.set_ylim(bottom=0)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N quiet tasks")
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":  # redraw a saved run: plot.py results/latest.json scaling.png [peers.png]
    import json
    import sys

    with open(sys.argv[1]) as fh:
        saved = json.load(fh)
    m = saved["machine"]
    launch = [f for f in saved["figures"] if f["key"] == "launch"]
    base = median(launch[0]["raw"]["python -c pass"]) if launch else None
    title = (
        f"{m['taskwatcher (ours)']} vs taskwatcher 1.7 — {m['date']}, {m['nproc']} CPUs, Python {m['python']}"
    )
    plot(saved["scaling"], base, sys.argv[2], title)
    if len(sys.argv) > 3 and saved["scaling"].get("peers"):  # plot.py latest.json scaling.png peers.png
        plot_peers(saved["scaling"]["peers"], sys.argv[3], f"{m['taskwatcher (ours)']}, task-spooler, "
                   f"supervisord — {m['date']}, {m['nproc']} CPUs")  # fmt: skip
