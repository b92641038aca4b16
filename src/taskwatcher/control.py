"""Control operations on the store: reconcile, reserve, list, feedback, history, kill.

Every command starts with :func:`reconcile`, which is how a database with no
daemon stays true: whoever uses it next expires old reservations and archives
the tasks whose launcher is gone (after stopping what is left of them).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import stat
import time
from collections.abc import Callable, Iterator, Sequence

from . import process
from .errors import (
    NoSuchTask,
    NotAllStopped,
    NotPermitted,
    StoreError,
    TasksRunning,
    TaskwatcherError,
    UsageError,
    WaitTimeout,
)
from .feedback import FeedbackName, FeedbackState, read_increment
from .logs import Logger
from .process import Identity
from .status import TaskStatus, heartbeat_status
from .store import RESERVATION_TTL, Row, Store, check_own_folder, sibling_folder, storable

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

log = Logger(__name__)

DEFAULT_TTL = RESERVATION_TTL
TOKEN_VARIABLE = "TASKWATCHER_TOKEN"
KILL_WAIT_MARGIN = 10.0  # beyond the task's grace period, for the launcher to archive it


# -- reconciliation ------------------------------------------------------------------
def elsewhere(row: Row) -> str | None:
    """Where a task runs if not here: ``host NAME``, ``another pid namespace``; None if here.

    A row from another host, or from another pid namespace of this host (a container
    sharing the database), names processes this command cannot see or judge: it is
    never signalled, never archived as lost from here.
    """
    if row["host"] and row["host"] != process.host_name():
        return f"host {row['host']}"
    if row["pidns"] is not None and row["pidns"] != process.pid_namespace():
        return "another pid namespace"
    return None


def launcher_gone(row: Row) -> bool:
    """True if a running task's launcher no longer runs (a row only its host and namespace can judge)."""
    if row["status"] == TaskStatus.RESERVED:
        return False
    if elsewhere(row):
        return False
    if row["launcherpid"] is None:  # a taskwatcher 1.x row: its pid and start are all there is
        return _legacy_identity(row) is None
    if row["bootid"] != process.boot_id():
        return True
    return not Identity(row["launcherpid"], row["launcherstart"], row["bootid"]).is_alive()


def stop_remains(row: Row, refused: set[Identity] | None = None) -> str:
    """SIGKILL what is left of a task whose launcher is gone; the signal name, or ''.

    What this user may not signal (a setuid program the task ran) goes to ``refused``.
    The main process is known by its pid and start time, which anyone may read;
    the others by the token in their environment, which a setuid program's user
    may not read (RELIABILITY.md says what that leaves).
    """
    if row["launcherpid"] is None:
        legacy = _legacy_identity(row)
        return "SIGKILL" if legacy and process.signal_verified(legacy, signal.SIGKILL, refused) else ""
    if row["pid"] is None or row["procstart"] is None or row["bootid"] != process.boot_id() or elsewhere(row):
        return ""  # from another boot or namespace, or never started: nothing here is ours to signal
    # The task's processes are its main process (pid and start time) and those that carry
    # its token. Not "its process group": once the group is empty its id is free, and a
    # stranger's new session may hold it.
    victims = [Identity(row["pid"], row["procstart"], row["bootid"])]
    if row["token"]:
        victims += process.processes_with_env(TOKEN_VARIABLE, row["token"], row["procstart"])
    hit = [v for v in set(victims) if process.signal_verified(v, signal.SIGKILL, refused)]
    return "SIGKILL" if hit else ""


def _legacy_identity(row: Row) -> Identity | None:
    if row["pid"] is None or row["starttime"] is None:
        return None
    return process.identity_started_near(row["pid"], row["starttime"])


# -- ends that could not be written -------------------------------------------------------
PENDING_MAX = 65536  # bytes: a kept-aside end is a few hundred; a larger file is not one


def pending_dir(db_path: str) -> str:
    """Where a launcher keeps a task's end that the database would not take (locked too long)."""
    return sibling_folder(db_path, "pending")


