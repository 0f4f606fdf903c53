"""Bronze -> Silver: incremental, atomic loads with watermarks, load history and a lake lock.

Per table and run:

1. **Plan** (cheap, no data read). The Bronze file's fingerprint (size, mtime and a hash of its
   parquet footer, which holds every row group's offsets and statistics), the fingerprint of what
   decides the split (rule file bytes, typing engine, placeholders, thresholds and policies,
   storage format, Bronze columns) and of the parents of its referential rules are compared with
   the state DB. Nothing changed -> ``unchanged``: no read, no validation, no write.
2. **Verdict**: the table-level verdict of the same run's validation (``validation.validate_tables``
   for the tables that need work, unless the caller passes ``verdicts``). PASSED or SKIPPED (an
   empty table) promotes; ERROR stops the table; FAILED does not promote and applies
   ``settings.failed_table_policy``:

   * ``quarantine_all``: every Bronze row goes to quarantine with a reason naming the threshold
     failures, and Silver for the table is emptied (it holds no unverified rows);
   * ``keep_previous``: Silver keeps the last promoted load untouched; the drop goes to quarantine.

   The next load after a not-promoted one is a full load.
3. **Drift** (:func:`aims_nb_utils.schema.compare_schema` of the Bronze columns with the rule file)
   and ``settings.drift_policy_for(table)``: ``evolve`` ingests with the current columns (a
   missing column is null in Silver, an extra one is kept as text; noted in the result);
   ``quarantine`` sends the whole drop to quarantine with a reason naming the drift (Silver as per
   ``failed_table_policy``); ``fail`` makes the table an error naming the columns.
4. **Rows**. Every Bronze row gets a content hash (DuckDB ``hash`` over all its values). A first
   load, a forced one, or one after the rules changed processes all rows. Otherwise only the rows
   whose hash is not in Silver or quarantine yet (new and changed rows; a changed row's old
   version has a hash that is no longer in Bronze, so it is removed: an upsert by content that
   keeps Silver free of duplicate keys), plus rows whose *table-scope* verdict changed (uniqueness,
   references and key rules are evaluated on whole columns, so a new duplicate also moves its
   older twin out of Silver, and a parent that arrived releases an orphan). Hashes are used rather
   than ``LASTUPDATED > watermark`` because they also catch edits that did not touch LASTUPDATED
   and tables without it; every row with a newer LASTUPDATED has a new hash. The watermark still
   records the latest LASTUPDATED (when the table has one) for people and reports.

   **Row identity (the key).** Resolved by :func:`aims_nb_utils.schema.resolve_key`: the
   ``table_keys`` setting, else the rule file's first ``keys:`` entry (a person's, or the one
   profiling discovered), else the published spec's id column (the AIMS tables), else none;
   composite keys are allowed, and a declared key whose columns Bronze lacks is an error naming
   them. Rows whose key is empty or occurs more than once in the drop are quarantined
   (``key_not_null(<cols>)``, ``duplicate_key(<cols>)``: every row of a duplicated key, none
   silently preferred). A table **without a key** is a snapshot of its Bronze file: Silver holds
   exactly its current rows (identical rows included, none collapsed), matched by content, so
   a rewritten file with the same rows is ``unchanged`` and a changed one replaces what changed.
   The invariants below hold the same way.
5. **Write**: Silver (typed, see :mod:`aims_nb_utils.typing_rules`: a typed Bronze column keeps its
   Arrow type, text columns are typed by their rules) and quarantine (Bronze text plus
   reasons, see :mod:`aims_nb_utils.quarantine`) are streamed into uncommitted writers
   (:class:`aims_nb_utils.storage.TableWriter`), batch by batch, so memory stays bounded. Before
   anything is published the invariants are checked: rows processed = rows to Silver + rows to
   quarantine, and (except under ``keep_previous``) Silver rows + quarantine rows = Bronze rows
   and (for a table with a key) no key twice in Silver. A violation publishes nothing and fails the run
   (:class:`IngestInvariantError`). Then both tables are committed (atomic rename or one Delta
   commit each: a Silver with a key is updated by a MERGE on it, so Delta history and time
   travel show the rows that changed; a keyless snapshot table and the quarantine are
   overwritten) and only then the watermark and state: a run killed at any point leaves the
   previous Silver readable, and the next run recomputes from the data itself (hashes), so it
   converges to what an uninterrupted run gives.

Tables run in ``settings.max_workers`` processes, biggest first; workers die with the run and
publish nothing unless the run still holds the lake lock. One run at a time per lake: the lake
lock (:mod:`aims_nb_utils.lake_lock`, an OS lock on a file in the state folder) stops a second run
with a message naming the holder, and is free again the moment its holder dies. Every table of
every run leaves a load-history row (rows in / to Silver / quarantined, status, error).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import struct
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import checks, state, storage, typing_rules
from .engine import get_engine
from .errors import AimsError, BronzeReadError, RuleFileError
from .io import list_bronze_tables, validate_table_name
from .lake_lock import (  # noqa: F401 - re-exported: the lock lived here first
    LOCK_NAME,
    LakeLockedError,
    _pid_alive,
    check_run_lock,
    fault_point,
    lake_lock,
    lock_path,
    pool_options,
    read_lock,
)
from .quarantine import (
    FAILED_RULES,
    ROW_HASH,
    SILVER_FIELDS,
    quarantine_rows,
    quarantine_schema,
    row_rules,
    type_pattern_rules,
)
from .quarantine import evaluate as evaluate_rules
from .rules import RuleFile, load_rule_file
from .schema import SchemaComparison, compare_schema
from .schema import resolve_key as schema_resolve_key
from .settings import Settings

# Bump when the meaning of the split or of typing changes: every table then reloads in full.
ENGINE_VERSION = "2"  # 2: source types kept, resolved keys, composite keys
STATUSES = ("loaded", "unchanged", "not_promoted", "error")
BATCH_ROWS = 262_144
# Below this much Bronze to process, worker processes cost more to start (~1.5 s each, spawn and
# imports) than they save: the run stays in this process.
PARALLEL_MIN_BYTES = 64 * 2**20
WATERMARK_COLUMN = "LASTUPDATED"

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingest_state (
    table_name TEXT PRIMARY KEY,
    rules_fingerprint TEXT NOT NULL,       -- what decided the split (rule file, settings, engine)
    references_fingerprint TEXT NOT NULL,  -- Bronze fingerprints of referential parents
    status TEXT NOT NULL,                  -- loaded | not_promoted (last load that wrote data)
    policy TEXT,                           -- failed_table_policy applied when not promoted
    bronze_rows INTEGER,
    silver_rows INTEGER,
    quarantined_rows INTEGER,
    schema_drift TEXT,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


# --- errors -----------------------------------------------------------------------------------


class IngestInvariantError(AimsError):
    """Rows would be lost or duplicated: nothing of the table was published."""

    def __init__(self, problems: Sequence[str], run: IngestRun | None = None) -> None:
        self.problems = list(problems)
        self.run = run
        super().__init__(
            "ingestion invariant violated: " + "; ".join(self.problems),
            hint="the previous Silver was kept; report this with the load history "
            "(`python -m aims_nb_utils history`)",
        )


class TableIngestError(AimsError):
    """A table cannot be ingested as it is (drift policy 'fail', verdict ERROR, ...)."""

    def __init__(self, table: str, problem: str, hint: str | None = None) -> None:
        self.table = table
        super().__init__(f"table {table}: {problem}", hint=hint)


# --- results ----------------------------------------------------------------------------------


@dataclass
class TableIngest:
    """What one table's load did (the fields the load history records, and more)."""

    table: str
    status: str
    rows_in: int = 0
    rows_silver: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    error: str | None = None
    mode: str = "none"  # full | incremental | none
    bronze_rows: int | None = None
    silver_total: int | None = None
    quarantine_total: int | None = None
    rows_deleted: int = 0
    verdict: str | None = None
    invariant_ok: bool = True
    notes: list[str] = field(default_factory=list)
    state: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    staged: list[storage.StagedTable] | None = field(default=None, repr=False)

    def as_row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "status": self.status,
            "mode": self.mode,
            "verdict": self.verdict or "",
            "rows in": f"{self.rows_in:,}",
            "to silver": f"{self.rows_silver:,}",
            "quarantined": f"{self.rows_quarantined:,}",
            "silver total": "" if self.silver_total is None else f"{self.silver_total:,}",
            "seconds": f"{self.seconds:.1f}",
            "error / notes": self.error or "; ".join(self.notes),
        }


