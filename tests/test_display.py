"""Tables for people: readable times and durations, the progress of a task; on a real
pseudo-terminal, tables that fit it and show escapes, never raw control characters."""

from __future__ import annotations

import os

import pytest

from conftest import wait_for
from support import kill_own_processes, reserve
from taskwatcher.display import (
    PAGE,
    escape_control,
    format_duration,
    history_lines,
    print_history,
    print_tasks,
    progress_bar,
)
from terminal import assert_fits, lines_drawn, run_on_terminal, sized_pty


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
        ("accents é ü 日本 stay", "accents é ü 日本 stay"),
        ("rtl \u202eevil\u202c", "rtl \\u202eevil\\u202c"),  # reorders what follows: shown, not obeyed
        ("isolate \u2067x\u2069", "isolate \\u2067x\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_escape_control_shows_control_characters_escaped(raw, shown):
    assert escape_control(raw) == shown


# -- what reaches a terminal --------------------------------------------------------------------
TITLE = "\x1b]0;pwned\x07title"  # would set the window title
WIPE = "\x1b[2Jwiped"  # would clear the screen
RAW_DATA = (b"\x1b]0;pwned", b"\x1b[2Jwiped", b"two\r\nlines", b"two\nlines")
HEADER_WORDS = {"taskid", "id", "name", "info1", "info2", "info3", "pid", "status", "started", "ended",
                "duration", "timer", "timeout", "progress", "feedback", "command", "exit", "signal",
                "why"}  # fmt: skip


def hostile_tasks(tw, tmp_path) -> str:
    """Two reservations and a running task whose name, info and command hold escapes and a newline."""
    reserve(tw, "--name", TITLE, "--info1", "two\nlines")
    reserve(tw, "--name", WIPE)
    feedpath = tmp_path / "fb"
    feedpath.mkdir(exist_ok=True)
    script = 'printf "[progress]40\\n[phase]\\033[2Jwiped\\n" >> "$TASKWATCHER_FEEDBACK"; sleep 60'
    name = "a-long-name-" + "x" * 150
    args = ("--detach", "--name", name, "--feedpath", str(feedpath), "--", "sh", "-c", script, WIPE)
    taskid = tw.run("launch", *args, check=True).stdout.strip()
    wait_for(lambda: tw.json("control", "--feedback", taskid).get("phase"), 20, "the task's feedback")
    return taskid


@pytest.mark.parametrize("columns", [80, 120])
def test_list_on_a_terminal_fits_it_and_shows_escapes_never_raw(tw, tmp_path, columns):
    try:
        taskid = hostile_tasks(tw, tmp_path)
        wide = reserve(tw, "--name", "日本語の名前" * 30)  # two cells a character
        raw = run_on_terminal(tw, "--list", columns=columns)
    finally:
        kill_own_processes(tmp_path / "home")
    for data in RAW_DATA:
        assert data not in raw
    lines = lines_drawn(raw)  # no escape but colours reached the terminal
    assert_fits(lines, columns)
    header, *rows = lines
    assert len(rows) == 4  # one line per task: nothing wrapped
    assert set(header.split()) <= HEADER_WORDS and {"taskid", "name", "status"} <= set(header.split())
    assert "info2" not in header and "timeout" not in header  # empty for every task: left out
    by_id = {row.split()[0]: row for row in rows}
    assert "\\e]0;pwned" in by_id["1"] and "\\e[2Jwiped" in by_id["2"]
    assert "日本語の名前" in by_id[str(wide)] and "…" in by_id[str(wide)]
    running = by_id[taskid]
    assert "a-long-name-xxx" in running and "…" in running  # cut to fit, and says so
    if "command" in header:
        assert "sh -c" in running
    if columns == 120:
        assert "info1" in header and "two\\nlines" in by_id["1"]
        assert "command" in header


def test_colours_on_a_terminal_unless_no_color_is_set(tw):
    reserve(tw, "--name", "plain")
    assert b"\x1b[36mRESERVED" in run_on_terminal(tw, "--list", columns=80)
    assert b"\x1b" not in run_on_terminal(tw, "--list", columns=80, env={"NO_COLOR": "1"})


def finished_with_escapes(tw, tmp_path) -> None:
    feedpath = tmp_path / "fb"
    feedpath.mkdir(exist_ok=True)
    write = 'printf "[phase]\\033]0;pwned\\007\\n" >> "$TASKWATCHER_FEEDBACK"; exit 3'
    tw.run("launch", "--name", TITLE, "--info1", "two\nlines", "--", "true", check=True)
    tw.run("launch", "--name", WIPE, "--feedpath", str(feedpath), "--", "sh", "-c", write)
    tw.run("launch", "--name", "plain", "--info1", "y" * 300, "--", "true", check=True)


@pytest.mark.parametrize("columns", [80, 120])
def test_history_on_a_terminal_takes_a_line_a_row_and_shows_escapes_never_raw(tw, tmp_path, columns):
    finished_with_escapes(tw, tmp_path)
    raw = run_on_terminal(tw, "--history", columns=columns)
    for data in RAW_DATA:
        assert data not in raw
    lines = lines_drawn(raw)
    assert_fits(lines, columns)
    header, *rows = lines
    assert len(rows) == 3  # a history row takes one line
    assert set(header.split()) <= HEADER_WORDS and {"taskid", "name", "exit"} <= set(header.split())
    assert "info2" not in header and "signal" not in header  # empty for every row: left out
    assert "\\e]0;pwned" in rows[0] and "\\e[2Jwiped" in rows[1]
    assert " 3  " in rows[1]  # its exit status, on its own line
    if "info1" in header:
        assert "two\\nlines" in rows[0] and "y…" in rows[2]  # escaped; the long one cut
    if columns == 120:
        assert "feedback" in header and "phase=\\e]0;pwned\\a" in rows[1]


def test_piped_tables_are_never_cut(tw, tmp_path):
    long_arg = "z" * 500
    try:
        args = ("--detach", "--name", "n" * 300, "--", "sh", "-c", "sleep 60", long_arg)
        tw.run("launch", *args, check=True)
        listed = tw.run("control", "--list", check=True).stdout
    finally:
        kill_own_processes(tmp_path / "home")
    assert f"sh -c 'sleep 60' {long_arg}" in listed  # the whole command, shell-quoted
    assert "n" * 300 in listed and "…" not in listed
    assert len(listed.splitlines()) == 2  # a header and the task: a long row is one line
    tw.run("launch", "--name", "m" * 400, "--info1", "two\nlines", "--", "true", check=True)
    history = tw.run("control", "--history", check=True).stdout
    assert "m" * 400 in history and "two\\nlines" in history and "…" not in history
    assert len(history.splitlines()) == 1 + len(tw.history())  # a header, and a line a row


def test_a_huge_name_is_cut_before_it_is_rendered(tw, tmp_path):
    """A 10 MB name costs a table what a short one does: only a cell's width of it is looked at."""
    import tracemalloc

    from taskwatcher import TaskWatcher

    TaskWatcher(str(tw.db)).reserve("N" * 10_000_000, info1="i" * 10_000_000)
    tasks = TaskWatcher(str(tw.db)).tasks(feedback=True)
    master, slave = sized_pty(80, 40)
    try:
        with open(slave, "w", closefd=True) as terminal:
            tracemalloc.start()
            print_tasks(tasks, terminal)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        shown = os.read(master, 65536)
    finally:
        os.close(master)
    assert peak < 200_000, peak  # a copy of the name (escaped, measured, rendered) would be 10 MB
    lines = lines_drawn(shown)
    assert_fits(lines, 80)
    assert len(lines) == 2 and "NNN…" in lines[1]


def test_a_long_history_is_streamed_a_page_at_a_time(tw):
    """The table holds one page of rows, never the history: rows are taken from the database
    as the lines are written (here 10k rows; 100k or 1M work the same)."""
    import tracemalloc

    from taskwatcher import TaskWatcher

    add_history_rows(tw, 10_000)
    api = TaskWatcher(str(tw.db))
    pulled = 0

    def counted():
        nonlocal pulled
        for entry in api.iter_history():
            pulled += 1
            yield entry

    lines = history_lines(counted(), width=None)
    next(lines)  # the header: written once the first page is read, not the whole history
    assert pulled == PAGE
    with open(os.devnull, "w") as devnull:
        tracemalloc.start()
        print_history(api.iter_history(), devnull)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 5_000_000, peak  # the 10k rows as records would take some 25 MB


def add_history_rows(tw, n: int) -> None:
    import json

    from conftest import is_postgres

    tw.run("control", "--update", check=True)  # the database, made by the CLI (a read makes none)
    feedback = json.dumps({"progress": "100", "phase": "step 3"})
    rows = [(i, f"job{i % 13}", f"campaign {i % 50}", "", "", 1_700_000_000 + i, 1_700_000_005 + i, 5.0,
             feedback, 0) for i in range(1, n + 1)]  # fmt: skip
    insert = (
        "INSERT INTO history (taskid, taskname, info1, termsignal, termerror, starttime, endtime,"
        " duration, feedback, exitcode) VALUES (?,?,?,?,?,?,?,?,?,?)"
    )
    if is_postgres(tw.db):
        import psycopg

        with psycopg.connect(str(tw.db)) as conn, conn.cursor() as cur:
            cur.execute("SET search_path TO taskwatcher")
            cur.executemany(insert.replace("?", "%s"), rows)
        return
    import sqlite3

    with sqlite3.connect(tw.db) as conn:
        conn.executemany(insert, rows)
    conn.close()
