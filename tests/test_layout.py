"""The store is the only module that speaks SQL: nothing else executes a statement, opens a
transaction or touches sqlite3 (a second backend must be able to replace it whole)."""

from __future__ import annotations

import re
from pathlib import Path

import taskwatcher

SRC = Path(taskwatcher.__file__).parent
STORE = SRC / "store"
SQL_TOUCH = re.compile(r"\bexecute\w*\(|\bBEGIN\b|\bsqlite3\b|\.transaction\(|\.conn\b|\.query\(|\.cursor\(")


def test_no_module_outside_the_store_speaks_sql_or_holds_a_transaction():
    outside = [p for p in sorted(SRC.rglob("*.py")) if STORE not in p.parents]
    assert len(outside) > 20, "the package was not found"
    found = {
        f"{p.relative_to(SRC)}:{n}": line.strip()
        for p in outside
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if SQL_TOUCH.search(line)
    }
    assert found == {}