@dataclass
class IngestRun:
    run_id: str
    started_at: str
    ended_at: str | None = None
    seconds: float = 0.0
    validation_seconds: float = 0.0
    tables: dict[str, TableIngest] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        results = list(self.tables.values())
        return {
            "tables": len(results),
            "rows_in": sum(r.rows_in for r in results),
            "rows_silver": sum(r.rows_silver for r in results),
            "rows_quarantined": sum(r.rows_quarantined for r in results),
            "loaded": sum(r.status == "loaded" for r in results),
            "unchanged": sum(r.status == "unchanged" for r in results),
            "not_promoted": sum(r.status == "not_promoted" for r in results),
            "errors": sum(r.status == "error" for r in results),
        }

    @property
    def ok(self) -> bool:
        return all(r.status != "error" for r in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "seconds": self.seconds,
            "validation_seconds": self.validation_seconds,
            "summary": self.summary,
            "tables": {t: asdict(r) for t, r in self.tables.items()},
        }


# --- fingerprints and state -------------------------------------------------------------------


def file_fingerprint(path: Path) -> str:
    """size:mtime:footer-hash. The footer holds every row group's offsets and min/max statistics,
    so a rewritten file almost always changes it; mtime catches the rest (a false 'changed' only
    costs a diff that finds no row to process)."""
    stat = path.stat()
    with open(path, "rb") as handle:
        if stat.st_size < 12:
            raise BronzeReadError(path.stem, path, "file is too small to be parquet")
        handle.seek(stat.st_size - 8)
        tail = handle.read(8)
        if tail[4:] != b"PAR1":
            raise BronzeReadError(path.stem, path, "no parquet footer (truncated or corrupt file)")
        footer_len = struct.unpack("<i", tail[:4])[0]
        if not 0 < footer_len <= stat.st_size - 12:
            raise BronzeReadError(path.stem, path, "parquet footer length is invalid")
        handle.seek(stat.st_size - 8 - footer_len)
        digest = hashlib.sha256(handle.read(footer_len)).hexdigest()[:16]
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest}"


def _hash_text(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def get_ingest_state(settings: Settings, table: str) -> dict[str, Any] | None:
    return _previous_state(settings).get(table, (None, None))[1]


def _previous_state(settings: Settings) -> dict[str, tuple[dict | None, dict | None]]:
    """table -> (watermark row, ingest_state row), read in one connection."""
    out: dict[str, tuple[dict | None, dict | None]] = {}
    with state.connect(settings.paths.state_db) as conn:
        conn.executescript(STATE_SCHEMA)
        marks = {r["table_name"]: dict(r) for r in conn.execute("SELECT * FROM watermarks")}
        states = {r["table_name"]: dict(r) for r in conn.execute("SELECT * FROM ingest_state")}
    for table in set(marks) | set(states):
        out[table] = (marks.get(table), states.get(table))
    return out


def _upsert(conn: Any, table: str, fields: Mapping[str, Any]) -> None:
    columns = list(fields)
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})",
        tuple(fields.values()),
    )


def _finish_load(conn: Any, load_id: int, result: TableIngest, started_at: str) -> None:
    conn.execute(
        "UPDATE load_history SET started_at = ?, ended_at = ?, rows_in = ?, rows_silver = ?,"
        " rows_quarantined = ?, status = ?, error = ? WHERE id = ?",
        (
            started_at,
            state.utc_now(),
            result.rows_in,
            result.rows_silver,
            result.rows_quarantined,
            result.status,
            result.error,
            load_id,
        ),
    )


def _open_loads(settings: Settings, run_id: str, tables: Sequence[str]) -> dict[str, int]:
    """One 'running' history row per table about to load, in one transaction (a killed run leaves
    them 'running'; the next run marks them interrupted)."""
    now = state.utc_now()
    ids = {}
    with state.connect(settings.paths.state_db) as conn:
        for table in tables:
            cursor = conn.execute(
                "INSERT INTO load_history (run_id, table_name, started_at, status) "
                "VALUES (?, ?, ?, 'running')",
                (run_id, table, now),
            )
            ids[table] = int(cursor.lastrowid)
    return ids


