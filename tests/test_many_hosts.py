"""Many hosts, one PostgreSQL database: "hosts" are pid and UTS namespaces of their own
(``unshare --pid --uts --fork --mount-proc --kill-child``), so their pids really collide
and each has its own host name; this test process is one more host. Real faults: a host
killed whole, a launcher stopped past its lease, the server stopped and restarted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import TW, Taskwatcher, wait_for
from support import HOST_NAMESPACES, kill_own_processes, one_line_error

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="namespaces as hosts need root and unshare",
    ),
    pytest.mark.timeout(180),  # several Python launchers start at once: slow on a loaded machine
]


@pytest.fixture
def tw(pg_url: str, env: dict[str, str]) -> Taskwatcher:
    return Taskwatcher(pg_url, env)  # type: ignore[arg-type]


class Host:
    """A host: one namespace of its own per launch (its launcher is pid 1 there)."""

    def __init__(self, name: str, tw: Taskwatcher) -> None:
        self.name, self.tw = name, tw
        self.procs: list[subprocess.Popen] = []

    def launch(self, *args: str, own_disk: bool = False) -> subprocess.Popen:
        """``own_disk``: the state folder (logs, kept-aside ends) is the host's own, a tmpfs
        mounted over it in the namespace: what this host cannot see."""
        script = f'hostname {self.name} && exec "$@"'
        if own_disk:
            script = f'mount -t tmpfs tmpfs "$XDG_STATE_HOME" && {script}'
        cmd = [*HOST_NAMESPACES, "sh", "-c", script, "sh", *TW, "launch", "--db", str(self.tw.db), *args]
        proc = subprocess.Popen(
            cmd, env=self.tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def launcher(self, proc: subprocess.Popen) -> psutil.Process:
        """The launcher of a launch (the namespace's pid 1), as this host sees it."""

        def find():
            for p in psutil.Process(proc.pid).children(recursive=True):
                if "launch" in p.cmdline():
                    return p
            return None

        return wait_for(find, 60, "the launcher in its namespace")

    def kill_whole(self, proc: subprocess.Popen) -> None:
        """SIGKILL every process of the launch's namespace: its pid 1 dies, and the kernel
        kills the rest (not unshare's --kill-child: the launcher clears its parent-death signal)."""
        for p in psutil.Process(proc.pid).children():
            p.kill()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    self.kill_whole(proc)
                proc.kill()
            _, err = proc.communicate(timeout=15)
            if err:
                print(f"{self.name}: {err}")  # shown with a failure


@pytest.fixture
def hosts(tw, tmp_path: Path):
    made: list[Host] = []

    def make(name: str) -> Host:
        made.append(Host(name, tw))
        return made[-1]

    yield make
    for host in made:
        host.close()
    kill_own_processes(tmp_path / "home")


# What one `control` command takes to start and answer on PostgreSQL on a loaded machine
# (psycopg's import alone is 0.3 s at load 100): the polling command's own part of a latency.
COMMAND_START = 1.0


def running(tw, name: str, timeout: float = 60) -> tuple[str, dict]:
    def find():
        for tid, t in tw.tasks().items():
            if t["name"] == name and t["pid"]:
                return tid, t
        return None

    return wait_for(find, timeout, f"task {name} running")


def ended(tw, taskid: str, timeout: float = 60) -> dict:
    return wait_for(lambda: tw.history_of(taskid), timeout, f"task {taskid} in history")


# What a task's SIGTERM trap runs to note the moment: the shell's own builtins, no process
# forked (a forked `date` is a newcomer of the stopping tree, SIGTERMed itself within 50 ms,
# maybe before it wrote): the seconds since boot, which sigterm_time() makes unix seconds.
NOTE_TERM = 'read up idle < /proc/uptime; echo "$up" > {flag}'


def trapping(flag: Path) -> list[str]:
    """A task that notes when SIGTERM reaches it (:func:`sigterm_time`) and exits; it makes
    ``FLAG.set`` once its trap is set (:func:`trap_set`)."""
    noted = NOTE_TERM.format(flag=flag)
    return ["sh", "-c", f"trap '{noted}; exit 143' TERM; : > {flag}.set; while true; do sleep 0.01; done"]


def sigterm_time(flag: Path) -> float | None:
    """When the trapping task got its SIGTERM, in unix seconds (to 10 ms); None if not yet."""
    text = flag.read_text().strip() if flag.exists() else ""
    return float(text) + time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) if text else None


def trap_set(*flags: Path) -> None:
    """Wait until each trapping task has set its trap (a SIGTERM before that would kill it unnoted)."""
    for flag in flags:
        wait_for(Path(f"{flag}.set").exists, 60, "the task's trap set")


def test_every_hosts_tasks_are_listed_with_their_host_and_filtered_by_host(tw, hosts):
    a, b = hosts("hosta"), hosts("hostb")
    a.launch("--name", "ja", "sleep", "300")
    b.launch("--name", "jb", "sleep", "300")
    ida, ta = running(tw, "ja")
    idb, tb = running(tw, "jb")
    assert (ta["host"], tb["host"]) == ("hosta", "hostb")
    assert ta["pid"] == tb["pid"]  # each launcher is pid 1 of its namespace: the pids collide
    table = tw.run("control", "--list", check=True).stdout
    header, *lines = table.splitlines()
    assert "host" in header.split()
    assert any("hosta" in line and line.split()[0] == ida for line in lines)
    assert list(tw.json("control", "--list", "--json", "--host", "hostb")) == [idb]
    # Nothing of another host is judged from here: the rows stay running, nothing is signalled.
    assert tw.run("control", "--update", check=True).returncode == 0
    assert set(tw.tasks()) == {ida, idb}


def test_a_kill_from_another_host_reaches_the_task_at_once(tw, hosts, tmp_path, pg_url):
    from taskwatcher.store import open_store

    flag = tmp_path / "term"
    host = hosts("hosta")
    proc = host.launch("--name", "victim", *trapping(flag))
    taskid, _ = running(tw, "victim")
    trap_set(flag)
    with open_store(pg_url) as store:
        asked = time.time()
        assert store.request_stop(int(taskid), "killed by request") is not None
    latency = wait_for(lambda: sigterm_time(flag), 10, "the task's SIGTERM") - asked
    print(f"kill latency across hosts: {latency * 1000:.0f} ms")
    assert latency < 1.0, f"SIGTERM reached the task {latency:.3f} s after the request"
    assert proc.wait(15) == 143
    entry = ended(tw, taskid)
    assert (entry["termerror"], entry["host"]) == ("killed by request", "hosta")


def test_feedback_written_on_another_host_is_seen_here_within_a_second(tw, hosts, tmp_path):
    # The feedback file is in a folder both see, but a task of another host is never read
    # from its file here (feedstate: only on its own host): what is seen came through the
    # database, saved by its launcher as the task wrote it.
    go, written = tmp_path / "go", tmp_path / "written"
    script = (
        f'while [ ! -e {go} ]; do sleep 0.01; done; echo "[step]two" >> "$TASKWATCHER_FEEDBACK";'
        f" date +%s.%N > {written}.tmp; mv {written}.tmp {written}; sleep 300"
    )
    hosts("hosta").launch("--name", "fed", "--feedpath", str(tmp_path), "sh", "-c", script)
    taskid, _ = running(tw, "fed")
    assert tw.json("control", "--feedback", taskid) == {}
    go.touch()
    seen = wait_for(
        lambda: tw.json("control", "--feedback", taskid).get("step") == "two" and time.time(),
        10,
        "the feedback",
    )
    at = float(wait_for(lambda: written.exists() and written.read_text().strip(), 5, "the time written"))
    print(f"feedback written on hosta -> seen here: {(seen - at) * 1000:.0f} ms (a command's start included)")
    assert seen - at < 1.0 + COMMAND_START, f"seen {seen - at:.2f} s after it was written"


@pytest.mark.parametrize("its_state", ["this host's path", "a path of its own"])
def test_a_log_on_another_hosts_disk_is_said_to_be_there(tw, hosts, tmp_path, its_state):
    host = hosts("hosta")
    if its_state == "a path of its own":  # (its logs folder is then not this host's either)
        (tmp_path / "hosta-state").mkdir()
        host.tw = Taskwatcher(tw.db, {**tw.env, "XDG_STATE_HOME": str(tmp_path / "hosta-state")})
    host.launch("--name", "talk", "sh", "-c", "echo hello; sleep 300", own_disk=True)
    taskid, task = running(tw, "talk")
    for args in (("--log", taskid), ("--log", taskid, "--follow")):
        proc = tw.run("control", *args)
        assert proc.returncode == 1
        assert one_line_error(proc) == (
            f"taskwatcher: the log of task {taskid} is on host hosta: {task['logfile']}"
            " (read it there, or give --log a shared folder)"
        )
    shown = tw.json("control", "--show", taskid, "--json")  # the rest of --show still answers
    assert shown["host"] == "hosta" and not shown["finished"]


def test_a_log_in_a_folder_both_hosts_see_is_read_and_followed_from_the_other_host(tw, hosts, tmp_path):
    shared, go = tmp_path / "shared", tmp_path / "go"
    shared.mkdir()
    logfile = shared / "talk.log"
    task = f"echo first; until [ -e {go} ]; do sleep 0.01; done; echo second; exit 3"
    proc = hosts("hosta").launch("--name", "talk", "--log", str(logfile), "sh", "-c", task)
    taskid, row = running(tw, "talk")
    assert row["host"] == "hosta" != os.uname().nodename
    wait_for(lambda: logfile.exists() and logfile.read_text() == "first\n", 30, "the task's first line")
    assert tw.run("control", "--log", taskid, check=True).stdout == "first\n"
    # --follow from this host: what the task on hosta writes, until it ends there.
    follow = [*TW, "control", "--db", str(tw.db), "--log", taskid, "--follow"]
    follower = subprocess.Popen(follow, env=tw.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline() == "first\n"
        go.touch()
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert (follower.returncode, out, err) == (0, "second\n", "")
    assert proc.wait(15) == 3


def test_control_kill_on_another_host_waits_for_the_end_and_says_where(tw, hosts):
    host = hosts("hosta")
    proc = host.launch("--name", "k", "sleep", "300")
    taskid, _ = running(tw, "k")
    killed = tw.run("control", "--kill", taskid)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"task {taskid}: killed (on host hosta)"
    assert tw.history_of(taskid)["termsignal"] == "SIGTERM"  # archived before --kill returned
    assert proc.wait(15) != 0


def test_a_host_killed_whole_is_archived_as_host_lost_once_its_lease_runs_out(tw, hosts):
    host = hosts("hosta")
    proc = host.launch("--name", "gone", "--lease", "4", "sleep", "300")
    taskid, _ = running(tw, "gone")
    host.kill_whole(proc)
    proc.wait(15)
    import psycopg

    with psycopg.connect(str(tw.db), autocommit=True) as conn:
        # A lease still running: a command of another host does not guess (judged on the
        # server's clock, so that a slow command on a loaded machine is not taken for a guess).
        (until,) = conn.execute(
            "SELECT leaseuntil FROM taskwatcher.tasks WHERE id = %s", (taskid,)
        ).fetchone()
        listed = tw.tasks()
        (after,) = conn.execute("SELECT now()").fetchone()
    if after < until:
        assert taskid in listed
    entry = ended(tw, taskid)
    assert entry["termerror"] == "host lost" and entry["host"] == "hosta"


def test_a_dead_launcher_of_this_host_found_after_its_lease_ran_out_has_its_remains_killed(tw, tmp_path):
    """On its own host a dead launcher is judged as with SQLite, however late the next command
    comes: its lease having run out meanwhile does not make it a mere `host lost` (another
    host's guess), whose remains nobody stops: what is left of the task is killed here."""
    import psycopg

    pidfile = tmp_path / "escaped"
    escape = f'setsid sleep 300 & echo $! > "{pidfile}"; exec sleep 300'
    # (a lease of 6 s: a shorter one leaves a loaded machine's renewals too little room)
    launcher = tw.popen("launch", "--name", "left", "--lease", "6", "sh", "-c", escape)
    taskid, _ = running(tw, "left")
    escaped = psutil.Process(int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30,
                                          "the escaped process")))  # fmt: skip
    launcher.kill()  # its task's main process dies with it (its parent-death signal); not the escapee
    launcher.wait(15)
    with psycopg.connect(str(tw.db), autocommit=True) as conn:  # no command runs meanwhile
        lapsed = "SELECT leaseuntil < now() FROM taskwatcher.tasks WHERE id = %s"
        wait_for(lambda: conn.execute(lapsed, (taskid,)).fetchone()[0], 30, "the lease to run out")
    assert tw.run("control", "--list", check=True).returncode == 0
    entry = tw.history_of(taskid)
    assert (entry["termerror"], entry["termsignal"]) == ("launcher lost", "SIGKILL"), entry
    escaped.wait(15)  # killed: gone


def test_the_lease_is_renewed_through_a_grace_period_longer_than_it(tw, tmp_path):
    """A task that takes its time to stop (it ignores SIGTERM): its lease is still renewed
    while the grace period runs, so no other host takes it for lost meanwhile."""
    import psycopg

    flag = tmp_path / "term"
    # (the flag made by the shell itself: a forked touch would be a newcomer of the stopping
    # tree, SIGTERMed within 50 ms, maybe before it made the file)
    stubborn = ["sh", "-c", f'trap ": > {flag}" TERM; : > {flag}.set; while :; do sleep 0.05; done']
    # (a lease of 6 s, renewed every second, each renewal bounded to 1.5 s: room enough on a
    # loaded machine; unrenewed, it would run out within the 8 s of grace)
    launcher = tw.popen("launch", "--name", "slow", "--lease", "6", "--grace", "8", *stubborn)
    taskid, _ = running(tw, "slow")
    trap_set(flag)
    killing = tw.popen("control", "--kill", taskid)
    held = "SELECT leaseuntil > now() FROM taskwatcher.tasks WHERE id = %s"
    with psycopg.connect(str(tw.db), autocommit=True) as conn:
        wait_for(flag.exists, 30, "the SIGTERM")
        while (row := conn.execute(held, (taskid,)).fetchone()) is not None:  # until it is archived
            assert row[0], "the lease ran out during the grace period"
            time.sleep(0.1)  # a sample every 0.1 s: the lease lasts 6 s
    assert killing.wait(30) == 0 and launcher.wait(30) != 0
    entry = tw.history_of(taskid)
    assert (entry["termerror"], entry["termsignal"]) == ("killed by request", "SIGKILL"), entry


def test_a_launcher_stopped_past_its_lease_stops_its_task_and_its_real_end_replaces_host_lost(tw, hosts):
    host = hosts("hosta")
    proc = host.launch("--name", "frozen", "--lease", "1", "--grace", "1", "sleep", "300")
    taskid, _ = running(tw, "frozen")
    launcher = host.launcher(proc)
    launcher.send_signal(signal.SIGSTOP)
    try:
        assert ended(tw, taskid)["termerror"] == "host lost"
    finally:
        launcher.send_signal(signal.SIGCONT)
    proc.wait(15)  # it finds its row archived: it stops its task and records the real end
    entries = [e for e in tw.history().values() if str(e["taskid"]) == taskid]
    assert len(entries) == 1, entries
    assert entries[0]["termerror"] == "its row was archived meanwhile (lease lost)"
    assert entries[0]["termsignal"] == "SIGTERM"


def test_a_launcher_that_cannot_reach_the_database_stops_its_task_before_its_lease_runs_out(
    tw, hosts, pg_cluster, tmp_path
):
    flag = tmp_path / "term"
    host = hosts("hosta")
    lease, grace = 4.0, 0.5
    proc = host.launch("--name", "cut", "--lease", str(lease), "--grace", str(grace), *trapping(flag))
    taskid, _ = running(tw, "cut")
    trap_set(flag)
    pg_cluster.stop("immediate")
    cut = time.time()
    try:
        wait_for(flag.exists, 3 * lease, "the task's SIGTERM")
        stopped = wait_for(lambda: sigterm_time(flag), 5, "the time of the SIGTERM")
        assert stopped - cut < lease, "the task outlived the lease"
        proc.wait(15)
    finally:
        pg_cluster.start()
    # Its end was kept aside on its host (a folder this host shares): the next command records it.
    try:
        entry = ended(tw, taskid)
    except AssertionError as e:  # (it failed once in some twenty runs: what was left, for the next look)
        kept = sorted(str(p) for p in Path(tw.env["XDG_STATE_HOME"]).glob("taskwatcher/postgres/*-pending/*"))
        raise AssertionError(f"{e}; kept aside: {kept}; tasks: {tw.tasks()}") from None
    assert entry["termerror"].startswith("lease lost: the database could not be reached")
    assert [e["taskid"] for e in tw.history().values()].count(int(taskid)) == 1


