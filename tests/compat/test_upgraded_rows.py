"""Rows taskwatcher 1.x wrote read like 2.x rows, whether they were in the file before its
upgrade or written afterwards by a 1.7 launcher still running on it (SPEC Part 2,
"taskwatcher 1.x compatibility"). The rows are written with 1.7's own SQL statements."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import pytest

from taskwatcher import control, history
from taskwatcher.store import Store

# taskwatcher 1.7's statements (database.py), as it runs them on whatever file it is given.
RESERVE_1_7 = "INSERT INTO tasks(id, name, status, reservetime) VALUES(?,?,?,?)"
UPDATE_1_7 = (
    "UPDATE tasks SET name=?, info1=?, info2=?, info3=?, pid=?, status=?, feedback=?, reservetime=?,"
    " starttime=?, duration=?, lastupdate=?, timeout=?  WHERE id=?"
)
HISTORY_1_7 = (
    "INSERT INTO history (taskid,taskname,info1,info2,info3,termsignal,termerror,starttime,endtime,"
    "duration,feedback) VALUES(?,?,?,?,?,?,?,?,?,?,?)"
)
SCHEMA_1_7 = (
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT, info1 TEXT, info2 TEXT, info3 TEXT,"
    " pid INTEGER, status TEXT, feedback INTEGER, reservetime INTEGER, starttime INTEGER,"
    " duration INTEGER, lastupdate INTEGER, timeout INTEGER)",
    "CREATE TABLE feedbacks (id INTEGER PRIMARY KEY, feedback BLOB, lastupdate INTEGER)",
    "CREATE TABLE history (id INTEGER PRIMARY KEY, taskid INTEGER, taskname TEXT, info1 TEXT,"
    " info2 TEXT, info3 TEXT, termsignal TEXT, termerror TEXT, starttime INTEGER, endtime INTEGER,"
    " duration INTEGER, feedback BLOB)",
)
# 1.7's history rows: its launcher stored os.waitpid's raw status, "TBD" and "to be implemented".
# (raw status, exitcode, termsignal) as 2.x reads them.
RAW_STATUSES = [("0", 0, ""), ("256", 1, ""), ("768", 3, ""), ("9", 137, "SIGKILL"), ("15", 143, "SIGTERM")]


def one_7(db, *statements: tuple[str, tuple]) -> None:
    """Run statements on the file as 1.7 does: its own connection, a commit after each."""
    c = sqlite3.connect(db)
    try:
        for sql, params in statements:
            c.execute(sql, params)
            c.commit()
    finally:
        c.close()


def finished_1_7(taskid: int, raw: str) -> tuple[str, tuple]:
    return HISTORY_1_7, (str(taskid), "t", None, None, None, raw, "TBD", 1600000000, 1600000010, 10,
                         "to be implemented")  # fmt: skip


def assert_2x_history(history: dict) -> None:
    got = [(e["exitcode"], e["termsignal"], e["termerror"], e["feedback"]) for e in history.values()]
    assert got == [(code, sig, "", {}) for _, code, sig in RAW_STATUSES]


@pytest.fixture
def file_1x(db):
    one_7(db, *((ddl, ()) for ddl in SCHEMA_1_7))
    return db


def test_history_rows_in_a_1x_file_become_2x_rows_in_the_upgrade(tw, file_1x):
    one_7(file_1x, *(finished_1_7(i, raw) for i, (raw, _, _) in enumerate(RAW_STATUSES, 1)))
    assert_2x_history(tw.history())


def test_history_rows_1_7_writes_after_the_upgrade_become_2x_rows(tw, file_1x):
    tw.tasks()  # the upgrade
    one_7(file_1x, *(finished_1_7(i, raw) for i, (raw, _, _) in enumerate(RAW_STATUSES, 1)))
    assert_2x_history(tw.history())
    # the same through the SQL-built JSON of --history --json and the Python-built one
    with Store(file_1x) as store:
        assert json.loads("".join(history.history_json(store))) == history.history(store)


def test_a_database_taskwatcher_2_created_takes_1_7_rows_too(tw, db):
    tw.run("control", "--update", check=True)  # created by 2.x (a write: reads create nothing)
    one_7(db, finished_1_7(1, "256"))
    (entry,) = tw.history().values()
    assert (entry["exitcode"], entry["termerror"], entry["feedback"]) == (1, "", {})


def test_rows_of_taskwatcher_2_are_never_touched(tw, db):
    one_7(db, *((ddl, ()) for ddl in SCHEMA_1_7))
    # a 1.x file whose rows are not 1.7's launcher's (imported, or hand-made): kept as they are
    one_7(db, (HISTORY_1_7, ("1", "t", None, None, None, "SIGTERM", "killed", 1, 2, 1, '{"a": "b"}')))
    (entry,) = tw.history().values()
    assert (entry["exitcode"], entry["termsignal"], entry["termerror"], entry["feedback"]) == (
        None,
        "SIGTERM",
        "killed",
        {"a": "b"},
    )


@pytest.mark.parametrize("age, kept", [(5, True), (61, False)])
def test_a_reservation_1_7_makes_expires_by_its_reserve_time_plus_the_ttl(tw, file_1x, age, kept):
    tw.tasks()  # upgraded: from here on 1.7 writes into the 2.x tables
    reservetime = int(time.time()) - age
    one_7(file_1x, (RESERVE_1_7, (None, "by-1.7", "RESERVED", reservetime)))
    tasks = tw.tasks()
    assert bool(tasks) == kept
    if kept:
        (task,) = tasks.values()
        assert task["expiretime"] == reservetime + 60


def test_a_task_1_7_runs_has_its_heartbeat_from_the_lastupdate_1_7_refreshes(tw, file_1x):
    """Seen 100 s after its start, with 1.7's last refresh 1 s ago: RUNNING, timer 1 s (not STALLED)."""
    tw.tasks()
    start = int(time.time())
    one_7(file_1x, (RESERVE_1_7, (None, "long", "RESERVED", start)))
    (taskid,) = (int(k) for k in tw.tasks())
    running = ("long", None, None, None, 4242, "RUNNING", True, start, start, 0, start, 30, taskid)
    refreshed = (*running[:9], 99, start + 99, *running[11:])
    one_7(file_1x, (UPDATE_1_7, running), (UPDATE_1_7, refreshed))
    with Store(file_1x) as store:
        described = control.describe_task(store.task(taskid), start + 100)
    assert (described["status"], described["timer"], described["lastupdate"]) == ("RUNNING", 1, start + 99)