def _close_interrupted_loads(settings: Settings) -> int:
    """Loads still 'running' while we hold the lock belong to a killed run: say so."""
    with state.connect(settings.paths.state_db) as conn:
        cursor = conn.execute(
            "UPDATE load_history SET status = 'error', ended_at = ?, "
            "error = 'interrupted: the process ended before this load finished (nothing was "
            "published)' WHERE status = 'running'",
            (state.utc_now(),),
        )
        return int(cursor.rowcount)


# --- plan -------------------------------------------------------------------------------------


@dataclass
class TablePlan:
    table: str
    action: str  # process | unchanged | error
    reason: str = ""
    size: int = 0
    bronze_fingerprint: str | None = None
    rules_fingerprint: str | None = None
    references_fingerprint: str | None = None
    incremental: bool = False
    error: str | None = None
    previous_status: str | None = None
    rule_file: RuleFile | None = field(default=None, repr=False)


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def plan_table(
    settings: Settings,
    table: str,
    force: bool,
    previous: tuple[dict | None, dict | None] | None = None,
) -> TablePlan:
    """Decide, without reading data, whether a table needs work and whether incrementally.

    ``previous`` is (watermark, ingest state) of the table; read from the state DB when omitted."""
    validate_table_name(table)
    path = settings.paths.bronze_file(table)
    plan = TablePlan(table=table, action="error")
    if not path.is_file():
        plan.error = str(
            BronzeReadError(
                table, path, "file not found", hint="check the Bronze folder or re-export"
            )
        )
        return plan
    plan.size = path.stat().st_size
    rule_path = settings.paths.rule_file(table)
    try:
        plan.bronze_fingerprint = file_fingerprint(path)
        bronze_schema = pq.read_schema(path)
        columns = bronze_schema.names
        rule_file = load_rule_file(rule_path)
        key, _key_source = resolve_key(settings, table, rule_file, columns)
    except (AimsError, OSError, pa.ArrowException) as exc:
        if isinstance(exc, (BronzeReadError, TableIngestError)):
            plan.error = str(exc)
        elif isinstance(exc, RuleFileError):
            plan.error = f"table {table}: {exc}"
        else:
            plan.error = str(BronzeReadError(table, path, str(exc).splitlines()[0]))
        return plan
    parents = sorted(
        {e.reference for e in rule_file.expectations if e.reference and e.quarantines_rows}
    )
    parent_prints = []
    for parent, _column in parents:
        parent_path = settings.paths.bronze_file(parent)
        if parent_path.is_file():
            stat = parent_path.stat()
            parent_prints.append((parent, stat.st_size, stat.st_mtime_ns))
        else:
            parent_prints.append((parent, "missing"))
    plan.references_fingerprint = _hash_text(parent_prints)
    plan.rules_fingerprint = _hash_text(
        ENGINE_VERSION,
        _duckdb_version(),
        hashlib.sha256(rule_path.read_bytes()).hexdigest(),
        [(f.name, str(f.type)) for f in bronze_schema],
        key,
        settings.null_placeholders,
        settings.dq_threshold,
        settings.max_quarantine_percent,  # the verdict depends on it (issue 11)
        settings.failed_table_policy,
        settings.drift_policy_for(table),
        settings.storage_format,
    )
    plan.rule_file = rule_file
    if previous is None:
        previous = _previous_state(settings).get(table, (None, None))
    mark, prev = previous
    plan.previous_status = prev["status"] if prev else None
    silver_there = storage.table_exists(settings, "silver", table)
    quarantine_there = storage.table_exists(settings, "quarantine", table)
    same_rules = prev is not None and prev["rules_fingerprint"] == plan.rules_fingerprint
    data_there = (
        (silver_there and quarantine_there)
        if prev is not None and prev["status"] == "loaded"
        else quarantine_there
    )
    if (
        not force
        and same_rules
        and data_there
        and mark is not None
        and mark["fingerprint"] == plan.bronze_fingerprint
        and prev["references_fingerprint"] == plan.references_fingerprint
    ):
        plan.action, plan.reason = "unchanged", "Bronze file, rules and parents unchanged"
        return plan
    plan.action = "process"
    plan.incremental = bool(
        not force
        and same_rules
        and prev["status"] == "loaded"
        and silver_there
        and quarantine_there
    )
    if force:
        plan.reason = "forced"
    elif prev is None:
        plan.reason = "first load"
    elif not same_rules:
        plan.reason = "rules, settings or columns changed: full reload"
    elif prev["status"] != "loaded":
        plan.reason = "previous load was not promoted: full reload"
    elif not plan.incremental:
        plan.reason = "Silver or quarantine missing: full reload"
    else:
        plan.reason = "Bronze or a parent changed: incremental"
    return plan


# --- row hashes and selection -----------------------------------------------------------------

_DUCKDB = None


def row_hashes(data: pa.Table | pa.RecordBatch) -> np.ndarray:
    """64-bit content hash of each row over all its values (DuckDB's vectorised ``hash``)."""
    global _DUCKDB
    if data.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    if _DUCKDB is None:
        import duckdb

        _DUCKDB = duckdb.connect()
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in data.schema.names)
    _DUCKDB.register("aims_rows", data)
    try:
        out = _DUCKDB.execute(f"SELECT hash({columns}) AS h FROM aims_rows").fetchnumpy()["h"]
    finally:
        _DUCKDB.unregister("aims_rows")
    return np.asarray(out, dtype=np.uint64).view(np.int64)


@dataclass
class Selection:
    process: np.ndarray  # bool per Bronze row: (re)process it
    keep_hashes: np.ndarray  # stored rows whose hash is here stay as they are
    deleted: int  # stored rows whose content is no longer in Bronze
    dropped: int  # stored rows replaced or deleted


