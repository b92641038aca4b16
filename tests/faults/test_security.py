"""Security (issue 3, item 7): file modes and the umask, no shell, SQL only with parameters,
the feedback path inside --feedpath, nothing written outside the state folder, the
feedpath and the log. (Signals only to verified processes: tests/test_supervision.py
``test_signal_verified_*`` and tests/test_races.py, not repeated here.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import TW, db_rows, wait_for
from support import helper, kill_own_processes, reaper  # noqa: F401  (reaper: an autouse fixture)

SRC = Path(__file__).parents[2] / "src" / "taskwatcher"
EVIL = "x'); DROP TABLE history; --"
EVIL2 = 'y" OR 1=1; DELETE FROM tasks; --'


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
        return any(row["pid"] for row in db_rows(db, "SELECT pid FROM tasks"))

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
    # The one use of /bin/sh: a file the kernel will not run (ENOEXEC, a script without #!)
    # is given to sh as a file to read, never a command string, as POSIX execvp does.
    # And the finish hook, a shell command by contract (launch --on-end 'SHELL COMMAND').
    allowed = {
        'spawn.py: os.execve("/bin/sh", ["/bin/sh", path, *argv[1:]], env)',
        "hooks.py: proc = subprocess.Popen(command, shell=True, env=env, **_HOOK_PROCESS)",
    }
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(SRC.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
        and not line.lstrip().startswith(("#", '"', "The child"))
        and f"{path.name}: {line.strip()}" not in allowed
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
    "' AND '.join(terms)", "RESERVATION_TTL", "ddl", "name", "decl", "key",
    "is_wait_status", "wait_status", "signal_names", "feedback_text",  # store._1x_history_as_2x
    "_TASK_COLUMNS", "_HISTORY_COLUMNS", "due", "_marks(sources(status))",  # store/sqlite.py
    "SCHEMA", "_RUNNING",  # store/postgres.py: its schema's name, a condition on status
    "_marks(holding)",  # store/sqlite.py: the statuses that hold a group's slot
    "_HELD_BY", "held",  # store/*.py: a hook run's holder columns (held: that condition, or none)
    "only", "lapsed",  # store/postgres.py: the lease-ran-out condition, or none
    "_LEASED", "_QUIET",  # store/postgres.py: the rows that hold a lease; the setting's name
}  # fmt: skip
SQL_FSTRING = re.compile(
    r'f"[^"]*\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WHERE|CASE)\b[^"]*"'
)


def test_sql_is_built_only_from_names_in_the_code():
    found = set()
    for path in sorted(SRC.rglob("*.py")):
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


# -- the trust model: who may write the database may act as you ------------------------------------
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def forge(db: Path, sql: str, params: tuple = ()) -> None:
    """Write the database directly, as whoever could write it (the attacker of these tests)."""
    with contextlib.closing(sqlite3.connect(db)) as c, c:
        c.execute(sql, params)


def lost_row(db: Path, name: str, **columns: object) -> None:
    """A RUNNING row of this host and boot whose launcher is dead: the next command archives it."""
    fields = {"name": name, "status": "RUNNING", "starttime": 1, "started": 1.0, "token": "t0ken",
              "host": os.uname().nodename, "bootid": BOOT_ID.read_text().strip(),
              "launcherpid": 2**22 + 12345, "launcherstart": 1, **columns}  # fmt: skip
    forge(db, f"INSERT INTO tasks ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
          tuple(fields.values()))  # fmt: skip


def test_the_database_and_its_wal_and_shm_are_private_and_an_older_one_is_made_so(tw, db):
    tw.run("launch", "--", "true", check=True)
    tw.run("control", "--reserve", check=True)
    found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.glob("tw.db*")}
    assert found.get("tw.db") == 0o600, found
    assert all(mode == 0o600 for mode in found.values()), found
    os.chmod(db, 0o644)  # as taskwatcher before this made it
    tw.run("control", "--list", check=True)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_a_database_another_user_made_is_refused_and_left_alone(env):
    """A second user for real (nobody): its database, in its own folder, is not used by root,
    whose ordinary --list would otherwise act on whatever that user wrote in it."""
    from faults import osfaults

    python, why = osfaults.nobody_python()
    if python is None:
        pytest.skip(why)
    outer = Path(tempfile.mkdtemp(prefix="tw-sec-"))  # under /tmp: nobody cannot enter pytest's folder
    try:
        _refused_as_root(python, outer, env)
    finally:
        shutil.rmtree(outer)


def _refused_as_root(python: str, outer: Path, env: dict[str, str]) -> None:
    from faults import osfaults

    os.chmod(outer, 0o755)
    theirs = outer / "theirs"
    theirs.mkdir()
    osfaults.give_to_nobody(theirs)
    db = theirs / "tw.db"
    made = subprocess.run([python, "-m", "taskwatcher", "control", "--db", str(db), "--reserve"],
                          env={**env, "PYTHONPATH": osfaults.SRC, "HOME": str(theirs)}, cwd="/",
                          capture_output=True, text=True, timeout=30, **osfaults.as_nobody())  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # nobody's own database is private to nobody
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    for args in (["--list"], ["--kill", "1"], ["--clear"]):
        proc = cli(env, "control", "--db", str(db), *args)
        assert proc.returncode == 1, proc
        assert proc.stderr == (f"taskwatcher: database folder {theirs} belongs to another user (nobody): "
                               "refused, whoever can write there can act as you\n")  # fmt: skip
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before


def test_paths_from_rows_never_reach_a_file_outside(tw, db, tmp_path):
    """A row is data: its feedback path and log path are checked before anything is opened
    or removed; `..` does not lead out of the logs folder."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    tw.run("launch", "--", "true", check=True)  # the database, its logs folder and task 1's log
    logs = tmp_path / "tw-logs"
    forge(db, "UPDATE history SET logfile = ?, logplaced = 1", (f"{logs}/../victim.txt",))
    lost_row(db, "forged", feedpath=str(victim), feedback=1, logfile=f"{logs}/../victim.txt", logplaced=1)
    assert tw.run("control", "--list").returncode == 0  # archives the forged lost row
    (entry,) = [e for e in tw.history().values() if e["taskname"] == "forged"]
    assert entry["termerror"] == "launcher lost" and entry["feedback"] == {}  # the victim was not read
    shown = tw.run("control", "--log", "1")
    assert (shown.returncode, shown.stdout) == (1, "")
    assert (
        shown.stderr
        == f"taskwatcher: task 1: its log path {logs}/../victim.txt is not in the logs folder: not read\n"
    )
    assert tw.run("control", "--clear").returncode == 0
    assert victim.read_text() == "precious\n"


