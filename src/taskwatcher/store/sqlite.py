"""The SQLite backend of the store: where the database lives, its schema and upgrades,
and every query (no SQL is written anywhere else).

One connection per process, WAL, a busy timeout, and every write a short
``BEGIN IMMEDIATE`` transaction: a deferred read-then-write transaction fails at
once under contention whatever the timeout, an immediate one waits its turn.
No transaction is ever held while a process is spawned or waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence

from ..crash import crash_point
from ..errors import NameTaken, NoDatabase, NotADatabase, StoreError, TasksRunning
from ..logs import Logger
from ..model import HISTORY_FIELDS, TASK_FIELDS, HistoryRow, TaskRow
from ..status import HOLDS_SLOT, WAITING, TaskStatus, check_transition, sources
from .base import TaskStore, claimed_fields

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from ..feedback import FeedbackState
    from ..model import Claim, HistoryFilter, PendingHook, Waiter

log = Logger(__name__)

SCHEMA_VERSION = 5  # 1 is taskwatcher 1.x (it kept no version: user_version 0); 4: the line; 5: hookruns
APPLICATION_ID = 0x54574348  # "TWCH": marks the file as a taskwatcher database
# How long a write waits for another's lock, in seconds; TASKWATCHER_BUSY_TIMEOUT changes it.
BUSY_TIMEOUT = 30.0
RESERVATION_TTL = 60.0  # seconds a reservation is held for a launch, by default

Row = sqlite3.Row
# Finish hooks' orders still held by one identity (pid, start, bootid, host, pidns): ``IS`` matches NULLs.
_HELD_BY = "pid IS ? AND start IS ? AND bootid IS ? AND host IS ? AND pidns IS ?"

_TASKS = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT, info1 TEXT, info2 TEXT, info3 TEXT,
    pid INTEGER, status TEXT, feedback INTEGER NOT NULL DEFAULT 0,
    reservetime INTEGER, starttime INTEGER, duration INTEGER, lastupdate INTEGER,
    timeout NUMERIC,                   -- a whole number stays an INTEGER, as 1.x (which reads it) wrote it
    uniq INTEGER NOT NULL DEFAULT 0,   -- reserved with --unique
    expiretime REAL,                   -- a reservation not launched by then is dropped
    pgid INTEGER, procstart INTEGER,   -- the task's process: group, start (clock ticks)
    bootid TEXT, host TEXT,
    launcherpid INTEGER, launcherstart INTEGER,
    pidns INTEGER,                     -- the launcher's pid namespace (inode of /proc/self/ns/pid)
    command TEXT,                      -- JSON array, exactly as executed
    feedpath TEXT, logfile TEXT, grace REAL,
    started REAL, heartbeat REAL,      -- unix times with sub-second precision
    stopreason TEXT,                   -- why a stop was requested (control --kill)
    token TEXT,                        -- in the environment of every process of the task
    logplaced INTEGER NOT NULL DEFAULT 0, -- taskwatcher chose the log's path (not --log)
    queue TEXT, slots INTEGER,         -- its group, and how many of the group may run at once
    notbefore REAL,                    -- a queued task is not started before (a retry's delay)
    attempt INTEGER NOT NULL DEFAULT 1,
    spec TEXT,                         -- JSON: what starting it needs (argv, folder, options)
    environ TEXT                       -- JSON: the environment it was queued with (not in TaskRow)
)"""
_FEEDBACKS = """
CREATE TABLE feedbacks (
    id INTEGER PRIMARY KEY,
    feedback BLOB, lastupdate INTEGER,
    dev INTEGER, ino INTEGER, offset INTEGER NOT NULL DEFAULT 0, lines INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT                   -- of the bytes before offset: a file rewritten in place is seen
)"""
_HISTORY = """
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    taskid INTEGER, taskname TEXT, info1 TEXT, info2 TEXT, info3 TEXT,
    termsignal TEXT, termerror TEXT,
    starttime INTEGER, endtime INTEGER, duration INTEGER, feedback BLOB,
    exitcode INTEGER, pid INTEGER, host TEXT, command TEXT, logfile TEXT,
    reservetime INTEGER, timeout REAL,
    logplaced INTEGER NOT NULL DEFAULT 0, -- the log is taskwatcher's to delete with the row
    attempt INTEGER NOT NULL DEFAULT 1,
    hook TEXT                          -- the finish hooks' outcome ('pending' until they have run)
)"""
_HOOKRUNS = """
CREATE TABLE IF NOT EXISTS hookruns (
    historyid INTEGER PRIMARY KEY,     -- the history row whose finish hooks these are
    orders TEXT NOT NULL,              -- JSON: the hooks, their time limit, their environment
    running INTEGER NOT NULL DEFAULT 0, -- 1 once a runner has claimed them
    pid INTEGER, start INTEGER, bootid TEXT, host TEXT, pidns INTEGER  -- who holds them
)"""
# Columns added since schema 2, by table: an older file gets them with ALTER TABLE.
# (Schema 4, queues: tasks queue, slots, notbefore, attempt, spec, environ; history attempt, hook.)
_ADDED_COLUMNS = {
    "tasks": (
        ("logplaced", "INTEGER NOT NULL DEFAULT 0"),
        ("pidns", "INTEGER"),
        ("queue", "TEXT"),
        ("slots", "INTEGER"),
        ("notbefore", "REAL"),
        ("attempt", "INTEGER NOT NULL DEFAULT 1"),
        ("spec", "TEXT"),
        ("environ", "TEXT"),
    ),
    "history": (
        ("logplaced", "INTEGER NOT NULL DEFAULT 0"),
        ("attempt", "INTEGER NOT NULL DEFAULT 1"),
        ("hook", "TEXT"),
    ),
    "feedbacks": (("fingerprint", "TEXT"),),  # a place saved without one is read again from 0
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS tasks_name ON tasks(name)",
    "CREATE INDEX IF NOT EXISTS history_taskid ON history(taskid)",
    "CREATE INDEX IF NOT EXISTS history_taskname ON history(taskname)",
    # --since and retention by age find their rows by end time: without it each reads every row.
    "CREATE INDEX IF NOT EXISTS history_endtime ON history(endtime)",
)
# The columns taskwatcher 1.x created; a file with these tables and no version is 1.x.
_SEED_COLUMNS = {
    "tasks": {
        "id",
        "name",
        "info1",
        "info2",
        "info3",
        "pid",
        "status",
        "feedback",
        "reservetime",
        "starttime",
        "duration",
        "lastupdate",
        "timeout",
    },
    "feedbacks": {"id", "feedback", "lastupdate"},
    "history": {
        "id",
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
        "feedback",
    },
}


