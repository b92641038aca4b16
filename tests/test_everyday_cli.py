"""The everyday command line, through the real CLI: ``launch CMD`` without ``--``, durations
with units, the newest task by default, ``control --show``, errors that name the mistake,
reads that never create a database, and the small ones (counts, filters, --log folders,
the configuration file, launch --debug, completion of task ids)."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import TW, db_exists, wait_for
from support import helper, kill_own_processes, one_line_error, running_task

SHOW_KEYS = ["taskid", "finished", "historyid", "name", "info1", "info2", "info3", "status", "host",
             "pid", "command", "feedpath", "logfile", "reservetime", "starttime", "endtime", "duration",
             "lastupdate", "timer", "timeout", "expiretime", "unique", "feedback", "exitcode",
             "termsignal", "termerror", "group", "place", "attempt", "after", "hook", "log_tail",
             "attempts"]  # fmt: skip


@pytest.fixture(autouse=True)
def _reaper(tmp_path: Path):
    yield
    kill_own_processes(tmp_path / "home")


def show(tw, *args: str) -> dict:
    return tw.json("control", "--show", *args, "--json")


def on_a_terminal(tw, *args: str, columns: int = 50) -> str:
    """The CLI's stdout when it is a pseudo-terminal ``columns`` wide."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in tw.env.items() if k not in ("COLUMNS", "LINES")}
    cmd = [*TW, args[0], "--db", str(tw.db), *args[1:]]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the program has gone and the terminal is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(10) == 0, proc.stderr.read()
    return out.decode().replace("\r\n", "\n")


# -- launch CMD [ARG...] without -- ----------------------------------------------------------
def test_launch_runs_the_first_word_that_is_not_an_option_with_units_in_its_timeout(tw):
    proc = tw.run("launch", "--timeout", "5m", "sleep", "1")
    assert proc.returncode == 0, proc.stderr
    assert show(tw)["timeout"] == 300 and show(tw)["command"] == ["sleep", "1"]


def test_everything_after_the_command_is_the_commands_even_launch_options(tw, tmp_path):
    out = tmp_path / "argv.json"
    proc = tw.run("launch", "--name", "x", *helper("record", out), "--timeout", "3", "--name", "y", "--")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["argv"] == ["--timeout", "3", "--name", "y", "--"]
    detail = show(tw)
    assert detail["name"] == "x" and detail["timeout"] is None


def test_an_option_of_the_command_is_not_launchs(tw):
    proc = tw.run("launch", "sh", "-c", "echo --timeout")
    assert (proc.returncode, proc.stdout) == (0, "--timeout\n"), proc.stderr
    assert show(tw)["timeout"] is None


def test_a_command_starting_with_a_dash_needs_dashdash(tw):
    proc = tw.run("launch", "--", "-weird")
    assert proc.returncode == 127
    assert one_line_error(proc) == "taskwatcher: command not found: -weird"
    proc = tw.run("launch", "-weird")
    assert proc.returncode == 125
    assert "goes after --" in one_line_error(proc)


def test_an_option_value_may_be_attached_with_equals(tw):
    assert tw.run("launch", "--name=eq", "--timeout=2h", "true").returncode == 0
    assert (show(tw)["name"], show(tw)["timeout"]) == ("eq", 7200)


# -- durations -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("0.5", 0.5), ("500ms", 0.5), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400),
     ("1.5h", 5400), ("2w", 1209600)],
)  # fmt: skip
def test_every_duration_takes_seconds_or_a_unit(tw, text, seconds):
    assert tw.run("launch", "--timeout", text, "--grace", text, "true").returncode == 0
    assert show(tw)["timeout"] == seconds
    if seconds >= 60:  # a shorter reservation could expire before it is listed
        taskid = tw.run("control", "--reserve", "--ttl", text, check=True).stdout.strip()
        task = tw.tasks()[taskid]
        assert abs(task["expiretime"] - task["reservetime"] - seconds) <= 1


@pytest.mark.parametrize(
    ("tool", "args", "code", "message"),
    [
        ("launch", ("--timeout", "5 m", "true"), 125, "not a duration: '5 m'"),
        ("launch", ("--timeout", "5y", "true"), 125, "not a duration: '5y'"),
        ("launch", ("--grace", "1e10s", "true"), 125, "too long: '1e10s' (at most 1e+09 seconds"),
        ("control", ("--reserve", "--ttl=-1m"), 2, "not a duration: '-1m'"),
        ("control", ("--wait", "1", "--timeout", "soon"), 2, "not a duration: 'soon'"),
        ("control", ("--prune", "--max-age", "0d"), 2, "an age must be more than 0 seconds"),
        ("control", ("--prune", "--max-age", "99999999999d"), 2, "too long"),
        ("launch", ("--log-max", "99999999999G", "true"), 125, "--log-max: too large: '99999999999G'"),
    ],
)
def test_a_bad_duration_or_size_is_a_one_line_error_saying_what_is_wrong(tw, tool, args, code, message):
    proc = tw.run(tool, *args)
    assert proc.returncode == code
    assert message in one_line_error(proc)