def select_rows(
    bronze_hashes: np.ndarray,
    silver_hashes: np.ndarray,
    quarantine_hashes: np.ndarray,
    quarantine_failed: pa.ListArray | pa.ChunkedArray,
    table_masks: np.ndarray,
    table_rule_ids: Sequence[str],
    twins_are_new: bool = True,
) -> Selection:
    """Which Bronze rows to (re)process and which stored rows to drop (see the module doc).

    ``twins_are_new`` (rows whose content occurs twice are always reprocessed: a keyed table
    must look at them again) is False for a keyless table, where identical rows are legitimate
    and whose caller compares the multiset of hashes itself."""
    stored = np.concatenate([silver_hashes, quarantine_hashes])
    values, inverse, counts = np.unique(bronze_hashes, return_inverse=True, return_counts=True)
    new = ~np.isin(bronze_hashes, stored)
    if twins_are_new:
        twin_in_bronze = counts[inverse] > 1
        stored_values, stored_counts = np.unique(stored, return_counts=True)
        twin_in_store = np.isin(bronze_hashes, stored_values[stored_counts > 1])
        new |= twin_in_bronze | twin_in_store
    process = new.copy()
    if len(table_rule_ids) and len(quarantine_hashes):
        if isinstance(quarantine_failed, pa.ChunkedArray):
            quarantine_failed = quarantine_failed.combine_chunks()
        flat = np.asarray(
            pc.list_flatten(quarantine_failed).to_numpy(zero_copy_only=False), dtype=object
        )
        parents = np.asarray(pc.list_parent_indices(quarantine_failed).to_numpy(), dtype=np.int64)
        before = np.zeros((len(bronze_hashes), len(table_rule_ids)), dtype=bool)
        order = np.argsort(quarantine_hashes, kind="stable")
        sorted_q = quarantine_hashes[order]
        pos = np.searchsorted(sorted_q, bronze_hashes)
        pos = np.minimum(pos, len(sorted_q) - 1)
        in_q = (sorted_q[pos] == bronze_hashes) & ~new
        q_row_of_bronze = order[pos]
        for j, rule_id in enumerate(table_rule_ids):
            flagged_q = np.zeros(len(quarantine_hashes), dtype=bool)
            flagged_q[parents[flat == rule_id]] = True
            before[in_q, j] = flagged_q[q_row_of_bronze[in_q]]
        process |= (table_masks != before).any(axis=1)
    elif len(table_rule_ids):
        process |= table_masks.any(axis=1)  # nothing was quarantined before: any flag is news
    keep = np.unique(bronze_hashes[~process])  # each occurs once in Bronze and once in store
    deleted = int((~np.isin(stored, values)).sum())
    dropped = int((~np.isin(stored, keep)).sum())
    return Selection(process, keep, deleted, dropped)


# --- one table --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The parts of a validation TableResult ingestion needs (picklable for worker processes)."""

    status: str
    threshold_failures: list[str] = field(default_factory=list)
    success_percentage: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, result: Any) -> Verdict:
        return cls(
            status=str(result.status),
            threshold_failures=list(getattr(result, "threshold_failures", []) or []),
            success_percentage=getattr(result, "success_percentage", None),
            error=getattr(result, "error", None) or getattr(result, "reason", None),
        )


def _silver_columns(bronze_columns: Sequence[str], rule_file: RuleFile, policy: str) -> list[str]:
    expected = rule_file.columns()
    if not expected:
        return list(bronze_columns)
    if policy == "evolve":
        return list(expected) + [c for c in bronze_columns if c not in set(expected)]
    return [c for c in expected if c in set(bronze_columns)] + [
        c for c in bronze_columns if c not in set(expected)
    ]


def _max_watermark(values: pa.ChunkedArray | None, placeholders: Sequence[str]) -> str | None:
    if values is None or len(values) == 0:
        return None
    typed, _ = typing_rules.cast_column(values, "date", placeholders)
    latest = pc.max(typed).as_py()
    return latest.isoformat(sep=" ") if latest is not None else None


def _stored_hashes(
    settings: Settings, layer: str, table: str, with_rules: bool
) -> tuple[np.ndarray, Any]:
    columns = [ROW_HASH, FAILED_RULES] if with_rules else [ROW_HASH]
    data = storage.read_table(settings, layer, table, columns=columns)
    hashes = np.asarray(data.column(ROW_HASH).to_numpy(), dtype=np.int64)
    return hashes, (data.column(FAILED_RULES) if with_rules else None)


def resolve_key(
    settings: Settings, table: str, rule_file: RuleFile | None, columns: Sequence[str]
) -> tuple[list[str], str]:
    """The row identity of a table and where it was declared (:func:`schema.resolve_key`).

    A declared key whose columns the Bronze file lacks is an error naming them: loading the
    table without its identity would silently change how it is upserted."""
    key = schema_resolve_key(settings, table, rule_file, columns)
    if key.missing:
        raise TableIngestError(
            table,
            f"key ({', '.join(key.columns)}) from {key.source}: column(s) "
            f"{', '.join(key.missing)} not in the Bronze file",
            hint="fix the export, or change the declared key",
        )
    return list(key.columns), key.source


def _keys_of(typed: pa.Table | pa.RecordBatch, key: Sequence[str]) -> np.ndarray:
    """One int64 per row identifying its key: an integer key's own values, else a content hash
    of the key columns."""
    if len(key) == 1:
        column = typed.column(key[0])
        if pa.types.is_integer(column.type) and column.type != pa.uint64():
            column = pc.cast(column, pa.int64())
            return np.asarray(pc.fill_null(column, -(2**63)).to_numpy(), dtype=np.int64)
    return row_hashes(typed.select(list(key)))


@dataclass
class LoadDecision:
    """What a table's load does before a row is read, decided once for every engine: whether
    the verdict or the drift policy demotes the drop, the Silver types, the row identity and
    the row rules."""

    demote_reason: str | None
    demote_id: str | None
    keep_silver: bool
    drift_text: str | None
    types: list[typing_rules.ColumnType]
    key: Sequence[str]
    rules: list[Any]


