"""A host's network really cut: the host is a network namespace of its own (with pid and UTS
namespaces, as in test_many_hosts.py), joined to this one by a veth pair, and a private
cluster listens on TCP on this end of the link. Bringing the link down drops every packet
(no reset: what a pulled cable does), for less than the lease (nothing happens) and for
more (the task is stopped before its lease runs out; another host archives it as `host
lost`; back on the network, the host's next command records the real end in its place).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import TW, Taskwatcher, wait_for
from support import kill_own_processes

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="namespaces as hosts need root and unshare",
    ),
    pytest.mark.timeout(180),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Link:
    """A network namespace ``ns`` joined to this one by a veth pair: this end ``near`` (the
    server's address), the host's end ``far`` (inside ``ns``)."""

    def __init__(self) -> None:
        n = os.getpid() % (1 << 14) * 4  # a /30 of 10.213.0.0/16 of this process's own
        self.ns, self.near_if, self.far_if = f"twh{os.getpid()}", f"twr{os.getpid()}", f"twf{os.getpid()}"
        self.near, self.far = (f"10.213.{(n + k) >> 8}.{(n + k) & 255}" for k in (1, 2))
        ip("netns", "add", self.ns)
        ip("link", "add", self.near_if, "type", "veth", "peer", "name", self.far_if)
        ip("link", "set", self.far_if, "netns", self.ns)
        ip("addr", "add", f"{self.near}/30", "dev", self.near_if)
        ip("link", "set", self.near_if, "up")
        ip("-n", self.ns, "addr", "add", f"{self.far}/30", "dev", self.far_if)
        ip("-n", self.ns, "link", "set", self.far_if, "up")
        ip("-n", self.ns, "link", "set", "lo", "up")

    def cut(self) -> None:
        # The far end loses its carrier, as a host whose cable is pulled: its interface and
        # routes stay, what it sends is lost, nothing answers (no reset, no "unreachable").
        ip("link", "set", self.near_if, "down")

    def mend(self) -> None:
        ip("link", "set", self.near_if, "up")

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            ip("link", "del", self.near_if)
        with contextlib.suppress(subprocess.SubprocessError):
            ip("netns", "del", self.ns)


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    if shutil.which("ip") is None:
        message = "*** network-cut test NOT RUN: no ip(8) (scripts/need-postgres installs iproute2) ***"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    made = Link()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def tcp_cluster(link: Link):
    """A private cluster of its own that also listens on TCP on this end of the link."""
    import pgcluster

    cluster = pgcluster.start_cluster(listen=link.near, clients=f"{link.far}/32")
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


def test_a_network_cut_shorter_than_the_lease_changes_nothing_a_longer_one_stops_the_task_in_time(
    link: Link, tcp_cluster, env: dict[str, str], tmp_path: Path
):
    import psycopg

    local = tcp_cluster.new_database()  # this host's way to the database: the unix socket
    dbname = local.split("?")[0].split("/")[-1]
    remote = f"postgresql://tw@{link.near}:5432/{dbname}"  # the host's: over the link
    here = Taskwatcher(local, env)  # type: ignore[arg-type]
    host_env = {**env, "XDG_STATE_HOME": str(tmp_path / "hosta-state")}  # the host's own disk
    (tmp_path / "hosta-state").mkdir()
    flag = tmp_path / "term"
    lease, grace = 12.0, 0.5  # renewed every 2 s; stopped once 6.5 s pass without a renewal
    task = f'trap "date +%s.%N > {flag}; exit 143" TERM; echo up > {flag}.up; while :; do sleep 0.01; done'
    ns = [
        "ip",
        "netns",
        "exec",
        link.ns,
        "unshare",
        "--pid",
        "--uts",
        "--fork",
        "--mount-proc",
        "--kill-child",
    ]
    on_host = [*ns, "--", "sh", "-c", 'hostname hosta && exec "$@"', "sh", *TW]
    proc = subprocess.Popen(
        [*on_host, "launch", "--db", remote, "--name", "cut", "--lease", str(lease), "--grace", str(grace),
         "sh", "-c", task],
        env=host_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    db = psycopg.connect(local, autocommit=True)
    try:
        wait_for(lambda: Path(f"{flag}.up").exists() or proc.poll() is not None, 60, "the task on hosta")
        assert proc.poll() is None, "the launch on hosta ended"
        ((taskid, pid, host),) = db.execute("SELECT id, pid, host FROM taskwatcher.tasks").fetchall()
        assert host == "hosta"

        # A cut shorter than the lease: the launcher renews again once the link is back.
        link.cut()
        time.sleep(2.0)  # the length of the cut is what is tested: not a synchronisation
        link.mend()
        (mended,) = db.execute("SELECT now()").fetchone()
        renewed = "SELECT leaseuntil >= %s + make_interval(secs => %s) FROM taskwatcher.tasks WHERE id = %s"
        wait_for(lambda: db.execute(renewed, (mended, lease, taskid)).fetchone()[0], 30, "a renewal")
        assert not flag.exists() and proc.poll() is None
        assert [(t["pid"], t["status"]) for t in here.tasks().values()] == [(pid, "RUNNING")]
        assert here.history() == {}

        # A cut longer than the lease: the task is stopped while its lease still holds.
        (lease_end,) = db.execute(
            "SELECT leaseuntil FROM taskwatcher.tasks WHERE id = %s", (taskid,)
        ).fetchone()
        link.cut()
        wait_for(lambda: flag.exists() and flag.read_text().strip(), 3 * lease, "the task's SIGTERM")
        stopped = float(flag.read_text())
        assert stopped < lease_end.timestamp(), "the task outlived its lease"
        proc.wait(30)  # its end could not be written: kept on its host
        # Another host (this one) archives it as `host lost` once its lease has run out.
        entry = wait_for(lambda: here.history_of(taskid), 3 * lease, "task archived by another host")
        assert entry["termerror"] == "host lost"
        assert datetime.fromtimestamp(time.time()).astimezone() >= lease_end
        # Back on the network, the host's next command records the real end in its place.
        link.mend()
        back = subprocess.run([*on_host, "control", "--db", remote, "--list", "--json"], env=host_env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert back.returncode == 0, back.stderr
        entries = [e for e in here.history().values() if e["taskid"] == taskid]
        assert len(entries) == 1, entries
        assert entries[0]["termerror"].startswith("lease lost: the database could not be reached")
        assert entries[0]["termsignal"] == "SIGTERM" and entries[0]["host"] == "hosta"
        assert not list((tmp_path / "hosta-state").glob("taskwatcher/postgres/*-pending/*"))
    finally:
        link.mend()
        db.close()
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=15)
        print(f"hosta: {err}")
        kill_own_processes(Path(env["HOME"]))
        tcp_cluster.drop_database(local)
