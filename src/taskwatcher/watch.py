"""``control --watch``: a full-screen live view of the tasks (rich is imported only here and in display)."""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .display import TASK_COLUMNS, escape_control, format_time, history_lines, task_lines
from .errors import TaskwatcherError, UsageError
from .tables import reranked

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .api import TaskWatcher
    from .records import Task

REFRESH = 1.0  # seconds between two looks at the database
HISTORY_ROWS = 5
QUIT_KEYS = (b"q", b"Q")
BAR = 10  # cells of the progress bar
# The live view shows what the tasks are doing now: their feedback outranks their command.
COLUMNS = reranked(TASK_COLUMNS, feedback=9, command=7)


def watch(tw: TaskWatcher, refresh: float = REFRESH, history_rows: int = HISTORY_ROWS) -> None:
    """Show the running tasks with their progress, refreshed each ``refresh`` s, until q or Ctrl-C."""
    if not sys.stdout.isatty():
        raise UsageError("--watch needs a terminal: use --list (or --list --json) instead")
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        with (
            _keyboard() as key_pressed,
            Live(
                _view(tw, history_rows, _size(console)), console=console, screen=True, auto_refresh=False
            ) as live,
        ):
            while not key_pressed(refresh):
                live.update(_view_or_error(tw, history_rows, _size(console), refresh), refresh=True)
    except KeyboardInterrupt:
        pass


def _size(console: Any) -> tuple[int, int]:
    """The terminal's size now (asked at each refresh: the window may have been resized)."""
    width, height = console.size
    return width, height


def _view_or_error(
    tw: TaskWatcher, history_rows: int, size: tuple[int, int] = (80, 24), refresh: float = REFRESH
) -> Any:
    """The view; if the database fails this time (locked past the busy timeout, say), the
    error in red: a live view outlasts a passing failure, and says so rather than freezing."""
    from rich.text import Text

    try:
        return _view(tw, history_rows, size)
    except TaskwatcherError as e:
        message = (
            f"{format_time(time.time())}  {escape_control(str(e))}  (retrying each {refresh:g} s; q quits)"
        )
        return Text(message, style="red")


def _view(tw: TaskWatcher, history_rows: int, size: tuple[int, int] = (80, 24)) -> Any:
    """The screen: a title line, the tasks (as many as fit, then "… N more"), the last finished.

    Every line is fitted to the width (never wrapped); the tasks come first in the
    height, and the finished ones get what is left.
    """
    from rich.console import Group
    from rich.rule import Rule
    from rich.text import Text

    width, height = size
    tasks = tw.tasks(feedback=True)
    finished = tw.history(last=history_rows)
    now = time.time()
    running = sum(t.running for t in tasks)
    header = Text.assemble(
        ("taskwatcher", "bold"),
        f"  {escape_control(str(tw.shown))}  {format_time(now, now)}  ",
        (f"{running} running", "green"),
        f", {len(tasks) - running} reserved",
        ("   q quits", "dim"),
        no_wrap=True,
        overflow="ellipsis",
    )
    parts: list[Any] = [header, Rule(style="dim")]
    room = height - 2  # lines left under the title and its rule
    if tasks:
        lines = task_lines(tasks, width, now, _bar, COLUMNS)
        if len(lines) > room:  # the header, as many tasks as fit, and what was left out
            shown = max(0, room - 2)
            more = f"… {len(tasks) - shown} more"
            lines = [*lines[: 1 + shown], (more, [(0, len(more), "dim")])]
        parts += [_text(line) for line in lines]
        room -= len(lines)
    else:
        parts.append(Text("no task running or reserved", style="dim"))
        room -= 1
    if room >= 3:  # a rule, and the history's header and at least one row
        finished = finished[-(room - 2) :] if len(finished) > room - 2 else finished
        parts.append(Rule(f"last {len(finished) or history_rows} finished", style="dim"))
        if finished:
            parts += [_text(line) for line in history_lines(finished, width, now)]
        else:
            parts.append(Text("history is empty", style="dim"))
    return Group(*parts)


def _text(line: tuple[str, list[tuple[int, int, str]]]) -> Any:
    from rich.text import Span, Text

    text, spans = line
    return Text(text, spans=[Span(*s) for s in spans], no_wrap=True, overflow="ellipsis")


def _bar(task: Task) -> str:
    """``█████░░░░░  50%``: the live view's progress bar, in plain text."""
    if task.progress is None:
        return ""
    filled = round(task.progress * BAR / 100)
    return f"{'█' * filled}{'░' * (BAR - filled)} {task.progress:3.0f}%"


@contextmanager
def _keyboard() -> Iterator[Any]:
    """A function that waits up to t seconds for a key and says whether it was a quit key.

    The terminal is put in cbreak mode (keys arrive one by one, unechoed) and put back
    on the way out, whatever happens.
    """
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):

        def sleep_only(t: float) -> bool:
            time.sleep(t)
            return False

        yield sleep_only
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def quit_pressed(t: float) -> bool:
        deadline = time.monotonic() + t
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([fd], [], [], left)[0]:
                return False
            key = os.read(fd, 32)
            if not key or key[:1] in QUIT_KEYS:
                return True
        return False

    try:
        yield quit_pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
