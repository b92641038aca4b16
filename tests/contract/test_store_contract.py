"""What every store backend guarantees (store/base.py's docstrings), tested through the
``store`` fixture only: no SQL, no backend type. SQLite runs it now; another backend
plugs into tests/contract/conftest.py and must pass it unchanged."""

from __future__ import annotations

import threading
import time

import pytest

from taskwatcher.errors import NameTaken, ReservationError, TasksRunning
from taskwatcher.feedback import FeedbackState
from taskwatcher.history import describe_entry
from taskwatcher.model import HistoryFilter, HistoryRow, TaskRow
from taskwatcher.status import TaskStatus

from .conftest import a_claim

END = dict(termsignal="", termerror="", exitcode=0, feedback={})


def running(store, name=None, **kw) -> TaskRow:
    return store.claim(None, a_claim(name, **kw))


def finish(store, row: TaskRow, **end) -> int | None:
    return store.finish(row.id, row.token, **{**END, **end})


# -- ids ---------------------------------------------------------------------------------------
def test_ids_are_never_handed_out_twice(store):
    a = store.reserve("a", (None, None, None), False, 60)
    b = running(store, "b")
    assert store.cancel_reservation(a)
    assert finish(store, b) is not None
    store.clear_history()
    c = store.reserve("c", (None, None, None), False, 60)
    assert c > b.id > a
    assert store.newest_taskid() == c


def test_recreate_starts_ids_again_and_is_refused_while_a_task_runs(store):
    row = running(store, "r")
    with pytest.raises(TasksRunning):
        store.recreate()
    assert store.task(row.id) is not None  # nothing dropped
    finish(store, row)
    store.recreate()
    assert store.reserve(None, (None, None, None), False, 60) == 1


