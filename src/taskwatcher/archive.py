"""Ending a task: stop its remains if its launcher is gone, read its final feedback,
move it to history, let its feedback file go.

Every end goes through :func:`archive_task`: the launcher's, a lost task's, a kill
without a launcher. Its steps are short and in this order — signals, then the file,
then the store's one atomic ``finish`` — and none happens inside a transaction.
"""

from __future__ import annotations

import os
import stat

from .crash import crash_point
from .errors import TaskwatcherError
from .feedback import FeedbackName
from .feedstate import feedback_holder, final_feedback, load_feedback_state, row_feedpath
from .liveness import stop_remains
from .logs import Logger

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable

    from .model import TaskRow
    from .process import Identity
    from .store import TaskStore

log = Logger(__name__)


def archive_task(
    store: TaskStore,
    row: TaskRow,
    *,
    termerror: str,
    termsignal: str = "",
    exitcode: int | None = None,
    kill_remains: bool = False,
    unless: Callable[[TaskRow], bool] | None = None,
    feedback: dict[str, str] | None = None,
    retry_kind: str | None = None,
    start_next: bool = True,
    lapsed: bool = False,
) -> bool:
    """Move one task to history with its final feedback, then delete its feedback file.

    The row is read again and must still be the same task (same token): another
    command may have archived it, or a re-created database reused its id; the
    store's ``finish`` compares the token again as it writes. ``kill_remains``
    SIGKILLs what is left of a task whose launcher is gone first (and if some of it
    may not be stopped by this user, the row stays: its task still runs, and the
    next command tries again); ``unless`` can call the whole thing off on the fresh
    row. ``feedback``: the final feedback, already read by the task's launcher,
    which holds and removes the file itself; otherwise the file is read here, once
    its name is held (see :class:`FeedbackName`). Returns whether this call archived it.

    ``retry_kind`` (failure, timeout, lost; None: never retried) is what kind of end this
    is for the task's ``--retry-on``: an end to retry goes back to the line in the same
    step as its history row. Then, the history row written, the end's finish hooks are
    started (detached: :mod:`taskwatcher.hooks`) and, with ``start_next``, the next
    tasks in line (:func:`taskwatcher.queueing.start_ready`). The hooks' orders are kept
    with the end in the history row's own transaction (:mod:`taskwatcher.hooks`).

    ``lapsed``: a task whose lease ran out (a store many hosts share): archived only if it
    still has (``host lost``); its ``feedback`` is then the one last saved.
    """
    if kill_remains:
        current = _same_task(store, row, unless)
        if current is None:
            return False
        refused: set[Identity] = set()
        termsignal = stop_remains(current, refused) or termsignal  # signals: outside any transaction
        if refused:
            log.debug("task %d: may not signal %s", current["id"], sorted(i.pid for i in refused))
            return False
    name = None
    if feedback is None:
        feedback, name = _read_final_feedback(store, row)
        if feedback is None:
            return False  # another command is archiving it right now
    archived = gone = False
    hid = current = None
    hooks: list[tuple[str, str]] = []
    retry_at = None
    end = dict(termsignal=termsignal, termerror=termerror, exitcode=exitcode)
    try:
        current = _same_task(store, row, unless)
        gone = current is None and _not_this_task(store, row)
        if current is not None:
            from .hooks import PENDING, due_hooks

            hooks, limit = due_hooks(current, exitcode)
            orders = holder = None
            if hooks:  # kept with the end, in its transaction: a crash after it loses no hook
                from .hooks import hook_environment, me
                from .hooks import orders as hook_orders

                queued_with = {}
                if current["spec"]:  # read while the row is there: the hooks run in it
                    from .queueing import environment_of

                    queued_with = environment_of(store, row["id"])
                orders = hook_orders(hooks, limit, hook_environment(current, end, feedback, queued_with))
                holder = me()
            retry_at, keep_waiter = _retry(current, retry_kind)
            hid = store.finish(row["id"], row["token"], **end, feedback=feedback,
                               hook=PENDING if hooks else None, retry_at=retry_at, keep_waiter=keep_waiter,
                               hook_orders=orders, holder=holder, lapsed=lapsed)  # fmt: skip
            archived = hid is not None
            gone = not archived
    finally:
        if name is not None:  # archived, by us or by another command: the file is done with
            name.release(remove_file=(archived or gone) and _is_own_file(name.path))
    if archived:
        assert current is not None and hid is not None
        _after_end(store, current, hid, bool(hooks), retry_at is not None, start_next)
    return archived


def _retry(row: TaskRow, kind: str | None) -> tuple[float | None, bool]:
    """When the next attempt may start (None: no retry), and whether the task's foreground
    launcher keeps it (only its own launcher retries a foreground task). A task someone
    asked to stop (``--kill``) is never retried, whatever end it came to: its launcher's,
    or a lost one's (a launcher or host that died before it could stop it)."""
    if kind is None or not row["spec"] or row["stopreason"]:
        return None, False
    from .queueing import retry_time, spec_of

    foreground = bool(spec_of(row).get("foreground"))
    if foreground and row["launcherpid"] != os.getpid():
        return None, False
    return retry_time(row, kind), foreground


def _after_end(
    store: TaskStore, row: TaskRow, hid: int, hooks: bool, retried: bool, start_next: bool
) -> None:
    """Outside every transaction, the history row written: the hooks' runner, then the line."""
    try:
        if hooks:
            from .hooks import spawn_runner

            crash_point("hooks-kept")  # the end and its hooks' orders committed, no runner yet
            spawn_runner(store, hid)
        from .queueing import after_end

        after_end(store, row, retried, start_next)
    except (OSError, TaskwatcherError) as e:  # never fails the archive: the next command starts the line
        log.debug("after the end of task %d: %s", row["id"], e)


def _same_task(store: TaskStore, row: TaskRow, unless: Callable[[TaskRow], bool] | None) -> TaskRow | None:
    """The row as it is now if it is still the same task and ``unless`` does not call it off."""
    current = store.task(row["id"])
    if current is None or current["token"] != row["token"] or (unless and unless(current)):
        return None
    return current


def _not_this_task(store: TaskStore, row: TaskRow) -> bool:
    current = store.task(row["id"])
    return current is None or current["token"] != row["token"]


def _read_final_feedback(store: TaskStore, row: TaskRow) -> tuple[dict[str, str] | None, FeedbackName | None]:
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


def _is_own_file(path: str) -> bool:
    """A file (or link) we may remove: ours, and not a folder. In a shared --feedpath
    another user's file of that name is theirs, whoever we are (root included)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not stat.S_ISDIR(st.st_mode)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
