"""The hosts view on PostgreSQL: two "hosts" (pid and UTS namespaces of their own, as in
tests/test_many_hosts.py, whose helpers these are) running tasks on one database; the API
lists both with their tasks, and the one killed whole with its ``host lost`` end, found by
the server itself once its lease ran out; the page shows both."""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import expect

from conftest import wait_for
from test_many_hosts import hosts, running, tw  # noqa: F401  (fixtures: hosts on PostgreSQL)

from .conftest import screenshot

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="namespaces as hosts need root and unshare",
    ),
    pytest.mark.timeout(180),  # Python launchers starting in namespaces: slow on a loaded machine
]
LIVE = 30_000  # ms


def hosts_answer(server) -> dict:
    answer = server.get("/api/v1/hosts")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_hosts_lists_each_hosts_tasks_and_a_host_lost_end(tw, hosts, serve):  # noqa: F811
    from taskwatcher.process import host_name

    a, b = hosts("hosta"), hosts("hostb")
    assert a.launch("--name", "done-a", "true").wait(60) == 0
    a.launch("--name", "build-a", "sleep", "300")
    doomed = b.launch("--name", "build-b", "--lease", "1", "sleep", "300")
    ida, idb = running(tw, "build-a")[0], running(tw, "build-b")[0]
    server = serve()
    got = hosts_answer(server)
    assert got["shared"] is True and got["this"] == host_name()
    assert list(got["hosts"]) == [host_name(), "hosta", "hostb"]  # this server's host first
    on_a, on_b = got["hosts"]["hosta"], got["hosts"]["hostb"]
    assert [(t["taskid"], t["name"], t["status"]) for t in on_a["running"]] == [(ida, "build-a", "RUNNING")]
    assert [t["taskid"] for t in on_b["running"]] == [idb]
    assert on_a["heartbeat"] is not None and on_b["heartbeat"] is not None
    assert (on_a["ended"], on_a["lost"]) == (1, 0)
    assert (on_a["recent"][0]["taskname"], on_a["recent"][0]["exitcode"]) == ("done-a", 0)
    assert got["hosts"][host_name()]["running"] == []
    # hostb dies whole: nothing renews its lease, and the server (no command runs meanwhile)
    # archives its task as host lost once the lease has run out, by the database's clock.
    b.kill_whole(doomed)
    on_b = wait_for(lambda: (h := hosts_answer(server)["hosts"]["hostb"])["lost"] and h, 60, "hostb lost")
    assert on_b["running"] == [] and on_b["ended"] == 1
    assert (on_b["recent"][0]["taskid"], on_b["recent"][0]["termerror"]) == (int(idb), "host lost")
    assert [t["taskid"] for t in hosts_answer(server)["hosts"]["hosta"]["running"]] == [ida]
    refused = server.get("/api/v1/hosts?since=yesterdayish")
    assert refused.status_code == 400 and set(refused.json()) == {"error"}


def test_the_hosts_page_shows_both_hosts_live(tw, hosts, serve, page):  # noqa: F811
    a, b = hosts("hosta"), hosts("hostb")
    a.launch("--name", "<b>build-a</b>", "sleep", "300")
    server = serve()
    page.goto(server.url + "/hosts")
    card = lambda name: page.locator(f'article.card.host[data-host="{name}"]')  # noqa: E731
    expect(card("hosta")).to_contain_text("<b>build-a</b>", timeout=LIVE)  # as text, never markup
    expect(card("hosta").locator("header > .status")).to_have_text("ACTIVE")
    b.launch("--name", "build-b", "sleep", "300")  # a new host appears without a reload
    expect(card("hostb")).to_contain_text("build-b", timeout=LIVE)
    expect(card("hostb")).to_contain_text("1 running")
    expect(page.locator("nav a", has_text="Hosts")).to_have_attribute("href", "/hosts")
    screenshot(page, "hosts")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "hosts-phone")


def test_an_idle_server_with_another_hosts_task_sleeps_until_its_lease_could_run_out(tw, hosts, serve):  # noqa: F811
    from .test_quiet import quiet_for

    far = hosts("hosta")
    far.launch("--name", "far", "--lease", "60", "sleep", "300")  # renewed every 10 s
    taskid = running(tw, "far")[0]
    server = serve()
    wait_for(lambda: taskid in server.get("/api/v1/tasks").json(), 30, "the task listed")
    server.http.close()  # no keep-alive connection left (uvicorn would time it out: a wake-up)
    # It used to look every 5 s for a task of another host, and to read every row at each of
    # its renewals: 12 s without one wake-up spans both (the first lease ends ~50 s ahead).
    wait_for(lambda: quiet_for(server.proc.pid, 12.0), 60, "12 s without a wake-up of the server")
