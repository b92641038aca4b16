"""Tables for people: readable times and durations, and the progress of a task."""

from __future__ import annotations

import pytest

from conftest import wait_for
from taskwatcher.display import escape_control, format_duration, progress_bar
from test_launch import kill_own_processes


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0.4s"), (45, "45s"), (185, "3m05s"), (7380, "2h03m"), (352800, "4d02h")],
)
def test_durations_read_like_durations(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "bar"),
    [
        ("0", "[----------] 0%"),
        ("42", "[####------] 42%"),
        ("100", "[##########] 100%"),
        ("250", "[##########] 100%"),
        ("12.5", "[#---------] 12%"),
        ("abc", ""),
        (None, ""),
    ],
)
def test_progress_bar(value, bar):
    assert progress_bar(value) == bar


def test_list_shows_a_tasks_progress(tw, tmp_path):
    feedpath = tmp_path / "fb"
    feedpath.mkdir()
    go = tmp_path / "go"
    try:
        script = f'echo "[progress]42" >> "$TASKWATCHER_FEEDBACK"; while [ ! -e "{go}" ]; do sleep 0.05; done'
        launched = tw.run(
            "launch", "--detach", "--feedpath", str(feedpath), "--", "sh", "-c", script, check=True
        )
        taskid = launched.stdout.strip()
        line = wait_for(
            lambda: next((ln for ln in tw.run("control", "--list").stdout.splitlines() if "42%" in ln), None),
            10,
            "the progress in --list",
        )
        assert line.split()[0] == taskid and "[####------] 42%" in line
    finally:
        go.touch()
        kill_own_processes(tmp_path / "home")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name", "plain name"),
        ("\x1b]0;pwned\x07", "\\e]0;pwned\\a"),
        ("\x1b[2J", "\\e[2J"),
        ("two\nlines", "two\\nlines"),
        ("tab\there", "tab\\there"),
        ("c1\x9bcsi", "c1\\x9bcsi"),
        ("del\x7f", "del\\x7f"),
        (b"not \xff utf-8".decode("utf-8", "surrogateescape"), "not \\xff utf-8"),
        ("accents é ü stay", "accents é ü stay"),
    ],
)
def test_escape_control_shows_control_characters_escaped(raw, shown):
    assert escape_control(raw) == shown
