"""History reads and retention cost what they find, not the history's size.

The work is counted, not timed: SQLite's progress handler is called every N virtual-machine
steps of the store's connection, so the count is the same on a loaded machine as on an idle
one. Each read is counted on a small and a large history (the same rows at the end); a read
that walked every row would count about 100 times more on the large one.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from taskwatcher import store as store_mod
from taskwatcher.model import HistoryFilter
from taskwatcher.store import Store

SMALL, LARGE = 200, 20_000
NOW = time.time()


def fill(db, n: int) -> None:
    """``n`` history rows, one a minute, the newest ending now."""
    with sqlite3.connect(db) as c:
        c.executemany(
            "INSERT INTO history (taskid, taskname, termsignal, termerror, starttime, endtime, feedback,"
            " exitcode) VALUES (?, ?, '', '', ?, ?, '{}', 0)",
            [
                (i, f"job{i % 7}", int(NOW) - 60 * (n - i) - 5, int(NOW) - 60 * (n - i))
                for i in range(1, n + 1)
            ],
        )


def steps(store: Store, work) -> int:
    """How many hundreds of SQLite VM steps ``work(store)`` takes."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    store.conn.set_progress_handler(tick, 100)
    try:
        work(store)
    finally:
        store.conn.set_progress_handler(None, 100)
    return count[0]


# Each takes the store and the number of rows it holds.
READS = {
    "--last 10": lambda s, n: list(s.iter_history(HistoryFilter(last=10))),
    "--last 10 --json": lambda s, n: "".join(s.history_json(HistoryFilter(last=10))),
    "--since (none there)": lambda s, n: list(s.iter_history(HistoryFilter(since=NOW + 60))),
    "--since 5m (the last 5)": lambda s, n: list(s.iter_history(HistoryFilter(since=NOW - 270))),
    "--since 5m --json": lambda s, n: "".join(s.history_json(HistoryFilter(since=NOW - 270))),
    "--name job3 --last 3": lambda s, n: list(s.iter_history(HistoryFilter(name="job3", last=3))),
    "prune: keep all but one": lambda s, n: s.prune(keep=n - 1),
    "prune: by age, the oldest": lambda s, n: s.prune(before=int(NOW) - 60 * (n - 1) + 1),
}


@pytest.mark.parametrize("what", list(READS))
def test_the_cost_of_a_read_or_a_prune_does_not_grow_with_the_history(tmp_path, what):
    costs = []
    for n in (SMALL, LARGE):
        db = tmp_path / f"tw-{n}.db"
        Store(db).close()
        fill(db, n)
        with Store(db) as s:
            costs.append(steps(s, lambda s, n=n: READS[what](s, n)))
            if what.startswith("prune"):  # it deleted the oldest row, and only that one
                assert [r["taskid"] for r in s.iter_history(HistoryFilter(last=n))][:1] == [2]
                assert len(s.history()) == n - 1
    assert costs[1] <= 2 * costs[0] + 5, f"{what}: {costs[0]} on {SMALL} rows, {costs[1]} on {LARGE}"


def test_the_reads_find_the_same_rows_as_the_filters_say(tmp_path):
    db = tmp_path / "tw.db"
    Store(db).close()
    fill(db, 50)
    with Store(db) as s:
        assert [r["taskid"] for r in s.iter_history(HistoryFilter(last=3))] == [48, 49, 50]
        assert [r["taskid"] for r in s.iter_history(HistoryFilter(since=NOW - 270))] == [46, 47, 48, 49, 50]
        assert [r["taskid"] for r in s.iter_history(HistoryFilter(since=NOW - 270, last=2))] == [49, 50]
        named = [r["taskid"] for r in s.iter_history(HistoryFilter(name="job3", since=NOW - 1000, last=2))]
        assert named == [38, 45]
        assert list(s.iter_history(HistoryFilter(since=NOW))) == []
        assert s.history_json(HistoryFilter(since=NOW)).__next__() == "{"
        assert "".join(s.history_json(HistoryFilter(since=NOW))) == "{}\n"
        assert len(list(s.iter_history(HistoryFilter(last=500)))) == 50


def test_a_schema_3_database_gets_the_end_time_index(tmp_path):
    """Schema 4 adds the index on history(endtime); a file of schema 3 gets it when opened."""
    db = tmp_path / "tw.db"
    Store(db).close()
    fill(db, 5)
    with sqlite3.connect(db) as c:
        c.execute("DROP INDEX history_endtime")
        c.execute("PRAGMA user_version=3")
    with Store(db) as s:
        assert [r["taskid"] for r in s.iter_history(HistoryFilter(since=NOW - 150))] == [3, 4, 5]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name = 'history_endtime'").fetchone()
