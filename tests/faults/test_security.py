"""Security (issue 3, item 7): file modes and the umask, no shell, SQL only with parameters,
the feedback path inside --feedpath, nothing written outside the state folder, the
feedpath and the log. (Signals only to verified processes: tests/test_supervision.py
``test_signal_verified_*`` and tests/test_races.py, not repeated here.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TW, wait_for
from test_launch import helper, kill_own_processes

SRC = Path(__file__).parents[2] / "src" / "taskwatcher"
EVIL = "x'); DROP TABLE history; --"
EVIL2 = 'y" OR 1=1; DELETE FROM tasks; --'


@pytest.fixture(autouse=True)
def reaper(tmp_path: Path) -> Iterator[None]:
    yield
    kill_own_processes(tmp_path / "home")


def cli(env: dict[str, str], *args: str, cwd: Path | None = None, umask: int | None = None):
    return subprocess.run(
        [*TW, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


# -- file modes ------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o077, 0o022, 0o000])
def test_files_are_never_world_writable_and_honour_the_umask(tw, tmp_path, umask):
    """The state folder, database, logs folder and log, and a kept-aside end: with umask 077
    nobody else may even read them; with any umask (even 000) none is world-writable."""
    state = tmp_path / "st"
    db = state / "sub" / "tw.db"
    env = {**tw.env, "TASKWATCHER_BUSY_TIMEOUT": "0.3"}
    go = tmp_path / "go"
    detached = cli(env, "launch", "--db", str(db), "--detach", "--", "sh", "-c", "echo out", umask=umask)
    assert detached.returncode == 0, detached.stderr
    assert (
        cli(env, "control", "--db", str(db), "--wait", detached.stdout.strip(), umask=umask).returncode == 0
    )
    # An end the locked database will not take is kept aside in <db>-pending/
    launcher = subprocess.Popen(
        [*TW, "launch", "--db", str(db), "--", "sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.02; done'],
        env=env,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.umask(umask),
    )

    def started() -> bool:
        with contextlib.closing(sqlite3.connect(db)) as c:
            return any(pid for (pid,) in c.execute("SELECT pid FROM tasks"))

    wait_for(started, 15, "the task to start")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        go.touch()
        assert launcher.wait(timeout=15) == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    found = modes(state)
    assert "sub/tw-pending/task_2.json" in found and "sub/tw-logs/task_1.log" in found, sorted(found)
    for name, mode in found.items():
        assert not mode & stat.S_IWOTH, f"{name} is world-writable: {mode:o}"
        if name != ".":  # st itself is the test's
            assert not mode & umask, f"{name} has mode {mode:o} despite umask {umask:03o}"
    if umask == 0o077:
        assert all(not m & 0o077 for n, m in found.items() if n != "."), found
    assert cli(env, "control", "--db", str(db), "--list").returncode == 0  # archives the kept end


# -- no shell ----------------------------------------------------------------------------------
SHELLISH = ["$(touch m1)", "; touch m2", "`touch m3`", "&& touch m4", "| touch m5", "$HOME", "*", "~", "a\nb"]


def test_arguments_are_passed_literally_never_through_a_shell(tw, tmp_path, workdir):
    out = tmp_path / "argv.json"
    proc = tw.run("launch", "--", *helper("record", out, *SHELLISH), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["argv"] == SHELLISH
    assert not os.listdir(workdir), "a shell ran something"
    # a command name with a space is one name, not a command line
    proc = tw.run("launch", "--", "touch m6", cwd=workdir)
    assert proc.returncode == 127
    assert not os.listdir(workdir)


def test_the_source_never_uses_a_shell():
    # subprocess itself is allowed (the API's launch runs `python -m taskwatcher launch` from
    # an argv list); a shell in any form is not.
    forbidden = re.compile(
        r"\bshell\s*=(?!=)|os\.system\(|os\.popen\(|/bin/sh|\"-c\"|subprocess\.(call|getoutput|getstatusoutput)"
    )
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(SRC.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line) and not line.lstrip().startswith(("#", '"', "The child"))
    ]
    assert not hits, hits


# -- SQL only with parameters --------------------------------------------------------------------
def test_hostile_names_and_infos_are_stored_verbatim_and_the_tables_survive(tw, db):
    taskid = tw.run(
        "control", "--reserve", "--name", EVIL, "--info1", EVIL2, "--ttl", "600", check=True
    ).stdout
    tw.run("launch", "--name", EVIL2, "--info2", EVIL, "--info3", "'", "--", "true", check=True)
    listed = tw.tasks()[taskid.strip()]
    assert (listed["name"], listed["info1"]) == (EVIL, EVIL2)
    (entry,) = tw.history().values()
    assert (entry["taskname"], entry["info2"], entry["info3"]) == (EVIL2, EVIL, "'")
    assert tw.json("control", "--history", "--json", "--name", EVIL2) == tw.history()
    assert tw.json("control", "--history", "--json", "--name", EVIL) == {}
    killed = tw.run("control", "--killall", EVIL)
    assert killed.returncode == 0 and "reservation cancelled" in killed.stdout
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tasks", "feedbacks", "history"} <= tables
    assert len(tw.history()) == 1


# Every f-string that builds SQL in src, and what it may interpolate: names written in the
# code (tables, columns, fixed fragments), never a value from outside (those go as "?").
REVIEWED_INTERPOLATIONS = {
    "APPLICATION_ID", "SCHEMA_VERSION", "table", "columns", "values", "sets", "where", "_ENTRY_JSON",
    "' AND '.join(terms)", "RESERVATION_TTL", "ddl",
    "is_wait_status", "wait_status", "signal_names", "feedback_text",  # store._1x_history_as_2x
}  # fmt: skip
SQL_FSTRING = re.compile(
    r'f"[^"]*\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WHERE|CASE)\b[^"]*"'
)


def test_sql_is_built_only_from_names_in_the_code():
    found = set()
    for path in sorted(SRC.glob("*.py")):
        for match in SQL_FSTRING.finditer(path.read_text()):
            found |= set(re.findall(r"\{([^{}]+)\}", match.group(0)))
    assert found, "the pattern finds nothing: it is out of date"
    assert found <= REVIEWED_INTERPOLATIONS, found - REVIEWED_INTERPOLATIONS


# -- the feedback path -----------------------------------------------------------------------------
def test_the_feedback_file_is_always_directly_inside_feedpath(tw, tmp_path):
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    out = tmp_path / "facts.json"
    proc = tw.run("launch", "--name", "../../../etc/x", "--feedpath", str(feeds), "--",
                  *helper("record", out, "{feedback}", "{taskid}/../x"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(out.read_text())
    assert facts["feedback"] == str(feeds / f"feedback_{facts['taskid']}.log")
    assert facts["argv"] == [facts["feedback"], f"{facts['taskid']}/../x"]


def test_a_symlinked_feedpath_is_followed_as_named(tw, tmp_path):
    """Decision: --feedpath is the user's folder; a symlink to a folder is used as given
    (made absolute, not resolved), so the file lands in the folder the link points to."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    script = 'echo "$TASKWATCHER_FEEDBACK" > "$0.where"; echo "[a]1" >> "$TASKWATCHER_FEEDBACK"; ls "$0"'
    proc = tw.run("launch", "--feedpath", str(link), "--", "sh", "-c", script, str(real))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "feedback_1.log\n"  # the file was in the real folder
    assert Path(f"{real}.where").read_text() == f"{link}/feedback_1.log\n"
    (entry,) = tw.history().values()
    assert entry["feedback"] == {"a": "1"}
    assert not any(real.iterdir()), "feedback file left"


