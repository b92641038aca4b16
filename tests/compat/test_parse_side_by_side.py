"""``python -m taskwatcher.parse`` gives 1.7's output byte for byte (SPEC Part 2,
"taskwatcher 1.x compatibility"), for every file: edge cases named here, and files
generated from an alphabet of troublesome pieces (white space Python strips, line ends
1.7's reading splits on and those it does not, a byte order mark, keys 1.7 took or
ignored, bytes that are not UTF-8). The real 1.7 parses them in one process of its own
(v17_parse_driver.py); ours runs in this one, through the same entry point as the command."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskwatcher.compat import v17

DRIVER = Path(__file__).with_name("v17_parse_driver.py")

Result = tuple[int, str]


@pytest.fixture(scope="module")
def parse_17(v17_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Result]]:
    """1.7's parse of a file: (exit status, stdout), from one driver process for the module."""
    cwd = tmp_path_factory.mktemp("v17-parse")  # 1.7 writes debug.log where it runs
    driver = subprocess.Popen([str(v17_python), "-E", str(DRIVER)], cwd=cwd, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip

    def parse(path: str) -> Result:
        driver.stdin.write(json.dumps(path) + "\n")
        driver.stdin.flush()
        status, out = json.loads(driver.stdout.readline())
        return status, out

    yield parse
    driver.stdin.close()
    driver.wait(timeout=30)


def parse_ours(path: str) -> Result:
    """Ours: ``python -m taskwatcher.parse --feedback PATH``'s exit status and stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = v17.parse_main(["--feedback", path])
    return status, out.getvalue()


EDGE_CASES: dict[str, bytes] = {
    "keys 1.7 ignored: a dot, non-ASCII": "[a.b]1\n[é]2\n[ok]4\n".encode(),
    "a key starting with a digit, [] and [ ]": b"[1x]digit\n[]\n[ ]x\n[9]nine\n",
    "an empty value removes the key": b"[a]1\n[b]2\n[a]\n[a]3\n[b]   \n",
    "white space around: stripped, inside the value kept": b"  \t[a]  x  y \t\n[b]\t\n",
    "a byte order mark: the first line is not a feedback line": b"\xef\xbb\xbf[a]1\n[b]2\n",
    "a byte order mark on a later line": b"[a]1\n\xef\xbb\xbf[b]2\n",
    "CR alone and CRLF end lines": b"[a]1\r[b]2\r\n[c]3\n\r[d]4",
    "form feed, vertical tab, NEL, U+2028: not line ends, stripped at the ends": (
        "[a]1\x0c[b]2\n[c]3\x0b[d]4\n[e]5\x85[f]6\n[g]7\u2028[h]8\n[i]\x1c\x1d\x1e\x1f\n\u3000[j]9\xa0\n".encode()
    ),
    "a partial last line": b"[a]1\n[b]2",
    "NUL and controls in values": b"[a]x\x00y\n[b]\x1b[31mred\n",
    "quotes, backslashes, brackets in values": b'[a]{"k": "v\\n"}\n[b][c]d\n[e]]\n',
    "uppercase, hyphen and underscore keys": b"[A-Z_9]1\n[-]2\n[_]3\n",
    "not UTF-8: 1.7 failed (exit 1, nothing printed)": b"[a]1\n[b]\xff\n",
    "a truncated UTF-8 sequence at the end": b"[a]1\n[b]\xe2\x82",
    "a UTF-8-encoded surrogate": b"[a]\xed\xa0\x80\n",
    "CRLF and a character across 1.7's 8 KiB reads": b"[a]"
    + b"x" * 8186
    + b"\r\n[b]"
    + b"y" * 8185
    + "é\n".encode(),
    "only a newline": b"\n",
    "empty": b"",
}


@pytest.mark.parametrize("content", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_parse_as_1_7_byte_for_byte(parse_17, tmp_path, content):
    path = tmp_path / "feedback.log"
    path.write_bytes(content)
    assert parse_ours(str(path)) == parse_17(str(path))


def test_a_file_that_cannot_be_read_is_1_7s_empty_object(parse_17, tmp_path):
    """Not there yet (back-ends ask before the task's first line), a folder: 1.7 printed "{}"."""
    for path in (tmp_path / "not-yet.log", tmp_path):
        assert parse_ours(str(path)) == parse_17(str(path)) == (0, '"{}"\n')


def test_an_unreadable_file_says_why_in_one_line_where_1_7_gave_a_traceback(tmp_path, capsys):
    path = tmp_path / "f.log"
    path.write_bytes(b"[a]1\n[b]\xff\n")
    assert v17.parse_main(["--feedback", str(path)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"taskwatcher: feedback file {path} is not UTF-8 text (invalid start byte)\n")


# Pieces of feedback files: what makes a line one, or not one, for 1.7.
PIECES = [
    "[", "]", "[a]", "[ok]", "[Z-9_]", "[1]", "[]", "[a.b]", "[é]",
    "a", "0", "-", "_", ".", "#", "é", "\U0001f600", '"', "\\", "\x00", "\x1b",
    " ", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\ufeff",
    "\n", "\n", "\r", "\r\n",
]  # fmt: skip
NOT_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"]  # a bad byte, truncated sequences, a surrogate
text_files = st.lists(st.sampled_from(PIECES), max_size=40).map(lambda p: "".join(p).encode())
byte_files = st.lists(st.sampled_from([p.encode() for p in PIECES] + NOT_UTF8), max_size=40).map(b"".join)


@settings(max_examples=250, deadline=None)
@given(content=st.one_of(text_files, text_files, byte_files))
def test_generated_files_parse_as_1_7_byte_for_byte(parse_17, tmp_path_factory, content):
    path = tmp_path_factory.getbasetemp() / "generated-feedback.log"
    path.write_bytes(content)
    assert parse_ours(str(path)) == parse_17(str(path))