def _1x_history_as_2x() -> dict[str, str]:
    """SQL, per history column, that turns a row written by taskwatcher 1.x into a 2.x row.

    1.x wrote the raw wait status as ``termsignal`` ("0", "256", "9"), "TBD" as
    ``termerror`` and "to be implemented" as ``feedback``: the status becomes
    ``exitcode`` (128+N for signal N, as ``launch`` exits) and the signal's name,
    "TBD" an empty reason, and the feedback a JSON object. Other rows are left as
    they are. The same expressions serve the upgrade and the trigger below.
    """
    # Only names written here go into this SQL: no value from outside.
    is_wait_status = "(termsignal != '' AND termsignal NOT GLOB '*[^0-9]*')"
    wait_status = "CAST(termsignal AS INTEGER)"
    signal_names = " ".join(f"WHEN {s.value} THEN '{s.name}'" for s in sorted(signal.Signals))
    feedback_text = "CAST(feedback AS TEXT)"
    return {
        "exitcode": f"CASE WHEN {is_wait_status} THEN CASE WHEN {wait_status} & 127 = 0"
        f" THEN ({wait_status} >> 8) & 255 ELSE 128 + ({wait_status} & 127) END END",
        "termsignal": f"CASE WHEN {is_wait_status} THEN CASE {wait_status} & 127 WHEN 0 THEN ''"
        f" {signal_names} ELSE 'SIG' || ({wait_status} & 127) END ELSE termsignal END",
        "termerror": "CASE WHEN termerror = 'TBD' THEN '' ELSE termerror END",
        # (CASE, not AND: json_type fails on text that is not JSON, and AND may evaluate both sides)
        "feedback": f"CASE WHEN NOT json_valid({feedback_text}) THEN '{{}}'"
        f" WHEN json_type({feedback_text}) = 'object' THEN feedback ELSE '{{}}' END",
    }


_1X_HISTORY_AS_2X = _1x_history_as_2x()
# A taskwatcher 1.7 launcher may still run on an upgraded database (a site migrating
# keeps its running tasks): what it writes is made 2.x as it is written. Its history
# rows carry "TBD"; its reservations no expiry time (they expire by their reserve time
# plus the time to live, as 2.x ones do); and its running rows no heartbeat, while it
# refreshes their lastupdate every few seconds: that is its heartbeat, so a task it
# runs is not shown STALLED while it reports. (Rows of taskwatcher 2 have an expiry
# time and a launcher pid: these triggers never touch them.)
_1X_WRITER_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS history_from_1x AFTER INSERT ON history"
    " WHEN NEW.termerror = 'TBD' AND NEW.exitcode IS NULL BEGIN UPDATE history SET "
    + ", ".join(f"{column} = {sql}" for column, sql in _1X_HISTORY_AS_2X.items())
    + " WHERE id = NEW.id; END",
    "CREATE TRIGGER IF NOT EXISTS reservation_from_1x AFTER INSERT ON tasks"
    " WHEN NEW.status = 'RESERVED' AND NEW.expiretime IS NULL BEGIN UPDATE tasks"
    " SET expiretime = coalesce(NEW.reservetime, CAST(strftime('%s') AS INTEGER))"
    f" + {RESERVATION_TTL} WHERE id = NEW.id; END",
    "CREATE TRIGGER IF NOT EXISTS heartbeat_from_1x AFTER UPDATE OF lastupdate ON tasks"
    " WHEN NEW.launcherpid IS NULL AND NEW.status != 'RESERVED' AND NEW.lastupdate IS NOT NULL"
    " BEGIN UPDATE tasks SET heartbeat = NEW.lastupdate WHERE id = NEW.id; END",
)


def xdg_base(variable: str, default: str) -> str:
    """An XDG base folder: the variable's value if it is an absolute path, else ``~/DEFAULT``
    (the XDG Base Directory specification says a relative value is to be ignored: it would
    put files under whatever folder a command happens to run in)."""
    value = os.environ.get(variable, "")
    return value if os.path.isabs(value) else os.path.join(os.path.expanduser("~"), default)


def default_db_path() -> str:
    """``$TASKWATCHER_DB``, else the configuration file's ``[database] db``, else
    ``$XDG_STATE_HOME/taskwatcher/taskwatcher.db``."""
    env = os.environ.get("TASKWATCHER_DB")
    if env:
        return env
    configured = _configured_db()
    if configured:
        return configured
    state = xdg_base("XDG_STATE_HOME", os.path.join(".local", "state"))
    return os.path.join(state, "taskwatcher", "taskwatcher.db")


def _configured_db() -> str | None:
    # The configuration module is imported only when a file is there to read: a stat
    # is all a command without one pays.
    path = os.environ.get("TASKWATCHER_CONFIG") or os.path.join(
        xdg_base("XDG_CONFIG_HOME", ".config"), "taskwatcher", "config.toml"
    )
    if not os.path.exists(path):
        return None
    from ..config import load

    return load(path).db


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> str:
    """The database a command uses: ``path``, else the default; a file's path absolute, a
    PostgreSQL URL as it is."""
    from . import is_url

    db = os.fspath(path or default_db_path())
    return db if is_url(db) else os.path.abspath(db)


def database_missing(path: str) -> bool:
    """True if nothing is at ``path`` (a folder we may not look into is not "missing": opening
    it then says why)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def sibling_folder(db_path: str, suffix: str) -> str:
    """``<db stem>-SUFFIX/`` beside the database (its logs, its kept-aside ends)."""
    stem = os.path.splitext(os.path.basename(db_path))[0]
    return os.path.join(os.path.dirname(db_path), f"{stem}-{suffix}")


def storable(text: str) -> str:
    """``text`` as valid UTF-8 for the database: bytes that were not UTF-8 (an argument
    decoded with surrogateescape, as Python gives undecodable command-line bytes) become
    ``\\xNN``. The same input always gives the same text, so a name stored this way
    is found again by the same bytes (``--killall``, ``--history --name``)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape" if _only_escapes(text) else "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def command_text(argv: Sequence[str]) -> str:
    """The command as the ``command`` column keeps it: a JSON array of storable texts
    (for people and JSON readers; the argv itself is executed exactly as given)."""
    return json.dumps([storable(a) for a in argv])


