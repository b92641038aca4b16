"""Big databases, fast: the schema from the real CLI, then rows bulk-inserted with sqlite3.

The rows copy the column sets each version writes itself:
- taskwatcher 2: ``Store.reserve`` (a reservation) and ``Store.archive`` (a history row),
  src/taskwatcher/store.py;
- taskwatcher 1.7: ``Database.reserve_task``, ``Launch._move_task_to_status_running``
  and ``Launch._remove_running_task`` (taskwatcher/database.py, launch.py of 1.7).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator

from common import Tools, run

CHUNK = 20_000
_REASONS = [  # (termsignal, termerror, exitcode): mostly clean exits, as in real use
    *[("", "", 0)] * 16,
    ("", "exit code 1", 1),
    ("", "exit code 2", 2),
    ("SIGTERM", "timeout: no feedback for 30 s", 124),
    ("SIGTERM", "killed by request", None),
]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


# -- taskwatcher 2 -----------------------------------------------------------------------------
def create_ours(tools: Tools, path: str) -> None:
    """A database made by the CLI itself (schema, version, WAL)."""
    run([*tools.ours, "control", "--db", path, "--update"])  # a write: reads create no database


def _ours_history_rows(first_taskid: int, n: int, host: str) -> Iterator[tuple]:
    t0 = int(time.time()) - 30 * 86400
    for i in range(n):
        taskid = first_taskid + i
        sig, err, code = _REASONS[i % len(_REASONS)]
        start = t0 + i * 2
        dur = 5 + i % 600
        feedback = json.dumps({"progress": "100", "phase": f"step {i % 7}", "result": "ok"})
        command = json.dumps(["python3", "job.py", "--run", str(taskid), "--feedback", f"/tmp/f/{taskid}"])
        yield (
            taskid, f"job{i % 13}", f"campaign {i % 50}", f"host-{i % 9}", None, sig, err,
            start, start + dur, dur, feedback, code, 10_000 + i % 50_000, host, command, None,
            start, 30.0,
        )  # fmt: skip


def add_ours_history(path: str, n: int) -> None:
    """Append ``n`` history rows, with task ids no task has had; later ids follow them."""
    conn = _connect(path)
    with conn:
        conn.execute("BEGIN")
        top = conn.execute(
            "SELECT max(coalesce((SELECT max(taskid) FROM history), 0),"
            " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0))"
        ).fetchone()[0]
        rows = _ours_history_rows(top + 1, n, socket.gethostname())
        while chunk := [r for _, r in zip(range(CHUNK), rows, strict=False)]:
            conn.executemany(
                "INSERT INTO history (taskid, taskname, info1, info2, info3, termsignal, termerror,"
                " starttime, endtime, duration, feedback, exitcode, pid, host, command, logfile,"
                " reservetime, timeout) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                chunk,
            )
        _bump_sequence(conn, top + n)
        conn.execute("COMMIT")
    conn.close()


def _bump_sequence(conn: sqlite3.Connection, top: int) -> None:
    if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'tasks'").fetchone():
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'tasks'", (top,))
    else:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('tasks', ?)", (top,))


def add_ours_reservations(path: str, n: int) -> None:
    """``n`` reservations as ``control --reserve`` makes them, held for a day (never expire here)."""
    conn = _connect(path)
    t = time.time()
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO tasks (name, info1, info2, info3, status, reservetime, expiretime, uniq)"
            " VALUES (?, ?, ?, ?, 'RESERVED', ?, ?, 0)",
            [(f"queued{i % 11}", f"campaign {i}", None, None, int(t), t + 86400) for i in range(n)],
        )
        conn.execute("COMMIT")
    conn.close()


def count(path: str, table: str) -> int:
    conn = _connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# -- taskwatcher 1.7 ---------------------------------------------------------------------------
def create_17(tools: Tools, path: str) -> None:
    run([*tools.v17("control"), "--db", path, "database", "--initialize"], cwd=tools.scratch)


def add_17_history(path: str, n: int) -> None:
    conn = _connect(path)
    t0 = int(time.time()) - 30 * 86400
    with conn:
        conn.execute("BEGIN")
        top = conn.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0]

        def rows() -> Iterator[tuple]:
            for i in range(n):
                start, dur = t0 + i * 2, 5 + i % 600
                yield (str(top + i + 1), f"job{i % 13}", f"campaign {i % 50}", f"host-{i % 9}", None,
                       0, "TBD", start, start + dur, dur, "to be implemented")  # fmt: skip

        it = rows()
        while chunk := [r for _, r in zip(range(CHUNK), it, strict=False)]:
            conn.executemany(
                "INSERT INTO history (taskid, taskname, info1, info2, info3, termsignal, termerror,"
                " starttime, endtime, duration, feedback) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                chunk,
            )
        conn.execute("COMMIT")
    conn.close()


def add_17_tasks(path: str, reserved: int, running: int) -> list[int]:
    """Reservations as 1.7 makes them, and RUNNING rows as its launcher writes them.

    1.7's ``task --list`` only reads the table (it never looks at processes), so
    running rows need no real process behind them. Returns the reserved ids.
    """
    conn = _connect(path)
    t = int(time.time())
    ids = []
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for i in range(reserved):
            cur = conn.execute(
                "INSERT INTO tasks (id, name, status, reservetime) VALUES (?, ?, 'RESERVED', ?)",
                (None, f"queued{i % 11}", t),
            )
            ids.append(int(cur.lastrowid))
        for i in range(running):
            conn.execute(
                "INSERT INTO tasks (id, name, info1, info2, info3, pid, status, feedback, reservetime,"
                " starttime, duration, lastupdate, timeout) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (None, "running", f"campaign {i}", "", "", os.getpid(), "RUNNING", 1, t, t, 0, t, 30),
            )
        conn.execute("COMMIT")
    conn.close()
    return ids
