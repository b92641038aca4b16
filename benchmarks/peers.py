"""N quiet tasks held by ours, task-spooler and supervisord, side by side.

For N = 10, 50, 200 `sleep 3600` tasks each supervisor is started with all N running,
then, the three at the same time: the supervisor's own memory (USS of its processes,
the tasks not counted) ÷ N, its CPU over a window (a minute in a full run), what one
listing costs, and the time to stop every task. Each peer is a small class with the
same four steps, so the figure reads the same for all three:

- **ours**: one launcher per task (`launch --detach --name bench-peers -- sleep 3600`);
  listing is `control --list --json`, stopping `control --killall bench-peers`.
- **task-spooler** (Debian's `tsp`): one server, and one small `tsp` process per running
  job that waits for it; `tsp -S N` lets N run at once, `tsp -n` keeps no output.
  Listing is `tsp -l`; it has no "stop all": `tsp -k ID` for each job (`tsp -K` stops the
  server and leaves the jobs running).
- **supervisord** (PyPI `supervisor`): one daemon with `numprocs = N` programs;
  listing is `supervisorctl status`, stopping `supervisorctl stop all`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import dbgen
from common import BenchError, alive, cpu_ns, log, median, run, uss_pss_kib, wait_for
from figures import Cell, Ctx, Figure
from instructions import callgrind, mb, mi, start_running


class Ours:
    name = "ours"

    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx, self.n = ctx, n
        self.db = ctx.fresh_dir("peers-ours") + "/peers.db"
        dbgen.create_ours(ctx.tools, self.db)

    def start(self) -> None:
        self.launchers = start_running(self.ctx, self.db, self.n, "bench-peers")

    def supervisor_pids(self) -> list[int]:
        return self.launchers

    def list_argv(self) -> list[str]:
        return [*self.ctx.tools.ours, "control", "--db", self.db, "--list", "--json"]

    def stop_all(self) -> None:
        run([*self.ctx.tools.ours, "control", "--db", self.db, "--killall", "bench-peers"])

    def close(self) -> None:
        pass


class TaskSpooler:
    name = "task-spooler"

    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx, self.n = ctx, n
        folder = ctx.fresh_dir("peers-tsp")
        self.socket = os.path.join(folder, "socket")
        # Its own server: TS_SOCKET names it; TMPDIR holds the jobs' output files.
        self.env = {**os.environ, "TS_SOCKET": self.socket, "TMPDIR": folder, "TS_SLOTS": str(n)}

    def tsp(self, *args: str) -> str:
        return run(["tsp", *args], env=self.env)

    def start(self) -> None:
        self.tsp("-S", str(self.n))
        for _ in range(self.n):
            self.tsp("-n", "sleep", "3600")
        wait_for(lambda: self.tsp("-l").count(" running ") == self.n, 30, "tsp's jobs to run")
        self.jobs = [line.split()[0] for line in self.tsp("-l").splitlines()[1:] if " running " in line]
        self.tasks = [int(self.tsp("-p", j)) for j in self.jobs]

    def supervisor_pids(self) -> list[int]:
        """The server and the per-job `tsp` processes: every live tsp process of our socket."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/exe") != shutil.which("tsp"):
                    continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"TS_SOCKET={self.socket}".encode() in fh.read().split(b"\0") and alive(int(entry)):
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def list_argv(self) -> list[str]:
        return ["env", f"TS_SOCKET={self.socket}", "tsp", "-l"]

    def stop_all(self) -> None:
        for job in self.jobs:
            self.tsp("-k", job)
        wait_for(lambda: not any(alive(p) for p in self.tasks), 30, "tsp's jobs to stop")

    def close(self) -> None:
        self.tsp("-K")


