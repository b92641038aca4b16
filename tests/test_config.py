"""The configuration file's plain lines are read without tomllib, exactly as tomllib reads them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskwatcher.config import load, plain_toml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# Fragments of lines, plain and not: every way a real file is written, and the near misses
# (dotted and quoted keys, escapes, signs, leading zeros, floats, control characters).
_KEYS = st.sampled_from(["keep", "max_age", "max", "db", "on_end", "x-y_1", "a.b", '"q"', "", "é"])
_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=10**20).map(str),
    st.sampled_from(["01", "+3", "1_000", "1.5", "true", "[1]", "{a=1}", '"""x"""', "", "0x1f"]),
    st.text(max_size=8).map(lambda t: '"' + t + '"'),
    st.text(max_size=8).map(lambda t: "'" + t + "'"),
)
_SPACE = st.sampled_from(["", " ", "\t", "  ", "\u00a0"])
_COMMENT = st.one_of(st.just(""), st.text(max_size=6).map(lambda t: "#" + t))
_TABLES = st.sampled_from(["history", "log", "hooks", "database", "a b", "", "[x]", "x.y"])


@st.composite
def _line(draw) -> str:
    kind = draw(st.sampled_from(["table", "key", "blank", "junk"]))
    sp = draw(_SPACE)
    if kind == "table":
        return f"{sp}[{draw(_SPACE)}{draw(_TABLES)}{draw(_SPACE)}]{draw(_SPACE)}{draw(_COMMENT)}"
    if kind == "key":
        eq = draw(st.sampled_from(["=", " = ", "\t=\t", "==", ":"]))
        return f"{sp}{draw(_KEYS)}{eq}{draw(_VALUES)}{draw(_SPACE)}{draw(_COMMENT)}"
    if kind == "blank":
        return sp + draw(_COMMENT)
    return draw(st.text(max_size=10))


@given(st.lists(_line(), max_size=8), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
@settings(max_examples=800, deadline=None)
def test_plain_lines_read_as_tomllib_reads_them_and_anything_else_is_left_to_it(lines, newline, last):
    text = newline.join(lines) + (newline if last else "")
    fast = plain_toml(text)
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assert fast is None  # every error is tomllib's, in its words
        return
    assert fast is None or fast == expected


def test_a_file_of_plain_lines_is_read_without_importing_tomllib(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("# retention\n[history]\nkeep = 1000\nmax_age = \"30d\"\n\n[log]\nmax = '8M'  # a task\n")
    probe = (
        "import sys; from taskwatcher.config import load; c = load(sys.argv[1]);"
        " print(c.keep, c.max_age, c.log_max, 'tomllib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1000", str(30 * 86400.0), str(8 * 1024**2), "False"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[history]\nkeep = 5\nkeep = 6\n", "Cannot overwrite a value"),
        ("[history]\n[history]\n", "Cannot declare ('history',) twice"),
        ("[history]\nkeep = 05\n", "Expected newline or end of document"),
    ],
)
def test_what_is_not_plain_is_tomllibs_to_refuse(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(Exception, match=re.escape(message)) as caught:
        load(str(path))
    assert type(caught.value).__name__ == "ConfigError" and str(path) in str(caught.value)


def test_other_toml_forms_still_work(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('history.keep = 7\n[hooks]\non_end = "echo \\"done\\""\n')
    config = load(str(path))
    assert (config.keep, config.on_end) == (7, 'echo "done"')
