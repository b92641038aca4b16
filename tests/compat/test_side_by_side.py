"""The same taskwatcher 1.7 command lines against the real 1.7 and against ours: what a
script reads (stdout, stderr, exit status) is the same (SPEC Part 2, "taskwatcher 1.x
compatibility"). Where ours differs on purpose, test_v17_commands.py holds it."""

from __future__ import annotations

import json
import re
import subprocess

from compat.sides import Side, assert_nothing_written_in

# 1.7's keys of a task in --list --json, and of a finished task in history --list.
TASK_KEYS = ["name", "info1", "info2", "info3", "pid", "status", "feedback",
             "reservetime", "starttime", "duration", "lastupdate", "timeout"]  # fmt: skip
HISTORY_KEYS = ["taskid", "taskname", "info1", "info2", "info3", "termsignal", "termerror",
                "starttime", "endtime", "duration", "feedback"]  # fmt: skip
TIMES = {"reservetime", "starttime", "endtime", "lastupdate", "duration"}


def both(theirs: Side, ours: Side, module: str, *args: str) -> tuple[subprocess.CompletedProcess, ...]:
    """The same command line on both sides, at the same time (each in its own folder and database)."""
    (t,), (o,) = Side.run_together([(theirs, [(module, *args)]), (ours, [(module, *args)])])
    return t, o


def assert_same(theirs: subprocess.CompletedProcess, ours: subprocess.CompletedProcess) -> None:
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def untimed(text: str) -> str:
    """A table with its unix times (10 digits) and durations masked: the two sides ran seconds apart."""
    return re.sub(r"\b\d{10}\b", "T", text)


HELP_AND_USAGE = [
    ("control", "--help"),
    ("control", "task", "--help"),
    ("control", "history", "--help"),
    ("control", "database", "--help"),
    ("launch", "--help"),
    ("parse", "--help"),
    ("control", "--bogus"),  # argparse's errors: usage and exit 2, as 1.7
    ("control", "task", "--kill"),
    ("control", "task", "--list", "extra"),
    ("control", "nosuchcommand"),
    ("launch", "--db", "x.db"),
    ("launch", "--taskid", "1"),
    ("parse",),
    ("parse", "--feedback"),
]


def test_help_and_usage_errors_are_1_7s_byte_for_byte(theirs, ours):
    real, mine = Side.run_together([(theirs, HELP_AND_USAGE), (ours, HELP_AND_USAGE)])
    for line, t, o in zip(HELP_AND_USAGE, real, mine, strict=True):
        assert (o.returncode, o.stdout, o.stderr) == (t.returncode, t.stdout, t.stderr), line
    assert_nothing_written_in(ours.cwd)


def test_reserve_unique_and_kill_refusals_as_1_7(theirs, ours):
    for side in (theirs, ours):
        side.run("control", "database", "--initialize")  # 1.7 needs it; ours says the same
    # (in this order: 1.7 drops reservations older than 5 s at its next reservation)
    steps = [
        ("control", "task", "--reserve", "--taskname", "nightly", "--unique"),
        ("control", "task", "--reserve", "--taskname", "nightly", "--unique"),  # refused, exit 1
        ("control", "task", "--kill", "1"),  # a reservation: not killed, exit 1
        ("control", "task", "--kill", "99"),  # unknown, exit 1
        ("control", "task", "--kill", "abc"),
        ("control", "task", "--killall", "nobody"),  # nothing of that name: exit 0, silent
        ("control", "database", "--update"),
    ]
    for step in steps:
        t, o = both(theirs, ours, *step)
        assert_same(t, o)
    t, o = both(theirs, ours, "control", "--db", "sqlite.db", "task", "--reserve")
    assert (t.returncode, o.returncode) == (0, 0)
    assert re.fullmatch(r"Taskid \d+ has been reserved\n", t.stdout)
    assert re.fullmatch(r"Taskid \d+ has been reserved\n", o.stdout)
    assert_nothing_written_in(ours.cwd, "sqlite.db", "sqlite.db-wal", "sqlite.db-shm")


def test_task_list_json_and_table_as_1_7(theirs, ours):
    for side in (theirs, ours):
        side.run("control", "database", "--initialize")
    for side in (theirs, ours):
        side.run("control", "task", "--reserve", "--taskname", "first")
        side.run("control", "task", "--reserve", "--taskname", "second")
    t, o = both(theirs, ours, "control", "task", "--list", "--json")
    assert (t.returncode, o.returncode) == (0, 0)
    mine, real = json.loads(o.stdout), json.loads(t.stdout)
    assert list(mine) == list(real) == ["1", "2"]
    for taskid in real:
        assert list(mine[taskid])[: len(TASK_KEYS)] == list(real[taskid]) == TASK_KEYS  # extra keys after
        for key in TASK_KEYS:
            if key not in TIMES:
                assert mine[taskid][key] == real[taskid][key], key
            assert type(mine[taskid][key]) is type(real[taskid][key]), key
    # ours prints every task (1.7 printed only the first row): the first rows are the same
    t, o = both(theirs, ours, "control", "task", "--list")
    real_lines, my_lines = untimed(t.stdout).splitlines(), untimed(o.stdout).splitlines()
    assert my_lines[:4] == real_lines[:4]
    assert my_lines[-1] == real_lines[-1]
    assert len(my_lines) == len(real_lines) + 1
    assert "second" in my_lines[4]


