"""Each security point of the web, against a real server: loopback by default, a token for
anything else (bearer for programs, a login's HttpOnly SameSite=Strict cookie for people),
POST with an Origin check, the Host a loopback server answers to, --read-only, the headers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx

from support import one_line_error

from .conftest import Server, start_server

TOKEN = "test-token-0123456789abcdef"


def token_file(tmp_path, mode: int = 0o600, text: str = TOKEN):
    path = tmp_path / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_serve_listens_on_loopback_by_default(tw):
    from taskwatcher.cli import build_parser
    from taskwatcher.web.server import is_loopback, parse_bind

    args = build_parser("serve").parse_args(["serve"])
    assert args.bind == "127.0.0.1:8470"
    assert is_loopback(parse_bind(args.bind)[0])
    hosts = ("localhost", "::1", "127.0.0.2", "0.0.0.0", "10.0.0.1", "example.org")
    assert [is_loopback(h) for h in hosts] == [True, True, True, False, False, False]


def test_a_bind_beyond_loopback_without_a_token_is_refused(tw, tmp_path):
    for bind in ("0.0.0.0:0", "[::]:0"):
        refused = start_server(tw, "--bind", bind)
        assert not isinstance(refused, Server)
        assert refused.returncode == 3
        assert "not a loopback address: it needs a token" in one_line_error(refused)
    bad = start_server(tw, "--bind", "nonsense:port")
    assert bad.returncode == 2 and "--bind" in one_line_error(bad)
    taken = start_server(tw, "--token-file", str(token_file(tmp_path, 0o644)))
    assert taken.returncode == 3 and "chmod 600" in one_line_error(taken)
    missing = start_server(tw, "--token-file", str(tmp_path / "nothing"))
    assert missing.returncode == 3 and "no such file" in one_line_error(missing)


def test_with_a_token_it_serves_beyond_loopback(tw, serve, tmp_path):
    server = serve("--bind", "0.0.0.0:0", "--token-file", str(token_file(tmp_path)), token=TOKEN)
    assert server.get("/api/v1/tasks").json() == {}
    assert httpx.get(server.url + "/api/v1/tasks").status_code == 401


def test_make_token_writes_a_private_file_in_the_state_folder_that_serve_then_uses(tw, serve, state):
    made = tw.run("serve", "--make-token", check=True).stdout.strip()
    assert made == str(state / "taskwatcher" / "web-token")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o600
    token = Path(made).read_text().strip()
    assert len(token) >= 32
    server = serve(token=token)  # found in the state folder without --token-file
    assert httpx.get(server.url + "/api/v1/healthz").status_code == 401
    assert server.get("/api/v1/healthz").json()["status"] == "ok"


def test_the_token_guards_every_request(tw, serve, tmp_path):
    server = serve("--token-file", str(token_file(tmp_path)), token=TOKEN)
    url = server.url
    for path in ("/api/v1/tasks", "/api/v1/healthz", "/api/v1/events", "/api/v1/openapi.json",
                 "/api/v1/history", "/api/v1/tasks/1"):  # fmt: skip
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}):
            r = httpx.get(url + path, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert set(r.json()) == {"error"} and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(url + "/api/v1/tasks/1/kill").status_code == 401
    # People get the login form; its assets are open.
    page = httpx.get(url + "/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert httpx.get(url + "/login").status_code == 200
    assert httpx.get(url + "/static/style.css").status_code == 200
    assert server.get("/api/v1/tasks").status_code == 200


def test_the_login_sets_an_httponly_samesite_strict_cookie(tw, serve, tmp_path):
    server = serve("--token-file", str(token_file(tmp_path)), token=TOKEN)
    origin = {"Origin": server.url}
    wrong = httpx.post(server.url + "/login", data={"token": "nope"}, headers=origin)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    huge = httpx.post(server.url + "/login", content=b"token=" + b"x" * 100_000, headers=origin)
    assert huge.status_code == 400 and "error" in huge.json()
    right = httpx.post(server.url + "/login", data={"token": TOKEN}, headers=origin, follow_redirects=False)
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # the cookie is derived from the token, never the token
    name, value = cookie.split(";")[0].split("=", 1)
    with httpx.Client(base_url=server.url, cookies={name: value}) as people:
        assert people.get("/api/v1/tasks").status_code == 200
        assert people.get("/", follow_redirects=False).status_code == 200
        # A change asked with the cookie alone (no Origin: not a browser's own page) is refused.
        assert people.post("/api/v1/tasks/1/kill").status_code == 403
        assert people.post("/api/v1/tasks/1/kill", headers=origin).status_code == 404  # let through
    logout = httpx.post(server.url + "/logout", headers=origin, cookies={name: value})
    assert "Max-Age=0" in logout.headers["set-cookie"]


def test_a_change_from_another_origin_is_refused(tw, serve, tasks):
    taskid = tasks.start("victim")
    server = serve()
    kill = f"/api/v1/tasks/{taskid}/kill"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": server.url.replace("127.0.0.1", "localhost")}):  # fmt: skip
        r = server.post(kill, headers=headers)
        assert r.status_code == 403, headers
        assert "refused" in r.json()["error"]
    assert tw.tasks()[str(taskid)]["status"] == "RUNNING"
    done = server.post(kill, headers={"Origin": server.url})
    assert done.status_code == 200, done.text
    assert done.json()["taskid"] == taskid
    assert str(taskid) not in tw.tasks()


def test_a_loopback_server_answers_to_loopback_names_only(tw, serve):
    server = serve()
    assert server.get("/api/v1/tasks", headers={"Host": "attacker.example"}).status_code == 403
    assert server.get("/api/v1/tasks", headers={"Host": "attacker.example:8470"}).status_code == 403
    port = server.url.rsplit(":", 1)[1]
    assert server.get("/api/v1/tasks", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_read_only_refuses_every_change(tw, serve, tasks):
    taskid = tasks.start("kept")
    server = serve("--read-only")
    r = server.post(f"/api/v1/tasks/{taskid}/kill", headers={"Origin": server.url})
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert server.get("/api/v1/healthz").json()["read_only"] is True
    assert tw.tasks()[str(taskid)]["status"] == "RUNNING"
    assert 'id="kill"' not in server.get(f"/tasks/{taskid}").text


def test_every_response_carries_a_strict_content_security_policy(tw, serve):
    server = serve()
    for path in ("/", "/history", "/tasks/1", "/api/v1/tasks", "/api/v1/nothing", "/static/common.js"):
        r = server.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    for path in ("/", "/history", "/tasks/1", "/login"):
        html = server.get(path).text
        assert "<script>" not in html and " on" + "click" not in html and "style=" not in html
        assert "http://" not in html and "https://" not in html  # no asset from outside the package
