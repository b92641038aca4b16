"""The store: where the database lives, its schema and version, upgrades of taskwatcher 1.x
files, refusal of foreign files, and task ids that are never reused (SPEC, "Database")."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SEED_FEEDBACK_COLUMNS, SEED_HISTORY_COLUMNS, SEED_TASK_COLUMNS, TW, is_postgres, wait_for
from support import one_line_error
from taskwatcher import store as store_mod
from taskwatcher.errors import NameTaken, NotADatabase, StoreError
from taskwatcher.store import Store

SEED_COLUMNS = {
    "tasks": list(SEED_TASK_COLUMNS),
    "feedbacks": list(SEED_FEEDBACK_COLUMNS),
    "history": list(SEED_HISTORY_COLUMNS),
}

# The schema exactly as taskwatcher 1.x created it.
SCHEMA_1X = (
    "CREATE TABLE tasks(id INTEGER PRIMARY KEY, name TEXT, info1 TEXT, info2 TEXT, info3 TEXT,"
    " pid INTEGER, status TEXT, feedback INTEGER, reservetime INTEGER, starttime INTEGER,"
    " duration INTEGER, lastupdate INTEGER, timeout INTEGER)",
    "CREATE TABLE feedbacks(id INTEGER PRIMARY KEY, feedback BLOB, lastupdate INTEGER)",
    "CREATE TABLE history(id INTEGER PRIMARY KEY, taskid INTEGER, taskname TEXT, info1 TEXT,"
    " info2 TEXT, info3 TEXT, termsignal TEXT, termerror TEXT, starttime INTEGER, endtime INTEGER,"
    " duration INTEGER, feedback BLOB)",
)

# history rows of a 1.x file: (id, taskid, taskname, info1, info2, info3, termsignal, termerror,
# starttime, endtime, duration, feedback)
HISTORY_1X = [
    (1, 5, "backup", "i1", "i2", "i3", "", "", 1600000000, 1600000060, 60, '{"progress": "100"}'),
    (2, 9, "build", None, None, None, "SIGTERM", "killed", 1600000100, 1600000110, 10, '{"a": "b"}'),
    (3, 15, "report", "x", "", None, "", "", 1600000200, 1600000201, 1, "{}"),
]


# -- helpers -------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def columns(db: Path, table: str) -> list[str]:
    with sqlite3.connect(db) as c:
        return [r[1] for r in c.execute(f"PRAGMA table_info('{table}')")]


def pragma(db: Path, name: str) -> int:
    c = sqlite3.connect(db)
    try:
        return c.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        c.close()


def make_1x(path: Path, tasks: list[tuple] = (), history: list[tuple] = HISTORY_1X) -> None:
    c = sqlite3.connect(path)
    try:
        for ddl in SCHEMA_1X:
            c.execute(ddl)
        c.executemany(
            "INSERT INTO tasks (id, name, info1, info2, info3, pid, status, feedback, reservetime,"
            " starttime, duration, lastupdate, timeout) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            tasks,
        )
        c.executemany("INSERT INTO history VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", history)
        c.commit()
    finally:
        c.close()


def run_without_db(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI without ``--db`` (``tw.run`` always passes one)."""
    return subprocess.run(
        [*TW, "control", *args], env=env, capture_output=True, text=True, timeout=30, cwd=cwd
    )


