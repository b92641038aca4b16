"""The Python API: ``TaskWatcher(db)``, what the CLI is built on.

Each call opens the database, reconciles it (lost tasks archived, expired
reservations dropped: what every command does) and closes it again, so a
``TaskWatcher`` holds no connection and may be shared between threads and kept
for the life of a web back-end. Failures are the typed exceptions of
``taskwatcher.errors``; each carries the CLI's exit code as ``exit_code``.

The methods that return records (:class:`~taskwatcher.records.Task`,
:class:`~taskwatcher.records.FinishedTask`) import them on first use; the
``*_json`` methods give exactly the CLI's JSON without building them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from . import control
from .errors import NoDatabase, NoLog, NoSuchTask, StartFailed, UsageError
from .reconcile import reconcile, reconciled_tasks
from .store import Store

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    import datetime
    from typing import Any

    from .model import Ending, HistoryFilter, TaskRow
    from .records import FinishedTask, Task

    When = float | str | datetime.datetime | None


class TaskWatcher:
    """Tasks of one database: ``TaskWatcher()`` is the default one, as the CLI's."""

    def __init__(
        self, db: str | os.PathLike[str] | None = None, *, reconcile_every: float | None = None
    ) -> None:
        """``reconcile_every``: None (the default, as every command), each call reconciles the
        store first; a number of seconds, the calls that only read reconcile at most that often
        (a read-heavy caller, such as a web back-end); the calls that write always do."""
        self.db = None if db is None else os.fspath(db)
        if self.db == "":
            raise UsageError("the database needs a path")
        self.reconcile_every = reconcile_every
        self._reconciled = float("-inf")

    def __repr__(self) -> str:
        return f"TaskWatcher({self.shown!r})"

    @property
    def path(self) -> str:
        """The database: the file's absolute path, or the PostgreSQL URL as given."""
        from .store import resolve_db_path

        return resolve_db_path(self.db)

    @property
    def shown(self) -> str:
        """The database as messages name it: the path, or the URL without its password."""
        from .store import is_url

        path = self.path
        if is_url(path):
            from .store.postgres import public_url

            return public_url(path)
        return path

    def exists(self) -> bool:
        """Whether the database exists (the commands that only read never create it)."""
        from .store import check_text_path, database_missing, is_url

        if is_url(self.path):
            try:
                Store(self.db, create=False).close()
            except NoDatabase:
                return False
            return True
        check_text_path(self.path, "database")  # a path that is not UTF-8 is refused, as by every call
        return not database_missing(self.path)

    @contextmanager
    def _store(self) -> Iterator[Store]:
        with Store(self.db) as store:
            reconcile(store)
            self._reconciled = time.monotonic()
            yield store

    @contextmanager
    def _reading(self) -> Iterator[Store | None]:
        """The store for a call that only reads; None where no database exists (none is made)."""
        with self._reading_unreconciled() as store:
            if store is not None and self._reconcile_due():
                reconcile(store)
                self._reconciled = time.monotonic()
            yield store

    @contextmanager
    def _listing(self) -> Iterator[tuple[Store | None, list[TaskRow]]]:
        """``_reading``, and the reserved and running tasks' rows: those reconciling read, when it
        changed nothing (one read of the task table, not two)."""
        with self._reading_unreconciled() as store:
            if store is None:
                yield None, []
                return
            if self._reconcile_due():
                rows = reconciled_tasks(store)
                self._reconciled = time.monotonic()
            else:
                rows = store.tasks()
            yield store, rows

    @contextmanager
    def _reading_unreconciled(self) -> Iterator[Store | None]:
        try:
            store = Store(self.db, create=False)
        except NoDatabase:
            yield None
            return
        with store:
            yield store

    def _reconcile_due(self) -> bool:
        return self.reconcile_every is None or time.monotonic() - self._reconciled >= self.reconcile_every

    def _which(self, store: Store | None, taskid: int | None) -> tuple[Store, int]:
        """The task a read is about: ``taskid``, or the newest task (the highest id) if None."""
        if store is None:
            what = "no task" if taskid is None else f"no task {taskid}"
            raise NoSuchTask(f"{what}: no database exists at {self.shown}")
        if taskid is None:
            taskid = store.newest_taskid()
            if taskid is None:
                raise NoSuchTask("no task yet")
        return store, taskid

    # -- starting tasks -----------------------------------------------------------
    def reserve(
        self,
        name: str | None = None,
        *,
        info1: str | None = None,
        info2: str | None = None,
        info3: str | None = None,
        unique: bool = False,
        ttl: float | str | None = None,
    ) -> int:
        """A new task id, held ``ttl`` seconds (default 60) for a launch; ``unique``: refused
        while a reserved or running task has that name."""
        if unique and not name:
            raise UsageError("--unique needs --name")
        ttl = control.DEFAULT_TTL if ttl is None else _seconds(ttl, "ttl")
        if not ttl > 0:
            raise UsageError("--ttl must be more than 0 seconds")
        with self._store() as store:
            return control.reserve(store, name, (info1, info2, info3), unique, ttl)

    def launch(
        self,
        command: Sequence[str],
        *,
        taskid: int | None = None,
        name: str | None = None,
        info1: str | None = None,
        info2: str | None = None,
        info3: str | None = None,
        feedpath: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        grace: float | str | None = None,
        unique: bool = False,
        log: str | os.PathLike[str] | None = None,
        log_max: int | None = None,
        lease: float | str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        group: str | None = None,
        slots: int | None = None,
        after: Sequence[int] | None = None,
        after_any: bool = False,
        retries: int | None = None,
        retry_delay: float | str | None = None,
        retry_backoff: float | None = None,
        retry_on: Sequence[str] | str | None = None,
        on_end: str | None = None,
    ) -> int:
        """Start ``command`` detached, under a supervisor of its own; return its task id once it runs.

        The supervisor is a fresh ``python -m taskwatcher launch --detach`` (never a
        fork of the calling process, which may hold threads, sockets or a web
        server's state). The task runs in ``cwd`` (default: this process's) with this
        process's environment plus ``env``. Relative paths (the database, ``feedpath``,
        ``log``) are this process's, whatever ``cwd`` is. Durations, here as in every
        method, are seconds or a text with a unit (``"500ms"``, ``"5m"``, ``"2h"``). Raises
        :class:`~taskwatcher.errors.StartFailed` with the launcher's exit status
        (125, 126, 127) and its message. The line's options are :meth:`run`'s; a task
        that must wait its turn is queued (a row, no process) and its id returned at once.
        """
        import subprocess

        argv = [sys.executable, "-m", "taskwatcher", "launch", "--detach", "--db", self.path]
        options = {
            "--taskid": taskid,
            "--name": name,
            "--info1": info1,
            "--info2": info2,
            "--info3": info3,
            "--feedpath": None if feedpath is None else os.path.abspath(feedpath),
            "--timeout": timeout,
            "--grace": grace,
            "--log": None if log is None else os.path.abspath(log),
            "--log-max": log_max,
            "--lease": lease,
            "--group": group,
            "--slots": slots,
            "--after-any" if after_any else "--after": None if after is None else ",".join(map(str, after)),
            "--retries": retries,
            "--retry-delay": retry_delay,
            "--retry-backoff": retry_backoff,
            "--retry-on": retry_on if isinstance(retry_on, str) or retry_on is None else ",".join(retry_on),
            "--on-end": on_end,
        }
        argv += [f"{k}={v}" for k, v in options.items() if v is not None]
        if unique:
            argv.append("--unique")
        argv += ["--", *command]
        environ = None if env is None else {**os.environ, **env}
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, cwd=cwd, env=environ
            )
        except OSError as e:  # cwd missing or not a folder; or no fd, no memory, an environment too large
            where = f"in {os.fspath(cwd)}" if cwd is not None else f"{sys.executable} -m taskwatcher"
            raise StartFailed(125, f"cannot start {where}: {e.strerror}") from None
        out = done.stdout.decode(errors="replace").strip()
        if done.returncode == 0 and out.isdigit():
            return int(out)
        message = done.stderr.decode(errors="replace").strip().removeprefix("taskwatcher: ")
        raise StartFailed(done.returncode or 125, message or f"launch failed with status {done.returncode}")

    def run(
        self,
        command: Sequence[str],
        *,
        taskid: int | None = None,
        name: str | None = None,
        info1: str | None = None,
        info2: str | None = None,
        info3: str | None = None,
        feedpath: str | os.PathLike[str] | None = None,
        timeout: float | str | None = None,
        grace: float | str | None = None,
        unique: bool = False,
        detach: bool = False,
        log: str | os.PathLike[str] | None = None,
        log_max: int | None = None,
        no_log: bool = False,
        lease: float | str | None = None,
        group: str | None = None,
        slots: int | None = None,
        after: Sequence[int] | None = None,
        after_any: bool = False,
        retries: int | None = None,
        retry_delay: float | str | None = None,
        retry_backoff: float | None = None,
        retry_on: Sequence[str] | str | None = None,
        on_end: str | None = None,
    ) -> Ending:
        """Run ``command`` supervised by this process (what ``taskwatcher launch`` does); how it ended.

        It installs signal handlers (put back on return) and makes this process a
        child subreaper: meant for the main thread of a script or of the CLI. A
        back-end uses :meth:`launch`. If a signal interrupted it (Ctrl-C), the
        task got that same signal and the end's ``interrupted`` names it: the
        CLI then ends itself by it; a script decides for itself.

        The line: ``group`` (at most ``slots``, default 1, of the group run at once;
        this call waits for its turn), ``after`` (task ids: started once they ended with
        exit 0, with ``after_any`` however they ended; a failed one ends this task
        unrun, exit 125), ``retries`` (up to that many more attempts, same task id,
        after ``retry_delay``, default 1 s, growing by ``retry_backoff``, for the ends
        ``retry_on`` names: failure, timeout, lost), ``on_end`` (a shell command run
        after each end, with the end in its environment).
        """
        _check_file_descriptors()  # first: even an import needs one
        from .config import load
        from .launcher import DEFAULT_GRACE, LaunchRequest
        from .launcher import launch as supervise_launch
        from .output import DEFAULT_LOG_MAX
        from .store import check_text_path

        config = load()  # read even when nothing here needs it: a broken file is said before the task runs
        for path, what in ((feedpath, "--feedpath"), (log, "--log")):
            if path is not None:
                check_text_path(os.fspath(path), what)
        if log is not None:
            from .paths import check_user_log

            check_user_log(self.path, os.fspath(log))  # (a URL: nothing of the database is a file)
        if log_max is None:
            log_max = config.log_max or DEFAULT_LOG_MAX
        req = LaunchRequest(
            command=list(command),
            taskid=taskid,
            name=name,
            infos=(info1, info2, info3),
            feedpath=None if feedpath is None else os.fspath(feedpath),
            timeout=None if timeout is None else _seconds(timeout, "timeout"),
            grace=DEFAULT_GRACE if grace is None else _seconds(grace, "grace"),
            unique=unique,
            detach=detach,
            logfile=None if log is None else os.fspath(log),
            logmax=log_max,
            nolog=no_log,
            lease=None if lease is None else _seconds(lease, "lease"),
            group=group,
            slots=slots,
            after=None if after is None else [int(a) for a in after],
            after_any=bool(after_any),
            retries=retries,
            retry_delay=None if retry_delay is None else _seconds(retry_delay, "retry-delay"),
            retry_backoff=retry_backoff,
            retry_on=retry_on.split(",") if isinstance(retry_on, str) else retry_on,
            on_end=on_end,
        )
        if req.lease is not None and not req.lease > 0:
            raise UsageError("--lease must be more than 0 seconds")
        return supervise_launch(self.db, req)

    def run_internal(
        self, *, queued: int | None = None, hooks: int | None = None, record: str | None = None
    ) -> None:
        """What taskwatcher starts itself, detached: the launcher of queued task ``queued``,
        the runner of history row ``hooks``'s finish hooks, or the recorder of the ends kept
        in folder ``record`` (not for callers)."""
        from .store import resolve_db_path

        db = resolve_db_path(self.db)
        if queued is not None:
            from .launcher import start_queued

            start_queued(db, queued)
        elif hooks is not None:
            from .hooks import run_hooks

            run_hooks(db, hooks)
        elif record is not None:
            from .pending import record_kept_ends

            record_kept_ends(db, record)

    # -- looking ------------------------------------------------------------------
    def tasks_json(self, host: str | None = None) -> dict[str, dict]:
        """``control --list --json``: reserved and running tasks keyed by id (a string); with
        ``host``, only the tasks running on that host."""
        with self._listing() as (_, rows):
            return control.describe_tasks(rows, host)

    def tasks_feedback_json(self) -> dict[str, tuple[dict, dict[str, str] | None]]:
        """``control --list --json``'s entries, each with the task's latest feedback (None for a
        reservation or a task without feedback), read in one session: for a caller that shows
        both at once (the web's event stream)."""
        with self._reading() as store:
            if store is None:
                return {}
            listed = control.list_tasks(store)
            return {tid: (fields, _latest(store, int(tid), fields)) for tid, fields in listed.items()}

    def tasks(self, *, feedback: bool = False, host: str | None = None) -> list[Task]:
        """Reserved and running tasks, by id; with ``feedback``, each running one's latest feedback;
        with ``host``, only those running on that host."""
        from .records import Task

        with self._listing() as (store, rows):
            listed = control.describe_tasks(rows, host)
            return [
                Task.from_json(taskid, fields, _latest(store, int(taskid), fields) if feedback else None)
                for taskid, fields in listed.items()
            ]

    def task(self, taskid: int) -> Task | FinishedTask:
        """One task: reserved or running (with its latest feedback), else finished (from history)."""
        from .records import FinishedTask, Task

        with self._reading() as store:
            store, taskid = self._which(store, taskid)
            listed = control.list_tasks(store).get(str(taskid))
            if listed is not None:
                return Task.from_json(taskid, listed, _latest(store, taskid, listed))
            from .history import history_entry

            entry = history_entry(store, taskid)
            if entry is None:
                raise NoSuchTask(f"no task {taskid}")
            return FinishedTask.from_json(*entry)

    def feedback(self, taskid: int | None = None) -> dict[str, str]:
        """``control --feedback [ID]``: the latest feedback, or a finished task's final one;
        without an id, the newest task's."""
        with self._reading() as store:
            from .feedstate import task_feedback

            return task_feedback(*self._which(store, taskid))

    def show(self, taskid: int | None = None) -> dict[str, Any]:
        """``control --show [ID] --json``: everything known about one task, running or finished
        (without an id, the newest). The keys are the same for both; what does not apply is None."""
        from .detail import task_detail

        with self._reading() as store:
            return task_detail(*self._which(store, taskid))

    def history(
        self, *, name: str | None = None, since: When = None, last: int | None = None
    ) -> list[FinishedTask]:
        """Finished tasks, oldest first: of ``name``; ended since ``since`` (unix time,
        datetime, ISO text or an age like ``"2h"``); only the last ``last``."""
        from .records import FinishedTask

        only = _filter(name, since, last)  # a bad filter is refused before the database is opened
        with self._reading() as store:
            from .history import history

            entries = {} if store is None else history(store, only)
        return [FinishedTask.from_json(hid, fields) for hid, fields in entries.items()]

    def iter_history(
        self, *, name: str | None = None, since: When = None, last: int | None = None
    ) -> Iterator[FinishedTask]:
        """What :meth:`history` gives, one at a time, read from the database in chunks:
        for a history too long to hold."""
        from .records import FinishedTask

        only = _filter(name, since, last)
        with self._reading() as store:
            if store is None:
                return
            from .history import iter_history

            for hid, fields in iter_history(store, only):
                yield FinishedTask.from_json(hid, fields)

    def history_json(self, *, name: str | None = None, since: When = None, last: int | None = None) -> str:
        """``control --history --json`` as text."""
        return "".join(self.iter_history_json(name=name, since=since, last=last))

    def iter_history_json(
        self,
        *,
        name: str | None = None,
        since: When = None,
        last: int | None = None,
        before: int | None = None,
    ) -> Iterator[str]:
        """``control --history --json`` in pieces, for streaming a large history; ``before``:
        only history ids below it (the next page of a long history, newest first)."""
        only = _filter(name, since, last, before)
        with self._reading() as store:
            if store is None:
                yield "{}\n"
                return
            from .history import history_json

            yield from history_json(store, only)

    def recent_taskids(self) -> list[int]:
        """Ids worth offering to complete: the reserved and running tasks, then the newest
        finished ones. Cheap: no reconciliation, and no database is created."""
        try:
            with Store(self.db, create=False) as store:
                return store.recent_taskids()
        except NoDatabase:
            return []

    # -- a task's output -----------------------------------------------------------
    def log_path(self, taskid: int | None = None) -> str:
        """Where the task's output is kept (``FILE``, and its older half ``FILE.1``); without
        an id, the newest task's."""
        with self._reading() as store:
            return _log_path(*self._which(store, taskid))

    def read_log(self, taskid: int | None = None) -> bytes:
        """The task's output kept so far (the older half, then the current file)."""
        from .output import copy_log, older_half

        taskid = self._newest(taskid)
        path = self.log_path(taskid)
        if not (os.path.exists(path) or os.path.exists(older_half(path))):
            raise NoLog(f"the log of task {taskid} is gone: {path}")
        parts: list[bytes] = []
        copy_log(path, parts.append)
        return b"".join(parts)

    def read_log_from(self, taskid: int, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of the task's log (the older half, then the current file, as
        :meth:`read_log` gives it) from ``offset``, and the offset to ask from next time."""
        from .output import read_log_range

        path = self.log_path(taskid)
        return read_log_range(path, offset, limit, lambda: NoLog(f"the log of task {taskid} is gone: {path}"))

    def follow_log(self, taskid: int | None = None) -> Iterator[bytes]:
        """The task's output, then what it writes, until it ends (as ``tail -f``)."""
        from .output import follow_log

        resolved = self._newest(taskid)
        path = self.log_path(resolved)
        yield from follow_log(path, lambda: self._running(resolved))

    def _newest(self, taskid: int | None) -> int:
        if taskid is not None:
            return taskid
        with self._reading() as store:
            return self._which(store, None)[1]

    def _running(self, taskid: int) -> bool:
        with self._reading() as store:
            return store is not None and store.task(taskid) is not None

    # -- stopping and waiting -------------------------------------------------------
    def kill(self, taskid: int) -> str:
        """Stop the task (a reservation is cancelled), returning once it is archived; what was done."""
        with self._reading() as store:  # a mistyped --db is "no such task", not a new database
            if store is None:
                raise NoSuchTask(f"no task {taskid}: no database exists at {self.shown}")
            return control.kill(store, taskid)

    def killall(self, name: str) -> list[str]:
        """Stop every reserved or running task of that name; what was done, one line each.

        Tasks running on another host are left to their host: once every other one
        is stopped, :class:`~taskwatcher.errors.NotAllStopped` names them, with what
        was done in its ``done``.
        """
        with self._reading() as store:
            if store is None:
                raise NoSuchTask(f"no task named '{name}': no database exists at {self.shown}")
            return control.killall(store, name)

    def wait(self, taskid: int | None = None, timeout: float | str | None = None) -> FinishedTask:
        """Block until the task ends (no polling: on its launcher's pidfd); its history entry.
        Without an id, the newest task (the highest id, running or finished).

        Raises :class:`~taskwatcher.errors.WaitTimeout` if ``timeout`` seconds pass first.
        """
        from .records import FinishedTask

        with self._reading() as store:
            store, taskid = self._which(store, taskid)
            row = control.wait(store, taskid, None if timeout is None else _seconds(timeout, "timeout"))
            from .history import describe_entry

            return FinishedTask.from_json(row["id"], describe_entry(row))

    # -- the database as a whole ------------------------------------------------------
    def update(self) -> int:
        """Write fresh durations and statuses into the tasks table (``control --update``)."""
        with self._store() as store:
            done = control.update(store)
            from .retention import prune_by_config

            prune_by_config(store)
            return done

    def clear(self) -> int:
        """Delete the history (and the logs taskwatcher kept for it); how many tasks."""
        from .retention import clear_history

        with self._reading() as store:  # nothing to clear where there is no database: none is made
            return 0 if store is None else clear_history(store)

    def prune(self, *, keep: int | None = None, max_age: float | str | None = None) -> int:
        """Delete finished tasks beyond the newest ``keep``, or ended more than ``max_age`` ago."""
        from .config import parse_age

        try:
            age = None if max_age is None else parse_age(max_age)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if keep is not None and keep < 0:
            raise UsageError("--keep must be 0 or more")
        from .retention import prune

        with self._reading() as store:
            return 0 if store is None else prune(store, keep, age)

    def initialize(self, force: bool = False) -> None:
        """Recreate the database (everything is lost); refused while tasks run, unless ``force``."""
        with self._store() as store:
            control.initialize(store, force)


