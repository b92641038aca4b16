"""The feedback file format (SPEC, "Feedback file format"): the grammar of one line, the replay of a
whole text, and the incremental reader of a growing file."""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskwatcher import feedback
from taskwatcher.errors import FeedbackFileError
from taskwatcher.feedback import FeedbackState, apply_line, parse_file, parse_text, read_increment

# ---------------------------------------------------------------------------------------------------
# The grammar, line by line
# ---------------------------------------------------------------------------------------------------


def test_empty_and_blank_lines_are_ignored() -> None:
    assert parse_text("\n\n   \n\t\n[a]1\n\n \t \n") == {"a": "1"}


def test_comment_lines_are_ignored() -> None:
    assert parse_text("# [a]1\n#[b]2\n   # [c]3\n[d]4\n") == {"d": "4"}


def test_comments_are_not_reported_as_ignored_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A comment is part of the format; only "any other line" is reported (SPEC: --debug)."""
    with caplog.at_level(logging.DEBUG, logger="taskwatcher"):
        assert parse_text("# a comment\n  #another\n\n[a]1\n[a]\n[]\nnoise\n") == {}
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1, ignored
    assert "7" in ignored[0]
    assert "noise" in ignored[0]


def test_each_kind_of_ignored_line_is_reported_with_its_number(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="taskwatcher"):
        parse_text("[ok]1\n[1abc]x\n[a b]x\n[a[b]x\ntext\n[unclosed\n")
    messages = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(messages) == 5, messages
    for number, message in zip(range(2, 7), messages, strict=True):
        assert str(number) in message


def test_a_comment_does_not_remove_or_clear() -> None:
    assert parse_text("[a]1\n#[]\n#[a]\n") == {"a": "1"}


def test_lines_are_stripped_of_surrounding_white_space() -> None:
    assert parse_text("   [a]1   \n\t[b]two words\t\n \t [c]x \t\n") == {
        "a": "1",
        "b": "two words",
        "c": "x",
    }


def test_crlf_line_endings_are_stripped() -> None:
    assert parse_text("[a]1\r\n[b]2\r\n[a]\r\n[c]3\r\n") == {"b": "2", "c": "3"}


def test_crlf_file_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[progress]10\r\n[info]hello\r\n[info]\r\n[step]2\r\n")
    assert parse_file(path) == {"progress": "10", "step": "2"}


def test_white_space_inside_the_value_is_kept() -> None:
    assert parse_text("[msg]a  b\tc\n") == {"msg": "a  b\tc"}


def test_value_is_a_string() -> None:
    data = parse_text("[progress]100\n[ratio]0.5\n[flag]true\n")
    assert data == {"progress": "100", "ratio": "0.5", "flag": "true"}
    assert all(isinstance(v, str) for v in data.values())


def test_key_value_sets_the_key() -> None:
    assert parse_text("[progress]100") == {"progress": "100"}


def test_last_value_wins() -> None:
    assert parse_text("[p]1\n[q]a\n[p]2\n[p]3\n") == {"p": "3", "q": "a"}


def test_key_alone_removes_the_key() -> None:
    assert parse_text("[a]1\n[b]2\n[a]\n") == {"b": "2"}


def test_key_alone_with_surrounding_white_space_removes_the_key() -> None:
    assert parse_text("[a]1\n  [a]  \t\n") == {}


def test_removing_an_unknown_key_is_harmless() -> None:
    assert parse_text("[a]1\n[zzz]\n") == {"a": "1"}


def test_a_removed_key_can_be_set_again() -> None:
    assert parse_text("[a]1\n[a]\n[a]2\n") == {"a": "2"}


def test_heartbeat_changes_no_data() -> None:
    assert parse_text("[a]1\n[heartbeat]\n[heartbeat]\n") == {"a": "1"}


def test_empty_brackets_clear_everything_read_so_far() -> None:
    assert parse_text("[a]1\n[b]2\n[]\n[c]3\n") == {"c": "3"}


def test_empty_brackets_with_text_after_still_clear() -> None:
    assert parse_text("[a]1\n[b]2\n[]whatever [x]y\n[c]3\n") == {"c": "3"}
    assert parse_text("[a]1\n[]]\n") == {}


def test_empty_brackets_after_white_space_clear() -> None:
    assert parse_text("[a]1\n   []  \n") == {}


@pytest.mark.parametrize(
    "line",
    [
        "[1abc]x",  # starts with a digit
        "[0]x",
        "[9lives]x",
        "[a b]x",  # white space inside
        "[a\tb]x",
        "[a\u00a0b]x",  # non-breaking space is white space too
        "[a[b]x",  # '[' inside
        "[[a]x",
        "[ a]x",
        "[a ]x",
    ],
)
def test_invalid_keys_are_ignored(line: str) -> None:
    assert parse_text(f"[keep]1\n{line}\n") == {"keep": "1"}


@pytest.mark.parametrize("line", ["[1abc]", "[a b]", "[a[b]"])
def test_invalid_key_alone_removes_nothing(line: str) -> None:
    assert parse_text("[1abc]1\n[keep]1\n" + line + "\n") == {"keep": "1"}


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("[a1]x", "a1", "x"),
        ("[_]x", "_", "x"),
        ("[a-b.c:d/e]x", "a-b.c:d/e", "x"),
        ("[testcase_id]001", "testcase_id", "001"),
        ("[clé]valeur", "clé", "valeur"),
        ("[進捗]50", "進捗", "50"),
        ("[#k]v", "#k", "v"),
        ("[a]b]c", "a", "b]c"),  # value may contain ']'
        ("[a][b]c", "a", "[b]c"),  # ... and '['
        ("[a]]", "a", "]"),
        ("[a][", "a", "["),
        ("[a] leading", "a", " leading"),  # the rest of the line, as is
        ("[url]http://x/?q=[1]", "url", "http://x/?q=[1]"),
        ("[a]#not a comment", "a", "#not a comment"),
    ],
)
def test_valid_keys_and_values(line: str, key: str, value: str) -> None:
    assert parse_text(line + "\n") == {key: value}


@pytest.mark.parametrize(
    "line",
    [
        "plain text",
        "a[b]c",  # does not start with '['
        "[no closing bracket",
        "[",
        "]a[b]c",
        "(a)b",
        "{a}b",
    ],
)
def test_other_lines_are_ignored(line: str) -> None:
    assert parse_text(f"[keep]1\n{line}\n") == {"keep": "1"}


def test_apply_line_changes_data_in_place() -> None:
    data: dict[str, str] = {"x": "0"}
    apply_line(data, "[a]1")
    apply_line(data, "[x]")
    assert data == {"a": "1"}


SEED_EXAMPLE = """\
[info]Starting test
[playbook]myPlaybook
[info]
[heartbeat]
[testcase_id]001
[testcase_name]Initialization
[progress]12
[progress]15
[testcase_id]002
[testcase_name]Setting up topology
[progress]10
"""

SEED_RESULT = json.loads(
    """{
  "playbook"      : "myPlaybook",
  "testcase_id"   : "002",
  "testcase_name" : "Setting up topology",
  "progress"      : "10"
}"""
)


def test_the_seed_example(tmp_path: Path) -> None:
    assert parse_text(SEED_EXAMPLE) == SEED_RESULT
    path = tmp_path / "feedback.log"
    path.write_text(SEED_EXAMPLE, encoding="utf-8")
    assert parse_file(path) == SEED_RESULT
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == SEED_RESULT


# ---------------------------------------------------------------------------------------------------
# A reference model, written from SPEC's words, and a property test against it
# ---------------------------------------------------------------------------------------------------


def reference_parse(text: str) -> dict[str, str]:
    """SPEC, "Feedback file format", read literally."""
    result: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()  # "Each line is first stripped of surrounding white space."
        if line == "" or line.startswith("#"):
            continue
        if line.startswith("[]"):  # "a line starting with [] removes every key read so far"
            result = {}
            continue
        if not line.startswith("["):
            continue
        close = line.find("]")
        if close < 0:
            continue
        key, value = line[1:close], line[close + 1 :]
        valid = (
            len(key) >= 1
            and not any(c.isspace() or c in "[]" for c in key)
            and not key[0].isdecimal()  # a digit: Unicode category Nd
        )
        if not valid:
            continue
        if value == "":
            result.pop(key, None)
        else:
            result[key] = value
    return result


def test_reference_model_agrees_with_the_seed_example() -> None:
    assert reference_parse(SEED_EXAMPLE) == SEED_RESULT


# Characters that some tools treat as line breaks are kept out: SPEC's lines end at '\n'.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=_LINE_BREAKS), max_size=12
)
_space = st.sampled_from(["", " ", "\t", "  ", " \t ", "\u00a0", "\u3000"])
_good_key = st.from_regex(r"[A-Za-z_\-.é進][A-Za-z0-9_\-.é進#:]{0,6}", fullmatch=True)
_bad_key = st.one_of(
    st.from_regex(r"[0-9][a-z0-9]{0,4}", fullmatch=True),
    st.from_regex(r"[a-z]{1,3}[ \t\[][a-z]{0,3}", fullmatch=True),
    st.just(""),
)
_value = st.one_of(st.just(""), _text, st.sampled_from(["]", "[x]", "a]b", " v ", "#c", "[]"]))
_line_body = st.one_of(
    st.builds(lambda k, v: f"[{k}]{v}", st.one_of(_good_key, _good_key, _bad_key), _value),
    st.builds(lambda v: f"[]{v}", _value),
    st.builds(lambda v: f"#{v}", _value),
    st.sampled_from(["", "[", "]", "[a", "[é", "x[a]b", "heartbeat", "[heartbeat]", "\u00e9\u00e8"]),
    _text,
)
_line = st.builds(lambda a, body, b: a + body + b, _space, _line_body, _space)
_lines = st.lists(_line, max_size=25)
_ending = st.sampled_from(["\n", "\r\n"])


@settings(max_examples=250, deadline=None)
@given(lines=_lines, ending=_ending, last_newline=st.booleans())
def test_parse_text_matches_the_reference_model(lines: list[str], ending: str, last_newline: bool) -> None:
    text = ending.join(lines) + (ending if last_newline else "")
    assert parse_text(text) == reference_parse(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_parse_text_never_raises_on_any_text(text: str) -> None:
    result = parse_text(text)
    assert isinstance(result, dict)
    assert all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in result.items())


_file_counter = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=_lines, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_incremental_reading_in_any_chunks_equals_parse_text(
    tmp_path: Path, lines: list[str], cuts: list[int]
) -> None:
    """Appending the file in arbitrary chunks (even inside a UTF-8 character) and reading after
    each chunk gives, once read with final=True, what parse_text gives for the whole text."""
    text = "\n".join(lines)
    raw = text.encode("utf-8")
    path = tmp_path / f"fb{next(_file_counter)}.log"
    path.write_bytes(b"")
    state = FeedbackState()
    points = sorted({min(c, len(raw)) for c in cuts} | {len(raw)})
    start = 0
    for point in points:
        with open(path, "ab") as f:
            f.write(raw[start:point])
        start = point
        read_increment(str(path), state)
        # Only complete lines are ever read before the final look.
        complete = raw[: raw.rfind(b"\n", 0, point) + 1]
        assert state.offset == len(complete)
        assert state.data == parse_text(complete.decode("utf-8"))
    read_increment(str(path), state, final=True)
    assert state.offset == len(raw)
    assert state.data == parse_text(text) == parse_file(path)
    path.unlink()


# ---------------------------------------------------------------------------------------------------
# Bytes: invalid UTF-8, NUL, very long lines
# ---------------------------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]caf\xe9\n[b\xff]x\n[c]\xc3\x28ok\n[d]fine\n\xfe\xfe\n")
    data = parse_file(path)
    assert data["a"] == "caf\ufffd"
    assert data["b\ufffd"] == "x"
    assert data["c"] == "\ufffd(ok"
    assert data["d"] == "fine"
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == data


def test_truncated_multibyte_character_at_end_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[b]\xe2\x82")  # an incomplete euro sign, no newline
    assert parse_file(path) == {"a": "1", "b": "\ufffd"}


def test_nul_bytes_are_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"\x00\x00\n[a]x\x00y\n[b]2\n\x00[c]3\n")
    data = parse_file(path)
    assert data["a"] == "x\x00y"
    assert data["b"] == "2"
    assert "c" not in data  # a line starting with NUL does not start with '['
    assert json.loads(json.dumps(data)) == data


def test_a_ten_megabyte_single_line(tmp_path: Path) -> None:
    value = "v" * (10 * 1024 * 1024)
    path = tmp_path / "fb.log"
    path.write_text(f"[big]{value}\n[small]1\n", encoding="ascii")
    data = parse_file(path)
    assert data["small"] == "1"
    assert data["big"] == value
    # The same line without its newline: only read when final.
    path.write_text(f"[small]1\n[big]{value}", encoding="ascii")
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == {"small": "1"}
    assert state.offset == len("[small]1\n")
    read_increment(str(path), state, final=True)
    assert state.data == {"small": "1", "big": value}


# ---------------------------------------------------------------------------------------------------
# The incremental reader
# ---------------------------------------------------------------------------------------------------


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_first_read_reads_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[b]2\n")
    state = FeedbackState()
    assert read_increment(str(path), state) is True
    assert state.data == {"a": "1", "b": "2"}
    assert state.offset == 10
    assert state.lines == 2
    st_ = os.stat(path)
    assert (state.dev, state.ino) == (st_.st_dev, st_.st_ino)


def test_only_appended_data_is_read(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.offset == 5
    # Plant a marker in what was already read: a reader that started again would see it.
    state.data["planted"] = "kept"
    _append(path, b"[b]2\n")
    assert read_increment(str(path), state) is True
    assert state.offset == 10
    assert state.data == {"a": "1", "planted": "kept", "b": "2"}


def test_already_read_bytes_rewritten_in_place_are_read_again(tmp_path: Path) -> None:
    """Rewrite the already-read part in place (same inode, then a line appended): the bytes
    before the offset no longer match their fingerprint, so the file is read from 0."""
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    with open(path, "r+b") as f:
        f.write(b"[z]9\n")
        f.seek(0, os.SEEK_END)
        f.write(b"[b]2\n")
    assert read_increment(str(path), state) is True
    assert state.data == {"z": "9", "b": "2"} == parse_file(path)
    assert state.offset == 10


def test_nothing_new_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    assert read_increment(str(path), state) is False
    assert state.data == {"a": "1"}
    assert state.offset == 5


def test_line_counter_continues_across_increments(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n\n")
    state = FeedbackState()
    read_increment(str(path), state)
    _append(path, b"#c\n[b]2\n")
    read_increment(str(path), state)
    assert state.lines == 4


def test_incomplete_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[progress]1")
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == {"a": "1"}
    assert state.offset == 5  # the incomplete line is left for a later look
    _append(path, b"00")
    assert read_increment(str(path), state) is False
    assert state.data == {"a": "1"}
    assert state.offset == 5
    _append(path, b"\n")
    assert read_increment(str(path), state) is True
    assert state.data == {"a": "1", "progress": "100"}  # not "1", not "10"
    assert state.offset == os.path.getsize(path)


def test_incomplete_last_line_is_read_when_final(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[b]2")
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == {"a": "1"}
    assert read_increment(str(path), state, final=True) is True
    assert state.data == {"a": "1", "b": "2"}
    assert state.offset == 9


def test_incomplete_multibyte_character_waits_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    euro = "€".encode()
    path.write_bytes(b"[a]" + euro[:2])
    state = FeedbackState()
    read_increment(str(path), state)
    _append(path, euro[2:] + b"\n")
    read_increment(str(path), state)
    assert state.data == {"a": "€"}


def test_parse_file_reads_the_incomplete_last_line(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[b]2")
    assert parse_file(path) == {"a": "1", "b": "2"}


def test_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n[b]2\n[c]3\n")
    state = FeedbackState()
    read_increment(str(path), state)
    ino = state.ino
    with open(path, "r+b") as f:  # truncate in place: same inode, smaller size
        f.truncate(0)
        f.write(b"[d]4\n")
    assert os.stat(path).st_ino == ino
    assert read_increment(str(path), state) is True
    assert state.data == {"d": "4"}  # a, b, c dropped: the file was started again
    assert state.offset == 5
    assert state.lines == 1


def test_truncated_to_empty_drops_everything(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    path.write_bytes(b"")  # open with "w" truncates the same inode
    assert read_increment(str(path), state) is True
    assert state.data == {}
    assert state.offset == 0


def test_replaced_file_is_read_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[old]1\n[shared]old\n")
    state = FeedbackState()
    read_increment(str(path), state)
    old_ino = state.ino
    # The new file is longer than the offset reached: only its inode tells it apart.
    tmp = tmp_path / "fb.log.tmp"
    tmp.write_bytes(b"[shared]new\n[new]2\n[more]3333333333\n")
    os.replace(tmp, path)
    assert os.stat(path).st_ino != old_ino
    assert read_increment(str(path), state) is True
    assert state.data == {"shared": "new", "new": "2", "more": "3333333333"}
    assert state.ino == os.stat(path).st_ino
    assert state.offset == os.path.getsize(path)


def test_replaced_file_of_the_same_size_is_read_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    tmp = tmp_path / "tmp"
    tmp.write_bytes(b"[b]2\n")
    os.replace(tmp, path)
    assert read_increment(str(path), state) is True
    assert state.data == {"b": "2"}


def test_missing_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    state = FeedbackState()
    assert read_increment(str(path), state) is False
    assert state == FeedbackState()
    path.write_bytes(b"[a]1\n")
    read_increment(str(path), state)
    before = (state.dev, state.ino, state.offset, state.lines, dict(state.data))
    path.unlink()
    assert read_increment(str(path), state) is False
    assert (state.dev, state.ino, state.offset, state.lines, state.data) == before


def test_unreadable_path_is_an_error_for_the_reader(tmp_path: Path) -> None:
    with pytest.raises(FeedbackFileError):
        read_increment(str(tmp_path), FeedbackState())


def test_parse_file_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FeedbackFileError, match="cannot read"):
        parse_file(tmp_path / "nope.log")


def test_parse_file_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FeedbackFileError):
        parse_file(tmp_path)


def test_block_size_is_one_mebibyte() -> None:
    # The next test relies on it to put a line across the boundary of the reader's blocks.
    assert feedback._BLOCK == 1 << 20


@pytest.mark.parametrize("shift", [-3, 0, 2, 12, 13, 14, 15])
def test_a_line_across_the_block_boundary(tmp_path: Path, shift: int) -> None:
    block = 1 << 20
    first = "[pad]" + "p" * (block - 20 + shift) + "\n"
    # The next line starts a little before the 1 MiB boundary and ends after it.
    text = first + "[across]left-é-right\n[a]1\n" + "[big]" + "b" * (block + 10) + "\n[z]end\n"
    raw = text.encode("utf-8")
    assert block <= len(first) + len("[across]left-é-right\n".encode())
    path = tmp_path / "fb.log"
    path.write_bytes(raw)
    expected = parse_text(text)
    assert expected["across"] == "left-é-right"
    assert parse_file(path) == expected
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == expected
    assert state.offset == len(raw)
    assert state.lines == text.count("\n")


def test_a_multibyte_character_across_the_block_boundary(tmp_path: Path) -> None:
    block = 1 << 20
    for offset_in_char in (1, 2):
        head = "[pad]" + "p" * (block - 5 - 1 - 3 - offset_in_char) + "\n[k]"
        raw = head.encode() + "€€".encode() + b"\n"
        assert len(head.encode()) + offset_in_char == block
        path = tmp_path / f"fb{offset_in_char}.log"
        path.write_bytes(raw)
        state = FeedbackState()
        read_increment(str(path), state)
        assert state.data["k"] == "€€"
        assert parse_file(path)["k"] == "€€"


def test_incremental_read_after_a_big_append(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    big = b"[b]" + b"x" * (3 * (1 << 20)) + b"\n[c]3\n[d]4"
    _append(path, big)
    read_increment(str(path), state)
    assert set(state.data) == {"a", "b", "c"}
    assert state.offset == os.path.getsize(path) - len(b"[d]4")
    read_increment(str(path), state, final=True)
    assert state.data["d"] == "4"


def test_a_byte_order_mark_at_the_start_of_the_file_is_not_data(tmp_path: Path) -> None:
    path = tmp_path / "bom.log"
    path.write_bytes(b"\xef\xbb\xbf[progress]10\n[step]a\n")
    assert parse_file(path) == {"progress": "10", "step": "a"}
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data == {"progress": "10", "step": "a"}
    assert state.offset == path.stat().st_size


_odd_space = st.sampled_from(["", " ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u00a0"])
_odd_line = st.builds(lambda a, body, b: a + body + b, _odd_space, _line_body, _odd_space)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_odd_line, max_size=25),
    start=st.dictionaries(_good_key, _text, max_size=3),
    few_keys=st.sampled_from([0, 1, feedback._FEW_KEYS]),
    sample=st.sampled_from([0, 7, feedback._SAMPLE]),
)
def test_block_matching_agrees_with_applying_each_line(
    lines: list[str], start: dict[str, str], few_keys: int, sample: int
) -> None:
    """apply_text (regexes over a block) is the line-by-line grammar, white space of every kind
    included, whether each key's last line is searched for from the end or every line is read."""
    text = "\n".join(lines)
    one_by_one = {k: v for k, v in start.items() if v.strip() == v and v}
    by_block = dict(one_by_one)
    for line in lines:
        apply_line(one_by_one, line)
    saved = feedback._FEW_KEYS, feedback._SAMPLE
    feedback._FEW_KEYS, feedback._SAMPLE = few_keys, sample
    try:
        feedback.apply_text(by_block, text)
    finally:
        feedback._FEW_KEYS, feedback._SAMPLE = saved
    assert by_block == one_by_one


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[a]1\n[b]x[a]2\n", {"a": "1", "b": "x[a]2"}),  # a tag inside a line is not the key's line
        ("[a]1[a]2\n[b]x [a]3", {"a": "1[a]2", "b": "x [a]3"}),  # nor is a second tag on its line
        (" \t[a]1\n[c]\n\u2028[a]2 \n", {"a": "2"}),  # white space before the tag, a key removed
        ("[a]1\n[a]\n", {}),  # a key's last line empty: removed
    ],
)
def test_a_keys_last_line_is_the_last_that_starts_with_it(text: str, expected: dict[str, str]) -> None:
    assert parse_text(text) == expected
    data: dict[str, str] = {"c": "old"}
    feedback.apply_text(data, text)
    assert data == {**({"c": "old"} if "[c]" not in text else {}), **expected}


