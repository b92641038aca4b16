"""The store: the storage interface (:mod:`.base`) and its backends (:mod:`.sqlite`).

``Store`` is the default backend, SQLite: ``Store(path)`` opens (and creates or
upgrades) the database at ``path``; ``Store(path, create=False)`` never creates one.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from .base import TaskStore
    from .sqlite import (
        APPLICATION_ID,
        BUSY_TIMEOUT,
        RESERVATION_TTL,
        SCHEMA_VERSION,
        Row,
        SQLiteStore,
        check_own_folder,
        check_text_path,
        command_text,
        database_missing,
        default_db_path,
        resolve_db_path,
        sibling_folder,
        storable,
    )

    Store = SQLiteStore


def __getattr__(name: str) -> object:
    # Imported on first use, not here: ``python -m taskwatcher.store.sqlite`` must find its
    # module not yet imported (runpy warns otherwise), and the names stay where they live.
    if name in ("base", "sqlite", "__main__"):  # the submodules themselves: the import system's
        raise AttributeError(name)
    if name == "TaskStore":
        from . import base

        return base.TaskStore
    from . import sqlite

    if name == "Store":
        return sqlite.SQLiteStore
    if name in __all__:
        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT",
    "RESERVATION_TTL",
    "SCHEMA_VERSION",
    "Row",
    "SQLiteStore",
    "Store",
    "TaskStore",
    "check_own_folder",
    "check_text_path",
    "command_text",
    "database_missing",
    "default_db_path",
    "resolve_db_path",
    "sibling_folder",
    "storable",
]