def test_wait_timeout_takes_a_unit(tw):
    taskid = tw.run("launch", "--detach", "sleep", "30", check=True).stdout.strip()
    proc = tw.run("control", "--wait", taskid, "--timeout", "200ms")
    assert proc.returncode == 124, proc.stderr


def test_ages_take_the_same_units_in_since_max_age_and_the_config_file(tw, tmp_path):
    tw.run("launch", "true", check=True)
    assert len(tw.json("control", "--history", "--json", "--since", "1d")) == 1
    assert len(tw.json("control", "--history", "--json", "--since", "90000ms")) == 1
    assert tw.run("control", "--prune", "--max-age", "2w", check=True).stdout == "0 finished tasks pruned\n"
    config = tmp_path / "tw.toml"
    config.write_text('[history]\nmax_age = "500ms"\n')
    tw.env["TASKWATCHER_CONFIG"] = str(config)
    wait_for(lambda: tw.run("control", "--update", check=True) and not tw.history(), 5, "the age applied")


# -- the newest task by default --------------------------------------------------------------
def test_log_wait_feedback_and_show_without_an_id_mean_the_newest_task(tw, tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    script = 'echo "$0"; echo "[said]$0" >> "$TASKWATCHER_FEEDBACK"; exit ${#0}'
    for word in ("one", "three"):
        tw.run("launch", "--feedpath", str(fb), "sh", "-c", script, word)
    assert tw.run("control", "--log", check=True).stdout == "three\n"
    assert tw.json("control", "--feedback") == {"said": "three"}
    assert tw.run("control", "--wait").returncode == 5  # len("three")
    assert show(tw)["taskid"] == 2
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    assert show(tw)["taskid"] == int(taskid) and show(tw)["status"] == "RESERVED"


def test_the_newest_running_task_is_followed_and_waited_for(tw):
    taskid = tw.run(
        "launch", "--detach", "sh", "-c", "echo started; sleep 0.5; echo done; exit 7", check=True
    )
    waiting = tw.popen("control", "--wait")
    following = tw.popen("control", "--log", "--follow")
    assert waiting.wait(15) == 7
    assert following.communicate(timeout=15)[0] == "started\ndone\n"
    assert show(tw)["taskid"] == int(taskid.stdout)


def test_without_any_task_the_newest_is_exit_4_and_kill_always_needs_an_id(tw):
    tw.run("control", "--update", check=True)  # the database exists, empty
    for command in ("--log", "--wait", "--feedback", "--show"):
        proc = tw.run("control", command)
        assert proc.returncode == 4 and one_line_error(proc) == "taskwatcher: no task yet", command
    proc = tw.run("control", "--kill")
    assert proc.returncode == 2 and "--kill: expected one argument" in one_line_error(proc)


# -- control --show ------------------------------------------------------------------------------
def test_show_of_a_running_task_has_every_key_its_feedback_and_log_tail(tw, tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    script = 'for i in $(seq 1 12); do echo "line $i"; done; echo "[phase]build" > "$TASKWATCHER_FEEDBACK"; '
    script += "sleep 30"
    tw.run("launch", "--detach", "--name", "b", "--info2", "x", "--feedpath", str(fb), "--timeout", "1m",
           "sh", "-c", script, check=True)  # fmt: skip
    taskid, _ = running_task(tw, "b")

    def with_feedback() -> dict | None:
        d = show(tw, taskid)
        return d if d["feedback"] and len(d["log_tail"]) == 10 else None

    detail = wait_for(with_feedback, 10, "the feedback and the log")
    assert list(detail) == SHOW_KEYS
    assert detail["status"] == "RUNNING" and detail["finished"] is False and detail["historyid"] is None
    assert detail["feedback"] == {"phase": "build"} and detail["info2"] == "x" and detail["timeout"] == 60
    assert detail["command"] == ["sh", "-c", script] and detail["endtime"] is None
    assert (detail["exitcode"], detail["termsignal"], detail["termerror"]) == (None, "", "")
    assert detail["log_tail"] == [f"line {i}" for i in range(3, 13)]
    assert detail["feedpath"] == str(fb / f"feedback_{taskid}.log")
    tw.run("control", "--kill", taskid, check=True)
    done = show(tw, taskid)
    assert list(done) == SHOW_KEYS
    assert done["status"] == "FINISHED" and done["finished"] is True and done["historyid"] is not None
    assert done["termerror"] == "killed by request" and done["feedback"] == {"phase": "build"}
    assert done["log_tail"][-1] == "line 12" and done["timeout"] == 60
    assert detail["attempts"] == [] and [a["historyid"] for a in done["attempts"]] == [done["historyid"]]


def test_show_of_an_unknown_id_is_exit_4(tw):
    tw.run("launch", "true", check=True)
    proc = tw.run("control", "--show", "99")
    assert proc.returncode == 4 and one_line_error(proc) == "taskwatcher: no task 99"


def test_show_as_a_table_escapes_control_characters_and_is_never_cut_when_piped(tw):
    long = "x" * 300
    tw.run("launch", "--info1", "a\x1b]0;title\x07b", "sh", "-c", f"echo {long}; exit 2")
    out = tw.run("control", "--show", check=True).stdout
    assert "\x1b" not in out and "a\\e]0;title\\ab" in out
    assert f"echo {long}; exit 2" in out and long in out.splitlines()[-1]
    assert "why" in out and "exit code 2" in out


def test_show_as_a_table_fits_the_terminal(tw):
    long = "y" * 300
    tw.run("launch", "sh", "-c", f"echo {long}")
    out = on_a_terminal(tw, "control", "--show", columns=50)
    lines = out.splitlines()
    assert all(len(line) <= 50 for line in lines), out
    assert any(line.endswith("…") and line.startswith("command") for line in lines), out
    assert lines[-1].endswith("…")


# -- errors that name the mistake -------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (("control", "--lsit"), 2,
         "taskwatcher control: error: unknown option --lsit (did you mean --list?)"),
        (("control", "--history", "--lats", "3"), 2,
         "taskwatcher control: error: unknown option --lats (did you mean --last?)"),
        (("launch", "--tiemout", "5", "true"), 125,
         "taskwatcher launch: error: unknown option --tiemout (did you mean --timeout?)"),
        (("control", "--list", "--name", "x"), 2, "taskwatcher: --name goes with --reserve or --history"),
        (("control", "--history", "--info1", "x"), 2, "taskwatcher: --info1 goes with --reserve"),
        (("control", "--kill", "1", "--json"), 2,
         "taskwatcher: --json goes with --list, --history or --show"),
        (("control", "--list", "--max-age", "2d"), 2, "taskwatcher: --max-age goes with --prune"),
        (("contrl", "--list"), 2, "taskwatcher: error: unknown command contrl (did you mean control?)"),
        (("lauch", "--detach", "true"), 2,
         "taskwatcher: error: unknown command lauch (did you mean launch?)"),
    ],
)  # fmt: skip
def test_an_error_names_the_mistake_in_one_line(tw, args, code, line):
    proc = tw.run(*args)
    assert proc.returncode == code
    assert one_line_error(proc) == line


