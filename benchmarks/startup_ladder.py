"""What a command's start-up instructions go to: each module it imports, counted by callgrind.

    benchmarks/.venv/bin/python benchmarks/startup_ladder.py [--depth N] PYTHON SCRIPT [ARG...]
    e.g. startup_ladder.py --depth 1 .venv/bin/python .venv/bin/taskwatcher control --db D --list --json

Run by hand (not by benchmarks/run). The command's imports down to nesting level N (default 0: its own
top-level imports) are read from ``PYTHON -X importtime`` in the order they finish (a
module's imports finish before it), less what `python -c pass` imports already; then
``PYTHON -c "import m1"``, ``"import m1, m2"``, ... are each counted under ``valgrind
--tool=callgrind``, so each step is what one more module costs, its own imports
included (and what earlier steps had loaded not counted twice). The last line is the whole
command: what the imports do not explain is its own work and its shutdown.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile

_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.M)


def instructions(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--trace-children=yes",
                f"--callgrind-out-file={out}/cg.%p",
                *argv,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        total = 0
        for path in glob.glob(f"{out}/cg.*"):
            with open(path, "rb") as fh:
                total += int(_TOTALS.search(fh.read()).group(1))
        return total


def imports(argv: list[str], depth: int) -> list[str]:
    """Modules imported at nesting level ``depth`` or less, in the order their import finished."""
    r = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    names = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$", line)
        if m and len(m.group(1)) // 2 <= depth:
            names.append(m.group(2))
    return names


def main() -> None:
    args = sys.argv[1:]
    depth = 0
    if args[0] == "--depth":
        depth, args = int(args[1]), args[2:]
    python, command = args[0], args[1:]
    floor = set(imports([python, "-X", "importtime", "-c", "pass"], 99))
    wanted = [m for m in imports([python, "-X", "importtime", *command], depth) if m not in floor]
    subprocess.run([python, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm .pyc
    base = previous = instructions([python, "-c", "pass"])
    print(
        "| step | instructions | more than the step before | ÷ `python -c pass` |\n| --- | --- | --- | --- |"
    )
    print(f"| `python -c pass` | {base / 1e6:.1f} M | | 1.00 |")
    for k in range(len(wanted)):
        n = instructions([python, "-c", "import " + ", ".join(wanted[: k + 1])])
        print(f"| + `{wanted[k]}` | {n / 1e6:.1f} M | +{(n - previous) / 1e6:.1f} M | {n / base:.2f} |")
        previous = n
    n = instructions([python, *command])
    what = " ".join(os.path.basename(a) if a.startswith("/") else a for a in command)
    print(f"| the whole `{what}` | {n / 1e6:.1f} M | +{(n - previous) / 1e6:.1f} M | {n / base:.2f} |")


if __name__ == "__main__":
    main()
