"""A listing reads the task table once: the rows reconciliation read, when it changed none of
them; when it changed some (an expired reservation dropped, a lost task archived), the rows
as they are after it."""

from __future__ import annotations

import time

from taskwatcher import TaskWatcher
from taskwatcher.reconcile import reconciled_tasks
from taskwatcher.store import Store


def counting_reads(store: Store) -> list[int]:
    reads = [0]
    tasks = store.tasks

    def counted(name=None):
        reads[0] += 1
        return tasks(name)

    store.tasks = counted  # type: ignore[method-assign]
    return reads


def test_a_quiet_store_is_read_once(tmp_path):
    with Store(tmp_path / "tw.db") as s:
        ids = [s.reserve(f"r{i}", (None, None, None), False, 3600) for i in range(3)]
        reads = counting_reads(s)
        rows = reconciled_tasks(s)
        assert [r.id for r in rows] == ids and reads[0] == 1


def test_what_reconciling_changed_is_listed_as_it_is_after(tmp_path):
    db = tmp_path / "tw.db"
    with Store(db) as s:
        kept = s.reserve("kept", (None, None, None), False, 3600)
        expired = s.reserve("expired", (None, None, None), False, 3600)
        s.update_task(expired, expiretime=time.time() - 1)
        reads = counting_reads(s)
        assert [r.id for r in reconciled_tasks(s)] == [kept] and reads[0] == 2
    assert list(TaskWatcher(db).tasks_json()) == [str(kept)]
