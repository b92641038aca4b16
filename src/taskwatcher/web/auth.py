"""Who may ask what: the token (bearer header or the login's cookie), the Host a loopback
server answers to, POST's Origin check, --read-only, and the security headers of every
response. One ASGI middleware in front of every route, so no route can forget it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.utils import formatdate
from http.cookies import SimpleCookie

COOKIE = "taskwatcher_session"
# Routes open without the token: the login form itself and the package's own assets.
OPEN_PATHS = ("/login", "/static/")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make a form's Origin "null"
    (b"cache-control", b"no-store"),
]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def session_value(token: str) -> str:
    """The cookie's value: derived from the token (the cookie never holds the token itself)."""
    return hmac.new(token.encode(), b"taskwatcher web session", hashlib.sha256).hexdigest()


def session_cookie(token: str, secure: bool) -> str:
    return f"{COOKIE}={session_value(token)}; HttpOnly; SameSite=Strict; Path=/" + (
        "; Secure" if secure else ""
    )


def expired_cookie() -> str:
    return f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


def token_matches(token: str, given: str) -> bool:
    return hmac.compare_digest(token.encode(), given.strip().encode())


class Guard:
    """The ASGI middleware: refuses (JSON for the API, the login page for people) before
    any route runs, and adds the security headers to whatever goes out."""

    def __init__(self, app, *, token: str | None, read_only: bool, loopback: bool) -> None:  # type: ignore[no-untyped-def]
        self.app, self.token, self.read_only, self.loopback = app, token, read_only, loopback

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, date_header()]
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def refusal(self, scope):  # type: ignore[no-untyped-def]
        """The response refusing this request, or None to let it through."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, method = scope["path"], scope["method"]
        api = path.startswith("/api/")
        host = headers.get("host", "")
        if self.loopback and _hostname(host) not in LOOPBACK_NAMES and not _hostname(host).startswith("127."):
            # A loopback server answers only to loopback names: a page whose name was made
            # to resolve to 127.0.0.1 (DNS rebinding) does not get to read it.
            return _error(403, f"this server answers to localhost only, not to Host {host!r}")
        if method not in ("GET", "HEAD"):
            origin = headers.get("origin")
            scheme = "https" if scope.get("scheme") == "https" else "http"
            if origin is not None and origin != f"{scheme}://{host}":
                return _error(403, f"cross-origin request refused (Origin {origin})")
            site = headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return _error(403, f"cross-site request refused ({site})")
        if self.token is not None and not path.startswith(OPEN_PATHS):
            how = self._authenticated(headers)
            if how is None:
                if api or method not in ("GET", "HEAD"):
                    return _error(401, "a token is needed: Authorization: Bearer TOKEN", bearer=True)
                return _redirect("/login")
            if how == "cookie" and method not in ("GET", "HEAD") and "origin" not in headers:
                return _error(403, "a change asked with the session cookie needs an Origin header")
        if self.read_only and method not in ("GET", "HEAD") and not path.startswith(("/login", "/logout")):
            return _error(403, "read-only: this server refuses every change")
        return None

    def _authenticated(self, headers: dict[str, str]) -> str | None:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and token_matches(self.token, auth[7:]):
            return "bearer"
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no session
            return None
        given = cookies.get(COOKIE)
        if given is not None and hmac.compare_digest(
            given.value.encode(), session_value(self.token).encode()
        ):
            return "cookie"
        return None


_date: list = [0, b""]  # the second it was made for, the header's value


def date_header() -> tuple[bytes, bytes]:
    """``Date`` as HTTP writes it, made at most once a second (uvicorn's own is off: it is
    refreshed by a tick every 0.1 s, which an idle server does without)."""
    now = int(time.time())
    if _date[0] != now:
        _date[:] = [now, formatdate(now, usegmt=True).encode()]
    return (b"date", _date[1])


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error(status: int, message: str, bearer: bool = False):  # type: ignore[no-untyped-def]
    body = json.dumps({"error": message}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer realm="taskwatcher"'))

    async def respond(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return respond


def _redirect(location: str):  # type: ignore[no-untyped-def]
    async def respond(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        headers = [(b"location", location.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return respond


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
