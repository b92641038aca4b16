"""How much history is kept: pruning (by count, by age, by the configuration file),
clearing, recreating the store; and removing the logs taskwatcher placed for the rows
deleted (never a user's ``--log``), once the store has committed the deletion.
"""

from __future__ import annotations

import os
import time

from .errors import StoreError, TasksRunning
from .logs import Logger
from .paths import log_dir, placed_log_inside
from .status import TaskStatus
from .store import check_own_folder

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .model import TaskRow
    from .store import TaskStore

log = Logger(__name__)


def prune(store: TaskStore, keep: int | None = None, max_age: float | None = None) -> int:
    """Delete finished tasks beyond the newest ``keep`` or ended more than ``max_age`` seconds ago."""
    if keep is None and max_age is None:
        return 0
    count, logs = store.prune(keep, None if max_age is None else time.time() - max_age)
    _remove_placed_logs(store, logs)
    return count


def prune_by_config(store: TaskStore) -> int:
    """Apply the configuration file's retention (``[history] keep``, ``max_age``), if it sets one."""
    from .config import load

    conf = load()
    return prune(store, conf.keep, conf.max_age) if conf.prunes else 0


def clear_history(store: TaskStore) -> int:
    """Delete the whole history, and the logs taskwatcher kept for it."""
    count, logs = store.clear_history()
    _remove_placed_logs(store, logs)
    return count


def initialize(
    store: TaskStore, force: bool = False, stop_all: Callable[[Sequence[TaskRow]], object] | None = None
) -> None:
    """Recreate the store; running tasks refuse it, or with ``force`` are stopped first (by ``stop_all``)."""
    if force and stop_all is not None:
        stop_all([r for r in store.tasks() if r["status"] != TaskStatus.RESERVED])
    try:
        logs = store.recreate()  # the check and the drop in one step: a launch cannot claim in between
    except TasksRunning as e:
        hint = "they started meanwhile: try again" if force else "stop them or use --force"
        raise TasksRunning(f"{e}: {hint}") from None
    _remove_placed_logs(store, logs)  # once the drop is committed: a failed drop keeps its logs


def _remove_placed_logs(store: TaskStore, logfiles: list[str]) -> None:
    """Remove the logs of deleted history rows that taskwatcher itself placed (the row
    says so: never a user's --log, even one inside the logs folder), and only where
    taskwatcher places them: directly in the real logs folder, ``..`` and links resolved."""
    from .output import remove_log

    if not logfiles:
        return
    folder = log_dir(store)
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


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