def test_a_planted_symlink_at_the_feedback_path_never_touches_its_target(tw, tmp_path):
    """A stale feedback_ID.log that is a symlink to a file outside is removed (the link, not
    the target) before the command starts; and a task that swaps its feedback file for such
    a link at the end has the link removed, never the file it points to."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    (feeds / f"feedback_{taskid}.log").symlink_to(victim)
    feedback = '"$TASKWATCHER_FEEDBACK"'
    script = f'echo "[a]1" >> {feedback}; rm {feedback}; ln -s "{victim}" {feedback}'
    proc = tw.run("launch", "--taskid", taskid, "--feedpath", str(feeds), "--", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious\n"
    assert not any(feeds.iterdir())


# -- nothing written elsewhere ------------------------------------------------------------------------
def test_nothing_is_written_outside_the_state_folder_the_feedpath_and_the_log(tmp_path):
    folders = {
        n: tmp_path / n
        for n in ("cwd", "home", "state", "config", "cache", "data", "runtime", "tmp", "feeds")
    }
    for f in folders.values():
        f.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKWATCHER_", "XDG_"))}
    env.update(
        PYTHONPATH=str(SRC.parent), PYTHONDONTWRITEBYTECODE="1", HOME=str(folders["home"]),
        XDG_STATE_HOME=str(folders["state"]), XDG_CONFIG_HOME=str(folders["config"]),
        XDG_CACHE_HOME=str(folders["cache"]), XDG_DATA_HOME=str(folders["data"]),
        XDG_RUNTIME_DIR=str(folders["runtime"]), TMPDIR=str(folders["tmp"]),
    )  # fmt: skip
    feeds = str(folders["feeds"])

    def ok(*args: str) -> str:
        proc = cli(env, *args, cwd=folders["cwd"])
        assert proc.returncode == 0, (args, proc.stderr)
        return proc.stdout

    rid = ok("control", "--reserve", "--name", "r").strip()
    ok(
        "launch",
        "--taskid",
        rid,
        "--feedpath",
        feeds,
        "--",
        "sh",
        "-c",
        'echo "[p]1" >> "$TASKWATCHER_FEEDBACK"',
    )
    did = ok(
        "launch",
        "--detach",
        "--feedpath",
        feeds,
        "--",
        "sh",
        "-c",
        'echo "[p]2" >> "$TASKWATCHER_FEEDBACK"; echo hi',
    )
    ok("control", "--wait", did.strip())
    kid = ok("control", "--reserve").strip()
    ok("control", "--kill", kid)
    for args in (["--list"], ["--list", "--json"], ["--history"], ["--history", "--json"], ["--update"]):
        ok("control", *args)
    assert json.loads(ok("control", "--feedback", rid)) == {"p": "1"}
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    logs = "state/taskwatcher/taskwatcher-logs"
    assert written == [f"{logs}/task_1.log", f"{logs}/task_2.log", "state/taskwatcher/taskwatcher.db"]
    assert (tmp_path / logs / "task_1.log").read_text() == ""  # the foreground task printed nothing
    assert (folders["state"] / "taskwatcher/taskwatcher-logs/task_2.log").read_text() == "hi\n"
    for name in ("cwd", "home", "config", "cache", "data", "runtime", "tmp", "feeds"):
        assert not any(folders[name].iterdir()), f"something was written in {name}"
