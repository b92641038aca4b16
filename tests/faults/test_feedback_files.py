"""A task's feedback file, read for real through the CLI while hostile things happen to it: a file
rewritten in place while polled, a FIFO or a symlink at its path, two databases sharing one
--feedpath, a nested launch, the umask (SPEC, "Feedback file format" and Part 2, "Feedback
written in place")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import TW, Taskwatcher, wait_for
from support import ended, kill_own_processes, one_line_error, reaper  # noqa: F401  (reaper: an autouse fixture)
from taskwatcher import TaskWatcher, feedstate
from taskwatcher.feedback import FeedbackName, FeedbackState
from taskwatcher.store import Store

DEADLINE = 15  # seconds: a command that blocks on the feedback file would never end


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    folder = tmp_path / "feeds"
    folder.mkdir()
    return folder


def detach(tw: Taskwatcher, feeds: Path, script: str, *args: str) -> str:
    proc = tw.run("launch", "--detach", "--feedpath", str(feeds), *args, "--", "sh", "-c", script, str(feeds))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# -- a file rewritten in place ------------------------------------------------------------------
def test_a_file_rewritten_in_place_reads_right_however_often_it_is_polled(tw, feeds):
    """`echo "[progress]$n" > "$F"`, the same size (1..9) then larger (10, 11), each value polled
    before the next is written; then one last rewrite of the same size that nobody polls. A reader
    that only looks at the inode and size would stay at the first value of each size, and
    history would keep 11: it keeps 99."""
    script = (
        'for n in 1 2 3 4 5 6 7 8 9 10 11; do echo "[progress]$n" > "$TASKWATCHER_FEEDBACK";'
        ' until [ -e "$0/go.$n" ]; do sleep 0.01; done; done; echo "[progress]99" > "$TASKWATCHER_FEEDBACK"'
    )
    taskid = detach(tw, feeds, script)
    api = TaskWatcher(tw.db)
    for n in range(1, 12):
        want = {"progress": str(n)}
        wait_for(lambda want=want: api.feedback(int(taskid)) == want, 10, f"--feedback to say {want}")
        if n in (5, 10):  # the CLI's --feedback, and --list's progress, say the same
            assert tw.json("control", "--feedback", taskid) == want
            (task,) = api.tasks(feedback=True)
            assert task.progress == n
        (feeds / f"go.{n}").touch()
    assert ended(tw, taskid)["feedback"] == {"progress": "99"}


def test_a_file_rewritten_while_readers_hammer_it_ends_with_its_last_content(tw, feeds):
    """Three readers poll --feedback without pause (each saving its place) while the task
    rewrites its file 300 times; the final feedback in history is the file's last content."""
    script = (
        'i=100; while [ $i -lt 400 ]; do echo "[progress]$i" > "$TASKWATCHER_FEEDBACK"; i=$((i+1)); done;'
        ' echo "[progress]end" > "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done'
    )
    taskid = int(detach(tw, feeds, script))
    stop = threading.Event()
    seen: list[dict] = []

    def poll() -> None:
        with Store(tw.db) as store:
            while not stop.is_set():
                seen.append(feedstate.task_feedback(store, taskid))

    readers = [threading.Thread(target=poll) for _ in range(3)]
    for r in readers:
        r.start()
    try:
        wait_for(lambda: seen and seen[-1] == {"progress": "end"}, 20, "the readers to see the last value")
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert all(set(s) <= {"progress"} and len(s["progress"]) == 3 for s in seen if s), "a mixed read"
    (feeds / "go").touch()
    assert ended(tw, taskid)["feedback"] == {"progress": "end"}


STORED_STEPS = (
    ('echo "[a]1" > "$F"', {"a": "1"}),
    ('printf "[a]2\\n[b]3\\n" > "$F"', {"a": "2", "b": "3"}),  # rewritten in place, longer
    ('echo "[c]4" >> "$F"', {"a": "2", "b": "3", "c": "4"}),  # appended
    ('echo "[d]5" > "$0/new"; mv "$0/new" "$F"', {"d": "5"}),  # replaced by another file
)


