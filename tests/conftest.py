"""Shared fixtures: an isolated database and state folder per test, the CLI as a subprocess,
and waiting on conditions with a deadline (never a fixed sleep as synchronisation)."""

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


def db_rows(db: Path, sql: str, params: tuple = (), timeout: float = 15.0) -> list[sqlite3.Row]:
    """Read the database directly (no command: nothing is reconciled), once its schema exists."""
    wait_for(lambda: schema_ready(db), timeout, f"the schema of {db}")
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class Taskwatcher:
    """Runs the real CLI against one test database."""

    def __init__(self, db: Path, env: dict[str, str]) -> None:
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
def db(tmp_path: Path) -> Path:
    return tmp_path / "tw.db"


@pytest.fixture
def tw(db: Path, env: dict[str, str]) -> Taskwatcher:
    return Taskwatcher(db, env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder to run commands in; tests check nothing is written here."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder
