"""Task changes as server-sent events: one thread learns of changes from the store's change
notification (``wait_for_change``: SQLite's ``PRAGMA data_version``, PostgreSQL's LISTEN), reads
the tasks once, and turns what differs from its last look into one event per task.

Every event carries the task's whole state (its ``--list --json`` entry and its latest
feedback), so resuming from ``Last-Event-ID`` only needs the latest event of each task
changed since: the hub keeps those, and the ends of the last ``KEEP_ENDED`` tasks. An id
from another run of the server (ids are ``RUN.SEQ``), or older than the ends kept, gets a
``reset`` event and then every current task.

Everything a running task's launcher learns (its status, heartbeat, latest feedback) is a
store change, so the hub does not poll for it. What nothing writes is learnt without
looking where it can be: a launcher of this host that dies makes its pidfd readable
(:class:`~taskwatcher.web.launchers.LauncherWatch`), and the hub reconciles then. The
thread otherwise wakes only at real deadlines, a reservation's expiry and the end of a
queued task's retry delay, and reconciles there (a quiet task turning SILENT or STALLED
is its launcher's record: a store change). On a shared store it also wakes when the
first lease held could run out (the database says when: renewals are not announced, so
a look then finds the leases renewed since, or one run out, archived as ``host lost``).
It looks every ``REFRESH`` seconds only while a task runs whose launcher no pidfd can
watch: a 1.x row, a task of another boot, a kernel without pidfds. With none of these,
an idle server's threads all sleep without a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import deque
from typing import Any

from ..errors import NoDatabase, TaskwatcherError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..api import TaskWatcher

REFRESH = 5.0  # as often as reads reconcile (TaskWatcher(reconcile_every=5)): a lost launcher seen
FOREVER = 86400.0  # the longest wait: nothing is due (poll() takes milliseconds in a C int)
LEASE_MARGIN = 0.05  # seconds past a lease's end before looking: it has run out by then
NO_DATABASE = 1.0  # seconds between looks for a database that does not exist yet (no folder to watch)
KEEP_ENDED = 1000
_MOVING = ("duration", "timer")  # what changes with time alone: not a change of the task


class Hub:
    def __init__(self, tw: TaskWatcher, refresh: float = REFRESH) -> None:
        from .launchers import LauncherWatch

        self.tw, self.refresh_every = tw, refresh
        self.run = str(int(time.time() * 1000))
        self.seq = 0
        self._lock = threading.Lock()
        self._tasks: dict[str, tuple[int, dict[str, Any], tuple]] = {}  # taskid -> (seq, event, compared)
        self._ended: deque[tuple[int, str]] = deque()
        self._floor = 0  # ends with a seq up to this one are forgotten
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.looks = 0  # how many times the tasks were read
        self.closing = False  # set when the server stops: the streams end
        self._deadline: float | None = None  # unix time of the next look nothing will announce
        self.launchers = LauncherWatch(self._launcher_exited)
        # Moves on at every change the store notifies (and every change made through the
        # server): what was cached under an older generation is stale.
        self.generation = 0

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self.launchers.start()
        self._thread = threading.Thread(target=self._loop, name="taskwatcher-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.launchers.stop()

    def _loop(self) -> None:
        from ..store import Store

        store = None
        timed_out = False
        while not self._stop.is_set():
            try:
                if store is None:  # opened before the look: a change made after it is then seen
                    store = Store(self.tw.db, create=False)
                if timed_out:  # a deadline: what comes due (an expiry, a lease run out) is reconciling's
                    from ..reconcile import reconcile

                    reconcile(store)  # (its own writes are not notified to its own connection)
                    self.generation += 1
                self.look(store)
                timed_out = not store.wait_for_change(self._next_look())
                if not timed_out:
                    self.generation += 1  # at once, before the look: cached answers are stale now
            except NoDatabase:  # none yet: the first command that writes makes it
                self._wait_for_database()
            except Exception as e:  # the database unusable for now (locked, replaced): start over
                if not isinstance(e, TaskwatcherError):
                    import logging

                    logging.getLogger("taskwatcher.web").exception("the event thread failed; starting again")
                if store is not None:
                    store.close()
                store = None
                self._stop.wait(1.0)
        if store is not None:
            store.close()

    def _wait_for_database(self) -> None:
        """Until a database may exist: an inotify watch of its name in its folder (a file that
        does not exist yet), or a look every second (PostgreSQL, a folder not there yet)."""
        import select

        from ..store import is_url

        path = self.tw.path
        watch = None
        if not is_url(path) and os.path.isdir(os.path.dirname(path) or "."):
            from ..filewatch import FileWatch

            watch = FileWatch(path, f"{path}-wal")
        try:
            if watch is None or watch.fd is None or os.path.exists(path):  # (made before the watch)
                self._stop.wait(NO_DATABASE)
                return
            poller = select.poll()
            poller.register(watch.fd, select.POLLIN)
            poller.poll(int(FOREVER * 1000))
        finally:
            if watch is not None:
                watch.close()

    def _next_look(self) -> float:
        """Seconds to the next look no store change will announce (FOREVER: none is due)."""
        due = [FOREVER]
        if self._deadline is not None:
            due.append(max(0.0, self._deadline - time.time()) + 0.01)
        return min(due)

    def _launcher_exited(self) -> None:
        """A watched launcher exited: reconcile now (the store change it makes, an archived
        task, wakes the thread); one that archived its task itself changed the store already."""
        from ..reconcile import reconcile
        from ..store import Store

        with Store(self.tw.db, create=False) as store:
            reconcile(store)

    def look(self, store: Any = None) -> None:
        """Read the tasks once and publish what changed; with the thread's ``store``, also see
        which launchers to watch and when to look next without a change."""
        current = self._read()
        if store is not None:
            self._plan(store)
        with self._lock:
            self.looks += 1
            changed = False
            for taskid, event in current.items():
                compared = _compared(event)
                known = self._tasks.get(taskid)
                if known is None or known[2] != compared:
                    self.seq += 1
                    self._tasks[taskid] = (self.seq, event, compared)
                    changed = True
                else:  # the same task: its timers still move, for whoever connects next
                    self._tasks[taskid] = (known[0], event, compared)
            for taskid in [t for t in self._tasks if t not in current]:
                del self._tasks[taskid]
                self.seq += 1
                self._ended.append((self.seq, taskid))
                changed = True
            while len(self._ended) > KEEP_ENDED:
                self._floor = self._ended.popleft()[0]
            waiters = list(self._waiters) if changed else []
        for loop, ready in waiters:
            loop.call_soon_threadsafe(ready.set)

    def _plan(self, store: Any) -> None:
        """From the rows: the launchers of this host to watch, and the next deadline."""
        from ..liveness import elsewhere, launcher_identity
        from ..process import boot_id
        from ..status import TaskStatus

        now = time.time()
        due: list[float] = []
        watched: dict[tuple, Any] = {}
        unwatched = leased = False
        for row in store.tasks():
            if row.status == TaskStatus.RESERVED:
                if row.expiretime is not None:
                    due.append(row.expiretime)
                continue
            if row.status == TaskStatus.QUEUED and row.notbefore is not None:
                due.append(row.notbefore)  # its retry's delay ends: its turn, should its sleeper die
            if row.status == TaskStatus.QUEUED and row.launcherpid is None:
                continue  # no launcher: started by whoever frees its slot (a store change)
            if elsewhere(row) is not None:
                if store.shared:  # its lease: the database says when the first one could run out
                    leased = True
                continue
            ident = launcher_identity(row)
            if ident is None or row.bootid != boot_id():
                unwatched = True  # a 1.x row, or one of another boot: reconciliation judges it
                continue
            watched[(row.id, ident.pid, ident.start)] = ident
        self.launchers.watch(watched)
        if unwatched or (watched and not self.launchers.available):
            due.append(now + self.refresh_every)
        left = store.next_lease_end() if leased or (store.shared and watched) else None
        if left is not None:  # (a local launcher stopped, alive but not renewing, is seen there too)
            due.append(now + left + LEASE_MARGIN)
        # What is past due was reconciled at its deadline and is still there (a reservation a
        # launch is claiming, say): looked at again in a while, not at once.
        due = [d if d > now else now + self.refresh_every for d in due]
        self._deadline = min(due) if due else None

    def _read(self) -> dict[str, dict[str, Any]]:
        listed = self.tw.tasks_feedback_json()  # one store session for every task
        now = time.time()
        return {
            taskid: {"taskid": taskid, "task": fields, "latest": latest, "time": now}
            for taskid, (fields, latest) in listed.items()
        }

    # -- the readers -----------------------------------------------------------------------
    def since(self, last_id: str | None) -> tuple[list[tuple[str, str, str]], int]:
        """The events after ``last_id`` as (id, event name, data), and the seq reached."""
        seq = _parse_id(last_id, self.run)
        out: list[tuple[int, str, dict[str, Any]]] = []
        with self._lock:
            reset = seq is None or seq < self._floor or seq > self.seq
            if reset:  # start from the current tasks: the ends before them are no news to this reader
                out.append((0, "reset", {}))
                seq = 0
            for s, event, _ in self._tasks.values():
                if s > seq:
                    out.append((s, "task", event))
            for s, taskid in self._ended if not reset else ():
                if s > seq:
                    out.append((s, "ended", {"taskid": taskid}))
            reached = self.seq
        out.sort(key=lambda e: e[0])
        return [
            (f"{self.run}.{s or reached}", name, json.dumps(data, ensure_ascii=False))
            for s, name, data in out
        ], reached

    def close_streams(self) -> None:
        """The server is stopping: every stream ends now (a browser's EventSource reconnects
        to whatever serves next), rather than holding the shutdown to its time limit."""
        with self._lock:
            self.closing = True
            waiters = list(self._waiters)
        for loop, ready in waiters:
            loop.call_soon_threadsafe(ready.set)

    def subscribe(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> None:
        with self._lock:
            self._waiters.add((loop, ready))

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> None:
        with self._lock:
            self._waiters.discard((loop, ready))

    async def stream(self, last_id: str | None, keepalive: float) -> AsyncIterator[str]:
        """The event stream: what changed since ``last_id``, then each change as it comes,
        a comment every ``keepalive`` seconds of silence (so proxies keep the connection)."""
        loop = asyncio.get_running_loop()
        yield "retry: 2000\n: taskwatcher events\n\n"
        cursor = last_id
        while not self.closing:
            ready = asyncio.Event()
            self.subscribe(loop, ready)  # before reading: a change in between sets it
            try:
                events, reached = self.since(cursor)
                cursor = f"{self.run}.{reached}"
                if events:
                    yield "".join(f"id: {i}\nevent: {name}\ndata: {data}\n\n" for i, name, data in events)
                    continue
                try:
                    await asyncio.wait_for(ready.wait(), keepalive)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
            finally:
                self.unsubscribe(loop, ready)


def _compared(event: dict[str, Any]) -> tuple:
    fields = {k: v for k, v in event["task"].items() if k not in _MOVING}
    return (json.dumps(fields, sort_keys=True), json.dumps(event["latest"], sort_keys=True))


def _parse_id(text: str | None, run: str) -> int | None:
    """The seq of an event id of this run; None for none, or another run's, or garbage."""
    if not text:
        return None
    given_run, _, seq = text.strip().partition(".")
    if given_run != run or not seq.isdigit():
        return None
    return int(seq)


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