def test_launchers_listen_again_after_the_server_restarts_and_a_kill_reaches_them_at_once(
    tw, hosts, pg_cluster, tmp_path
):
    import psycopg

    a, b = hosts("hosta"), hosts("hostb")
    # Renewed every 20 s: a kill that reached the task within 10 s came by NOTIFY on the
    # connection made again after the restart, not by the next renewal's read of the row.
    slow = ("--lease", "120", "--grace", "0.5")
    flags = [tmp_path / "term-a", tmp_path / "term-b"]
    procs = [
        a.launch("--name", "r1", *slow, *trapping(flags[0])),
        b.launch("--name", "r2", *slow, *trapping(flags[1])),
    ]
    ids = [running(tw, "r1")[0], running(tw, "r2")[0]]
    trap_set(*flags)
    pg_cluster.restart()
    with psycopg.connect(str(tw.db), autocommit=True) as conn:  # each launcher connected again
        (restarted,) = conn.execute("SELECT now()").fetchone()
        renewed = "SELECT count(*) FROM taskwatcher.tasks WHERE leaseuntil >= %s + interval '120 s'"
        wait_for(lambda: conn.execute(renewed, (restarted,)).fetchone()[0] == 2, 60, "2 renewals")
    for taskid, flag in zip(ids, flags, strict=True):
        asked = time.time()
        killed = tw.run("control", "--kill", taskid)
        assert killed.returncode == 0 and "killed (on host" in killed.stdout, killed.stderr
        latency = wait_for(lambda f=flag: sigterm_time(f), 10, "SIGTERM") - asked
        assert latency < 10, f"the kill came {latency:.1f} s after --kill: by a renewal, not NOTIFY"
    for proc in procs:
        proc.wait(15)
    assert [tw.history_of(i)["termerror"] for i in ids] == ["killed by request"] * 2


class Machine:
    """A host running many detached tasks: one namespace whose pid 1 is a sleep, the
    launches started in it one after the other (their supervisors stay in it)."""

    def __init__(self, name: str, tw: Taskwatcher, launches: list[list[str]]) -> None:
        lines = [f"hostname {name}"]
        for args in launches:
            words = " ".join(f"'{w}'" for w in [*TW, "launch", "--db", str(tw.db), "--detach", *args])
            lines.append(f"{words} >/dev/null 2>>{tw.env['HOME']}/{name}.err")
        lines.append("exec sleep 3600")
        self.proc = subprocess.Popen([*HOST_NAMESPACES, "sh", "-c", "\n".join(lines)], env=tw.env)

    def close(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children():
                p.kill()  # pid 1 of the namespace: the kernel kills the rest
        self.proc.kill()
        self.proc.wait(15)


@pytest.fixture
def machines(tw, tmp_path: Path):
    made: list[Machine] = []
    (tmp_path / "home").mkdir(exist_ok=True)

    def make(name: str, launches: list[list[str]]) -> Machine:
        made.append(Machine(name, tw, launches))
        return made[-1]

    yield make
    for m in made:
        m.close()
    kill_own_processes(tmp_path / "home")


def test_of_unique_launches_racing_on_three_hosts_exactly_one_runs(tw, machines):
    for name in ("hosta", "hostb", "hostc"):
        machines(name, [["--unique", "--name", "only", "sleep", "300"]] * 2)
    # Every launch runs or is refused (125, one line, nothing recorded): wait until five were.
    home = Path(tw.env["HOME"])
    wait_for(
        lambda: sum((home / f"{h}.err").read_text().count("not started") for h in ("hosta", "hostb", "hostc")
                    if (home / f"{h}.err").exists()) == 5,
        90, "five launches refused",
    )  # fmt: skip
    running_only = [t for t in tw.tasks().values() if t["name"] == "only"]
    assert len(running_only) == 1 and running_only[0]["status"] == "RUNNING"


def test_twenty_tasks_on_three_hosts_survive_a_server_restart_and_are_all_killed(tw, machines, pg_cluster):
    quick = ["--lease", "12", "--grace", "1"]
    counts = {"hosta": 7, "hostb": 7, "hostc": 6}
    for name, n in counts.items():
        machines(name, [[*quick, "--name", "fleet", "sleep", "300"]] * n)
    wait_for(lambda: len([t for t in tw.tasks().values() if t["pid"]]) == 20, 120, "20 tasks running")
    before = {tid: (t["host"], t["pid"]) for tid, t in tw.tasks().items()}
    assert sorted(h for h, _ in before.values()) == sorted(h for h, n in counts.items() for _ in range(n))
    pg_cluster.restart()
    import psycopg

    with psycopg.connect(str(tw.db), autocommit=True) as conn:  # every launcher renews after the restart
        (restarted,) = conn.execute("SELECT now()").fetchone()
        renewed_since = "SELECT count(*) FROM taskwatcher.tasks WHERE leaseuntil > %s + interval '12 s'"
        wait_for(lambda: conn.execute(renewed_since, (restarted,)).fetchone()[0] == 20, 60, "20 renewals")
    after = {tid: (t["host"], t["pid"]) for tid, t in tw.tasks().items()}
    assert after == before  # nothing lost, nothing archived, nothing stopped
    killed = tw.run("control", "--killall", "fleet", timeout=120)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.count("killed (on host") == 20
    history = tw.history().values()
    assert sorted(str(e["taskid"]) for e in history) == sorted(before)
    assert {e["termerror"] for e in history} == {"killed by request"}


class StallingLink:
    """A unix-socket proxy in front of the cluster that can stall: connections stay open
    (nothing is reset, as through a pooler or a cut cable with TCP still alive) but no byte
    passes until it is released."""

    def __init__(self, target: str, folder: Path) -> None:
        import socket
        import threading

        self.target, self.folder = target, folder
        self.flowing = threading.Event()
        self.flowing.set()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(folder / ".s.PGSQL.5432"))
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst) -> None:
        while True:
            try:
                data = src.recv(65536)
                self.flowing.wait()  # stalled: what came is held, nothing is closed
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self.flowing.set()
        self.server.close()