@pytest.mark.parametrize("clear", ["[]", "[][]", "  []x[]", "[]]", "\t[] []"])
def test_a_clearing_line_is_found_whatever_follows_it_on_the_line(clear: str) -> None:
    text = f"[a]1\n{clear}\n[b]2\n[c]x[]"
    assert parse_text(text) == {"b": "2", "c": "x[]"}
    data = {"old": "1"}
    feedback.apply_text(data, text)
    assert data == {"b": "2", "c": "x[]"}


# ---------------------------------------------------------------------------------------------------
# Files rewritten in place (SPEC Part 2, "Feedback written in place"): the fingerprint
# ---------------------------------------------------------------------------------------------------
# Pieces that make the hard cases likely: a value of the same length, a clear, a removal, a
# comment, a line without its end, a byte-order mark, a bad byte.
_PIECES = [b"[a]1\n", b"[a]2\n", b"[a]10\n", b"[b]x\n", b"[]\n", b"[a]\n", b"#c\n", b"\n", b"[a]1", b"[b",
           b"]y\n", b"\xef\xbb\xbf", b"\xff\n", b"  [c]3  \n"]  # fmt: skip
_piece = st.sampled_from(_PIECES)
_content = st.lists(_piece, max_size=8).map(b"".join)
_op = st.one_of(
    st.tuples(st.just("append"), _content),
    st.tuples(st.just("rewrite"), _content),  # in place: truncated, then written (echo > F)
    st.tuples(st.just("rename"), _content),  # a new file renamed over the old one
    st.tuples(st.just("same-size"), st.integers(0, 200), _piece),  # bytes overwritten in place
    st.tuples(st.just("truncate"), st.integers(0, 200)),
    st.tuples(st.just("poll")),
    st.tuples(st.just("final")),
)


