"""Tables for people: what ``--list`` and ``--history`` show, and how text meets a terminal.

Every text a task or a user wrote passes through :func:`escape_control` before it is
shown. On a terminal, tables fit its width (:mod:`tables` lays them out); written
elsewhere (a pipe, a file) they are never cut. A cell's text is cut to the width of
the terminal before anything measures it, so a 10 MB name costs what a short one does.
The tables are plain text with SGR colours, written line by line: a history of 100k
rows streams page by page, and rich is never imported for them.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from .tables import ELLIPSIS, Column, Layout, Line, ansi, cut

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any, TextIO

    from .records import FinishedTask, Task

# C0, DEL, C1; the line and paragraph separators and the bidirectional controls (they move
# or reorder what follows them: text shown could read other than it is); lone surrogates
# (bytes that were not UTF-8, kept by surrogateescape).
_CONTROL = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069\\ud800-\\udfff]"
)


def format_time(unix: float | None, now: float | None = None) -> str:
    """A local time; the date is left out for today."""
    if unix is None:
        return "-"
    local = time.localtime(unix)
    same_day = local[:3] == _today(time.time() if now is None else now)
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", local)


@functools.lru_cache(maxsize=4)
def _today(now: float) -> tuple[int, ...]:
    """The local date at ``now``, remembered: a table asks it for every row with the same ``now``."""
    return tuple(time.localtime(now)[:3])


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
    and so are the Unicode line separators and bidirectional overrides, and lone
    surrogates (undecodable bytes), which could not even be printed.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: _escape_one(m.group()), text)


# -- where a table goes ---------------------------------------------------------------------
def terminal_width(stream: TextIO | None = None) -> int | None:
    """The width of the terminal ``stream`` (default stdout) writes to; None if it is not one.

    None means: never cut. ``COLUMNS``, when set, overrides the terminal's own size.
    """
    stream = sys.stdout if stream is None else stream
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):  # io.StringIO, a closed stream
        return None
    if not os.isatty(fd):
        return None
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(fd).columns or 80
    except OSError:
        return 80


def _colours() -> bool:
    """Colours on a terminal, unless NO_COLOR is set (no-color.org) or TERM is dumb."""
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _writer(stream: TextIO) -> Callable[[str], object]:
    """Write text whatever the stream's encoding: a character it cannot encode becomes ?."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return stream.write
    stream.flush()
    return lambda text: buffer.write(text.encode(encoding, "replace"))


def _console():  # type: ignore[no-untyped-def]
    """A rich console, for views built of rich renderables (the tables here are plain text)."""
    from rich.console import Console

    # Piped output keeps whole rows rather than squeezing them into 80 columns.
    return Console(width=None if sys.stdout.isatty() else 240, highlight=False)


def _texts(*values: str) -> list[Any]:
    """Cells as plain text: a name like "[bold]" is shown, never read as markup."""
    from rich.text import Text

    return [Text(v) for v in values]


# -- cells ----------------------------------------------------------------------------------
def shown(text: str | None, limit: int | None) -> str:
    """``text`` escaped for a terminal; with ``limit``, no more than ``limit`` characters of it
    are looked at (an over-long one ends in ``…``): the table cuts it to its cell anyway."""
    if not text:
        return ""
    if limit is None or len(text) <= limit:
        return escape_control(text)
    return escape_control(text[:limit]) + ELLIPSIS


def command_text(argv: Sequence[str] | None, limit: int | None) -> str:
    """The command as a shell would read it (``sh -c 'echo hi'``), escaped; see :func:`shown`."""
    if not argv:
        return ""
    import shlex

    words, length = [], 0
    for arg in argv:
        word = shlex.quote(arg[: limit + 1] if limit is not None else arg)
        words.append(word)
        length += len(word) + 1
        if limit is not None and length > limit:
            break
    return shown(" ".join(words), limit)


def feedback_text(feedback: Any, limit: int | None, skip: str | None = None) -> str:
    """A task's feedback as ``key=value, key=value`` (all keys but ``skip``), escaped."""
    if not feedback:
        return ""
    if not isinstance(feedback, dict):  # a 1.x history row may hold any text
        return shown(str(feedback), limit)
    pairs, length = [], 0
    for key, value in feedback.items():
        if key == skip:
            continue
        pair = f"{key}={value}"
        pairs.append(pair if limit is None else pair[: limit + 1])
        length += len(pair) + 2
        if limit is not None and length > limit:
            break
    return shown(", ".join(pairs), limit)


