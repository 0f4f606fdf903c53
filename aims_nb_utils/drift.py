"""Schema drift between runs, and reconciliation of Bronze with the rule files.

Two questions, two halves:

* **Against the rule files** ("will ingestion accept this drop?"): the Bronze columns of each table
  are compared with the columns its rule file expects, by :mod:`aims_nb_utils.schema` (the same
  comparison ingestion applies), and the table's drift policy (``settings.drift_policy_for``:
  evolve | quarantine | fail) is shown with what ingestion will do about it. The type a rule
  file's conformance rule promises (``meta.value_type``) is compared with the type observed now.
* **Against the previous run** ("what changed since last time?"): every run stores a snapshot per
  table in the state DB (``schema_snapshots``: columns in order, the type inferred from the
  values, null %, row count). The current snapshot is compared with the latest earlier one:
  added, removed, renamed (an added and a removed column whose names are similar) and
  type-changed columns, column order, and row-count swings beyond
  ``settings.drift_row_count_threshold`` percent. A first run has nothing to compare with and
  says so instead of reporting everything as new.

Bronze stores every column as text, so the physical parquet type says nothing: the type is
inferred from the values by :func:`aims_nb_utils.profiling.profile_table` (the profiler's
definition, so drift and rule files agree on what "integer" means). All rows are read unless a
sample is asked for. Columns with no values carry no type and never count as a type change.

The report is written as JSON (for machines and later runs) and as one self-contained HTML file
(no scripts, no network) under ``settings.paths.reports``.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import state
from .errors import AimsError
from .io import atomic_write_text, list_bronze_tables, validate_table_name
from .settings import Settings

NO_TYPE = "empty"  # a column without any value has no inferred type
REPORT_STEM = "schema_drift_report"

SNAPSHOT_DDL = """
CREATE TABLE IF NOT EXISTS schema_snapshots (
    run_id TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    table_name TEXT NOT NULL,
    row_count INTEGER,
    column_count INTEGER,
    columns_json TEXT NOT NULL,   -- [{name, physical_type, inferred_type, null_percent}] in order
    error TEXT,                   -- set when the Bronze file could not be read
    sampled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, table_name)
);
CREATE INDEX IF NOT EXISTS schema_snapshots_table ON schema_snapshots (table_name, captured_at);
"""

# What ingestion does with a table whose Bronze columns differ from its rule file, per policy.
POLICY_ACTIONS = {
    "evolve": "ingest with the current columns: extra columns kept as text, missing ones null",
    "quarantine": "send the whole drop to quarantine with a reason naming the drift",
    "fail": "stop this table with an error naming the columns",
}


class DriftError(AimsError):
    """Drift cannot be computed as asked (unknown table, unreadable state)."""


@dataclass
class ColumnState:
    name: str
    physical_type: str
    inferred_type: str
    null_percent: float | None


@dataclass
class TableSnapshot:
    """A table's schema as seen in one run."""

    table: str
    row_count: int | None
    columns: list[ColumnState]
    error: str | None = None
    sampled: bool = False
    run_id: str | None = None
    captured_at: str | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def types(self) -> dict[str, str]:
        return {c.name: c.inferred_type for c in self.columns}


@dataclass
class ColumnChange:
    """One difference: added | removed | renamed | type_changed | reordered."""

    change: str
    column: str
    previous: str | None = None
    current: str | None = None
    detail: str = ""


@dataclass
class RuleFileDrift:
    """Bronze now against the table's rule file (what ingestion checks)."""

    rule_file: str | None
    expected_columns: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str, float]] = field(default_factory=list)  # (expected, found, sim)
    reordered: bool = False
    type_mismatches: list[tuple[str, str, str]] = field(default_factory=list)  # (col, rule, now)
    required_missing: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def has_drift(self) -> bool:
        """Column-set drift, the kind ingestion's drift policy acts on."""
        return bool(self.missing or self.extra or self.renamed)


