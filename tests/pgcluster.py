"""A private throw-away PostgreSQL cluster for the suite: ``initdb`` as an unprivileged user
(initdb refuses root), trust authentication on a unix socket in a temporary folder, no TCP,
``pg_ctl`` start and stop; one database per test, cloned from a template.

Where no server can be had (scripts/need-postgres installs one when it can), the tests on
PostgreSQL are skipped with a loud reason, or fail when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

USER = "tw"  # the cluster's superuser (trust: no password)
TEMPLATE = "tw_template"
_counter = itertools.count(1)


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def unavailable(reason: str) -> None:
    """Fail under CI, else skip, saying loudly which tests did not run and why."""
    message = f"*** PostgreSQL tests NOT RUN: {reason} (scripts/need-postgres installs the server) ***"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    sys.stderr.write(f"\n{message}\n")
    pytest.skip(message)


class Cluster:
    """A running cluster: ``url(dbname)`` to connect, ``new_database()`` for one test."""

    def __init__(self, bindir: str, root: str, runas: list[str]) -> None:
        self.bindir, self.root, self.runas = bindir, root, runas
        self.data, self.socket = os.path.join(root, "data"), os.path.join(root, "socket")
        self.logfile = os.path.join(root, "server.log")

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@/{dbname}?host={self.socket}"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [*self.runas, os.path.join(self.bindir, tool), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        # fsync off (the machine is not crashed, only the server), but synchronous_commit on, as
        # a server's default: the tests stop it "immediate" (a crash), and with it off the last
        # commits would be lost with the WAL buffers (a launcher's claim, a kept end's row).
        options = (
            f"-k {self.socket} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=32MB"
        )
        proc = self.run(
            "pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "-o", options, "start"
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr or proc.stdout}: {self._log()}")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", mode, "stop")

    def restart(self) -> None:
        self.stop("immediate")
        self.start()

    def _log(self) -> str:
        with contextlib.suppress(OSError), open(self.logfile) as f:
            return f.read()[-2000:]
        return ""

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[-1].split("?")[0]
        with contextlib.suppress(Exception):
            self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_cluster() -> Cluster:
    """Start a private cluster, or say (skip/fail) why there is none."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[test]')")
    bindir = _binaries()
    if bindir is None:
        unavailable("no PostgreSQL server binaries (initdb) found")
    assert bindir is not None
    root = tempfile.mkdtemp(prefix="tw-pg-")
    runas: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster is nobody's
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        runas = ["runuser", "-u", "nobody", "--"]
    cluster = Cluster(bindir, root, runas)
    os.chmod(root, 0o755)
    proc = cluster.run("initdb", "-D", cluster.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
    if proc.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"initdb failed: {proc.stderr.strip() or proc.stdout.strip()}")
    os.makedirs(cluster.socket)
    if runas:
        os.chown(cluster.socket, pwd.getpwnam("nobody").pw_uid, -1)
    try:
        cluster.start()
    except RuntimeError as e:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(e))
    cluster.sql(f"CREATE DATABASE {TEMPLATE}")
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database of the private cluster for one test."""
    url = pg_cluster.new_database()
    yield url
    pg_cluster.drop_database(url)
