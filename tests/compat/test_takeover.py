"""A database made and used by the real taskwatcher 1.7 (a task finished, one running under
1.7's launcher, one reserved) taken over by ours mid-flight: ours reads it as 2.x rows
while 1.7's launcher goes on writing, and 1.7 still reads it afterwards."""

from __future__ import annotations

import json
import subprocess

from compat.sides import Side
from conftest import TW


def reserve(side: Side, name: str) -> int:
    proc = side.run("control", "task", "--reserve", "--taskname", name)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[1])  # "Taskid N has been reserved"


def tasks_json(side: Side) -> dict:
    proc = side.run("control", "task", "--list", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def history_json(side: Side) -> dict:
    proc = side.run("control", "history", "--list")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_1_7_database_taken_over_mid_flight_and_still_read_by_1_7(theirs, ours, testprog, tmp_path):
    ours.cwd = theirs.cwd  # one database, sqlite.db, 1.7's default: the site's folder
    assert theirs.run("control", "database", "--initialize").returncode == 0
    done, running, reserved = (reserve(theirs, name) for name in ("done", "running", "reserved"))
    feedpath = tmp_path / "run"
    feedpath.mkdir()
    go = tmp_path / "go"
    script = tmp_path / "task.sh"  # reports, then sleeps until the test lets it go
    script.write_text(f"echo '[progress]50' > {feedpath}/feedback_{running}.log\n"
                      f"while [ ! -e {go} ]; do sleep 0.05; done\n")  # fmt: skip
    finished = theirs.popen("launch", "--db", "sqlite.db", "--taskid", str(done), "--", "false")
    # 1.7's launcher on a task that reports (--feedback in its command): it watches the
    # file with 1.7's default timeout (30 s) and refreshes the row's lastupdate every 3 s.
    launcher = theirs.popen(
        "launch", "--db", "sqlite.db", "--taskid", str(running), "--feedpath", str(feedpath), "--",
        "sh", str(script), "--feedback", f"feedback_{running}.log",
    )  # fmt: skip
    assert finished.wait(timeout=30) == 0  # 1.7's exit status, whatever the task did
    assert tasks_json(theirs)[str(running)]["status"] == "RUNNING"

    # -- ours takes the database over: upgraded in place, read as 2.x rows -------------------
    mine = tasks_json(ours)
    assert mine[str(running)]["status"] == "RUNNING"  # its heartbeat is 1.7's lastupdate: not STALLED
    assert mine[str(running)]["feedback"] == 1
    assert mine[str(reserved)]["status"] == "RESERVED"
    assert mine[str(reserved)]["expiretime"] is not None  # a 1.x reservation expires like any other
    (entry,) = history_json(ours).values()
    assert (entry["termsignal"], entry["termerror"], entry["feedback"], entry["exitcode"]) == ("", "", {}, 1)
    listed = subprocess.run(
        [*TW, "control", "--db", str(ours.cwd / "sqlite.db"), "--list", "--json"],
        env=ours.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(listed.stdout)[str(running)]["status"] == "RUNNING"
    # 1.7 still reads its task's timeout as it wrote it: a whole number (not 30.0)
    assert json.dumps(tasks_json(theirs)[str(running)]["timeout"]) == "30"
    # ours launches a reservation 1.7 made
    (tmp_path / "exit3.sh").write_text("exit 3\n")  # (1.7's grammar splits "sh -c 'exit 3'" on spaces)
    launched = ours.run("launch", "--db", "sqlite.db", "--taskid", str(reserved), "--", "sh", "../exit3.sh")
    assert launched.returncode == 3, launched.stderr

    # -- 1.7 goes on: its launcher archives its task, its control reserves and reads ---------
    go.touch()
    assert launcher.wait(timeout=30) == 0, launcher.stderr.read()
    entry = list(history_json(ours).values())[-1]
    assert entry["taskid"] == running
    assert (entry["termsignal"], entry["termerror"], entry["feedback"], entry["exitcode"]) == ("", "", {}, 0)
    later = reserve(theirs, "later")
    assert later > max(done, running, reserved)  # ids are no longer reused, even by 1.7
    assert set(tasks_json(theirs)) == {str(later)}
    made_by_1_7 = tasks_json(ours)[str(later)]  # a reservation with no expiry time, as 1.7 writes it
    assert made_by_1_7["expiretime"] == made_by_1_7["reservetime"] + 60
    history = history_json(theirs)
    assert [e["taskid"] for e in history.values()] == [done, reserved, running]
    assert [e["termerror"] for e in history.values()] == ["", "exit code 3", ""]
    # feedback is text to 1.7, as its "to be implemented" was: 2.x's JSON object as text
    assert [json.loads(e["feedback"]) for e in history.values()] == [{}, {}, {}]
    assert theirs.run("control", "history", "--list", "--human").returncode == 0
    assert theirs.run("control", "task", "--list").returncode == 0
