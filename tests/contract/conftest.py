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


def _sqlite(tmp_path: Path) -> Callable[[], TaskStore]:
    path = tmp_path / "contract.db"
    return lambda: SQLiteStore(path)


BACKENDS = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path) -> Iterator[Callable[[], TaskStore]]:
    opened: list[TaskStore] = []

    def open_store() -> TaskStore:
        store = BACKENDS[request.param](tmp_path)()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        with contextlib.suppress(Exception):  # one a thread opened is closed by that thread
            store.close()


@pytest.fixture
def store(backend) -> TaskStore:
    return backend()
