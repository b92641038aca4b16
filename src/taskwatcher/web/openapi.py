"""The API's OpenAPI document, written by hand beside the routes it describes (app.py)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_ID = {
    "name": "taskid",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _op(summary: str, ok: dict[str, Any], *, params: list | None = None, errors=(400, 401, 403, 404)) -> dict:
    responses = {"200": ok, **{str(code): _ERROR for code in errors}}
    return {"summary": summary, "parameters": params or [], "responses": responses}


def _ok(description: str, content: dict | None = None) -> dict:
    return {"description": description, "content": content or _JSON_OBJECT}


def q(name: str, schema: dict, text: str) -> dict:
    """A query parameter, never required."""
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "taskwatcher",
            "version": version,
            "description": "Tasks of one taskwatcher database. With a token set, every request needs "
            "`Authorization: Bearer TOKEN` (or the login page's cookie); a POST from a browser "
            "needs a same-origin `Origin`. The JSON is the CLI's (`control --list --json`, "
            "`--show --json`, `--feedback`, `--history --json`).",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            },
            "responses": {
                "Error": {
                    "description": 'refused: {"error": "..."}',
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/api/v1/healthz": {
                "get": _op("the server is up", _ok("status, version, read_only"), errors=(401, 403))
            },
            "/api/v1/tasks": {
                "get": _op(
                    "reserved and running tasks (control --list --json)",
                    _ok("keyed by task id"),
                    errors=(401, 403),
                )
            },
            "/api/v1/tasks/{taskid}": {
                "get": _op(
                    "everything about one task, running or finished (control --show --json)",
                    _ok("the task"),
                    params=[_ID],
                )
            },
            "/api/v1/tasks/{taskid}/feedback": {
                "get": _op(
                    "the latest feedback, or a finished task's final one (control --feedback)",
                    _ok("key: value"),
                    params=[_ID],
                )
            },
            "/api/v1/tasks/{taskid}/log": {
                "get": _op(
                    "the task's log from offset (its older half, then the current file)",
                    {
                        "description": "the bytes; X-Next-Offset is where to go on",
                        "headers": {"X-Next-Offset": {"schema": {"type": "integer"}}},
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    params=[_ID, q("offset", {"type": "integer", "minimum": 0}, "bytes to skip (default 0)")],
                )
            },
            "/api/v1/tasks/{taskid}/kill": {
                "post": _op(
                    "stop the task (a reservation is cancelled), once it is archived",
                    _ok("taskid and what was done"),
                    params=[_ID],
                )
            },
            "/api/v1/history": {
                "get": _op(
                    "finished tasks, oldest first (control --history --json)",
                    _ok("keyed by history id"),
                    params=[
                        q("name", {"type": "string"}, "of this name only"),
                        q(
                            "since",
                            {"type": "string"},
                            "ended since: unix time, ISO date, or an age (2h, 7d)",
                        ),
                        q("last", {"type": "integer", "minimum": 1}, "only the newest N"),
                        q("before", {"type": "integer", "minimum": 1}, "history ids below this one (paging)"),
                    ],
                    errors=(400, 401, 403),
                )
            },
            "/api/v1/hosts": {
                "get": _op(
                    "each host the tasks and the recent history name: its running tasks, newest "
                    "heartbeat, recent ends (host lost among them)",
                    _ok("this, shared, since, and the hosts keyed by name (this host first)"),
                    params=[
                        q(
                            "since",
                            {"type": "string"},
                            "ends since: unix time, ISO date, or an age (default 24h)",
                        )
                    ],
                    errors=(400, 401, 403),
                )
            },
            "/api/v1/events": {
                "get": {
                    "summary": "server-sent events: one per task change (event: task, ended, reset)",
                    "parameters": [
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "401": _ERROR,
                        "403": _ERROR,
                    },
                }
            },
        },
    }


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