def test_only_the_logs_taskwatcher_placed_are_removed_and_initialize_removes_them(tw, db, tmp_path):
    logs = tmp_path / "tw-logs"
    tw.run("launch", "--", "sh", "-c", "echo placed", check=True)
    logs.mkdir(exist_ok=True)
    mine = logs / "mine.log"
    tw.run("launch", "--log", str(mine), "--", "sh", "-c", "echo mine", check=True)
    named_like_ours = logs / "task_3.log"  # the user's --log, at the very name taskwatcher would use
    tw.run("launch", "--log", str(named_like_ours), "--", "sh", "-c", "echo also mine", check=True)
    assert (logs / "task_1.log").read_text() == "placed\n"
    assert tw.run("control", "--prune", "--keep", "0").returncode == 0
    assert sorted(p.name for p in logs.iterdir()) == ["mine.log", "task_3.log"]
    assert mine.read_text() == "mine\n" and named_like_ours.read_text() == "also mine\n"
    tw.run("launch", "--", "sh", "-c", "echo placed", check=True)
    assert (logs / "task_4.log").exists()
    assert tw.run("control", "--initialize").returncode == 0
    assert sorted(p.name for p in logs.iterdir()) == ["mine.log", "task_3.log"]


def test_a_forged_or_planted_end_never_archives_a_task(tw, db, tmp_path):
    """A kept-aside end counts only as a regular file of ours with the task's own token: a
    wrong token, a symlink (even to a file with the right token), another user's file, or
    a tokenless file for a tokenless row (a reservation) are ignored."""
    go = tmp_path / "go"
    launcher = tw.popen(
        "launch", "--name", "victim", "--", "sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.02; done'
    )
    try:
        wait_for(lambda: any(r["pid"] for r in db_rows(db, "SELECT pid FROM tasks")), 15, "the task to run")
        ((taskid, token),) = [tuple(r) for r in db_rows(db, "SELECT id, token FROM tasks")]
        reservation = int(tw.run("control", "--reserve", "--ttl", "600", check=True).stdout)
        pending = tmp_path / "tw-pending"
        pending.mkdir(mode=0o700)
        end = {"termsignal": "", "termerror": "", "exitcode": 0}
        (pending / f"task_{taskid}.json").write_text(json.dumps({"token": "guessed", **end}))
        real = tmp_path / "elsewhere.json"
        real.write_text(json.dumps({"token": token, **end}))
        (pending / f"task_{taskid}.json.tmp").write_text("{}")
        (pending / f"task_{reservation}.json").write_text(json.dumps(end))  # no token, as the reservation
        assert tw.run("control", "--list").returncode == 0
        (pending / f"task_{taskid}.json").symlink_to(real)
        assert tw.run("control", "--list").returncode == 0
        from faults import osfaults

        other = pending / f"task_{taskid}.json"
        other.write_text(json.dumps({"token": token, **end}))
        osfaults.give_to_nobody(other)
        assert tw.run("control", "--list").returncode == 0
        assert sorted(tw.tasks()) == sorted([str(taskid), str(reservation)])
        assert tw.history() == {}
        go.touch()
        assert launcher.wait(timeout=15) == 0
    finally:
        launcher.kill()
        launcher.wait()
    assert [e["termerror"] for e in tw.history().values()] == [""]


