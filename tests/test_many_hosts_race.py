"""200 launches at once over 4 namespace "hosts", all racing with ``--unique`` for a few
names on one PostgreSQL database: every name is held at most once at any moment, every
launch either ran or was refused (exit 125, one line naming the holder), nothing is left
behind, no id is handed out twice.

As light as 200 launches can be: foreground ones (one process each, no detached supervisor),
forked by one Python per host that imported taskwatcher once (tests/helpers/forked_launches.py:
each child runs the CLI's main() on its own command line and opens its own connection; only
the interpreter's start-up and the imports, a launch's CPU nearly all, are not repeated), and
tasks of a few execs of the shell."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from conftest import Taskwatcher, wait_for
from support import HELPERS, HOST_NAMESPACES, kill_own_processes, own_processes

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="namespaces as hosts need root and unshare",
    ),
    pytest.mark.timeout(300),  # 200 Python start-ups on 2 shared cores
]

HOSTS = ("hosta", "hostb", "hostc", "hostd")
PER_HOST = 50
NAMES = 5  # launch i wants name n{i % NAMES}: 40 launches per name, from every host


class Overlaps:
    """Samples the tasks table while the launches run: a name held by two rows at once (a
    reservation, a claim or a running task) is recorded. The tasks' own check (below) is
    exact for the time they run; this one covers the rows around them."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.seen: list[tuple[str, int]] = []
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        twice = (
            "SELECT name, count(*) FROM taskwatcher.tasks WHERE name IS NOT NULL"
            " GROUP BY name HAVING count(*) > 1"
        )
        while not self.stop.wait(0.02):
            with contextlib.suppress(Exception):  # the schema may not exist yet
                self.seen += self.conn.execute(twice).fetchall()
                self.samples += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.conn.close()


def test_200_unique_launches_racing_over_four_hosts(pg_url: str, env: dict[str, str], tmp_path: Path):
    tw = Taskwatcher(pg_url, env)  # type: ignore[arg-type]
    home = Path(env["HOME"])
    home.mkdir(exist_ok=True)
    marks, out, go = tmp_path / "held", tmp_path / "out", tmp_path / "go"
    marks.mkdir()
    out.mkdir()
    from taskwatcher.store import open_store

    open_store(pg_url).close()  # the tables made: the race is of launches, not of the schema

    # The task: holds its name's mark while it runs; a mark already there is a name held twice.
    task = f'mkdir {marks}/"$1" 2>/dev/null || touch {marks}/TWICE-"$1"; sleep 0.3; rmdir {marks}/"$1"'
    machines = []
    watch = Overlaps(pg_url)
    try:
        for h, host in enumerate(HOSTS):
            launches = []
            for k in range(PER_HOST):
                i = h * PER_HOST + k
                name = f"n{i % NAMES}"
                argv = ["launch", "--db", pg_url, "--unique", "--name", name, "--info1", f"L{i}",
                        "--", "sh", "-c", task, "sh", name]  # fmt: skip
                launches.append([i, argv])
            plan = tmp_path / f"{host}.json"
            plan.write_text(json.dumps(launches))
            script = f'hostname {host} && exec "$@"'
            helper = [sys.executable, str(HELPERS / "forked_launches.py"), str(plan), str(out), str(go)]
            machines.append(subprocess.Popen([*HOST_NAMESPACES, "sh", "-c", script, "sh", *helper], env=env))
        # Every host forks its 50 launches at the same moment, once all four are ready.
        wait_for(lambda: len(list(tmp_path.glob("*.json.ready"))) == len(HOSTS), 120, "4 hosts ready")
        go.touch()
        for m in machines:
            assert m.wait(240) == 0
        left = own_processes(home)  # nothing left behind: every launcher and task is gone
        assert not left, [p.cmdline() for p in left]
    finally:
        watch.close()
        for m in machines:
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(m.pid).children():
                    p.kill()
            m.kill()
            m.wait(15)
        kill_own_processes(home)

    ran, refused, holders = set(), set(), {}
    for i in range(len(HOSTS) * PER_HOST):
        rc = (out / f"{i}.rc").read_text().strip()
        err = (out / f"{i}.err").read_text()
        if rc == "0":
            assert err == "", f"launch {i} ran but said {err!r}"
            ran.add(f"L{i}")
        else:
            assert rc == "125", f"launch {i}: exit {rc}, {err!r}"
            assert err.count("\n") == 1 and "Traceback" not in err, err
            found = re.search(rf"name 'n{i % NAMES}' is held by task (\d+)", err)
            assert found, err
            refused.add(f"L{i}")
            holders[f"L{i}"] = int(found.group(1))
    assert len(ran) + len(refused) == 200
    assert ran and refused, "no race: every launch ran, or none did"

    # Every name held at most once at any moment.
    assert not list(marks.glob("TWICE-*")), "a task ran while another held its name"
    assert watch.samples > 10 and not watch.seen, watch.seen
    # Nothing left behind: no row, no mark, no end kept aside.
    assert tw.tasks() == {}
    assert not list(marks.iterdir())
    assert not list(Path(env["XDG_STATE_HOME"]).glob("taskwatcher/postgres/*-pending/*"))
    # Every launch that ran has its one history row; none that was refused has one; ids are unique.
    history = list(tw.history().values())
    by_launch = {e["info1"]: e for e in history if e["info1"]}
    assert set(by_launch) == ran
    assert len(by_launch) == len([e for e in history if e["info1"]])
    ids = [e["taskid"] for e in history]
    assert len(ids) == len(set(ids))
    assert all(e["exitcode"] == 0 and e["termerror"] == "" for e in by_launch.values())
    # Races across hosts: some launch was refused because a task on another host held the name.
    host_of_id = {e["taskid"]: e["host"] for e in history}
    host_of_launch = {f"L{h * PER_HOST + k}": host for h, host in enumerate(HOSTS) for k in range(PER_HOST)}
    assert any(
        host_of_id.get(holder) not in (None, host_of_launch[launch]) for launch, holder in holders.items()
    )
