"""Shared fixtures: an isolated database and state folder per test, the CLI as a subprocess,
and waiting on conditions with a deadline (never a fixed sleep as synchronisation).

Every test of the CLI suite (tests/test_*.py) that uses the ``db`` fixture (so every test
driving the CLI through ``tw``) runs once per backend: ``[sqlite]`` on a file, ``[postgres]``
on a fresh database of the private cluster (tests/pgcluster.py).
``--backend=sqlite|postgres|both`` (default both) chooses.
A test of the SQLite file itself (or of what only SQLite does) is marked
``@pytest.mark.sqlite_only("why")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgcluster import pg_cluster, pg_url  # noqa: F401  (fixtures: the private PostgreSQL cluster)

TW = [sys.executable, "-m", "taskwatcher"]
BACKENDS = ("sqlite", "postgres")
# The CLI suite, tests/test_*.py, runs on both backends. tests/faults (faults of the SQLite file
# and of processes around it), tests/web and tests/compat (1.7 side by side is SQLite-file
# based) run on SQLite; the contract suite (tests/contract) runs on both by its own fixture.
CLI_SUITE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=(*BACKENDS, "both"),
        default="both",
        help="the store the tests using the db fixture run on (default: both, each test twice)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a test of the SQLite file itself (or of what only SQLite does)"
    )


NAMESPACE_TESTS = ("test_many_hosts", "test_queue_hosts", "test_hosts", "test_namespaces")  # file names


@pytest.fixture(autouse=True)
def namespace_hosts_take_turns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The tests whose "hosts" are namespaces take turns, whichever pytest-xdist worker runs
    them: each starts many launchers at once (200 for the race) and holds time limits on
    leases, which two of them at the same time, on 2 cores, would starve each other of
    (commands stalled 30 s), and one that kills a namespace whole must not meet another's
    namespace (a task of another pid namespace was seen gone). A lock on a file every worker
    of the run sees (xdist groups would do it, but pytest-xdist 3.8 cannot mark pytest 9's
    node ids: no group was ever held)."""
    if not request.node.path.name.startswith(NAMESPACE_TESTS):
        yield
        return
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every worker's base folder is in the run's
    with open(root / "namespace-hosts.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``db`` by backend, unless the test (or its module) parametrizes it itself."""
    if "db" not in metafunc.fixturenames or metafunc.definition.path.parent != CLI_SUITE:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "db" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return
    chosen = metafunc.config.getoption("backend")
    backends = list(BACKENDS) if chosen == "both" else [chosen]
    only = metafunc.definition.get_closest_marker("sqlite_only")
    params = []
    for backend in backends:
        if backend == "postgres" and only is not None:
            if chosen == "postgres":  # said, not silently dropped
                why = only.args[0] if only.args else only.kwargs.get("reason", "")
                params.append(pytest.param(backend, marks=pytest.mark.skip(reason=f"sqlite only: {why}")))
            continue
        params.append(backend)
    metafunc.parametrize("db", params, indirect=True)


# The seed's columns (SPEC: "at least the seed's columns, names and meanings"), written
# here from the seed, not imported from the code, so that the tests hold the code to them.
SEED_TASK_COLUMNS = ("id", "name", "info1", "info2", "info3", "pid", "status", "feedback",
                     "reservetime", "starttime", "duration", "lastupdate", "timeout")  # fmt: skip
SEED_FEEDBACK_COLUMNS = ("id", "feedback", "lastupdate")
SEED_HISTORY_COLUMNS = ("id", "taskid", "taskname", "info1", "info2", "info3", "termsignal",
                        "termerror", "starttime", "endtime", "duration", "feedback")  # fmt: skip


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Return the first truthy value of ``predicate()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)  # polling a condition, bounded by the deadline
        delay = min(delay * 2, 0.05)


APPLICATION_ID = 0x54574348  # "TWCH": a taskwatcher database whose schema is committed


def schema_ready(db: Path) -> bool:
    """The file exists and its schema is committed (the stamp is written with the tables).

    A command creates the file first and the schema in a transaction after it: a reader
    in between would find "no such table". Never creates the file.
    """
    if not db.exists():
        return False
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as c:
        return c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def is_postgres(db: Path | str) -> bool:
    return str(db).startswith(("postgresql://", "postgres://"))


