"""The everyday command line on both backends: the same commands, the same answers, on an
SQLite file and on a database of the private PostgreSQL cluster (tests/pgcluster.py); like
every test using ``db``, each runs once per backend (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import wait_for
from support import kill_own_processes, one_line_error, running_task


@pytest.fixture(autouse=True)
def _reaper(tmp_path: Path):
    yield
    kill_own_processes(tmp_path / "home")


def test_a_foreground_launch_is_listed_while_it_runs_and_in_history_after(tw, tmp_path):
    flag = tmp_path / "go"
    proc = tw.popen(
        "launch", "--name", "fg", "sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.02; done; exit 3"
    )
    taskid, task = running_task(tw, "fg")
    assert task["status"] == "RUNNING" and task["host"]
    flag.touch()
    assert proc.wait(15) == 3
    (entry,) = tw.history().values()
    assert (str(entry["taskid"]), entry["exitcode"], entry["taskname"]) == (taskid, 3, "fg")
    assert entry["command"][:2] == ["sh", "-c"] and entry["feedback"] == {}
    shown = tw.json("control", "--show", taskid, "--json")
    assert shown["finished"] and shown["exitcode"] == 3
    assert tw.tasks() == {}


def test_a_unique_reservation_is_refused_while_the_name_is_held_then_launched(tw):
    taskid = tw.run("control", "--reserve", "--name", "only", "--unique", check=True).stdout.strip()
    second = tw.run("control", "--reserve", "--name", "only", "--unique")
    assert second.returncode == 3 and "only" in one_line_error(second)
    assert tw.tasks()[taskid]["status"] == "RESERVED"
    assert tw.run("launch", "--taskid", taskid, "true").returncode == 0
    assert tw.history_of(taskid)["exitcode"] == 0
    again = tw.run("launch", "--taskid", taskid, "true")
    assert again.returncode == 125 and "already run" in one_line_error(again)


def test_kill_stops_a_detached_task_and_wait_reports_its_end(tw):
    taskid = tw.run("launch", "--detach", "--name", "long", "sleep", "300", check=True).stdout.strip()
    running_task(tw, "long")
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0 and "killed" in killed.stdout, killed.stderr
    entry = tw.history_of(taskid)
    assert entry["termerror"] == "killed by request" and entry["termsignal"] == "SIGTERM"
    assert tw.run("control", "--wait", taskid).returncode == entry["exitcode"]
    assert tw.run("control", "--kill", taskid).returncode == 4  # already ended


def test_wait_waits_for_a_detached_task_and_exits_with_its_status(tw):
    taskid = tw.run("launch", "--detach", "sh", "-c", "sleep 0.5; exit 7", check=True).stdout.strip()
    assert tw.run("control", "--wait", taskid, timeout=30).returncode == 7
    assert tw.run("control", "--wait", taskid, "--timeout", "0.1").returncode == 7  # ended: at once


def test_feedback_of_a_running_task_and_in_its_history(tw, tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    flag = tmp_path / "go"
    script = (
        'echo "[progress]42" >> "$TASKWATCHER_FEEDBACK"; echo "[step]two" >> "$TASKWATCHER_FEEDBACK";'
        f" while [ ! -e {flag} ]; do sleep 0.02; done"
    )
    proc = tw.popen("launch", "--feedpath", str(feed), "--name", "fb", "sh", "-c", script)
    taskid, _ = running_task(tw, "fb")
    wait_for(lambda: tw.json("control", "--feedback", taskid).get("step") == "two", what="the feedback")
    assert tw.json("control", "--feedback", taskid) == {"progress": "42", "step": "two"}
    flag.touch()
    assert proc.wait(15) == 0
    assert tw.history_of(taskid)["feedback"] == {"progress": "42", "step": "two"}


def test_history_filters_prune_and_clear(tw):
    for name in ("a", "b", "a", "b", "a"):
        tw.run("launch", "--name", name, "true", check=True)
    assert len(tw.history()) == 5
    assert [e["taskname"] for e in tw.json("control", "--history", "--json", "--name", "a").values()] == [
        "a",
        "a",
        "a",
    ]
    assert len(tw.json("control", "--history", "--json", "--last", "2")) == 2
    human = tw.run("control", "--history", check=True).stdout
    assert human.count("\n") >= 5
    tw.run("control", "--prune", "--keep", "2", check=True)
    assert [e["taskname"] for e in tw.history().values()] == ["b", "a"]
    tw.run("control", "--clear", check=True)
    assert tw.history() == {}
    assert int(tw.run("control", "--reserve", check=True).stdout) == 6  # ids never handed out again


def test_a_read_on_a_database_that_does_not_exist_creates_none(tw, env, request):
    from conftest import Taskwatcher

    if isinstance(tw.db, Path):
        missing = [tw.db.with_name("missing.db")]
    else:  # a database without taskwatcher's tables, and one the server does not have
        missing = [request.getfixturevalue("pg_cluster").new_database(), tw.db.replace("@/", "@/nodb_", 1)]
    for db in missing:
        other = Taskwatcher(db, env)
        proc = other.run("control", "--list", "--json")
        assert proc.returncode == 0 and json.loads(proc.stdout) == {}, proc.stderr
        assert "no database" in one_line_error(proc)
        assert other.run("control", "--show", "5").returncode == 4
    if not isinstance(tw.db, Path):
        from taskwatcher.api import TaskWatcher

        assert not TaskWatcher(missing[0]).exists()  # and still not: nothing was made


def test_initialize_starts_again_and_update_refreshes(tw):
    tw.run("launch", "true", check=True)
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    assert tw.run("control", "--update", check=True).returncode == 0
    assert list(tw.tasks()) == [taskid]
    tw.run("control", "--initialize", check=True)
    assert tw.tasks() == {} and tw.history() == {}
    assert tw.run("control", "--reserve", check=True).stdout.strip() == "1"
