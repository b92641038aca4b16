"""The Python API (``from taskwatcher import TaskWatcher``): typed records with SPEC's column
names, typed exceptions, and the same answers as the CLI, which is built on it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for
from support import kill_own_processes
from taskwatcher import TaskWatcher
from taskwatcher.errors import NoSuchTask, StartFailed, TaskwatcherError, UsageError, WaitTimeout
from taskwatcher.records import FinishedTask, Task

PY = sys.executable


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> TaskWatcher:
    """A TaskWatcher on the test database; launched supervisors get the test's environment."""
    for key in list(os.environ):
        if key.startswith("TASKWATCHER_"):
            monkeypatch.delenv(key)
    for key in ("HOME", "XDG_STATE_HOME", "PYTHONPATH"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    yield TaskWatcher(tmp_path / "tw.db")
    kill_own_processes(tmp_path / "home")


def test_the_api_is_importable_from_the_package():
    import taskwatcher

    assert taskwatcher.TaskWatcher is TaskWatcher
    assert "TaskWatcher" in taskwatcher.__all__


def test_records_carry_specs_column_names():
    task_fields = {f.name for f in dataclasses.fields(Task)}
    assert {"taskid", "name", "info1", "info2", "info3", "pid", "status", "feedback", "reservetime",
            "starttime", "duration", "lastupdate", "timeout", "timer", "logfile"} <= task_fields  # fmt: skip
    finished_fields = {f.name for f in dataclasses.fields(FinishedTask)}
    assert {"taskid", "taskname", "info1", "info2", "info3", "termsignal", "termerror", "starttime",
            "endtime", "duration", "feedback", "exitcode", "logfile"} <= finished_fields  # fmt: skip


def test_default_database_is_the_clis(api, env):
    assert TaskWatcher().path == os.path.join(env["XDG_STATE_HOME"], "taskwatcher", "taskwatcher.db")
    assert api.path.endswith("tw.db") and os.path.isabs(api.path)


def test_reserve_launch_wait_and_history(api, tmp_path):
    taskid = api.reserve("build", info1="r1", unique=True)
    got = api.task(taskid)
    assert isinstance(got, Task) and got.status == "RESERVED" and got.info1 == "r1" and got.unique
    feedpath = tmp_path / "fb"
    feedpath.mkdir()
    script = "echo '[progress]100' > $TASKWATCHER_FEEDBACK; echo hello; exit 4"
    assert api.launch(["sh", "-c", script], taskid=taskid, feedpath=feedpath) == taskid
    done = api.wait(taskid, timeout=30)
    assert isinstance(done, FinishedTask)
    assert (done.taskid, done.taskname, done.info1, done.exitcode) == (taskid, "build", "r1", 4)
    assert done.termerror == "exit code 4" and done.feedback == {"progress": "100"}
    assert done.progress == 100.0 and done.status == "FINISHED"
    assert api.task(taskid) == done
    assert api.feedback(taskid) == {"progress": "100"}
    assert api.read_log(taskid) == b"hello\n"
    assert [e.taskid for e in api.history(name="build")] == [taskid]


def test_tasks_with_their_latest_feedback(api, tmp_path):
    feedpath = tmp_path / "fb"
    feedpath.mkdir()
    go = tmp_path / "go"
    script = f"echo '[progress]42' > $TASKWATCHER_FEEDBACK; while [ ! -e {go} ]; do sleep 0.05; done"
    taskid = api.launch(["sh", "-c", script], name="job", feedpath=feedpath, timeout=60)
    task = wait_for(lambda: next((t for t in api.tasks(feedback=True) if t.progress is not None), None), 10)
    assert (task.taskid, task.name, task.status, task.progress) == (taskid, "job", "RUNNING", 42.0)
    assert task.latest == {"progress": "42"} and task.pid and task.timeout == 60
    assert api.tasks()[0].latest is None  # only asked for
    go.touch()
    assert api.wait(taskid, 30).exitcode == 0
    assert api.tasks() == []


def test_json_is_the_clis_own(api, tw):
    api = TaskWatcher(tw.db)  # the CLI's database, on either backend (in the api fixture's environment)
    api.reserve("a", info2="x")
    api.launch(["true"], name="b")
    api.wait(2, 30)
    assert json.loads(json.dumps(api.tasks_json())) == tw.tasks()
    assert json.loads(api.history_json()) == tw.history()
    assert (
        "".join(api.iter_history_json(last=1))
        == tw.run("control", "--history", "--json", "--last", "1").stdout
    )


def test_history_filters(api):
    for name in ("a", "b", "a"):
        api.launch(["true"], name=name)
    wait_for(lambda: len(api.history()) == 3, 30)
    assert [e.taskname for e in api.history(name="a")] == ["a", "a"]
    assert [e.taskid for e in api.history(last=2)] == [2, 3]
    assert len(api.history(since="1h")) == 3
    assert api.history(since=time.time() + 3600) == []
    import datetime

    assert len(api.history(since=datetime.datetime.now() - datetime.timedelta(hours=1))) == 3
    with pytest.raises(UsageError):
        api.history(since="yesterday-ish")
    with pytest.raises(UsageError):
        api.history(last=0)


def test_kill_and_killall(api):
    one = api.launch(["sleep", "60"], name="s")
    two = api.launch(["sleep", "60"], name="s")
    three = api.launch(["sleep", "60"], name="t")
    assert api.kill(three) == f"task {three}: killed"
    assert api.task(three).termerror == "killed by request"
    assert api.killall("s") == [f"task {one}: killed", f"task {two}: killed"]
    assert api.tasks() == []


def test_typed_exceptions(api):
    with pytest.raises(NoSuchTask) as e:
        api.task(99)
    assert e.value.exit_code == 4
    with pytest.raises(NoSuchTask):
        api.kill(99)
    with pytest.raises(StartFailed) as e:
        api.launch(["no-such-command-here"])
    assert e.value.exit_code == 127 and "command not found" in str(e.value)
    with pytest.raises(StartFailed) as e:
        api.launch(["true"], feedpath="/no/such/folder")
    assert e.value.exit_code == 125 and "does not exist" in str(e.value)
    taskid = api.launch(["sleep", "60"])
    with pytest.raises(WaitTimeout) as e:
        api.wait(taskid, timeout=0.2)
    assert e.value.exit_code == 124
    with pytest.raises(UsageError):
        api.reserve(unique=True)
    assert all(issubclass(c, TaskwatcherError) for c in (NoSuchTask, StartFailed, UsageError, WaitTimeout))


def test_a_file_that_is_not_a_database_is_a_store_error_and_untouched(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_bytes(b"my notes\n" * 100)
    with pytest.raises(TaskwatcherError) as e:
        TaskWatcher(other).tasks()
    assert e.value.exit_code == 1
    assert other.read_bytes() == b"my notes\n" * 100


def test_follow_log_ends_with_the_task(api, tmp_path):
    go = tmp_path / "go"
    taskid = api.launch(["sh", "-c", f"echo a; while [ ! -e {go} ]; do sleep 0.05; done; echo b"])
    chunks = api.follow_log(taskid)
    assert next(chunks) == b"a\n"
    go.touch()
    assert b"".join(chunks) == b"b\n"


def test_prune_and_clear(api):
    for _ in range(4):
        api.launch(["true"])
    wait_for(lambda: len(api.history()) == 4, 30)
    logs = [Path(e.logfile) for e in api.history()]
    assert all(p.exists() for p in logs)
    assert api.prune(keep=1) == 3
    assert [e.taskid for e in api.history()] == [4]
    assert [p.exists() for p in logs] == [False, False, False, True]
    assert api.clear() == 1 and api.history() == []
    with pytest.raises(UsageError):
        api.prune(max_age="soon")


def test_the_readmes_python_example_runs(api, tmp_path):
    """The README's "From Python" example, with a real task for ./nightly.sh and a test folder."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("### From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    task = '["sh", "-c", "echo [progress]50 > $TASKWATCHER_FEEDBACK; echo nightly output"]'
    assert '["./nightly.sh", "--full"]' in example and 'feedpath="/tmp"' in example
    example = example.replace('["./nightly.sh", "--full"]', task).replace('"/tmp"', repr(str(tmp_path)))
    example = example.replace("TaskWatcher()", f"TaskWatcher({str(api.db)!r})")
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-3:] == ["0  {'progress': '50'}", "nightly output", ""]


def test_launch_in_a_folder_with_more_environment(api, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(tmp_path)  # relative paths are the caller's, not the task's folder
    taskid = api.launch(
        ["sh", "-c", 'pwd; echo "$GREETING"'], cwd=work, env={"GREETING": "hello"}, log="out.log"
    )
    assert api.wait(taskid, 30).exitcode == 0
    assert (tmp_path / "out.log").read_text() == f"{work}\nhello\n"
    with pytest.raises(StartFailed) as e:
        api.launch(["true"], cwd=tmp_path / "missing")
    assert e.value.exit_code == 125 and "cannot start in" in str(e.value)


def test_a_relative_database_is_the_callers_whatever_the_tasks_folder(tmp_path, monkeypatch, env):
    for key in ("HOME", "XDG_STATE_HOME", "PYTHONPATH"):
        monkeypatch.setenv(key, env[key])
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    tw = TaskWatcher("rel.db")
    taskid = tw.launch(["true"], cwd="work")
    assert tw.wait(taskid, 30).exitcode == 0
    assert (tmp_path / "rel.db").exists() and not (tmp_path / "work" / "rel.db").exists()
