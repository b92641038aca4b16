"""control --wait ID [--timeout S]: block until the task ends, exit with its status (issue 5, part 2)."""

from __future__ import annotations

import os
import signal

from conftest import wait_for
from support import kill_own_processes, one_line_error, reaper  # noqa: F401  (reaper: an autouse fixture)


def detached(tw, *cmd: str) -> str:
    return tw.run("launch", "--detach", "--", *cmd, check=True).stdout.strip()


def test_wait_exits_with_the_tasks_own_status(tw, tmp_path):
    go = tmp_path / "go"
    taskid = detached(tw, "sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.05; done; exit 7')
    waiter = tw.popen("control", "--wait", taskid)
    wait_for(lambda: taskid in tw.tasks(), 10, "the task to run")
    assert waiter.poll() is None  # still waiting: the task has not ended
    go.touch()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 7, err
    assert out == ""


def test_a_finished_task_answers_at_once_from_history(tw):
    assert tw.run("launch", "--", "sh", "-c", "exit 3").returncode == 3
    proc = tw.run("control", "--wait", "1")
    assert proc.returncode == 3


def test_wait_gives_up_with_124_and_leaves_the_task_running(tw):
    taskid = detached(tw, "sleep", "300")
    proc = tw.run("control", "--wait", taskid, "--timeout", "0.2")
    assert proc.returncode == 124
    assert "still running" in one_line_error(proc)
    assert taskid in tw.tasks()


def test_wait_for_an_unknown_task_is_4(tw):
    proc = tw.run("control", "--wait", "42")
    assert proc.returncode == 4
    assert "no task 42" in one_line_error(proc)


def test_wait_on_a_reservation_follows_it_through_its_launch(tw):
    taskid = tw.run("control", "--reserve", check=True).stdout.strip()
    waiter = tw.popen("control", "--wait", taskid)
    assert tw.run("launch", "--taskid", taskid, "--", "sh", "-c", "exit 5").returncode == 5
    waiter.communicate(timeout=30)
    assert waiter.returncode == 5


def test_a_task_whose_launcher_died_ends_the_wait_with_an_error(tw):
    launcher = tw.popen("launch", "--", "sleep", "300")
    taskid = wait_for(lambda: next(iter(tw.tasks()), None), 10, "the task to run")
    waiter = tw.popen("control", "--wait", taskid)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 1
    assert "launcher lost" in err and len(err.splitlines()) == 1


def test_timeout_goes_with_wait_only(tw):
    assert tw.run("control", "--list", "--timeout", "1").returncode == 2