@pytest.mark.parametrize(("word", "tool", "code"), [("-d", "control", 2), ("--debug", "launch", 125)])
def test_an_option_before_the_subcommand_is_explained(tw, word, tool, code):
    proc = subprocess.run(
        [*TW, word, tool, "--db", str(tw.db), "true"], env=tw.env, capture_output=True, text=True
    )
    assert proc.returncode == code
    assert (
        one_line_error(proc)
        == f"taskwatcher: error: {word} goes after the subcommand: taskwatcher {tool} {word} ..."
    )
    assert not db_exists(tw.db)


# -- reads never create a database ------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "stdout", "line"),
    [
        (("--list",), 0, "no task running or reserved\n", "no database exists at {db}"),
        (("--list", "--json"), 0, "{}\n", "no database exists at {db}"),
        (("--history",), 0, "history is empty\n", "no database exists at {db}"),
        (("--history", "--json"), 0, "{}\n", "no database exists at {db}"),
        (("--feedback", "3"), 4, "", "no task 3: no database exists at {db}"),
        (("--show",), 4, "", "no task: no database exists at {db}"),
        (("--show", "3", "--json"), 4, "", "no task 3: no database exists at {db}"),
        (("--log", "3"), 4, "", "no task 3: no database exists at {db}"),
        (("--log", "--follow"), 4, "", "no task: no database exists at {db}"),
        (("--wait",), 4, "", "no task: no database exists at {db}"),
        # commands that would change a database have nothing to change on a mistyped path
        (("--kill", "3"), 4, "", "no task 3: no database exists at {db}"),
        (("--killall", "x"), 4, "", "no task named 'x': no database exists at {db}"),
        (("--clear",), 0, "", "no database exists at {db}"),
        (("--prune", "--keep", "1"), 0, "0 finished tasks pruned\n", "no database exists at {db}"),
    ],
)
def test_a_read_on_a_path_without_a_database_creates_nothing(tw, tmp_path, workdir, args, code, stdout, line):
    db = tmp_path / "typo" / "tw.db"
    proc = subprocess.run(
        [*TW, "control", "--db", str(db), *args], env=tw.env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout) == (code, stdout)
    assert one_line_error(proc) == "taskwatcher: " + line.format(db=db)
    assert not (tmp_path / "typo").exists()
    beside = [*TW, "control", "--db", "tw.db", *args]  # in the current folder: no tw.db, -wal or -shm
    proc = subprocess.run(beside, env=tw.env, capture_output=True, text=True, cwd=workdir)
    assert proc.returncode == code and os.listdir(workdir) == []


