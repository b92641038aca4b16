"""`taskwatcher parse --feedback FILE [--debug]` through the real CLI (SPEC, "Feedback file format")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Taskwatcher, db_exists


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].strip()


def test_prints_the_json_object_and_exits_0(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", "[progress]100\n")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"progress": "100"}
    assert proc.stdout.endswith("\n")
    assert proc.stdout.count("\n") == 1  # one JSON object, nothing else on stdout
    assert proc.stderr == ""


def test_the_seed_example(tw: Taskwatcher, tmp_path: Path) -> None:
    text = (
        "[info]Starting test\n[playbook]myPlaybook\n[info]\n[heartbeat]\n[testcase_id]001\n"
        "[testcase_name]Initialization\n[progress]12\n[progress]15\n[testcase_id]002\n"
        "[testcase_name]Setting up topology\n[progress]10\n"
    )
    path = _write(tmp_path / "feedback.log", text)
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "playbook": "myPlaybook",
        "testcase_id": "002",
        "testcase_name": "Setting up topology",
        "progress": "10",
    }


def test_the_grammar_through_the_cli(tw: Taskwatcher, tmp_path: Path) -> None:
    text = (
        "# comment\n\n  [a]1  \r\n[b]x]y[z\n[gone]1\n[gone]\n[1abc]x\n[a b]x\n[a[b]x\nnoise\n"
        "[a]2\n[]\n[kept]yes\n[last]no newline"
    )
    path = _write(tmp_path / "fb.log", text)
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    # parse reads a finished file: its last line counts even without a newline.
    assert json.loads(proc.stdout) == {"kept": "yes", "last": "no newline"}


def test_the_grammar_before_a_clear(tw: Taskwatcher, tmp_path: Path) -> None:
    text = "# c\n\n  [a]1  \r\n[b]x]y[z\n[gone]1\n[gone]\n[1abc]x\n[a b]x\n[a[b]x\nnoise\n[a]2\n"
    path = _write(tmp_path / "fb.log", text)
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"a": "2", "b": "x]y[z"}


def test_empty_file_gives_an_empty_object(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", "")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


def test_only_comments_gives_an_empty_object(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", "# nothing\n\n[heartbeat]\n")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


def test_missing_file_is_an_error(tw: Taskwatcher, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-feedback.log"
    proc = tw.run("parse", "--feedback", str(missing))
    _assert_one_line_error(proc)
    assert proc.returncode == 1
    assert str(missing) in proc.stderr  # the message names the file


def test_missing_file_is_an_error_with_debug_too(tw: Taskwatcher, tmp_path: Path) -> None:
    proc = tw.run("parse", "--feedback", str(tmp_path / "nope.log"), "--debug")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "nope.log" in proc.stderr


def test_a_folder_is_an_error(tw: Taskwatcher, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    proc = tw.run("parse", "--feedback", str(folder))
    _assert_one_line_error(proc)
    assert proc.returncode == 1


def test_an_unreadable_file_is_an_error(tw: Taskwatcher, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop reads (the folder case covers errors)")
    path = _write(tmp_path / "fb.log", "[a]1\n")
    path.chmod(0)
    try:
        proc = tw.run("parse", "--feedback", str(path))
    finally:
        path.chmod(0o600)
    _assert_one_line_error(proc)


def test_feedback_option_is_required(tw: Taskwatcher) -> None:
    proc = tw.run("parse")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "--feedback" in proc.stderr


def test_debug_says_which_line_was_ignored_and_why(tw: Taskwatcher, tmp_path: Path) -> None:
    text = "[a]1\n[b]2\n[1abc]x\n[c]3\nplain words here\n"
    path = _write(tmp_path / "fb.log", text)
    proc = tw.run("parse", "--feedback", str(path), "--debug")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"a": "1", "b": "2", "c": "3"}
    lines = proc.stderr.splitlines()
    third = [ln for ln in lines if "1abc" in ln]
    fifth = [ln for ln in lines if "plain words here" in ln]
    assert third and fifth, proc.stderr
    assert "3" in third[0].replace("1abc", "")  # the line number
    assert "5" in fifth[0]
    # ... and why: the two reasons are not the same words.
    assert third[0].replace("1abc", "").replace("3", "") != fifth[0].replace("plain words here", "")


def test_debug_names_the_line_number(tw: Taskwatcher, tmp_path: Path) -> None:
    text = "\n".join(["[k]v"] * 41 + ["[bad key]x"] + ["[k]w"]) + "\n"
    path = _write(tmp_path / "fb.log", text)
    proc = tw.run("parse", "--feedback", str(path), "--debug")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"k": "w"}
    bad = [ln for ln in proc.stderr.splitlines() if "bad key" in ln]
    assert len(bad) == 1, proc.stderr
    assert "42" in bad[0]


def test_without_debug_nothing_on_stderr(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", "[1abc]x\nnoise\n[a]1\n")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {"a": "1"}


def test_debug_does_not_report_comments_or_valid_lines_as_ignored(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", "# a comment\n\n[a]1\n[a]\n[]\n[b]2\n")
    proc = tw.run("parse", "--feedback", str(path), "--debug")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"b": "2"}
    assert "ignored" not in proc.stderr


def test_non_ascii_values_give_valid_json(tw: Taskwatcher, tmp_path: Path) -> None:
    values = {
        "fr": "déjà vu",
        "ja": "進捗 50%",
        "emoji": "🚀 launch",
        "quote": 'say "hi" \\ there',
        "ctl": "tab\there",
        "nul": "a\x00b",
    }
    text = "".join(f"[{k}]{v}\n" for k, v in values.items())
    path = _write(tmp_path / "fb.log", text)
    proc = subprocess.run(
        [sys.executable, "-m", "taskwatcher", "parse", "--feedback", str(path)],
        env=tw.env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.decode("utf-8")) == values


def test_invalid_utf8_is_replaced(tw: Taskwatcher, tmp_path: Path) -> None:
    path = _write(tmp_path / "fb.log", b"[a]caf\xe9\n[b]\xff\xfe\n[c]ok\n")
    proc = subprocess.run(
        [sys.executable, "-m", "taskwatcher", "parse", "--feedback", str(path)],
        env=tw.env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.decode("utf-8")) == {"a": "caf\ufffd", "b": "\ufffd\ufffd", "c": "ok"}


def test_json_output_with_an_ascii_only_stdout(tw: Taskwatcher, tmp_path: Path) -> None:
    """A consumer whose stdout is not UTF-8 (PYTHONIOENCODING=ascii, a latin-1 locale...) still
    gets the JSON object, not an encoding failure."""
    path = _write(tmp_path / "fb.log", "[ja]進捗\n[fr]é\n")
    env = dict(tw.env, PYTHONIOENCODING="ascii")
    proc = subprocess.run(
        [sys.executable, "-m", "taskwatcher", "parse", "--feedback", str(path)],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ja": "進捗", "fr": "é"}


def test_nothing_is_written_to_the_current_folder(tw: Taskwatcher, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = _write(tmp_path / "fb.log", "[a]1\n[1bad]x\n")
    ok = tw.run("parse", "--feedback", str(path), "--debug", cwd=cwd)
    assert ok.returncode == 0
    bad = tw.run("parse", "--feedback", str(tmp_path / "missing.log"), "--debug", cwd=cwd)
    assert bad.returncode != 0
    assert list(cwd.iterdir()) == []


def test_relative_path_from_the_current_folder(tw: Taskwatcher, tmp_path: Path) -> None:
    _write(tmp_path / "fb.log", "[a]1\n")
    proc = tw.run("parse", "--feedback", "fb.log", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"a": "1"}


def test_parse_needs_no_database(tw: Taskwatcher, tmp_path: Path, state: Path) -> None:
    path = _write(tmp_path / "fb.log", "[a]1\n")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0
    assert not db_exists(tw.db)
    assert list(state.iterdir()) == []  # no default database made in $XDG_STATE_HOME either


def test_a_big_file(tw: Taskwatcher, tmp_path: Path) -> None:
    value = "x" * (3 * 1024 * 1024)
    path = _write(tmp_path / "fb.log", f"[big]{value}\n[n]1\n")
    proc = tw.run("parse", "--feedback", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"big": value, "n": "1"}
