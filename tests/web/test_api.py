"""The HTTP API against a real server: the CLI's JSON byte for byte, JSON errors, the log by
offset, and the event stream (a change as an event, Last-Event-ID, the keep-alive)."""

from __future__ import annotations

import json
import threading
import time

import httpx

from conftest import wait_for


def test_tasks_show_feedback_and_history_are_the_clis_json_byte_for_byte(tw, serve, tasks):
    taskid = tasks.start("first")
    tasks.feed(taskid, "[progress]40", "[phase]build")
    wait_for(
        lambda: tw.json("control", "--feedback", str(taskid)).get("phase") == "build", 10, "the feedback"
    )
    reserved = int(tw.run("control", "--reserve", "--name", "later", check=True).stdout)
    assert tw.run("control", "--kill", str(taskid), check=True)
    server = serve()
    cli = lambda *args: tw.run("control", *args, check=True).stdout.encode()  # noqa: E731
    # A reserved task's entry has no timer: the list is the same bytes as the CLI's.
    assert server.get("/api/v1/tasks").content == cli("--list", "--json")
    assert str(reserved) in server.get("/api/v1/tasks").json()
    for path, args in [
        (f"/api/v1/tasks/{taskid}", ("--show", str(taskid), "--json")),
        (f"/api/v1/tasks/{taskid}/feedback", ("--feedback", str(taskid))),
        ("/api/v1/history", ("--history", "--json")),
        ("/api/v1/history?name=first&last=1", ("--history", "--json", "--name", "first", "--last", "1")),
        ("/api/v1/history?name=other", ("--history", "--json", "--name", "other")),
    ]:
        response = server.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.content == cli(*args), path
    assert server.get(f"/api/v1/tasks/{taskid}/feedback").json() == {"progress": "40", "phase": "build"}


def test_history_pages_with_before(tw, serve):
    for i in range(5):
        tw.run("launch", "--name", f"n{i}", "true", check=True)
    server = serve()
    first = server.get("/api/v1/history?last=2").json()
    assert [e["taskname"] for e in first.values()] == ["n3", "n4"]
    older = server.get(f"/api/v1/history?last=2&before={min(map(int, first))}").json()
    assert [e["taskname"] for e in older.values()] == ["n1", "n2"]
    since = server.get("/api/v1/history?since=1h").json()
    assert len(since) == 5


def test_errors_are_json_with_the_right_status(tw, serve):
    tw.run("launch", "--name", "done", "true", check=True)
    server = serve()
    for path, status in [
        ("/api/v1/tasks/abc", 400),
        ("/api/v1/tasks/0", 400),
        ("/api/v1/tasks/99999999999999999999999", 400),
        ("/api/v1/tasks/..%2F..%2Fetc%2Fpasswd/log", 404),  # no route: never a path
        ("/api/v1/tasks/%2E%2E/log", 400),
        ("/api/v1/tasks/42", 404),
        ("/api/v1/tasks/42/feedback", 404),
        ("/api/v1/tasks/42/log", 404),
        ("/api/v1/history?last=0", 400),
        ("/api/v1/history?last=x", 400),
        ("/api/v1/history?since=yesterdayish", 400),
        ("/api/v1/tasks/1/log?offset=-1", 400),
        ("/api/v1/nothing", 404),
        ("/static/../pyproject.toml", 404),
        ("/static/app.py", 404),
    ]:
        response = server.get(path)
        assert response.status_code == status, (path, response.text)
        assert set(response.json()) == {"error"}, path
    response = server.get("/api/v1/tasks/1/kill")  # a change is never a GET
    assert response.status_code == 405 and "error" in response.json()
    assert server.post("/api/v1/tasks/42/kill").status_code == 404


def test_the_log_is_read_from_an_offset_with_the_next_offset(tw, serve, tasks):
    taskid = tasks.start("talker")
    tasks.output(taskid, "one\ntwo\n")
    server = serve()

    def log_from(offset: int) -> tuple[bytes, int]:
        r = server.get(f"/api/v1/tasks/{taskid}/log?offset={offset}")
        assert r.status_code == 200, r.text
        return r.content, int(r.headers["x-next-offset"])

    _, after = wait_for(lambda: (got := log_from(0))[0] == b"one\ntwo\n" and got, 10, "the first lines")
    assert after == 8
    assert log_from(after) == (b"", 8)
    tasks.output(taskid, "three\n")
    assert wait_for(lambda: (got := log_from(after))[0] and got, 10, "the new line") == (b"three\n", 14)
    assert log_from(4) == (b"two\nthree\n", 14)
    assert log_from(100) == (b"", 14)  # beyond the end (a rotation): the end, to start again
    tw.run("control", "--kill", str(taskid), check=True)
    assert (
        server.get(f"/api/v1/tasks/{taskid}/log").content
        == tw.run("control", "--log", str(taskid), check=True).stdout.encode()
    )