def decide_load(
    settings: Settings,
    table: str,
    rule_file: RuleFile,
    bronze_schema: pa.Schema,
    verdict: Verdict | None,
    result: TableIngest,
) -> LoadDecision:
    """The verdict's and the drift policy's decision for one drop (notes go to ``result``);
    raises TableIngestError when the drop must not load at all."""
    bronze_columns = bronze_schema.names
    policy = settings.drift_policy_for(table)
    comparison: SchemaComparison | None = None
    if rule_file.columns():
        comparison = compare_schema(bronze_columns, rule_file.columns())
    drift_text = comparison.describe() if comparison is not None and comparison.has_drift else None
    if drift_text and policy == "fail":
        raise TableIngestError(
            table,
            f"schema drift ({drift_text}) and drift policy 'fail'",
            hint=f"fix the export, update the rule file, or set drift_policies.{table} to evolve",
        )
    if verdict is None:
        raise TableIngestError(table, "no table-level verdict", hint="run validation first")
    if verdict.status == "ERROR":
        raise TableIngestError(table, f"validation could not judge the table: {verdict.error}")
    demote_reason = demote_id = None
    if verdict.status == "FAILED":
        failures = "; ".join(verdict.threshold_failures) or "below the thresholds"
        demote_reason = f"table failed its table-level verdict ({failures})"
        demote_id = "table_verdict(FAILED)"
    elif drift_text and policy == "quarantine":
        demote_reason = f"schema drift ({drift_text}) with drift policy 'quarantine'"
        demote_id = "schema_drift"
    if drift_text and policy == "evolve":
        result.notes.append(f"schema drift, evolved: {drift_text}")
    keep_silver = demote_reason is not None and settings.failed_table_policy == "keep_previous"
    if demote_reason is not None:
        demote_reason += f"; policy {settings.failed_table_policy}: the whole drop is quarantined"

    types = typing_rules.silver_types(
        table,
        _silver_columns(bronze_columns, rule_file, policy),
        rule_file,
        {f.name: f.type for f in bronze_schema},
    )
    key, key_source = resolve_key(settings, table, rule_file, bronze_columns)
    result.notes.append(
        f"key ({', '.join(key)}) from {key_source}" if key else f"key: {key_source}"
    )
    rules, notes = row_rules(table, rule_file, types, bronze_columns, key)
    result.notes += notes
    return LoadDecision(demote_reason, demote_id, keep_silver, drift_text, types, key, rules)


def _ingest_table(
    settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
) -> TableIngest:
    """Load one table (see the module doc); raises AimsError subclasses, never publishes half."""
    table = plan.table
    placeholders = list(settings.null_placeholders)
    result = TableIngest(table=table, status="error", verdict=verdict.status if verdict else None)
    path = settings.paths.bronze_file(table)
    rule_file = plan.rule_file or load_rule_file(settings.paths.rule_file(table))
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    bronze_schema = parquet.schema_arrow
    bronze_columns = bronze_schema.names
    n = parquet.metadata.num_rows
    result.bronze_rows = n
    decision = decide_load(settings, table, rule_file, bronze_schema, verdict, result)
    demote_reason, demote_id = decision.demote_reason, decision.demote_id
    keep_silver, drift_text = decision.keep_silver, decision.drift_text
    types, key, rules = decision.types, decision.key, decision.rules
    table_rules = [r for r in rules if r.scope == "table"]
    row_scope = [r for r in rules if r.scope == "row"]
    row_pos = [i for i, r in enumerate(rules) if r.scope == "row"]
    table_pos = [i for i, r in enumerate(rules) if r.scope == "table"]
    cast_pos = [j for j, r in enumerate(row_scope) if r.check == "cast"]
    pattern_rules = type_pattern_rules(row_scope, types)
    references = {
        r.rule_id: checks.reference_values(settings, *r.expectation.reference)
        for r in rules
        if r.expectation is not None and r.expectation.reference is not None
    }
    wanted = sorted(
        {c for r in table_rules for c in r.all_columns} | ({WATERMARK_COLUMN} & set(bronze_columns))
    )
    whole = parquet.read(columns=wanted) if wanted else None
    table_masks = (
        evaluate_rules(whole, table_rules, placeholders, references)
        if whole is not None and table_rules
        else np.zeros((n, 0), dtype=bool)
    )
    if whole is None:
        whole = pa.table({})
    last_updated = _max_watermark(
        whole.column(WATERMARK_COLUMN) if WATERMARK_COLUMN in whole.column_names else None,
        placeholders,
    )
    del whole

    incremental = plan.incremental and demote_reason is None
    result.mode = "incremental" if incremental else "full"
    hashes: np.ndarray | None = None
    if incremental:
        hashes = np.concatenate(
            [row_hashes(b) for b in parquet.iter_batches(batch_size=BATCH_ROWS)]
            or [np.zeros(0, np.int64)]
        )
        silver_h, _ = _stored_hashes(settings, "silver", table, with_rules=False)
        quarantine_h, quarantine_failed = _stored_hashes(
            settings, "quarantine", table, with_rules=True
        )
        selection = select_rows(
            hashes,
            silver_h,
            quarantine_h,
            quarantine_failed,
            table_masks,
            [r.rule_id for r in table_rules],
        )
        process = selection.process
        result.rows_deleted = selection.deleted
        if not key and (process.any() or selection.dropped):
            # Identical rows are legitimate without a key, and are always looked at again
            # above; the same multiset of rows with the same table-scope verdicts is no change.
            lenient = select_rows(
                hashes,
                silver_h,
                quarantine_h,
                quarantine_failed,
                table_masks,
                [r.rule_id for r in table_rules],
                twins_are_new=False,
            )
            if (
                not lenient.process.any()
                and not lenient.dropped
                and np.array_equal(
                    np.sort(hashes), np.sort(np.concatenate([silver_h, quarantine_h]))
                )
            ):
                process, selection = lenient.process, lenient
        if not process.any() and not selection.dropped:
            result.status, result.mode = "unchanged", "none"
            result.silver_total, result.quarantine_total = len(silver_h), len(quarantine_h)
            result.state = _state_fields(
                settings, plan, result, run_id, last_updated, drift_text, n
            )
            return result
    else:
        process = np.ones(n, dtype=bool)
        selection = None

    silver_schema = pa.schema([*typing_rules.silver_schema(types), *SILVER_FIELDS])
    q_schema = quarantine_schema(bronze_schema)
    silver_keys: list[np.ndarray] = []
    with (
        storage.TableWriter(settings, "quarantine", table, q_schema) as q_writer,
        _silver_writer(settings, table, silver_schema, keep_silver, key) as s_writer,
    ):
        if selection is not None:  # carry over what stays, in stored order
            _carry(settings, "silver", table, selection.keep_hashes, s_writer, silver_keys, key)
            _carry(settings, "quarantine", table, selection.keep_hashes, q_writer, None, key)
        offset = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            rows = np.flatnonzero(process[offset : offset + batch.num_rows])
            chunk_start = offset
            offset += batch.num_rows
            if not len(rows):
                continue
            raw = pa.Table.from_batches([batch])
            if len(rows) != batch.num_rows:
                raw = raw.take(pa.array(rows))
            index = rows + chunk_start
            row_hash = hashes[index] if hashes is not None else row_hashes(raw)
            # Rules first (each column null-normalised once), then typing reuses those columns
            # and the type-conformance masks instead of running the same regex again.
            views: dict[str, typing_rules.ColumnView] = {}
            per_value: dict[int, np.ndarray] = dict.fromkeys(pattern_rules.values())
            prepared: dict[tuple[str, str], Any] = {}
            local = evaluate_rules(
                raw, row_scope, placeholders, references, None, views, per_value, prepared
            )
            known_bad = {column: per_value[j] for column, j in pattern_rules.items()}
            numbers = {c: v for (c, form), v in prepared.items() if form == checks.NUMBER}
            typed, failures = typing_rules.type_table(
                raw, types, placeholders, views, known_bad, numbers
            )
            for j in cast_pos:
                local[:, j] = failures[row_scope[j].column]
            matrix = np.zeros((raw.num_rows, len(rules)), dtype=bool)
            matrix[:, row_pos] = local
            matrix[:, table_pos] = table_masks[index]
            bad = matrix.any(axis=1) | (demote_reason is not None)
            result.rows_in += raw.num_rows
            good = ~bad
            if good.any():
                silver = typed.filter(pa.array(good))
                silver = silver.append_column(
                    SILVER_FIELDS[0], pa.array([run_id] * silver.num_rows, pa.string())
                )
                silver = silver.append_column(SILVER_FIELDS[1], pa.array(row_hash[good]))
                s_writer.write(silver)
                result.rows_silver += silver.num_rows
                if key:  # as stored: carried rows come back in the stored types
                    stored = storage.stored_form(settings, "silver", silver.select(key), table)
                    silver_keys.append(_keys_of(stored, key))
            if bad.any():
                bad_idx = pa.array(np.flatnonzero(bad))
                q_writer.write(
                    quarantine_rows(
                        raw.take(bad_idx),
                        matrix[bad],
                        rules,
                        run_id,
                        row_hash[bad],
                        demote_reason,
                        demote_id,
                    )
                )
                result.rows_quarantined += int(bad.sum())
        _check_invariants(table, result, n, s_writer, q_writer, keep_silver, silver_keys, key)
        # Staged only: _run_one publishes Silver, quarantine and the state record as one unit.
        writers = (s_writer, q_writer)
        result.staged = [w.stage() for w in writers if isinstance(w, storage.TableWriter)]
    result.silver_total = None if keep_silver else s_writer.rows
    result.quarantine_total = q_writer.rows
    result.status = "not_promoted" if demote_reason is not None else "loaded"
    result.state = _state_fields(settings, plan, result, run_id, last_updated, drift_text, n)
    return result