@dataclass
class TableDrift:
    table: str
    policy: str
    status: str  # computed: error | baseline | drift | ok | removed
    ingestion_action: str
    snapshot: TableSnapshot | None
    previous: TableSnapshot | None
    rule_file: RuleFileDrift | None
    changes: list[ColumnChange] = field(default_factory=list)
    row_count_change_percent: float | None = None
    row_count_swing: bool = False
    notes: list[str] = field(default_factory=list)

    def changes_of(self, kind: str) -> list[ColumnChange]:
        return [c for c in self.changes if c.change == kind]

    def summary_row(self) -> dict[str, Any]:
        rf = self.rule_file
        return {
            "table": self.table,
            "status": self.status,
            "policy": self.policy,
            "ingestion_action": self.ingestion_action,
            "rows": None if self.snapshot is None else self.snapshot.row_count,
            "previous_rows": None if self.previous is None else self.previous.row_count,
            "row_change_percent": (
                None
                if self.row_count_change_percent is None
                else round(self.row_count_change_percent, 2)
            ),
            "row_swing": self.row_count_swing,
            "added": ", ".join(c.column for c in self.changes_of("added")),
            "removed": ", ".join(c.column for c in self.changes_of("removed")),
            "renamed": ", ".join(f"{c.previous} -> {c.column}" for c in self.changes_of("renamed")),
            "type_changed": ", ".join(
                f"{c.column} ({c.previous} -> {c.current})" for c in self.changes_of("type_changed")
            ),
            "reordered": bool(self.changes_of("reordered")),
            "vs_rules_missing": "" if rf is None else ", ".join(rf.missing),
            "vs_rules_extra": "" if rf is None else ", ".join(rf.extra),
            "vs_rules_renamed": (
                "" if rf is None else ", ".join(f"{a} -> {b}" for a, b, _ in rf.renamed)
            ),
            "vs_rules_types": (
                ""
                if rf is None
                else ", ".join(f"{c} ({a} -> {b})" for c, a, b in rf.type_mismatches)
            ),
            "notes": "; ".join(self.notes),
        }


@dataclass
class DriftReport:
    run_id: str
    generated_at: str
    previous_run_id: str | None
    previous_captured_at: str | None
    row_count_threshold: float
    tables: dict[str, TableDrift]
    paths: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    sampled: bool = False

    @property
    def first_run(self) -> bool:
        return self.previous_run_id is None

    @property
    def comparison_note(self) -> str:
        if self.first_run:
            return (
                "no previous run to compare yet: this run's schemas are stored as the baseline "
                "and the next run will be compared with them"
            )
        return f"compared with run {self.previous_run_id} ({self.previous_captured_at})"

    def summary(self) -> dict[str, Any]:
        tables = list(self.tables.values())
        count = lambda kind: sum(len(t.changes_of(kind)) for t in tables)  # noqa: E731
        return {
            "run_id": self.run_id,
            "previous_run_id": self.previous_run_id,
            "first_run": self.first_run,
            "tables": len(tables),
            "tables_with_drift": sum(t.status == "drift" for t in tables),
            "tables_unreadable": sum(t.status == "error" for t in tables),
            "tables_removed": sum(t.status == "removed" for t in tables),
            "tables_new": sum("new table" in " ".join(t.notes) for t in tables),
            "columns_added": count("added"),
            "columns_removed": count("removed"),
            "columns_renamed": count("renamed"),
            "columns_type_changed": count("type_changed"),
            "row_count_swings": sum(t.row_count_swing for t in tables),
            "tables_drifting_from_rules": sum(
                bool(t.rule_file and t.rule_file.has_drift) for t in tables
            ),
            "tables_without_rule_file": sum(
                bool(t.rule_file is not None and t.rule_file.rule_file is None) for t in tables
            ),
            "row_count_threshold_percent": self.row_count_threshold,
            "sampled": self.sampled,
        }

    def rows(self) -> list[dict[str, Any]]:
        return [t.summary_row() for t in self.tables.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "generated_at": self.generated_at,
            "previous_run_id": self.previous_run_id,
            "previous_captured_at": self.previous_captured_at,
            "comparison": self.comparison_note,
            "row_count_threshold_percent": self.row_count_threshold,
            "summary": self.summary(),
            "tables": {
                name: {
                    **t.summary_row(),
                    "changes": [asdict(c) for c in t.changes],
                    "rule_file": None if t.rule_file is None else asdict(t.rule_file),
                    "columns": (
                        None if t.snapshot is None else [asdict(c) for c in t.snapshot.columns]
                    ),
                }
                for name, t in self.tables.items()
            },
        }