def _seconds(value: float | str, option: str) -> float:
    """A duration given to the API: seconds, or a text with a unit (``"5m"``), as the CLI takes it."""
    from .config import parse_duration

    try:
        return parse_duration(value)
    except ValueError as e:
        raise UsageError(f"--{option}: {e}") from None


LAUNCH_FDS = 32  # a launch holds up to ~22 at once (database, pipes, pidfds, a terminal): a margin


def _check_file_descriptors() -> None:
    """Refuse a launch that would run out of file descriptors half-way: before anything is
    claimed, so that a task that could not run is never recorded at all (not as lost)."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return
    try:
        used = len(os.listdir("/proc/self/fd")) - 1  # the listing's own fd
    except OSError:  # no /proc, or no fd even for that
        used = soft
    if soft - used < LAUNCH_FDS:
        raise StartFailed(
            125,
            f"too few file descriptors: a launch needs {LAUNCH_FDS} free (ulimit -n is {soft}): "
            "nothing started",
        )


def _latest(store: Store, taskid: int, fields: dict) -> dict[str, str] | None:
    if not fields["feedback"] or fields["status"] in ("RESERVED", "QUEUED"):
        return None
    try:
        from .feedstate import task_feedback

        return task_feedback(store, taskid)
    except NoSuchTask:  # it ended between the two reads
        return None


def _filter(name: str | None, since: When, last: int | None, before: int | None = None) -> HistoryFilter:
    if last is not None and last < 1:
        raise UsageError("--last must be 1 or more")
    if before is not None and before < 1:
        raise UsageError("before must be 1 or more")
    if since is None or isinstance(since, (int, float)):
        when = since
    elif isinstance(since, str):
        from .history import parse_when

        when = parse_when(since)
    else:
        when = since.timestamp()
    from .model import HistoryFilter

    return HistoryFilter(name, when, last, before)


def _log_path(store: Store, taskid: int) -> str:
    row = store.task(taskid)
    if row is not None and row["status"] in ("RESERVED", "QUEUED"):
        raise NoLog(f"task {taskid} is reserved, not started: it has no log yet")
    if row is None:
        row = store.finished(taskid)
        if row is None:
            raise NoSuchTask(f"no task {taskid}")
    if not row["logfile"]:
        raise NoLog(f"task {taskid} keeps no log")
    path = str(row["logfile"])
    from . import process
    from .output import older_half

    host = row["host"]
    if (
        host
        and host != process.host_name()
        and not (os.path.exists(path) or os.path.exists(older_half(path)))
    ):
        # A log is written on the task's own host: read there, or where its folder is shared.
        # (Said first: its state folder there may well not be this host's.)
        raise NoLog(
            f"the log of task {taskid} is on host {host}: {path}"
            " (read it there, or give --log a shared folder)"
        )
    # A log taskwatcher placed is read only where it places logs (a row is data, not a licence
    # to read any file); a user's --log is wherever the user put it.
    from .paths import log_dir, placed_log_inside

    if row["logplaced"] and not placed_log_inside(path, os.path.realpath(log_dir(store))):
        raise NoLog(f"task {taskid}: its log path {path} is not in the logs folder: not read")
    return path


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
