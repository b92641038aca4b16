"""How long reading a feedback file of one unterminated line takes, against the same size in lines.

    .venv/bin/python benchmarks/feedback_long_line.py [MEGABYTES]   # default 128

Both files are read twice, as the archive reads them (``final``: the last line counts) and as a
poll does (the unterminated line is left for later); each figure is the best of three, and the
ratio to the file of lines, measured in the same run, is what BENCHMARKS.md reports. A reader
that rebuilt the pending bytes for each 1 MiB block took 10 s for 128 MB against 0.9 s.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from taskwatcher.feedback import FeedbackState, read_increment


def best_of_three(path: str, final: bool) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        read_increment(path, FeedbackState(), final=final)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    size = int(sys.argv[1] if len(sys.argv) > 1 else 128) << 20
    with tempfile.TemporaryDirectory() as scratch:
        lines = os.path.join(scratch, "lines.log")
        with open(lines, "wb") as f:
            line = b"[progress]0123456789\n"
            f.write(line * (size // len(line)))
        one = os.path.join(scratch, "one-line.log")
        with open(one, "wb") as f:
            f.write(b"[big]" + b"x" * (os.path.getsize(lines) - 5))
        print(f"{os.path.getsize(lines) >> 20} MB | lines (s) | one unterminated line (s) | ratio")
        for final in (True, False):
            base, long = best_of_three(lines, final), best_of_three(one, final)
            what = "final (archive)" if final else "poll"
            print(f"{what} | {base:.2f} | {long:.2f} | {long / base:.2f}")


if __name__ == "__main__":
    main()