def progress_bar(value: str | float | None, width: int = 10) -> str:
    """``[####------] 42%`` from a feedback ``progress`` value (a number 0-100), else ""."""
    try:
        percent = min(100.0, max(0.0, float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    filled = round(percent * width / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {percent:.0f}%"


# -- the running and reserved tasks ----------------------------------------------------------
_STATUS_STYLE = {
    "RUNNING": "green", "SILENT": "yellow", "STALLED": "red", "RESERVED": "cyan", "QUEUED": "blue",
}  # fmt: skip

# In order on the line. rank: the lowest gives way first when the terminal is narrow.
TASK_COLUMNS = (
    Column("taskid", right=True),
    Column("name", flex=True, rank=12),
    Column("info1", flex=True, rank=8),
    Column("info2", flex=True, rank=4),
    Column("info3", flex=True, rank=3),
    Column("pid", right=True, rank=5),
    Column("status", styles=_STATUS_STYLE),
    Column("line", rank=4),  # a queued task's group and place ("build #3"), or what it waits for
    Column("attempt", right=True, rank=3),
    Column("started", rank=6),
    Column("duration", rank=10),
    Column("timer", rank=1),
    Column("timeout", rank=2),
    Column("progress", rank=11),
    Column("feedback", flex=True, rank=7),
    Column("command", flex=True, rank=9),
)
# Shown after the name once a listed task runs on another host (a database many hosts share).
HOST_COLUMN = Column("host", flex=True, rank=10)


def _with_host(columns: Sequence[Column]) -> tuple[Column, ...]:
    return (*columns[:2], HOST_COLUMN, *columns[2:])


def many_hosts(tasks: Sequence[Task]) -> bool:
    """Whether the tasks are not all of this host: then ``--list`` names each one's host."""
    from .process import host_name

    here = host_name()
    return any(t.host and t.host != here for t in tasks)


def task_cells(
    task: Task, now: float, limit: int | None, bar: Callable[[Task], str] | None = None
) -> tuple[str, ...]:
    """One task's cells, in ``TASK_COLUMNS`` order. ``feedback``: its latest feedback but progress."""
    progress = bar(task) if bar is not None else progress_bar(task.progress)
    return (
        str(task.taskid),
        shown(task.name, limit) or "-",
        shown(task.info1, limit),
        shown(task.info2, limit),
        shown(task.info3, limit),
        str(task.pid or "-"),
        task.status,
        shown(line_text(task), limit),
        str(task.attempt) if task.attempt > 1 else "",
        format_time(task.starttime, now),
        format_duration(task.duration),
        format_duration(task.timer),
        format_duration(task.timeout) if task.timeout else "-",
        progress,
        feedback_text(task.latest, limit, skip="progress"),
        command_text(task.command, limit),
    )


def line_text(task: Task) -> str:
    """Where a task is in the line: its group and place, else what it runs after."""
    if task.status != "QUEUED":
        return task.group or ""
    if task.place is not None:
        return f"{task.group} #{task.place}"
    if task.after:
        return "after " + ",".join(map(str, task.after))
    return task.group or "retry"


def task_lines(
    tasks: Sequence[Task],
    width: int | None,
    now: float | None = None,
    bar: Callable[[Task], str] | None = None,
    columns: Sequence[Column] = TASK_COLUMNS,
) -> list[Line]:
    """The header and one line per task, fitted to ``width`` (None: whole values)."""
    now = time.time() if now is None else now
    rows = [task_cells(t, now, width, bar) for t in tasks]
    if columns is TASK_COLUMNS and many_hosts(tasks):
        columns = _with_host(columns)
        rows = [(*r[:2], shown(t.host, width) or "-", *r[2:]) for r, t in zip(rows, tasks, strict=True)]
    layout = Layout(columns, width)
    layout.add_page(rows)
    return [layout.header(), *(layout.line(r) for r in rows)]


def print_tasks(tasks: Sequence[Task], stream: TextIO | None = None) -> None:
    stream = sys.stdout if stream is None else stream
    if not tasks:
        print("no task running or reserved", file=stream)
        return
    width = terminal_width(stream)
    colour = width is not None and _colours()
    write = _writer(stream)
    for line in task_lines(tasks, width):
        write(ansi(line, colour) + "\n")


# -- history ----------------------------------------------------------------------------------
HISTORY_COLUMNS = (
    Column("id", right=True, rank=4),
    Column("taskid", right=True),
    Column("name", flex=True, rank=12),
    Column("info1", flex=True, rank=7),
    Column("info2", flex=True, rank=2),
    Column("info3", flex=True, rank=1),
    Column("started", rank=5),
    Column("ended", rank=8),
    Column("duration", rank=10),
    Column("exit", right=True, rank=11),
    Column("signal", rank=3),
    Column("why", flex=True, rank=9),
    Column("feedback", flex=True, rank=6),
)

PAGE = 500  # history rows laid out and written at a time: what a long history holds in memory


def history_cells(entry: FinishedTask, now: float, limit: int | None) -> tuple[str, ...]:
    """One finished task's cells, in ``HISTORY_COLUMNS`` order."""
    return (
        str(entry.historyid),
        str(entry.taskid),
        shown(entry.taskname, limit) or "-",
        shown(entry.info1, limit),
        shown(entry.info2, limit),
        shown(entry.info3, limit),
        format_time(entry.starttime, now),
        format_time(entry.endtime, now),
        format_duration(entry.duration),
        "-" if entry.exitcode is None else str(entry.exitcode),
        shown(entry.termsignal, limit),
        shown(entry.termerror, limit),
        feedback_text(entry.feedback, limit),
    )


def history_lines(
    entries: Iterable[FinishedTask], width: int | None, now: float | None = None, page: int = PAGE
) -> Iterator[Line]:
    """The header and a line per entry, fitted to ``width``, ``page`` entries at a time.

    A page that needs wider columns (or a column that was empty until then) widens
    the layout, and the header is given again above it; nothing but one page of
    entries is held, however long the history.
    """
    now = time.time() if now is None else now
    layout = Layout(HISTORY_COLUMNS, width)
    rows: list[tuple[str, ...]] = []
    for entry in entries:
        rows.append(history_cells(entry, now, width))
        if len(rows) >= page:
            yield from _page(layout, rows)
            rows = []
    if rows:
        yield from _page(layout, rows)


def _page(layout: Layout, rows: list[tuple[str, ...]]) -> Iterator[Line]:
    if layout.add_page(rows):
        yield layout.header()
    for row in rows:
        yield layout.line(row)


def print_history(
    entries: Iterable[FinishedTask], stream: TextIO | None = None, empty: str = "history is empty"
) -> None:
    """The history table, streamed: ``entries`` may be an iterator over a long history.

    ``empty`` is what is said when there is no entry (a filter names what it matched).
    """
    stream = sys.stdout if stream is None else stream
    width = terminal_width(stream)
    colour = width is not None and _colours()
    write = _writer(stream)
    not_one = True
    for line in history_lines(entries, width):
        not_one = False
        write(ansi(line, colour) + "\n")
    if not_one:
        print(empty, file=stream)


# -- control --show: one task, for people ----------------------------------------------
_SHOW_TIMES = ("reservetime", "starttime", "endtime", "lastupdate", "expiretime")
_SHOW_DURATIONS = ("duration", "timer", "timeout")
_SHOW_LABELS = {"reservetime": "reserved", "starttime": "started", "endtime": "ended",
                "lastupdate": "heartbeat", "expiretime": "expires", "historyid": "history id",
                "exitcode": "exit", "termsignal": "signal", "termerror": "why"}  # fmt: skip
_SHOW_ORDER = ("taskid", "name", "status", "info1", "info2", "info3", "command", "host", "pid",
               "reservetime", "starttime", "endtime", "duration", "lastupdate", "timer", "timeout",
               "expiretime", "unique", "group", "place", "after", "attempt", "exitcode", "termsignal",
               "termerror", "hook", "historyid", "feedpath", "logfile")  # fmt: skip


def show_rows(detail: dict[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """``control --show``'s (field, value) pairs, readable and escaped; what is unknown is left out."""
    import shlex

    now = time.time() if now is None else now
    rows: list[tuple[str, str]] = []
    for key in _SHOW_ORDER:
        value = detail.get(key)
        if value is None or value == "":
            continue
        if key in _SHOW_TIMES:
            text = format_time(value, now)
        elif key in _SHOW_DURATIONS:
            text = format_duration(value)
        elif key == "command":
            text = shlex.join(value) if isinstance(value, list) else str(value)
        elif key == "unique":
            text = "yes" if value else "no"
        elif key == "after":
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        else:
            text = str(value)
        rows.append((_SHOW_LABELS.get(key, key), escape_control(text)))
    tried = detail.get("attempts") or []
    if len(tried) > 1 or (tried and not detail.get("finished")):  # retried: how each attempt ended
        rows.append(("attempts", escape_control(", ".join(map(_attempt_text, tried)))))
    feedback = detail.get("feedback")
    if isinstance(feedback, dict):
        rows += [(f"[{escape_control(k)}]", escape_control(str(v))) for k, v in feedback.items()]
    elif feedback:  # a 1.x row may hold any text
        rows.append(("feedback", escape_control(str(feedback))))
    return rows


def _attempt_text(attempt: dict[str, Any]) -> str:
    """``1: exit code 1``, ``2: timeout ...``, ``3: exit 0``: how one attempt ended, for --show."""
    if attempt["exitcode"] == 0 and not attempt["termsignal"]:
        how = "exit 0"
    else:
        how = attempt["termerror"] or attempt["termsignal"] or f"exit {attempt['exitcode']}"
    return f"{attempt['attempt']}: {how}"


def _fit(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` terminal cells, ending in …; whole when ``width`` is None."""
    return text if width is None else cut(text, width)


def print_show(detail: dict[str, Any]) -> None:
    """``control --show`` for people: field and value, then the log's last lines.

    On a terminal each line is cut to its width (…); piped, nothing is cut.
    """
    width = terminal_width(sys.stdout)
    rows = show_rows(detail)
    label = max(len(k) for k, _ in rows)
    lines = [_fit(f"{k:<{label}}  {v}", width) for k, v in rows]
    tail = detail.get("log_tail") or []
    if tail:
        lines += ["", f"last {len(tail)} line{'s' if len(tail) != 1 else ''} of the log:"]
        lines += [_fit("  " + escape_control(line), width) for line in tail]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
