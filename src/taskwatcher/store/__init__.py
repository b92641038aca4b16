"""The store: the storage interface (:mod:`.base`) and its backends (:mod:`.sqlite`,
:mod:`.postgres`).

``Store(db)`` opens the database ``db`` names (and creates or upgrades it): a
``postgresql://`` or ``postgres://`` URL is a PostgreSQL database (psycopg is imported
then, and only then), anything else the path of an SQLite file, the default.
``Store(db, create=False)`` never creates one. The one place the backend is chosen.
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

    Store = TaskStore

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(db: object) -> bool:
    """Whether ``db`` names a PostgreSQL database (a URL), not an SQLite file."""
    return isinstance(db, str) and db.startswith(URL_SCHEMES)


def open_store(db: object = None, *, create: bool = True, bound: float | None = None) -> TaskStore:
    """The store ``db`` names (None: ``$TASKWATCHER_DB``, the configuration file, the default file).
    ``bound``: on a database server, no operation (the connection's opening included) may take
    longer than that many seconds (:meth:`TaskStore.bound_operations`)."""
    from .sqlite import resolve_db_path

    target = resolve_db_path(db)  # type: ignore[arg-type]
    if is_url(target):
        from .postgres import PostgresStore

        return PostgresStore(target, create=create, bound=bound)
    from .sqlite import SQLiteStore

    return SQLiteStore(target, create=create)


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
        return open_store
    if name in __all__:
        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT",
    "RESERVATION_TTL",
    "SCHEMA_VERSION",
    "URL_SCHEMES",
    "Row",
    "SQLiteStore",
    "Store",
    "TaskStore",
    "check_own_folder",
    "check_text_path",
    "command_text",
    "database_missing",
    "default_db_path",
    "is_url",
    "open_store",
    "resolve_db_path",
    "sibling_folder",
    "storable",
]
