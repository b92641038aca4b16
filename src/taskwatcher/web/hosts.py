"""The hosts view (``GET /api/v1/hosts``, the ``/hosts`` page): one entry per host that the
reserved, queued and running tasks or the recent history name, derived from the same
reads as ``control --list --json`` and ``control --history --json`` (no read of its own).

A host is the name its launchers recorded (``os.uname().nodename``). On PostgreSQL that is
every host sharing the database; on SQLite, normally this one alone (a container with a
host name of its own sharing the file shows as one more). The server's own host is always
listed, with nothing on it if need be. Tasks with no host yet (a reservation, a task
waiting in line for a slot) belong to no host and are not counted here.
"""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..api import TaskWatcher

RECENT = 24 * 3600.0  # seconds of history looked back by default
MOST_ENDS = 2000  # the newest ends read at most, however many the window holds
SHOWN_ENDS = 10  # the newest ends listed per host
WAITING = ("RESERVED", "QUEUED")
_TASK_FIELDS = ("name", "status", "pid", "lastupdate")
_END_FIELDS = ("taskid", "taskname", "endtime", "termsignal", "termerror", "exitcode", "attempt")


def hosts_json(tw: TaskWatcher, since: float | str | None = None) -> dict[str, Any]:
    """``{"this": HOST, "shared": bool, "since": T, "time": NOW, "hosts": {HOST: {...}}}``: this host
    first, then by name. Each host: ``running`` (its tasks: taskid, name, status, pid,
    lastupdate), ``waiting`` (queued or reserved tasks a launcher there waits for),
    ``heartbeat`` (the newest ``lastupdate`` of its running tasks: their latest heartbeat,
    or their start for a task without feedback), ``ended`` and ``lost`` (ends since
    ``since``, and of those the ones archived as ``host lost``, their lease run out),
    ``lastend``, and ``recent``: its newest ends, newest first."""
    from ..model import HOST_LOST
    from ..process import host_name
    from ..store import is_url

    here, now = host_name(), time.time()
    if since is None:
        start = now - RECENT
    elif isinstance(since, str):
        from ..history import parse_when

        start = parse_when(since)  # a bad one is the history's usage error (400)
    else:
        start = float(since)
    tasks = tw.tasks_json()
    history = json.loads(tw.history_json(since=start, last=MOST_ENDS))
    # Two reads: a task that ended between them is in both. Its end (this attempt's, or a
    # later one's) wins, so that no task is counted running and ended at once.
    ended = {}
    for end in history.values():
        ended[str(end["taskid"])] = max(ended.get(str(end["taskid"]), 0), end["attempt"] or 1)
    tasks = {t: task for t, task in tasks.items() if ended.get(t, 0) < (task["attempt"] or 1)}
    hosts: dict[str, dict[str, Any]] = {}

    def host(name: str) -> dict[str, Any]:
        if name not in hosts:
            hosts[name] = {"running": [], "waiting": [], "heartbeat": None, "ended": 0, "lost": 0,
                           "lastend": None, "recent": []}  # fmt: skip
        return hosts[name]

    host(here)
    for taskid, task in tasks.items():
        if not task["host"]:
            continue
        entry = host(task["host"])
        brief = {"taskid": taskid, **{k: task[k] for k in _TASK_FIELDS}}
        if task["status"] in WAITING:
            entry["waiting"].append(brief)
            continue
        entry["running"].append(brief)
        if task["lastupdate"] is not None:
            entry["heartbeat"] = max(entry["heartbeat"] or 0, task["lastupdate"])
    for historyid, end in sorted(history.items(), key=lambda h: -int(h[0])):  # newest first
        if not end["host"]:
            continue  # it never ran (a reservation cancelled, a task ended in line)
        entry = host(end["host"])
        entry["ended"] += 1
        entry["lost"] += int(end["termerror"] == HOST_LOST)
        if entry["lastend"] is None or (end["endtime"] or 0) > entry["lastend"]:
            entry["lastend"] = end["endtime"]
        if len(entry["recent"]) < SHOWN_ENDS:
            entry["recent"].append({"historyid": historyid, **{k: end[k] for k in _END_FIELDS}})
    ordered = {here: hosts.pop(here), **dict(sorted(hosts.items()))}
    return {"this": here, "shared": is_url(tw.path), "since": start, "time": now, "hosts": ordered}


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
