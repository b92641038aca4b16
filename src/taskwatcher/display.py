"""Tables for people: readable times and durations (rich is imported only here)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any


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


_STATUS_STYLE = {"RUNNING": "green", "SILENT": "yellow", "STALLED": "red", "RESERVED": "cyan"}


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    # Piped output keeps whole rows rather than squeezing them into 80 columns.
    return Console(width=None if sys.stdout.isatty() else 240, highlight=False)


def _texts(*values: str) -> list[Any]:
    """Cells as plain text: a name like "[bold]" is shown, never read as markup."""
    from rich.text import Text

    return [Text(v) for v in values]


def progress_bar(value: str | None, width: int = 10) -> str:
    """``[####------] 42%`` from a feedback ``progress`` value (a number 0-100), else ""."""
    try:
        percent = min(100.0, max(0.0, float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    filled = round(percent * width / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:.0f}%"


def print_tasks(
    tasks: Mapping[str, Mapping[str, Any]], progress: Mapping[str, str | None] | None = None
) -> None:
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    table = Table(title=None, box=None, header_style="bold")
    for col in (
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
    ):
        table.add_column(col, overflow="fold")
    for taskid, t in tasks.items():
        status = t["status"]
        table.add_row(
            *_texts(
                taskid,
                t["name"] or "-",
                t["info1"] or "",
                t["info2"] or "",
                t["info3"] or "",
                str(t["pid"] or "-"),
            ),
            Text(status, style=_STATUS_STYLE.get(status, "")),
            *_texts(
                format_time(t["starttime"], now),
                format_duration(t["duration"]),
                "yes" if t["feedback"] else "no",
                format_duration(t["timer"]),
                format_duration(t["timeout"]) if t["timeout"] else "-",
                progress_bar((progress or {}).get(taskid)),
            ),
        )
    if not tasks:
        print("no task running or reserved")
        return
    _console().print(table)


def print_history(entries: Mapping[str, Mapping[str, Any]]) -> None:
    from rich.table import Table

    if not entries:
        print("history is empty")
        return
    now = time.time()
    table = Table(box=None, header_style="bold")
    for col in (
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
    ):
        table.add_column(col, overflow="fold")
    for hid, e in entries.items():
        exitcode = e["exitcode"]
        table.add_row(
            *_texts(
                hid,
                str(e["taskid"]),
                e["taskname"] or "-",
                e["info1"] or "",
                e["info2"] or "",
                e["info3"] or "",
                format_time(e["starttime"], now),
                format_time(e["endtime"], now),
                format_duration(e["duration"]),
                "-" if exitcode is None else str(exitcode),
                e["termsignal"],
                e["termerror"],
                json.dumps(e["feedback"], ensure_ascii=False) if e["feedback"] else "",
            )
        )
    _console().print(table)