# -- unique names ------------------------------------------------------------------------------
def test_of_simultaneous_unique_reservations_exactly_one_wins(backend):
    backend().close()  # the schema made first: the race is the reservations' only
    racers = 8
    won, refused = [], []
    start = threading.Barrier(racers)

    def reserve():
        with backend() as store:  # a connection of its own, as another process has
            start.wait()
            try:
                won.append(store.reserve("only", (None, None, None), True, 60))
            except NameTaken:
                refused.append(store)

    threads = [threading.Thread(target=reserve) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == racers - 1
    assert [r.id for r in backend().tasks("only")] == won


def test_a_unique_name_is_free_again_once_the_task_ends(store):
    row = running(store, "u", unique=True)
    with pytest.raises(NameTaken):
        store.reserve("u", (None, None, None), True, 60)
    finish(store, row)
    assert store.reserve("u", (None, None, None), True, 60) > row.id


# -- claims ------------------------------------------------------------------------------------
def test_a_reservation_is_claimed_once(backend):
    first, second = backend(), backend()
    taskid = first.reserve("job", ("i1", None, None), False, 60)
    row = first.claim(taskid, a_claim())
    assert (row.id, row.status, row.name, row.info1) == (taskid, TaskStatus.RUNNING, "job", "i1")
    with pytest.raises(ReservationError):
        second.claim(taskid, a_claim())
    assert second.task(taskid).token == row.token


def test_an_expired_or_unknown_reservation_is_not_claimed(store):
    taskid = store.reserve(None, (None, None, None), False, 0.001)
    time.sleep(0.01)  # the reservation's time to live, not a synchronisation
    with pytest.raises(ReservationError):
        store.claim(taskid, a_claim())
    with pytest.raises(ReservationError):
        store.claim(taskid + 100, a_claim())


def test_claim_places_the_files_by_the_task_id(store, tmp_path):
    row = store.claim(None, a_claim(feedfolder=str(tmp_path), logfile="", logfolder=str(tmp_path)))
    assert row.feedpath == str(tmp_path / f"feedback_{row.id}.log") and row.feedback
    assert row.logfile == str(tmp_path / f"task_{row.id}.log") and row.logplaced


# -- the running task --------------------------------------------------------------------------
def test_spawn_status_and_stop_are_recorded_for_the_token_only(store):
    row = running(store, "s")
    assert store.record_spawn(row.id, "stale", 1, 2, '["x"]', 3, 4) is None
    spawned = store.record_spawn(row.id, row.token, 11, 22, '["x", "1"]', 33, 44)
    assert (spawned.pid, spawned.procstart, spawned.command, spawned.launcherpid) == (
        11,
        22,
        '["x", "1"]',
        33,
    )
    assert not store.record_status(row.id, "stale", "SILENT", 100.0)
    assert store.record_status(row.id, row.token, "SILENT", 100.0)
    assert (store.task(row.id).status, store.task(row.id).heartbeat) == (TaskStatus.SILENT, 100.0)
    stopped = store.request_stop(row.id, "killed by request")
    assert stopped.stopreason == "killed by request"
    assert store.record_spawn(row.id, row.token, 11, 22, '["x"]', 33, 44).stopreason == "killed by request"


def test_a_reservation_is_not_given_a_running_status(store):
    taskid = store.reserve(None, (None, None, None), False, 60)
    assert store.request_stop(taskid, "why") is None  # a reservation is cancelled, not stopped
    assert store.task(taskid).status == TaskStatus.RESERVED
    row = running(store)
    assert not store.cancel_reservation(row.id)  # a running task is not a reservation
    assert store.task(row.id) is not None


def test_reservations_expire_and_only_those(store):
    short = store.reserve("short", (None, None, None), False, 0.001)
    long_ = store.reserve("long", (None, None, None), False, 3600)
    row = running(store)
    assert store.expire_reservations(time.time() + 1) == [short]
    assert store.task(short) is None and store.task(long_) is not None and store.task(row.id) is not None
    assert store.expire_reservations(time.time() + 1) == []


# -- finishing ---------------------------------------------------------------------------------
def test_a_double_finish_gives_one_history_row(backend):
    first, second = backend(), backend()
    row = running(first, "d")
    hid = finish(first, row, exitcode=3, feedback={"k": "v"})
    assert hid is not None
    assert finish(second, row, exitcode=9) is None
    (entry,) = list(second.iter_history())
    assert isinstance(entry, HistoryRow)
    assert (entry.id, entry.taskid, entry.exitcode, entry.taskname) == (hid, row.id, 3, "d")
    assert describe_entry(entry)["feedback"] == {"k": "v"}
    assert second.task(row.id) is None and second.finished(row.id) == entry


def test_a_stale_token_finishes_nothing(store):
    row = running(store)
    assert store.finish(row.id, "not-the-token", **END) is None
    assert store.task(row.id) == row
    assert list(store.iter_history()) == []


# -- history and retention ---------------------------------------------------------------------
def finished_tasks(store, names):
    for i, name in enumerate(names):
        finish(store, running(store, name), endtime=1000.0 + i)


def test_history_filters_and_its_json(store):
    import json

    finished_tasks(store, ["a", "b", "a", "b", "a"])
    by_name = [r.taskid for r in store.iter_history(HistoryFilter(name="a"), chunk=2)]
    assert len(by_name) == 3
    assert [r.endtime for r in store.iter_history(HistoryFilter(since=1003))] == [1003, 1004]
    assert [r.taskname for r in store.iter_history(HistoryFilter(name="b", last=1))] == ["b"]
    ids = [r.id for r in store.iter_history()]
    # A page of a long history: below an id, the newest N of those (the next page's before is its lowest).
    assert [r.id for r in store.iter_history(HistoryFilter(before=ids[3], last=2))] == ids[1:3]
    assert [r.id for r in store.iter_history(HistoryFilter(name="a", before=ids[4]))] == [ids[0], ids[2]]
    for only in (None, HistoryFilter(name="a", last=2), HistoryFilter(before=ids[2])):
        shaped = {str(r.id): describe_entry(r) for r in store.iter_history(only)}
        assert json.loads("".join(store.history_json(only, chunk=2))) == shaped


def test_retention_deletes_the_oldest_first(store):
    finished_tasks(store, ["t1", "t2", "t3", "t4", "t5"])
    assert store.prune(keep=3)[0] == 2
    assert [r.taskname for r in store.iter_history()] == ["t3", "t4", "t5"]
    assert store.prune(before=1003)[0] == 1  # ended at 1002
    assert [r.taskname for r in store.iter_history()] == ["t4", "t5"]
    assert store.prune()[0] == 0
    assert store.clear_history()[0] == 2 and list(store.iter_history()) == []


def test_retention_gives_the_placed_logs_of_what_it_deleted(store, tmp_path):
    placed = store.claim(None, a_claim(logfile="", logfolder=str(tmp_path)))
    own = store.claim(None, a_claim(logfile=str(tmp_path / "mine.log")))
    finish(store, placed)
    finish(store, own)
    assert store.clear_history() == (2, [placed.logfile])


# -- the task's latest feedback ------------------------------------------------------------------
def test_feedback_state_round_trip(backend):
    store, other = backend(), backend()
    row = running(store)
    assert store.feedback_state(row.id) is None
    first = FeedbackState(1, 2, 10, 1, {"progress": "5", "é": "ü"}, "fp")
    assert store.record_status(row.id, row.token, "RUNNING", time.time(), first) is True
    assert other.feedback_state(row.id) == first
    later = FeedbackState(1, 2, 20, 2, {"progress": "9"}, "fp2")
    assert other.record_status(row.id, row.token, "SILENT", time.time()) is True  # no feedback: kept
    assert store.feedback_state(row.id) == first
    assert other.record_status(row.id, row.token, "RUNNING", time.time(), later) is True
    assert store.feedback_state(row.id) == later
    assert store.record_status(row.id, "stale", "RUNNING", time.time(), first) is False
    assert store.feedback_state(row.id) == later
    finish(store, row)
    assert store.feedback_state(row.id) is None
    assert store.record_status(row.id, row.token, "RUNNING", time.time(), first) is False
    assert store.feedback_state(row.id) is None


# -- change notification -----------------------------------------------------------------------
@pytest.mark.parametrize("watch", ["inotify", "without inotify"])
def test_another_process_change_is_noticed(backend, watch, monkeypatch):
    if watch != "inotify":
        monkeypatch.setenv("TASKWATCHER_WITHOUT", "inotify")
    watcher, writer_factory = backend(), backend
    assert watcher.notify_fd() is None or isinstance(watcher.notify_fd(), int)
    assert not watcher.wait_for_change(0.05)

    def write_later():
        with writer_factory() as writer:
            time.sleep(0.1)  # so that the watcher is waiting: the wait is on the change, not on this
            writer.reserve(None, (None, None, None), False, 60)

    threading.Thread(target=write_later).start()
    assert watcher.wait_for_change(10)
    assert not watcher.wait_for_change(0.05)  # seen once


# -- the line: queued tasks --------------------------------------------------------------------
NO_INFOS = (None, None, None)


def queued(store, name="q", queue="g", slots=1, spec='{"command": ["true"]}', **kw) -> int:
    return store.enqueue(name, NO_INFOS, False, queue=queue, slots=slots, spec=spec, **kw)


def test_a_queued_task_is_a_row_with_its_spec_and_no_process(store):
    taskid = queued(store, spec='{"command": ["echo", "x"]}')
    row = store.task(taskid)
    assert (row.status, row.queue, row.slots, row.attempt, row.pid) == (TaskStatus.QUEUED, "g", 1, 1, None)
    assert row.spec == '{"command": ["echo", "x"]}' and row.token
    assert store.expire_reservations(time.time() + 3600) == [] and store.task(taskid) == row
    assert store.request_stop(taskid, "why") is None  # not running: taken out of the line by finish


def test_a_group_takes_only_its_free_slots(store):
    a, b, c = (queued(store, slots=2) for _ in range(3))
    other = queued(store, queue="other")
    assert store.take_queued(a, 30) and store.take_queued(b, 30)
    assert not store.take_queued(c, 30)  # two of g hold their slots (reserved, then running)
    assert store.take_queued(other, 30)  # another group has its own
    assert not store.take_queued(a, 30)  # taken already
    store.claim(a, a_claim())
    assert not store.take_queued(c, 30)
    finish(store, store.task(a))
    assert store.take_queued(c, 30)
    assert store.task(c).status == TaskStatus.RESERVED


def test_of_simultaneous_takers_of_one_slot_exactly_one_wins(backend):
    setup = backend()
    ids = [queued(setup) for _ in range(4)]
    wins: list[int] = []
    barrier = threading.Barrier(4)

    def take(taskid: int) -> None:
        store = backend()
        barrier.wait()
        if store.take_queued(taskid, 30):
            wins.append(taskid)

    threads = [threading.Thread(target=take, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_an_expired_queued_reservation_goes_back_to_the_line(store):
    taskid = queued(store)
    assert store.take_queued(taskid, 0.001)
    plain = store.reserve(None, NO_INFOS, False, 0.001)
    assert store.expire_reservations(time.time() + 1) == [plain]  # only the plain one is dropped
    assert store.task(taskid).status == TaskStatus.QUEUED
    assert store.take_queued(taskid, 30)


def test_a_retry_is_the_same_task_back_in_line_with_a_fresh_token(store):
    taskid = queued(store, queue=None, slots=None)
    assert store.take_queued(taskid, 30)  # no group: no slot to wait for
    row = store.claim(taskid, a_claim())
    later = time.time() + 3600
    hid = store.finish(row.id, row.token, **{**END, "exitcode": 3}, retry_at=later)
    again = store.task(taskid)
    assert (again.status, again.attempt, again.notbefore, again.pid) == (TaskStatus.QUEUED, 2, later, None)
    assert again.token != row.token and again.launcherpid is None
    assert not store.take_queued(taskid, 30)  # not before its delay
    assert finish(store, row) is None  # the first attempt's writers are refused
    assert not store.record_status(taskid, row.token, "RUNNING", 1.0)
    (entry,) = list(store.iter_history())
    assert (entry.id, entry.attempt, entry.exitcode) == (hid, 1, 3)
    assert store.finish(taskid, again.token, **END) is not None
    assert [e.attempt for e in store.iter_history()] == [1, 2]
    assert store.finished(taskid).attempt == 2 and store.task(taskid) is None


def test_a_foreground_waiter_is_kept_through_a_retry(store):
    from taskwatcher.model import Waiter

    me = a_claim()
    waiter = Waiter(me.launcherpid, me.launcherstart, me.bootid, me.host, me.pidns)
    taskid = queued(store, waiter=waiter)
    assert store.task(taskid).launcherpid == me.launcherpid
    assert store.take_queued(taskid, 30)
    row = store.claim(taskid, a_claim())
    store.finish(row.id, row.token, **END, retry_at=time.time(), keep_waiter=True)
    assert store.task(taskid).launcherpid == me.launcherpid


def test_the_hooks_outcome_is_kept_in_the_history_row(store):
    row = running(store)
    hid = store.finish(row.id, row.token, **END, hook="pending")
    assert [e.hook for e in store.iter_history()] == ["pending"]
    assert store.record_hook(hid, "--on-end: exit 0")
    assert describe_entry(store.finished(store.newest_taskid()))["hook"] == "--on-end: exit 0"
    assert not store.record_hook(hid + 100, "x")