class _NoWriter:
    """Stands in for the Silver writer under keep_previous: Silver is not touched."""

    rows = 0

    def write(self, data: Any) -> None:  # pragma: no cover - never called: every row is bad
        raise AssertionError("keep_previous must not write Silver")

    def commit(self) -> None:
        return None

    def __enter__(self) -> _NoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _silver_writer(
    settings: Settings, table: str, schema: pa.Schema, keep: bool, key: Sequence[str] = ()
) -> Any:
    """Silver's writer; with a key, a Delta Silver is updated by a MERGE on it (storage)."""
    if keep:
        return _NoWriter()
    return storage.TableWriter(settings, "silver", table, schema, key=key)


def _carry(
    settings: Settings,
    layer: str,
    table: str,
    keep_hashes: np.ndarray,
    writer: storage.TableWriter,
    keys: list[np.ndarray] | None,
    key: Sequence[str] = (),
) -> None:
    """Copy the stored rows that stay (matched by content hash, not position) into the writer."""
    for batch in storage.iter_batches(settings, layer, table, batch_size=BATCH_ROWS):
        stays = np.isin(np.asarray(batch.column(ROW_HASH).to_numpy(), dtype=np.int64), keep_hashes)
        kept = batch.filter(pa.array(stays)) if not stays.all() else batch
        if kept.num_rows:
            writer.write(kept)
            if keys is not None and key and set(key) <= set(kept.schema.names):
                keys.append(_keys_of(pa.Table.from_batches([kept]), key))


def _check_invariants(
    table: str,
    result: TableIngest,
    bronze_rows: int,
    s_writer: Any,
    q_writer: storage.TableWriter,
    keep_silver: bool,
    silver_keys: list[np.ndarray],
    key: Sequence[str] = (),
) -> None:
    problems = []
    if result.rows_in != result.rows_silver + result.rows_quarantined:
        problems.append(
            f"{table}: {result.rows_in:,} rows processed but {result.rows_silver:,} to Silver + "
            f"{result.rows_quarantined:,} quarantined"
        )
    if not keep_silver and s_writer.rows + q_writer.rows != bronze_rows:
        problems.append(
            f"{table}: Bronze has {bronze_rows:,} rows but Silver would hold {s_writer.rows:,} and "
            f"quarantine {q_writer.rows:,}"
        )
    if silver_keys:
        keys = np.sort(np.concatenate(silver_keys))  # a sort: numpy's hash-based unique is slower
        twins = int((keys[1:] == keys[:-1]).sum())
        if twins:
            problems.append(f"{table}: {twins:,} duplicate key(s) ({', '.join(key)}) in Silver")
    if problems:
        result.invariant_ok = False
        raise IngestInvariantError(problems)


