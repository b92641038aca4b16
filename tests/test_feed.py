"""Writing feedback: `taskwatcher feed` and the taskwatcher.Feedback helper (issue 5, part 4)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import taskwatcher
from conftest import TW, wait_for
from taskwatcher.errors import FeedbackFileError
from taskwatcher.feedback import Feedback, parse_file


def feed(tw, path: Path | None, *args: str):
    env = dict(tw.env)
    if path is not None:
        env["TASKWATCHER_FEEDBACK"] = str(path)
    import subprocess

    return subprocess.run([*TW, "feed", *args], env=env, capture_output=True, text=True)


def test_feed_appends_one_line_per_call(tw, tmp_path):
    path = tmp_path / "fb.log"
    for args in (("phase", "build"), ("progress", "42"), ("--clear", "phase"), ("--heartbeat",)):
        proc = feed(tw, path, *args)
        assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    assert path.read_text() == "[phase]build\n[progress]42\n[phase]\n[heartbeat]\n"
    assert parse_file(path) == {"progress": "42"}
    assert feed(tw, path, "--clear-all").returncode == 0
    assert parse_file(path) == {}


@pytest.mark.parametrize(
    "args", [("1st", "x"), ("a b", "x"), ("key",), (), ("--clear", "x", "extra"), ("--clear", "[x]")]
)
def test_feed_refuses_what_the_format_cannot_say(tw, tmp_path, args):
    path = tmp_path / "fb.log"
    proc = feed(tw, path, *args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not path.exists()


def test_feed_without_a_feedback_file_is_an_error(tw):
    proc = feed(tw, None, "progress", "1")
    assert proc.returncode == 1
    assert "TASKWATCHER_FEEDBACK is not set" in proc.stderr


def test_a_task_reports_through_feed_and_history_keeps_it(tw, tmp_path):
    feedpath = tmp_path / "fb"
    feedpath.mkdir()
    script = (
        f"{sys.executable} -m taskwatcher feed step one && "
        f"{sys.executable} -m taskwatcher feed progress 100 && "
        f"{sys.executable} -m taskwatcher feed --clear step"
    )
    proc = tw.run("launch", "--feedpath", str(feedpath), "--", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    (entry,) = tw.history().values()
    assert entry["feedback"] == {"progress": "100"}


def test_feedback_helper_writes_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "fb.log"
    monkeypatch.setenv("TASKWATCHER_FEEDBACK", str(path))
    fb = taskwatcher.Feedback()
    fb.set("progress", 10)
    fb.set("note", "ok [really]")
    fb.clear("note")
    fb.heartbeat()
    assert path.read_text() == "[progress]10\n[note]ok [really]\n[note]\n[heartbeat]\n"
    with pytest.raises(ValueError):
        fb.set("x", "two\nlines")
    fb.clear_all()
    assert parse_file(path) == {}


def test_feedback_helper_needs_a_path(monkeypatch):
    monkeypatch.delenv("TASKWATCHER_FEEDBACK", raising=False)
    with pytest.raises(FeedbackFileError):
        Feedback()


def test_feedback_context_manager_beats_a_heartbeat(tmp_path):
    path = tmp_path / "fb.log"
    with Feedback(path, every=0.01) as fb:
        fb.set("phase", "busy")
        wait_for(lambda: path.read_text().count("[heartbeat]\n") >= 3, 10, "three heartbeats")
    assert parse_file(path) == {"phase": "busy"}
    # The beating thread ends with the block.
    wait_for(
        lambda: not any(t.name == "taskwatcher-heartbeat" for t in threading.enumerate()),
        10,
        "the heartbeat thread to end",
    )
