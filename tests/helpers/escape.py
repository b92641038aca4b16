"""Task program: start a child that leaves the process group with setsid(), then wait.

Usage: escape.py PIDFILE [--then-exit]
The escaped child writes its pid to PIDFILE and sleeps; the parent sleeps too,
or with --then-exit exits 0 once PIDFILE is written (the child is orphaned).
"""

import os
import sys
import time

pidfile = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.setsid()
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    time.sleep(300)
    os._exit(0)
if "--then-exit" in sys.argv[2:]:
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    sys.exit(0)
time.sleep(300)
