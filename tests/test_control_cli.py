"""``taskwatcher control`` through the real CLI: reservations, --unique, time to live, listing,
history, kill/killall, initialize/clear/update, feedback offsets, exit codes (SPEC, "control")."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import SEED_HISTORY_COLUMNS, SEED_TASK_COLUMNS, TW, db_sql, wait_for
from support import gone, one_line_error, reserve
from test_store import make_1x

LIST_KEYS = (set(SEED_TASK_COLUMNS) - {"id"}) | {"timer"}
HISTORY_KEYS = (set(SEED_HISTORY_COLUMNS) - {"id"}) | {"exitcode"}
RAW_UNIX_TIME = re.compile(r"\b1\d{9}\b")


# -- helpers -------------------------------------------------------------------------------
def sql(db: Path | str, query: str, params: tuple = ()) -> list[tuple]:
    return [tuple(row) for row in db_sql(db, query, params)]  # on either backend


class Launches:
    """Launchers started by a test; every one (and its task tree) is stopped at teardown."""

    def __init__(self, tw) -> None:
        self.tw = tw
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        p = self.tw.popen("launch", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def running(self, name: str, count: int = 1) -> dict[str, dict]:
        """Wait until ``count`` tasks of ``name`` run with a pid; return them by id."""

        def ready() -> dict[str, dict]:
            found = {
                k: v
                for k, v in self.tw.tasks().items()
                if v["name"] == name and v["status"] != "RESERVED" and v["pid"]
            }
            return found if len(found) == count else {}

        return wait_for(ready, timeout=15, what=f"{count} running task(s) named {name}")

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                continue
            try:
                victims = psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                victims = []
            p.send_signal(signal.SIGKILL)
            for v in victims:
                try:
                    v.kill()
                except psutil.NoSuchProcess:
                    pass
            p.wait(timeout=10)
            psutil.wait_procs(victims, timeout=5)
        for p in self.procs:
            if p.stderr is not None:
                p.stderr.close()


@pytest.fixture
def launches(tw) -> Iterator[Launches]:
    launched = Launches(tw)
    try:
        yield launched
    finally:
        launched.cleanup()


# -- reservations --------------------------------------------------------------------------
def test_reserve_prints_the_id_alone(tw):
    proc = tw.run("control", "--reserve", check=True)
    assert re.fullmatch(r"\d+\n", proc.stdout), repr(proc.stdout)
    assert proc.stderr == ""
    taskid = proc.stdout.strip()
    assert tw.tasks()[taskid]["status"] == "RESERVED"


def test_reserve_name_infos_and_taskname_alias(tw):
    a = reserve(tw, "--name", "alpha", "--info1", "one", "--info2", "two", "--info3", "three")
    b = reserve(tw, "--taskname", "beta")
    tasks = tw.tasks()
    assert {k: tasks[str(a)][k] for k in ("name", "info1", "info2", "info3")} == {
        "name": "alpha",
        "info1": "one",
        "info2": "two",
        "info3": "three",
    }
    assert tasks[str(b)]["name"] == "beta"
    assert b > a


def test_unique_second_reservation_refused_naming_holder(tw):
    holder = reserve(tw, "--name", "solo", "--unique")
    proc = tw.run("control", "--reserve", "--name", "solo", "--unique")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert re.search(rf"\b{holder}\b", one_line_error(proc))
    # other names and non-unique reservations are not affected
    assert reserve(tw, "--name", "other", "--unique") > holder
    assert reserve(tw, "--name", "solo") > holder
    assert next(k for k, v in tw.tasks().items() if v["name"] == "solo") == str(holder)


def test_unique_refused_while_a_task_of_that_name_runs(tw, launches):
    launches.start("--name", "x", "--", "sleep", "30")
    (taskid,) = launches.running("x")
    try:
        proc = tw.run("control", "--reserve", "--name", "x", "--unique")
        assert proc.returncode == 3
        assert re.search(rf"\b{taskid}\b", one_line_error(proc))
        assert proc.stdout == ""
    finally:
        tw.run("control", "--kill", taskid)
    # once it has ended the name is free again
    assert reserve(tw, "--name", "x", "--unique") > int(taskid)


def test_unique_is_atomic(tw):
    tw.tasks()  # the database exists: the race is on the name alone
    procs = [
        subprocess.Popen(
            [*TW, "control", "--db", str(tw.db), "--reserve", "--name", "N", "--unique"],
            env=tw.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    try:
        outs = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0] + [3] * 19, [o[1] for o in outs]
    (winner,) = [int(o[0]) for p, o in zip(procs, outs, strict=True) if p.returncode == 0]
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode == 3:
            assert str(winner) in err
    assert list(tw.tasks()) == [str(winner)]


def test_reservation_expires_after_its_ttl(tw):
    began = time.time()
    short = reserve(tw, "--ttl", "0.5")
    # Read as stored, before any other command (one started 0.5 s later on a loaded machine
    # already drops it): held 0.5 s.
    (expires,) = [r[0] for r in sql(tw.db, "SELECT expiretime FROM tasks WHERE id = ?", (short,))]
    keep = reserve(tw)
    assert began + 0.5 <= expires <= time.time() + 0.5
    wait_for(lambda: str(short) not in tw.tasks(), timeout=10, what="the reservation to expire")
    assert str(keep) in tw.tasks()
    assert tw.history_of(short) is None  # a reservation that was never run leaves no history


def test_default_ttl_is_60_seconds(tw):
    before = time.time()
    taskid = reserve(tw)
    after = time.time()  # (the reservation's time lies between, however slow the machine)
    task = tw.tasks()[str(taskid)]
    assert task["expiretime"] - task["reservetime"] == 60
    assert int(before) <= task["reservetime"] <= after


def test_expired_unique_reservation_frees_the_name(tw):
    first = reserve(tw, "--name", "u", "--unique", "--ttl", "0.3")
    second = wait_for(
        lambda: tw.run("control", "--reserve", "--name", "u", "--unique").stdout.strip(),
        timeout=10,
        what="the expired unique name to be free",
    )
    assert int(second) > first


# -- listing ----------------------------------------------------------------------------------
def test_list_json_shape(tw, launches):
    r = reserve(tw, "--name", "res", "--info1", "i1")
    launches.start("--name", "run", "--info2", "i2", "--timeout", "100", "--", "sleep", "30")
    running = launches.running("run")
    tasks = tw.tasks()
    assert isinstance(tasks, dict)
    assert str(r) in tasks
    for key, value in tasks.items():
        assert key.isdigit()
        assert set(value) >= LIST_KEYS, set(value)
    (rid,) = running
    t = tasks[rid]
    assert t["status"] == "RUNNING"
    assert isinstance(t["pid"], int) and psutil.pid_exists(t["pid"])
    assert t["info2"] == "i2"
    assert t["timeout"] == 100
    assert t["feedback"] in (False, 0)
    assert isinstance(t["starttime"], int) and abs(t["starttime"] - time.time()) < 30
    assert isinstance(t["duration"], int) and t["duration"] >= 0
    assert t["timer"] is not None and t["timer"] >= 0
    assert tasks[str(r)]["status"] == "RESERVED"
    assert tasks[str(r)]["info1"] == "i1"
    tw.run("control", "--kill", rid, check=True)


def test_list_for_people_has_readable_times(tw, launches):
    launches.start("--name", "human", "--", "sleep", "30")
    reserve(tw, "--name", "later")
    (taskid,) = launches.running("human")
    proc = tw.run("control", "--list", check=True)
    out = proc.stdout
    assert "human" in out and "later" in out and taskid in out
    assert "RUNNING" in out and "RESERVED" in out
    assert not RAW_UNIX_TIME.search(out), out
    assert re.search(r"\d\d:\d\d:\d\d", out), out  # the start time of the running task
    assert not out.lstrip().startswith("{")
    tw.run("control", "--kill", taskid, check=True)


# -- history ----------------------------------------------------------------------------------
def test_history_json_shape_and_order(tw):
    ids = []
    for name, code in (("first", "0"), ("second", "3"), ("third", "0")):
        proc = tw.run("launch", "--name", name, "--info1", name, "--", sys.executable, "-c", f"exit({code})")
        assert proc.returncode == int(code), proc.stderr
    hist = tw.history()
    assert list(hist) == sorted(hist, key=int)
    for key, entry in hist.items():
        assert key.isdigit()
        assert set(entry) >= HISTORY_KEYS, set(entry)
        assert isinstance(entry["feedback"], dict)
        ids.append(entry["taskid"])
    assert [e["taskname"] for e in hist.values()] == ["first", "second", "third"]
    assert ids == sorted(ids)
    assert [e["exitcode"] for e in hist.values()] == [0, 3, 0]
    second = list(hist.values())[1]
    assert "3" in second["termerror"]
    assert second["info1"] == "second"
    ends = [e["endtime"] for e in hist.values()]
    assert ends == sorted(ends)
    for e in hist.values():
        assert isinstance(e["starttime"], int) and isinstance(e["endtime"], int)
        assert e["endtime"] >= e["starttime"]


def test_history_for_people_is_readable(tw):
    tw.run("launch", "--name", "shown", "--", "true", check=True)
    out = tw.run("control", "--history", check=True).stdout
    assert "shown" in out
    assert not RAW_UNIX_TIME.search(out), out
    assert re.search(r"\d\d:\d\d:\d\d", out)
    assert not out.lstrip().startswith("{")


def test_clear_empties_history_but_ids_keep_growing(tw):
    tw.run("launch", "--", "true", check=True)
    tw.run("launch", "--", "true", check=True)
    hist = tw.history()
    assert len(hist) == 2
    top = max(e["taskid"] for e in hist.values())
    proc = tw.run("control", "--clear", check=True)
    assert proc.stderr == ""
    assert tw.history() == {}
    assert reserve(tw) > top


# -- ids --------------------------------------------------------------------------------------
def test_task_ids_are_never_reused(tw):
    a = reserve(tw)
    assert tw.run("control", "--kill", str(a)).returncode == 0  # cancel the reservation
    assert str(a) not in tw.tasks()
    b = reserve(tw)
    assert b > a
    tw.run("control", "--kill", str(b), check=True)
    tw.run("launch", "--", "true", check=True)
    launched = max(e["taskid"] for e in tw.history().values())
    assert launched > b
    assert tw.tasks() == {}  # the tasks table is empty: its highest id is only remembered
    tw.run("control", "--clear", check=True)
    c = reserve(tw)
    assert c > launched
    tw.run("control", "--initialize", check=True)
    assert tw.tasks() == {} and tw.history() == {}
    assert reserve(tw) == 1


# -- initialize -------------------------------------------------------------------------------
def test_initialize_refused_while_running_unless_forced(tw, launches):
    p = launches.start("--name", "busy", "--", "sleep", "30")
    (taskid,) = launches.running("busy")
    pid = tw.tasks()[taskid]["pid"]
    proc = tw.run("control", "--initialize")
    assert proc.returncode == 3
    one_line_error(proc)
    assert taskid in tw.tasks()
    assert psutil.pid_exists(pid) and not gone(pid)

    proc = tw.run("control", "--initialize", "--force")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: gone(pid), timeout=10, what="the task's process to be gone")
    assert p.wait(timeout=15) is not None
    assert tw.tasks() == {}
    assert tw.history() == {}
    assert reserve(tw) == 1


def test_initialize_with_only_reservations_is_allowed(tw):
    reserve(tw)
    reserve(tw)
    tw.run("control", "--initialize", check=True)
    assert tw.tasks() == {}
    assert reserve(tw) == 1


# -- kill ---------------------------------------------------------------------------------------
def test_kill_cancels_a_reservation(tw):
    keep = reserve(tw, "--name", "keep")
    drop = reserve(tw, "--name", "drop")
    proc = tw.run("control", "--kill", str(drop))
    assert proc.returncode == 0, proc.stderr
    assert set(tw.tasks()) == {str(keep)}
    # the cancelled id cannot be launched
    launch = tw.run("launch", "--taskid", str(drop), "--", "true")
    assert launch.returncode == 125


def test_kill_stops_a_running_task(tw, launches):
    p = launches.start("--name", "victim", "--", "sleep", "30")
    (taskid,) = launches.running("victim")
    pid = tw.tasks()[taskid]["pid"]
    proc = tw.run("control", "--kill", taskid)
    assert proc.returncode == 0, proc.stderr
    assert taskid not in tw.tasks()
    entry = tw.history_of(taskid)
    assert entry is not None
    assert entry["termerror"] == "killed by request"
    assert entry["termsignal"].startswith("SIG")
    assert gone(pid)
    p.wait(timeout=15)


def test_kill_errors(tw):
    reserve(tw)
    for args, code in (
        (("--kill", "999"), 4),
        (("--kill", "abc"), 2),
        (("--kill", "1.5"), 2),
        (("--killall", "nobody"), 4),
        (("--feedback", "999"), 4),
        (("--feedback", "x"), 2),
        (("--list", "--history"), 2),
        (("--reserve", "--kill", "1"), 2),
        ((), 2),
    ):
        proc = tw.run("control", *args)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        one_line_error(proc)
        assert proc.stdout == "", args
    assert "1" in tw.tasks()  # nothing was done by any of them


def test_kill_of_an_ended_task_is_no_such_task(tw):
    tw.run("launch", "--", "true", check=True)
    (entry,) = tw.history().values()
    proc = tw.run("control", "--kill", str(entry["taskid"]))
    assert proc.returncode == 4
    one_line_error(proc)


def test_killall_stops_every_task_of_that_name(tw, launches):
    p1 = launches.start("--name", "twin", "--", "sleep", "30")
    p2 = launches.start("--name", "twin", "--", "sleep", "30")
    launches.start("--name", "bystander", "--", "sleep", "300")  # outlives the test, however slow
    twins = launches.running("twin", 2)
    (other,) = launches.running("bystander")
    pids = [t["pid"] for t in twins.values()]
    proc = tw.run("control", "--killall", "twin")
    assert proc.returncode == 0, proc.stderr
    tasks = tw.tasks()
    assert not set(twins) & set(tasks)
    assert other in tasks
    for taskid in twins:
        assert tw.history_of(taskid)["termerror"] == "killed by request"
    for pid in pids:
        assert gone(pid)
    p1.wait(timeout=15)
    p2.wait(timeout=15)
    again = tw.run("control", "--killall", "twin")
    assert again.returncode == 4
    one_line_error(again)
    tw.run("control", "--kill", other, check=True)


@pytest.mark.sqlite_only("a 1.x SQLite file, upgraded in place")
def test_kill_of_a_running_task_from_taskwatcher_1x(tw, db):
    """A 1.x row knows only the pid: --kill must stop that process, or refuse; never report a
    kill (and archive "killed by request") while the process goes on running."""
    victim = subprocess.Popen(["sleep", "30"])
    try:
        t = int(time.time())
        make_1x(db, tasks=[(7, "old", "", "", "", victim.pid, "RUNNING", 0, t - 2, t - 1, 0, t - 1, 0)])
        assert tw.tasks()["7"]["pid"] == victim.pid
        proc = tw.run("control", "--kill", "7")
        if proc.returncode == 0:
            wait_for(lambda: victim.poll() is not None, timeout=5, what="the 1.x task to be stopped")
            assert tw.history_of(7)["termerror"] == "killed by request"
        else:
            one_line_error(proc)
            assert victim.poll() is None
            assert "7" in tw.tasks()
    finally:
        victim.kill()
        victim.wait()


def test_no_subcommand_is_usage_error(env):
    proc = subprocess.run(TW, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


# -- update -------------------------------------------------------------------------------------
def test_update_writes_durations_and_expires(tw, launches):
    launches.start("--name", "long", "--", "sleep", "30")
    (taskid,) = launches.running("long")
    # pretend it started 100 s ago and that nothing wrote its duration
    sql(
        tw.db,
        "UPDATE tasks SET started = started - 100, starttime = starttime - 100, duration = NULL WHERE id = ?",
        (int(taskid),),
    )
    stale = reserve(tw)
    sql(tw.db, "UPDATE tasks SET expiretime = 1 WHERE id = ?", (stale,))
    before = time.time()
    proc = tw.run("control", "--update")
    assert proc.returncode == 0, proc.stderr
    ((duration, status),) = sql(tw.db, "SELECT duration, status FROM tasks WHERE id = ?", (int(taskid),))
    assert duration is not None
    assert 100 <= duration <= 100 + (time.time() - before) + 30
    assert status == "RUNNING"
    assert sql(tw.db, "SELECT id FROM tasks WHERE id = ?", (stale,)) == []
    tw.run("control", "--kill", taskid, check=True)


def test_update_archives_a_lost_task(tw):
    taskid = reserve(tw, "--name", "orphan")
    # a running row whose launcher is gone (here, never had one: a 1.x-style row)
    sql(
        tw.db,
        "UPDATE tasks SET status = 'RUNNING', starttime = ?, started = ?, pid = NULL WHERE id = ?",
        (int(time.time()), time.time(), taskid),
    )
    tw.run("control", "--update", check=True)
    assert sql(tw.db, "SELECT id FROM tasks WHERE id = ?", (taskid,)) == []
    assert "launcher lost" in tw.history_of(taskid)["termerror"]


# -- feedback -----------------------------------------------------------------------------------
FEEDBACK_TASK = r"""
import os, sys, time
fb = os.environ["TASKWATCHER_FEEDBACK"]
gate = sys.argv[1]