# -- where the database is -------------------------------------------------------------------
def test_default_path_is_under_xdg_state_home(env, state, workdir):
    proc = run_without_db(env, "--reserve", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    db = state / "taskwatcher" / "taskwatcher.db"
    assert db.is_file()
    assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT id FROM tasks").fetchall() == [(int(proc.stdout),)]
    assert list(workdir.iterdir()) == []


def test_default_path_without_xdg_is_under_home(env, tmp_path, workdir):
    e = {k: v for k, v in env.items() if k != "XDG_STATE_HOME"}
    proc = run_without_db(e, "--reserve", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "home" / ".local" / "state" / "taskwatcher" / "taskwatcher.db").is_file()


def test_taskwatcher_db_overrides_default(env, state, tmp_path):
    target = tmp_path / "elsewhere" / "by-env.db"
    proc = run_without_db({**env, "TASKWATCHER_DB": str(target)}, "--reserve")
    assert proc.returncode == 0, proc.stderr
    assert target.is_file()
    assert not (state / "taskwatcher").exists()


def test_db_option_overrides_env_and_default(env, state, tmp_path):
    by_env = tmp_path / "by-env.db"
    by_option = tmp_path / "a" / "b" / "by-option.db"
    proc = run_without_db({**env, "TASKWATCHER_DB": str(by_env)}, "--db", str(by_option), "--reserve")
    assert proc.returncode == 0, proc.stderr
    assert by_option.is_file()
    assert not by_env.exists()
    assert not (state / "taskwatcher").exists()


@pytest.mark.sqlite_only("the SQLite file and its tables")
def test_first_use_creates_file_and_schema_without_initialize(tw, db):
    assert not db.exists()
    assert tw.tasks() == {}  # a read answers empty and creates nothing
    assert not db.exists()
    tw.run("control", "--reserve", check=True)
    assert db.is_file()
    for table, cols in SEED_COLUMNS.items():
        assert set(cols) <= set(columns(db, table)), table


def test_default_db_path_function(monkeypatch, tmp_path):
    monkeypatch.delenv("TASKWATCHER_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert store_mod.default_db_path() == str(tmp_path / "xdg" / "taskwatcher" / "taskwatcher.db")
    monkeypatch.setenv("TASKWATCHER_DB", str(tmp_path / "env.db"))
    assert store_mod.default_db_path() == str(tmp_path / "env.db")
    monkeypatch.delenv("TASKWATCHER_DB")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store_mod.default_db_path() == str(
        tmp_path / "home" / ".local" / "state" / "taskwatcher" / "taskwatcher.db"
    )


def test_store_without_path_uses_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TASKWATCHER_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    with Store() as s:
        assert s.path == str(tmp_path / "xdg" / "taskwatcher" / "taskwatcher.db")
    assert (tmp_path / "xdg" / "taskwatcher" / "taskwatcher.db").is_file()


# -- schema ------------------------------------------------------------------------------------
def test_tables_have_the_seed_columns_and_a_version(tmp_path):
    db = tmp_path / "deep" / "folder" / "tw.db"
    Store(db).close()
    for table, cols in SEED_COLUMNS.items():
        got = columns(db, table)
        assert set(cols) <= set(got), (table, got)
    assert "exitcode" in columns(db, "history")
    assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION
    assert pragma(db, "application_id") == store_mod.APPLICATION_ID


def test_reopening_keeps_data(tmp_path):
    db = tmp_path / "tw.db"
    with Store(db) as s:
        taskid = s.reserve("keep", ("a", "b", "c"), False, 60)
    with Store(db) as s:
        row = s.task(taskid)
        assert row is not None
        assert (row["name"], row["info1"], row["info2"], row["info3"]) == ("keep", "a", "b", "c")
        assert row["status"] == "RESERVED"


def test_newer_schema_is_refused_untouched(tmp_path):
    db = tmp_path / "tw.db"
    Store(db).close()
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA user_version={store_mod.SCHEMA_VERSION + 1}")
    before = sha256(db)
    with pytest.raises(StoreError):
        Store(db)
    assert sha256(db) == before


# -- upgrade of taskwatcher 1.x ----------------------------------------------------------------
@pytest.mark.sqlite_only("an upgrade of a 1.x SQLite file")
def test_upgrade_1x_keeps_history_and_never_reuses_ids(tw, db):
    make_1x(db, tasks=[(12, "old", None, None, None, None, "RESERVED", 0, 1600000000, *[None] * 4)])
    hist = tw.history()
    assert [h["taskid"] for h in hist.values()] == [5, 9, 15]
    for row in HISTORY_1X:
        entry = hist[str(row[0])]
        got = tuple(
            entry[k]
            for k in (
                "taskid",
                "taskname",
                "info1",
                "info2",
                "info3",
                "termsignal",
                "termerror",
                "starttime",
                "endtime",
                "duration",
            )
        )
        # 1.x kept NULL or '' for "no signal": both read as ''.
        assert got == (*row[1:6], row[6] or "", row[7] or "", *row[8:11])
        assert entry["feedback"] == json.loads(row[11])
        assert "exitcode" in entry
    assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION
    for table, cols in SEED_COLUMNS.items():
        assert set(cols) <= set(columns(db, table))
    new = int(tw.run("control", "--reserve", check=True).stdout)
    assert new > 15  # every task id seen in history
    assert new > 12  # and in tasks
    assert new > max(r[0] for r in HISTORY_1X)


@pytest.mark.sqlite_only("an upgrade of a 1.x SQLite file")
def test_upgrade_1x_with_seed_style_reservation(tw, db):
    """1.x reserved "with all fields empty except status=RESERVED and reservetime": feedback NULL."""
    t = int(time.time())
    make_1x(db, tasks=[(20, None, None, None, None, None, "RESERVED", None, t - 5, *[None] * 4)])
    proc = tw.run("control", "--history", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(HISTORY_1X)
    new = int(tw.run("control", "--reserve", check=True).stdout)
    assert new > 20


@pytest.mark.sqlite_only("an upgrade of a 1.x SQLite file")
def test_upgrade_1x_keeps_a_fresh_reservation(tw, db):
    """A 1.x reservation made 5 s ago is still within the 60 s time to live after the upgrade."""
    t = int(time.time())
    make_1x(db, tasks=[(12, "fresh", "i", None, None, None, "RESERVED", 0, t - 5, *[None] * 4)])
    tasks = tw.tasks()
    assert "12" in tasks, tasks
    assert tasks["12"]["name"] == "fresh"
    assert tasks["12"]["info1"] == "i"
    assert tasks["12"]["reservetime"] == t - 5


def test_upgrade_1x_by_store_class(tmp_path):
    db = tmp_path / "old.db"
    make_1x(db)
    with Store(db) as s:
        assert [r["taskid"] for r in s.history()] == [5, 9, 15]
        assert s.reserve(None, (None, None, None), False, 60) == 16


# -- foreign files ---------------------------------------------------------------------------
@pytest.mark.sqlite_only("a file that is not an SQLite database")
@pytest.mark.parametrize("content", [b"hello", b"just some text\n" * 200])
def test_text_file_is_refused_untouched(tw, db, content):
    db.write_bytes(content)
    before = sha256(db)
    proc = tw.run("control", "--list")
    assert proc.returncode == 1
    assert "not a taskwatcher database" in one_line_error(proc)
    assert sha256(db) == before
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name)) == [db.name]


@pytest.mark.sqlite_only("an SQLite file of another program")
def test_unrelated_sqlite_file_is_refused_untouched(tw, db):
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE people (name TEXT, age INTEGER)")
        c.execute("INSERT INTO people VALUES ('ada', 36)")
    before = sha256(db)
    for args in (("--list",), ("--reserve",), ("--initialize",), ("--clear",), ("--update",)):
        proc = tw.run("control", *args)
        assert proc.returncode == 1, (args, proc.stderr)
        one_line_error(proc)
        assert sha256(db) == before, args
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT * FROM people").fetchall() == [("ada", 36)]


def test_store_class_refuses_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 50)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE tasks (x)")  # a tasks table, but not taskwatcher's
    for path in (text, other):
        before = sha256(path)
        with pytest.raises(NotADatabase):
            Store(path)
        assert sha256(path) == before