def _state_fields(
    settings: Settings,
    plan: TablePlan,
    result: TableIngest,
    run_id: str,
    last_updated: str | None,
    drift_text: str | None,
    bronze_rows: int,
) -> dict[str, dict[str, Any]]:
    """The watermark and ingest-state rows this load leaves (written with its history row)."""
    now = state.utc_now()
    if result.status == "unchanged":
        status = plan.previous_status or "loaded"
    else:
        status = "not_promoted" if result.status == "not_promoted" else "loaded"
    return {
        "watermarks": {
            "table_name": plan.table,
            "last_updated": last_updated,
            "fingerprint": plan.bronze_fingerprint,
            "rows": bronze_rows,
            "run_id": run_id,
            "updated_at": now,
        },
        "ingest_state": {
            "table_name": plan.table,
            "rules_fingerprint": plan.rules_fingerprint,
            "references_fingerprint": plan.references_fingerprint,
            "status": status,
            "policy": settings.failed_table_policy if status == "not_promoted" else None,
            "bronze_rows": bronze_rows,
            "silver_rows": result.silver_total,
            "quarantined_rows": result.quarantine_total,
            "schema_drift": drift_text,
            "run_id": run_id,
            "updated_at": now,
        },
    }


def _run_one(
    settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str, load_id: int
) -> TableIngest:
    """Worker entry: one table and its load-history row; errors become the result's error."""
    started = time.perf_counter()
    started_at = state.utc_now()
    db = settings.paths.state_db
    try:
        result = get_engine(settings).ingest_table(settings, plan, verdict, run_id)
    except IngestInvariantError as exc:
        result = TableIngest(plan.table, "error", error=str(exc), invariant_ok=False)
    except AimsError as exc:
        result = TableIngest(plan.table, "error", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one table's bug must not hide the others' results
        detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        result = TableIngest(
            plan.table, "error", error=f"unexpected {type(exc).__name__}: {exc} ({detail})"
        )
    result.verdict = verdict.status if verdict else result.verdict
    result.seconds = round(time.perf_counter() - started, 3)
    staged, result.staged = result.staged or [], None
    try:  # Silver, quarantine, watermark, state and history: one unit (storage module doc)
        storage.publish_unit(
            settings,
            plan.table,
            staged,
            _record_statements(result, load_id, started_at),
            ddl=[STATE_SCHEMA],
        )
    except AimsError as exc:  # nothing of the table was published
        result = TableIngest(plan.table, "error", error=str(exc), verdict=result.verdict)
        try:
            check_run_lock(settings, plan.table)
            with state.connect(db) as conn:
                _finish_load(conn, load_id, result, started_at)
        except AimsError as also:
            result.error = f"{result.error}; and the load history could not be updated: {also}"
    result.state = None
    return result


def _record_statements(
    result: TableIngest, load_id: int, started_at: str
) -> list[tuple[str, list[Any]]]:
    """The state record of a load as idempotent SQL (a killed publish may replay it)."""
    statements: list[tuple[str, list[Any]]] = []
    for name, fields in (result.state or {}).items():
        columns = list(fields)
        statements.append(
            (
                f"INSERT OR REPLACE INTO {name} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                list(fields.values()),
            )
        )
    statements.append(
        (
            "UPDATE load_history SET started_at = ?, ended_at = ?, rows_in = ?, rows_silver = ?,"
            " rows_quarantined = ?, status = ?, error = ? WHERE id = ?",
            [
                started_at,
                state.utc_now(),
                result.rows_in,
                result.rows_silver,
                result.rows_quarantined,
                result.status,
                result.error,
                load_id,
            ],
        )
    )
    return statements


# --- the run ----------------------------------------------------------------------------------


def _record_simple(settings: Settings, run_id: str, results: Sequence[TableIngest]) -> None:
    """History rows of the tables that needed no work (unchanged, or an error found by planning)."""
    if not results:
        return
    now = state.utc_now()
    with state.connect(settings.paths.state_db) as conn:
        conn.executemany(
            "INSERT INTO load_history (run_id, table_name, started_at, ended_at, rows_in, "
            "rows_silver, rows_quarantined, status, error) VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)",
            [(run_id, r.table, now, now, r.status, r.error) for r in results],
        )


def ingest_tables(
    settings: Settings,
    tables: Sequence[str] | None = None,
    force: bool | None = None,
    verdicts: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = False,
) -> IngestRun:
    """Load Bronze into Silver and quarantine for every table (or ``tables``); see the module doc.

    ``verdicts`` maps table -> validation TableResult of the same run; tables that need work and
    have none are validated here. ``force`` (default ``settings.force_reprocess``) reloads all.
    Raises :class:`IngestInvariantError` (after recording every table) when a table would have
    lost or duplicated rows; other per-table failures are results with status 'error'.
    """
    started = time.perf_counter()
    force = bool(settings.force_reprocess if force is None else force)
    run_id = run_id or state.new_run_id()
    run = IngestRun(run_id=run_id, started_at=state.utc_now())
    names = (
        [validate_table_name(t) for t in tables]
        if tables
        else list_bronze_tables(settings.paths.bronze)
    )
    with lake_lock(settings, f"ingest run {run_id}"):
        storage.clean_staging(settings)
        _close_interrupted_loads(settings)
        previous = _previous_state(settings)
        plans = {t: plan_table(settings, t, force, previous.get(t, (None, None))) for t in names}
        work = sorted((p for p in plans.values() if p.action == "process"), key=lambda p: -p.size)
        found = dict(verdicts or {})
        missing = [p.table for p in work if p.table not in found]
        if missing:
            from .validation import validate_tables

            v_started = time.perf_counter()
            validation = validate_tables(settings, tables=missing, run_id=run_id, progress=progress)
            run.validation_seconds = round(time.perf_counter() - v_started, 3)
            found.update(validation.tables)
        for plan in plans.values():
            if plan.action == "unchanged":
                run.tables[plan.table] = TableIngest(plan.table, "unchanged", notes=[plan.reason])
            elif plan.action == "error":
                run.tables[plan.table] = TableIngest(plan.table, "error", error=plan.error)
        _record_simple(settings, run_id, [r for r in run.tables.values()])
        jobs = [(p, Verdict.of(found[p.table]) if p.table in found else None) for p in work]
        load_ids = _open_loads(settings, run_id, [p.table for p in work])
        for result in _execute(settings, jobs, run_id, load_ids, progress):
            if result.status != "error" and result.mode != "none":
                plan = plans[result.table]
                result.notes.insert(0, plan.reason)
            run.tables[result.table] = result
    run.tables = {t: run.tables[t] for t in names if t in run.tables}
    run.ended_at = state.utc_now()
    run.seconds = round(time.perf_counter() - started, 3)
    broken = [r.error or r.table for r in run.tables.values() if not r.invariant_ok]
    if broken:
        raise IngestInvariantError(broken, run)
    return run


def _execute(
    settings: Settings,
    jobs: list[tuple[TablePlan, Verdict | None]],
    run_id: str,
    load_ids: Mapping[str, int],
    progress: bool,
) -> Iterator[TableIngest]:
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="ingest", unit="table")
    engine = get_engine(settings)
    workers = engine.parallel_tables(settings, len(jobs))
    if not engine.tables_in_threads and sum(plan.size for plan, _ in jobs) < PARALLEL_MIN_BYTES:
        workers = 1  # a worker process costs more than a small lake's work
    try:
        if workers == 1:
            for plan, verdict in jobs:
                yield _run_one(settings, plan, verdict, run_id, load_ids[plan.table])
                if bar is not None:
                    bar.update(1)
            return
        pool: Executor
        if engine.tables_in_threads:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        else:
            # spawn: arrow/duckdb threads do not survive fork
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, **pool_options())
        with pool:
            futures = {
                pool.submit(_run_one, settings, plan, verdict, run_id, load_ids[plan.table]): plan
                for plan, verdict in jobs
            }
            for future in as_completed(futures):
                plan = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker process
                    failed = TableIngest(
                        plan.table, "error", error=f"worker failed: {type(exc).__name__}: {exc}"
                    )
                    with state.connect(settings.paths.state_db) as conn:
                        _finish_load(conn, load_ids[plan.table], failed, state.utc_now())
                    yield failed
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


