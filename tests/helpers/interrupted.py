"""Task program: note the stop signals it receives; on Ctrl-C its own clean-up runs.

Usage: interrupted.py LOG LABEL [--ignore SIGNAME]... [--survive SIGNAME]...
Appends "started LABEL PID" to LOG, then waits (60 s at most). SIGINT comes as
KeyboardInterrupt: "got SIGINT" and, in ``finally``, "cleanup LABEL" are appended,
and Python ends by SIGINT. SIGTERM, SIGHUP or SIGQUIT: "got NAME", then it ends
by that signal. --ignore: that signal is ignored (nothing noted); --survive: noted
("got NAME") and otherwise ignored.
"""

import os
import signal
import sys
import time

log, label = sys.argv[1], sys.argv[2]
ignore = {sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--ignore"}
survive = {sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--survive"}


def note(text: str) -> None:
    with open(log, "a") as f:
        f.write(text + "\n")


def die_by(signum: int, _frame: object) -> None:
    note(f"got {signal.Signals(signum).name}")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(sig, die_by)


def carry_on(signum: int, _frame: object) -> None:
    note(f"got {signal.Signals(signum).name}")


for name in ignore:
    signal.signal(signal.Signals[name], signal.SIG_IGN)
for name in survive:
    signal.signal(signal.Signals[name], carry_on)
try:
    note(f"started {label} {os.getpid()}")  # inside: a Ctrl-C right after it is still caught
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
except KeyboardInterrupt:
    note("got SIGINT")
    raise
finally:
    note(f"cleanup {label}")
