"""The contract suite's fixtures: every test here runs once per backend.

``backend`` opens a store of the backend under test (another call, another connection,
as another process would have); ``store`` is one opened for the test. A new backend
adds itself to BACKENDS and must pass every test unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import a_claim  # noqa: F401  (the tests import it from here)
from taskwatcher.store import SQLiteStore, TaskStore


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TaskStore]:
    path = tmp_path / "contract.db"
    return lambda: SQLiteStore(path)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TaskStore]:
    url = request.getfixturevalue("pg_url")  # a database of the private cluster (tests/pgcluster.py)
    from taskwatcher.store.postgres import PostgresStore

    return lambda: PostgresStore(url)


# name: a function of (request, tmp_path) giving a function that opens a store of the test's database
BACKENDS = {"sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path) -> Iterator[Callable[[], TaskStore]]:
    opened: list[TaskStore] = []
    opener = BACKENDS[request.param](request, tmp_path)

    def open_store() -> TaskStore:
        store = opener()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        with contextlib.suppress(Exception):  # one a thread opened is closed by that thread
            store.close()


@pytest.fixture
def store(backend) -> TaskStore:
    return backend()