def test_folder_as_database_is_an_error(tw, tmp_path):
    folder = tmp_path / "afolder"
    folder.mkdir()
    proc = subprocess.run(
        [*TW, "control", "--db", str(folder), "--list"], env=tw.env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    one_line_error(proc)


# -- task ids ---------------------------------------------------------------------------------
def test_store_ids_grow_across_delete_archive_clear(tmp_path):
    with Store(tmp_path / "tw.db") as s:
        a = s.reserve("a", (None, None, None), False, 60)
        with s.transaction() as c:
            s.delete_task(c, a)
        b = s.reserve("b", (None, None, None), False, 60)
        assert b > a
        with s.transaction() as c:
            s.archive(c, s.task(b), termsignal="", termerror="", exitcode=0, feedback={"k": "v"})
        assert s.task(b) is None
        assert s.history_of(b)["exitcode"] == 0
        assert json.loads(s.history_of(b)["feedback"]) == {"k": "v"}
        assert s.delete_history()[0] == 1
        assert s.history() == []
        c_id = s.reserve("c", (None, None, None), False, 60)
        assert c_id > b
        with s.transaction():
            s.recreate()
        assert s.tasks() == []
        assert s.reserve("d", (None, None, None), False, 60) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(["reserve", "delete_last", "archive_last", "clear"]), max_size=25))