def _complete_lines(raw: bytes) -> bytes:
    return raw[: raw.rfind(b"\n") + 1]


def _parse_bytes(tmp_path: Path, raw: bytes) -> dict[str, str]:
    ref = tmp_path / "reference.log"
    ref.write_bytes(raw)
    return parse_file(ref)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=25))
def test_polls_always_equal_parse_of_the_current_file(tmp_path: Path, ops: list[tuple]) -> None:
    """Random appends, rewrites (in place, by rename, the same size by overwriting, shorter and
    longer), truncations and polls: after each poll the incremental state equals parse_file of
    the file as it is (its complete lines; every line for a final look), and a poll after
    appends alone reads only the bytes after the offset."""
    path = tmp_path / f"fb{next(_file_counter)}.log"
    path.write_bytes(b"")
    state = FeedbackState()
    only_appended = True
    for op in ops:
        kind = op[0]
        if kind == "append":
            _append(path, op[1])
        elif kind == "rewrite":
            with open(path, "r+b") as f:
                f.truncate(0)
                f.write(op[1])
        elif kind == "rename":
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(op[1])
            os.replace(tmp, path)
        elif kind == "same-size":
            raw = path.read_bytes()
            at = min(op[1], len(raw))
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(op[2][: len(raw) - at])
        elif kind == "truncate":
            with open(path, "r+b") as f:
                f.truncate(op[1])
        raw = path.read_bytes()
        if kind == "poll":
            offset, handled = state.offset, feedback.bytes_handled
            read_increment(str(path), state)
            work = feedback.bytes_handled - handled
            assert state.data == _parse_bytes(tmp_path, _complete_lines(raw)), (ops, raw)
            if only_appended:  # incremental: what follows the offset, scanned and copied once each
                assert work <= 2 * (len(raw) - offset)
            only_appended = True
        elif kind == "final":
            last = state.copy()
            read_increment(str(path), last, final=True)
            assert last.data == parse_file(path), (ops, raw)
        elif kind != "append":
            only_appended = False
    path.unlink()


