"""control --watch: the live view, driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

import pytest

from conftest import TW, wait_for
from support import kill_own_processes, one_line_error, reserve, running_task
from terminal import assert_fits, sized_pty, terminal_env
from test_display import RAW_DATA, hostile_tasks

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


class Screen:
    """``control --watch`` on a pseudo-terminal (160 x 40 unless told); what it has drawn so far."""

    def __init__(self, tw, columns: int = 160, rows: int = 40) -> None:
        self.master, slave = sized_pty(columns, rows)
        self.columns, self.rows = columns, rows
        env = terminal_env(tw.env)
        self.proc = subprocess.Popen(
            [*TW, "control", "--db", str(tw.db), "--watch"],
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.raw = b""

    def text(self) -> str:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the program has gone
                break
            if not chunk:
                break
            self.raw += chunk
        return ANSI.sub(b"", self.raw).decode(errors="replace")

    def frames(self) -> list[list[str]]:
        """Each whole screen drawn so far, as its lines (the view redraws from the top each time)."""
        self.text()
        drawn = self.raw.split(b"\x1b[?1049h", 1)[-1]
        left = b"\x1b[?1049l" in drawn  # the view was left: its last screen is whole
        drawn = drawn.split(b"\x1b[?1049l", 1)[0]
        frames = [ANSI.sub(b"", f).decode(errors="replace").split("\r\n") for f in drawn.split(b"\x1b[H")]
        return [f for f in (frames if left else frames[:-1]) if len(f) > 1]

    def wait_for(self, pattern: str, timeout: float = 15) -> None:
        wait_for(lambda: re.search(pattern, self.text()), timeout, f"{pattern!r} on the screen")

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def screen(tw, tmp_path):
    s = Screen(tw)
    yield s
    s.close()
    kill_own_processes(tmp_path / "home")


def test_watch_shows_tasks_progress_and_history_and_q_leaves(tw, tmp_path, screen):
    tw.run("launch", "--name", "finished-one", "--", "true", check=True)
    feedpath = tmp_path / "fb"
    feedpath.mkdir()
    beat = tmp_path / "beat"
    script = (
        'echo "[progress]30" > $TASKWATCHER_FEEDBACK; '
        f'while [ ! -e {beat} ]; do sleep 0.05; done; echo "[progress]75" >> $TASKWATCHER_FEEDBACK; sleep 60'
    )
    tw.run("launch", "--detach", "--name", "long-job", "--feedpath", str(feedpath), "--", "sh", "-c", script)
    screen.wait_for(r"long-job.*RUNNING.*30%")
    screen.wait_for(r"finished-one")
    assert "1 running" in screen.text()
    beat.touch()
    screen.wait_for(r"long-job.*75%")  # refreshed on its own, about once a second
    screen.press(b"q")
    assert screen.proc.wait(10) == 0
    assert running_task(tw)[1]["name"] == "long-job"  # leaving the view stops nothing


def test_watch_leaves_on_ctrl_c(tw, screen):
    screen.wait_for("no task running or reserved")
    os.killpg(screen.proc.pid, signal.SIGINT)
    assert screen.proc.wait(10) == 0


def test_watch_puts_the_terminal_back(tw, screen):
    import termios

    before = termios.tcgetattr(screen.master)
    screen.wait_for("history is empty")
    screen.press(b"q")
    assert screen.proc.wait(10) == 0
    assert termios.tcgetattr(screen.master)[3] == before[3]  # echo and canonical mode are back
    screen.text()
    assert b"\x1b[?1049l" in screen.raw  # the alternate screen is left: the shell's screen is back


def test_watch_without_a_terminal_is_a_usage_error(tw):
    started = time.monotonic()
    proc = tw.run("control", "--watch", timeout=10)
    assert proc.returncode == 2
    assert "needs a terminal" in one_line_error(proc)
    assert time.monotonic() - started < 10


@pytest.mark.sqlite_only("replaces the SQLite file with garbage and puts it back")
def test_watch_outlasts_a_database_it_cannot_read_for_a_while(tw, screen):
    """A database that becomes unreadable is said in red, and the view comes back with it."""
    screen.wait_for("no task running or reserved")
    tw.run("control", "--update", check=True)  # reads never create the database: a write does
    good = tw.db.read_bytes()
    moved = tw.db.with_suffix(".away")
    tw.db.rename(moved)
    tw.db.write_bytes(b"not a database at all" * 100)
    screen.wait_for("not a taskwatcher database")
    assert screen.proc.poll() is None
    tw.db.unlink()
    moved.rename(tw.db)
    assert tw.db.read_bytes() == good
    before = len(screen.text())
    wait_for(lambda: "no task running or reserved" in screen.text()[before:], 15, "the view back")
    screen.press(b"q")
    assert screen.proc.wait(10) == 0


@pytest.mark.parametrize("columns", [80, 120])
def test_watch_fits_the_terminal_and_shows_feedback_escaped(tw, tmp_path, columns):
    taskid = hostile_tasks(tw, tmp_path)
    screen = Screen(tw, columns=columns, rows=30)
    try:
        screen.wait_for(r"RUNNING")
        screen.wait_for(r"phase=\\e\[2Jwip")  # the latest feedback but progress, escaped
        screen.press(b"q")
        assert screen.proc.wait(10) == 0
        frame = screen.frames()[-1]
    finally:
        screen.close()
        kill_own_processes(tmp_path / "home")
    for data in RAW_DATA:
        assert data not in screen.raw  # names, infos, commands, feedback: never raw
    assert_fits(frame, columns)
    assert len(frame) <= 30
    rows = [line for line in frame if re.match(r"\s*\d+  ", line)]
    assert [r.split()[0] for r in rows] == ["1", "2", taskid]  # a line each: nothing wrapped
    assert "40%" in rows[2] and "progress=" not in rows[2]


def test_watch_says_how_many_tasks_it_could_not_show(tw, tmp_path):
    for i in range(12):
        reserve(tw, "--name", f"queued-{i}", "--ttl", "120")
    screen = Screen(tw, columns=100, rows=12)
    try:
        # 12 lines: the title and its rule, the tasks' header, 8 tasks and the line saying so.
        screen.wait_for(r"… 4 more")
        screen.press(b"q")
        assert screen.proc.wait(10) == 0
        frame = screen.frames()[-1]
    finally:
        screen.close()
    assert "queued-7" in "\n".join(frame) and "queued-8" not in "\n".join(frame)
    assert len([line for line in frame if line.strip()]) <= 12


def test_a_failing_look_says_the_refresh_interval_it_was_given(tmp_path):
    from taskwatcher import TaskWatcher, watch

    folder = tmp_path / "a-folder.db"
    folder.mkdir()  # a database path that fails at each look
    text = watch._view_or_error(TaskWatcher(folder), 5, (100, 24), refresh=2.5)
    assert "is a folder" in text.plain and "retrying each 2.5 s" in text.plain