def test_a_task_1_7_moved_to_running_before_the_upgrade_has_its_heartbeat_too(tw, file_1x):
    start = int(time.time())
    one_7(
        file_1x,
        (RESERVE_1_7, (1, "long", "RESERVED", start)),
        (UPDATE_1_7, ("long", None, None, None, 4242, "RUNNING", True, start, start, 99, start + 99, 30, 1)),
    )
    with Store(file_1x) as store:  # the upgrade
        described = control.describe_task(store.task(1), start + 100)
    assert (described["status"], described["timer"]) == ("RUNNING", 1)


def timeouts_as_1_7_reads_them(db) -> dict[int, object]:
    """The tasks' timeouts as 1.7's control reads them (its own SELECT: a REAL 8.0 would print as 8.0)."""
    c = sqlite3.connect(db)
    try:
        return dict(c.execute("SELECT id, timeout FROM tasks"))
    finally:
        c.close()


@pytest.fixture
def alive():
    """A live process started now: a 1.7 row with its pid and start time is not archived as lost."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid, int(time.time())
    proc.kill()
    proc.wait()


def test_timeouts_keep_the_type_1_7_wrote_after_the_upgrade(tw, file_1x, alive):
    """1.7 wrote whole seconds (INTEGER): they stay whole numbers, for 1.7's ``--list --json`` too."""
    pid, start = alive
    one_7(
        file_1x,
        (RESERVE_1_7, (1, "before", "RESERVED", start)),
        (UPDATE_1_7, ("before", None, None, None, pid, "RUNNING", True, start, start, 0, start, 8, 1)),
    )
    tw.tasks()  # the upgrade
    one_7(
        file_1x,
        (RESERVE_1_7, (None, "after", "RESERVED", start)),
        (UPDATE_1_7, ("after", None, None, None, pid, "RUNNING", True, start, start, 0, start, 30, 2)),
    )
    with Store(file_1x) as store:  # a fraction of a second, as taskwatcher 2 takes it, stays one
        store.conn.execute("UPDATE tasks SET timeout = 0.5 WHERE id = 2")
        store.conn.execute("INSERT INTO tasks (id, status, timeout) VALUES (3, 'RESERVED', 20.0)")
    got = timeouts_as_1_7_reads_them(file_1x)
    assert [(v, type(v)) for v in got.values()] == [(8, int), (0.5, float), (20, int)]
    assert tw.tasks()["1"]["timeout"] == 8  # what taskwatcher 2 shows is unchanged
