"""A server with nothing to do does nothing: no thread wakes while nothing changes, yet a
launcher killed meanwhile is seen at once (its pidfd, not a periodic look)."""

from __future__ import annotations

import os
import signal
import time
from email.utils import parsedate_to_datetime

import httpx

from conftest import wait_for
from support import wakeups

from .test_api import Events


def quiet_for(pid: int, seconds: float) -> bool:
    before = wakeups(pid)
    time.sleep(seconds)  # the window measured, not a synchronisation
    return wakeups(pid) == before


def launcher_of(tw, taskid: int) -> int:
    from taskwatcher.store import open_store

    with open_store(str(tw.db)) as store:
        return store.task(taskid).launcherpid


def test_an_idle_server_with_running_tasks_never_wakes(tw, serve, tasks):
    running = [tasks.start(f"quiet{i}") for i in range(2)]
    tw.run("control", "--reserve", "--name", "later", "--ttl", "1h", check=True)
    server = serve()
    listed = wait_for(
        lambda: (t := server.get("/api/v1/tasks").json()) and all(t[str(i)]["pid"] for i in running) and t,
        15,
        "the tasks running",
    )
    assert len(listed) == 3
    server.http.close()  # no keep-alive connection left (uvicorn would time it out: a wake-up)
    # uvicorn's own loop ticks 10 times a second, and the event thread used to look every 5 s
    # while tasks ran: a whole second without one wake-up of any thread is what is asked.
    wait_for(lambda: quiet_for(server.proc.pid, 1.0), 20, "a second without a wake-up of the server")
    date = httpx.get(server.url + "/api/v1/healthz", headers={"Connection": "close"}).headers["date"]
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5  # set without uvicorn's tick


def test_a_launcher_killed_while_a_client_listens_is_an_end_on_the_stream_at_once(tw, serve, tasks):
    taskid = tasks.start("victim")
    server = serve()
    stream = Events(server)
    try:
        wait_for(lambda: [e for e in stream.of("task", taskid) if e["data"]["task"]["pid"]], 15, "the task")
        launcher = launcher_of(tw, taskid)
        os.kill(launcher, signal.SIGKILL)
        killed = time.monotonic()
        # The event thread looked just now (the task's event): without the launcher's pidfd the
        # next look, and the reconciliation that finds the launcher lost, was 5 s away.
        wait_for(lambda: stream.of("ended", taskid), 4.0, "the end of the task on the stream")
        print(f"launcher killed -> its end on the stream: {(time.monotonic() - killed) * 1000:.0f} ms")
    finally:
        stream.close()
    entry = tw.history_of(taskid)
    assert entry["termerror"] == "launcher lost"


def test_a_reservation_that_expires_ends_on_the_stream_at_its_expiry(tw, serve):
    server = serve()
    stream = Events(server)
    try:
        wait_for(lambda: stream.of("reset"), 15, "the stream's start")
        taskid = int(tw.run("control", "--reserve", "--name", "brief", "--ttl", "1", check=True).stdout)
        wait_for(lambda: stream.of("task", taskid), 10, "the reservation")
        # No command runs meanwhile: the server wakes at the expiry, reconciles, and says so.
        wait_for(lambda: stream.of("ended", taskid), 10, "the expired reservation's end")
    finally:
        stream.close()
    assert tw.history_of(taskid) is None  # an expired reservation leaves no history


def test_a_retry_whose_sleeping_launcher_died_starts_at_the_end_of_its_delay(tw, serve):
    import contextlib

    import psutil

    from taskwatcher.store import open_store

    server = serve()
    stream = Events(server)
    try:
        wait_for(lambda: stream.of("reset"), 15, "the stream's start")
        args = ("--detach", "--name", "flaky", "--retries", "1", "--retry-delay", "8", "sh", "-c", "exit 1")
        taskid = int(tw.run("launch", *args, check=True).stdout)

        def row():
            with open_store(str(tw.db)) as store:
                return store.task(taskid)

        killed = []

        def no_launcher_left() -> bool:  # every `launch --queued ID`: the retry's sleeper (and the
            found = []  # first attempt's launcher, should it still be on its way out)
            for p in psutil.process_iter(["cmdline"]):
                if "--queued" in (p.info["cmdline"] or []) and p.info["cmdline"][-1] == str(taskid):
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                        found.append(p.pid)
            killed.extend(found)
            return not found

        wait_for(lambda: (r := row()) and r.status == "QUEUED" and r.attempt == 2, 30, "the retry in line")
        wait_for(lambda: no_launcher_left() and killed, 15, "the retry's sleeper killed, no launcher left")
        row = row()
        # Killed in its delay: only the server's wake-up at the delay's end can start it now.
        assert row.status == "QUEUED" and row.attempt == 2 and row.notbefore > time.time(), row
        wait_for(lambda: stream.of("ended", taskid), 20, "the second attempt's end")
    finally:
        stream.close()
    attempts = [e["attempt"] for e in tw.history().values() if e["taskid"] == taskid]
    assert attempts == [1, 2]


def test_a_stopping_server_ends_its_event_streams_instead_of_cutting_them(tw, serve):
    import threading

    server = serve()
    seen: dict = {}

    def read() -> None:
        try:
            with httpx.stream("GET", server.url + "/api/v1/events", timeout=None) as r:
                for line in r.iter_lines():
                    seen.setdefault("first", line)
            seen["end"] = "clean"  # the response finished: the chunked body's last chunk came
        except httpx.HTTPError as e:  # cut when the shutdown's time limit ran out
            seen["end"] = repr(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: "first" in seen, 15, "the stream's first line")
    server.proc.terminate()
    reader.join(15)
    assert seen.get("end") == "clean"
    assert server.proc.wait(15) in (0, -15)
