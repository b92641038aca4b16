"""The web server's figures (`benchmarks/run --only web`): GET /api/v1/tasks against
`control --list --json` processes, a change's way to the event stream, memory and idle CPU.

The server is a real `taskwatcher serve` on a loopback port; the load is two client
processes on keep-alive connections (they share the 2 cores with the server, as the CLI's
two streams of processes share them in the baseline).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time

import dbgen
from common import BenchError, cpu_ns, log, median, rss_kib, run, wait_for
from figures import Cell, Ctx, Figure, ms

TASKS = 200
RUNNING = 10  # of the 200, really running (with feedback); the rest reserved
QUIET = 20  # running tasks that write nothing, for the idle figure
IDLE_WINDOW = 60.0  # seconds the idle CPU is measured over (10 with --quick)


def _server(ctx: Ctx, db: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "XDG_STATE_HOME": ctx.fresh_dir("webstate")}  # no developer's token file
    proc = subprocess.Popen([*ctx.tools.ours, "serve", "--db", db, "--bind", "127.0.0.1:0"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    line = proc.stderr.readline()
    found = re.search(r":(\d+)/ ", line)
    if not found:
        proc.kill()
        raise BenchError(f"serve did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    port = int(found.group(1))
    ctx.cleanups.append(lambda: (proc.terminate(), proc.wait(10)))
    wait_for(lambda: _get(port, "/api/v1/healthz")[0] == 200, 15, "the server's healthz")
    return proc, port


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path, headers={"Connection": "close"})  # no keep-alive left to time out
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""


def _running(port: int) -> int:
    """How many tasks the server lists as running (a started one: it has a pid)."""
    status, body = _get(port, "/api/v1/tasks")
    return -1 if status != 200 else sum(1 for v in json.loads(body).values() if v["pid"])


def _cpu_ticks(pid: int) -> int:
    """utime + stime of /proc/PID/stat: every thread's time on CPU, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _wakeups(pid: int) -> int:
    """Context switches of every thread of ``pid``: each is a wake-up (or a preemption)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:
            continue
    return total


def _idle(pid: int, window: float) -> dict:
    """The server's CPU over ``window`` seconds of quiet, after uvicorn's 5 s keep-alive of the
    last requests has run out (closing an idle connection is a wake-up of its own)."""
    time.sleep(6)
    ticks, ns, woken, t0 = _cpu_ticks(pid), cpu_ns(pid), _wakeups(pid), time.monotonic()
    time.sleep(window)
    took = time.monotonic() - t0
    ticks, ns, woken = _cpu_ticks(pid) - ticks, cpu_ns(pid) - ns, _wakeups(pid) - woken
    return {"ticks": ticks, "cpu_fraction": ns / 1e9 / took, "cpu_ms": ns / 1e6, "wakeups": woken,
            "window_s": took}  # fmt: skip


def _load(port: int, seconds: float, out) -> None:  # a client process: requests until the time is up
    c = http.client.HTTPConnection("127.0.0.1", port)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("GET", "/api/v1/tasks")
        r = c.getresponse()
        if r.status != 200 or not r.read():
            raise SystemExit(f"status {r.status}")
        n += 1
    out.put(n)


def _requests_per_second(port: int, seconds: float, clients: int = 2) -> float:
    q: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_load, args=(port, seconds, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def _cli_per_second(ctx: Ctx, db: str, seconds: float, streams: int = 2) -> float:
    counts = [0] * streams
    end = time.monotonic() + seconds

    def stream(i: int) -> None:
        while time.monotonic() < end:
            run([*ctx.tools.ours, "control", "--db", db, "--list", "--json"])
            counts[i] += 1

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


class _Stream:
    """The event stream, read in a thread: (arrival time, event name, data) as they come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.events: list[tuple[float, str, dict]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf, name = b"", ""
        while chunk := self._recv():
            now = time.monotonic()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace").rstrip("\r")
                if text.startswith("event: "):
                    name = text[7:]
                elif text.startswith("data: ") and name:
                    self.events.append((now, name, json.loads(text[6:])))

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:  # closed by close(): the reading ends
            return b""

    def first_after(self, t0: float, match) -> float:  # seconds from t0 to the first matching event
        found = wait_for(lambda: next((t for t, n, d in self.events if t >= t0 and match(n, d)), None), 10,
                         "the event")  # fmt: skip
        return found - t0

    def close(self) -> None:
        self.sock.close()


def web_figures(ctx: Ctx) -> list[Figure]:
    t, quick = ctx.tools, ctx.sizes.quick
    seconds = 1.0 if quick else 3.0
    db = ctx.path("web.db")
    dbgen.create_ours(t, db)
    dbgen.add_ours_reservations(db, TASKS - RUNNING)
    feed = ctx.fresh_dir("webfeed")
    for _ in range(RUNNING):
        run([*t.ours, "launch", "--db", db, "--detach", "--name", "bench-web", "--feedpath", feed,
             "--timeout", "3600", "--", "sleep", "3600"])  # fmt: skip
    ctx.cleanups.append(lambda: run([*t.ours, "control", "--db", db, "--killall", "bench-web"], ok=(0, 4)))
    proc, port = _server(ctx, db)
    if len(json.loads(_get(port, "/api/v1/tasks")[1])) != TASKS:
        raise BenchError(f"GET /api/v1/tasks did not give {TASKS} tasks")

    # 1. GET tasks against control --list --json, interleaved: CLI, server, CLI, server.
    rps, cli = [], []
    for _ in range(1 if quick else 2):
        cli.append(_cli_per_second(ctx, db, seconds))
        rps.append(_requests_per_second(port, seconds))
    ratio = median(rps) / median(cli)
    f1 = Figure("web-tasks", f"`GET /api/v1/tasks`, {TASKS} tasks ({RUNNING} running)",
                "`control --list --json` processes, 2 at a time", "≥ 50x more")  # fmt: skip
    f1.ours = Cell(
        ratio, f"{ratio:.0f}x ({median(rps):.0f} requests/s against {median(cli):.1f} processes/s)"
    )
    f1.met = ratio >= 50
    f1.notes.append("2 client processes on keep-alive connections; the answer is kept 0.1 s at most")
    f1.raw = {"requests_per_s": rps, "cli_per_s": cli}

    # 2. A change's way to the event stream: a reservation committed to the store, and a
    # feedback line appended to a running task's file.
    stream = _Stream(port)
    wait_for(lambda: any(n == "reset" for _, n, _ in stream.events), 10, "the stream's start")
    store_lat, feed_lat = [], []
    running = [
        tid for tid, v in json.loads(_get(port, "/api/v1/tasks")[1]).items() if v["status"] != "RESERVED"
    ]
    for i in range(3 if quick else 7):
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        row = (f"lat{i}", int(time.time()), time.time() + 600)
        conn.execute("INSERT INTO tasks (name, status, reservetime, expiretime, uniq)"
                     " VALUES (?, 'RESERVED', ?, ?, 0)", row)  # fmt: skip
        t0 = time.monotonic()
        conn.close()
        store_lat.append(
            stream.first_after(t0, lambda n, d, i=i: n == "task" and d["task"]["name"] == f"lat{i}")
        )
        tid = running[i % len(running)]
        with open(os.path.join(feed, f"feedback_{tid}.log"), "a") as fb:
            fb.write(f"[progress]{i + 1}\n")
        t0 = time.monotonic()
        feed_lat.append(stream.first_after(
            t0, lambda n, d, tid=tid, i=i: n == "task" and d["taskid"] == tid
            and (d["latest"] or {}).get("progress") == str(i + 1)))  # fmt: skip
        time.sleep(0.3)  # apart from each other: each change on its own
    stream.close()
    f2 = Figure("web-events", "a change to the event stream", "—", "≤ 0.25 s on SQLite")
    f2.ours = Cell(
        median(feed_lat), f"feedback line: {ms(median(feed_lat))}; store change: {ms(median(store_lat))}"
    )
    f2.met = median(feed_lat) <= 0.25
    f2.notes.append(
        "medians; a feedback line is a store change once the launcher writes it there (else the 1 s look)"
    )
    f2.raw = {"feedback_s": feed_lat, "store_s": store_lat}

    # 3. Memory after the load, and CPU while nothing changes: 20 quiet tasks running (no
    # output, no feedback: nothing writes the store), then none; the 190 reservations stay.
    run([*t.ours, "control", "--db", db, "--killall", "bench-web"], ok=(0, 4))
    for _ in range(QUIET):
        run([*t.ours, "launch", "--db", db, "--detach", "--name", "bench-quiet", "--", "sleep", "3600"])
    ctx.cleanups.append(lambda: run([*t.ours, "control", "--db", db, "--killall", "bench-quiet"], ok=(0, 4)))
    wait_for(lambda: _running(port) == QUIET, 60, f"{QUIET} quiet tasks listed by the server")
    window = 10.0 if quick else IDLE_WINDOW
    busy = _idle(proc.pid, window)
    run([*t.ours, "control", "--db", db, "--killall", "bench-quiet"], ok=(0, 4))
    wait_for(lambda: _running(port) == 0, 60, "the quiet tasks' ends seen by the server")
    none = _idle(proc.pid, window)
    f3 = Figure("web-idle", "the server: memory, and CPU while nothing changes", "—", "no CPU while idle")
    f3.ours = Cell(
        max(busy["cpu_fraction"], none["cpu_fraction"]),
        f"{busy['ticks']} ticks, {busy['wakeups']} wake-ups in {window:.0f} s with {QUIET} quiet tasks "
        f"running; {none['ticks']} ticks, {none['wakeups']} wake-ups with none "
        f"({TASKS - RUNNING} reservations both times); RSS {rss_kib(proc.pid) / 1024:.0f} MB",
    )
    f3.met = busy["ticks"] == 0 and none["ticks"] == 0
    f3.notes.append(
        "utime+stime of /proc/PID/stat (ticks of 10 ms), and the context switches of every thread:"
        " a launcher's death is learnt from its pidfd, the event thread sleeps in poll() with no timeout"
        " but the next real deadline, uvicorn's main loop waits on an event (no 0.1 s tick)"
    )
    f3.raw = {"quiet_tasks": busy, "no_task": none, "window_s": window, "rss_kib": rss_kib(proc.pid)}
    log(f"web: {f1.ours.text}; {f2.ours.text}; {f3.ours.text}")
    return [f1, f2, f3]