def test_writes_still_create_the_database_on_first_use(tw, tmp_path):
    db = tmp_path / "new" / "tw.db"
    assert subprocess.run([*TW, "control", "--db", str(db), "--reserve"], env=tw.env).returncode == 0
    assert db.exists()
    other = tmp_path / "other" / "tw.db"
    assert subprocess.run([*TW, "launch", "--db", str(other), "true"], env=tw.env).returncode == 0
    assert other.exists()


# -- the small ones ------------------------------------------------------------------------------
def test_prune_counts_in_the_singular_and_the_plural(tw):
    for _ in range(4):
        tw.run("launch", "true", check=True)
    assert tw.run("control", "--prune", "--keep", "3", check=True).stdout == "1 finished task pruned\n"
    assert tw.run("control", "--prune", "--keep", "1", check=True).stdout == "2 finished tasks pruned\n"
    assert tw.run("control", "--prune", "--keep", "1", check=True).stdout == "0 finished tasks pruned\n"


def test_a_history_filter_that_matches_nothing_says_so(tw):
    assert tw.run("control", "--history", check=True).stdout == "history is empty\n"
    tw.run("launch", "true", check=True)
    out = tw.run("control", "--history", "--name", "no such", "--since", "2h", check=True).stdout
    assert out == "no finished task matches --name 'no such' --since 2h\n"


def test_launch_log_in_a_missing_folder_is_refused_like_feedpath(tw, tmp_path):
    proc = tw.run("launch", "--log", str(tmp_path / "nodir" / "x.log"), "touch", str(tmp_path / "ran"))
    assert proc.returncode == 125
    assert one_line_error(proc) == f"taskwatcher: log folder {tmp_path / 'nodir'} does not exist"
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "ran").exists()
    assert tw.history() == {}


@pytest.mark.parametrize(
    "args",
    [("launch", "true"), ("launch", "--log-max", "1M", "true"), ("launch", "--detach", "true"),
     ("control", "--update")],
)  # fmt: skip
def test_a_broken_config_file_is_reported_alike_by_every_command_that_applies_it(tw, tmp_path, args):
    config = tmp_path / "bad.toml"
    config.write_text("[history]\nkeep = 'ten'\n")
    tw.env["TASKWATCHER_CONFIG"] = str(config)
    proc = tw.run(*args)
    assert proc.returncode == (125 if args[0] == "launch" else 1)
    assert one_line_error(proc) == (
        f"taskwatcher: configuration file {config}: [history] keep must be a whole number of rows, not 'ten'"
    )


def test_a_config_file_that_is_a_fifo_is_refused_not_waited_on(tw, tmp_path):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    tw.env["TASKWATCHER_CONFIG"] = str(fifo)
    proc = tw.run("launch", "true", timeout=10)
    assert proc.returncode == 125
    assert one_line_error(proc) == f"taskwatcher: configuration file {fifo}: not a regular file"


def test_launch_debug_says_what_it_claimed_spawned_and_how_it_ended(tw):
    proc = tw.run("launch", "--debug", "sh", "-c", "exit 3")
    assert proc.returncode == 3
    err = proc.stderr
    assert "claimed task 1 (sh)" in err
    assert "task 1: spawned pid" in err and "['sh', '-c', 'exit 3']" in err
    assert "task 1 ended: exit 3" in err and "task 1 archived" in err


def complete(tw, script: str, *words: str) -> list[str]:
    """What bash offers for the last word, with this venv's ``taskwatcher`` first on PATH."""
    line = " ".join(words)
    probe = (
        f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _taskwatcher; echo "${{COMPREPLY[@]}}"'
    )
    env = dict(tw.env, PATH=f"{Path(TW[0]).parent}{os.pathsep}{tw.env['PATH']}")
    return subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout.split()