class Events:
    """Reads an event stream in a thread: its events and comments, as they come."""

    def __init__(self, server, last_id: str | None = None) -> None:
        self.events: list[dict] = []
        self.comments: list[str] = []
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self.client = httpx.Client(
            base_url=server.url, headers={**server.http.headers, **headers}, timeout=None
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.stop = False
        self.thread.start()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/v1/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                event: dict = {}
                for line in r.iter_lines():
                    if self.stop:
                        return
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line == "":
                        if event:
                            self.events.append(event)
                        event = {}
                    else:
                        key, _, value = line.partition(": ")
                        event[key] = json.loads(value) if key == "data" else value
        except httpx.HTTPError:
            return

    def of(self, name: str, taskid: int | None = None) -> list[dict]:
        return [e for e in self.events if e.get("event") == name
                and (taskid is None or e["data"].get("taskid") == str(taskid))]  # fmt: skip

    def close(self) -> None:
        self.stop = True
        self.client.close()


def test_events_one_per_change_resumable_with_last_event_id_and_kept_alive(tw, serve, tasks):
    server = serve()
    first = Events(server)
    try:
        wait_for(lambda: first.of("reset"), 10, "the stream's start")
        taskid = int(tw.run("control", "--reserve", "--name", "watched", check=True).stdout)
        # A reservation is a store change: the server learns of it from the notification.
        seen = wait_for(lambda: first.of("task", taskid), 10, "the reservation's event")
        assert seen[0]["data"]["task"]["status"] == "RESERVED"
        assert seen[0]["data"]["task"]["name"] == "watched"
        last_id = first.events[-1]["id"]
        wait_for(lambda: first.comments.count(": keep-alive") >= 2, 10, "keep-alive comments")
    finally:
        first.close()
    # While nobody listens: one task ends, another starts. A reader resuming gets both, not
    # the whole state again.
    tw.run("control", "--kill", str(taskid), check=True)
    other = tasks.start("second")
    again = Events(server, last_id)
    try:
        wait_for(lambda: again.of("ended", taskid) and again.of("task", other), 10, "the changes missed")
        assert again.of("reset") == []
        assert all(e["data"].get("taskid") != str(taskid) for e in again.of("task"))
        tasks.feed(other, "[progress]55")
        got = wait_for(
            lambda: [
                e for e in again.of("task", other) if (e["data"]["latest"] or {}).get("progress") == "55"
            ],
            10,
            "the feedback's event",
        )
        assert got[0]["data"]["task"]["status"] == "RUNNING"
    finally:
        again.close()
    stranger = Events(server, "123.456")  # another run's id: start again from the whole state
    try:
        wait_for(lambda: stranger.of("reset") and stranger.of("task", other), 10, "a reset")
    finally:
        stranger.close()


def test_reads_do_not_reconcile_per_request(tw, monkeypatch):
    """In-process: a hundred reads reconcile about once per RECONCILE_EVERY seconds, not each."""
    import asyncio
    import concurrent.futures

    from taskwatcher import reconcile
    from taskwatcher.api import TaskWatcher
    from taskwatcher.web.app import create_app
    from taskwatcher.web.server import RECONCILE_EVERY

    tw.run("control", "--reserve", "--name", "x", check=True)
    calls = []
    real = reconcile._reconcile  # what every reconciliation runs (a listing's too)
    monkeypatch.setattr(reconcile, "_reconcile", lambda store: (calls.append(1), real(store))[1])
    app = create_app(TaskWatcher(tw.db, reconcile_every=RECONCILE_EVERY))

    async def reads() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            start = time.monotonic()
            for _ in range(100):
                assert (await client.get("/api/v1/tasks")).status_code == 200
            return time.monotonic() - start

    # In a thread of its own: a browser test's Playwright (its sync API) may have left an event
    # loop running in this one, where asyncio.run() refuses to start another.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        took = thread.submit(asyncio.run, reads()).result()
    assert 1 <= len(calls) <= 2 + took / RECONCILE_EVERY, calls


def test_the_other_commands_never_import_the_web(tw):
    """Starlette and uvicorn are loaded by serve alone: the CLI's start-up does not move."""
    import subprocess

    from conftest import TW

    tw.run("control", "--reserve", check=True)
    for args in (["control", "--db", str(tw.db), "--list", "--json"], ["control", "--help"], ["--help"]):
        proc = subprocess.run([TW[0], "-X", "importtime", *TW[1:], *args], env=tw.env, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
        assert "taskwatcher.cli" in imported
        assert not [m for m in imported if m.split(".")[0] in ("starlette", "uvicorn", "httpx", "anyio")
                    or m.startswith("taskwatcher.web")], args  # fmt: skip


def test_the_tasks_answer_follows_every_change_at_once(tw, serve, tasks):
    """GET tasks is kept 0.1 s at most, and never across a change: one made elsewhere shows
    as soon as the store notifies it, one made through the server on the next request."""
    taskid = tasks.start("cached")
    server = serve()
    assert str(taskid) in server.get("/api/v1/tasks").json()
    other = int(tw.run("control", "--reserve", "--name", "new", check=True).stdout)
    wait_for(lambda: str(other) in server.get("/api/v1/tasks").json(), 5, "the reservation in GET tasks")
    assert server.post(f"/api/v1/tasks/{taskid}/kill").status_code == 200
    assert str(taskid) not in server.get("/api/v1/tasks").json()


def test_hosts_on_sqlite_is_this_host_with_its_tasks_and_ends(tw, serve, tasks):
    from taskwatcher.process import host_name

    tw.run("launch", "--name", "done", "true", check=True)
    taskid = tasks.start("busy")
    tw.run("control", "--reserve", "--name", "later", check=True)  # no host yet: counted nowhere
    server = serve()
    got = server.get("/api/v1/hosts").json()
    assert (got["this"], got["shared"], list(got["hosts"])) == (host_name(), False, [host_name()])
    here = got["hosts"][host_name()]
    assert [(t["taskid"], t["name"]) for t in here["running"]] == [(str(taskid), "busy")]
    assert here["waiting"] == [] and here["heartbeat"] is not None
    assert (here["ended"], here["lost"], here["recent"][0]["taskname"]) == (1, 0, "done")
    assert server.get("/api/v1/hosts?since=2099-01-01").json()["hosts"][host_name()]["ended"] == 0
    assert server.get("/hosts").status_code == 200
