"""The Starlette app: the API under /api/v1, the pages, the package's static assets.

Routes only parse the request, call :class:`~taskwatcher.api.TaskWatcher` (the same calls
as the CLI, so the JSON is the CLI's byte for byte) and format; the library's typed
exceptions become HTTP statuses in :func:`status_of`, the one place that maps them.
Routes that read the store are plain functions: Starlette runs them in its thread pool.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..errors import (
    LauncherTimeout,
    NoLog,
    NoSuchTask,
    Refused,
    RunsElsewhere,
    StoreError,
    TaskwatcherError,
    UsageError,
)
from . import pages
from .auth import expired_cookie, session_cookie, token_matches
from .events import Hub
from .openapi import openapi_document

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..api import TaskWatcher

MAX_TASK_ID = 2**63 - 1
SNAPSHOT = 0.1  # seconds GET tasks' answer is kept (its timers are then at most that old)
LOG_CHUNK = 1 << 20  # the most bytes of a log one request gets: the next offset says where to go on
LOGIN_MAX = 8192  # bytes of a login form
STATIC = os.path.join(os.path.dirname(__file__), "static")
_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png", ".svg": "image/svg+xml"}


def status_of(e: Exception) -> int:
    """The HTTP status of a library failure (the CLI's exit codes, as HTTP says them)."""
    if isinstance(e, UsageError):
        return 400
    if isinstance(e, (NoSuchTask, NoLog)):
        return 404
    if isinstance(e, (Refused, RunsElsewhere)):
        return 403
    if isinstance(e, LauncherTimeout):
        return 504
    if isinstance(e, StoreError):
        return 503
    return 500


def json_bytes(value: Any) -> bytes:
    """What the CLI's ``_print_json`` writes: the same JSON, byte for byte."""
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8", "replace")


def _json(value: Any, status: int = 200) -> Response:
    return Response(json_bytes(value), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _taskid(request: Request) -> int:
    text = request.path_params["taskid"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_TASK_ID:
        raise UsageError(f"a task id is an integer from 1 to {MAX_TASK_ID}, not {text!r}")
    return int(text)


def _number(request: Request, name: str, minimum: int) -> int | None:
    text = request.query_params.get(name, "")
    if text == "":
        return None
    if not text.isdigit() or int(text) < minimum or int(text) > MAX_TASK_ID:
        raise UsageError(f"{name} must be a whole number from {minimum}, not {text!r}")
    return int(text)


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The package's assets, read once: a request names one of these, never a file."""
    assets = {}
    for name in sorted(os.listdir(STATIC)):
        kind = _TYPES.get(os.path.splitext(name)[1])
        if kind is not None:
            with open(os.path.join(STATIC, name), "rb") as f:
                assets[name] = (f.read(), kind)
    return assets


def create_app(
    tw: TaskWatcher,
    *,
    read_only: bool = False,
    token: str | None = None,
    keepalive: float = 15.0,
    loopback: bool = True,
    hub: Hub | None = None,
) -> Any:
    """The ASGI app serving ``tw``'s database, behind :class:`~taskwatcher.web.auth.Guard`."""
    from .auth import Guard

    hub = hub or Hub(tw)
    assets = _load_static()
    options = {"read_only": read_only, "login": token is not None}

    # -- the API ---------------------------------------------------------------------------
    def healthz(request: Request) -> Response:
        return _json({"status": "ok", "version": __version__, "read_only": read_only, "database": tw.path})

    # GET tasks is what back-ends poll: its answer is kept SNAPSHOT seconds at most, and
    # dropped at once when the store notifies a change (or the server makes one).
    snapshot: list = [float("-inf"), -1, b""]  # made at (monotonic), under generation, body

    async def tasks(request: Request) -> Response:
        made, generation, body = snapshot
        if time.monotonic() - made >= SNAPSHOT or generation != hub.generation:
            generation, start = hub.generation, time.monotonic()
            body = await run_in_threadpool(lambda: json_bytes(tw.tasks_json()))
            snapshot[:] = [start, generation, body]
        return Response(body, media_type="application/json")

    def task(request: Request) -> Response:
        return _json(tw.show(_taskid(request)))

    def feedback(request: Request) -> Response:
        return _json(tw.feedback(_taskid(request)))

    def log(request: Request) -> Response:
        taskid = _taskid(request)
        offset = _number(request, "offset", 0) or 0
        data, after = tw.read_log_from(taskid, offset, LOG_CHUNK)
        headers = {"X-Next-Offset": str(after), "Access-Control-Expose-Headers": "X-Next-Offset"}
        return Response(data, media_type="application/octet-stream", headers=headers)

    def history(request: Request) -> Response:
        q = request.query_params
        only = dict(
            name=q.get("name") or None,
            since=q.get("since") or None,
            last=_number(request, "last", 1),
            before=_number(request, "before", 1),
        )
        # Read whole in this thread: the store's connection is not to move between threads.
        body = "".join(tw.iter_history_json(**only)).encode("utf-8", "replace")
        return Response(body, media_type="application/json")

    def hosts(request: Request) -> Response:
        from .hosts import hosts_json

        return _json(hosts_json(tw, request.query_params.get("since") or None))

    def kill(request: Request) -> Response:
        taskid = _taskid(request)
        try:
            return _json({"taskid": taskid, "done": tw.kill(taskid)})
        finally:
            hub.generation += 1  # a GET after this POST never gets the task from before it

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(hub.stream(last, keepalive), media_type="text/event-stream", headers=headers)

    def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(__version__))

    # -- the pages ---------------------------------------------------------------------------
    def dashboard(request: Request) -> Response:
        return HTMLResponse(pages.dashboard(**options))

    def task_page(request: Request) -> Response:
        return HTMLResponse(pages.task(_taskid(request), **options))

    def history_page(request: Request) -> Response:
        return HTMLResponse(pages.history(**options))

    def hosts_page(request: Request) -> Response:
        return HTMLResponse(pages.hosts(**options))

    def login_form(request: Request) -> Response:
        if token is None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(pages.login())

    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse("/", status_code=303)
        body = b""
        async for chunk in request.stream():  # a login form is small: the rest is never held
            body += chunk
            if len(body) > LOGIN_MAX:
                return _error(400, "the login form is too large")
        form = parse_qs(body.decode("utf-8", "replace"))
        if not token_matches(token, (form.get("token") or [""])[0]):
            return HTMLResponse(pages.login("That is not the token."), status_code=401)
        done = RedirectResponse("/", status_code=303)
        done.headers["set-cookie"] = session_cookie(token, request.url.scheme == "https")
        return done

    def logout(request: Request) -> Response:
        done = RedirectResponse("/login" if token else "/", status_code=303)
        done.headers["set-cookie"] = expired_cookie()
        return done

    def static(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return _error(404, "no such asset")
        return Response(found[0], media_type=found[1])

    # -- errors: JSON for the API (and for every failure), in one place -------------------------
    def failed(request: Request, e: Exception) -> Response:
        if isinstance(e, HTTPException):
            return _error(e.status_code, str(e.detail))
        if isinstance(e, TaskwatcherError):
            return _error(status_of(e), str(e))
        return _error(500, f"internal error: {type(e).__name__}")

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        hub.start()
        try:
            yield
        finally:
            hub.stop()

    api = "/api/v1"
    routes = [
        Route(f"{api}/healthz", healthz),
        Route(f"{api}/openapi.json", openapi),
        Route(f"{api}/tasks", tasks),
        Route(f"{api}/tasks/{{taskid}}", task),
        Route(f"{api}/tasks/{{taskid}}/feedback", feedback),
        Route(f"{api}/tasks/{{taskid}}/log", log),
        Route(f"{api}/tasks/{{taskid}}/kill", kill, methods=["POST"]),
        Route(f"{api}/history", history),
        Route(f"{api}/hosts", hosts),
        Route(f"{api}/events", events),
        Route("/", dashboard),
        Route("/tasks/{taskid}", task_page),
        Route("/history", history_page),
        Route("/hosts", hosts_page),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/static/{name}", static),
    ]
    handlers = {HTTPException: failed, TaskwatcherError: failed, Exception: failed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)  # type: ignore[arg-type]
    return Guard(app, token=token, read_only=read_only, loopback=loopback)


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
