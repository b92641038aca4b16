"""The PostgreSQL backend of the store: one database shared by launchers on many hosts.

Same meaning as the SQLite backend (store/sqlite.py), in PostgreSQL's terms:

- the tables live in a schema of their own, ``taskwatcher``, whose ``schema_version``
  table says which version of them it is (upgrades are applied under an advisory lock);
- task ids come from an identity column: never handed out twice, not even after the
  task is in history or pruned (only :meth:`recreate` restarts them);
- a named reservation or claim takes ``pg_advisory_xact_lock`` on the name first, so
  "is the name held?" and the insert are one step for every host (unique names);
- every write of the tasks table notifies channel ``taskwatcher`` (a statement trigger:
  :meth:`wait_for_change`), and a stop request notifies ``taskwatcher_task_ID`` (the
  task's own launcher, wherever it runs, listens there). NOTIFY is a speed-up only:
  a listener that reconnects re-reads, and the launcher re-reads at each lease renewal;
- liveness across hosts is a lease in the row (``leaseuntil``), written and compared
  with the server's ``now()``, never a host's clock.

The connection is in autocommit mode (LISTEN takes effect at once); each operation is
one explicit transaction. A connection is never used across fork: whoever forks opens
its own. psycopg is imported by this module only, and this module only for a
``postgresql://`` or ``postgres://`` database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import time
from collections.abc import Iterator, Sequence

import psycopg

from ..errors import NameTaken, NoDatabase, NotADatabase, StoreError, TasksRunning
from ..logs import Logger
from ..model import HISTORY_FIELDS, HOST_LOST, TASK_FIELDS, HistoryRow, TaskRow
from ..status import HOLDS_SLOT, WAITING, TaskStatus, check_transition, sources
from .base import TaskStore, claimed_fields
from .sqlite import _make_private_folders, storable, xdg_base

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from ..feedback import FeedbackState
    from ..model import Claim, HistoryFilter, PendingHook, Waiter

log = Logger(__name__)

SCHEMA = "taskwatcher"
SCHEMA_VERSION = 4  # of the PostgreSQL tables (SQLite's versions are its own); 2: the line; 3: hookruns;
# 4: a lease's renewal is not announced as a change
CHANNEL = "taskwatcher"  # every change of the tasks table
LEASE = 60.0  # seconds a launcher's lease lasts, by default
RENEW = 10.0  # seconds between two renewals, by default
CONNECT_TIMEOUT = 10  # seconds
# A session left inside a transaction this long is ended by the server, its locks let go:
# every transaction of ours is a few statements sent back to back, so one this idle is a
# client cut off mid-way (a stalled link), whose row locks would hold every other host's
# archive of that task for hours (the server's TCP keepalive) instead of seconds.
IDLE_IN_TRANSACTION = 10  # seconds
_SCHEMA_LOCK = 0x54574348  # "TWCH": the advisory lock held while the schema is made or upgraded
# The first key of the two-key advisory lock a group's take of a slot holds (two-key locks
# are a key space of their own: a group's lock never meets a name's or the schema's).
_GROUP_LOCK = 0x5457

_HOOKRUNS = """CREATE TABLE IF NOT EXISTS {schema}hookruns (
        historyid BIGINT PRIMARY KEY,     -- the history row whose finish hooks these are
        orders TEXT NOT NULL,             -- JSON: the hooks, their time limit, their environment
        running INTEGER NOT NULL DEFAULT 0, -- 1 once a runner has claimed them
        pid BIGINT, start BIGINT, bootid TEXT, host TEXT, pidns BIGINT  -- who holds them
    )"""
# Every change of the tasks table is announced on CHANNEL, but a lease's renewal: it changes
# nothing anyone shows, and every launcher renews every few seconds (a dashboard or a
# --wait listening would wake, and read every row, as often as all hosts' launchers renew).
_QUIET = "taskwatcher.quiet"  # set (for one transaction) by what need not be announced
_NOTIFY_CHANGE = f"""CREATE OR REPLACE FUNCTION {{schema}}notify_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF current_setting('{_QUIET}', true) IS DISTINCT FROM 'on' THEN
                PERFORM pg_notify('{CHANNEL}', '');
            END IF;
            RETURN NULL;
        END $$"""
_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    """CREATE TABLE tasks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT, info1 TEXT, info2 TEXT, info3 TEXT,
        pid BIGINT, status TEXT, feedback INTEGER NOT NULL DEFAULT 0,
        reservetime BIGINT, starttime BIGINT, duration BIGINT, lastupdate BIGINT,
        timeout DOUBLE PRECISION,
        uniq INTEGER NOT NULL DEFAULT 0,
        expiretime DOUBLE PRECISION,
        pgid BIGINT, procstart BIGINT,
        bootid TEXT, host TEXT,
        launcherpid BIGINT, launcherstart BIGINT, pidns BIGINT,
        command TEXT, feedpath TEXT, logfile TEXT, grace DOUBLE PRECISION,
        started DOUBLE PRECISION, heartbeat DOUBLE PRECISION,
        stopreason TEXT, token TEXT,
        logplaced INTEGER NOT NULL DEFAULT 0,
        leaseuntil TIMESTAMPTZ,           -- the server's clock: when the launcher's lease runs out
        queue TEXT, slots INTEGER,        -- its group, and how many of the group may run at once
        notbefore DOUBLE PRECISION,       -- a queued task is not started before (a retry's delay)
        attempt INTEGER NOT NULL DEFAULT 1,
        spec TEXT,                        -- JSON: what starting it needs (argv, folder, options)
        environ TEXT                      -- JSON: the environment it was queued with (not in TaskRow)
    )""",
    """CREATE TABLE feedbacks (
        id BIGINT PRIMARY KEY,
        feedback TEXT, lastupdate BIGINT,
        dev BIGINT, ino NUMERIC, "offset" BIGINT NOT NULL DEFAULT 0, lines BIGINT NOT NULL DEFAULT 0,
        fingerprint TEXT
    )""",
    """CREATE TABLE history (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        taskid BIGINT, taskname TEXT, info1 TEXT, info2 TEXT, info3 TEXT,
        termsignal TEXT, termerror TEXT,
        starttime BIGINT, endtime BIGINT, duration BIGINT, feedback TEXT,
        exitcode INTEGER, pid BIGINT, host TEXT, command TEXT, logfile TEXT,
        reservetime BIGINT, timeout DOUBLE PRECISION,
        logplaced INTEGER NOT NULL DEFAULT 0,
        token TEXT,                       -- so that the real end of a task archived as lost replaces it
        attempt INTEGER NOT NULL DEFAULT 1,
        hook TEXT                         -- the finish hooks' outcome ('pending' until they have run)
    )""",
    # Names are looked up by equality only: hash indexes, which hold a name of any length
    # (a B-tree entry must fit in a third of a page: a name of some 2.7 kB or more was refused).
    "CREATE INDEX tasks_name ON tasks USING hash (name)",
    "CREATE INDEX history_taskid ON history(taskid)",
    "CREATE INDEX history_taskname ON history USING hash (taskname)",
    "CREATE INDEX tasks_queue ON tasks(queue)",
    _NOTIFY_CHANGE.format(schema=""),
    """CREATE TRIGGER tasks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tasks
        FOR EACH STATEMENT EXECUTE FUNCTION notify_change()""",
    _HOOKRUNS.format(schema=""),
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION})",
)
# Upgrades from each older version of these tables (applied in order, in one transaction).
_UPGRADES: dict[int, tuple[str, ...]] = {
    # 1 -> 2, the line (queues, dependencies, retries, finish hooks)
    1: (
        f"ALTER TABLE {SCHEMA}.tasks ADD COLUMN IF NOT EXISTS queue TEXT,"
        " ADD COLUMN IF NOT EXISTS slots INTEGER, ADD COLUMN IF NOT EXISTS notbefore DOUBLE PRECISION,"
        " ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 1,"
        " ADD COLUMN IF NOT EXISTS spec TEXT, ADD COLUMN IF NOT EXISTS environ TEXT",
        f"ALTER TABLE {SCHEMA}.history ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 1,"
        " ADD COLUMN IF NOT EXISTS hook TEXT",
        f"CREATE INDEX IF NOT EXISTS tasks_queue ON {SCHEMA}.tasks(queue)",
    ),
    # 2 -> 3, finish hooks' orders kept with their end (a crash before their runner starts loses none)
    2: (_HOOKRUNS.format(schema=f"{SCHEMA}."),),
    # 3 -> 4, a lease's renewal not announced; the names' B-tree indexes of a database made
    # before they were hash indexes made again as hash indexes (a long name was refused)
    3: (
        _NOTIFY_CHANGE.format(schema=f"{SCHEMA}."),
        *(
            f"""DO $$ BEGIN
                IF EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = '{SCHEMA}' AND indexname = '{index}'
                           AND indexdef NOT LIKE '%USING hash%') THEN
                    DROP INDEX {SCHEMA}.{index};
                    CREATE INDEX {index} ON {SCHEMA}.{table} USING hash ({column});
                END IF;
            END $$"""
            for index, table, column in (
                ("tasks_name", "tasks", "name"),
                ("history_taskname", "history", "taskname"),
            )
        ),
    ),
}
# Finish hooks' orders still held by one identity (pid, start, bootid, host, pidns).
_HELD_BY = (
    "pid IS NOT DISTINCT FROM %s AND start IS NOT DISTINCT FROM %s AND bootid IS NOT DISTINCT FROM %s"
    " AND host IS NOT DISTINCT FROM %s AND pidns IS NOT DISTINCT FROM %s"
)

_TASK_COLUMNS = ", ".join(TASK_FIELDS.split())
_HISTORY_COLUMNS = ", ".join(HISTORY_FIELDS.split())
# A task with a process: neither waiting in line nor reserved.
_RUNNING = f"status NOT IN ({', '.join(repr(str(s)) for s in WAITING)})"
# A task whose launcher renews a lease: a running one, or a queued one whose foreground
# launcher waits in line.
_LEASED = f"({_RUNNING} OR (status = 'QUEUED' AND launcherpid IS NOT NULL))"


def is_url(db: object) -> bool:
    """Whether ``db`` names a PostgreSQL database (not an SQLite file)."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def public_url(url: str) -> str:
    """The URL without its password (for messages, and what keys the host-local folders)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        raise StoreError(f"not a PostgreSQL connection string: {_one_line(e)}") from None
    params.pop("password", None)
    user, host, port, dbname = (params.pop(k, None) for k in ("user", "host", "port", "dbname"))
    where = f"{user + '@' if user else ''}{'' if host is None or host.startswith('/') else host}"
    where += f":{port}" if port else ""
    rest = make_conninfo("", **({"host": host} if host and host.startswith("/") else {}), **params)
    query = "&".join(part.replace("'", "") for part in rest.split()) if rest else ""
    return f"postgresql://{where}/{dbname or ''}" + (f"?{query}" if query else "")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class PostgresStore(TaskStore):
    """A taskwatcher database on a PostgreSQL server, opened (and its tables made or
    upgraded) on construction; ``create=False`` raises
    :class:`~taskwatcher.errors.NoDatabase` where the tables do not exist, making nothing.

    Its ``key`` is the URL without password; its host-local folders are under the state
    folder, ``$XDG_STATE_HOME/taskwatcher/postgres/DBNAME-HASH-logs`` (HASH from the key).
    """

    shared = True  # launchers on other hosts use it too: liveness across hosts is by lease

    def __init__(self, url: str, *, create: bool = True, bound: float | None = None) -> None:
        self.url = self.target = url
        self.bound = bound  # (before connecting: the connection's opening is bounded too)
        self.key = self.path = public_url(url)
        self._listening: set[str] = set()
        self._pid = os.getpid()
        self.conn = self._connect(create)
        try:
            self._prepare(create)
        except BaseException:
            self.conn.close()
            raise

    # -- the store itself ------------------------------------------------------------
    def local_folder(self, suffix: str) -> str:
        state = xdg_base("XDG_STATE_HOME", os.path.join(".local", "state"))
        parent = os.path.join(state, "taskwatcher", "postgres")
        with contextlib.suppress(OSError):  # the folder itself is made (and checked) by its user
            _make_private_folders(parent)
        from psycopg.conninfo import conninfo_to_dict

        dbname = str(conninfo_to_dict(self.url).get("dbname") or "postgres")
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:12]
        return os.path.join(parent, f"{storable(dbname).replace(os.sep, '_')}-{digest}-{suffix}")

    def close(self) -> None:
        if os.getpid() != self._pid:
            return  # a forked copy: closing would end the parent's session
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    # -- opening ---------------------------------------------------------------------
    def _connect(self, create: bool = True) -> psycopg.Connection[Any]:
        try:
            link = _link_defaults(self.url)
            if self.bound is not None and "connect_timeout" in link:  # libpq's least is 2 s
                link["connect_timeout"] = max(2, int(self.bound + 0.999))
            conn = psycopg.connect(self.url, autocommit=True, **link)
        except psycopg.Error as e:
            if not create and "does not exist" in str(e) and "database" in str(e):
                # a read never creates anything: a database the server lacks is "no database"
                raise NoDatabase(f"no database exists at {self.key}") from None
            raise StoreError(f"cannot connect to database {self.key}: {_one_line(e)}") from None
        try:  # (one round trip for both)
            idle = f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}s'"
            conn.execute(f"SET search_path TO {SCHEMA}; {idle}")
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"database {self.key}: {_one_line(e)}") from None
        for channel in self._listening:
            conn.execute(f'LISTEN "{channel}"')
        return conn

    def _version(self) -> int | None:
        # The catalog read as a table (a fresh snapshot each statement), not by to_regclass,
        # whose cached lookups may not have seen another host's schema committed meanwhile.
        names = {
            r[0]
            for r in self._query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname IN ('schema_version', 'tasks')",
                (SCHEMA,),
            )
        }
        if "schema_version" not in names:
            if "tasks" in names:
                raise NotADatabase(f"{self.key} is not a taskwatcher database (schema {SCHEMA} is foreign)")
            return None
        return int(self._query(f"SELECT max(version) FROM {SCHEMA}.schema_version")[0][0])

    def _prepare(self, create: bool) -> None:
        version = self._version()
        if version == SCHEMA_VERSION:
            return
        if version is None and not create:
            raise NoDatabase(f"no database exists at {self.key}")
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.key} has schema {version}, newer than this taskwatcher's "
                f"{SCHEMA_VERSION}: upgrade taskwatcher"
            )
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            version = self._version()  # another host may have made it meanwhile
            if version is None:
                for ddl in _DDL:
                    conn.execute(ddl)
            else:
                while version < SCHEMA_VERSION:
                    for ddl in _UPGRADES[version]:
                        conn.execute(ddl)
                    version += 1
                conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
        try:  # looked up again, now that the schema exists
            self.conn.execute(f"SET search_path TO {SCHEMA}")
        except psycopg.Error as e:
            raise self._error(e) from None

    # -- backend-level access ------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction; a failure of the server or the link becomes a StoreError (the next
        operation connects again)."""
        self._usable()
        try:
            with self._bounded(), self.conn.transaction():
                yield self.conn
        except psycopg.Error as e:
            raise self._error(e) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._usable()
        try:
            with self._bounded():
                return self.conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            raise self._error(e) from None

    bound: float | None = None  # seconds an operation may take before its link is cut (None: no bound)

    def bound_operations(self, seconds: float | None) -> None:
        self.bound = seconds

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """An operation that outlasts ``bound`` has its socket shut down: a link that stalls
        with TCP still alive (a pooler or proxy that stopped forwarding) then fails the
        operation, instead of holding a launcher's loop (and its task's lease) forever."""
        if self.bound is None:
            yield
            return
        import threading

        timer = threading.Timer(self.bound, _shut_down, (self.conn,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _usable(self) -> None:
        """Connect again if the last connection broke (a restarted server, a cut link)."""
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()
            self.reconnected = True

    reconnected = False  # set when a broken connection was replaced: notifications may be lost

    def _error(self, e: psycopg.Error) -> StoreError:
        return StoreError(f"database {self.key}: {_one_line(e)}")

    # -- tasks -----------------------------------------------------------------------
    def _lock_name(self, conn: psycopg.Connection[Any], name: str) -> None:
        # Every host's check-then-insert of one name is serialised: unique names are atomic.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))

    def _name_holder(
        self, conn: psycopg.Connection[Any], name: str, other_than: int | None = None
    ) -> int | None:
        row = conn.execute(
            "SELECT id FROM tasks WHERE name = %s AND id IS DISTINCT FROM %s ORDER BY id LIMIT 1",
            (name, other_than),
        ).fetchone()
        return row[0] if row else None

    def _reserve(
        self, conn: psycopg.Connection[Any], name: str | None, infos: Sequence[str | None], unique: bool,
        ttl: float,
    ) -> int:  # fmt: skip
        if name is not None:
            name = storable(name)
            self._lock_name(conn, name)
            if unique:
                holder = self._name_holder(conn, name)
                if holder is not None:
                    raise NameTaken(name, holder)
        t = time.time()
        row = conn.execute(
            "INSERT INTO tasks (name, info1, info2, info3, status, reservetime, expiretime, uniq)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (name, *map(_text, infos), str(TaskStatus.RESERVED), int(t), t + ttl, int(unique)),
        ).fetchone()
        return int(row[0])

    def reserve(self, name: str | None, infos: Sequence[str | None], unique: bool, ttl: float) -> int:
        with self.transaction() as conn:
            return self._reserve(conn, name, infos, unique, ttl)

    def claim(self, taskid: int | None, launch: Claim) -> TaskRow:
        from ..errors import ReservationError

        refusal: str | None = None
        with self.transaction() as conn:
            t = time.time()
            if taskid is None:
                name = launch.name or launch.default_name
                try:
                    taskid = self._reserve(conn, name, launch.infos, launch.unique, 0.0)
                except NameTaken as e:
                    refusal = f"not started: {e}"
                row = None if refusal else self._task(conn, taskid, lock=True)
            else:
                row = self._task(conn, taskid, lock=True)
                if row is None or row.status != TaskStatus.RESERVED:
                    what = "is running" if row is not None else "is not reserved"
                    if row is None and self._finished(conn, taskid) is not None:
                        what = "has already run"
                    refusal = f"task {taskid} {what}: nothing started"
                elif row.expiretime is not None and row.expiretime <= t:
                    refusal = f"the reservation of task {taskid} has expired: nothing started"
                elif row.uniq and launch.name and row.name and launch.name != row.name:
                    refusal = f"task {taskid} holds the name {row.name!r} uniquely: --name cannot change it"
                else:
                    name = storable(launch.name or row.name or launch.default_name)
                    if row.uniq or launch.unique:
                        self._lock_name(conn, name)
                        holder = self._name_holder(conn, name, taskid)
                        if holder is not None:
                            refusal = f"not started: name {name!r} is held by task {holder}"
            if refusal is None:
                assert row is not None and taskid is not None
                check_transition(row.status, TaskStatus.RUNNING)
                self._claim_row(conn, row, launch, storable(name), t)
                claimed = self._task(conn, taskid)
        if refusal is not None:  # raised outside the transaction: it commits nothing either way
            raise ReservationError(refusal)
        assert claimed is not None
        return claimed

    def _claim_row(
        self, conn: psycopg.Connection[Any], row: TaskRow, launch: Claim, name: str, t: float
    ) -> None:
        fields = claimed_fields(row, launch, name, t)
        sets = ", ".join(f"{k} = %s" for k in fields)
        # The task's own lease from the claim on: its launcher counts on it before its first renewal.
        lease = LEASE if launch.lease is None else launch.lease
        conn.execute(
            f"UPDATE tasks SET {sets}, leaseuntil = now() + make_interval(secs => %s) WHERE id = %s",
            (*map(_text, fields.values()), lease, row.id),
        )

    def record_spawn(
        self, taskid: int, token: str, pid: int, procstart: int, command: str, launcherpid: int,
        launcherstart: int | None,
    ) -> TaskRow | None:  # fmt: skip
        with self.transaction() as conn:
            rows = conn.execute(
                "UPDATE tasks SET pid = %s, command = %s, procstart = %s, launcherpid = %s,"
                f" launcherstart = %s WHERE id = %s AND token = %s RETURNING {_TASK_COLUMNS}",
                (pid, _text(command), procstart, launcherpid, launcherstart, taskid, token),
            ).fetchall()
        return TaskRow._make(rows[0]) if rows else None

    def record_status(
        self, taskid: int, token: str, status: str, heartbeat: float, feedback: FeedbackState | None = None
    ) -> bool:
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE tasks SET status = %s, heartbeat = %s, lastupdate = %s WHERE id = %s AND token = %s"
                " AND status = ANY(%s)",
                (str(status), heartbeat, int(heartbeat), taskid, token, [str(s) for s in sources(status)]),
            )
            if cur.rowcount != 1:
                return False
            if feedback is not None:  # the row is locked by the update: one writer at a time
                self._write_feedback(conn, taskid, feedback)
            return True

    def record_observed(self, observed: Sequence[tuple[int, int | None, str, int | None]]) -> int:
        with self.transaction() as conn:
            for taskid, duration, status, lastupdate in observed:
                conn.execute(
                    "UPDATE tasks SET duration = %s, status = %s, lastupdate = %s"
                    f" WHERE id = %s AND {_RUNNING}",
                    (duration, status, lastupdate, taskid),
                )
        return len(observed)

    def request_stop(self, taskid: int, reason: str, notify: bool = True) -> TaskRow | None:
        with self.transaction() as conn:
            rows = conn.execute(
                f"UPDATE tasks SET stopreason = %s WHERE id = %s AND {_RUNNING} RETURNING {_TASK_COLUMNS}",
                (_text(reason), taskid),
            ).fetchall()
            if rows and notify:  # sent at commit, to the task's own launcher wherever it runs
                conn.execute("SELECT pg_notify(%s, %s)", (task_channel(taskid), "stop"))
        return TaskRow._make(rows[0]) if rows else None

    def cancel_reservation(self, taskid: int) -> bool:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM tasks WHERE id = %s AND status = 'RESERVED'", (taskid,)).rowcount:
                conn.execute("DELETE FROM feedbacks WHERE id = %s", (taskid,))
                return True
            return False

    def expire_reservations(self, now: float) -> list[int]:
        due = "status = 'RESERVED' AND expiretime IS NOT NULL AND expiretime <= %s"
        if not self._query(f"SELECT 1 FROM tasks WHERE {due} LIMIT 1", (now,)):
            return []  # the common case only reads
        with self.transaction() as conn:
            # A queued task's reservation (its starter died before its launcher claimed it)
            # goes back to the line, in its place: it is never dropped.
            conn.execute(
                f"UPDATE tasks SET status = %s, expiretime = NULL WHERE {due} AND spec IS NOT NULL",
                (str(TaskStatus.QUEUED), now),
            )
            ids = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM tasks WHERE status = 'RESERVED' AND expiretime IS NOT NULL"
                    " AND expiretime <= %s RETURNING id",
                    (now,),
                )
            ]
            if ids:
                conn.execute("DELETE FROM feedbacks WHERE id = ANY(%s)", (ids,))
        return sorted(ids)

    def finish(
        self, taskid: int, token: str, *, termsignal: str, termerror: str, exitcode: int | None,
        feedback: dict[str, str], endtime: float | None = None, hook: str | None = None,
        retry_at: float | None = None, keep_waiter: bool = False, hook_orders: str | None = None,
        holder: Waiter | None = None, lapsed: bool = False,
    ) -> int | None:  # fmt: skip
        from ..crash import crash_point

        text = json.dumps(feedback, ensure_ascii=False)
        # A lost task's archive holds only while its lease is still run out (its launcher may renew).
        only = " AND leaseuntil < now()" if lapsed else ""
        with self.transaction() as conn:
            if retry_at is None:
                # The delete is the compare-and-set: of two finishes, one deletes the row. (A row
                # without a token, one no launcher claimed, is finished by None: IS NOT DISTINCT.)
                rows = conn.execute(
                    "DELETE FROM tasks WHERE id = %s AND token IS NOT DISTINCT FROM %s"
                    f"{only} RETURNING {_TASK_COLUMNS}",
                    (taskid, token),
                ).fetchall()
                task = TaskRow._make(rows[0]) if rows else None
            else:
                # The row stays (back in line): locked, so that of two finishes one changes it
                # (the other then finds a fresh token).
                rows = conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %s AND token = %s{only} FOR UPDATE",
                    (taskid, token),
                ).fetchall()
                task = TaskRow._make(rows[0]) if rows else None
            if task is None:
                if lapsed:
                    return None  # renewed meanwhile, or archived by another: nothing to replace
                return self._replace_lost(
                    conn, taskid, token, termsignal, termerror, exitcode, feedback, endtime
                )
            hid = self._archive(conn, task, termsignal, termerror, exitcode, text, endtime, hook)
            if retry_at is not None:
                self._requeue(conn, task, retry_at, keep_waiter)
            if hook_orders is not None:
                conn.execute(
                    "INSERT INTO hookruns (historyid, orders, pid, start, bootid, host, pidns)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (hid, hook_orders, *(holder or (None,) * 5)),
                )
            crash_point("archiving")  # inside the transaction: the history row is not committed
            return int(hid)

    def _requeue(
        self, conn: psycopg.Connection[Any], task: TaskRow, retry_at: float, keep_waiter: bool
    ) -> None:
        """Put a task whose attempt was just archived back in line for its next attempt: QUEUED,
        not before ``retry_at``, a fresh token (the last attempt's writers are refused), no
        process, no lease; its launcher's identity kept only for a foreground waiter."""
        check_transition(task.status, TaskStatus.QUEUED)
        fields: dict[str, Any] = dict(
            status=str(TaskStatus.QUEUED), attempt=(task.attempt or 1) + 1, notbefore=retry_at,
            token=os.urandom(8).hex(), pid=None, procstart=None, started=None, starttime=None,
            duration=None, heartbeat=None, lastupdate=None, stopreason=None, expiretime=None,
            feedpath=None, feedback=0, leaseuntil=None,
        )  # fmt: skip
        if not keep_waiter:
            fields.update(dict.fromkeys(("launcherpid", "launcherstart", "bootid", "host", "pidns")))
        sets = ", ".join(f"{k} = %s" for k in fields)
        conn.execute(f"UPDATE tasks SET {sets} WHERE id = %s", (*fields.values(), task.id))
        if keep_waiter:  # its launcher waits in line for the next attempt: a lease, as at enqueue
            conn.execute("UPDATE tasks SET leaseuntil = now() + make_interval(secs => %s) WHERE id = %s",
                         (LEASE, task.id))  # fmt: skip

    def _replace_lost(
        self, conn: psycopg.Connection[Any], taskid: int, token: str, termsignal: str, termerror: str,
        exitcode: int | None, feedback: dict[str, str], endtime: float | None,
    ) -> int | None:  # fmt: skip
        """The real end of a task another host archived as lost (its lease ran out while
        the link was cut) takes the place of that guess: one history row, never two. What
        that archive started stays as it is: its finish hooks ran (or run) once, for that
        end (``hook`` is kept), and a retry it put in line is the task's next attempt."""
        end = time.time() if endtime is None else endtime
        row = conn.execute(
            "UPDATE history SET termsignal = %s, termerror = %s, exitcode = %s, feedback = %s,"
            " endtime = %s, duration = CASE WHEN starttime IS NULL THEN NULL ELSE round(%s - starttime) END"
            " WHERE taskid = %s AND token = %s AND termerror = %s RETURNING id",
            (_text(termsignal), _text(termerror), exitcode, json.dumps(feedback, ensure_ascii=False),
             int(end), end, taskid, token, HOST_LOST),
        ).fetchone()  # fmt: skip
        return None if row is None else int(row[0])

    def _archive(
        self, conn: psycopg.Connection[Any], task: TaskRow, termsignal: str, termerror: str,
        exitcode: int | None, feedback: str, endtime: float | None, hook: str | None = None,
    ) -> int:  # fmt: skip
        """The history row of a task just deleted or put back in line (inside its
        transaction); its id."""
        conn.execute("DELETE FROM feedbacks WHERE id = %s", (task.id,))
        end = time.time() if endtime is None else endtime
        start = task.started if task.started is not None else task.starttime
        row = conn.execute(
            "INSERT INTO history (taskid, taskname, info1, info2, info3, termsignal, termerror,"
            " starttime, endtime, duration, feedback, exitcode, pid, host, command, logfile,"
            " reservetime, timeout, logplaced, token, attempt, hook) VALUES"
            " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (
                task.id, task.name, task.info1, task.info2, task.info3, _text(termsignal),
                _text(termerror), task.starttime, int(end),
                round(end - start) if start is not None else None,
                feedback, exitcode, task.pid, task.host,
                task.command, task.logfile, task.reservetime, task.timeout, task.logplaced, task.token,
                task.attempt or 1, _text(hook),
            ),
        ).fetchone()  # fmt: skip
        return int(row[0])

    # -- the line: queued tasks ----------------------------------------------------------
    def enqueue(  # type: ignore[override]
        self, name: str | None, infos: Sequence[str | None], unique: bool, *, queue: str | None,
        slots: int | None, spec: str, environ: str | None = None, command: str | None = None,
        waiter: Waiter | None = None,
    ) -> int:  # fmt: skip
        with self.transaction() as conn:
            if name is not None:
                name = storable(name)
                self._lock_name(conn, name)  # as a reservation: the check and the insert one step
                if unique:
                    holder = self._name_holder(conn, name)
                    if holder is not None:
                        raise NameTaken(name, holder)
            w = waiter or (None,) * 5
            # A foreground launcher waiting in line holds a lease on its row, as a running one
            # does (the default's until its first renewal): if its host dies, the row leaves the line.
            lease = None if waiter is None else LEASE
            row = conn.execute(
                "INSERT INTO tasks (name, info1, info2, info3, status, reservetime, uniq, queue, slots,"
                " spec, environ, command, token, launcherpid, launcherstart, bootid, host, pidns, leaseuntil)"
                f" VALUES ({', '.join(['%s'] * 18)}, now() + make_interval(secs => %s)) RETURNING id",
                (name, *map(_text, infos), str(TaskStatus.QUEUED), int(time.time()), int(unique),
                 _text(queue), slots, spec, environ, _text(command), os.urandom(8).hex(), *w, lease),
            ).fetchone()  # fmt: skip
            return int(row[0])

    def take_queued(self, taskid: int, ttl: float) -> bool:
        check_transition(TaskStatus.QUEUED, TaskStatus.RESERVED)
        holding = [str(s) for s in HOLDS_SLOT]
        with self.transaction() as conn:
            row = conn.execute("SELECT queue FROM tasks WHERE id = %s", (taskid,)).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                # Takers of one group, on every host, take turns: the count and the take are one
                # step (each statement after the lock sees what the last taker committed).
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_GROUP_LOCK, row[0]))
            row = conn.execute(
                "SELECT queue, slots, notbefore FROM tasks WHERE id = %s AND status = %s FOR UPDATE",
                (taskid, str(TaskStatus.QUEUED)),
            ).fetchone()
            t = time.time()
            if row is None or (row[2] is not None and row[2] > t):
                return False
            queue, slots = row[0], row[1]
            if queue is not None:
                busy = conn.execute(
                    "SELECT count(*) FROM tasks WHERE queue = %s AND status = ANY(%s)", (queue, holding)
                ).fetchone()[0]
                if busy >= max(1, slots or 1):
                    return False
            conn.execute(
                "UPDATE tasks SET status = %s, expiretime = %s WHERE id = %s",
                (str(TaskStatus.RESERVED), t + ttl, taskid),
            )
            return True

    def task_environment(self, taskid: int) -> str | None:
        rows = self._query("SELECT environ FROM tasks WHERE id = %s", (taskid,))
        return rows[0][0] if rows else None

    def record_hook(self, historyid: int, outcome: str, holder: Waiter | None = None) -> bool:
        with self.transaction() as conn:
            if holder is not None:
                cur = conn.execute(
                    f"DELETE FROM hookruns WHERE historyid = %s AND {_HELD_BY}", (historyid, *holder)
                )
                if not cur.rowcount:
                    return False
            else:
                conn.execute("DELETE FROM hookruns WHERE historyid = %s", (historyid,))
            cur = conn.execute("UPDATE history SET hook = %s WHERE id = %s", (_text(outcome), historyid))
            return cur.rowcount == 1

    def pending_hooks(self) -> list[PendingHook]:
        from ..model import PendingHook, Waiter

        rows = self._query(
            "SELECT historyid, running, pid, start, bootid, host, pidns FROM hookruns ORDER BY 1"
        )
        return [PendingHook(int(r[0]), bool(r[1]), Waiter(*r[2:])) for r in rows]

    def take_hook(
        self, historyid: int, holder: Waiter, *, run: bool, was: Waiter | None = None
    ) -> str | None:
        held = "" if run else f" AND {_HELD_BY}"
        params = (historyid,) if run else (historyid, *(was or (None,) * 5))
        with self.transaction() as conn:
            # The update is the compare-and-set: of two takers, one changes the row.
            row = conn.execute(
                "UPDATE hookruns SET running = %s, pid = %s, start = %s, bootid = %s, host = %s, pidns = %s"
                f" WHERE historyid = %s AND running = 0{held} RETURNING orders",
                (int(run), *holder, *params),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- the task's latest feedback ----------------------------------------------------
    def feedback_state(self, taskid: int) -> FeedbackState | None:
        return _feedback_state(self._query(_FEEDBACK_SELECT, (taskid,)))

    def _write_feedback(self, conn: psycopg.Connection[Any], taskid: int, state: FeedbackState) -> None:
        from ..crash import crash_point

        conn.execute(
            'INSERT INTO feedbacks (id, feedback, lastupdate, dev, ino, "offset", lines, fingerprint)'
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " feedback = excluded.feedback, lastupdate = excluded.lastupdate, dev = excluded.dev,"
            ' ino = excluded.ino, "offset" = excluded."offset", lines = excluded.lines,'
            " fingerprint = excluded.fingerprint",
            (taskid, json.dumps(state.data, ensure_ascii=False), int(time.time()), state.dev, state.ino,
             state.offset, state.lines, state.fingerprint),
        )  # fmt: skip
        crash_point("feedback-saving")  # the new offset and data not committed

    # -- reads -------------------------------------------------------------------------
    def _task(self, conn: psycopg.Connection[Any], taskid: int, lock: bool = False) -> TaskRow | None:
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %s" + (" FOR UPDATE" if lock else "")
        row = conn.execute(sql, (taskid,)).fetchone()
        return TaskRow._make(row) if row else None

    def _finished(self, conn: psycopg.Connection[Any], taskid: int) -> HistoryRow | None:
        row = conn.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE taskid = %s ORDER BY id DESC LIMIT 1", (taskid,)
        ).fetchone()
        return HistoryRow._make(row) if row else None

    def task(self, taskid: int) -> TaskRow | None:
        rows = self._query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %s", (taskid,))
        return TaskRow._make(rows[0]) if rows else None

    def tasks(self, name: str | None = None) -> list[TaskRow]:
        if name is None:
            rows = self._query(f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY id")
        else:
            rows = self._query(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE name = %s ORDER BY id", (storable(name),)
            )
        return [TaskRow._make(r) for r in rows]

    def finished(self, taskid: int) -> HistoryRow | None:
        rows = self._query(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE taskid = %s ORDER BY id DESC LIMIT 1", (taskid,)
        )
        return HistoryRow._make(rows[0]) if rows else None

    def iter_history(self, only: HistoryFilter | None = None, chunk: int = 1000) -> Iterator[HistoryRow]:
        where, params = _history_where(only)
        after = -1
        while rows := self._query(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE id > %s AND {where} ORDER BY id LIMIT %s",
            (after, *params, chunk),
        ):
            for r in rows:
                yield HistoryRow._make(r)
            after = rows[-1][0]

    def history_json(self, only: HistoryFilter | None = None, chunk: int = 5000) -> Iterator[str]:
        # The plain way: describe_entry of each row (one shape, whatever the backend).
        from ..history import describe_entry

        yield "{"
        sep = ""
        batch: list[str] = []
        for row in self.iter_history(only, chunk):
            entry = json.dumps(describe_entry(row), ensure_ascii=False, separators=(",", ":"))
            batch.append(f'"{row.id}": {entry}')
            if len(batch) >= chunk:
                yield sep + ", ".join(batch)
                sep, batch = ", ", []
        if batch:
            yield sep + ", ".join(batch)
        yield "}\n"

    def newest_taskid(self) -> int | None:
        rows = self._query(
            "SELECT greatest(coalesce((SELECT max(id) FROM tasks), 0),"
            " coalesce((SELECT max(taskid) FROM history), 0))"
        )
        return rows[0][0] or None

    def recent_taskids(self, finished: int = 20) -> list[int]:
        live = [r[0] for r in self._query("SELECT id FROM tasks ORDER BY id DESC")]
        done = self._query(
            "SELECT taskid FROM history WHERE taskid IS NOT NULL ORDER BY id DESC LIMIT %s", (finished,)
        )
        return live + [r[0] for r in done if r[0] not in live]

    # -- retention ---------------------------------------------------------------------
    def prune(self, keep: int | None = None, before: float | None = None) -> tuple[int, list[str]]:
        terms: list[str] = []
        params: list[Any] = []
        if keep is not None:
            terms.append("id <= coalesce((SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET %s), 0)")
            params.append(keep)
        if before is not None:
            terms.append("endtime < %s")
            params.append(before)
        if not terms:
            return 0, []
        return self._delete_history(" OR ".join(terms), params)

    def clear_history(self) -> tuple[int, list[str]]:
        return self._delete_history("true", ())

    def _delete_history(self, where: str, params: Sequence[Any]) -> tuple[int, list[str]]:
        with self.transaction() as conn:
            rows = conn.execute(f"DELETE FROM history WHERE {where} RETURNING logfile, logplaced", params)
            deleted = rows.fetchall()
        return len(deleted), [f for f, placed in deleted if placed and isinstance(f, str) and f]

    def recreate(self) -> list[str]:
        refusal = None
        with self.transaction() as conn:
            conn.execute("LOCK TABLE tasks, history, feedbacks IN ACCESS EXCLUSIVE MODE")
            # As on SQLite, every task but a bare reservation refuses it (a queued one too).
            running = [
                r[0] for r in conn.execute("SELECT id FROM tasks WHERE status != 'RESERVED' ORDER BY id")
            ]
            if running:
                refusal = f"tasks are running ({', '.join(map(str, running))})"
            else:
                logs = [
                    r[0]
                    for r in conn.execute("SELECT logfile FROM history WHERE logplaced != 0")
                    if isinstance(r[0], str) and r[0]
                ]
                conn.execute("TRUNCATE tasks, feedbacks, history, hookruns RESTART IDENTITY")
        if refusal is not None:
            raise TasksRunning(refusal)
        return logs

    # -- many hosts: leases on the server's clock -----------------------------------------
    def renew_lease(self, taskid: int, token: str, lease: float) -> TaskRow | None:
        """Extend the running task's lease to ``lease`` seconds from the server's now; the row
        after (its ``stopreason`` is how a missed notification is caught), or None if the row
        is no longer this token's."""
        with self.transaction() as conn:
            # (the setting is made in the same statement: one round trip, as before)
            rows = conn.execute(
                "UPDATE tasks SET leaseuntil = now() + make_interval(secs => %s)"
                f" FROM (SELECT set_config('{_QUIET}', 'on', true)) AS quiet"
                f" WHERE id = %s AND token = %s RETURNING {_TASK_COLUMNS}",
                (lease, taskid, token),
            ).fetchall()
        return TaskRow._make(rows[0]) if rows else None

    def lapsed_leases(self) -> list[TaskRow]:
        lapsed = f"{_LEASED} AND leaseuntil < now()"
        return [
            TaskRow._make(r)
            for r in self._query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {lapsed} ORDER BY id")
        ]

    def next_lease_end(self) -> float | None:
        sql = f"SELECT EXTRACT(EPOCH FROM min(leaseuntil) - now()) FROM tasks WHERE {_LEASED}"
        (left,) = self._query(sql)[0]
        return None if left is None else float(left)

    # -- change notification -----------------------------------------------------------
    def _listen(self, channel: str) -> None:
        if channel not in self._listening:
            self._usable()
            try:
                with self._bounded():  # (a launcher's loop: never held by a stalled link)
                    self.conn.execute(f'LISTEN "{channel}"')
            except psycopg.Error as e:
                raise self._error(e) from None
            self._listening.add(channel)

    def _unlisten(self, channel: str) -> None:
        self._listening.discard(channel)  # (a connection made again listens to the others only)
        try:
            with self._bounded():
                self.conn.execute(f'UNLISTEN "{channel}"')
        except psycopg.Error as e:
            raise self._error(e) from None

    def notify_fd(self, taskid: int | None = None) -> int | None:
        """The connection's socket, listening for every change (or, with ``taskid``, for a
        stop request of that task only: what its launcher needs; a launcher that listened for
        every change while it waited in line stops that, or every change would wake it)."""
        self._listen(CHANNEL if taskid is None else task_channel(taskid))
        if taskid is not None and CHANNEL in self._listening:
            self._unlisten(CHANNEL)
        try:
            return self.conn.fileno()
        except psycopg.Error as e:
            raise self._error(e) from None

    def wait_for_change(self, timeout: float, taskid: int | None = None) -> bool:
        self._listen(CHANNEL if taskid is None else task_channel(taskid))
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._usable()
                if self.reconnected:  # what was sent while disconnected is lost: the caller re-reads
                    self.reconnected = False
                    return True
                me = self.conn.info.backend_pid
                # What has come (and what came during other operations): taken without waiting.
                if any(n.pid != me for n in self.conn.notifies(timeout=0)):
                    return True  # (drained: a burst of changes is seen once)
                fd = self.conn.fileno()
            except psycopg.Error as e:
                raise self._error(e) from None
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Blocked in poll() on the socket itself, not in psycopg's wait, which wakes
            # every 0.1 s: a quiet dashboard or --wait would wake ten times a second.
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(int(left * 1000) + 1):  # (as SQLite's wait: callers bound it)
                return False


_FEEDBACK_SELECT = 'SELECT dev, ino, "offset", lines, feedback, fingerprint FROM feedbacks WHERE id = %s'


# A link that stalls (a cut cable sends no reset) must fail within seconds, not hang a
# launcher's renewal for the kernel's 15 minutes: keepalives on an idle connection, a
# timeout on unacknowledged data. The URL's own settings win.
_LINK = {
    "connect_timeout": CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": CONNECT_TIMEOUT * 1000,
    "application_name": "taskwatcher",
}


def _link_defaults(url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(url)
    return {k: v for k, v in _LINK.items() if k not in given}


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    import socket

    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def task_channel(taskid: int) -> str:
    """The channel a stop request for that task is sent on (its launcher listens there)."""
    return f"{CHANNEL}_task_{int(taskid)}"


def _feedback_state(rows: list[tuple[Any, ...]]) -> FeedbackState | None:
    from ..feedback import FeedbackState

    if not rows:
        return None
    dev, ino, offset, lines, data, fingerprint = rows[0]
    return FeedbackState(
        dev or 0, int(ino or 0), offset or 0, lines or 0, json.loads(data or "{}"), fingerprint or ""
    )


def _history_where(only: HistoryFilter | None) -> tuple[str, list[Any]]:
    terms, params = ["true"], []
    if only is not None and only.name is not None:
        terms.append("taskname = %s")
        params.append(storable(only.name))
    if only is not None and only.taskid is not None:
        terms.append("taskid = %s")
        params.append(only.taskid)
    if only is not None and only.since is not None:
        terms.append("endtime >= %s")
        params.append(only.since)
    if only is not None and only.before is not None:
        terms.append("id < %s")
        params.append(only.before)
    if only is not None and only.last is not None:
        terms.append(f"id >= coalesce((SELECT id FROM history WHERE {' AND '.join(terms)}"
                     " ORDER BY id DESC LIMIT 1 OFFSET %s), 0)")  # fmt: skip
        params = [*params, *params, only.last - 1]
    return " AND ".join(terms), params


def _text(value: Any) -> Any:
    return storable(value) if isinstance(value, str) else value


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