def keep_pending_end(store: Store, taskid: int, token: str, ending: dict[str, Any]) -> str:
    """Write a task's end beside the database, for the next command to archive; its path.

    Whole or not at all: on a failure (disk full) the half-written ``.tmp`` is
    removed and the OSError raised for the caller to say the end another way.
    """
    path = _pending_path(store.path, taskid)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)  # private, like the database's folder
    check_own_folder(os.path.dirname(path), "folder of kept-aside ends")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump({"token": token, **ending}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _pending_path(db_path: str, taskid: int) -> str:
    return os.path.join(pending_dir(db_path), f"task_{taskid}.json")


def archive_pending_ends(store: Store) -> None:
    """Archive the ends that launchers kept aside, as they recorded them.

    An end is trusted only as far as it proves itself: a regular file of ours (never
    through a symlink) in a folder of ours, naming a task that is still there with
    the same token (a secret of the task's processes and of the private database).
    """
    folder = pending_dir(store.path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"cannot read the folder of kept-aside ends {folder}: {e.strerror}") from None
    check_own_folder(folder, "folder of kept-aside ends")
    for name in names:
        if not (name.startswith("task_") and name.endswith(".json") and name[5:-5].isdigit()):
            continue
        path = os.path.join(folder, name)
        end = _read_pending_end(path)
        if end is None:
            continue
        row = store.task(int(name[5:-5]))
        if row is not None and row["token"] and row["token"] == end["token"]:
            # The launcher read the final feedback (it held the file): kept with the end.
            archive_task(store, row, termsignal=end["termsignal"], termerror=end["termerror"],
                         exitcode=end["exitcode"], feedback=end["feedback"])  # fmt: skip
            process.crash_point("pending-archived")  # archived, its file not yet removed
        try:
            os.unlink(path)  # archived now, or not this task's end (the task is gone, or forged)
        except FileNotFoundError:
            pass


def _read_pending_end(path: str) -> dict[str, Any] | None:
    """A kept-aside end as a launcher wrote it, or None (not a regular file of ours, too
    large, not such JSON): never opened through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > PENDING_MAX:
            log.warning("ignoring %s: not a kept-aside end of this user", path)
            return None
        end = json.loads(os.read(fd, PENDING_MAX + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(end, dict):
        return None
    code = end.get("exitcode")
    fields = {"token": end.get("token"), "termsignal": end.get("termsignal", ""),
              "termerror": end.get("termerror", ""), "exitcode": code}  # fmt: skip
    texts_ok = all(isinstance(fields[k], str) for k in ("token", "termsignal", "termerror"))
    if not texts_ok or not fields["token"] or not (code is None or type(code) is int):
        return None
    # The final feedback the launcher read (None: an older launcher's end; read the file then).
    feedback = end.get("feedback")
    if isinstance(feedback, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in feedback.items()
    ):
        fields["feedback"] = feedback
    else:
        fields["feedback"] = None
    return fields


def reconcile(store: Store) -> list[int]:
    """Archive kept-aside ends, expire reservations, archive lost tasks; the ids archived as lost."""
    archive_pending_ends(store)
    t = time.time()
    rows = store.tasks()
    stale = [r["id"] for r in rows if _expired(r, t) or launcher_gone(r)]
    if not stale:
        return []
    lost = []
    for taskid in stale:
        row = store.task(taskid)
        if row is None:
            continue
        if _expired(row, t):
            with store.transaction() as conn:  # only if still reserved: a launch may have claimed it
                conn.execute("DELETE FROM tasks WHERE id = ? AND status = 'RESERVED'", (taskid,))
            log.debug("reservation %d expired", taskid)
        elif launcher_gone(row):
            why = "launcher lost" if row["bootid"] in (None, process.boot_id()) else "launcher lost (reboot)"
            if archive_task(
                store, row, termerror=why, kill_remains=True, unless=lambda r: _not_lost(store, r)
            ):
                log.debug("task %d lost its launcher", taskid)
                lost.append(taskid)
    return lost


def _not_lost(store: Store, row: Row) -> bool:
    """Its launcher is back, or it left the task's end aside (the next command archives that)."""
    return not launcher_gone(row) or os.path.exists(_pending_path(store.path, row["id"]))


def archive_task(
    store: Store,
    row: Row,
    *,
    termerror: str,
    termsignal: str = "",
    exitcode: int | None = None,
    kill_remains: bool = False,
    unless: Callable[[Row], bool] | None = None,
    feedback: dict[str, str] | None = None,
) -> bool:
    """Move one task to history with its final feedback, then delete its feedback file.

    The row is read again inside the transaction and must still be the same task
    (same token): another command may have archived it, or a re-created database
    reused its id. ``kill_remains`` SIGKILLs what is left of a task whose launcher
    is gone first (and if some of it may not be stopped by this user, the row
    stays: its task still runs, and the next command tries again); ``unless``
    can call the whole thing off on the fresh row. ``feedback``: the final
    feedback, already read by the task's launcher, which holds and removes the
    file itself; otherwise the file is read here, once its name is held (see
    :class:`FeedbackName`). Returns whether this call archived it.

    The feedback file is read outside any transaction: a FIFO there, or a huge
    file, must never hold the database's write lock.
    """
    if kill_remains:
        with store.transaction():
            current = store.task(row["id"])
            if current is None or current["token"] != row["token"] or (unless and unless(current)):
                return False
            refused: set[Identity] = set()
            termsignal = stop_remains(current, refused) or termsignal
            if refused:
                log.debug("task %d: may not signal %s", current["id"], sorted(i.pid for i in refused))
                return False
    name = None
    if feedback is None:
        feedback, name = _read_final_feedback(store, row)
        if feedback is None:
            return False  # another command is archiving it right now
    archiving = archived = gone = False
    try:
        with store.transaction() as conn:
            current = store.task(row["id"])
            gone = current is None or current["token"] != row["token"]
            if current is not None and not gone and not (unless and unless(current)):
                archiving = True
                store.archive(conn, current, termsignal=termsignal, termerror=termerror,
                              exitcode=exitcode, feedback=feedback)  # fmt: skip
                process.crash_point("archiving")  # inside the transaction: the history row is not committed
        archived = archiving  # committed
    finally:
        if name is not None:  # archived, by us or by another command: the file is done with
            name.release(remove_file=(archived or gone) and _is_own_file(name.path))
    return archived


def _read_final_feedback(store: Store, row: Row) -> tuple[dict[str, str] | None, FeedbackName | None]:
    """A task's final feedback read from its file, and the file's name, now held (or None).

    The name is taken only if no live process holds it. One that does may be
    another command archiving this very task (the feedback is then None: leave
    it to that one) or another task's launcher (another database sharing the
    folder): that file is neither read nor removed, and the feedback last read
    is the final one.
    """
    current = store.task(row["id"])
    if current is None or current["token"] != row["token"]:
        return {}, None
    path = row_feedpath(current)
    if not path:
        return {}, None
    name, holder = FeedbackName(path), feedback_holder(store, current["id"])
    try:
        held = name.acquire(holder)
    except TaskwatcherError as e:
        log.debug("%s", e)
        held = False
    if held:
        return final_feedback(store, current), name
    if name.holder() == holder:
        return None, None
    log.debug("feedback file %s is held by another live task: not read", path)
    return load_feedback_state(store, current["id"]).data, None


def feedback_holder(store: Store, taskid: int) -> str:
    """Who holds a task's feedback file name, as written in its lock file: a digest of the
    database and the task id, the same for its launcher and any command archiving it (never
    the task's token, which must stay secret; two checksums, not hashlib, which costs a
    launch 5 ms to import)."""
    import zlib

    key = f"{store.path}\0{taskid}".encode()
    return f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


def row_feedpath(row: Row) -> str | None:
    """The row's feedback file, if it is one taskwatcher would have named: an absolute,
    normalised path (no ``..``) to a ``feedback_*.log``. Any other value is not read,
    not removed: a row is data, never a licence to open or delete an arbitrary file."""
    path = row["feedpath"]
    if not path:
        return None
    name = os.path.basename(path) if isinstance(path, str) else ""
    if not (os.path.isabs(name and path) and os.path.normpath(path) == path
            and name.startswith("feedback_") and name.endswith(".log")):  # fmt: skip
        log.warning("task %s: ignoring feedback path %r, not one taskwatcher names", row["id"], path)
        return None
    return path


def _is_own_file(path: str) -> bool:
    """A file (or link) we may remove: ours, and not a folder. In a shared --feedpath
    another user's file of that name is theirs, whoever we are (root included)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not stat.S_ISDIR(st.st_mode)


def _expired(row: Row, t: float) -> bool:
    if row["status"] != TaskStatus.RESERVED:
        return False
    expires = row["expiretime"]
    return expires is not None and expires <= t


# -- feedback files ------------------------------------------------------------------
def final_feedback(store: Store, row: Row) -> dict[str, str]:
    """The feedback as the task left it, read on from where the last reader stopped.

    Call it outside any transaction. A file that is not a regular file (a FIFO,
    a link) or cannot be read leaves the feedback last read, said under --debug.
    """
    path = row_feedpath(row)
    if not path:
        return {}
    state = load_feedback_state(store, row["id"])
    _read_feedback(path, state, final=True)
    return state.data


def _read_feedback(path: str, state: FeedbackState, final: bool = False) -> bool:
    """:func:`read_increment`, a file that cannot be read counting as no news."""
    try:
        return read_increment(path, state, final)
    except TaskwatcherError as e:
        log.debug("%s: the feedback last read stands", e)
        return False


def load_feedback_state(store: Store, taskid: int) -> FeedbackState:
    saved = store.feedback_row(taskid)
    if saved is None:
        return FeedbackState()
    return FeedbackState(
        saved["dev"] or 0,
        saved["ino"] or 0,
        saved["offset"] or 0,
        saved["lines"] or 0,
        json.loads(saved["feedback"] or "{}"),
        saved["fingerprint"] or "",
    )


# -- reservations ----------------------------------------------------------------------
def reserve(
    store: Store, name: str | None, infos: Sequence[str | None], unique: bool, ttl: float = DEFAULT_TTL
) -> int:
    """A new task id, held for ``ttl`` seconds for a launch."""
    return store.reserve(name, infos, unique, ttl)


# -- listing ---------------------------------------------------------------------------
def live_heartbeat(row: Row) -> float | None:
    """The latest heartbeat: what the launcher recorded, or the file's own mtime if newer."""
    beat = row["heartbeat"]
    if row["feedpath"]:
        try:
            beat = max(beat or 0.0, os.lstat(row["feedpath"]).st_mtime)  # a link is never followed
        except OSError:
            pass
    return beat


def describe_task(row: Row, t: float) -> dict[str, Any]:
    """One task as ``--list --json`` shows it (the seed's columns, plus ``timer``)."""
    running = row["status"] != TaskStatus.RESERVED
    started = row["started"] or row["starttime"]
    duration = timer = None
    status = TaskStatus(row["status"]) if row["status"] in TaskStatus.__members__ else row["status"]
    lastupdate = row["lastupdate"]
    if running and started is not None:
        duration = max(0.0, t - started)
        beat = live_heartbeat(row) if row["feedback"] else started
        timer = max(0.0, t - (beat or started))
        status = heartbeat_status(timer, row["timeout"], bool(row["feedback"]))
        lastupdate = int(beat) if beat else lastupdate
    return {
        "name": row["name"],
        "info1": row["info1"],
        "info2": row["info2"],
        "info3": row["info3"],
        "pid": row["pid"],
        "status": str(status),
        "feedback": bool(row["feedback"]),
        "reservetime": row["reservetime"],
        "starttime": row["starttime"],
        "duration": None if duration is None else int(duration),
        "lastupdate": lastupdate,
        "timeout": _number(row["timeout"]),
        "timer": None if timer is None else round(timer, 3),
        "expiretime": None if row["expiretime"] is None else int(row["expiretime"]),
        "unique": bool(row["uniq"]),
        "command": json.loads(row["command"]) if row["command"] else None,
        "feedpath": row["feedpath"],
        "logfile": row["logfile"],
        "host": row["host"],
    }


def list_tasks(store: Store) -> dict[str, dict[str, Any]]:
    """Reserved and running tasks, keyed by task id (as a string)."""
    t = time.time()
    return {str(r["id"]): describe_task(r, t) for r in store.tasks()}


def update(store: Store) -> int:
    """Write fresh durations and statuses into the tasks table; return how many rows."""
    t = time.time()
    rows = [r for r in store.tasks() if r["status"] != TaskStatus.RESERVED]
    with store.transaction() as conn:
        for row in rows:
            d = describe_task(row, t)
            conn.execute(
                "UPDATE tasks SET duration = ?, status = ?, lastupdate = ?"
                " WHERE id = ? AND status != 'RESERVED'",
                (d["duration"], d["status"], d["lastupdate"], row["id"]),
            )
    return len(rows)


# -- feedback --------------------------------------------------------------------------
def task_feedback(store: Store, taskid: int) -> dict[str, str]:
    """The latest feedback of a running task, or the final one of a finished task.

    Only what was appended since the last read is read; the reader's place is
    kept in the ``feedbacks`` table. The file is read outside any transaction
    (a FIFO there must never hold the write lock); the new place is then saved
    only if the saved one is still the one this read started from: a reader that
    saved meanwhile keeps its own, and every saved place is one whole read's.
    """
    row = store.task(taskid)
    if row is None:
        entry = store.history_of(taskid)
        if entry is None:
            raise NoSuchTask(f"no task {taskid}")
        return json.loads(entry["feedback"] or "{}")
    if not row_feedpath(row):
        return {}
    saved = store.feedback_row(taskid)
    start = load_feedback_state(store, taskid)
    state = start.copy()
    if not _read_feedback(row["feedpath"], state) and saved is not None:
        return state.data
    with store.transaction() as conn:
        current = store.task(taskid)
        if current is None or current["token"] != row["token"]:
            ended = True  # it ended meanwhile: history has its final feedback
        else:
            ended = False
            if load_feedback_state(store, taskid) == start:
                store.save_feedback(conn, taskid, state.data, state.dev, state.ino, state.offset,
                                    state.lines, state.fingerprint)  # fmt: skip
                process.crash_point("feedback-saving")  # the new offset and data not committed
    return task_feedback(store, taskid) if ended else state.data


# -- history ---------------------------------------------------------------------------
def describe_entry(row: Row) -> dict[str, Any]:
    """One finished task as ``--history --json`` shows it."""
    return {
        "taskid": row["taskid"],
        "taskname": row["taskname"],
        "info1": row["info1"],
        "info2": row["info2"],
        "info3": row["info3"],
        "termsignal": row["termsignal"] or "",
        "termerror": row["termerror"] or "",
        "starttime": row["starttime"],
        "endtime": row["endtime"],
        "duration": row["duration"],
        "feedback": _feedback_object(row["feedback"]),
        "exitcode": row["exitcode"],
        "pid": row["pid"],
        "host": row["host"],
        "command": json.loads(row["command"]) if row["command"] else None,
        "logfile": row["logfile"],
    }


class HistoryFilter:
    """Which finished tasks to show: of one name, ended since a time, the last N of them."""

    __slots__ = ("last", "name", "since")

    def __init__(self, name: str | None = None, since: float | None = None, last: int | None = None) -> None:
        self.name, self.since, self.last = name, since, last

    def where(self) -> tuple[str, list[Any]]:
        """An SQL condition on history (never empty) and its parameters."""
        terms, params = ["1"], []
        if self.name is not None:
            terms.append("taskname = ?")
            params.append(storable(self.name))
        if self.since is not None:
            terms.append("endtime >= ?")
            params.append(self.since)
        if self.last is not None:  # the newest N of those, still shown oldest first
            terms.append(f"id >= coalesce((SELECT id FROM history WHERE {' AND '.join(terms)}"
                         " ORDER BY id DESC LIMIT 1 OFFSET ?), 0)")  # fmt: skip
            params = [*params, *params, self.last - 1]
        return " AND ".join(terms), params


def history(store: Store, only: HistoryFilter | None = None) -> dict[str, dict[str, Any]]:
    """Finished tasks, oldest first, keyed by history id (as a string)."""
    where, params = (only or HistoryFilter()).where()
    rows = store.query(f"SELECT * FROM history WHERE {where} ORDER BY id", params)
    return {str(r["id"]): describe_entry(r) for r in rows}


def iter_history(
    store: Store, only: HistoryFilter | None = None, chunk: int = 1000
) -> Iterator[tuple[int, dict[str, Any]]]:
    """What :func:`history` gives, as (history id, fields), read ``chunk`` rows at a time:
    a long history is never held whole."""
    where, params = (only or HistoryFilter()).where()
    after = -1
    while rows := store.query(
        f"SELECT * FROM history WHERE id > ? AND {where} ORDER BY id LIMIT ?", (after, *params, chunk)
    ):
        for r in rows:
            yield r["id"], describe_entry(r)
        after = rows[-1]["id"]


def parse_when(text: str, now: float | None = None) -> float:
    """A point in time: unix seconds, an ISO date or date and time (local), or an age
    such as ``90s``, ``30m``, ``2h``, ``7d`` (that long ago)."""
    import datetime as dt

    from .config import parse_duration

    now = time.time() if now is None else now
    if text[-1:].isalpha():  # an age (one parser for every duration), or an ISO time ending in Z
        with contextlib.suppress(ValueError):
            return now - parse_duration(text)
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        return dt.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise UsageError(
            f"not a time: {text!r} (unix seconds, 2026-11-28, 2026-11-28T14:30, or an age like 2h)"
        ) from None


# describe_entry as SQL: SQLite builds each row's JSON, so that --history --json streams
# 100k+ rows a second instead of decoding and re-encoding two JSON columns per row in Python.
_TEXT = "CAST({0} AS TEXT)"
_ENTRY_JSON = (
    "json_object('taskid', taskid, 'taskname', taskname, 'info1', info1, 'info2', info2,"
    " 'info3', info3, 'termsignal', coalesce(termsignal, ''), 'termerror', coalesce(termerror, ''),"
    " 'starttime', starttime, 'endtime', endtime, 'duration', duration,"
    " 'feedback', CASE WHEN coalesce({fb}, '') = '' THEN json('{{}}')"
    " WHEN json_valid({fb}) THEN json({fb}) ELSE {fb} END,"
    " 'exitcode', exitcode, 'pid', pid, 'host', host,"
    " 'command', CASE WHEN json_valid({cmd}) THEN json({cmd}) END, 'logfile', logfile)"
).format(fb=_TEXT.format("feedback"), cmd=_TEXT.format("command"))


def history_json(store: Store, only: HistoryFilter | None = None, chunk: int = 5000) -> Iterator[str]:
    """``--history --json`` as text, in pieces: the same object as :func:`history` gives.

    SQLite joins ``chunk`` rows at a time, so Python handles a few strings, not rows.
    """
    where, params = (only or HistoryFilter()).where()
    yield "{"
    after, sep = -1, ""
    sql = (
        f"SELECT max(id), group_concat(entry, ', ') FROM (SELECT id, '\"' || id || '\": ' || {_ENTRY_JSON}"
        f" AS entry FROM history WHERE id > ? AND {where} ORDER BY id LIMIT ?)"
    )
    while True:
        ((last, text),) = store.cursor(sql, (after, *params, chunk))
        if last is None:
            break
        yield sep + text
        after, sep = last, ", "
    yield "}\n"


def _feedback_object(raw: Any) -> Any:
    if raw in (None, b"", ""):
        return {}
    try:
        return json.loads(raw)
    except (ValueError, TypeError):  # a 1.x row may hold anything
        return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- stopping --------------------------------------------------------------------------
def kill(store: Store, taskid: int) -> str:
    """Stop one task (or cancel a reservation); return what was done, in words."""
    row = store.task(taskid)
    if row is None:
        if store.history_of(taskid) is not None:
            raise NoSuchTask(f"task {taskid} has already ended")
        raise NoSuchTask(f"no task {taskid}")
    return _stop_all(store, [row])[0]


def killall(store: Store, name: str) -> list[str]:
    """Stop every reserved or running task of that name; what was done, one line each.

    A task running on another host cannot be stopped from here: every other one is
    stopped first, then :class:`NotAllStopped` names those (with what was done).
    """
    rows = store.tasks(name)
    if not rows:
        raise NoSuchTask(f"no task named '{storable(name)}'")
    foreign = [r for r in rows if r["status"] != TaskStatus.RESERVED and elsewhere(r)]
    done = _stop_all(store, [r for r in rows if r not in foreign])
    if foreign:
        where = ", ".join(f"task {r['id']} ({elsewhere(r)})" for r in foreign)
        raise NotAllStopped(done, f"not stopped, stop them where they run: {where}")
    return done


def _stop_all(store: Store, rows: Sequence[Row]) -> list[str]:
    """Ask each task's launcher to stop it, then wait until each is archived."""
    done: list[str] = []
    waiting: list[tuple[Row, int]] = []
    for row in rows:
        with store.transaction() as conn:
            current = store.task(row["id"])
            if current is None:
                done.append(f"task {row['id']}: already ended")
                continue
            if current["status"] == TaskStatus.RESERVED:
                store.delete_task(conn, row["id"])
                done.append(f"task {row['id']}: reservation cancelled")
                continue
            where = elsewhere(current)
            if where:
                raise StoreError(f"task {row['id']} runs in {where}: stop it there")
            conn.execute("UPDATE tasks SET stopreason = ? WHERE id = ?", ("killed by request", row["id"]))
        process.crash_point("kill-requested")  # the request is recorded, the launcher not signalled
        fd = _signal_launcher(current)
        if fd is None:  # no launcher to do it: stop and archive the task here
            if not archive_task(store, current, termerror="killed by request", kill_remains=True):
                _still_there(store, current)
            done.append(f"task {row['id']}: killed")
        else:
            waiting.append((current, fd))
    for row, fd in waiting:
        limit = (row["grace"] if row["grace"] is not None else 5.0) + KILL_WAIT_MARGIN
        try:
            if not select.select([fd], [], [], limit)[0]:
                raise StoreError(f"task {row['id']} was asked to stop but its launcher has not finished")
        finally:
            os.close(fd)
        done.append(_after_launcher_exit(store, row))
    return done


def _after_launcher_exit(store: Store, row: Row) -> str:
    """What became of a task whose launcher, asked to stop it, has exited: in words.

    A launcher SIGKILLed meanwhile (by someone else) archived nothing: what is
    left of the task is stopped and it is archived as lost here, and the answer
    says so rather than "killed".
    """
    archive_pending_ends(store)  # a launcher that could not write its end kept it aside
    if archive_task(
        store, row, termerror="launcher lost", kill_remains=True, unless=lambda r: not launcher_gone(r)
    ):
        return f"task {row['id']}: its launcher died first; what was left was killed, archived as lost"
    _still_there(store, row)
    return f"task {row['id']}: killed"


def _still_there(store: Store, row: Row) -> None:
    """Raise if the task was not archived: its processes live on (ones we may not signal)."""
    current = store.task(row["id"])
    if current is not None and current["token"] == row["token"]:
        raise NotPermitted(
            f"task {row['id']} cannot be stopped: its processes may not be signalled by this user"
            " (a setuid program?)"
        )


def _signal_launcher(row: Row) -> int | None:
    """SIGTERM the task's launcher; a pidfd that becomes readable when it exits, or None."""
    if row["launcherpid"] is None or launcher_gone(row):
        return None
    launcher = Identity(row["launcherpid"], row["launcherstart"], row["bootid"])
    try:
        fd = os.pidfd_open(launcher.pid)
    except OSError:
        return None
    if not process.signal_verified(launcher, signal.SIGTERM):
        os.close(fd)
        return None
    return fd


# -- waiting ---------------------------------------------------------------------------
RESERVATION_POLL = 0.2  # seconds between looks at a reservation that is not launched yet


def wait(store: Store, taskid: int, timeout: float | None = None) -> Row:
    """Block until the task ends; return its history row.

    A running task is waited for on its launcher's pidfd (no polling); a finished
    one answers at once; a reservation is looked at every 0.2 s until it is
    launched (or expires: then there is nothing to wait for).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = store.task(taskid)
        if row is None:
            entry = store.history_of(taskid)
            if entry is None:
                raise NoSuchTask(f"no task {taskid} (or a reservation that expired or was cancelled)")
            return entry
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimeout(f"task {taskid} is still running")
        if row["status"] == TaskStatus.RESERVED or not _wait_for_launcher(row, left):
            time.sleep(RESERVATION_POLL if left is None else max(0.0, min(RESERVATION_POLL, left)))
        reconcile(store)  # a launcher that died without archiving: its row is archived now


def _wait_for_launcher(row: Row, limit: float | None) -> bool:
    """Wait until the row's launcher exits (or ``limit`` passes); False if it cannot be waited on."""
    if row["launcherpid"] is None or elsewhere(row):
        return False
    launcher = Identity(row["launcherpid"], row["launcherstart"], row["bootid"])
    try:
        fd = os.pidfd_open(launcher.pid)
    except OSError:
        return False
    try:
        if process.read_stat(launcher.pid) is None or not launcher.is_alive():
            return True  # already gone: reconcile archives it
        select.select([fd], [], [], limit)
        return True
    finally:
        os.close(fd)


# -- the database as a whole -----------------------------------------------------------
def initialize(store: Store, force: bool = False) -> None:
    """Recreate the database; running tasks refuse it, or with ``force`` are stopped first."""
    if force:
        _stop_all(store, [r for r in store.tasks() if r["status"] != TaskStatus.RESERVED])
    # The check and the drop in one transaction: a launch cannot claim a task in between.
    with store.transaction():
        running = [r["id"] for r in store.tasks() if r["status"] != TaskStatus.RESERVED]
        if running:
            ids = ", ".join(map(str, running))
            hint = "they started meanwhile: try again" if force else "stop them or use --force"
            raise TasksRunning(f"tasks are running ({ids}): {hint}")
        logs = store.recreate()
    _remove_placed_logs(store, logs)  # once the drop is committed: a failed drop keeps its logs


def clear_history(store: Store) -> int:
    """Delete the whole history, and the logs taskwatcher kept for it."""
    count, logs = store.delete_history()
    _remove_placed_logs(store, logs)
    return count


def prune(store: Store, keep: int | None = None, max_age: float | None = None) -> int:
    """Delete finished tasks beyond the newest ``keep`` or ended more than ``max_age`` seconds ago."""
    terms, params = [], []
    if keep is not None:
        terms.append("id <= coalesce((SELECT id FROM history ORDER BY id DESC LIMIT 1 OFFSET ?), 0)")
        params.append(keep)
    if max_age is not None:
        terms.append("endtime < ?")
        params.append(time.time() - max_age)
    if not terms:
        return 0
    count, logs = store.delete_history(" OR ".join(terms), params)
    _remove_placed_logs(store, logs)
    return count


def prune_by_config(store: Store) -> int:
    """Apply the configuration file's retention (``[history] keep``, ``max_age``), if it sets one."""
    from .config import load

    conf = load()
    return prune(store, conf.keep, conf.max_age) if conf.prunes else 0


def _remove_placed_logs(store: Store, logfiles: list[str]) -> None:
    """Remove the logs of deleted history rows that taskwatcher itself placed (the row
    says so: never a user's --log, even one inside the logs folder), and only where
    taskwatcher places them: directly in the real logs folder, ``..`` and links resolved."""
    from .output import remove_log

    if not logfiles:
        return
    folder = log_dir(store.path)
    try:
        check_own_folder(folder, "logs folder")
    except StoreError as e:
        log.warning("logs not removed: %s", e)
        return
    real = os.path.realpath(folder)
    for path in logfiles:
        if placed_log_inside(path, real):
            remove_log(path)
        else:
            log.warning("not removing %s: not in the logs folder %s", path, folder)


def placed_log_inside(path: str, real_folder: str) -> bool:
    """``path`` names a file directly in ``real_folder`` once resolved (``..``, symlinked folders)."""
    name = os.path.basename(path)
    if not (name.startswith("task_") and name.endswith(".log")):
        return False
    return os.path.realpath(os.path.dirname(path)) == real_folder


def check_user_log(db_path: str, logfile: str) -> None:
    """Refuse a ``--log`` that would write over (or rotate away) the database, its -wal,
    -shm or journal, or anything in its folder of kept-aside ends."""
    from .errors import ReservationError

    target = os.path.realpath(logfile)
    real_db = os.path.realpath(db_path)
    own = {real_db + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    pending = os.path.realpath(pending_dir(db_path))
    # The log is rotated to FILE.1: that name must not be the database's either.
    if own & {target, target + ".1"}:
        raise ReservationError(
            f"--log {logfile} is the database {db_path} or one of its files: nothing started"
        )
    if os.path.commonpath([target, pending]) == pending:
        raise ReservationError(
            f"--log {logfile} is inside {pending}, taskwatcher's own folder: nothing started"
        )


def log_dir(db_path: str) -> str:
    """Where task logs go by default: ``<db stem>-logs/`` beside the database."""
    return sibling_folder(db_path, "logs")


def placed_log_path(db_path: str, taskid: int) -> str:
    """The log taskwatcher places for a task: ``<db stem>-logs/task_ID.log``, its folder
    made (private to us as the umask allows) and checked to be ours alone."""
    folder = log_dir(db_path)
    try:
        os.mkdir(folder, 0o755)  # never world-writable, whatever the umask (as LogFile does)
    except OSError:
        pass  # it exists (checked below), or opening the log says why, as a failed start
    if os.path.isdir(folder):
        check_own_folder(folder, "logs folder")
    return os.path.join(folder, f"task_{taskid}.log")


def history_entry(store: Store, taskid: int) -> tuple[int, dict[str, Any]] | None:
    """The latest history entry of a task id, as (history id, ``--history --json`` fields)."""
    row = store.history_of(taskid)
    return None if row is None else (row["id"], describe_entry(row))


if __name__ == "__main__":  # python -m taskwatcher.control: taskwatcher 1.7's command line
    from .compat.v17 import control_main

    raise SystemExit(control_main())
