"""The layout of tables for people: columns fitted to a width, cut with …, never wrapped;
whole when there is no width; long tables laid out a page at a time."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len  # display widths measured by another implementation than ours

from taskwatcher.tables import ELLIPSIS, Column, Layout, cut


def lay_out(columns, rows, width):
    layout = Layout(columns, width)
    layout.add_page(rows)
    return [layout.header()[0], *(layout.line(r)[0] for r in rows)]


@given(st.text(alphabet=string.ascii_letters + "é日本語한国\u0301", max_size=40), st.integers(1, 30))
def test_cut_fits_its_width_and_says_it_cut(text, width):
    shown = cut(text, width)
    assert cell_len(shown) <= width
    if cell_len(text) <= width:
        assert shown == text
    else:
        assert shown.endswith(ELLIPSIS) and text.startswith(shown[:-1])


def test_cut_counts_wide_characters_as_two_cells():
    assert cut("日本語テキスト", 7) == "日本語…"
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…"


COLUMNS = [
    Column("id", right=True),
    Column("name", flex=True, rank=5),
    Column("status"),
    Column("info1", flex=True, rank=2),
    Column("duration", rank=3),
    Column("command", flex=True, rank=4),
]
cell = st.text(alphabet=string.ascii_letters + " -é日本", max_size=60)
status = st.sampled_from(["RUNNING", "RESERVED"])
row = st.tuples(st.integers(1, 10**6).map(str), cell, status, cell, cell, cell)


@settings(max_examples=150, deadline=None)
@given(st.lists(row, min_size=1, max_size=8), st.integers(min_value=30, max_value=200))
def test_no_line_is_wider_than_the_terminal_and_headers_stay_whole(rows, width):
    lines = lay_out(COLUMNS, rows, width)
    assert len(lines) == len(rows) + 1  # one line per row: nothing wrapped
    for line in lines:
        assert cell_len(line) <= width, line
    headers = lines[0].split()
    assert {"id", "status"} <= set(headers)  # never left out
    assert set(headers) <= {c.header for c in COLUMNS}  # no header cut or broken ("RUNN", "ING")
    for r, line in zip(rows, lines[1:], strict=True):
        assert line.lstrip().startswith(r[0])  # the id, whole, first


@settings(max_examples=100, deadline=None)
@given(st.lists(row, min_size=1, max_size=8))
def test_without_a_width_every_value_is_whole(rows):
    lines = lay_out(COLUMNS, rows, None)
    for r, line in zip(rows, lines[1:], strict=True):
        at = 0
        for value in r:
            if value not in ("", "-"):  # "-" alone means no value: a column of them is left out
                whole = value.rstrip(" ")  # a line's trailing blanks are dropped
                found = line.find(whole, at)
                assert found >= 0, (value, line)  # whole, and in column order
                at = found + len(whole)


def test_columns_empty_for_every_row_are_left_out():
    rows = [("1", "build", "RUNNING", "", "-", "make"), ("2", "test", "RESERVED", "", "3s", "")]
    header = lay_out(COLUMNS, rows, 120)[0].split()
    assert header == ["id", "name", "status", "duration", "command"]  # info1 was empty everywhere


def test_a_narrow_terminal_leaves_out_the_lowest_ranks_first_and_cuts_the_longest_cells():
    rows = [("1", "nightly-build", "RUNNING", "campaign 7", "3m05s", "python3 job.py --run " + "x" * 80)]
    header, line = lay_out(COLUMNS, rows, 60)
    assert header.split() == ["id", "name", "status", "duration", "command"]  # info1 (rank 2) went first
    assert "nightly-build" in line  # short enough: whole
    assert line.endswith(ELLIPSIS) and cell_len(line) == 60  # the command takes the rest, cut


def test_a_page_that_needs_wider_columns_repeats_the_header():
    layout = Layout(COLUMNS, None)
    assert layout.add_page([("1", "a", "RUNNING", "", "1s", "x")])  # the first page: a header
    assert not layout.add_page([("2", "b", "RUNNING", "", "2s", "y")])  # same layout: no header
    assert layout.add_page([("3", "c", "RUNNING", "now filled", "3s", "z")])  # a new column
    assert "info1" in layout.header()[0]