def write(text):
    with open(fb, "ab") as f:
        f.write(text.encode())

def wait(name):
    while not os.path.exists(os.path.join(gate, name)):
        time.sleep(0.01)

write("[phase]1\n[progress]10\n[drop]me\n")
wait("go1")
write("[progress]50\n[drop]\n[note]h\u00e9llo\n[partial]x")
wait("go2")
write("y\n[done]yes")
"""

PHASE1 = b"[phase]1\n[progress]10\n[drop]me\n"
PHASE2 = "[progress]50\n[drop]\n[note]h\u00e9llo\n[partial]x".encode()
PHASE3 = b"y\n[done]yes"


def feedback_offset(db: Path, taskid: str) -> int | None:
    """Where the task's launcher has stored that it read to (None: nothing stored yet)."""
    rows = sql(db, 'SELECT "offset" FROM feedbacks WHERE id = ?', (int(taskid),))
    return rows[0][0] if rows else None


def test_feedback_of_a_running_then_finished_task(tw, launches, tmp_path):
    feeddir = tmp_path / "feed"
    feeddir.mkdir()
    gate = tmp_path / "gate"
    gate.mkdir()
    p = launches.start(
        "--name", "fb", "--feedpath", str(feeddir), "--", sys.executable, "-c", FEEDBACK_TASK, str(gate)
    )
    (taskid,) = launches.running("fb")
    assert tw.tasks()[taskid]["feedback"] is True
    feedfile = feeddir / f"feedback_{taskid}.log"
    wait_for(lambda: feedfile.exists() and feedfile.read_bytes() == PHASE1, what="phase 1 feedback")

    fb = tw.json("control", "--feedback", taskid)
    assert fb == {"phase": "1", "progress": "10", "drop": "me"}
    # the launcher stores where it read to; a reader reads on from there, and writes nothing
    wait_for(lambda: feedback_offset(tw.db, taskid) == len(PHASE1), what="the launcher's place")
    assert tw.json("control", "--feedback", taskid) == fb  # nothing new: same answer, same place
    assert feedback_offset(tw.db, taskid) == len(PHASE1)

    (gate / "go1").touch()
    wait_for(lambda: feedfile.read_bytes() == PHASE1 + PHASE2, what="phase 2 feedback")
    fb = tw.json("control", "--feedback", taskid)
    # the incomplete last line "[partial]x" is not read while the task runs
    assert fb == {"phase": "1", "progress": "50", "note": "h\u00e9llo"}
    complete = PHASE2[: PHASE2.rindex(b"\n") + 1]
    wait_for(lambda: feedback_offset(tw.db, taskid) == len(PHASE1) + len(complete), what="its place")

    (gate / "go2").touch()
    assert p.wait(timeout=15) == 0
    final = {"phase": "1", "progress": "50", "note": "h\u00e9llo", "partial": "xy", "done": "yes"}
    assert tw.json("control", "--feedback", taskid) == final
    entry = tw.history_of(taskid)
    assert entry["feedback"] == final
    assert sql(tw.db, "SELECT * FROM feedbacks WHERE id = ?", (int(taskid),)) == []
    assert not feedfile.exists()


