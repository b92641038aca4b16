"""``control --watch``: a full-screen live view of the tasks (rich is imported only here and in display)."""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .display import format_time, history_table, tasks_table
from .errors import TaskwatcherError, UsageError

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .api import TaskWatcher
    from .records import Task

REFRESH = 1.0  # seconds between two looks at the database
HISTORY_ROWS = 5
QUIT_KEYS = (b"q", b"Q")


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
            Live(_view(tw, history_rows), console=console, screen=True, auto_refresh=False) as live,
        ):
            while not key_pressed(refresh):
                live.update(_view_or_error(tw, history_rows), refresh=True)
    except KeyboardInterrupt:
        pass


def _view_or_error(tw: TaskWatcher, history_rows: int) -> Any:
    """The view; if the database fails this time (locked past the busy timeout, say), the
    error in red: a live view outlasts a passing failure, and says so rather than freezing."""
    from rich.text import Text

    try:
        return _view(tw, history_rows)
    except TaskwatcherError as e:
        return Text(f"{format_time(time.time())}  {e}  (retrying each {REFRESH:g} s; q quits)", style="red")


def _view(tw: TaskWatcher, history_rows: int) -> Any:
    from rich.console import Group
    from rich.rule import Rule
    from rich.text import Text

    tasks = tw.tasks(feedback=True)
    finished = tw.history(last=history_rows)
    now = time.time()
    running = sum(t.running for t in tasks)
    header = Text.assemble(
        ("taskwatcher", "bold"),
        f"  {tw.path}  {format_time(now, now)}  ",
        (f"{running} running", "green"),
        f", {len(tasks) - running} reserved",
        ("   q quits", "dim"),
    )
    parts: list[Any] = [header, Rule(style="dim")]
    parts.append(tasks_table(tasks, now, _bar) if tasks else Text("no task running or reserved", style="dim"))
    parts.append(Rule(f"last {history_rows} finished", style="dim"))
    parts.append(history_table(finished, now) if finished else Text("history is empty", style="dim"))
    return Group(*parts)


def _bar(task: Task) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    if task.progress is None:
        return ""
    cell = Table.grid(padding=(0, 1))
    cell.add_row(ProgressBar(total=100, completed=task.progress, width=20), f"{task.progress:3.0f}%")
    return cell


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