def test_initialize_and_empty_list_and_history_as_1_7(theirs, ours):
    t, o = both(theirs, ours, "control", "database", "--initialize")
    assert t.stdout == "Initializing database sqlite.db\n"
    assert_same(t, o)
    for args in (
        ("task", "--list"),
        ("task", "--list", "--json"),
        ("history", "--list"),
        ("history", "--list", "--human"),
    ):
        assert_same(*both(theirs, ours, "control", *args))


def test_launch_splits_a_one_string_command_and_drops_every_double_dash_as_1_7(theirs, ours):
    """One 1.7 launch (1.7's launcher takes 3 s for anything): the same stdout, the same history shape."""
    for side in (theirs, ours):
        side.run("control", "database", "--initialize")
        side.run("control", "task", "--reserve", "--taskname", "split")
    line = ("--db", "sqlite.db", "--taskid", "1", "--info1", "i1", "--", "echo one  two", "--", "three")
    t, o = both(theirs, ours, "launch", *line)
    assert t.stdout == "Command_line=echo one  two three\none two three\n"
    assert_same(t, o)
    t, o = both(theirs, ours, "control", "history", "--list")
    mine, real = json.loads(o.stdout), json.loads(t.stdout)
    assert list(mine) == list(real) == ["1"]
    assert list(mine["1"])[: len(HISTORY_KEYS)] == list(real["1"]) == HISTORY_KEYS
    same = ("taskid", "taskname", "info1", "info2", "info3")
    assert {k: mine["1"][k] for k in same} == {k: real["1"][k] for k in same}
    # 1.7's raw wait status, "TBD" and "to be implemented" are 2.x's words and objects here
    assert (real["1"]["termsignal"], real["1"]["termerror"], real["1"]["feedback"]) == (
        "0",
        "TBD",
        "to be implemented",
    )
    assert (mine["1"]["termsignal"], mine["1"]["termerror"], mine["1"]["feedback"]) == ("", "", {})
    assert mine["1"]["exitcode"] == 0
    t, o = both(theirs, ours, "control", "history", "--list", "--human")
    assert untimed(o.stdout).splitlines()[:3] == untimed(t.stdout).splitlines()[:3]


def test_launch_refusals_as_1_7_with_exit_1_on_stderr(theirs, ours):
    for side in (theirs, ours):
        side.run("control", "database", "--initialize")
    cases = [
        ("--db", "missing.db", "--taskid", "1", "--", "true"),
        ("--db", "sqlite.db", "--taskid", "1", "--feedpath", "nofolder", "--", "true"),
        ("--db", "sqlite.db", "--taskid", "7", "--", "true"),  # no such reservation
        ("--db", "sqlite.db", "--taskid", "abc", "--", "true"),
    ]
    for case in cases:
        t, o = both(theirs, ours, "launch", *case)
        # 1.7 printed two of these on stdout and exited 0; a script reads them the same here
        assert o.stdout == t.stdout.splitlines(keepends=True)[0], case
        real_message = (t.stderr or t.stdout.splitlines()[1]).strip()
        assert (o.returncode, o.stderr.strip()) == (1, real_message), case


FEEDBACK_FILES = {
    "seed example": "[info]Starting test\n[playbook]myPlaybook\n[info]\n[heartbeat]\n[testcase_id]001\n"
    "[testcase_name]Initialization\n[progress]12\n[progress]15\n[testcase_id]002\n"
    "[testcase_name]Setting up topology\n[progress]10\n",
    "comments, blanks, junk": "# a comment\n\n   [progress]1   \nnot a line\n[progress]100\n[a-b_c]x y z\n",
    "removed then set again: it moves last": "[a]1\n[b]2\n[a]\n[a]3\n",
    "non-ASCII": "[name]caf\u00e9 \u2713\n[emoji]\U0001f600\n",
    "quotes and backslashes": '[json]{"k": "v\\\\n"}\n[path]C:\\temp\n',
    "CRLF and no last newline": "[x]1\r\n[y]2\r\n[z]3",
    "value with brackets": "[k][v]w\n",
    "empty": "",
}


def test_parse_prints_1_7s_double_encoded_json_byte_for_byte(theirs, ours, tmp_path):
    lines = []
    for i, text in enumerate(FEEDBACK_FILES.values()):
        path = tmp_path / f"feedback_{i}.log"
        path.write_bytes(text.encode())
        lines.append(("parse", "--feedback", str(path)))
    real, mine = Side.run_together([(theirs, lines), (ours, lines)])
    for name, t, o in zip(FEEDBACK_FILES, real, mine, strict=True):
        assert t.returncode == 0, name
        assert (o.returncode, o.stdout, o.stderr) == (t.returncode, t.stdout, t.stderr), name


def test_parse_of_a_missing_file_prints_1_7s_empty_object(theirs, ours, tmp_path):
    """Back-ends ask before the task's first line: 1.7 printed "{}" (``taskwatcher parse`` refuses)."""
    t, o = both(theirs, ours, "parse", "--feedback", str(tmp_path / "not-yet.log"))
    assert t.stdout == '"{}"\n'
    assert_same(t, o)