# --- snapshots -----------------------------------------------------------------------------------


def capture_snapshot(
    settings: Settings, table: str, sample_size: int | None = None
) -> TableSnapshot:
    """Columns, inferred types and row count of one Bronze table (an unreadable file -> error)."""
    from .profiling import profile_table

    validate_table_name(table)
    try:
        profile = profile_table(settings, table, sample_size=sample_size)
    except AimsError as exc:
        return TableSnapshot(table=table, row_count=None, columns=[], error=str(exc))
    physical = _physical_types(settings, table)
    columns = [
        ColumnState(
            name=c.name,
            physical_type=physical.get(c.name, "?"),
            inferred_type=c.inferred_type if c.nonnull_count > 0 else NO_TYPE,
            null_percent=round(float(c.null_percent), 4),
        )
        for c in profile.columns
    ]
    return TableSnapshot(
        table=table,
        row_count=int(profile.total_rows),
        columns=columns,
        sampled=bool(profile.sampled),
    )


def _physical_types(settings: Settings, table: str) -> dict[str, str]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(settings.paths.bronze_file(table))
    except Exception:  # noqa: BLE001 - the profile already reported an unreadable file
        return {}
    return {f.name: str(f.type) for f in schema}


def capture_snapshots(
    settings: Settings,
    tables: Iterable[str] | None = None,
    sample_size: int | None = None,
    max_workers: int | None = None,
) -> dict[str, TableSnapshot]:
    """Snapshots of the Bronze tables (all by default), biggest files first, in threads.

    Threads suffice: reading and pyarrow.compute release the GIL, and profiling reads one column
    at a time, so memory stays near one column per worker.
    """
    names = list(tables) if tables is not None else list_bronze_tables(settings.paths.bronze)
    for name in names:
        validate_table_name(name)

    def size(name: str) -> int:
        path = settings.paths.bronze_file(name)
        return path.stat().st_size if path.is_file() else 0

    ordered = sorted(names, key=size, reverse=True)
    workers = max(1, int(max_workers or settings.max_workers))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(
            zip(
                ordered,
                pool.map(lambda t: capture_snapshot(settings, t, sample_size), ordered),
                strict=True,
            )
        )
    return {name: results[name] for name in sorted(names)}


def _connect(settings: Settings):  # noqa: ANN202 - context manager from state.connect
    return state.connect(settings.paths.state_db)