def test_a_rewrite_keeping_the_bytes_already_read_is_an_append_and_reads_the_same(tmp_path: Path) -> None:
    """The one rewrite no reader can see: the bytes before the offset are the same. The result
    is then the same too, since it depends on the content alone."""
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]1\n")
    state = FeedbackState()
    read_increment(str(path), state)
    path.write_bytes(b"[a]1\n[b]2\n")  # truncated and written again, the first line unchanged
    read_increment(str(path), state)
    assert state.data == {"a": "1", "b": "2"} == parse_file(path)


def test_a_saved_state_without_fingerprint_reads_again_from_0(tmp_path: Path) -> None:
    """A place saved by an older taskwatcher has no fingerprint: it cannot be trusted."""
    path = tmp_path / "fb.log"
    path.write_bytes(b"[a]2\n[b]3\n")
    st_ = os.stat(path)
    state = FeedbackState(st_.st_dev, st_.st_ino, 5, 1, {"a": "1"}, fingerprint="")
    read_increment(str(path), state)
    assert state.data == {"a": "2", "b": "3"}


def _big_file(path: Path, size: int) -> bytes:
    raw = b"".join(b"[line]%08d\n" % i for i in range(size // 15))
    path.write_bytes(raw)
    return raw


@pytest.mark.parametrize("where", ["head", "tail"])
def test_a_large_file_rewritten_in_its_fingerprint_windows_is_read_again(tmp_path: Path, where: str) -> None:
    """Beyond HEAD + TAIL bytes read, the fingerprint covers the first HEAD bytes and the last
    TAIL bytes before the offset: a rewrite of the same size that changes either is seen."""
    path = tmp_path / "fb.log"
    raw = _big_file(path, 1 << 20)
    state = FeedbackState()
    read_increment(str(path), state)
    line = b"[phase]up.....\n"  # as long as the lines it replaces
    at = 0 if where == "head" else len(raw) - 2 * len(line)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(line)
    read_increment(str(path), state)
    assert state.data == parse_file(path)
    assert state.data["phase"] == "up....."


def test_a_large_file_rewritten_at_the_same_size_between_its_windows_is_read_again(tmp_path: Path) -> None:
    """A change outside both windows, the size kept: an append always grows the file, so a
    file of the size last seen whose mtime moved is read again from 0."""
    path = tmp_path / "fb.log"
    raw = bytearray(_big_file(path, 1 << 20))
    middle = len(raw) // 2 - len(raw) // 2 % 15  # a line start, far from both windows
    raw[middle : middle + 15] = b"[phase]mid....\n"
    path.write_bytes(bytes(raw))
    state = FeedbackState()
    read_increment(str(path), state)
    assert state.data["phase"] == "mid...."
    before = os.stat(path).st_mtime_ns
    raw[middle : middle + 15] = b"[phase]MID....\n"  # in place, the same size
    with open(path, "r+b") as f:
        f.seek(middle)
        f.write(raw[middle : middle + 15])
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))  # a coarse clock may not have moved
    assert read_increment(str(path), state) is True
    assert state.data == parse_file(path)
    assert state.data["phase"] == "MID...."