def test_feedback_rereads_a_replaced_file(tw, launches, tmp_path):
    feeddir = tmp_path / "feed"
    feeddir.mkdir()
    gate = tmp_path / "gate"
    gate.mkdir()
    launches.start(
        "--name", "fb2", "--feedpath", str(feeddir), "--", sys.executable, "-c", FEEDBACK_TASK, str(gate)
    )
    (taskid,) = launches.running("fb2")
    feedfile = feeddir / f"feedback_{taskid}.log"
    wait_for(lambda: feedfile.exists() and feedfile.read_bytes() == PHASE1, what="phase 1 feedback")
    assert tw.json("control", "--feedback", taskid)["progress"] == "10"
    # truncate and rewrite shorter: read again from the start
    feedfile.write_bytes(b"[k]v\n")
    assert tw.json("control", "--feedback", taskid) == {"k": "v"}
    wait_for(lambda: feedback_offset(tw.db, taskid) == len(b"[k]v\n"), what="the launcher's new place")
    tw.run("control", "--kill", taskid, check=True)


def test_feedback_of_a_task_without_feedback_file(tw, launches):
    launches.start("--name", "quiet", "--", "sleep", "30")
    (taskid,) = launches.running("quiet")
    assert tw.json("control", "--feedback", taskid) == {}
    tw.run("control", "--kill", taskid, check=True)


# -- the current folder -------------------------------------------------------------------------
def test_control_writes_nothing_in_the_current_folder(tw, workdir, env):
    def run(*args: str) -> subprocess.CompletedProcess:
        return tw.run("control", *args, cwd=workdir)

    assert run("--reserve", "--name", "a").returncode == 0
    for args in (
        ("--list",),
        ("--list", "--json"),
        ("--update",),
        ("--history",),
        ("--history", "--json"),
        ("--feedback", "1"),
        ("--debug", "--list"),
        ("--kill", "1"),
        ("--kill", "77"),
        ("--killall", "zz"),
        ("--clear",),
        ("--reserve", "--ttl", "0.1"),
        ("--initialize",),
        ("--bogus",),
    ):
        run(*args)
    subprocess.run([*TW, "control", "--list"], env=env, cwd=workdir, capture_output=True, check=True)
    tw.run("launch", "--", "true", cwd=workdir, check=True)
    assert list(workdir.iterdir()) == []