def test_a_stall_shorter_than_the_lease_changes_nothing_a_longer_one_stops_the_task_in_time(
    pg_cluster, pg_url, env, tmp_path
):
    """A host's link to the database stalls (no byte passes, nothing is reset: a pulled
    cable with TCP still alive): for less than the lease nothing happens; for more, the task
    is stopped before its lease runs out, another host archives it as ``host lost``, and
    back on the network the host's next command records the real end in its place."""
    import psycopg

    folder = tmp_path / "link"
    folder.mkdir()
    link = StallingLink(os.path.join(pg_cluster.socket, ".s.PGSQL.5432"), folder)
    here = Taskwatcher(pg_url, env)  # type: ignore[arg-type]  (this host: straight to the server)
    remote = pg_url.split("?")[0] + f"?host={folder}"  # hosta's way: through the link
    host_env = {**env, "XDG_STATE_HOME": str(tmp_path / "hosta-state")}  # hosta's own disk
    (tmp_path / "hosta-state").mkdir()
    flag = tmp_path / "term"
    lease, grace = 12.0, 0.5  # renewed every 2 s; stopped once 6.5 s pass without a renewal
    noted = NOTE_TERM.format(flag=flag)
    task = f"trap '{noted}; exit 143' TERM; echo up > {flag}.up; while :; do sleep 0.01; done"
    on_host = [*HOST_NAMESPACES, "sh", "-c", 'hostname hosta && exec "$@"', "sh", *TW]
    proc = subprocess.Popen(
        [*on_host, "launch", "--db", remote, "--name", "cut", "--lease", str(lease), "--grace", str(grace),
         "sh", "-c", task],
        env=host_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    db = psycopg.connect(pg_url, autocommit=True)
    try:
        wait_for(lambda: Path(f"{flag}.up").exists() or proc.poll() is not None, 60, "the task on hosta")
        assert proc.poll() is None, "the launch on hosta ended"
        ((taskid, pid, host),) = db.execute("SELECT id, pid, host FROM taskwatcher.tasks").fetchall()
        assert host == "hosta"

        # A stall shorter than the lease: the launcher renews again once the link flows.
        link.flowing.clear()
        time.sleep(2.0)  # the length of the stall is what is tested: not a synchronisation
        link.flowing.set()
        (mended,) = db.execute("SELECT now()").fetchone()
        renewed = "SELECT leaseuntil >= %s + make_interval(secs => %s) FROM taskwatcher.tasks WHERE id = %s"
        wait_for(lambda: db.execute(renewed, (mended, lease, taskid)).fetchone()[0], 30, "a renewal")
        assert not flag.exists() and proc.poll() is None
        assert [(t["pid"], t["status"]) for t in here.tasks().values()] == [(pid, "RUNNING")]
        assert here.history() == {}

        # A stall longer than the lease: the task is stopped while its lease still holds.
        lease_of = "SELECT leaseuntil FROM taskwatcher.tasks WHERE id = %s"
        (lease_end,) = db.execute(lease_of, (taskid,)).fetchone()
        link.flowing.clear()
        stopped = wait_for(lambda: sigterm_time(flag), 3 * lease, "the task's SIGTERM")
        assert stopped < lease_end.timestamp(), "the task outlived its lease"
        proc.wait(30)  # its end could not be written: kept on its own disk
        # Another host (this one) archives it as `host lost` once its lease has run out.
        entry = wait_for(lambda: here.history_of(taskid), 3 * lease, "the task archived by another host")
        assert entry["termerror"] == "host lost"
        # Back on the network, the host's next command records the real end in its place.
        link.flowing.set()
        back = subprocess.run([*on_host, "control", "--db", remote, "--list", "--json"], env=host_env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert back.returncode == 0, back.stderr
        entries = [e for e in here.history().values() if e["taskid"] == taskid]
        assert len(entries) == 1, entries
        assert entries[0]["termerror"].startswith("lease lost: the database could not be reached")
        assert entries[0]["termsignal"] == "SIGTERM" and entries[0]["host"] == "hosta"
        assert not list((tmp_path / "hosta-state").glob("taskwatcher/postgres/*-pending/*"))
    finally:
        link.close()
        db.close()
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=15)
        print(f"hosta: {err}")  # shown with a failure
        kill_own_processes(Path(env["HOME"]))


@pytest.mark.parametrize("how", ["foreground", "detached"])
def test_a_launcher_cut_off_records_its_real_end_itself_once_the_database_is_back(
    pg_cluster, pg_url, env, tmp_path, how
):
    """No command need run on the cut-off host: the launcher's recorder (a process it leaves
    on its host: a fresh interpreter after a foreground launch, a fork of a detached
    launcher) retries until the database takes the end, which then replaces `host lost`."""
    import psycopg

    folder = tmp_path / "link"
    folder.mkdir()
    link = StallingLink(os.path.join(pg_cluster.socket, ".s.PGSQL.5432"), folder)
    here = Taskwatcher(pg_url, env)  # type: ignore[arg-type]  (this host: straight to the server)
    remote = pg_url.split("?")[0] + f"?host={folder}"  # hosta's way: through the link
    state = tmp_path / "hosta-state"  # hosta's own state folder: no command here reads its kept ends
    state.mkdir()
    flag = tmp_path / "term"
    task = f'trap ": > {flag}; exit 143" TERM; echo up > {flag}.up; while :; do sleep 0.01; done'
    # The launcher is not the namespace's pid 1 (whose end would kill the host): the host lives on.
    script = 'hostname hosta && "$@"; exec sleep 600'
    detach = ["--detach"] if how == "detached" else []
    proc = subprocess.Popen(
        [*HOST_NAMESPACES, "sh", "-c", script, "sh", *TW, "launch", "--db", remote, *detach, "--name", "cut",
         "--lease", "8", "--grace", "0.5", "sh", "-c", task],
        env={**env, "XDG_STATE_HOME": str(state)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: Path(f"{flag}.up").exists() or proc.poll() is not None, 60, "the task on hosta")
        with psycopg.connect(pg_url, autocommit=True) as db:
            ((taskid,),) = db.execute("SELECT id FROM taskwatcher.tasks").fetchall()
        link.flowing.clear()
        wait_for(flag.exists, 30, "the task stopped, its lease running out")
        kept = wait_for(
            lambda: list(state.glob("taskwatcher/postgres/*-pending/task_*.json")), 30, "the end kept"
        )
        assert [p.name for p in kept] == [f"task_{taskid}.json"]
        lost = wait_for(lambda: here.history_of(taskid), 30, "host lost, by this host")
        assert lost["termerror"] == "host lost"
        link.flowing.set()  # back on the network; nothing is run on hosta
        real = wait_for(lambda: (e := here.history_of(taskid)) and e["termerror"] != "host lost" and e, 60,
                        "the real end, recorded by hosta's recorder")  # fmt: skip
        assert real["termerror"].startswith("lease lost: the database could not be reached"), real
        assert real["exitcode"] == 143 or real["termsignal"] == "SIGTERM", real
        assert [e["taskid"] for e in here.history().values()] == [taskid]  # one row, never two
        assert not list(state.glob("taskwatcher/postgres/*-pending/*"))
    finally:
        link.close()
        proc.kill()
        _, err = proc.communicate(timeout=15)
        print(f"hosta: {err}")  # shown with a failure
        kill_own_processes(Path(env["HOME"]))


def test_a_recorder_leaves_an_end_it_cannot_place_for_a_command_to_say_so(tw, monkeypatch):
    """A kept end of a task the database does not have (a server that lost its last commits):
    the recorder, whose stderr nobody reads, leaves it and ends; the next command says so.
    A folder that is not its store's is left alone."""
    from taskwatcher.pending import pending_dir
    from taskwatcher.store import open_store

    monkeypatch.setenv("XDG_STATE_HOME", tw.env["XDG_STATE_HOME"])
    with open_store(str(tw.db)) as store:
        folder = Path(pending_dir(store))
    folder.mkdir(mode=0o700, parents=True)
    end = {"token": "0123456789abcdef", "termsignal": "", "termerror": "exit code 3", "exitcode": 3}
    (folder / "task_9.json").write_text(json.dumps(end))
    other = folder.parent / "not-its-folder"
    other.mkdir()
    (other / "task_9.json").write_text(json.dumps(end))
    for where in (folder, other):
        recorder = tw.run("launch", "--record-kept-ends", str(where), timeout=60)
        assert (recorder.returncode, recorder.stderr) == (0, "")
    assert [p.name for p in folder.iterdir()] == ["task_9.json"]
    assert [p.name for p in other.iterdir()] == ["task_9.json"]
    listed = tw.run("control", "--list")
    assert listed.returncode == 0 and "task 9's end kept aside" in listed.stderr, listed.stderr
    assert list(folder.iterdir()) == [] and tw.history() == {}


def test_a_host_cut_off_inside_a_transaction_holds_no_other_host_for_long(pg_cluster, pg_url, env, tmp_path):
    """The link stalls while a host is inside a transaction that locked its task's row (the
    server cannot tell: the socket stays open). The server ends that session once it has
    been idle in its transaction 10 s, so the other hosts' archive of the task as `host
    lost` waits seconds for the lock, not the hours of the server's TCP keepalive."""
    import psycopg

    from support import a_claim
    from taskwatcher.store.postgres import IDLE_IN_TRANSACTION, PostgresStore

    folder = tmp_path / "link"
    folder.mkdir()
    link = StallingLink(os.path.join(pg_cluster.socket, ".s.PGSQL.5432"), folder)
    here = Taskwatcher(pg_url, env)  # type: ignore[arg-type]
    cut = PostgresStore(pg_url.split("?")[0] + f"?host={folder}")  # the host's own connection
    try:
        row = cut.claim(None, a_claim("held", lease=1))
        cut.conn.execute("BEGIN")
        cut.conn.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (row.id,))
        link.flowing.clear()  # cut off with the row locked, its transaction open
        with psycopg.connect(pg_url, autocommit=True) as db:
            lapsed = "SELECT leaseuntil < now() FROM taskwatcher.tasks WHERE id = %s"
            wait_for(lambda: db.execute(lapsed, (row.id,)).fetchone()[0], 30, "the lease to run out")
        began = time.monotonic()
        listed = here.run("control", "--list", timeout=IDLE_IN_TRANSACTION + 30)
        assert listed.returncode == 0, listed.stderr
        assert time.monotonic() - began < IDLE_IN_TRANSACTION + 20
        assert here.history_of(row.id)["termerror"] == "host lost"
    finally:
        link.close()
        with contextlib.suppress(Exception):
            cut.close()
