"""Pipeline state in SQLite: watermarks, load history and the metric history of every run.

SQLite from the standard library is enough for one lake and keeps state inspectable with any
SQLite browser. Every write happens in a transaction, so a killed run leaves the previous state.
On a local disk the database uses WAL; on the Fabric lakehouse (a FUSE mount) and other shared
mounts it keeps SQLite's rollback journal (:func:`journal_mode`). One writer at a time is the lake
lock's job (:mod:`aims_nb_utils.lake_lock`), not SQLite's.
A database that cannot be written (full disk, read-only folder, locked too long, corrupt) is a
:class:`StateError` naming the file and what to do, never a bare ``sqlite3`` traceback.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import AimsError, DiskFullError, ReadOnlyError


class StateError(AimsError):
    """The state database cannot be opened, read or written."""

    def __init__(self, path: Path | str, problem: str, hint: str | None = None) -> None:
        self.path = str(path)
        super().__init__(f"state database {path}: {problem}", hint=hint)


def state_error(exc: sqlite3.Error, path: Path | str, doing: str = "update it") -> AimsError:
    """The AimsError a user should see for a sqlite3 failure on the state database."""
    text = str(exc)
    lowered = text.lower()
    if "disk is full" in lowered or ("disk i/o error" in lowered and _disk_full(path)):
        return DiskFullError(path, f"{doing} in the state database")
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return ReadOnlyError(path, f"{doing} in the state database")
    if "locked" in lowered:
        return StateError(
            path, f"{text} (another process kept it busy)", hint="wait for it and rerun"
        )
    if "malformed" in lowered or "not a database" in lowered:
        return StateError(
            path,
            text,
            hint="move the file aside and rerun: loads then start afresh from Bronze",
        )
    return StateError(path, f"cannot {doing}: {text}")


def _disk_full(path: Path | str) -> bool:
    from .errors import free_bytes

    free = free_bytes(path)
    return free is not None and free < 2**20


def new_run_id() -> str:
    """Sortable, unique run id shared by validation, ingestion and the orchestration log."""
    return datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S_") + secrets.token_hex(3)


def utc_now() -> str:
    """ISO time in milliseconds: load times are compared with Bronze file times (freshness), and
    a load that ends within the second its file was written must still read as after it."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    table_name TEXT PRIMARY KEY,
    last_updated TEXT,          -- max LASTUPDATED seen in Bronze (text as exported)
    fingerprint TEXT NOT NULL,  -- content fingerprint of the Bronze file last loaded
    rows INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS load_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    rows_in INTEGER,
    rows_silver INTEGER,
    rows_quarantined INTEGER,
    status TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS table_metrics (
    run_id TEXT NOT NULL,
    run_at TEXT NOT NULL,
    table_name TEXT NOT NULL,
    status TEXT NOT NULL,
    row_count INTEGER,
    column_count INTEGER,
    rules_total INTEGER,
    rules_passed INTEGER,
    quality_score REAL,
    weighted_score REAL,
    completeness REAL,
    validity REAL,
    uniqueness REAL,
    consistency REAL,
    integrity REAL,
    seconds REAL,
    PRIMARY KEY (run_id, table_name)
);
CREATE TABLE IF NOT EXISTS rule_metrics (
    run_id TEXT NOT NULL,
    run_at TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    expectation_type TEXT NOT NULL,
    column_name TEXT,
    severity TEXT,
    dimension TEXT,
    success INTEGER NOT NULL,
    element_count INTEGER,
    unexpected_count INTEGER,
    unexpected_percent REAL,
    PRIMARY KEY (run_id, table_name, rule_id)
);
CREATE TABLE IF NOT EXISTS column_metrics (
    run_id TEXT NOT NULL,
    run_at TEXT NOT NULL,
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    null_percent REAL,
    distinct_count INTEGER,
    PRIMARY KEY (run_id, table_name, column_name)
);
CREATE TABLE IF NOT EXISTS drop_statistics (
    table_name TEXT NOT NULL,
    drop_id TEXT NOT NULL,        -- the Bronze file profiled: size:mtime (one row per drop)
    recorded_at TEXT NOT NULL,
    rows INTEGER NOT NULL,
    statistics TEXT NOT NULL,     -- JSON: per column nulls, value counts, numeric bulk
    run_id TEXT,
    PRIMARY KEY (table_name, drop_id)
);
CREATE INDEX IF NOT EXISTS load_history_table ON load_history (table_name, started_at);
CREATE INDEX IF NOT EXISTS table_metrics_table ON table_metrics (table_name, run_at);
"""


def journal_mode(db_path: str | Path) -> str:
    """WAL on a local disk; the rollback journal (DELETE) where the database lives on a shared or
    FUSE mount such as the Fabric lakehouse: WAL needs shared memory between the processes using
    the database, which SQLite says does not work over a network filesystem."""
    from .environment import on_shared_mount

    return "DELETE" if on_shared_mount(Path(db_path).parent) else "WAL"


@contextmanager
def connect(db_path: str | Path) -> Iterator[sqlite3.Connection]:
    """Open the state database (creating it and its schema), commit on success, roll back on error."""
    from .errors import os_error_as_aims

    db_path = Path(db_path)
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db_path, timeout=60)
    except OSError as exc:
        raise os_error_as_aims(exc, db_path, "open the state database") from None
    except sqlite3.Error as exc:
        raise state_error(exc, db_path, "open it") from None
    conn.row_factory = sqlite3.Row
    try:
        try:
            conn.execute(f"PRAGMA journal_mode={journal_mode(db_path)}")
            conn.executescript(SCHEMA)
            yield conn
            conn.commit()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:  # full, read-only, locked, corrupt: say which
            raise state_error(exc, db_path) from None
    except BaseException:
        try:
            conn.rollback()
        except sqlite3.Error:
            pass
        raise
    finally:
        conn.close()


def _insert_many(
    conn: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]], replace: bool = True
) -> int:
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    sql = f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    conn.executemany(sql, [tuple(row.get(c) for c in columns) for row in rows])
    return len(rows)


def record_table_metrics(db_path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Append (or replace, for the same run and table) per-table metrics of a validation run."""
    with connect(db_path) as conn:
        return _insert_many(conn, "table_metrics", rows)