def test_store_ids_strictly_increase_property(tmp_path_factory, ops):
    with Store(tmp_path_factory.mktemp("prop") / "tw.db") as s:
        seen: list[int] = []
        for op in ["reserve", *ops, "reserve"]:
            live = [r["id"] for r in s.tasks()]
            if op == "reserve":
                seen.append(s.reserve("n", (None, None, None), False, 60))
            elif op == "delete_last" and live:
                with s.transaction() as c:
                    s.delete_task(c, live[-1])
            elif op == "archive_last" and live:
                with s.transaction() as c:
                    s.archive(c, s.task(live[-1]), termsignal="", termerror="", exitcode=0, feedback={})
            elif op == "clear":
                s.delete_history()
        assert seen == sorted(set(seen))


def test_store_unique_reservation(tmp_path):
    with Store(tmp_path / "tw.db") as s:
        first = s.reserve("only", (None, None, None), True, 60)
        with pytest.raises(NameTaken) as e:
            s.reserve("only", (None, None, None), True, 60)
        assert e.value.holder == first
        assert str(first) in str(e.value)
        assert [r["id"] for r in s.tasks("only")] == [first]
        other = s.reserve("other", (None, None, None), True, 60)
        assert other > first


def test_transaction_rolls_back_on_error(tmp_path):
    with Store(tmp_path / "tw.db") as s:
        with pytest.raises(RuntimeError), s.transaction():
            s.reserve("gone", (None, None, None), False, 60, s.conn)
            raise RuntimeError("boom")
        assert s.tasks() == []


def test_concurrent_first_use_of_a_new_database(tw, db):
    """Many callers creating the same database at once: all succeed with distinct ids."""
    procs = [tw.popen("control", "--reserve") for _ in range(12)]
    try:
        outs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * len(procs), [o[1] for o in outs]
    ids = sorted(int(o[0]) for o in outs)
    assert ids == list(range(1, len(procs) + 1))
    if not is_postgres(db):
        assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION


