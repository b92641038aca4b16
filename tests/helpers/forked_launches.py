"""Many `taskwatcher launch` commands at once from one host, as cheaply as can be.

Usage: forked_launches.py LAUNCHES.json OUTDIR [GO]
LAUNCHES.json is a list of [index, argv] (argv: what follows `taskwatcher`). This process
imports taskwatcher once (everything a launch imports), then forks one child per launch,
all at once; each child runs the CLI's own main() on its argv, with its stderr in
OUTDIR/INDEX.err, and exits with main()'s exit status, written to OUTDIR/INDEX.rc. No
connection is opened before the forks: each launch connects on its own, as a separate
`taskwatcher launch` would. What is saved is the interpreter's start-up and the imports
(a launch's CPU is nearly all that), not any step of the launch itself.
The launches run at the lowest priority (nice 19). With GO, it writes LAUNCHES.json.ready
once imported and forks when GO exists, so that
several hosts fork at the same moment.
"""

import json
import os
import sys
import time

import taskwatcher.cli as cli

with open(sys.argv[1]) as f:
    launches = json.load(f)
out = sys.argv[2]
if len(sys.argv) > 3:
    with open(sys.argv[1] + ".ready", "w"):
        pass
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.001)  # a start line for every host, not a synchronisation of the launches
# The launches race each other, not the rest of the machine: at the lowest priority, the
# other tests running meanwhile (on other workers) are not starved of the CPU for as long as
# 200 launches take on 2 cores (a command of theirs waited 30 s once).
os.nice(19)
children = {}
for index, argv in launches:
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.path.join(out, f"{index}.err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    children[pid] = index
while children:
    pid, status = os.wait()
    index = children.pop(pid, None)
    if index is None:
        continue  # an orphan reparented to this process (pid 1 of its namespace)
    with open(os.path.join(out, f"{index}.rc"), "w") as f:
        f.write(f"{os.waitstatus_to_exitcode(status)}\n")