def record_rule_metrics(db_path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    with connect(db_path) as conn:
        return _insert_many(conn, "rule_metrics", rows)


def record_column_metrics(db_path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    with connect(db_path) as conn:
        return _insert_many(conn, "column_metrics", rows)


def get_watermark(db_path: str | Path, table: str) -> dict[str, Any] | None:
    with connect(db_path) as conn:
        row = conn.execute("SELECT * FROM watermarks WHERE table_name = ?", (table,)).fetchone()
        return dict(row) if row else None


def set_watermark(db_path: str | Path, **fields: Any) -> None:
    with connect(db_path) as conn:
        _insert_many(conn, "watermarks", [fields])


def watermarks(db_path: str | Path) -> list[dict[str, Any]]:
    with connect(db_path) as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM watermarks ORDER BY table_name")]


def start_load(
    db_path: str | Path, run_id: str, table: str, started_at: str, rows_in: int | None
) -> int:
    """Open a load-history row with status 'running'; returns its id for :func:`finish_load`."""
    with connect(db_path) as conn:
        cursor = conn.execute(
            "INSERT INTO load_history (run_id, table_name, started_at, rows_in, status) VALUES (?, ?, ?, ?, 'running')",
            (run_id, table, started_at, rows_in),
        )
        return int(cursor.lastrowid)


def finish_load(db_path: str | Path, load_id: int, **fields: Any) -> None:
    allowed = {"ended_at", "rows_in", "rows_silver", "rows_quarantined", "status", "error"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown load_history fields: {sorted(unknown)}")
    with connect(db_path) as conn:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(
            f"UPDATE load_history SET {assignments} WHERE id = ?", (*fields.values(), load_id)
        )


def load_history(
    db_path: str | Path, limit: int = 20, table: str | None = None
) -> list[dict[str, Any]]:
    with connect(db_path) as conn:
        sql = "SELECT * FROM load_history"
        params: tuple[Any, ...] = ()
        if table:
            sql += " WHERE table_name = ?"
            params = (table,)
        sql += " ORDER BY id DESC LIMIT ?"
        return [dict(r) for r in conn.execute(sql, (*params, limit))]


def query(db_path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Read-only helper for notebooks and reports (trend queries)."""
    with connect(db_path) as conn:
        return [dict(r) for r in conn.execute(sql, params)]


def record_drop_statistics(
    db_path: str | Path,
    table: str,
    drop_id: str,
    rows: int,
    statistics: dict[str, Any],
    run_id: str | None = None,
) -> None:
    """Keep the column statistics profiling measured on one Bronze drop of ``table``.

    A drop's file is replaced by the next one, so its statistics are the only record of what
    normal data looked like then; ``profile --history N`` calibrates rules from the last N.
    Profiling the same drop again replaces its row (and makes it the newest)."""
    import json

    with connect(db_path) as conn:
        conn.execute(
            "DELETE FROM drop_statistics WHERE table_name = ? AND drop_id = ?", (table, drop_id)
        )
        conn.execute(
            "INSERT INTO drop_statistics (table_name, drop_id, recorded_at, rows, statistics, "
            "run_id) VALUES (?, ?, ?, ?, ?, ?)",
            (table, drop_id, utc_now(), int(rows), json.dumps(statistics, default=str), run_id),
        )


def drop_statistics(db_path: str | Path, table: str, limit: int) -> list[dict[str, Any]]:
    """The statistics of the last ``limit`` drops of ``table`` recorded, newest first
    (``statistics`` parsed from its JSON)."""
    import json

    with connect(db_path) as conn:
        rows = conn.execute(
            "SELECT table_name, drop_id, recorded_at, rows, statistics, run_id "
            "FROM drop_statistics WHERE table_name = ? ORDER BY recorded_at DESC, rowid DESC "
            "LIMIT ?",
            (table, int(limit)),
        ).fetchall()
    out = []
    for row in rows:
        entry = dict(row)
        entry["statistics"] = json.loads(entry["statistics"])
        out.append(entry)
    return out
