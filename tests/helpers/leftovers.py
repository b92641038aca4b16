"""Task program: leave processes behind that try to escape the stop, then wait or exit.

Usage: leftovers.py LOG COUNT KIND... [--exit]
Each KIND starts one leftover (or, for storm, a forking one):
  double-fork  fork, setsid, fork again: the grandchild is orphaned at once
  setpgid      a child in a process group of its own
  env-i        a child re-run through `env -i` (no TASKWATCHER_TOKEN in its environment)
  ignoring     a child that survives SIGTERM
  spawning     a child that survives SIGTERM and forks a new child when it gets one
  chain        a child whose own child survives SIGTERM while it dies of it (the survivor
               is re-parented to the launcher in the middle of the stop)
  storm        a child that forks a sleeping child every 10 ms
Every leftover appends "ready PID" to LOG once set up and "term PID" when SIGTERM reaches
it; unless it survives SIGTERM, it then exits. Once COUNT leftovers are ready the main
process appends "all ready", then exits 0 with --exit, else waits (60 s at most).
"""

from __future__ import annotations

import os
import signal
import sys
import time

LEFTOVER = "--leftover"


def note(log: str, text: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def leftover(log: str, survive: bool = False, spawn: bool = False, storm: bool = False) -> None:
    """Become a leftover: note SIGTERM (and survive it, or fork on it), live 60 s at most."""

    def on_term(_signum: int, _frame: object) -> None:
        note(log, f"term {os.getpid()}")
        if spawn:  # a fresh program: a forked Python would drop a signal pending at the fork
            os.posix_spawn(sys.executable, [sys.executable, __file__, LEFTOVER, log, "survive"], os.environ)
        if not (survive or spawn):
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    note(log, f"ready {os.getpid()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if storm and os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)
            os._exit(0)
        time.sleep(0.01)
    os._exit(0)


def start(kind: str, log: str) -> None:
    if os.fork():
        return
    try:
        if kind == "double-fork":
            os.setsid()
            if os.fork():
                os._exit(0)
            leftover(log)
        elif kind == "setpgid":
            os.setpgid(0, 0)
            leftover(log)
        elif kind == "env-i":
            os.execv("/usr/bin/env", ["env", "-i", sys.executable, __file__, LEFTOVER, log])
        elif kind == "ignoring":
            leftover(log, survive=True)
        elif kind == "spawning":
            leftover(log, spawn=True)
        elif kind == "chain":
            if os.fork() == 0:
                leftover(log, survive=True)
            time.sleep(60)  # dies of SIGTERM (default action)
        elif kind == "storm":
            leftover(log, survive=True, storm=True)
    finally:
        os._exit(0)


def main() -> None:
    if sys.argv[1] == LEFTOVER:
        leftover(sys.argv[2], survive="survive" in sys.argv[3:])
    log, count, kinds = sys.argv[1], int(sys.argv[2]), [a for a in sys.argv[3:] if a != "--exit"]
    for kind in kinds:
        start(kind, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(log):
            with open(log) as f:
                if sum(line.startswith("ready ") for line in f) >= count:
                    break
        time.sleep(0.01)
    note(log, "all ready")
    if "--exit" in sys.argv:
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(60)


main()