# --- read-only views for the CLI and notebooks ------------------------------------------------


def watermark_rows(settings: Settings) -> list[dict[str, Any]]:
    """Watermarks joined with the ingest state: one readable row per table."""
    db = settings.paths.state_db
    if not Path(db).is_file():
        return []
    with state.connect(db) as conn:
        conn.executescript(STATE_SCHEMA)
        rows = conn.execute(
            "SELECT w.table_name, w.last_updated, w.rows, s.silver_rows, s.quarantined_rows, "
            "s.status, w.fingerprint, w.run_id, w.updated_at, s.schema_drift "
            "FROM watermarks w LEFT JOIN ingest_state s USING (table_name) ORDER BY w.table_name"
        ).fetchall()
    return [
        {
            "table": r["table_name"],
            "latest LASTUPDATED": r["last_updated"] or "",
            "bronze rows": r["rows"],
            "silver rows": r["silver_rows"],
            "quarantined": r["quarantined_rows"],
            "state": r["status"] or "",
            "fingerprint": (r["fingerprint"] or "").rsplit(":", 1)[-1],
            "run": r["run_id"],
            "updated": r["updated_at"],
            "drift": r["schema_drift"] or "",
        }
        for r in rows
    ]


def history_rows(
    settings: Settings, limit: int = 20, table: str | None = None, include_unchanged: bool = False
) -> list[dict[str, Any]]:
    """The last loads, newest first. 'unchanged' rows (one per table per run that found nothing
    to do) are left out unless asked for: they would push every real load off the page."""
    db = settings.paths.state_db
    if not Path(db).is_file():
        return []
    sql = "SELECT * FROM load_history WHERE 1 = 1"
    params: list[Any] = []
    if table:
        sql += " AND table_name = ?"
        params.append(validate_table_name(table))
    if not include_unchanged:
        sql += " AND status != 'unchanged'"
    rows = state.query(db, sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit)))
    return [
        {
            "run": r["run_id"],
            "table": r["table_name"],
            "started": r["started_at"],
            "ended": r["ended_at"] or "",
            "rows in": r["rows_in"],
            "to silver": r["rows_silver"],
            "quarantined": r["rows_quarantined"],
            "status": r["status"],
            "error": (r["error"] or "")[:120],
        }
        for r in rows
    ]


def silver_key(settings: Settings, table: str) -> str:
    """One line on the row identity ingestion uses for ``table`` (``silver-schema`` command)."""
    validate_table_name(table)
    rule_path = settings.paths.rule_file(table)
    rule_file = load_rule_file(rule_path) if rule_path.is_file() else None
    path = settings.paths.bronze_file(table)
    columns = pq.read_schema(path).names if path.is_file() else []
    key = schema_resolve_key(settings, table, rule_file, columns)
    if not key.columns:
        return f"key: {key.source}"
    text = f"key: ({', '.join(key.columns)}) from {key.source}"
    return text + (f"; MISSING from Bronze: {', '.join(key.missing)}" if key.missing else "")


def silver_type_rows(settings: Settings, table: str) -> list[dict[str, str]]:
    """The Silver schema a table gets now (``silver-schema`` command)."""
    validate_table_name(table)
    rule_path = settings.paths.rule_file(table)
    rule_file = load_rule_file(rule_path) if rule_path.is_file() else None
    path = settings.paths.bronze_file(table)
    bronze_types: dict[str, pa.DataType] = {}
    if path.is_file():
        bronze = pq.read_schema(path)
        columns = bronze.names
        bronze_types = {f.name: f.type for f in bronze}
    elif rule_file is not None:
        columns = rule_file.columns()
    else:
        raise TableIngestError(
            table, "neither a Bronze file nor a rule file", hint="check the table name"
        )
    if rule_file is not None:
        columns = _silver_columns(columns, rule_file, settings.drift_policy_for(table))
    types = typing_rules.silver_types(table, columns, rule_file, bronze_types)
    rows = typing_rules.describe(types)
    if settings.storage_format == "delta":  # what the Delta table (and Fabric's endpoint) holds
        stored = storage.delta_schema(pa.schema(typing_rules.silver_schema(types)), "silver", table)
        for row in rows:
            row["stored in delta"] = str(stored.field(row["column"]).type)
    return rows


__all__ = [
    "IngestInvariantError",
    "IngestRun",
    "LakeLockedError",
    "STATUSES",
    "TableIngest",
    "TableIngestError",
    "ingest_tables",
    "lake_lock",
    "plan_table",
    "row_hashes",
    "select_rows",
    "watermark_rows",
]
