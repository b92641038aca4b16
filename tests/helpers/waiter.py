"""Task program: wait until a file exists, then exit. Paces a task from the test.

Usage: waiter.py GOFILE [--print TEXT] [--ready FILE] [--ignore-term] [--exit N]
--print writes TEXT to stdout at start; --ready creates FILE once set up (after
--ignore-term has taken effect); --exit is the status to end with.
"""

import argparse
import os
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("go")
p.add_argument("--print", dest="text")
p.add_argument("--ready")
p.add_argument("--ignore-term", action="store_true")
p.add_argument("--exit", type=int, default=0)
a = p.parse_args()

if a.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if a.text is not None:
    print(a.text, flush=True)
if a.ready:
    with open(a.ready, "w") as f:
        f.write(str(os.getpid()))
while not os.path.exists(a.go):
    time.sleep(0.02)
sys.exit(a.exit)
