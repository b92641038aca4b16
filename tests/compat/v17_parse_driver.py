"""Run by taskwatcher 1.7's python (not ours): 1.7's own ``python -m taskwatcher.parse``,
its ``__main__`` block and all, in this one process for many files.

Each line on stdin is a JSON file path; each answer, one line on stdout, is the JSON
``[exit status, what 1.7 printed on stdout]`` for ``parse --feedback PATH``. One process
for a whole test: a process per file would cost 1.7's start-up each time.
"""

import contextlib
import io
import json
import runpy
import sys


def parse(path):
    out = io.StringIO()
    status = 0
    sys.argv = ["parse.py", "--feedback", path]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            runpy.run_module("taskwatcher.parse", run_name="__main__")
        except SystemExit as e:  # as the interpreter turns it into an exit status
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # a traceback: exit 1
            status = 1
    return [status, out.getvalue()]


for request in sys.stdin:
    print(json.dumps(parse(json.loads(request))), flush=True)
