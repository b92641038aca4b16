"""A quiet feedback task: one line into the feedback file, then silence.

usage: feeder.py --feedback FILE --sleep SECONDS
(`--feedback` is also how taskwatcher 1.7 learns that a task gives feedback.)
"""

import sys
import time

args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
with open(args["--feedback"], "a") as f:
    f.write("[progress]1\n")
time.sleep(float(args["--sleep"]))
