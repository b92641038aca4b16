"""The pages in a real browser (the system's Chromium under Playwright): live progress, Kill,
a growing log, history's filters, payloads shown as text, the login. Screenshots are saved
under test-artifacts/web."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import screenshot

LIVE = 10_000  # ms: a change reaches the page well within this (it is what the page shows that counts)
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_VALUE = "</script><script>alert(1)</script>"
TOKEN = "browser-token-0123456789abcdef"


def card(page, taskid: int):
    return page.locator(f'article.card[data-taskid="{taskid}"]')


def test_progress_moves_on_the_dashboard_and_the_task_page_without_reload(tw, serve, tasks, page):
    tw.run("launch", "--name", "unit-tests", "true", check=True)  # some history, for the screenshot
    tw.run("launch", "--name", "lint", "sh", "-c", "exit 3")
    taskid = tasks.start("builder", "--info1", "nightly")
    tasks.feed(taskid, "[progress]10", "[phase]compiling")
    other = tasks.start("data-import", "--timeout", "1h")
    tasks.feed(other, "[progress]80", "[table]orders")
    tw.run("control", "--reserve", "--name", "deploy", check=True)
    server = serve()
    page.goto(server.url + "/")
    page.evaluate("window.notReloaded = true")
    bar = card(page, taskid).locator("progress")
    expect(bar).to_have_js_property("value", 10, timeout=LIVE)
    expect(card(page, taskid).locator(".fb")).to_have_text("phase=compiling")
    expect(card(page, taskid).locator(".status")).to_have_text("RUNNING")
    tasks.feed(taskid, "[progress]65", "[phase]linking")
    expect(bar).to_have_js_property("value", 65, timeout=LIVE)
    expect(card(page, taskid).locator(".pct")).to_have_text("65%")
    expect(card(page, taskid).locator(".fb")).to_have_text("phase=linking")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#recent tbody tr")).to_have_count(2)
    expect(card(page, other).locator("progress")).to_have_js_property("value", 80)
    screenshot(page, "dashboard")
    page.goto(f"{server.url}/tasks/{taskid}")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#progress")).to_have_js_property("value", 65, timeout=LIVE)
    tasks.feed(taskid, "[progress]90")
    expect(page.locator("#progress")).to_have_js_property("value", 90, timeout=LIVE)
    expect(page.locator("#feedback")).to_contain_text("linking")
    assert page.evaluate("window.notReloaded") is True
    page.set_viewport_size({"width": 390, "height": 800})  # a phone
    screenshot(page, "task-phone")


def test_kill_from_the_task_page_stops_the_task_and_the_page_shows_it(tw, serve, tasks, page):
    taskid = tasks.start("doomed")
    server = serve()
    page.goto(f"{server.url}/tasks/{taskid}")
    expect(page.locator("#status")).to_have_text("RUNNING", timeout=LIVE)
    page.locator("#kill").click()  # the confirmation is accepted (the page fixture)
    expect(page.locator("#status")).to_have_text("FINISHED", timeout=LIVE)
    expect(page.locator("#facts")).to_contain_text("killed by request")
    expect(page.locator("#kill")).to_be_hidden()
    assert tw.history_of(taskid)["termerror"] == "killed by request"


def test_kill_asks_first_and_does_nothing_when_refused(tw, serve, tasks, browser):
    taskid = tasks.start("spared")
    server = serve()
    context = browser.new_context()
    page = context.new_page()
    asked = []
    page.on("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/tasks/{taskid}")
    expect(page.locator("#status")).to_have_text("RUNNING", timeout=LIVE)
    page.locator("#kill").click()
    expect(page.locator("#kill")).to_be_enabled()
    assert asked == [f"Kill task {taskid} (spared)?"]
    context.close()
    assert tw.tasks()[str(taskid)]["status"] == "RUNNING"


def test_the_log_tail_grows_as_the_task_writes(tw, serve, tasks, page):
    taskid = tasks.start("talker")
    tasks.output(taskid, "first line\n")
    server = serve()
    page.goto(f"{server.url}/tasks/{taskid}")
    expect(page.locator("#log")).to_have_text("first line\n", timeout=LIVE)
    tasks.output(taskid, "second line\n")
    expect(page.locator("#log")).to_have_text("first line\nsecond line\n", timeout=LIVE)
    screenshot(page, "task-log")


def test_history_filters_and_pages(tw, serve, page):
    for name in ("alpha", "beta", "alpha", "gamma", "alpha"):
        tw.run("launch", "--name", name, "true", check=True)
    tw.run("launch", "--name", "beta", "false")
    server = serve()
    page.goto(server.url + "/history")
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(6, timeout=LIVE)
    expect(rows.first.locator(".outcome")).to_have_text("exit code 1")
    page.fill("#f-name", "alpha")
    page.fill("#f-last", "2")
    page.click("#filters button")
    expect(rows).to_have_count(2, timeout=LIVE)
    expect(page.locator("#history td.name")).to_have_text(["alpha", "alpha"])
    screenshot(page, "history")
    page.click("#older")
    expect(rows).to_have_count(1, timeout=LIVE)
    expect(page.locator("#history td.name")).to_have_text(["alpha"])
    expect(page.locator("#older")).to_be_hidden()
    page.fill("#f-name", "")
    page.fill("#f-since", "not a time")
    page.click("#filters button")
    expect(page.locator("#error")).to_contain_text("not a time", timeout=LIVE)


def test_what_a_task_wrote_is_shown_as_text(tw, serve, tasks, page):
    taskid = tasks.start(XSS_NAME, "--info1", "<b>bold</b>")
    tasks.feed(taskid, f"[phase]{XSS_VALUE}", "[progress]30", "[<img/src=x/onerror=alert(2)>]key too")
    tasks.output(taskid, f"{XSS_VALUE}\n")
    server = serve()
    page.goto(server.url + "/")
    expect(card(page, taskid).locator(".name")).to_have_text(XSS_NAME, timeout=LIVE)
    expect(card(page, taskid).locator(".fb")).to_contain_text(XSS_VALUE, timeout=LIVE)
    expect(card(page, taskid).locator(".meta")).to_contain_text("<b>bold</b>")
    host = tw.tasks()[str(taskid)]["host"]
    expect(card(page, taskid).locator(".meta")).to_contain_text(f" on {host}")  # which host runs it
    page.goto(f"{server.url}/tasks/{taskid}")
    expect(page.locator("#name")).to_have_text(XSS_NAME, timeout=LIVE)
    expect(page.locator("#feedback")).to_contain_text(XSS_VALUE, timeout=LIVE)
    expect(page.locator("#feedback th").last).to_have_text("<img/src=x/onerror=alert(2)>")
    expect(page.locator("#log")).to_have_text(XSS_VALUE + "\n", timeout=LIVE)
    tw.run("control", "--kill", str(taskid), check=True)
    page.goto(server.url + "/history")
    expect(page.locator("#history td.name")).to_have_text([XSS_NAME], timeout=LIVE)
    expect(page.locator("#history td.fb")).to_contain_text(XSS_VALUE)
    for url in ("/", f"/tasks/{taskid}", "/history"):
        page.goto(server.url + url)
        page.wait_for_load_state("networkidle")
        assert page.locator("main img, main b, main script").count() == 0, url
    # The page fixture fails the test on any alert() and any script error.


@pytest.mark.parametrize("wrong", ["not the token"])
def test_the_login_form_lets_people_in_with_the_token(tw, serve, tasks, page, tmp_path, wrong):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0o600)
    taskid = tasks.start("private")
    tasks.feed(taskid, "[progress]20")
    server = serve("--token-file", str(path), token=TOKEN)
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    page.fill("#token", wrong)
    page.click("form button")
    expect(page.locator(".message")).to_have_text("That is not the token.")
    page.fill("#token", TOKEN)
    page.click("form button")
    expect(page).to_have_url(server.url + "/")
    expect(card(page, taskid).locator("progress")).to_have_js_property("value", 20, timeout=LIVE)
    cookie = next(c for c in page.context.cookies() if c["name"] == "taskwatcher_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # out of the scripts' reach
    # A change from the page itself passes the Origin check with the cookie.
    page.goto(f"{server.url}/tasks/{taskid}")
    page.locator("#kill").click()
    expect(page.locator("#status")).to_have_text("FINISHED", timeout=LIVE)
    assert tw.history_of(taskid)["termerror"] == "killed by request"
    page.click(".logout button")
    expect(page).to_have_url(server.url + "/login")
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")


def test_a_queued_task_shows_its_place_in_line(tw, serve, tasks, page):
    first = tasks.start("first", "--group", "builds", "--slots", "1")
    waiting = tasks.start("second", "--group", "builds", "--slots", "1", "--after", str(first))
    server = serve()
    page.goto(server.url + "/")
    expect(card(page, waiting).locator(".status")).to_have_text("QUEUED", timeout=LIVE)
    expect(card(page, waiting).locator(".meta")).to_contain_text(
        f"group builds (1 slot), place 1 · after #{first}"
    )
    page.goto(f"{server.url}/tasks/{waiting}")
    # (--show --json has no slots: the group's size is the list's)
    expect(page.locator("#facts")).to_contain_text(f"group builds, place 1 · after #{first}", timeout=LIVE)


def test_a_retried_tasks_page_shows_each_attempt(tw, serve, page, tmp_path):
    counter = tmp_path / "count"
    script = f'echo x >> "{counter}"; [ "$(wc -l < "{counter}")" -ge 3 ] || exit 7'
    tw.run(
        "launch", "--name", "flaky", "--retries", "3", "--retry-delay", "0", "sh", "-c", script, check=True
    )
    (taskid,) = {e["taskid"] for e in tw.history().values()}
    server = serve()
    page.goto(f"{server.url}/tasks/{taskid}")
    rows = page.locator("#attempts tbody tr")
    expect(rows).to_have_count(3, timeout=LIVE)
    expect(rows.locator("td:first-child")).to_have_text(["1", "2", "3"])
    expect(rows.locator(".outcome")).to_have_text(["exit code 7", "exit code 7", "exit 0"])
    screenshot(page, "attempts")
    once = tw.run("launch", "--name", "once", "true", check=True)  # a task run once has no such table
    assert once.returncode == 0
    page.goto(f"{server.url}/tasks/{taskid + 1}")
    expect(page.locator("#name")).to_have_text("once", timeout=LIVE)
    expect(page.locator("#attempts-part")).to_be_hidden()
