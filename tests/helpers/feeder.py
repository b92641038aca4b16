"""Task program: write feedback lines to $TASKWATCHER_FEEDBACK.

Usage: feeder.py [KEY=VALUE...] [--every SECONDS --until STOPFILE] [--exit N]
Writes each [KEY]VALUE line first; with --until, appends a heartbeat line
[beat]N every SECONDS until STOPFILE exists. Ends with status N.
"""

import argparse
import os
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("pairs", nargs="*")
p.add_argument("--every", type=float, default=0.1)
p.add_argument("--until")
p.add_argument("--exit", type=int, default=0)
a = p.parse_args()

path = os.environ["TASKWATCHER_FEEDBACK"]


def write(line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


for pair in a.pairs:
    key, _, value = pair.partition("=")
    write(f"[{key}]{value}")
beat = 0
while a.until and not os.path.exists(a.until):
    beat += 1
    write(f"[beat]{beat}")
    time.sleep(a.every)
sys.exit(a.exit)
