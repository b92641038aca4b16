"""Fixtures of the web tests: a real ``taskwatcher serve`` on a loopback port (a subprocess,
ready once its healthz answers), tasks the test drives, and the system's Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import TW, wait_for
from support import reaper  # noqa: F401  (a fixture: every web test reaps what it started)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "web"


class Server:
    """One ``taskwatcher serve`` process and an HTTP client for it."""

    def __init__(self, proc: subprocess.Popen, url: str, token: str | None) -> None:
        self.proc, self.url, self.token = proc, url.rstrip("/"), token
        self.stderr: list[str] = []
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.http.post(path, **kw)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(15)


def start_server(tw, *args: str, token: str | None = None) -> Server | subprocess.CompletedProcess:
    """``taskwatcher serve`` on a free loopback port (unless ``args`` say --bind); the Server once
    its healthz answers, or the finished process if it refused to start."""
    bind = [] if "--bind" in args else ["--bind", "127.0.0.1:0"]
    cmd = [*TW, "serve", "--db", str(tw.db), *bind, "--keepalive", "0.5", *args]
    proc = subprocess.Popen(cmd, env=tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # the server's one line ("serving URL"), or its refusal
    found = re.search(r"serving (http://\S+/)", first)
    if found is None:
        out, err = proc.communicate(timeout=15)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, first + err)
    server = Server(proc, found.group(1).replace("0.0.0.0", "127.0.0.1"), token)
    drain = threading.Thread(target=lambda: server.stderr.extend(proc.stderr), daemon=True)
    drain.start()

    def healthy() -> bool:
        try:
            return server.get("/api/v1/healthz").status_code in (200, 401)
        except httpx.TransportError:
            return False

    wait_for(healthy, 15, "the server's healthz")
    return server


@pytest.fixture
def serve(tw) -> Iterator:
    """``serve(*args, token=None)``: a started server; every one is stopped at teardown."""
    servers: list[Server] = []

    def start(*args: str, token: str | None = None) -> Server:
        server = start_server(tw, *args, token=token)
        assert isinstance(server, Server), f"serve did not start: {server.stderr}"
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Tasks:
    """Tasks whose feedback and output the test writes: ``tail -f`` of a control file prints
    what the test appends to it (the log), and the test appends to the feedback file."""

    def __init__(self, tw, folder: Path) -> None:
        self.tw, self.folder = tw, folder
        folder.mkdir(exist_ok=True)

    def start(self, name: str = "job", *args: str) -> int:
        control = self.folder / f"control-{name.encode().hex()[:40]}-{len(os.listdir(self.folder))}"
        control.touch()
        proc = self.tw.run("launch", "--detach", "--feedpath", str(self.folder), "--name", name, *args,
                           "tail", "-n", "+1", "-f", str(control), check=True)  # fmt: skip
        taskid = int(proc.stdout)
        self._controls[taskid] = control
        return taskid

    _controls: dict[int, Path]

    def feed(self, taskid: int, *lines: str) -> None:
        with open(self.folder / f"feedback_{taskid}.log", "a") as f:
            f.write("".join(line + "\n" for line in lines))

    def output(self, taskid: int, text: str) -> None:
        with open(self._controls[taskid], "a") as f:
            f.write(text)


@pytest.fixture
def tasks(tw, tmp_path) -> Tasks:
    t = Tasks(tw, tmp_path / "run")
    t._controls = {}
    return t


@pytest.fixture(scope="session")
def browser():
    """The system's Chromium under Playwright (its own browser download is not available)."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (scripts/need-chromium installs it): the browser tests cannot run"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh browser page that fails the test on any dialog but a confirmation, and on any
    script error."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = context.new_page()
    pg.problems = []
    pg.on("pageerror", lambda e: pg.problems.append(f"script error: {e}"))

    def dialog(d) -> None:
        if d.type == "confirm":
            d.accept()
        else:
            pg.problems.append(f"{d.type} dialog: {d.message}")
            d.dismiss()

    pg.on("dialog", dialog)
    yield pg
    context.close()
    assert pg.problems == []


def screenshot(page, name: str) -> Path:
    """Save a screenshot among the test artifacts (test-artifacts/web, not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