class PgRow(tuple):
    """A row of PostgreSQL read like an ``sqlite3.Row``: by index or by column name."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key):  # type: ignore[override]
        return super().__getitem__(self.names.index(key) if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _pg_rows(cursor: Any) -> Callable[[Any], PgRow]:
    names = tuple(c.name for c in cursor.description or ())
    row = type("Row", (PgRow,), {"names": names})
    return lambda values: row(values)


def _pg_ready(db: str) -> bool:
    import psycopg

    with psycopg.connect(db, autocommit=True) as c:
        return c.execute("SELECT to_regclass('taskwatcher.schema_version') IS NOT NULL").fetchone()[0]


def db_sql(db: Path | str, sql: str, params: tuple = (), timeout: float = 15.0) -> list[Any]:
    """Run one statement on the test's database directly (no command: nothing is reconciled)
    and return its rows, on either backend: ``?`` placeholders, the same table and column
    names (PostgreSQL's in the ``taskwatcher`` schema). Waits for the schema to exist."""
    if not is_postgres(db):
        wait_for(lambda: schema_ready(Path(db)), timeout, f"the schema of {db}")
        conn = sqlite3.connect(db, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg

    wait_for(lambda: _pg_ready(str(db)), timeout, f"the schema of {db}")
    with psycopg.connect(str(db), autocommit=True, row_factory=_pg_rows) as conn:
        conn.execute("SET search_path TO taskwatcher")
        cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


db_rows = db_sql  # the name the older tests read with


def db_exists(db: Path | str) -> bool:
    """A database is there: the SQLite file (of any content), or taskwatcher's PostgreSQL schema."""
    return _pg_ready(str(db)) if is_postgres(db) else Path(db).exists()


class Taskwatcher:
    """Runs the real CLI against one test database."""

    def __init__(self, db: Path | str, env: dict[str, str]) -> None:
        self.db = db
        self.env = env

    def run(
        self, *args: str, check: bool = False, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess:
        tool, rest = args[0], args[1:]
        cmd = [*TW, tool, "--db", str(self.db), *rest] if tool in ("launch", "control") else [*TW, *args]
        env = {**self.env, **kw.pop("env", {})}  # what a test sets, over the test's environment
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
        return proc

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen:
        tool, rest = args[0], args[1:]
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([*TW, tool, "--db", str(self.db), *rest], env=self.env, text=True, **kw)

    def logs_folder(self) -> Path:
        """Where taskwatcher places the logs of this database: ``tw-logs/`` beside the SQLite file,
        or the PostgreSQL database's folder under the state folder (a path, made or not)."""
        if not is_postgres(self.db):
            return Path(self.db).parent / "tw-logs"
        folders = Path(self.env["XDG_STATE_HOME"]) / "taskwatcher" / "postgres"
        made = sorted(folders.glob("*-logs"))
        return made[0] if made else folders / "none-logs"

    def json(self, *args: str) -> Any:
        proc = self.run(*args, check=True)
        return json.loads(proc.stdout)

    def tasks(self) -> dict[str, Any]:
        return self.json("control", "--list", "--json")

    def history(self) -> dict[str, Any]:
        return self.json("control", "--history", "--json")

    def history_of(self, taskid: int | str) -> dict[str, Any] | None:
        for entry in self.history().values():
            if str(entry["taskid"]) == str(taskid):
                return entry
        return None


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


@pytest.fixture
def env(tmp_path: Path, state: Path) -> dict[str, str]:
    """The environment of every CLI call: nothing of the developer's own state leaks in."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("TASKWATCHER_")}
    e["XDG_STATE_HOME"] = str(state)
    e["HOME"] = str(tmp_path / "home")
    e.pop("XDG_CONFIG_HOME", None)  # the configuration file is looked for under HOME
    e["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), e.get("PYTHONPATH", "")])
    return e


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The test's database: a file, or a PostgreSQL URL of the private cluster (``[postgres]``)."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "tw.db"


@pytest.fixture
def tw(db: Path | str, env: dict[str, str]) -> Taskwatcher:
    return Taskwatcher(db, env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder to run commands in; tests check nothing is written here."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder
