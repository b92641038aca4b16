"""History that stays useful: control --prune, and retention from the configuration file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import db_sql
from support import one_line_error


@pytest.fixture
def config(tw) -> Path:
    folder = Path(tw.env["HOME"]) / ".config" / "taskwatcher"
    folder.mkdir(parents=True)
    return folder / "config.toml"


def run_tasks(tw, n: int) -> None:
    for _ in range(n):
        tw.run("launch", "--", "true", check=True)


def ids(tw) -> list[int]:
    return [e["taskid"] for e in tw.history().values()]


def age_entry(tw, taskid: int, seconds: float) -> None:
    db_sql(tw.db, "UPDATE history SET endtime = ? WHERE taskid = ?", (int(time.time() - seconds), taskid))


def test_prune_keeps_the_newest(tw):
    run_tasks(tw, 5)
    proc = tw.run("control", "--prune", "--keep", "2", check=True)
    assert proc.stdout == "3 finished tasks pruned\n"
    assert ids(tw) == [4, 5]


def test_prune_keep_zero_empties_the_history(tw):
    run_tasks(tw, 2)
    tw.run("control", "--prune", "--keep", "0", check=True)
    assert ids(tw) == []


def test_prune_by_age(tw):
    run_tasks(tw, 3)
    age_entry(tw, 1, 10 * 86400)
    age_entry(tw, 2, 2 * 86400)
    tw.run("control", "--prune", "--max-age", "7d", check=True)
    assert ids(tw) == [2, 3]
    tw.run("control", "--prune", "--max-age", "86400", check=True)
    assert ids(tw) == [3]


def test_prune_removes_the_logs_of_what_it_prunes(tw):
    run_tasks(tw, 2)
    first, second = (Path(e["logfile"]) for e in tw.history().values())
    assert first.exists() and second.exists()
    tw.run("control", "--prune", "--keep", "1", check=True)
    assert not first.exists() and second.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--prune",),
        ("--prune", "--keep", "-1"),
        ("--prune", "--keep", "many"),
        ("--prune", "--max-age", "soon"),
        ("--prune", "--max-age", "0"),
        ("--list", "--keep", "3"),
        ("--history", "--max-age", "1d"),
    ],
)
def test_bad_prune_arguments_are_usage_errors_and_change_nothing(tw, args):
    run_tasks(tw, 2)
    proc = tw.run("control", *args)
    assert proc.returncode == 2
    one_line_error(proc)
    assert ids(tw) == [1, 2]


def test_config_keep_is_applied_when_a_task_ends(tw, config):
    config.write_text("[history]\nkeep = 2\n")
    run_tasks(tw, 4)
    assert ids(tw) == [3, 4]


def test_config_max_age_is_applied_by_update(tw, config):
    run_tasks(tw, 2)
    age_entry(tw, 1, 100 * 86400)
    config.write_text('[history]\nmax_age = "90d"\n')
    tw.run("control", "--update", check=True)
    assert ids(tw) == [2]


def test_the_config_file_can_be_named_by_a_variable(tw, tmp_path):
    elsewhere = tmp_path / "tw.toml"
    elsewhere.write_text("[history]\nkeep = 1\n")
    tw.env["TASKWATCHER_CONFIG"] = str(elsewhere)
    run_tasks(tw, 3)
    assert ids(tw) == [3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[history\nkeep = 1\n", "configuration file"),
        ("[history]\nkeep = -1\n", "keep must be a whole number"),
        ("[history]\nkeep = 'ten'\n", "keep must be a whole number"),
        ('[history]\nmax_age = "soon"\n', "[history] max_age: not a duration"),
        ('[history]\nmax_age = "0s"\n', "[history] max_age: an age must be more than 0"),
        ("[history]\nkept = 3\n", "unknown key 'kept'"),
        ("[logs]\nmax = 3\n", "unknown section [logs]"),
        ('[log]\nmax = "big"\n', "[log] max: not a size"),
        ('[log]\nmax = "99999999999G"\n', "[log] max: too large"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error_naming_it(tw, config, text, message):
    run_tasks(tw, 1)
    config.write_text(text)
    proc = tw.run("control", "--update")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert str(config) in line and message in line
    launch = tw.run("launch", "--", "true")
    assert launch.returncode == 125  # nothing started under a configuration it cannot read
    assert message in one_line_error(launch)
    assert ids(tw) == [1]