class Supervisord:
    name = "supervisord"

    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx, self.n = ctx, n
        folder = ctx.fresh_dir("peers-supervisord")
        bindir = os.path.dirname(ctx.tools.harness_python)
        self.supervisord, self.ctl = f"{bindir}/supervisord", f"{bindir}/supervisorctl"
        self.conf = os.path.join(folder, "supervisord.conf")
        self.pidfile = os.path.join(folder, "supervisord.pid")
        with open(self.conf, "w") as fh:
            fh.write(
                f"[unix_http_server]\nfile={folder}/supervisor.sock\n\n"
                f"[supervisord]\nlogfile={folder}/supervisord.log\npidfile={self.pidfile}\n"
                f"childlogdir={folder}\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl=unix://{folder}/supervisor.sock\n\n"
                f"[program:sleep]\ncommand=sleep 3600\nnumprocs={n}\n"
                "process_name=%(program_name)s_%(process_num)03d\n"
                "startsecs=0\nautorestart=false\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
            )

    def start(self) -> None:
        run([self.supervisord, "-c", self.conf])
        wait_for(lambda: self.status().count(" RUNNING ") == self.n, 60, "supervisord's programs to run")
        with open(self.pidfile) as fh:
            self.pid = int(fh.read())

    def status(self) -> str:
        return run([self.ctl, "-c", self.conf, "status"], ok=(0, 1, 2, 3, 4, 7))

    def supervisor_pids(self) -> list[int]:
        return [self.pid]

    def list_argv(self) -> list[str]:
        return [self.ctl, "-c", self.conf, "status"]

    def stop_all(self) -> None:
        run([self.ctl, "-c", self.conf, "stop", "all"])

    def close(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        wait_for(lambda: not alive(self.pid), 30, "supervisord to exit")


def available(ctx: Ctx) -> list[type]:
    peers: list[type] = [Ours]
    if shutil.which("tsp"):
        peers.append(TaskSpooler)
    else:
        log("  task-spooler (tsp) not installed: its column stays empty")
    if os.path.exists(os.path.join(os.path.dirname(ctx.tools.harness_python), "supervisord")):
        peers.append(Supervisord)
    else:
        log("  supervisord not installed in benchmarks/.venv: its column stays empty")
    return peers


def memory_kib(peer) -> int:
    return sum(uss_pss_kib(p)[0] for p in peer.supervisor_pids())


def cpu_over(peers: list, window: float) -> dict[str, float]:
    """ms of CPU per minute of each peer's supervising processes, all watched over the same window."""
    before = {p.name: sum(cpu_ns(x) for x in p.supervisor_pids()) for p in peers}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    after = {p.name: sum(cpu_ns(x) for x in p.supervisor_pids()) for p in peers}
    return {k: (after[k] - before[k]) / 1e6 / dt * 60 for k in before}


def list_cost(ctx: Ctx, peer) -> dict[str, list[float]]:
    """One listing: the client's instructions (callgrind) and the server's CPU during it (ns)."""
    client, server = [], []
    servers = [] if isinstance(peer, Ours) else peer.supervisor_pids()
    for _ in range(ctx.sizes.instr_reps):
        before = sum(cpu_ns(x) for x in servers)
        client.append(callgrind(ctx, peer.list_argv()))
        server.append((sum(cpu_ns(x) for x in servers) - before) / 1e6)
    return {"client instructions": client, "server ms": server}


def stop_time(peer) -> float:
    t0 = time.perf_counter()
    peer.stop_all()
    return time.perf_counter() - t0


def peer_scaling(ctx: Ctx) -> list[Figure]:
    s = ctx.sizes
    rows = []
    for n in s.peers_n:
        peers = [cls(ctx, n) for cls in available(ctx)]
        try:
            for p in peers:
                log(f"  N={n}: starting {p.name}")
                p.start()
            time.sleep(2)  # past start-up
            row = {"n": n, "memory_kib": {p.name: memory_kib(p) for p in peers}}
            log(f"  N={n}: CPU over {s.peers_window:.0f} s")
            row["cpu_ms_per_min"] = cpu_over(peers, s.peers_window)
            row["list"] = {p.name: list_cost(ctx, p) for p in peers}
            row["stop_s"] = {p.name: stop_time(p) for p in peers}
        finally:
            for p in peers:
                try:
                    p.close()
                except (BenchError, OSError) as e:
                    log(f"  {p.name}: {e}")
        log(f"  N={n}: {json.dumps({k: v for k, v in row.items() if k != 'list'})}")
        rows.append(row)
    ctx.scaling["peers"] = rows
    return [_peer_figure(rows, key) for key in ("memory", "cpu", "list", "stop")]


_TITLES = {
    "memory": (
        "supervisor memory per task (USS ÷ N; tasks not counted)",
        lambda v, n: f"{mb(v / n)} (all: {mb(v)})",
    ),
    "cpu": ("supervisor CPU while N tasks are quiet, ms per minute", lambda v, n: f"{v:.1f} ms"),
    "list": ("one listing: client instructions + server CPU", None),
    "stop": ("time to stop all N tasks", lambda v, n: f"{v * 1000:.0f} ms"),
}


def _peer_cell(rows: list[dict], key: str, name: str) -> Cell:
    parts = []
    for row in rows:
        n = row["n"]
        if key == "list":
            cost = row["list"].get(name)
            if cost is None:
                return Cell(None, "—")
            text = f"{mi(median(cost['client instructions']))}"
            if name != "ours":
                text += f" + {median(cost['server ms']):.1f} ms"
        else:
            field = {"memory": "memory_kib", "cpu": "cpu_ms_per_min", "stop": "stop_s"}[key]
            if name not in row[field]:
                return Cell(None, "—")
            text = _TITLES[key][1](row[field][name], n)
        parts.append(f"N={n}: {text}")
    return Cell(None, "; ".join(parts))


def _peer_figure(rows: list[dict], key: str) -> Figure:
    f = Figure(f"peers-{key}", _TITLES[key][0], "task-spooler, supervisord", "—")
    f.ours = _peer_cell(rows, key, "ours")
    f.peers = {name: _peer_cell(rows, key, name) for name in ("task-spooler", "supervisord")}
    if key == "list":
        f.notes.append(
            "client instructions under callgrind (ours does all its work in the client); the peers' "
            "servers answer the client: their CPU during the call is read from /proc schedstat"
        )
    f.raw = {"rows": rows}
    return f


def per_task_uss(ctx: Ctx, name: str) -> float | None:
    """KiB of supervisor memory per task at the largest N (for the goals table)."""
    rows = ctx.scaling.get("peers") or []
    if not rows or name not in rows[-1]["memory_kib"]:
        return None
    return rows[-1]["memory_kib"][name] / rows[-1]["n"]