def save_snapshots(settings: Settings, run_id: str, snapshots: dict[str, TableSnapshot]) -> int:
    """Store this run's snapshots (replacing any of the same run and table)."""
    captured_at = state.utc_now()
    rows = [
        (
            run_id,
            captured_at,
            s.table,
            s.row_count,
            len(s.columns),
            json.dumps([asdict(c) for c in s.columns]),
            s.error,
            int(s.sampled),
        )
        for s in snapshots.values()
    ]
    with _connect(settings) as conn:
        conn.executescript(SNAPSHOT_DDL)
        conn.executemany(
            "INSERT OR REPLACE INTO schema_snapshots (run_id, captured_at, table_name, row_count,"
            " column_count, columns_json, error, sampled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def _snapshot_from_row(row: dict[str, Any]) -> TableSnapshot:
    return TableSnapshot(
        table=row["table_name"],
        row_count=row["row_count"],
        columns=[ColumnState(**c) for c in json.loads(row["columns_json"])],
        error=row["error"],
        sampled=bool(row["sampled"]),
        run_id=row["run_id"],
        captured_at=row["captured_at"],
    )


def previous_snapshots(
    settings: Settings, run_id: str
) -> tuple[str | None, str | None, dict[str, TableSnapshot]]:
    """The latest earlier run's id and time, and each table's latest snapshot before ``run_id``.

    Per table, because a run may cover only some tables: a table is compared with the last run
    that saw it. Snapshots of unreadable files are skipped (they hold no schema).
    """
    with _connect(settings) as conn:
        conn.executescript(SNAPSHOT_DDL)
        # rowid grows with every insert, so it orders runs even within one second.
        latest = conn.execute(
            "SELECT run_id, captured_at FROM schema_snapshots WHERE run_id != ?"
            " ORDER BY rowid DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        if latest is None:
            return None, None, {}
        rows = conn.execute(
            "SELECT * FROM schema_snapshots WHERE rowid IN ("
            "  SELECT MAX(rowid) FROM schema_snapshots"
            "  WHERE run_id != ? AND error IS NULL GROUP BY table_name)",
            (run_id,),
        ).fetchall()
    return (
        latest["run_id"],
        latest["captured_at"],
        {r["table_name"]: _snapshot_from_row(dict(r)) for r in rows},
    )


def snapshot_history(settings: Settings, table: str | None = None) -> list[dict[str, Any]]:
    """Row and column counts per run (and table) for trend charts."""
    sql = (
        "SELECT run_id, captured_at, table_name, row_count, column_count, error"
        " FROM schema_snapshots"
    )
    params: tuple[Any, ...] = ()
    if table:
        sql += " WHERE table_name = ?"
        params = (validate_table_name(table),)
    with _connect(settings) as conn:
        conn.executescript(SNAPSHOT_DDL)
        return [dict(r) for r in conn.execute(sql + " ORDER BY rowid", params)]


# --- comparisons ---------------------------------------------------------------------------------


def compare_snapshots(
    previous: TableSnapshot, current: TableSnapshot, row_count_threshold: float
) -> tuple[list[ColumnChange], float | None, bool]:
    """Column changes, row-count change (%) and whether it swings beyond the threshold."""
    from .schema import compare_schema

    comparison = compare_schema(current.column_names, previous.column_names)
    changes: list[ColumnChange] = []
    prev_types, cur_types = previous.types(), current.types()
    for rename in comparison.renamed:
        old, new = rename.expected, rename.actual
        detail = f"name similarity {rename.similarity:.2f}"
        if NO_TYPE not in (prev_types[old], cur_types[new]) and prev_types[old] != cur_types[new]:
            detail += f"; type {prev_types[old]} -> {cur_types[new]}"
        changes.append(ColumnChange("renamed", new, old, new, detail))
    changes += [
        ColumnChange("removed", c, c, None, f"was {prev_types[c]}") for c in comparison.missing
    ]
    changes += [
        ColumnChange("added", c, None, c, f"inferred {cur_types[c]}") for c in comparison.extra
    ]
    for name in current.column_names:
        if name in prev_types:
            old, new = prev_types[name], cur_types[name]
            if old != new and NO_TYPE not in (old, new):
                changes.append(ColumnChange("type_changed", name, old, new, f"{old} -> {new}"))
    if comparison.reordered:
        moved = ", ".join(comparison.moved)
        changes.append(ColumnChange("reordered", moved, None, None, f"moved: {moved}"))
    change_pct: float | None = None
    swing = False
    if previous.row_count is not None and current.row_count is not None:
        if previous.row_count == 0:
            swing = current.row_count > 0  # from empty to filled is always worth a look
        else:
            change_pct = 100.0 * (current.row_count - previous.row_count) / previous.row_count
            swing = abs(change_pct) >= row_count_threshold
    return changes, change_pct, swing


def compare_with_rule_file(settings: Settings, snapshot: TableSnapshot) -> RuleFileDrift:
    """Bronze columns now against the rule file, by the check ingestion itself applies.

    :func:`aims_nb_utils.schema.check_source` (footer only, no row decoding: the snapshot already
    read every value) gives the comparison and the required columns; the types the rule file's
    conformance rules promise are compared with the types observed now.
    """
    from .rules import load_rule_file
    from .schema import check_source

    check = check_source(settings, snapshot.table, deep=False)
    if check.rule_file is None:
        unusable = [n for n in check.notes if n.startswith("rule file unusable")]
        return RuleFileDrift(
            rule_file=None if not unusable else str(settings.paths.rule_file(snapshot.table)),
            expected_columns=0,
            error=unusable[0] if unusable else None,
        )
    comparison = check.comparison
    result = RuleFileDrift(
        rule_file=check.rule_file,
        expected_columns=0 if comparison is None else len(comparison.expected),
        required_missing=list(check.required_missing),
    )
    if comparison is not None:
        result.missing = list(comparison.missing)
        result.extra = list(comparison.extra)
        result.renamed = [(r.expected, r.actual, float(r.similarity)) for r in comparison.renamed]
        result.reordered = comparison.reordered
    observed = snapshot.types()
    for rule in load_rule_file(check.rule_file).expectations:
        value_type = rule.meta.get("value_type")
        if rule.expectation_type != "expect_column_values_to_match_regex" or not value_type:
            continue
        now = observed.get(str(rule.column))
        if now and now != NO_TYPE and now != value_type:
            result.type_mismatches.append((str(rule.column), str(value_type), now))
    return result


def ingestion_action(policy: str, rule_drift: RuleFileDrift | None, snapshot: TableSnapshot) -> str:
    """What ingestion will do with this table now, in words (mirrors schema.SourceCheck)."""
    if snapshot.error:
        return "cannot ingest: the Bronze file is unreadable (run `python -m aims_nb_utils repair`)"
    if rule_drift is None or (rule_drift.rule_file is None and rule_drift.error is None):
        return "no rule file yet: profile the table before it can be validated and ingested"
    if rule_drift.error:
        return f"cannot ingest: {rule_drift.error}"
    if rule_drift.required_missing:
        return "cannot ingest whatever the policy: required column(s) missing: " + ", ".join(
            rule_drift.required_missing
        )
    if not rule_drift.has_drift:
        return "none: the columns match the rule file"
    return f"{policy}: {POLICY_ACTIONS[policy]}"


# --- the report ----------------------------------------------------------------------------------


def reconcile(
    settings: Settings,
    run_id: str | None = None,
    tables: Iterable[str] | None = None,
    sample_size: int | None = None,
    row_count_threshold: float | None = None,
    record: bool = True,
    write: bool = True,
) -> DriftReport:
    """Snapshot Bronze, compare with the rule files and the previous run, store and report.

    ``record`` stores this run's snapshots (the next run's baseline); ``write`` writes the JSON
    and HTML reports. ``sample_size`` defaults to ``settings.sample_size`` (None: all rows).
    """
    started = time.perf_counter()
    run_id = run_id or state.new_run_id()
    threshold = float(
        settings.drift_row_count_threshold if row_count_threshold is None else row_count_threshold
    )
    if sample_size is None:
        sample_size = settings.sample_size
    selected = list(tables) if tables is not None else None
    if selected is not None:
        for name in selected:
            if not settings.paths.bronze_file(validate_table_name(name)).is_file():
                raise DriftError(
                    f"table {name}: no Bronze file at {settings.paths.bronze_file(name)}",
                    hint="check the table name or AIMS_BRONZE_DIR",
                )
    snapshots = capture_snapshots(settings, selected, sample_size=sample_size)
    previous_run, previous_at, previous = previous_snapshots(settings, run_id)
    report_tables: dict[str, TableDrift] = {}
    for name, snap in snapshots.items():
        policy = settings.drift_policy_for(name)
        if snap.error:
            report_tables[name] = TableDrift(
                table=name,
                policy=policy,
                status="error",
                ingestion_action=ingestion_action(policy, None, snap),
                snapshot=snap,
                previous=previous.get(name),
                rule_file=None,
                notes=[snap.error],
            )
            continue
        rule_drift = compare_with_rule_file(settings, snap)
        drift = TableDrift(
            table=name,
            policy=policy,
            status="ok",
            ingestion_action=ingestion_action(policy, rule_drift, snap),
            snapshot=snap,
            previous=previous.get(name),
            rule_file=rule_drift,
        )
        if drift.previous is None:
            drift.status = "baseline"
            drift.notes.append(
                "no previous run to compare yet"
                if previous_run is None
                else "new table: no earlier snapshot of it"
            )
        else:
            drift.changes, drift.row_count_change_percent, drift.row_count_swing = (
                compare_snapshots(drift.previous, snap, threshold)
            )
            if drift.changes or drift.row_count_swing:
                drift.status = "drift"
            if drift.row_count_swing:
                drift.notes.append(
                    f"row count {drift.previous.row_count:,} -> {snap.row_count:,}"
                    + (
                        ""
                        if drift.row_count_change_percent is None
                        else f" ({drift.row_count_change_percent:+.1f} %, threshold {threshold:g} %)"
                    )
                )
        if rule_drift.has_drift:
            drift.status = "drift"
            drift.notes.append("Bronze columns differ from the rule file")
        if rule_drift.rule_file is None:
            drift.notes.append("no rule file")
        report_tables[name] = drift
    if selected is None:
        for name, snap in previous.items():
            if name not in snapshots:
                report_tables[name] = TableDrift(
                    table=name,
                    policy=settings.drift_policy_for(name),
                    status="removed",
                    ingestion_action="nothing to ingest: the Bronze file is gone",
                    snapshot=None,
                    previous=snap,
                    rule_file=None,
                    notes=[f"table present in run {snap.run_id}, absent from Bronze now"],
                )
    report = DriftReport(
        run_id=run_id,
        generated_at=state.utc_now(),
        previous_run_id=previous_run,
        previous_captured_at=previous_at,
        row_count_threshold=threshold,
        tables=dict(sorted(report_tables.items())),
        sampled=any(s.sampled for s in snapshots.values()),
    )
    if record:
        save_snapshots(settings, run_id, snapshots)
    report.seconds = time.perf_counter() - started
    if write:
        write_report(settings, report)
    return report


_CSS = """
body{font-family:system-ui,Segoe UI,Arial,sans-serif;margin:24px;color:#1f2933}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}.ok{color:#137333}.drift{color:#b45309;font-weight:600}
.error,.removed{color:#b91c1c;font-weight:600}.baseline{color:#4b5563}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}.note{color:#4b5563}
"""


def render_html(report: DriftReport) -> str:
    """One self-contained page: inline CSS, no scripts, no external resources."""
    esc = html.escape
    summary = report.summary()
    cards = [
        ("tables", summary["tables"]),
        ("with drift", summary["tables_with_drift"]),
        ("unreadable", summary["tables_unreadable"]),
        ("columns added", summary["columns_added"]),
        ("removed", summary["columns_removed"]),
        ("renamed", summary["columns_renamed"]),
        ("type changed", summary["columns_type_changed"]),
        ("row-count swings", summary["row_count_swings"]),
        ("differ from rules", summary["tables_drifting_from_rules"]),
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>AIMS schema drift - run {esc(report.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>AIMS schema drift report - run {esc(report.run_id)}</h1>",
        f"<p class='note'>Generated {esc(report.generated_at)}. {esc(report.comparison_note)}. "
        f"Row-count swing threshold: {report.row_count_threshold:g} %."
        + (" Types inferred from a sample of rows." if report.sampled else "")
        + "</p>",
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b>{esc(k)}</div>" for k, v in cards)
        + "</div>",
        "<h2>Tables</h2><table><tr><th>table</th><th>status</th><th>rows</th><th>previous</th>"
        "<th>change %</th><th>policy</th><th>what ingestion will do</th><th>notes</th></tr>",
    ]
    for row in report.rows():
        change = "" if row["row_change_percent"] is None else f"{row['row_change_percent']:+.1f}"
        parts.append(
            f"<tr><td>{esc(row['table'])}</td><td class='{esc(row['status'])}'>{esc(row['status'])}</td>"
            f"<td>{_fmt(row['rows'])}</td><td>{_fmt(row['previous_rows'])}</td><td>{change}</td>"
            f"<td>{esc(row['policy'])}</td><td>{esc(row['ingestion_action'])}</td>"
            f"<td>{esc(row['notes'])}</td></tr>"
        )
    parts.append("</table>")
    changed = [t for t in report.tables.values() if t.changes]
    parts.append("<h2>Changes since the previous run</h2>")
    if report.first_run:
        parts.append(f"<p class='note'>{esc(report.comparison_note)}.</p>")
    elif not changed:
        parts.append("<p class='ok'>No column changes since the previous run.</p>")
    else:
        parts.append(
            "<table><tr><th>table</th><th>change</th><th>column</th><th>previous</th>"
            "<th>current</th><th>detail</th></tr>"
        )
        for t in changed:
            for c in t.changes:
                parts.append(
                    f"<tr><td>{esc(t.table)}</td><td>{esc(c.change)}</td><td>{esc(c.column)}</td>"
                    f"<td>{esc(c.previous or '')}</td><td>{esc(c.current or '')}</td>"
                    f"<td>{esc(c.detail)}</td></tr>"
                )
        parts.append("</table>")
    against = [
        t
        for t in report.tables.values()
        if t.rule_file
        and (t.rule_file.has_drift or t.rule_file.type_mismatches or t.rule_file.reordered)
    ]
    parts.append("<h2>Bronze against the rule files</h2>")
    if not against:
        parts.append("<p class='ok'>Every table with a rule file has the columns it expects.</p>")
    else:
        parts.append(
            "<table><tr><th>table</th><th>missing</th><th>extra</th><th>renamed</th>"
            "<th>reordered</th><th>type (rule -> now)</th><th>policy / action</th></tr>"
        )
        for t in against:
            rf = t.rule_file
            assert rf is not None
            parts.append(
                f"<tr><td>{esc(t.table)}</td><td>{esc(', '.join(rf.missing))}</td>"
                f"<td>{esc(', '.join(rf.extra))}</td>"
                f"<td>{esc(', '.join(f'{a} -> {b} ({s:.2f})' for a, b, s in rf.renamed))}</td>"
                f"<td>{'yes' if rf.reordered else ''}</td>"
                f"<td>{esc(', '.join(f'{c}: {a} -> {b}' for c, a, b in rf.type_mismatches))}</td>"
                f"<td>{esc(t.ingestion_action)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:,}"


def write_report(settings: Settings, report: DriftReport) -> dict[str, Path]:
    """Write ``schema_drift_report.json`` and ``.html`` under the reports folder, atomically."""
    folder = settings.paths.reports
    json_path = atomic_write_text(
        folder / f"{REPORT_STEM}.json", json.dumps(report.to_dict(), indent=2, default=str)
    )
    html_path = atomic_write_text(folder / f"{REPORT_STEM}.html", render_html(report))
    report.paths = {"json": str(json_path), "html": str(html_path)}
    return {"json": json_path, "html": html_path}


# --- figures -------------------------------------------------------------------------------------


def drift_figures(report: DriftReport) -> dict[str, Any]:
    """Plotly figures of a report; where there is nothing to draw, the sentence that says why."""
    import plotly.express as px
    import plotly.graph_objects as go

    figures: dict[str, Any] = {}
    kinds = ("added", "removed", "renamed", "type_changed")
    counts = [
        {"table": t.table, "change": kind, "columns": len(t.changes_of(kind))}
        for t in report.tables.values()
        for kind in kinds
        if t.changes_of(kind)
    ]
    if report.first_run:
        figures["changes"] = f"Column changes: {report.comparison_note}."
    elif not counts:
        figures["changes"] = "Column changes: none since the previous run."
    else:
        figures["changes"] = px.bar(
            counts,
            x="table",
            y="columns",
            color="change",
            title=f"Column changes since run {report.previous_run_id}",
        )
    swings = [
        {
            "table": t.table,
            "change %": t.row_count_change_percent,
            "swing": "beyond threshold" if t.row_count_swing else "within threshold",
        }
        for t in report.tables.values()
        if t.row_count_change_percent is not None
    ]
    if report.first_run:
        figures["row_counts"] = f"Row-count changes: {report.comparison_note}."
    elif not swings:
        figures["row_counts"] = "Row-count changes: no table has an earlier row count."
    else:
        fig = px.bar(
            swings,
            x="table",
            y="change %",
            color="swing",
            title="Row-count change since the previous run (%)",
        )
        for bound in (report.row_count_threshold, -report.row_count_threshold):
            fig.add_hline(y=bound, line_dash="dash", line_color="grey")
        figures["row_counts"] = fig
    actions: dict[tuple[str, str], int] = {}
    for t in report.tables.values():
        key = (t.policy, t.ingestion_action.split(":")[0])
        actions[key] = actions.get(key, 0) + 1
    figures["policies"] = go.Figure(
        go.Bar(
            x=[f"{policy} / {action}" for policy, action in actions],
            y=list(actions.values()),
        )
    ).update_layout(
        title="Tables per drift policy / what ingestion will do",
        xaxis_title="policy / action",
        yaxis_title="tables",
    )
    return figures