def test_nothing_written_next_to_cwd_by_store(tmp_path, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with Store(tmp_path / "tw.db") as s:
        s.reserve("x", (None, None, None), False, 60)
    assert list(workdir.iterdir()) == []


def test_expired_reservation_dropped_by_next_user(tmp_path):
    """A reservation past its time to live is dropped by the next user of the database."""
    from taskwatcher import control

    db = tmp_path / "tw.db"
    with Store(db) as s:
        short = s.reserve("short", (None, None, None), False, 0.2)
        long_ = s.reserve("long", (None, None, None), False, 60)

    def expired() -> bool:
        with Store(db) as s:
            control.reconcile(s)
            return s.task(short) is None

    wait_for(expired, timeout=5, what="the short reservation to expire")
    with Store(db) as s:
        assert s.task(long_) is not None


def test_a_schema_2_file_gets_the_columns_added_since_and_its_placed_logs_are_known(tmp_path):
    """Schema 2 had no `logplaced`: a log at taskwatcher's own path for the row's id was placed
    by taskwatcher (it is removed with the row); any other log was the user's --log."""
    db = tmp_path / "tw.db"
    Store(db).close()
    logs = tmp_path / "tw-logs"
    with sqlite3.connect(db) as c:
        for table in ("tasks", "history"):
            c.execute(f"ALTER TABLE {table} DROP COLUMN logplaced")
        c.execute("INSERT INTO history (taskid, logfile) VALUES (5, ?), (6, ?), (7, NULL)",
                  (f"{logs}/task_5.log", f"{logs}/mine.log"))  # fmt: skip
        c.execute("PRAGMA user_version=2")
    with Store(db) as s:
        placed = {r["taskid"]: r["logplaced"] for r in s.history()}
        assert placed == {5: 1, 6: 0, 7: 0}
        assert s.delete_history() == (3, [f"{logs}/task_5.log"])
    assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION


def test_a_schema_2_database_is_upgraded_in_place_its_saved_places_read_again(tmp_path):
    """Schema 3 adds the reader's fingerprint to ``feedbacks``; a place saved by schema 2 has
    none, so the next read of that task's file starts from 0 (a rewrite in place may have
    happened meanwhile) instead of trusting the offset."""
    db = tmp_path / "tw.db"
    fb = tmp_path / "feedback_1.log"
    fb.write_text("[a]2\n[b]3\n")
    with Store(db) as s:
        taskid = s.reserve("x", (None, None, None), False, 60)
        s.update_task(taskid, status="RUNNING", feedpath=str(fb), token="t")
    with sqlite3.connect(db) as c:  # what taskwatcher with schema 2 left
        c.execute("ALTER TABLE feedbacks DROP COLUMN fingerprint")
        st = fb.stat()
        c.execute("INSERT INTO feedbacks (id, feedback, dev, ino, offset, lines) VALUES (?, ?, ?, ?, 5, 1)",
                  (taskid, '{"a": "1"}', st.st_dev, st.st_ino))  # fmt: skip
        c.execute("PRAGMA user_version=2")
    from taskwatcher import feedstate

    with Store(db) as s:
        assert pragma(db, "user_version") == store_mod.SCHEMA_VERSION == 5
        assert s.feedback_row(taskid)["fingerprint"] is None and s.task(taskid)["name"] == "x"
        assert feedstate.task_feedback(s, taskid) == {"a": "2", "b": "3"}


@pytest.mark.parametrize("watch", ["inotify", "without inotify"])
def test_a_wait_for_change_sleeps_until_a_file_of_the_database_is_written(tmp_path, watch, monkeypatch):
    """With inotify the wait looks at PRAGMA data_version only when the database or its WAL is
    written (an idle web server costs nothing); without, every CHANGE_LOOK. A change made by
    another connection, the WAL not there yet, wakes it."""
    if watch != "inotify":
        monkeypatch.setenv("TASKWATCHER_WITHOUT", "inotify")
    db = tmp_path / "tw.db"
    Store(db).close()  # the last connection gone: no WAL file left
    with Store(db) as waiter:
        looks: list[str] = []
        waiter.conn.set_trace_callback(looks.append)
        assert not waiter.wait_for_change(0.5)
        idle_looks = len(looks)
        with Store(db) as writer:
            writer.reserve("x", (None, None, None), False, 60)
        assert waiter.wait_for_change(10)
    if watch == "inotify":
        assert idle_looks <= 2, looks
    else:
        assert idle_looks >= 5, looks
