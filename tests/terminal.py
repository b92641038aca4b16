"""Running the CLI on a real pseudo-terminal of a chosen size, and reading what it drew."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

from rich.cells import cell_len  # an implementation of display widths other than ours

from conftest import TW

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colours and bold: the only escapes a table may send


def sized_pty(columns: int, rows: int) -> tuple[int, int]:
    """A pseudo-terminal (master, slave) whose window is ``columns`` x ``rows``."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def terminal_env(env: dict[str, str]) -> dict[str, str]:
    """The test environment, with the window size left to the terminal itself."""
    env = dict(env, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    env.pop("NO_COLOR", None)
    return env


def run_on_terminal(
    tw, *args: str, columns: int, rows: int = 40, timeout: float = 30, env: dict[str, str] | None = None
) -> bytes:
    """``taskwatcher control --db DB ARGS`` with stdout and stderr on a terminal; every byte it sent."""
    master, slave = sized_pty(columns, rows)
    cmd = [*TW, "control", "--db", str(tw.db), *args]
    env = {**terminal_env(tw.env), **(env or {})}
    proc = subprocess.Popen(cmd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    raw = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:  # read as it comes: a full terminal would block the writer
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has gone
                break
            if not chunk:
                break
            raw += chunk
        assert proc.wait(timeout) == 0, raw.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return raw


def lines_drawn(raw: bytes) -> list[str]:
    """The lines a terminal shows for ``raw`` (a table's output: colours aside, plain lines)."""
    assert b"\x1b" not in SGR.sub(b"", raw), f"an escape other than a colour: {raw!r}"
    text = SGR.sub(b"", raw).decode()
    return text.replace("\r\n", "\n").rstrip("\n").split("\n")


def assert_fits(lines: list[str], columns: int) -> None:
    """No line is wider than the terminal, so none wraps."""
    for line in lines:
        assert cell_len(line) <= columns, f"{cell_len(line)} > {columns} cells: {line!r}"