def test_a_look_at_a_large_file_reads_the_windows_and_the_new_bytes_only(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    _big_file(path, 8 << 20)
    state = FeedbackState()
    read_increment(str(path), state)
    handled = feedback.bytes_handled
    _append(path, b"[b]2\n")
    read_increment(str(path), state)
    assert feedback.bytes_handled - handled == 2 * len(b"[b]2\n")
    assert state.data["b"] == "2"
    assert feedback.FINGERPRINT_HEAD + feedback.FINGERPRINT_TAIL == 64 << 10  # the old bytes a look reads


# ---------------------------------------------------------------------------------------------------
# An unterminated line costs what the same bytes in lines cost (linear, not quadratic)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("final", [False, True])
def test_an_unterminated_line_is_read_in_linear_work(tmp_path: Path, final: bool) -> None:
    """16 MB without a newline: each byte is scanned once and copied at most once more. Rebuilding
    the pending bytes for each 1 MiB block would handle 16 + 15 + ... + 1 MiB, 8.5 times the size."""
    size = 16 << 20
    path = tmp_path / "fb.log"
    path.write_bytes(b"[big]" + b"x" * (size - 5))
    handled = feedback.bytes_handled
    state = FeedbackState()
    read_increment(str(path), state, final=final)
    work = feedback.bytes_handled - handled
    assert work <= (2 if final else 1) * size + 16
    assert (len(state.data.get("big", "")), state.offset) == ((size - 5, size) if final else (0, 0))
    # Ended later, the line is read once more and then parsed, still in linear work.
    _append(path, b"\n[after]1\n")
    handled = feedback.bytes_handled
    read_increment(str(path), state)
    assert feedback.bytes_handled - handled <= 3 * size
    assert state.data == parse_file(path)


# ---------------------------------------------------------------------------------------------------
# Only a regular file is a task's feedback file: never a link, a FIFO, a device, a folder
# ---------------------------------------------------------------------------------------------------
def test_a_fifo_is_refused_at_once_never_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    os.mkfifo(path)
    with pytest.raises(FeedbackFileError, match="not a regular file \\(a FIFO\\)"):
        read_increment(str(path), FeedbackState())  # a blocking open would never return


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"[password]hunter2\n")
    path = tmp_path / "fb.log"
    path.symlink_to(secret)
    state = FeedbackState()
    with pytest.raises(FeedbackFileError, match="symbolic link: not followed"):
        read_increment(str(path), state)
    assert state.data == {}


def test_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FeedbackFileError, match="a device"):
        read_increment("/dev/zero", FeedbackState())


def test_the_writer_never_writes_through_a_link_nor_into_a_fifo(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"")
    link = tmp_path / "fb.log"
    link.symlink_to(target)
    with pytest.raises(FeedbackFileError, match="symbolic link"):
        feedback.Feedback(link).set("a", 1)
    assert target.read_bytes() == b""
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(FeedbackFileError, match="not a regular file"):
        feedback.Feedback(fifo).set("a", 1)  # no reader: a blocking open would hang


def test_the_writer_makes_the_file_0644_at_most_even_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "fb.log"
    old = os.umask(0)
    try:
        feedback.Feedback(path).set("a", 1)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
