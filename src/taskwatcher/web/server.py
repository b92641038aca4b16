"""``taskwatcher serve``: where to listen, the token, then uvicorn over the app.

What is refused before anything listens: a ``--bind`` that is not loopback without a
token, a token file others may read, a port that is taken (each one line, an exit code).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
import sys

from ..errors import Refused, TaskwatcherError, UsageError

DEFAULT_PORT = 8470
RECONCILE_EVERY = 5.0  # seconds: reads reconcile at most this often, never per request
TOKEN_NAME = "web-token"


def default_token_file() -> str:
    """``web-token`` in taskwatcher's state folder (beside the default database)."""
    from ..store.sqlite import xdg_base

    return os.path.join(
        xdg_base("XDG_STATE_HOME", os.path.join(".local", "state")), "taskwatcher", TOKEN_NAME
    )


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT``, ``HOST`` (the default port)."""
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--bind: not HOST:PORT: {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--bind: not HOST:PORT: {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback only (a name other than localhost
    is not taken on trust: it may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(path: str | None) -> str | None:
    """The token: from ``path`` (which must exist), else from the default file if there is
    one, else None. The file must be a regular file of ours that nobody else may read."""
    explicit = path is not None
    path = path or default_token_file()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if explicit:
            raise Refused(
                f"--token-file {path}: no such file (taskwatcher serve --make-token makes one)"
            ) from None
        return None
    except OSError as e:
        raise Refused(f"token file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"token file {path} is not a regular file")
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise Refused(f"token file {path} may be read by others: chmod 600 it (or make a new one)")
        token = os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if len(token) < 16:
        raise Refused(f"token file {path}: the token is shorter than 16 characters")
    return token


def make_token(path: str | None) -> str:
    """Write a new random token to ``path`` (default: the state folder's), 0600; its path."""
    path = os.path.abspath(path or default_token_file())
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise TaskwatcherError(f"cannot write the token file {path}: {e.strerror}") from None
    return path


def serve(
    db: str | None,
    bind: str,
    *,
    read_only: bool = False,
    token_file: str | None = None,
    keepalive: float = 15.0,
) -> None:
    """Listen on ``bind`` and serve the dashboard and the API until SIGINT or SIGTERM."""
    host, port = parse_bind(bind)
    loopback = is_loopback(host)
    token = load_token(token_file)
    if not loopback and token is None:
        raise Refused(
            f"--bind {bind} is not a loopback address: it needs a token "
            "(taskwatcher serve --make-token, or --token-file FILE)"
        )
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise TaskwatcherError(
            f"taskwatcher serve needs the web extra: pip install 'taskwatcher[web]' ({e})"
        ) from None
    from ..api import TaskWatcher

    tw = TaskWatcher(db, reconcile_every=RECONCILE_EVERY)
    sock = _listen(host, port, bind)
    from .events import Hub

    hub = Hub(tw)
    app = create_app(tw, read_only=read_only, token=token, keepalive=keepalive, loopback=loopback, hub=hub)
    where = sock.getsockname()
    shown = f"[{where[0]}]" if ":" in where[0] else where[0]
    sys.stderr.write(
        f"taskwatcher: serving http://{shown}:{where[1]}/ (database {tw.path}"
        f"{', read-only' if read_only else ''}{', token required' if token else ''})\n"
    )
    sys.stderr.flush()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        server_header=False,
        date_header=False,  # set per response by the Guard (uvicorn's is refreshed by its tick)
    )
    from .quiet import QuietServer

    QuietServer(config, on_exit=hub.close_streams).run(sockets=[sock])


def _listen(host: str, port: int, bind: str) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise TaskwatcherError(f"cannot listen on {bind}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
