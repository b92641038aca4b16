"""Run a command (its output to /dev/null) and print its peak resident memory, in KiB.

usage: maxrss.py CMD [ARG...]
Linux keeps a process's peak RSS across exec, so a command forked straight from a
big harness would report the harness's memory: this small process forks it instead.
"""

import os
import sys

pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