def test_completion_offers_task_ids_after_log_wait_kill_show(tw):
    for _ in range(3):
        tw.run("launch", "true", check=True)
    reserved = tw.run("control", "--reserve", check=True).stdout.strip()
    db = str(tw.db)
    script = tw.run("completion", "bash", check=True).stdout
    for option in ("--log", "--wait", "--kill", "--show"):
        offered = complete(tw, script, "taskwatcher", "control", "--db", db, option, "''")
        assert offered == [reserved, "3", "2", "1"], option
    assert complete(tw, script, "taskwatcher", "control", "--db", db, "--show", "2") == ["2"]
    assert complete(tw, script, "taskwatcher", "control", "--db", db, "--log", "--fol") == ["--follow"]
    missing = str(Path(db).with_name("missing.db"))
    offered = complete(tw, script, "taskwatcher", "control", "--db", missing, "--log", "''")
    assert offered and all(word.startswith("--") for word in offered)  # no id: the options
    assert not Path(missing).exists()


def test_the_api_takes_durations_with_units_too(tw):
    from taskwatcher import TaskWatcher
    from taskwatcher.errors import UsageError, WaitTimeout

    api = TaskWatcher(tw.db)
    taskid = api.reserve(ttl="2m")
    task = tw.tasks()[str(taskid)]
    assert abs(task["expiretime"] - task["reservetime"] - 120) <= 1
    with pytest.raises(WaitTimeout):
        api.wait(taskid, timeout="100ms")
    with pytest.raises(UsageError, match="--ttl: not a duration: '2 m'"):
        api.reserve(ttl="2 m")
    assert api.show()["taskid"] == taskid


# -- errors for people: control characters escaped, a configuration named but missing, XDG paths --
HOSTILE = "\x1b]0;PWN\x07\x1b[2Jfoo"


@pytest.mark.parametrize(
    "args",
    [
        ("launch", HOSTILE),  # command not found: <its name>
        ("control", "--killall", HOSTILE),  # no task named <it>
        ("launch", "--feedpath", "/no" + HOSTILE, "true"),  # feedback folder <it> does not exist
        ("control", "--" + HOSTILE),  # unknown option <it>
    ],
)
def test_an_error_shows_control_characters_escaped(tw, args):
    tw.run("control", "--update", check=True)
    proc = subprocess.run([*TW, args[0], "--db", str(tw.db), *args[1:]], env=tw.env, capture_output=True)
    line = proc.stderr.decode()
    assert proc.returncode != 0 and line.count("\n") == 1, line
    assert "\x1b" not in line and "\x07" not in line, line
    assert "\\e]0;PWN\\a\\e[2Jfoo" in line


def test_a_configuration_file_named_but_missing_is_an_error(tw, tmp_path):
    tw.env["TASKWATCHER_CONFIG"] = str(tmp_path / "nonexist.toml")
    line = f"taskwatcher: configuration file {tmp_path / 'nonexist.toml'}: no such file"
    update = tw.run("control", "--update")
    assert (update.returncode, one_line_error(update)) == (1, line)
    launch = tw.run("launch", "touch", str(tmp_path / "marker"))
    assert (launch.returncode, one_line_error(launch)) == (125, line)
    assert not (tmp_path / "marker").exists()


def test_a_relative_xdg_state_home_is_ignored(tw, tmp_path, workdir):
    """The XDG Base Directory specification: a relative path is to be ignored (it would put the
    database under whatever folder a command runs in)."""
    env = {k: v for k, v in tw.env.items() if k != "TASKWATCHER_DB"}
    env["XDG_STATE_HOME"] = "relative/state"
    proc = subprocess.run([*TW, "control", "--reserve"], env=env, capture_output=True, text=True, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(workdir) == []
    assert (Path(env["HOME"]) / ".local" / "state" / "taskwatcher" / "taskwatcher.db").exists()


def test_an_option_takes_the_next_word_as_its_value_even_one_starting_with_a_dash(tw):
    tw.run("launch", "--name", "-x", "--info1", "--foo", "true", check=True)
    (entry,) = tw.json("control", "--history", "--json").values()
    assert (entry["taskname"], entry["info1"], entry["command"]) == ("-x", "--foo", ["true"])
    proc = tw.run("control", "--killall", "-x")  # a name, not an unknown option
    assert (proc.returncode, one_line_error(proc)) == (4, "taskwatcher: no task named '-x'")
