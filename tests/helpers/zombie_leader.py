"""Task program: leave a zombie thread-group leader behind (its main thread calls
pthread_exit while another thread lives on: /proc shows Z, its environ reads empty).
The task's main process goes on only once the leftover shows Z.

Usage: zombie_leader.py PIDFILE [--then-exit]
The leftover leaves the task's session (setsid), starts a thread that sleeps 60 s, writes its
pid to PIDFILE and ends its main thread. The task's main process sleeps too, or with
--then-exit exits 0 once PIDFILE is written.
"""

import ctypes
import os
import sys
import threading
import time

pidfile = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    threading.Thread(target=time.sleep, args=(60,)).start()
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    ctypes.CDLL(None).pthread_exit(None)
while not os.path.exists(pidfile):
    time.sleep(0.01)
with open(pidfile) as f:
    leader = f.read()
while True:  # until its main thread has ended: then it is a zombie leader
    with open(f"/proc/{leader}/stat") as f:
        if f.read().rpartition(")")[2].split()[0] == "Z":
            break
    time.sleep(0.01)
if "--then-exit" not in sys.argv[2:]:
    time.sleep(60)
