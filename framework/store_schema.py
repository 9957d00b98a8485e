"""The evaluation store's schema: its tables and version, recognising and checking a file before anything
is written to it (:class:`StoreError`, :func:`check_store`), and switching a connection to the WAL journal
(:mod:`framework.store` describes the store, and migrates an older one when it opens it).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "StoreError", "check_store", "is_store_file"]

#: Version of the store's tables (``PRAGMA user_version``): 1 = evaluations and trials (the first
#: release), 2 = 1 plus head sensitivities (``sensitivities``, ``sensitivity_trials``).  Stores
#: written before the version was recorded have 0 and are recognised by their tables.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS problems (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    fingerprint TEXT NOT NULL,
    mask BLOB NOT NULL,
    n_bits INTEGER NOT NULL,
    objectives TEXT NOT NULL,
    info TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    reason TEXT,
    wall_time REAL NOT NULL,
    strategy TEXT,
    seed INTEGER,
    run_id TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (fingerprint, mask)
);
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    mask BLOB NOT NULL,
    cache_hit INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS sensitivities (
    fingerprint TEXT NOT NULL,
    mask BLOB NOT NULL,
    n_bits INTEGER NOT NULL,
    payload TEXT NOT NULL,
    wall_time REAL NOT NULL,
    strategy TEXT,
    seed INTEGER,
    run_id TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (fingerprint, mask)
);
CREATE TABLE IF NOT EXISTS sensitivity_trials (
    run_id TEXT NOT NULL,
    spent INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    mask BLOB NOT NULL,
    cache_hit INTEGER NOT NULL,
    PRIMARY KEY (run_id, spent)
);
"""


_V1_TABLES = ("problems", "evaluations", "trials")
_V2_TABLES = (*_V1_TABLES, "sensitivities", "sensitivity_trials")


def _columns_of_schema() -> dict[str, list[str]]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return _tables(db)
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                                      "ORDER BY name")]
    return {t: [c[1] for c in db.execute(f"PRAGMA table_info('{t}')")] for t in names}


_COLUMNS = _columns_of_schema()


class StoreError(ValueError):
    """A file that is not an evaluation store this version can use (nothing was written to it)."""


def _schema_of(label: str, version: int, tables: dict[str, list[str]]) -> int | None:
    """The schema version of a database with ``user_version`` ``version`` and ``tables``
    (``{name: columns}``); ``None`` for an empty database (a new store).  :class:`StoreError`
    when it is not an evaluation store this version can read."""
    if not tables:
        return None
    if version > SCHEMA_VERSION:
        raise StoreError(f"{label} is an evaluation store of schema {version}, written by a newer headrepair; this "
                         f"one reads schemas 1 to {SCHEMA_VERSION}: upgrade headrepair or choose another store")
    if "evaluations" not in tables or "trials" not in tables:
        raise StoreError(f"{label} is an SQLite database but not an evaluation store (it holds the tables "
                         f"{', '.join(sorted(tables))}; an evaluation store has {', '.join(_V2_TABLES)}); "
                         "choose another file")
    for table, columns in tables.items():
        if table in _COLUMNS and columns != _COLUMNS[table]:
            raise StoreError(f"{label} is not an evaluation store of a known schema: its table {table!r} has the "
                             f"columns {columns}, expected {_COLUMNS[table]}; choose another file")
    missing = [t for t in _V1_TABLES if t not in tables]
    if missing:
        raise StoreError(f"{label} is not an evaluation store of a known schema: it lacks the table(s) "
                         f"{', '.join(missing)}; choose another file")
    has_v2 = [t for t in _V2_TABLES if t not in _V1_TABLES and t in tables]
    if has_v2 and len(has_v2) != len(_V2_TABLES) - len(_V1_TABLES):
        raise StoreError(f"{label} is a damaged evaluation store: it has the table {has_v2[0]!r} of schema 2 but "
                         "not all of them; choose another file")
    return 2 if has_v2 else 1


def _inspect(db: sqlite3.Connection, label: str) -> tuple[int, int | None]:
    """``(user_version, schema)`` of an open database (:func:`_schema_of`)."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = _tables(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{label} is not an SQLite evaluation store ({exc})") from None
    return version, _schema_of(label, version, tables)


def _wal(db: sqlite3.Connection, timeout: float = 60.0) -> None:
    """Switch to the WAL journal.  SQLite answers "database is locked" at once (no busy wait) when
    another process holds a lock while the mode changes (two processes creating one store): retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_store(path: str | Path, label: str | None = None) -> int | None:
    """Check, without writing anything, that ``path`` can be used as an evaluation store: a
    missing or empty file (a new store, ``None``), or a store of schema 1 to
    :data:`SCHEMA_VERSION` (returned; an older one is migrated when opened).  :class:`StoreError`
    otherwise, naming ``label`` (default: the path)."""
    p = Path(path)
    label = label or repr(str(path))
    if not p.exists() or p.stat().st_size == 0:
        return None
    if not is_store_file(p):
        raise StoreError(f"{label} is not an SQLite evaluation store")
    db = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True, timeout=60.0)
    try:
        return _inspect(db, label)[1]
    finally:
        db.close()


def is_store_file(path: str | Path) -> bool:
    """Whether ``path`` is an SQLite file (an evaluation store, or a file one can be written into:
    an empty file counts)."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(16)
    return not head or head == b"SQLite format 3\x00"