@pytest.mark.parametrize("watch", ["inotify", "fallback"])
def test_the_launcher_stores_the_feedback_as_the_file_changes(tw, feeds, watch):
    """No timeout, so no deadline wakes the launcher: only its watch on the file (inotify,
    or without it a look every second) gets each change into the store, where readers
    on any host read it without writing."""
    steps = "".join(f'{cmd}; until [ -e "$0/go.{i}" ]; do sleep 0.01; done; ' for i, (cmd, _) in
                    enumerate(STORED_STEPS))  # fmt: skip
    env = {"TASKWATCHER_WITHOUT": "inotify"} if watch == "fallback" else {}
    proc = tw.run("launch", "--detach", "--feedpath", str(feeds), "sh", "-c",
                  'F="$TASKWATCHER_FEEDBACK"; ' + steps, str(feeds), env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    taskid = int(proc.stdout)
    for i, (_, want) in enumerate(STORED_STEPS):
        wait_stored(tw, str(taskid), want)
        (feeds / f"go.{i}").touch()
    assert ended(tw, str(taskid))["feedback"] == STORED_STEPS[-1][1]


# -- a FIFO at the feedback path -------------------------------------------------------------------
FIFO_TASK = (
    'echo "[a]1" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done;'
    ' rm "$TASKWATCHER_FEEDBACK"; mkfifo "$TASKWATCHER_FEEDBACK"; touch "$0/fifo"; sleep 60'
)


def wait_stored(tw: Taskwatcher, taskid: str, want: dict[str, str]) -> None:
    """Wait until the task's launcher has stored ``want`` as its latest feedback (a reader on
    this host would see it at once, read on from the file: the launcher may not have yet)."""
    with Store(tw.db, create=False) as store:
        wait_for(lambda: (store.feedback_state(int(taskid)) or FeedbackState()).data == want,
                 10, f"the launcher to store {want}")  # fmt: skip


def fifo_task(tw: Taskwatcher, feeds: Path) -> str:
    taskid = detach(tw, feeds, FIFO_TASK)
    wait_stored(tw, taskid, {"a": "1"})
    (feeds / "go").touch()
    wait_for(lambda: (feeds / "fifo").exists(), 10, "the task to make its FIFO")
    assert stat.S_ISFIFO((feeds / f"feedback_{taskid}.log").lstat().st_mode)
    return taskid


@pytest.mark.parametrize("end", ["kill", "lost launcher"])
def test_a_fifo_made_by_the_task_never_wedges_a_command(tw, feeds, end):
    """A blocking open() of a FIFO with no writer never returns: inside the write transaction
    it locked the whole database. Every command completes within the deadline; the FIFO counts
    as no new feedback, said in one line under --debug; history keeps what was last read."""
    taskid = fifo_task(tw, feeds)
    assert tw.run("control", "--feedback", taskid, timeout=DEADLINE, check=True).stdout == '{"a": "1"}\n'
    debug = tw.run("control", "--debug", "--feedback", taskid, timeout=DEADLINE, check=True)
    said = [line for line in debug.stderr.splitlines() if "FIFO" in line]
    assert len(said) == 1 and "not a regular file (a FIFO)" in said[0], debug.stderr
    assert tw.run("control", "--list", timeout=DEADLINE, check=True).returncode == 0
    assert (
        tw.run("control", "--reserve", timeout=DEADLINE, check=True).returncode == 0
    )  # the write lock is free
    if end == "kill":
        assert tw.run("control", "--kill", taskid, timeout=DEADLINE, check=True).returncode == 0
    else:
        (task,) = (t for tid, t in tw.tasks().items() if tid == taskid)
        launcher = Store(tw.db).task(int(taskid))["launcherpid"]
        assert task["pid"] != launcher
        os.kill(launcher, signal.SIGKILL)
        wait_for(lambda: tw.run("control", "--list", timeout=DEADLINE, check=True) and tw.history_of(taskid),
                 DEADLINE, "the lost task archived")  # fmt: skip
    entry = tw.history_of(taskid)
    assert entry["feedback"] == {"a": "1"}
    assert not (feeds / f"feedback_{taskid}.log").exists(), "the FIFO is left"
    assert sorted(p.name for p in feeds.iterdir()) == ["fifo", "go"]


# -- a symlink at the feedback path ------------------------------------------------------------------
@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("[password]hunter2\n")
    path.chmod(0o600)
    return path


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    def become_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    return subprocess.run(argv, preexec_fn=become_nobody, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the victim is root's task, the attacker nobody")
def test_a_symlink_planted_in_a_sticky_folder_is_never_written_through(tw, tmp_path, secret, request):
    """A sticky world-writable feedpath (/tmp): user nobody plants feedback_ID.log as a link to a
    root-only file, before the launch and again while the task runs, before its first write.
    The launcher removes the first link and makes the file itself before the command starts;
    nobody cannot replace root's file in a sticky folder; so root's task `>>` appends to its own
    file: the target is untouched and its content never reaches history."""
    sticky = Path(tempfile.mkdtemp(prefix="tw-sticky-"))  # in /tmp: pytest's folders are root's alone
    request.addfinalizer(lambda: shutil.rmtree(sticky, ignore_errors=True))
    sticky.chmod(0o1777)
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    link = sticky / f"feedback_{taskid}.log"
    assert as_nobody("ln", "-s", str(secret), str(link)).returncode == 0
    script = 'until [ -e "$0.go" ]; do sleep 0.01; done; echo "[a]1" >> "$TASKWATCHER_FEEDBACK"'
    proc = tw.popen("launch", "--taskid", taskid, "--feedpath", str(sticky), "--",
                    "sh", "-c", script, str(tmp_path))  # fmt: skip
    try:
        wait_for(lambda: link.exists() and not link.is_symlink(), 10, "the launcher's own file")
        again = as_nobody("ln", "-sf", str(secret), str(link))
        assert again.returncode != 0 and not link.is_symlink(), again.stderr  # the kernel refuses it
        Path(f"{tmp_path}.go").touch()
        assert proc.wait(timeout=DEADLINE) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()
    assert secret.read_text() == "[password]hunter2\n"
    assert tw.history_of(taskid)["feedback"] == {"a": "1"}
    assert not any(sticky.iterdir())


def test_a_symlink_swapped_in_during_the_run_is_never_read_nor_its_target_removed(tw, feeds, secret):
    taskid = detach(
        tw, feeds, 'echo "[a]1" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done'
    )
    fb = feeds / f"feedback_{taskid}.log"
    wait_stored(tw, taskid, {"a": "1"})
    fb.unlink()
    fb.symlink_to(secret)
    # never read through the link: the feedback last read stands
    assert tw.json("control", "--feedback", taskid) == {"a": "1"}
    debug = tw.run("control", "--debug", "--feedback", taskid, check=True)
    assert "symbolic link: not followed" in debug.stderr
    (feeds / "go").touch()
    assert ended(tw, taskid)["feedback"] == {"a": "1"}
    assert secret.read_text() == "[password]hunter2\n"
    assert not fb.is_symlink() and not fb.exists()
    assert "hunter2" not in json.dumps(tw.history())


# -- two databases sharing one --feedpath -------------------------------------------------------------
def other_database(tw: Taskwatcher, tmp_path: Path, name: str) -> Taskwatcher:
    return Taskwatcher(tmp_path / f"{name}.db", tw.env)


def test_a_second_database_never_takes_a_live_feedback_file_for_a_stale_one(tw, tmp_path, feeds):
    """Both databases hand out task 1. The second launch finds the name held by the first's live
    launcher: it refuses (125, one line) instead of deleting the file; the first task's feedback
    is intact to its end; afterwards the folder is empty."""
    wait_task = 'echo "[db]A" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done'
    taskid = detach(tw, feeds, wait_task)
    assert taskid == "1"
    fb = feeds / "feedback_1.log"
    wait_for(lambda: fb.read_text() == "[db]A\n", 10, "A's line")
    b = other_database(tw, tmp_path, "b")
    proc = b.run(
        "launch", "--feedpath", str(feeds), "--", "sh", "-c", 'echo "[db]B" >> "$TASKWATCHER_FEEDBACK"'
    )
    assert proc.returncode == 125
    assert "in use by a running task" in one_line_error(proc) and str(fb) in proc.stderr
    assert fb.read_text() == "[db]A\n"
    assert b.history_of(1)["exitcode"] == 125  # nothing ran; history says why
    c = other_database(tw, tmp_path, "c")  # its task 1 too, detached
    detached = c.run("launch", "--detach", "--feedpath", str(feeds), "--", "true", timeout=DEADLINE)
    assert detached.returncode == 125 and "in use by a running task" in one_line_error(detached)
    assert "Traceback" not in (tmp_path / "c-logs" / "task_1.log").read_text()
    (feeds / "go").touch()
    assert ended(tw, 1)["feedback"] == {"db": "A"}
    assert sorted(p.name for p in feeds.iterdir()) == ["go"]


def test_a_lost_task_of_one_database_leaves_the_others_live_file_alone(tw, tmp_path, feeds):
    """A's launcher is SIGKILLed: its file is stale (its name no longer held), so B's task 1 takes
    the name. When A's next command archives its lost task 1, the name is B's: A neither reads B's
    file into its history nor deletes it."""
    taskid = detach(tw, feeds, 'echo "[db]A" >> "$TASKWATCHER_FEEDBACK"; sleep 60')
    fb = feeds / "feedback_1.log"
    wait_stored(tw, taskid, {"db": "A"})
    os.kill(Store(tw.db).task(1)["launcherpid"], signal.SIGKILL)
    b = other_database(tw, tmp_path, "b")
    script = 'echo "[db]B" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done'
    b_id = detach(b, feeds, script)
    assert b_id == "1"
    wait_for(lambda: fb.exists() and fb.read_text() == "[db]B\n", 10, "B's line in its own new file")
    tw.run("control", "--list", check=True)  # A archives its lost task
    assert ended(tw, 1)["termerror"].startswith("launcher lost")
    assert tw.history_of(1)["feedback"] == {"db": "A"}  # what A last read, not B's
    assert fb.read_text() == "[db]B\n"
    (feeds / "go").touch()
    assert ended(b, 1)["feedback"] == {"db": "B"}
    assert sorted(p.name for p in feeds.iterdir()) == ["go"]


def test_a_lost_task_being_archived_by_one_command_is_left_to_it_by_another(tw, feeds):
    """Two commands archive one lost task at once: the one that holds the file's name reads it
    (outside any transaction); the other, finding the name held for this very task, leaves the
    task to it, rather than archiving it first with the feedback last read."""
    script = ('echo "[a]1" >> "$TASKWATCHER_FEEDBACK"; until [ -e "$0/go" ]; do sleep 0.01; done;'
              ' echo "[b]2" >> "$TASKWATCHER_FEEDBACK"; sleep 60')  # fmt: skip
    taskid = detach(tw, feeds, script)
    wait_for(lambda: tw.json("control", "--feedback", taskid) == {"a": "1"}, 10, "the first line read")
    (feeds / "go").touch()
    fb = feeds / f"feedback_{taskid}.log"
    wait_for(lambda: fb.read_text() == "[a]1\n[b]2\n", 10, "the second line written")
    with Store(tw.db) as store:
        os.kill(store.task(int(taskid))["launcherpid"], signal.SIGKILL)
        first = FeedbackName(str(fb))  # what the first command holds while it reads the file
        holder = feedstate.feedback_holder(store, int(taskid))
        # The name is free once the killed launcher is gone (the kill is not instant).
        wait_for(lambda: first.acquire(holder), 10, "the dead launcher's hold on the name to go")
    try:
        tw.run("control", "--list", timeout=DEADLINE, check=True)
        assert tw.history_of(taskid) is None, "archived by the second command, with a stale feedback"
    finally:
        first.release(remove_file=False)
    tw.run("control", "--list", timeout=DEADLINE, check=True)
    assert tw.history_of(taskid)["feedback"] == {"a": "1", "b": "2"}
    assert not fb.exists()


# -- small ones -------------------------------------------------------------------------------------
def test_a_nested_launch_without_feedpath_does_not_inherit_the_outer_feedback_file(tw, tmp_path, feeds):
    out = tmp_path / "inner.txt"
    inner = (f'echo "${{TASKWATCHER_FEEDBACK-unset}}" > {out};'
             ' echo "[inner]1" >> "${TASKWATCHER_FEEDBACK:-/dev/null}"')  # fmt: skip
    nested = " ".join([*TW, "launch", "--db", str(tw.db), "--", "sh", "-c", f"'{inner}'"])
    proc = tw.run("launch", "--feedpath", str(feeds), "--", "sh", "-c",
                  f'echo "[outer]1" >> "$TASKWATCHER_FEEDBACK"; {nested}')  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "unset\n"
    outer = next(e for e in tw.history().values() if e["feedback"])
    assert outer["feedback"] == {"outer": "1"}


def test_feedback_files_are_0644_at_most_under_umask_000(tw, tmp_path, feeds):
    """Decision: a feedback file is 0644 less the umask, like a log: never writable by others."""
    out = tmp_path / "mode"
    script = f'stat -c %a "$TASKWATCHER_FEEDBACK" > {out}; {sys.executable} -m taskwatcher feed a 1'
    launch = [*TW, "launch", "--db", str(tw.db), "--feedpath", str(feeds), "--", "sh", "-c", script]
    proc = subprocess.run(launch, env=tw.env, capture_output=True, text=True, timeout=30,
                          preexec_fn=lambda: os.umask(0))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "644\n"  # made by the launcher
    alone = tmp_path / "fb.log"
    env = {**tw.env, "TASKWATCHER_FEEDBACK": str(alone)}
    fed = subprocess.run([*TW, "feed", "a", "1"], env=env, capture_output=True, text=True, timeout=30,
                         preexec_fn=lambda: os.umask(0))  # fmt: skip
    assert fed.returncode == 0, fed.stderr
    assert stat.S_IMODE(alone.stat().st_mode) == 0o644  # made by `taskwatcher feed`