def check_text_path(path: str, what: str) -> None:
    """Paths are kept as text in the database: one that is not UTF-8 is refused, not mangled."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{what} {storable(path)} is not valid UTF-8: taskwatcher cannot keep it") from None


def check_own_folder(folder: str, what: str) -> None:
    """Refuse a folder another user owns or may write: whoever can put files in it could
    plant the database's files (its -wal, a kept-aside end, a log) and act as us.

    Owned by us or root (root may act as anyone anyway), and writable by nobody else:
    not by others (sticky or not), not by its group unless that group is our own
    private group (a user private group, as Debian's umask 002 makes).
    """
    try:
        st = os.stat(folder)
    except OSError as e:
        raise StoreError(f"cannot use {what} {folder}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{what} {folder} is not a folder")
    if st.st_uid not in (os.geteuid(), 0):
        raise StoreError(f"{what} {folder} belongs to another user ({_user(st.st_uid)}): refused, "
                         "whoever can write there can act as you")  # fmt: skip
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not _own_private_group(st.st_gid)):
        mode = stat.S_IMODE(st.st_mode)
        raise StoreError(f"{what} {folder} may be written by other users (mode {mode:o}): refused, "
                         "whoever can write there can act as you; use a folder of your own")  # fmt: skip


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _own_private_group(gid: int) -> bool:
    """The group is named as we are and has no other member (a user private group)."""
    import grp

    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    me = _user(os.geteuid())
    return group.gr_name == me and set(group.gr_mem) <= {me}


def busy_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("TASKWATCHER_BUSY_TIMEOUT", BUSY_TIMEOUT)))
    except ValueError:
        return BUSY_TIMEOUT


def now() -> int:
    return int(time.time())


class SQLiteStore(TaskStore):
    """A taskwatcher database in an SQLite file, opened (and created or upgraded) on construction.

    ``create=False`` (the commands that only read): a missing file raises
    :class:`~taskwatcher.errors.NoDatabase` and nothing is created, not even its folder.
    Its ``key`` is the file's absolute path; its host-local folders are beside it
    (``<db stem>-logs/``, ``<db stem>-pending/``).
    """

    shared = False  # one host: liveness is judged from /proc
    _watch = None  # the inotify watch on the database's files, made by the first wait_for_change

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.path = resolve_db_path(path)
        self.key = self.target = self.path
        check_text_path(self.path, "database")  # before anything, so that a read says it too
        if not create and database_missing(self.path):
            raise NoDatabase(f"no database exists at {self.path}")
        self.conn = self._connect()
        try:
            self._prepare()
            self._seen_version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise _store_error(e, self.path) from None

    def local_folder(self, suffix: str) -> str:
        return sibling_folder(self.path, suffix)

    # -- opening -----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            raise StoreError(f"database {self.path} is a folder")
        folder = os.path.dirname(self.path)
        try:
            _make_private_folders(folder)
        except FileExistsError:  # a file where the folder should be: "File exists" would mislead
            raise StoreError(
                f"cannot create the folder of database {self.path}: {folder} is a file"
            ) from None
        except OSError as e:
            raise StoreError(f"cannot create the folder of database {self.path}: {e.strerror}") from None
        self._check_trust()
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout(), isolation_level=None)
        except sqlite3.Error as e:
            raise _store_error(e, self.path) from None
        conn.row_factory = sqlite3.Row
        return conn

    def _check_trust(self) -> None:
        """The database's folder and files are ours alone, or it is not used.

        Whoever may write the database can make our commands signal processes and
        remove files: so its folder must be writable by us alone (a database directly
        in /tmp is refused: anyone could plant its -wal or its sibling folders there
        first), the file must be a regular file of ours, and it and SQLite's files
        beside it are made private (0600: the tasks' tokens are in it).
        """
        real = os.path.realpath(self.path)
        for folder in dict.fromkeys((os.path.dirname(self.path), os.path.dirname(real))):
            check_own_folder(folder, "database folder")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            st = _create_private_file(real)
        except OSError:  # no permission...: SQLite's own attempt says why, with a hint
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise NotADatabase(f"{self.path} is not a taskwatcher database (not a regular file)")
        for file in self._files(real):
            _check_owner(file, "database" if file == real else "database file")

    @staticmethod
    def _files(real: str) -> list[str]:
        return [real, *(real + suffix for suffix in ("-wal", "-shm", "-journal"))]

    def _make_private(self) -> None:
        """Group and others lose any access to the database's files (older versions made
        them 0644). Only once the file is known to be a taskwatcher database: a foreign
        file is never modified."""
        for file in self._files(os.path.realpath(self.path)):
            try:
                st = os.lstat(file)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
                try:
                    os.chmod(file, stat.S_IMODE(st.st_mode) & 0o700)
                except OSError as e:  # a read-only file system: it is only read, then
                    log.debug("cannot make %s private: %s", file, e.strerror)

    def _prepare(self) -> None:
        app_id, version = self.conn.execute(
            "SELECT * FROM pragma_application_id, pragma_user_version"
        ).fetchone()
        if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._make_private()
            return
        self._check_foreign(app_id, version)
        with self.transaction():
            app_id, version = self.conn.execute(
                "SELECT * FROM pragma_application_id, pragma_user_version"
            ).fetchone()
            self._check_foreign(app_id, version)
            if app_id != APPLICATION_ID:
                if self._tables():
                    log.debug("upgrading taskwatcher 1.x database %s", self.path)
                    self._upgrade_from_1x()
                else:
                    self._create()
            elif version < SCHEMA_VERSION:
                log.debug("upgrading %s from schema %d", self.path, version)
                self._add_columns()
        with contextlib.suppress(sqlite3.OperationalError):
            # WAL cannot be switched on inside a transaction, nor on a read-only file.
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._make_private()

    def _tables(self) -> dict[str, set[str]]:
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        # A parameter, not the name in the SQL text: a foreign file's table may be called anything.
        return {
            n: {c[0] for c in self.conn.execute("SELECT name FROM pragma_table_info(?)", (n,))} for n in names
        }

    def _check_foreign(self, app_id: int, version: int) -> None:
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema {version}, newer than this "
                    f"taskwatcher's {SCHEMA_VERSION}: upgrade taskwatcher"
                )
            return
        if app_id != 0:
            raise NotADatabase(f"{self.path} is not a taskwatcher database (application id {app_id:#x})")
        tables = self._tables()
        if tables and not (
            set(tables) == set(_SEED_COLUMNS) and all(_SEED_COLUMNS[t] <= cols for t, cols in tables.items())
        ):
            # Two reads: another process may have made the schema between them (its tables and
            # its stamp in one transaction). Stamped now, it is ours.
            app_id, version = self.conn.execute(
                "SELECT * FROM pragma_application_id, pragma_user_version"
            ).fetchone()
            if app_id == APPLICATION_ID:
                return self._check_foreign(app_id, version)
            raise NotADatabase(
                f"{self.path} is not a taskwatcher database (tables: {', '.join(sorted(tables))})"
            )

    def _create(self) -> None:
        for ddl in (_TASKS, _FEEDBACKS, _HISTORY, _HOOKRUNS, *_INDEXES, *_1X_WRITER_TRIGGERS):
            self.conn.execute(ddl)
        self._stamp()

    def _stamp(self) -> None:
        self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _upgrade_from_1x(self) -> None:
        """Rebuild the 1.x tables in the current schema, keeping every row and id."""
        # 1.x left columns NULL freely and allowed text task ids; the new columns get
        # what 1.x meant: feedback 0/1, reservations held for the default time to live.
        fixups = {
            "tasks": {
                "feedback": "coalesce(feedback, 0) != 0",
                "expiretime": f"CASE WHEN status = 'RESERVED' THEN reservetime + {RESERVATION_TTL} END",
                "heartbeat": "CASE WHEN status != 'RESERVED' THEN coalesce(lastupdate, starttime) END",
            },
            "history": _1X_HISTORY_AS_2X,
        }
        for table, ddl in (("tasks", _TASKS), ("feedbacks", _FEEDBACKS), ("history", _HISTORY)):
            self.conn.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
            self.conn.execute(ddl)
            exprs = {c: c for c in sorted(_SEED_COLUMNS[table])} | fixups.get(table, {})
            columns, values = ", ".join(exprs), ", ".join(exprs.values())
            self.conn.execute(f"INSERT INTO {table} ({columns}) SELECT {values} FROM old_{table}")
            self.conn.execute(f"DROP TABLE old_{table}")
        for ddl in (_HOOKRUNS, *_INDEXES, *_1X_WRITER_TRIGGERS):
            self.conn.execute(ddl)
        # 1.x reused ids; from here on no task id already seen (even in history) is handed out.
        top = self.conn.execute(
            "SELECT max(coalesce((SELECT max(id) FROM tasks), 0), coalesce((SELECT max(taskid)"
            " FROM history WHERE typeof(taskid) = 'integer'), 0))"
        ).fetchone()[0]
        self.conn.execute("DELETE FROM sqlite_sequence WHERE name = 'tasks'")
        self.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('tasks', ?)", (top,))
        self._stamp()

    def _add_columns(self) -> None:
        """Bring a file of an older 2.x schema to this one: the columns and indexes added since."""
        tables = self._tables()
        for table, columns in _ADDED_COLUMNS.items():
            for name, decl in columns:
                if name not in tables.get(table, set()):
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        # The logs of earlier rows that taskwatcher placed are those at its own path for the id.
        logs = sibling_folder(self.path, "logs") + os.sep
        for table, key in (("tasks", "id"), ("history", "taskid")):
            self.conn.execute(
                f"UPDATE {table} SET logplaced = 1 WHERE logfile = ? || 'task_' || {key} || '.log'", (logs,)
            )
        for ddl in (_HOOKRUNS, *_INDEXES, *_1X_WRITER_TRIGGERS):  # a 1.7 launcher may write to any file
            self.conn.execute(ddl)
        self._stamp()

    def release_for_fork(self) -> None:
        self.conn.close()  # the last connection to the file in this process: SQLite drops its locks

    def resume_after_fork(self) -> None:
        self.conn = self._connect()
        self._seen_version = -1  # another connection's count: the next wait_for_change looks again

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self.conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend-level access (this backend and its tests only) --------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front. Inside one
        already open (a test's set-up around an operation), the operation joins it."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _store_error(e, self.path) from None
        try:
            yield self.conn
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):  # a statement refused (read-only file, disk full...)
                raise _store_error(e, self.path) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise _store_error(e, self.path) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _store_error(e, self.path) from None

    def cursor(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows one at a time, as plain tuples: for results too large to hold."""
        try:
            cur = self.conn.cursor()
            cur.row_factory = None
            yield from cur.execute(sql, params)
        except sqlite3.Error as e:
            raise _store_error(e, self.path) from None

    def update_task(
        self,
        taskid: int,
        conn: sqlite3.Connection | None = None,
        *,
        where_token: str | None = None,
        **fields: Any,
    ) -> int:
        """Set ``fields`` of a task; with ``where_token``, only if the row is still that task's.
        How many rows changed (0 or 1)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {sets} WHERE id = ?"
        params = [*map(_text, fields.values()), taskid]
        if where_token is not None:
            sql += " AND token = ?"
            params.append(where_token)
        if conn is None:
            with self.transaction() as c:
                return c.execute(sql, params).rowcount
        return conn.execute(sql, params).rowcount

    def delete_task(self, conn: sqlite3.Connection, taskid: int) -> None:
        conn.execute("DELETE FROM tasks WHERE id = ?", (taskid,))
        conn.execute("DELETE FROM feedbacks WHERE id = ?", (taskid,))

    def name_holder(self, name: str, other_than: int | None = None) -> int | None:
        """The id of a reserved or running task of that name, if any (call inside a transaction)."""
        row = self.conn.execute(
            "SELECT id FROM tasks WHERE name = ? AND id IS NOT ? ORDER BY id LIMIT 1",
            (_text(name), other_than),
        ).fetchone()
        return row[0] if row else None

    def archive(
        self,
        conn: sqlite3.Connection,
        task: TaskRow,
        *,
        termsignal: str,
        termerror: str,
        exitcode: int | None,
        feedback: dict[str, str],
        endtime: float | None = None,
        hook: str | None = None,
        retry_at: float | None = None,
        keep_waiter: bool = False,
    ) -> int:
        """Move a task to history (call inside a transaction); returns the history id.

        With ``retry_at``, the task is not removed but goes back to the line for its next
        attempt (QUEUED, not started before then, a fresh token; ``keep_waiter``: still
        its foreground launcher's to start)."""
        end = time.time() if endtime is None else endtime
        start = task["started"] if task["started"] is not None else task["starttime"]
        cur = conn.execute(
            "INSERT INTO history (taskid, taskname, info1, info2, info3, termsignal, termerror,"
            " starttime, endtime, duration, feedback, exitcode, pid, host, command, logfile,"
            " reservetime, timeout, logplaced, attempt, hook)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                task["id"],
                task["name"],
                task["info1"],
                task["info2"],
                task["info3"],
                _text(termsignal),
                _text(termerror),
                task["starttime"],
                int(end),
                round(end - start) if start is not None else None,
                json.dumps(feedback, ensure_ascii=False),
                exitcode,
                task["pid"],
                task["host"],
                task["command"],
                task["logfile"],
                task["reservetime"],
                task["timeout"],
                task["logplaced"],
                task["attempt"] or 1,
                _text(hook),
            ),
        )
        if retry_at is None:
            self.delete_task(conn, task["id"])
        else:
            check_transition(task["status"], TaskStatus.QUEUED)
            waiter = {} if keep_waiter else dict.fromkeys(
                ("launcherpid", "launcherstart", "bootid", "host", "pidns")
            )  # fmt: skip
            self.update_task(
                task["id"], conn, status=str(TaskStatus.QUEUED), attempt=(task["attempt"] or 1) + 1,
                notbefore=retry_at, token=os.urandom(8).hex(), pid=None, procstart=None, started=None,
                starttime=None, duration=None, heartbeat=None, lastupdate=None, stopreason=None,
                expiretime=None, feedpath=None, feedback=0, **waiter,
            )  # fmt: skip
            conn.execute("DELETE FROM feedbacks WHERE id = ?", (task["id"],))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def feedback_row(self, taskid: int) -> Row | None:
        rows = self.query("SELECT * FROM feedbacks WHERE id = ?", (taskid,))
        return rows[0] if rows else None

    def history_of(self, taskid: int) -> HistoryRow | None:
        return self.finished(taskid)

    def history(self) -> list[HistoryRow]:  # type: ignore[override]
        """Every history row, oldest first (the whole list: see :meth:`iter_history`)."""
        return list(self.iter_history())

    def delete_history(self, where: str = "1", params: Sequence[Any] = ()) -> tuple[int, list[str]]:
        """Delete the finished tasks ``where`` says, in one transaction: how many, and the
        logs taskwatcher placed for them (to be removed; never a user's ``--log``)."""
        with self.transaction() as c:
            logs = self._placed_logs(f"SELECT logfile FROM history WHERE logplaced AND ({where})", params)
            count = c.execute(f"DELETE FROM history WHERE {where}", params).rowcount
        return count, logs

    def _placed_logs(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        return [r[0] for r in self.conn.execute(sql, params) if isinstance(r[0], str) and r[0]]

    # -- tasks -----------------------------------------------------------------------
    def reserve(  # type: ignore[override]
        self,
        name: str | None,
        infos: Sequence[str | None],
        unique: bool,
        ttl: float,
        conn: sqlite3.Connection | None = None,
    ) -> int:
        if conn is None:
            with self.transaction() as c:
                return self.reserve(name, infos, unique, ttl, c)
        if unique and name is not None:
            holder = self.name_holder(_text(name))
            if holder is not None:
                raise NameTaken(name, holder)
        t = time.time()
        cur = conn.execute(
            "INSERT INTO tasks (name, info1, info2, info3, status, reservetime, expiretime, uniq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (_text(name), *map(_text, infos), str(TaskStatus.RESERVED), int(t), t + ttl, int(unique)),
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def claim(self, taskid: int | None, launch: Claim) -> TaskRow:
        from ..errors import ReservationError

        with self.transaction() as conn:
            t = time.time()
            if taskid is None:
                name = launch.name or launch.default_name
                try:
                    taskid = self.reserve(name, launch.infos, launch.unique, 0.0, conn)
                except NameTaken as e:
                    raise ReservationError(f"not started: {e}") from None
                row = self.task(taskid)
            else:
                row = self.task(taskid)
                if row is None or row.status != TaskStatus.RESERVED:
                    what = "is running" if row is not None else "is not reserved"
                    if row is None and self.finished(taskid) is not None:
                        what = "has already run"
                    raise ReservationError(f"task {taskid} {what}: nothing started")
                if row.expiretime is not None and row.expiretime <= t:
                    raise ReservationError(f"the reservation of task {taskid} has expired: nothing started")
                if row.uniq and launch.name and row.name and launch.name != row.name:
                    raise ReservationError(
                        f"task {taskid} holds the name {row.name!r} uniquely: --name cannot change it"
                    )
                name = launch.name or row.name or launch.default_name
                holder = self.name_holder(name, taskid) if bool(row.uniq) or launch.unique else None
                if holder is not None:
                    raise ReservationError(f"not started: name {name!r} is held by task {holder}")
            assert row is not None
            check_transition(row.status, TaskStatus.RUNNING)
            fields = claimed_fields(row, launch, name, t)
            self.update_task(taskid, conn, **fields)
            claimed = self.task(taskid)
        assert claimed is not None
        return claimed

    def record_spawn(
        self, taskid: int, token: str, pid: int, procstart: int, command: str, launcherpid: int,
        launcherstart: int | None,
    ) -> TaskRow | None:  # fmt: skip
        with self.transaction() as conn:
            changed = self.update_task(
                taskid,
                conn,
                where_token=token,
                pid=pid,
                command=command,
                procstart=procstart,
                launcherpid=launcherpid,
                launcherstart=launcherstart,
            )
            return self.task(taskid) if changed else None

    def record_status(
        self, taskid: int, token: str, status: str, heartbeat: float, feedback: FeedbackState | None = None
    ) -> bool:
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE tasks SET status = ?, heartbeat = ?, lastupdate = ? WHERE id = ? AND token = ?"
                f" AND status IN ({_marks(sources(status))})",
                (str(status), heartbeat, int(heartbeat), taskid, token, *map(str, sources(status))),
            )
            if cur.rowcount != 1:
                return False
            if feedback is not None:
                self._write_feedback(conn, taskid, feedback)
            return True

    def record_observed(self, observed: Sequence[tuple[int, int | None, str, int | None]]) -> int:
        with self.transaction() as conn:
            for taskid, duration, status, lastupdate in observed:
                conn.execute(
                    "UPDATE tasks SET duration = ?, status = ?, lastupdate = ? WHERE id = ?"
                    " AND status NOT IN (?, ?)",
                    (duration, status, lastupdate, taskid, *map(str, WAITING)),
                )
        return len(observed)

    def request_stop(self, taskid: int, reason: str, notify: bool = True) -> TaskRow | None:
        # One host: the launcher is always signalled by the caller (notify_fd is None here).
        with self.transaction() as conn:
            changed = conn.execute(
                "UPDATE tasks SET stopreason = ? WHERE id = ? AND status NOT IN (?, ?)",
                (_text(reason), taskid, *map(str, WAITING)),
            ).rowcount
            return self.task(taskid) if changed else None

    def cancel_reservation(self, taskid: int) -> bool:
        with self.transaction() as conn:
            if conn.execute(
                "DELETE FROM tasks WHERE id = ? AND status = ?", (taskid, str(TaskStatus.RESERVED))
            ).rowcount:
                conn.execute("DELETE FROM feedbacks WHERE id = ?", (taskid,))
                return True
            return False

    def expire_reservations(self, now: float) -> list[int]:
        reserved = str(TaskStatus.RESERVED)
        due = "status = ? AND expiretime IS NOT NULL AND expiretime <= ?"
        if not self.query(f"SELECT 1 FROM tasks WHERE {due} LIMIT 1", (reserved, now)):
            return []  # the common case reads only: no write lock taken
        with self.transaction() as conn:
            # A queued task's reservation (its starter died before its launcher claimed it)
            # goes back to the line, in its place: it is never dropped.
            conn.execute(
                f"UPDATE tasks SET status = ?, expiretime = NULL WHERE {due} AND spec IS NOT NULL",
                (str(TaskStatus.QUEUED), reserved, now),
            )
            ids = [r[0] for r in conn.execute(f"SELECT id FROM tasks WHERE {due}", (reserved, now))]
            conn.execute(f"DELETE FROM tasks WHERE {due}", (reserved, now))
            conn.executemany("DELETE FROM feedbacks WHERE id = ?", [(i,) for i in ids])
        return ids

    def finish(
        self, taskid: int, token: str, *, termsignal: str, termerror: str, exitcode: int | None,
        feedback: dict[str, str], endtime: float | None = None, hook: str | None = None,
        retry_at: float | None = None, keep_waiter: bool = False, hook_orders: str | None = None,
        holder: Waiter | None = None, lapsed: bool = False,
    ) -> int | None:  # fmt: skip
        # (``lapsed``: a file on one host has no leases; nothing here is ever lapsed)
        with self.transaction() as conn:
            current = self.task(taskid)
            if current is None or current.token != token or lapsed:
                return None
            hid = self.archive(conn, current, termsignal=termsignal, termerror=termerror,
                               exitcode=exitcode, feedback=feedback, endtime=endtime, hook=hook,
                               retry_at=retry_at, keep_waiter=keep_waiter)  # fmt: skip
            if hook_orders is not None:
                h = holder or (None,) * 5
                conn.execute(
                    "INSERT INTO hookruns (historyid, orders, pid, start, bootid, host, pidns)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (hid, hook_orders, *h),
                )
            crash_point("archiving")  # inside the transaction: the history row is not committed
            return hid

    # -- the line: queued tasks ----------------------------------------------------------
    def enqueue(  # type: ignore[override]
        self, name: str | None, infos: Sequence[str | None], unique: bool, *, queue: str | None,
        slots: int | None, spec: str, environ: str | None = None, command: str | None = None,
        waiter: Waiter | None = None,
    ) -> int:  # fmt: skip
        with self.transaction() as conn:
            if unique and name is not None:
                holder = self.name_holder(_text(name))
                if holder is not None:
                    raise NameTaken(name, holder)
            w = waiter or (None,) * 5
            cur = conn.execute(
                "INSERT INTO tasks (name, info1, info2, info3, status, reservetime, uniq, queue, slots,"
                " spec, environ, command, token, launcherpid, launcherstart, bootid, host, pidns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_text(name), *map(_text, infos), str(TaskStatus.QUEUED), now(), int(unique), _text(queue),
                 slots, spec, environ, command, os.urandom(8).hex(), *w),
            )  # fmt: skip
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def take_queued(self, taskid: int, ttl: float) -> bool:
        check_transition(TaskStatus.QUEUED, TaskStatus.RESERVED)
        holding = [str(s) for s in HOLDS_SLOT]
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT queue, slots, notbefore FROM tasks WHERE id = ? AND status = ?",
                (taskid, str(TaskStatus.QUEUED)),
            ).fetchone()
            t = time.time()
            if row is None or (row["notbefore"] is not None and row["notbefore"] > t):
                return False
            if row["queue"] is not None:
                busy = conn.execute(
                    f"SELECT count(*) FROM tasks WHERE queue = ? AND status IN ({_marks(holding)})",
                    (row["queue"], *holding),
                ).fetchone()[0]
                if busy >= max(1, row["slots"] or 1):
                    return False
            conn.execute(
                "UPDATE tasks SET status = ?, expiretime = ? WHERE id = ?",
                (str(TaskStatus.RESERVED), t + ttl, taskid),
            )
            return True

    def task_environment(self, taskid: int) -> str | None:
        rows = self.query("SELECT environ FROM tasks WHERE id = ?", (taskid,))
        return rows[0][0] if rows else None

    def record_hook(self, historyid: int, outcome: str, holder: Waiter | None = None) -> bool:
        with self.transaction() as conn:
            if holder is not None:
                held = conn.execute(
                    f"DELETE FROM hookruns WHERE historyid = ? AND {_HELD_BY}", (historyid, *holder)
                ).rowcount
                if not held:
                    return False
            else:
                conn.execute("DELETE FROM hookruns WHERE historyid = ?", (historyid,))
            return (
                conn.execute("UPDATE history SET hook = ? WHERE id = ?", (_text(outcome), historyid)).rowcount
                == 1
            )

    def pending_hooks(self) -> list[PendingHook]:
        from ..model import PendingHook, Waiter

        rows = self.query(
            "SELECT historyid, running, pid, start, bootid, host, pidns FROM hookruns ORDER BY 1"
        )
        return [PendingHook(r[0], bool(r[1]), Waiter(*r[2:])) for r in rows]

    def take_hook(
        self, historyid: int, holder: Waiter, *, run: bool, was: Waiter | None = None
    ) -> str | None:
        with self.transaction() as conn:
            if run:
                where, params = "historyid = ? AND running = 0", (historyid,)
            else:
                where, params = (
                    f"historyid = ? AND running = 0 AND {_HELD_BY}",
                    (historyid, *(was or (None,) * 5)),
                )
            row = conn.execute(f"SELECT orders FROM hookruns WHERE {where}", params).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE hookruns SET running = ?, pid = ?, start = ?, bootid = ?, host = ?, pidns = ?"
                " WHERE historyid = ?",
                (int(run), *holder, historyid),
            )
            return str(row[0])

    # -- the task's latest feedback ----------------------------------------------------
    def feedback_state(self, taskid: int) -> FeedbackState | None:
        from ..feedback import FeedbackState

        saved = self.feedback_row(taskid)
        if saved is None:
            return None
        return FeedbackState(
            saved["dev"] or 0,
            saved["ino"] or 0,
            saved["offset"] or 0,
            saved["lines"] or 0,
            json.loads(saved["feedback"] or "{}"),
            saved["fingerprint"] or "",
        )

    def _write_feedback(self, conn: sqlite3.Connection, taskid: int, state: FeedbackState) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO feedbacks (id, feedback, lastupdate, dev, ino, offset, lines,"
            " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (taskid, json.dumps(state.data, ensure_ascii=False), now(), state.dev, state.ino,
             state.offset, state.lines, state.fingerprint),
        )  # fmt: skip
        crash_point("feedback-saving")  # the new offset and data not committed

    # -- reads -------------------------------------------------------------------------
    def task(self, taskid: int) -> TaskRow | None:
        rows = self.query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (taskid,))
        return TaskRow._make(rows[0]) if rows else None

    def tasks(self, name: str | None = None) -> list[TaskRow]:
        # Plain tuples from SQLite (self.cursor), not sqlite3.Row objects copied into TaskRows:
        # a listing reads every row, and --list is polled.
        if name is None:
            rows = self.cursor(f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY id")
        else:
            named = (_text(name),)
            rows = self.cursor(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE name = ? ORDER BY id", named)
        return list(map(TaskRow._make, rows))

    def finished(self, taskid: int) -> HistoryRow | None:
        rows = self.query(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE taskid = ? ORDER BY id DESC LIMIT 1", (taskid,)
        )
        return HistoryRow._make(rows[0]) if rows else None

    def iter_history(self, only: HistoryFilter | None = None, chunk: int = 1000) -> Iterator[HistoryRow]:
        start = self._history_start(only)
        if start is None:
            return
        after, where, params = start
        while rows := self.query(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE id > ? AND {where} ORDER BY id LIMIT ?",
            (after, *params, chunk),
        ):
            for r in rows:
                yield HistoryRow._make(r)
            after = rows[-1][0]

    def history_json(self, only: HistoryFilter | None = None, chunk: int = 5000) -> Iterator[str]:
        # SQLite joins ``chunk`` rows at a time, so Python handles a few strings, not rows.
        start = self._history_start(only)
        yield "{"
        if start is None:
            yield "}\n"
            return
        after, where, params = start
        sep = ""
        sql = (
            "SELECT max(id), group_concat(entry, ', ') FROM (SELECT id,"
            f" '\"' || id || '\": ' || {_ENTRY_JSON} AS entry FROM history WHERE id > ? AND {where}"
            " ORDER BY id LIMIT ?)"
        )
        while True:
            ((last, text),) = self.cursor(sql, (after, *params, chunk))
            if last is None:
                break
            yield sep + text
            after, sep = last, ", "
        yield "}\n"

    def _history_start(self, only: HistoryFilter | None) -> tuple[int, str, list[Any]] | None:
        """Where a history read starts and what it keeps: (the id it reads after, the SQL
        condition on each row, never empty, and its parameters); None if no row matches.

        The bounds are found first, so that a read costs what it finds, not the history's
        size: the oldest row ended since ``since``, through the index on endtime; then the
        ``last``-th newest matching row, walking back from the newest id. (Put in the page
        query itself, SQLite applies such bounds as a filter on every row from the first.)
        """
        terms: list[str] = ["1"]
        params: list[Any] = []
        after = -1
        if only is not None and only.name is not None:
            terms.append("taskname = ?")
            params.append(storable(only.name))
        if only is not None and only.taskid is not None:  # through the index on taskid
            terms.append("taskid = ?")
            params.append(only.taskid)
        if only is not None and only.since is not None:
            ((first,),) = self.query(
                "SELECT min(id) FROM history INDEXED BY history_endtime WHERE endtime >= ?", (only.since,)
            )
            if first is None:
                return None
            after = first - 1
            # "+endtime": not through the index, so the pages are read in id order from the
            # first; through it, SQLite would sort every matching row again for each page.
            terms.append("+endtime >= ?")
            params.append(only.since)
        if only is not None and only.before is not None:  # a page of an older part (the web's paging)
            terms.append("id < ?")
            params.append(only.before)
        where = " AND ".join(terms)
        if only is not None and only.last is not None:  # the newest N of those, still shown oldest first
            newest = self.query(
                f"SELECT id FROM history WHERE id > ? AND {where} ORDER BY id DESC LIMIT 1 OFFSET ?",
                (after, *params, only.last - 1),
            )
            if newest:
                after = newest[0][0] - 1
        return after, where, params

    def newest_taskid(self) -> int | None:
        rows = self.query(
            "SELECT max(coalesce((SELECT max(id) FROM tasks), 0),"
            " coalesce((SELECT max(taskid) FROM history WHERE typeof(taskid) = 'integer'), 0))"
        )
        return rows[0][0] or None

    def recent_taskids(self, finished: int = 20) -> list[int]:
        live = [r[0] for r in self.query("SELECT id FROM tasks ORDER BY id DESC")]
        done = self.query(
            "SELECT taskid FROM history WHERE typeof(taskid) = 'integer' ORDER BY id DESC LIMIT ?",
            (finished,),
        )
        return live + [r[0] for r in done if r[0] not in live]

    # -- retention ---------------------------------------------------------------------
    def prune(self, keep: int | None = None, before: float | None = None) -> tuple[int, list[str]]:
        # Each deletion is a range of an index (the oldest ids, the oldest end times): its cost
        # is what it deletes, not the history's size, since it runs at every archive.
        count, logs = 0, []
        with self.transaction():
            if keep is not None:  # first, over every row: the newest ``keep`` rows whatever their end
                # count(*) reads the pages of the smallest index, not every row (~3 M instructions
                # at 1M rows); "LIMIT 1 OFFSET keep" from the newest would step through ``keep`` rows.
                ((rows,),) = self.query("SELECT count(*) FROM history")
                if rows > keep:
                    n, placed = self.delete_history(
                        "id <= (SELECT id FROM history ORDER BY id LIMIT 1 OFFSET ?)", (rows - keep - 1,)
                    )
                    count, logs = count + n, logs + placed
            if before is not None:
                n, placed = self.delete_history("endtime < ?", (before,))
                count, logs = count + n, logs + placed
        return count, logs

    def clear_history(self) -> tuple[int, list[str]]:
        return self.delete_history()

    def recreate(self) -> list[str]:
        with self.transaction():
            running = [r[0] for r in self.conn.execute(
                "SELECT id FROM tasks WHERE status != ? ORDER BY id", (str(TaskStatus.RESERVED),)
            )]  # fmt: skip
            if running:
                raise TasksRunning(f"tasks are running ({', '.join(map(str, running))})")
            logs = self._placed_logs("SELECT logfile FROM history WHERE logplaced")
            for table in ("tasks", "feedbacks", "history", "hookruns"):
                self.conn.execute(f"DROP TABLE IF EXISTS {table}")
            self._create()
        return logs

    # -- change notification -----------------------------------------------------------
    def notify_fd(self, taskid: int | None = None) -> int | None:
        # No channel: a descriptor readable at every write of every process would wake every
        # launcher at every other launcher's heartbeat. wait_for_change watches the files.
        return None

    def wait_for_change(self, timeout: float, taskid: int | None = None) -> bool:
        """PRAGMA data_version tells a commit of another connection; between two looks the
        wait sleeps in poll() on an inotify watch of the database and its WAL (every commit
        writes one of them), so a waiting server costs nothing while nothing changes.
        Without inotify it looks every CHANGE_LOOK seconds."""
        import select

        if self._watch is None:  # made before the first look: no commit after it is missed
            from ..filewatch import FileWatch

            real = os.path.realpath(self.path)
            self._watch = FileWatch(real, f"{real}-wal")
        deadline = time.monotonic() + timeout
        # A commit writes the WAL (a file event) before it updates the WAL's index in shared
        # memory (no event), and only then does data_version move: a look woken by the write
        # may come too early. After an event that showed no commit, look again a few times,
        # sooner first, before sleeping until the next event (a few wake-ups per change, none
        # while nothing is written).
        again: float | None = None
        while True:
            version = self._data_version()
            if version != self._seen_version:
                self._seen_version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._watch.fd is None:
                time.sleep(min(CHANGE_LOOK, left))
                continue
            poller = select.poll()
            poller.register(self._watch.fd, select.POLLIN)
            wait = left if again is None else min(left, again)
            if poller.poll(int(wait * 1000) + 1):
                self._watch.changed()  # read the events; data_version says if it was a commit
                again = _RELOOK_FIRST
            elif again is not None:
                again = None if again >= _RELOOK_LAST else again * 4

    def _data_version(self) -> int:
        # PRAGMA data_version changes when another connection commits (never for our own).
        return int(self.query("PRAGMA data_version")[0][0])


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


# history.describe_entry as SQL: SQLite builds each row's JSON, so that --history --json
# streams 100k+ rows a second instead of decoding and re-encoding two JSON columns per row.
_TEXT = "CAST({0} AS TEXT)"
_ENTRY_JSON = (
    "json_object('taskid', taskid, 'taskname', taskname, 'info1', info1, 'info2', info2,"
    " 'info3', info3, 'termsignal', coalesce(termsignal, ''), 'termerror', coalesce(termerror, ''),"
    " 'starttime', starttime, 'endtime', endtime, 'duration', duration,"
    " 'feedback', CASE WHEN coalesce({fb}, '') = '' THEN json('{{}}')"
    " WHEN json_valid({fb}) THEN json({fb}) ELSE {fb} END,"
    " 'exitcode', exitcode, 'pid', pid, 'host', host,"
    " 'command', CASE WHEN json_valid({cmd}) THEN json({cmd}) END, 'logfile', logfile,"
    " 'attempt', coalesce(attempt, 1), 'hook', hook)"
).format(fb=_TEXT.format("feedback"), cmd=_TEXT.format("command"))
_TASK_COLUMNS = ", ".join(TASK_FIELDS.split())
_HISTORY_COLUMNS = ", ".join(HISTORY_FIELDS.split())
CHANGE_LOOK = 0.05  # seconds between two looks at PRAGMA data_version, without inotify
_RELOOK_FIRST, _RELOOK_LAST = 0.01, 0.64  # seconds: looks again after an event (0.01, 0.04, 0.16, 0.64)


def _text(value: Any) -> Any:
    return storable(value) if isinstance(value, str) else value


def _create_private_file(path: str) -> os.stat_result | None:
    """An empty database file, 0600 whatever the umask (SQLite gives its -wal and -shm the
    database's mode); never through a symlink."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # made meanwhile by another command: checked like any other
        return os.stat(path)
    except OSError:  # an unwritable folder...: SQLite's own attempt says why, with a hint
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _check_owner(path: str, what: str) -> None:
    """A file of the database, if it exists, must be ours (or root's, and writable by
    nobody else): SQLite would read whatever another user put there."""
    try:
        st = os.lstat(path)
    except OSError:  # missing; or unreadable, and SQLite says so
        return
    if st.st_uid not in (os.geteuid(), 0):
        raise StoreError(f"{what} {path} belongs to another user ({_user(st.st_uid)}): refused, "
                         "whoever can write it can act as you")  # fmt: skip
    if st.st_uid != os.geteuid() and stat.S_ISREG(st.st_mode) and st.st_mode & 0o022:
        raise StoreError(f"{what} {path} may be written by other users (mode {stat.S_IMODE(st.st_mode):o}): "
                         "refused, whoever can write it can act as you")  # fmt: skip


def _make_private_folders(folder: str) -> None:
    """``os.makedirs(folder, 0o700)``, the missing parents 0o700 too (makedirs gives them
    0o777 less the umask: world-writable under umask 000)."""
    if os.path.isdir(folder):
        return
    parent = os.path.dirname(folder)
    if parent and parent != folder:
        _make_private_folders(parent)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        if not os.path.isdir(folder):
            raise


def _store_error(e: sqlite3.Error, path: str) -> StoreError:
    text = str(e)
    if isinstance(e, sqlite3.DatabaseError) and "not a database" in text:
        return NotADatabase(f"{path} is not a taskwatcher database (not an SQLite file)")
    return StoreError(f"database {path}: {text}{_hint(text, path)}")


def _out_of_file_descriptors() -> bool:
    try:
        fd = os.open("/", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        import errno

        return e.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


def _hint(text: str, path: str) -> str:
    """Why SQLite's terse "disk I/O error" or "unable to open" happened, where it can be told."""
    folder = os.path.dirname(path)
    if "disk I/O error" in text or "disk is full" in text:
        import resource

        with contextlib.suppress(OSError):
            if os.statvfs(folder).f_bavail == 0:
                return f" (no space left in {folder})"
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return f" (file size limit: {limit} bytes)"
    elif "unable to open" in text:
        if _out_of_file_descriptors():
            return " (too many open files: see ulimit -n)"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f" (its folder {folder} is not writable: SQLite keeps its -wal and -shm files there)"
        if os.path.exists(path) and not os.access(path, os.R_OK):
            return " (no permission to read it)"
    return ""


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
