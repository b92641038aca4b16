"""Reads that only read: listing, feedback and the API's task views, repeated, leave the
database file and its WAL byte for byte as they were, even where the feedback files say
more than the store holds (the launcher stores the feedback; readers never do)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from support import a_claim
from taskwatcher import TaskWatcher
from taskwatcher.feedback import FeedbackState
from taskwatcher.store import Store

TASKS = 200


def snapshot(db: Path) -> dict[str, bytes | None]:
    files = {}
    for suffix in ("", "-wal"):
        path = Path(f"{db}{suffix}")
        files[suffix] = path.read_bytes() if path.exists() else None
    return files


def test_a_thousand_reads_of_200_running_tasks_write_nothing(tmp_path):
    db, feeds = tmp_path / "tw.db", tmp_path / "feeds"
    feeds.mkdir()
    keeper = Store(db)  # held open, as running launchers hold theirs: no checkpoint on a close
    try:
        ids = []
        for i in range(TASKS):
            row = keeper.claim(None, a_claim(f"t{i}", feedfolder=str(feeds)))  # launched by this process
            Path(row.feedpath).write_text(f"[progress]{i}\n[step]s{i}\n")
            ids.append(row.id)
        # The files are ahead of the store (no launcher stored them): readers read them on,
        # and write nothing. A read-heavy caller reconciles now and then, not on every read.
        api = TaskWatcher(db, reconcile_every=3600)
        before = snapshot(db)
        assert before[""] is not None
        assert api.tasks(feedback=True)[0].latest == {"progress": "0", "step": "s0"}
        reads = 0
        while reads < 1000:
            assert len(api.tasks_json()) == TASKS
            assert api.feedback(ids[reads % TASKS]) == {"progress": str(reads % TASKS),
                                                        "step": f"s{reads % TASKS}"}  # fmt: skip
            reads += 2
            if reads % 100 == 0:
                assert api.tasks(feedback=True)[7].latest == {"progress": "7", "step": "s7"}
                reads += 1
        assert snapshot(db) == before
        assert os.path.getsize(db) > 0
    finally:
        keeper.close()


def test_a_read_heavy_caller_reconciles_at_most_as_often_as_it_asks(tmp_path):
    from conftest import wait_for

    db = tmp_path / "tw.db"
    every_call, now_and_then = TaskWatcher(db), TaskWatcher(db, reconcile_every=3600)
    taskid = every_call.reserve("short", ttl=0.2)
    assert list(now_and_then.tasks_json()) == [str(taskid)]  # its first read reconciles
    expiry = now_and_then.tasks_json()[str(taskid)]["expiretime"] + 1
    wait_for(lambda: time.time() > expiry, 5, "the reservation's expiry")
    assert list(now_and_then.tasks_json()) == [str(taskid)]  # not reconciled again yet
    assert every_call.tasks_json() == {}  # a caller that reconciles on every read drops it


def test_a_task_of_another_host_is_answered_from_the_store_alone(tmp_path):
    """Its feedback file's path names a file of that host: the one here of that name, if
    any, is another file, never read."""
    db, feeds = tmp_path / "tw.db", tmp_path / "feeds"
    feeds.mkdir()
    with Store(db) as store:
        here = store.claim(None, a_claim("here", feedfolder=str(feeds)))
        there = store.claim(None, a_claim("there", feedfolder=str(feeds), host="elsewhere.example"))
        for row in (here, there):
            Path(row.feedpath).write_text("[progress]40\n")
        stored = FeedbackState(data={"progress": "30"})
        assert store.record_status(there.id, there.token, "RUNNING", time.time(), stored)
    api = TaskWatcher(db)
    assert api.feedback(here.id) == {"progress": "40"}  # read on from the file, here
    assert api.feedback(there.id) == {"progress": "30"}  # as its launcher stored it, there
