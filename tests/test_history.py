"""--history --json is built by SQLite for speed: it must be exactly what control.history gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskwatcher import history as control  # the history module (it was in control)
from taskwatcher.store import Store

ROWS = [
    # taskid, name, termsignal, termerror, feedback (as stored), exitcode, command (as stored)
    (1, "plain", "", "", '{"progress": "100"}', 0, '["true"]'),
    (2, "sig", "SIGKILL", "killed by signal SIGKILL", "{}", 137, '["sh", "-c", "kill -9 $$"]'),
    (3, "lost", None, "launcher lost", None, None, None),
    (4, "1.x text", None, "", "not json at all", None, None),  # (with "TBD", 1.7's, it would be {})
    (5, "unicodé", "", "exit code 3", '{"k": "進 \\u0000 \\"q\\""}', 3, '["a b", ""]'),
    (6, "empty feedback", "", "", "", 0, '["x"]'),
]


def fill(db: Path) -> Store:
    store = Store(db)
    with store.transaction() as conn:
        for taskid, name, sig, err, fb, code, cmd in ROWS:
            conn.execute(
                "INSERT INTO history (taskid, taskname, info1, termsignal, termerror, starttime, endtime,"
                " duration, feedback, exitcode, pid, host, command, logfile)"
                " VALUES (?, ?, 'i', ?, ?, 100, 160, 60, ?, ?, 42, 'h', ?, NULL)",
                (taskid, name, sig, err, fb, code, cmd),
            )
    return store


def test_history_json_is_the_history_object(tmp_path: Path) -> None:
    with fill(tmp_path / "h.db") as store:
        as_text = json.loads("".join(control.history_json(store)))
        assert as_text == control.history(store)
        assert list(as_text) == [str(i) for i in range(1, len(ROWS) + 1)]  # oldest first
        assert as_text["4"]["feedback"] == "not json at all"
        assert as_text["3"]["feedback"] == {} and as_text["3"]["termsignal"] == ""
        assert as_text["5"]["feedback"] == {"k": '進 \x00 "q"'}


def test_history_json_of_an_empty_history_is_an_empty_object(tmp_path: Path) -> None:
    with Store(tmp_path / "e.db") as store:
        assert json.loads("".join(control.history_json(store))) == {}


def test_history_json_in_small_chunks_keeps_every_row_in_order(tmp_path: Path) -> None:
    with fill(tmp_path / "c.db") as store:
        for chunk in (1, 2, 4, 100):
            as_text = json.loads("".join(control.history_json(store, chunk=chunk)))
            assert as_text == control.history(store)
            assert list(as_text) == [str(i) for i in range(1, len(ROWS) + 1)]


def named_rows(db: Path) -> Store:
    store = Store(db)
    with store.transaction() as conn:
        for i, (name, end) in enumerate([("a", 100), ("b", 200), ("a", 300), ("b", 400), ("a", 500)], 1):
            conn.execute(
                "INSERT INTO history (taskid, taskname, starttime, endtime, feedback)"
                " VALUES (?, ?, ?, ?, '{}')",
                (i, name, end - 10, end),
            )
    return store


@pytest.mark.parametrize(
    ("name", "since", "last", "ids"),
    [
        (None, None, None, ["1", "2", "3", "4", "5"]),
        ("a", None, None, ["1", "3", "5"]),
        (None, 300, None, ["3", "4", "5"]),
        (None, None, 2, ["4", "5"]),
        ("a", None, 2, ["3", "5"]),
        ("b", 250, 5, ["4"]),
        ("c", None, None, []),
    ],
)
def test_history_filters(tmp_path, name, since, last, ids):
    with named_rows(tmp_path / "f.db") as store:
        only = control.HistoryFilter(name, since, last)
        assert list(control.history(store, only)) == ids
        assert list(json.loads("".join(control.history_json(store, only, chunk=2)))) == ids


def test_history_filters_through_the_cli(tw):
    for code in (1, 2, 1):
        tw.run("launch", "--name", f"job{code}", "--", "sh", "-c", f"exit {code}")
    entries = tw.json("control", "--history", "--json", "--name", "job1", "--last", "1")
    assert [e["exitcode"] for e in entries.values()] == [1] and list(entries) == ["3"]
    assert len(tw.json("control", "--history", "--json", "--since", "1h")) == 3
    assert tw.json("control", "--history", "--json", "--since", "2999-01-01") == {}
    bad = tw.run("control", "--history", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "not a time" in bad.stderr
    assert tw.run("control", "--list", "--last", "2").returncode == 2


def test_parse_when():
    assert control.parse_when("2h", now=10_000) == 10_000 - 7200
    assert control.parse_when("1795868361") == 1795868361
    assert control.parse_when("90s", now=100) == 10