def test_an_end_kept_aside_for_a_task_the_database_does_not_have_is_said_and_let_go(tw, tmp_path):
    """A database made anew, or a server that lost its last commits, may have neither the row
    nor a history row of a kept end's task: nothing to record it in, so the next command says
    so (never silently) and removes it; an end whose task is in history goes without a word."""
    tw.run("launch", "--", "true", check=True)  # task 1, in history
    pending = tmp_path / "tw-pending"
    pending.mkdir(mode=0o700)
    end = {"token": "0123456789abcdef", "termsignal": "", "termerror": "exit code 3", "exitcode": 3}
    for taskid in (1, 7):
        (pending / f"task_{taskid}.json").write_text(json.dumps(end))
    listed = tw.run("control", "--list")
    assert listed.returncode == 0
    said = [line for line in listed.stderr.splitlines() if line]
    assert said == [
        f"task 7's end kept aside in {pending}/task_7.json is not recorded: the database has no such task"
        " (none running, none in history)"
    ], listed.stderr
    assert sorted(pending.iterdir()) == []
    assert [e["taskid"] for e in tw.history().values()] == [1]
    assert tw.run("control", "--list").stderr == ""  # said once


def test_bytes_that_are_not_utf8_are_kept_escaped_and_the_exact_argv_runs(tw, tmp_path):
    bad = os.fsdecode(b"b\xffad")
    reserved = tw.run("control", "--reserve", "--name", bad, "--info1", bad, check=True).stdout.strip()
    assert (tw.tasks()[reserved]["name"], tw.tasks()[reserved]["info1"]) == ("b\\xffad", "b\\xffad")
    assert (
        tw.run("control", "--killall", bad, check=True).stdout == f"task {reserved}: reservation cancelled\n"
    )
    folder = tmp_path / "bin"
    folder.mkdir()
    script = os.path.join(os.fsencode(folder), b"run\xfe")
    out = tmp_path / "argv"
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\nprintf "%s" "$0|$1" > "{out}"\nexit 7\n')
    os.chmod(script, 0o755)
    proc = tw.run("launch", "--", os.fsdecode(script), bad)
    assert (proc.returncode, proc.stderr) == (7, "")
    assert out.read_bytes() == script + b"|b\xffad"  # exactly the bytes given
    (entry,) = tw.json("control", "--history", "--json", "--name", os.fsdecode(b"run\xfe")).values()
    assert entry["taskname"] == "run\\xfe" and entry["exitcode"] == 7
    assert entry["command"] == [f"{folder}/run\\xfe", "b\\xffad"]
    table = tw.run("control", "--history")
    assert table.returncode == 0 and "internal error" not in table.stderr


def test_killall_stops_every_task_here_and_names_the_one_on_another_host(tw, db):
    first = tw.run("launch", "--detach", "--name", "k", "--", "sleep", "300", check=True).stdout.strip()
    lost_row(db, "k", host="elsewhere", token="far")  # another host's row: not ours to judge or stop
    (foreign,) = [r["id"] for r in db_rows(db, "SELECT id FROM tasks WHERE host = 'elsewhere'")]
    last = tw.run("launch", "--detach", "--name", "k", "--", "sleep", "300", check=True).stdout.strip()
    proc = tw.run("control", "--killall", "k")
    assert proc.returncode == 3
    assert proc.stdout == f"task {first}: killed\ntask {last}: killed\n"
    assert (
        proc.stderr
        == f"taskwatcher: not stopped, stop them where they run: task {foreign} (host elsewhere)\n"
    )
    assert list(tw.tasks()) == [str(foreign)]
    assert sorted(e["taskid"] for e in tw.history().values()) == [int(first), int(last)]


def test_the_api_says_what_could_not_start_when_no_cwd_is_given(db):
    from taskwatcher import TaskWatcher
    from taskwatcher.errors import StartFailed

    with pytest.raises(StartFailed) as failed:
        TaskWatcher(db).launch(["true"], env={"HUGE": "x" * 200_000})  # one variable past MAX_ARG_STRLEN
    assert failed.value.exit_code == 125
    assert str(failed.value) == f"cannot start {sys.executable} -m taskwatcher: Argument list too long"
    assert not db.exists()


def test_a_log_that_became_a_fifo_is_not_waited_on(tw, tmp_path):
    log = tmp_path / "mine.log"
    tw.run("launch", "--log", str(log), "--", "true", check=True)
    log.unlink()
    os.mkfifo(log)  # reading it would wait for a writer that never comes
    proc = tw.run("control", "--log", "1", timeout=10)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"taskwatcher: log {log} is not a regular file: not read\n"
