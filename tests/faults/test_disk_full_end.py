"""The disk full at the task's end: the database locked past the busy timeout sends the end to
the pending folder, and that folder's filesystem is full (a real tmpfs filled to its last block).
The end is not lost: the database is tried once more, then the end is said on stderr in one line;
the launcher exits with the command's own status and leaves no half-written file."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import wait_for
from faults import osfaults
from support import kill_own_processes, reaper, running_task  # noqa: F401  (reaper: an autouse fixture)


def test_an_end_that_neither_the_database_nor_a_full_disk_takes_is_said_on_stderr(tw, tmp_path):
    if osfaults.mount_problem():
        pytest.skip(f"NOT TESTED: {osfaults.mount_problem()}")
    pending = tmp_path / "tw-pending"  # beside the database tw.db
    pending.mkdir()
    go = tmp_path / "go"
    tw.env["TASKWATCHER_BUSY_TIMEOUT"] = "0.3"
    with osfaults.tmpfs(pending, "64k"):
        osfaults.fill(pending)
        proc = tw.popen("launch", "--", "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 7")
        try:
            taskid, _ = running_task(tw)
            lock = sqlite3.connect(tw.db, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")  # no write gets through until the launcher has given up
            try:
                go.touch()
                _, err = proc.communicate(timeout=20)
            finally:
                lock.rollback()
                lock.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 7, err  # the command's own status, not 125
        assert "Traceback" not in err and "internal error" not in err, err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"taskwatcher: task {taskid} ended but its end could not be recorded (")
        assert "No space left on device" in line
        end = json.loads(line[line.index("): {") + 3 :])  # the end as history would hold it
        assert end == {"termsignal": "", "termerror": "exit code 7", "exitcode": 7, "feedback": {}}
        assert sorted(p.name for p in pending.iterdir()) == ["filler"]  # no .tmp left behind
    # once the database is free again, the next command archives the row (its launcher is gone)
    wait_for(lambda: tw.history_of(taskid), 10, "the row archived by the next command")
