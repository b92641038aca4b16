"""Tables for people: readable times and durations (rich is imported only here)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from .records import FinishedTask, Task

# C0, DEL, C1, and lone surrogates (bytes that were not UTF-8, kept by surrogateescape).
_CONTROL = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def format_time(unix: float | None, now: float | None = None) -> str:
    """A local time; the date is left out for today."""
    if unix is None:
        return "-"
    now = time.time() if now is None else now
    same_day = time.localtime(unix)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(unix))


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h03m``, ``4d02h``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.0f}s" if seconds >= 10 or seconds == s else f"{seconds:.1f}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


_NAMED_ESCAPES = {"\x1b": "\\e", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\x07": "\\a"}


def _escape_one(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8: show the byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\e``, ``\\n``, ``\\x07``...).

    Anything a task or a user wrote (names, infos, commands, feedback values,
    log lines) passes here before it reaches a terminal: a raw ESC could set the
    window title or clear the screen, a newline would break a table row.
    C0 controls, DEL and the C1 range (which some terminals also obey) are escaped,
    and so are lone surrogates (undecodable bytes), which could not even be printed.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: _escape_one(m.group()), text)


_STATUS_STYLE = {"RUNNING": "green", "SILENT": "yellow", "STALLED": "red", "RESERVED": "cyan"}


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    # Piped output keeps whole rows rather than squeezing them into 80 columns.
    return Console(width=None if sys.stdout.isatty() else 240, highlight=False)


def _texts(*values: str) -> list[Any]:
    """Cells as plain text: a name like "[bold]" is shown, never read as markup."""
    from rich.text import Text

    return [Text(v) for v in values]


def progress_bar(value: str | float | None, width: int = 10) -> str:
    """``[####------] 42%`` from a feedback ``progress`` value (a number 0-100), else ""."""
    try:
        percent = min(100.0, max(0.0, float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    filled = round(percent * width / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:.0f}%"


def tasks_table(tasks: Sequence[Task], now: float | None = None, bar: Callable[[Task], Any] | None = None):  # type: ignore[no-untyped-def]
    """The running and reserved tasks as a rich Table; ``bar`` makes the progress cell."""
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    table = Table(title=None, box=None, header_style="bold")
    for col in _TASK_COLUMNS:
        table.add_column(col, overflow="fold")
    for t in tasks:
        table.add_row(
            *_texts(
                str(t.taskid), t.name or "-", t.info1 or "", t.info2 or "", t.info3 or "", str(t.pid or "-")
            ),
            Text(t.status, style=_STATUS_STYLE.get(t.status, "")),
            *_texts(
                format_time(t.starttime, now),
                format_duration(t.duration),
                "yes" if t.feedback else "no",
                format_duration(t.timer),
                format_duration(t.timeout) if t.timeout else "-",
            ),
            bar(t)
            if bar is not None
            else Text(progress_bar(None if t.progress is None else str(t.progress))),
        )
    return table


_TASK_COLUMNS = [
    "taskid",
    "name",
    "info1",
    "info2",
    "info3",
    "pid",
    "status",
    "started",
    "duration",
    "feedback",
    "timer",
    "timeout",
    "progress",
]


def print_tasks(tasks: Sequence[Task]) -> None:
    if not tasks:
        print("no task running or reserved")
        return
    _console().print(tasks_table(tasks))


def history_table(entries: Sequence[FinishedTask], now: float | None = None):  # type: ignore[no-untyped-def]
    """Finished tasks as a rich Table, oldest first."""
    from rich.table import Table

    now = time.time() if now is None else now
    table = Table(box=None, header_style="bold")
    for col in _HISTORY_COLUMNS:
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            *_texts(
                str(e.historyid),
                str(e.taskid),
                e.taskname or "-",
                e.info1 or "",
                e.info2 or "",
                e.info3 or "",
                format_time(e.starttime, now),
                format_time(e.endtime, now),
                format_duration(e.duration),
                "-" if e.exitcode is None else str(e.exitcode),
                e.termsignal,
                e.termerror,
                json.dumps(e.feedback, ensure_ascii=False) if e.feedback else "",
            )
        )
    return table


_HISTORY_COLUMNS = [
    "id",
    "taskid",
    "name",
    "info1",
    "info2",
    "info3",
    "started",
    "ended",
    "duration",
    "exit",
    "signal",
    "why",
    "feedback",
]


def print_history(entries: Sequence[FinishedTask]) -> None:
    if not entries:
        print("history is empty")
        return
    _console().print(history_table(entries))


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
