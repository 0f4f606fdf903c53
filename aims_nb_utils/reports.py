"""Monitoring: DQ dimension metrics from the latest verdicts and the state DB, figures, dashboards.

Reports read what validation and ingestion recorded; they never validate. The numbers a data owner
is judged on are computed here once, so notebook 03, the CLI and the HTML dashboard agree:

* quality score comes from the table verdicts in ``validation_results.json``; the pass rate
  counts a table as passing only when its verdict is PASSED *and* its latest load reached Silver
  (read with :func:`aims_nb_utils.ingestion.history_rows`): a table whose load failed or was not
  promoted counts against it, as does a table that errored in validation, so a lake where every
  load failed cannot read "pass rate 100 %, targets met";
* completeness is the share of non-null cells (``100 - mean null %`` over a table's columns, with
  the null placeholders counted as null), from the column metrics validation recorded for the run
  (every column with at least one rule);
* validity and consistency (cross-table integrity) are the dimension scores of the verdicts;
* freshness compares the Bronze file, the last successful load and the watermark of each table;
* targets (pass rate, quality score, completeness) are compared with the values, never assumed met.

The dashboard is one HTML file with plotly.js embedded, so it opens offline, from a file share, in a
mail attachment or in Fabric without reaching a CDN.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import insights, state
from .errors import AimsError, SettingsError
from .io import atomic_write_text, list_bronze_tables

if TYPE_CHECKING:  # pragma: no cover - typing only
    import plotly.graph_objects as go

    from .settings import Settings

RESULTS_FILE_NAME = "validation_results.json"
DASHBOARD_FILE_NAME = "dq_dashboard.html"
STATUSES = ("PASSED", "FAILED", "SKIPPED", "ERROR")
JUDGED = ("PASSED", "FAILED", "ERROR")  # statuses that count in the pass rate
STATUS_COLORS = {"PASSED": "#2e7d32", "FAILED": "#c62828", "ERROR": "#ef6c00", "SKIPPED": "#9e9e9e"}
SEVERITY_ORDER = ("critical", "high", "medium", "low")
SEVERITY_COLORS = {"critical": "#b71c1c", "high": "#e65100", "medium": "#f9a825", "low": "#90a4ae"}
# load_history statuses (ingestion.STATUSES) that mean "Silver holds this table's Bronze data as
# of that load"; not_promoted (failed verdict, rows kept out of Silver) and error do not.
LOAD_OK_STATUSES = frozenset({"loaded", "unchanged", "success"})
LOAD_FAILED_STATUSES = {"not_promoted": "not promoted", "error": "load failed"}
PHASE_COLORS = {"success": "#2e7d32", "failed": "#c62828", "skipped": "#757575"}


class ResultsFileError(AimsError):
    """A verdict in the validation results file is not in the shape the reports read."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(
            f"validation results {path}: {problem}",
            hint="re-run validation (`python -m aims_nb_utils validate-dq` or notebook 02) to "
            "rewrite the file",
        )


@dataclass(frozen=True)
class Targets:
    """The seed's quality targets, in percent; a value at or above its target meets it."""

    pass_rate: float = 80.0
    quality_score: float = 85.0
    completeness: float = 95.0

    def __post_init__(self) -> None:
        for name in ("pass_rate", "quality_score", "completeness"):
            value = getattr(self, name)
            key = f"target_{name}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(key, value, "argument", "expected a number (percent)")
            if not 0 <= value <= 100:
                raise SettingsError(key, value, "argument", "must be a percentage 0-100")
            if 0 < value < 1:  # a fraction written where a percentage belongs
                raise SettingsError(
                    key,
                    value,
                    "argument",
                    "looks like a fraction; targets are percentages",
                    hint=f"write {value * 100:g}, not {value:g}",
                )


@dataclass(frozen=True)
class ValidationRun:
    """The parsed results file: one verdict dict per table, keyed by table name."""

    path: Path
    run_id: str | None
    timestamp: str | None
    threshold: float | None
    summary: dict[str, Any]
    tables: dict[str, dict[str, Any]]
    # Tables the latest run validated; the others keep verdicts from earlier runs. None for a
    # legacy results file, which was always a whole run.
    validated_in_run: list[str] | None = None


def results_path(settings: Settings) -> Path:
    return settings.paths.results / RESULTS_FILE_NAME


def _table_from_entry(key: str | None, entry: dict[str, Any], path: Path) -> str:
    if key:
        return key
    name = entry.get("table") or Path(str(entry.get("file", ""))).stem
    if not name:
        raise ResultsFileError(path, "an entry of 'files' names neither a table nor a file")
    return str(name)


def load_results(source: Settings | str | Path) -> ValidationRun:
    """Read ``validation_results.json`` (settings or a path) into one verdict per table.

    The legacy shape, where ``files`` is a list of entries naming their parquet file, is read too,
    so the dashboards also work on results the current users already have.
    """
    from .validation import load_results as read_results_document  # the file's one reader

    path = Path(source) if isinstance(source, (str, Path)) else results_path(source)
    raw = read_results_document(path)  # missing, invalid JSON, no 'files': errors naming the file
    files = raw["files"]
    if isinstance(files, dict):
        entries = [(k, v) for k, v in files.items()]
    elif isinstance(files, list):
        entries = [(None, v) for v in files]
    else:
        raise ResultsFileError(path, "'files' must be a mapping of table -> verdict (or a list)")
    tables: dict[str, dict[str, Any]] = {}
    for key, entry in entries:
        if not isinstance(entry, dict):
            raise ResultsFileError(path, f"the verdict of {key or 'an entry'} is not a mapping")
        status = str(entry.get("status", "")).upper()
        table = _table_from_entry(key, entry, path)
        if status not in STATUSES:
            raise ResultsFileError(
                path,
                f"table {table}: status {entry.get('status')!r} is not one of {', '.join(STATUSES)}",
            )
        tables[table] = entry
    threshold = raw.get("threshold")
    return ValidationRun(
        path=path,
        run_id=raw.get("run_id"),
        timestamp=raw.get("timestamp"),
        threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
        summary=raw.get("summary") or {},
        tables=tables,
        validated_in_run=(
            [str(t) for t in raw["validated_in_run"]]
            if isinstance(raw.get("validated_in_run"), list)
            else None
        ),
    )


def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def column_completeness(db_path: str | Path, run_id: str | None) -> pd.DataFrame:
    """Cell completeness per table from the column metrics of ``run_id``.

    Validation measures the null rate of every column that has a rule (``columns_measured``). A
    table missing from that run (or ``run_id`` None, e.g. a legacy results file) falls back to the
    table's latest recorded run; ``completeness_run_id`` says which run each figure is from.
    """
    columns = ["table_name", "completeness", "columns_measured", "completeness_run_id"]
    db_path = Path(db_path)
    if not db_path.is_file():
        return pd.DataFrame(columns=columns)
    rows = state.query(
        db_path,
        "SELECT c.table_name, c.run_id, c.run_at, AVG(c.null_percent) AS mean_null, "
        "COUNT(c.null_percent) AS n FROM column_metrics c "
        "GROUP BY c.table_name, c.run_id, c.run_at",
    )
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    frame["own_run"] = frame["run_id"].eq(run_id)
    frame = frame.sort_values(["table_name", "own_run", "run_at", "run_id"], kind="stable")
    best = frame.groupby("table_name", as_index=False).tail(1)
    return pd.DataFrame(
        {
            "table_name": best["table_name"].to_numpy(),
            "completeness": (100.0 - pd.to_numeric(best["mean_null"])).to_numpy(dtype="float64"),
            "columns_measured": best["n"].astype("int64").to_numpy(),
            "completeness_run_id": best["run_id"].to_numpy(),
        }
    )


LOAD_COLUMNS = ["table_name", "load_status", "load_run_id", "load_ended_at", "load_error"]


def load_outcomes(settings: Settings, tables: list[str] | set[str]) -> pd.DataFrame:
    """The latest load attempt of each table (runs that found nothing to do left aside: Silver
    then still holds what that attempt left), from the state DB's load history."""
    from .ingestion import history_rows

    rows = []
    for table in sorted(tables):
        last = history_rows(settings, limit=1, table=table)
        if last:
            rows.append(
                {
                    "table_name": table,
                    "load_status": last[0]["status"],
                    "load_run_id": last[0]["run"],
                    "load_ended_at": last[0]["ended"] or None,
                    "load_error": last[0]["error"] or None,
                }
            )
    return pd.DataFrame(rows, columns=LOAD_COLUMNS)


def why_failed(entry: dict[str, Any]) -> str | None:
    """Why a table's verdict is not PASSED, in one line a data engineer reads at a glance: the
    gating rule that failed, the share of rows quarantine would take, the share thresholds
    missed (``threshold_failures``, every reason in order), or the error; None when it passed."""
    status = str(entry.get("status", "")).upper()
    if status == "FAILED":
        reasons = [str(r) for r in entry.get("threshold_failures") or []]
        return "; ".join(reasons) or "failed (the results file gives no reason)"
    if status in ("ERROR", "SKIPPED"):
        return str(entry.get("error") or entry.get("reason") or status.lower())
    return None


def table_metrics(
    run: ValidationRun,
    completeness: pd.DataFrame | None = None,
    loads: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per table: verdict, scores, completeness, the dimension scores of the run and the
    outcome of its latest load.

    ``completeness`` is cell completeness (see :func:`column_completeness`); an empty table has none
    (no cells), and ``completeness_rules`` keeps the separate score of the completeness rules.
    ``loads`` (see :func:`load_outcomes`) adds the tables whose load failed without a verdict
    (status ``NONE``): they count in the pass rate too.
    """
    rows = []
    for table, entry in sorted(run.tables.items()):
        dims = entry.get("dimension_scores") or {}
        failures = entry.get("failures") or []
        rows.append(
            {
                "table_name": table,
                "status": str(entry.get("status")).upper(),
                "quality_score": _num(entry.get("score")),
                "weighted_score": _num(entry.get("weighted_score")),
                "row_count": _num(entry.get("row_count")),
                "rules_failed": len(failures),
                "critical_failed": sum(
                    1 for f in failures if str(f.get("severity", "")).lower() == "critical"
                ),
                "completeness_rules": _num(dims.get("completeness")),
                "validity": _num(dims.get("validity")),
                "consistency": _num(dims.get("consistency")),
                "uniqueness": _num(dims.get("uniqueness")),
                "integrity": _num(dims.get("integrity")),
                "seconds": _num(entry.get("seconds")),
                "reason": entry.get("reason"),
                "why_failed": why_failed(entry),
                "quarantine_rows": _num(entry.get("quarantine_rows")),
                "quarantine_percent": _num(entry.get("quarantine_percent")),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["table_name", "status", "quality_score", "row_count"])
    comp = (
        completeness
        if completeness is not None
        else pd.DataFrame(
            columns=["table_name", "completeness", "columns_measured", "completeness_run_id"]
        )
    )
    frame = frame.merge(comp, on="table_name", how="left")
    loads = loads if loads is not None else pd.DataFrame(columns=LOAD_COLUMNS)
    frame = frame.merge(loads, on="table_name", how="outer" if len(loads) else "left")
    frame["status"] = frame["status"].fillna(NO_VERDICT)
    frame["load_outcome"] = [_load_outcome(s) for s in frame["load_status"]]
    frame["passing"] = frame["status"].eq("PASSED") & ~frame["load_outcome"].isin(
        list(LOAD_FAILED_STATUSES.values())
    )
    frame["completeness"] = pd.to_numeric(frame["completeness"], errors="coerce").astype("float64")
    empty = frame["row_count"].eq(0)
    frame.loc[empty, "completeness"] = np.nan
    order = [
        "table_name",
        "status",
        "quality_score",
        "weighted_score",
        "row_count",
        "completeness",
        "validity",
        "consistency",
        "uniqueness",
        "integrity",
        "completeness_rules",
        "rules_failed",
        "critical_failed",
        "seconds",
        "reason",
        "why_failed",
        "quarantine_rows",
        "quarantine_percent",
        "load_outcome",
        "load_status",
        "load_error",
        "load_run_id",
        "passing",
        "columns_measured",
        "completeness_run_id",
    ]
    return frame.reindex(columns=order).sort_values("table_name", ignore_index=True)


NO_VERDICT = "NONE"  # a table with a load attempt but no verdict in the results file


def _load_outcome(status: Any) -> str:
    """loaded / load failed / not promoted / never loaded / <other status>, for people."""
    if not isinstance(status, str) or not status:
        return "never loaded"
    if status.lower() in LOAD_OK_STATUSES:
        return "loaded"
    if status.lower() == "failed":  # the legacy loaders' word for an error
        return "load failed"
    return LOAD_FAILED_STATUSES.get(status.lower(), status)


def overall_metrics(tables: pd.DataFrame) -> dict[str, Any]:
    """Lake-wide figures; every mean gives each table the same weight, like the seed's averages.

    Pass rate: tables passing (verdict PASSED and the latest load reached Silver, or no load
    attempted yet) among tables judged (a verdict PASSED, FAILED or ERROR, or a failed or
    unpromoted load). A table errored in validation, or whose load failed or was not promoted,
    counts against it; skipped tables (empty exports, excluded tables) are neither good nor bad.
    """
    status = tables["status"].astype(str)
    keys = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped", "ERROR": "errors"}
    counts = {keys[s]: int(status.eq(s).sum()) for s in STATUSES}
    counts["no_verdict"] = int(status.eq(NO_VERDICT).sum())
    outcome = (
        tables["load_outcome"].astype(str)
        if "load_outcome" in tables
        else pd.Series("never loaded", index=tables.index)
    )
    blocked = outcome.isin(list(LOAD_FAILED_STATUSES.values()))
    passing = status.eq("PASSED") & ~blocked
    judged = int((status.isin(JUDGED) | blocked).sum())
    loads = {
        "loads_failed": int(outcome.eq("load failed").sum()),
        "loads_not_promoted": int(outcome.eq("not promoted").sum()),
        "loads_ok": int(outcome.eq("loaded").sum()),
        "never_loaded": int(outcome.eq("never loaded").sum()),
    }
    scored = tables[status.isin(["PASSED", "FAILED"])]

    def mean(frame: pd.DataFrame, column: str) -> float | None:
        values = pd.to_numeric(frame[column], errors="coerce").dropna()
        return float(values.mean()) if len(values) else None

    return {
        "tables": int(len(tables)),
        **counts,
        **loads,
        "passing": int(passing.sum()),
        "judged": judged,
        "pass_rate": 100.0 * int(passing.sum()) / judged if judged else None,
        "avg_quality_score": mean(scored, "quality_score"),
        "avg_weighted_score": mean(scored, "weighted_score"),
        "completeness": mean(tables, "completeness"),
        "validity": mean(scored, "validity"),
        "consistency": mean(scored, "consistency"),
        "uniqueness": mean(scored, "uniqueness"),
        "integrity": mean(scored, "integrity"),
        "failed_rules": int(pd.to_numeric(tables["rules_failed"]).fillna(0).sum()),
        "critical_failed_rules": int(pd.to_numeric(tables["critical_failed"]).fillna(0).sum()),
        **_quarantine_totals(tables),
    }


def _quarantine_totals(tables: pd.DataFrame) -> dict[str, Any]:
    """Rows that break a quarantining rule, over the tables whose verdict measured it (results
    files written before that have no figure: they count in neither total)."""
    if "quarantine_rows" not in tables:
        return {"quarantine_rows": None, "quarantine_rows_of": None, "quarantine_percent": None}
    measured = tables[pd.to_numeric(tables["quarantine_rows"], errors="coerce").notna()]
    if measured.empty:
        return {"quarantine_rows": None, "quarantine_rows_of": None, "quarantine_percent": None}
    quarantined = int(pd.to_numeric(measured["quarantine_rows"]).sum())
    rows = int(pd.to_numeric(measured["row_count"], errors="coerce").fillna(0).sum())
    return {
        "quarantine_rows": quarantined,
        "quarantine_rows_of": rows,
        "quarantine_percent": 100.0 * quarantined / rows if rows else None,
    }


def evaluate_targets(overall: dict[str, Any], targets: Targets) -> pd.DataFrame:
    """Met / missed / no data for each target, from the computed overall figures."""
    rows = []
    for metric, label in (
        ("pass_rate", "Pass rate"),
        ("quality_score", "Average quality score"),
        ("completeness", "Completeness"),
    ):
        value = overall.get("avg_quality_score" if metric == "quality_score" else metric)
        target = float(getattr(targets, metric))
        met = None if value is None else bool(value >= target)
        rows.append(
            {
                "metric": metric,
                "label": label,
                "value": value,
                "target": target,
                "met": met,
                "verdict": "no data" if met is None else ("met" if met else "missed"),
            }
        )
    return pd.DataFrame(rows)


def failures_frame(run: ValidationRun) -> pd.DataFrame:
    """Every failed rule of the run, one row each."""
    columns = [
        "table_name",
        "expectation",
        "column",
        "severity",
        "dimension",
        "unexpected_count",
        "unexpected_percent",
    ]
    rows = []
    for table, entry in sorted(run.tables.items()):
        for failure in entry.get("failures") or []:
            details = failure.get("details") or {}  # legacy results nest counts under details
            rows.append(
                {
                    "table_name": table,
                    "expectation": failure.get("expectation"),
                    "column": failure.get("column"),
                    "severity": str(failure.get("severity") or "medium").lower(),
                    "dimension": failure.get("dimension"),
                    "unexpected_count": _num(
                        failure.get("unexpected_count", details.get("unexpected_count"))
                    ),
                    "unexpected_percent": _num(
                        failure.get("unexpected_percent", details.get("unexpected_percent"))
                    ),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def failures_by_rule_and_severity(failures: pd.DataFrame) -> pd.DataFrame:
    """Failed rules counted per expectation type and severity, with tables and rows affected."""
    columns = ["expectation", "severity", "failed_rules", "tables", "unexpected_rows"]
    if failures.empty:
        return pd.DataFrame(columns=columns)
    out = failures.groupby(["expectation", "severity"], as_index=False).agg(
        failed_rules=("table_name", "size"),
        tables=("table_name", "nunique"),
        unexpected_rows=("unexpected_count", "sum"),
    )
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    out["_rank"] = out["severity"].map(rank).fillna(len(rank))
    out = out.sort_values(["_rank", "failed_rules"], ascending=[True, False], kind="stable")
    return out[columns].reset_index(drop=True)


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    stamp = pd.to_datetime(value, errors="coerce", utc=True)
    return None if pd.isna(stamp) else stamp


def freshness(
    settings: Settings,
    tables: list[str] | None = None,
    now: datetime | None = None,
    max_age_hours: float = 24.0,
) -> pd.DataFrame:
    """How current each table is: Bronze file time, last successful load, watermark.

    Status, in order: ``missing`` (no Bronze file); ``not promoted`` or ``load failed`` when the
    latest load attempt after the current Bronze file did not bring it into Silver (a failed
    verdict, an error); ``never loaded``; ``pending load`` (the Bronze file changed after the last
    successful load and no attempt since); ``stale`` (last successful load older than
    ``max_age_hours``); else ``fresh``.
    """
    now_ts = pd.Timestamp(now or datetime.now(timezone.utc))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    names = set(tables or []) | set(list_bronze_tables(settings.paths.bronze))
    db = settings.paths.state_db
    marks: dict[str, dict[str, Any]] = {}
    loads: dict[str, dict[str, Any]] = {}
    if db.is_file():
        marks = {m["table_name"]: m for m in state.watermarks(db)}
        for row in state.query(
            db,
            "SELECT table_name, status, started_at, ended_at, rows_silver, rows_quarantined "
            "FROM load_history ORDER BY id",
        ):
            loads.setdefault(row["table_name"], {"last": None, "ok": None})
            loads[row["table_name"]]["last"] = row
            if str(row["status"]).lower() in LOAD_OK_STATUSES:
                loads[row["table_name"]]["ok"] = row
        names |= set(marks) | set(loads)
    rows = []
    for table in sorted(names):
        path = settings.paths.bronze_file(table)
        bronze_time = (  # to the millisecond, as load times are recorded (state.utc_now)
            pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").floor("ms")
            if path.is_file()
            else None
        )
        info = loads.get(table, {"last": None, "ok": None})
        ok, last = info["ok"], info["last"]
        loaded_at = _utc(ok["ended_at"] or ok["started_at"]) if ok else None
        tried_at = _utc(last["ended_at"] or last["started_at"]) if last else None
        failed = LOAD_FAILED_STATUSES.get(str(last["status"]).lower()) if last else None
        mark = marks.get(table) or {}
        newest_record = _utc(mark.get("last_updated"))
        if bronze_time is None:
            status = "missing"
        elif failed and tried_at is not None and tried_at >= bronze_time and last is not ok:
            status = failed
        elif loaded_at is None:
            status = "never loaded"
        elif bronze_time > loaded_at:
            status = "pending load"
        elif (now_ts - loaded_at).total_seconds() / 3600 > max_age_hours:
            status = "stale"
        else:
            status = "fresh"

        def hours(stamp: pd.Timestamp | None) -> float:
            return math.nan if stamp is None else (now_ts - stamp).total_seconds() / 3600

        rows.append(
            {
                "table_name": table,
                "status": status,
                "bronze_modified": None if bronze_time is None else bronze_time.isoformat(),
                "bronze_age_hours": hours(bronze_time),
                "last_load_at": None if loaded_at is None else loaded_at.isoformat(),
                "load_age_hours": hours(loaded_at),
                "last_load_status": (info["last"] or {}).get("status"),
                "newest_record": None if newest_record is None else newest_record.isoformat(),
                "record_age_hours": hours(newest_record),
                "watermark_rows": mark.get("rows"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "table_name",
            "status",
            "bronze_modified",
            "bronze_age_hours",
            "last_load_at",
            "load_age_hours",
            "last_load_status",
            "newest_record",
            "record_age_hours",
            "watermark_rows",
        ],
    )


def pipeline_run(settings: Settings) -> dict[str, Any] | None:
    """The latest orchestration run: its status and each phase's status with why (a skipped
    phase's reason, a failed one's error), or None when no run log exists.

    Gold and BI on a lake without the AIMS tables end *skipped* with a reason; the dashboard
    shows that reason, so an absent star schema is never read as an empty one.
    """
    from .orchestration import PhaseResult, headline, latest_run_log, read_run_log

    path = latest_run_log(settings)
    if path is None:
        return None
    try:
        log = read_run_log(path)
        phases = [PhaseResult(**entry) for entry in log.get("phases") or []]
    except (OSError, ValueError, TypeError) as exc:
        return {"path": str(path), "problem": f"cannot read the run log: {exc}", "phases": []}
    rows = [
        {
            "phase": p.phase,
            "status": p.status,
            "seconds": p.duration_seconds,
            "details": headline(p.metrics) if p.status == "success" else p.error_line(),
        }
        for p in phases
    ]
    return {
        "path": str(path),
        "run_id": log.get("run_id"),
        "status": log.get("status"),
        "start_time": log.get("start_time"),
        "end_time": log.get("end_time"),
        "phases": rows,
        "problem": None,
    }


# --- the report ---------------------------------------------------------------------------------


@dataclass
class MonitoringReport:
    """Everything notebook 03 and the dashboard show, computed once."""

    run: ValidationRun
    tables: pd.DataFrame
    overall: dict[str, Any]
    targets: pd.DataFrame
    failures: pd.DataFrame
    failure_summary: pd.DataFrame
    freshness: pd.DataFrame
    runs: pd.DataFrame
    history_status: insights.HistoryStatus
    modeling: dict[str, Any] | None = None
    history: insights.History | None = None
    notes: list[str] = field(default_factory=list)
    max_age_hours: float = 24.0
    pipeline: dict[str, Any] | None = None

    def metrics(self) -> dict[str, Any]:
        """Key figures for the run log (record_phase_metrics)."""
        met = self.targets["met"]
        return {
            "validation_run_id": self.run.run_id,
            "tables_monitored": self.overall["tables"],
            "pass_rate": self.overall["pass_rate"],
            "avg_quality_score": self.overall["avg_quality_score"],
            "completeness": self.overall["completeness"],
            "validity": self.overall["validity"],
            "consistency": self.overall["consistency"],
            "failed_rules": self.overall["failed_rules"],
            "rows_quarantined": self.overall["quarantine_rows"],
            "rows_quarantined_percent": self.overall["quarantine_percent"],
            "tables_errored": self.overall["errors"],
            "loads_failed": self.overall["loads_failed"],
            "loads_not_promoted": self.overall["loads_not_promoted"],
            "targets_met": int(met.eq(True).sum()),
            "targets_missed": int(met.eq(False).sum()),
            "tables_not_fresh": int((~self.freshness["status"].eq("fresh")).sum()),
            "runs_recorded": self.history_status.runs,
        }


def build_monitoring_report(
    settings: Settings,
    targets: Targets | None = None,
    max_age_hours: float = 24.0,
    now: datetime | None = None,
) -> MonitoringReport:
    """Compute the monitoring report from the latest results file and the state DB."""
    from . import modeling  # reads modeling's saved output only

    targets = targets or Targets()
    run = load_results(settings)
    completeness = column_completeness(settings.paths.state_db, run.run_id)
    try:
        bronze = set(list_bronze_tables(settings.paths.bronze))
    except AimsError:  # a badly named file: the verdicts still name their tables
        bronze = set()
    loads = load_outcomes(settings, set(run.tables) | bronze)
    tables = table_metrics(run, completeness, loads)
    overall = overall_metrics(tables)
    notes = []
    in_run = run.validated_in_run
    if in_run is not None and set(in_run) != set(run.tables):
        earlier = sorted(set(run.tables) - set(in_run))
        notes.append(
            f"validated in this run ({run.run_id}): {len(in_run)} of {len(run.tables)} tables"
            + (f" ({', '.join(sorted(in_run)[:10])})" if in_run else "")
            + f"; {len(earlier)} keep their verdict from an earlier run: "
            + ", ".join(earlier[:10])
            + (" ..." if len(earlier) > 10 else "")
        )
    blocked = tables[tables["load_outcome"].isin(list(LOAD_FAILED_STATUSES.values()))]
    if len(blocked):
        notes.append(
            f"{len(blocked)} table(s) did not reach Silver in their latest load and count against "
            "the pass rate: "
            + ", ".join(
                f"{t} ({o})"
                for t, o in list(zip(blocked["table_name"], blocked["load_outcome"], strict=True))[
                    :10
                ]
            )
        )
    if run.run_id and not completeness.empty:
        other = completeness[completeness["completeness_run_id"] != run.run_id]
        if len(other):
            notes.append(
                f"completeness of {len(other)} table(s) comes from an earlier run than the results "
                f"file ({run.run_id}): " + ", ".join(sorted(other["table_name"])[:10])
            )
    if completeness.empty:
        notes.append(
            f"no column metrics in {settings.paths.state_db}: completeness is unknown until "
            "validation records a run there"
        )
    history = insights.load_history(settings)
    status = insights.history_status(history)
    saved = modeling.load_saved_modeling(settings)
    if saved and saved.get("latest_run_id") and history.latest_run_id:
        if saved["latest_run_id"] != history.latest_run_id:
            notes.append(
                f"anomaly/forecast output is from run {saved['latest_run_id']}; the latest "
                f"recorded run is {history.latest_run_id} (re-run notebook 07 to refresh it)"
            )
    failures = failures_frame(run)
    return MonitoringReport(
        run=run,
        tables=tables,
        overall=overall,
        targets=evaluate_targets(overall, targets),
        failures=failures,
        failure_summary=failures_by_rule_and_severity(failures),
        freshness=freshness(settings, list(run.tables), now=now, max_age_hours=max_age_hours),
        runs=insights.run_summary(history),
        history_status=status,
        modeling=saved,
        history=history,
        notes=notes,
        max_age_hours=max_age_hours,
        pipeline=pipeline_run(settings),
    )


# --- figures ------------------------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 20, "r": 20, "t": 50, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.12},
    )
    return fig


def figure_quality_scores(tables: pd.DataFrame, threshold: float | None) -> go.Figure:
    """Quality score per table, coloured by verdict, with the threshold as a line."""
    import plotly.graph_objects as go

    data = tables.dropna(subset=["quality_score"]).sort_values("quality_score", ascending=False)
    fig = go.Figure()
    for status in STATUSES:
        part = data[data["status"] == status]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=part["quality_score"].tolist(),
                y=part["table_name"].tolist(),
                orientation="h",
                name=status,
                marker_color=STATUS_COLORS[status],
                customdata=[[_quarantine_text(r), _hover_why(r)] for _, r in part.iterrows()],
                hovertemplate="%{y}: %{x:.2f}% of rules passed<br>quarantine: %{customdata[0]}"
                "%{customdata[1]}<extra>" + status + "</extra>",
            )
        )
    if threshold is not None:
        fig.add_vline(
            x=threshold,
            line_dash="dash",
            line_color="#333",
            annotation_text=f"threshold {threshold:g}%",
        )
    fig.update_yaxes(
        categoryorder="array", categoryarray=data["table_name"].tolist()[::-1], automargin=True
    )
    fig.update_xaxes(range=[0, 100.5], title="quality score (% of rules passed)")
    return _layout(fig, "Quality score per table", max(320, 16 * len(data) + 120))


def _quarantine_text(row: pd.Series) -> str:
    """'160 rows (80.0%)', or 'not measured' for a verdict without the figure."""
    rows = row.get("quarantine_rows")
    if rows is None or pd.isna(rows):
        return "not measured"
    percent = row.get("quarantine_percent")
    share = "" if percent is None or pd.isna(percent) else f" ({float(percent):.1f}%)"
    return f"{int(rows):,} rows{share}"


def _hover_why(row: pd.Series) -> str:
    why = row.get("why_failed")
    if not isinstance(why, str) or not why or row.get("status") == "PASSED":
        return ""
    return "<br>why: " + html.escape(why if len(why) <= 160 else why[:157] + "...")


def figure_dimensions(tables: pd.DataFrame) -> go.Figure:
    """Completeness, validity and consistency per table (grouped bars)."""
    import plotly.graph_objects as go

    data = tables.sort_values("table_name")
    fig = go.Figure()
    for column, color in (
        ("completeness", "#1565c0"),
        ("validity", "#6a1b9a"),
        ("consistency", "#00838f"),
    ):
        fig.add_trace(
            go.Bar(
                y=data["table_name"].tolist(),
                x=[None if pd.isna(v) else float(v) for v in data[column]],
                orientation="h",
                name=column,
                marker_color=color,
                hovertemplate="%{y}: %{x:.2f}%<extra>" + column + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(range=[0, 100.5], title="%")
    return _layout(
        fig, "Completeness, validity, consistency per table", max(360, 30 * len(data) + 120)
    )


def figure_failures(summary: pd.DataFrame) -> go.Figure:
    """Failed rules per expectation type, stacked by severity."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for severity in SEVERITY_ORDER:
        part = summary[summary["severity"] == severity]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=part["expectation"].tolist(),
                y=part["failed_rules"].tolist(),
                name=severity,
                marker_color=SEVERITY_COLORS[severity],
                customdata=part[["tables", "unexpected_rows"]].values.tolist(),
                hovertemplate="%{x}<br>%{y} failed rules in %{customdata[0]} tables"
                "<br>%{customdata[1]:,.0f} unexpected rows<extra>" + severity + "</extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="failed rules")
    return _layout(fig, "Failures by rule type and severity", 420)


def figure_freshness(fresh: pd.DataFrame) -> go.Figure:
    """Hours since each Bronze file was written and since its last successful load."""
    import plotly.graph_objects as go

    data = fresh.sort_values("table_name")
    fig = go.Figure()
    for column, name, color in (
        ("bronze_age_hours", "Bronze file age", "#8d6e63"),
        ("load_age_hours", "since last load", "#1565c0"),
    ):
        values = [None if pd.isna(v) else round(float(v), 2) for v in data[column]]
        if all(v is None for v in values):
            continue
        fig.add_trace(
            go.Bar(
                y=data["table_name"].tolist(),
                x=values,
                orientation="h",
                name=name,
                marker_color=color,
                customdata=data[["status"]].values.tolist(),
                hovertemplate="%{y}: %{x:.1f} h (%{customdata[0]})<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(title="hours")
    return _layout(fig, "Freshness (hours)", max(320, 22 * len(data) + 120))


def figure_targets(targets: pd.DataFrame) -> go.Figure:
    """Each overall figure against its target: green bar when met, red when missed."""
    import plotly.graph_objects as go

    known = targets.dropna(subset=["value"])
    colors = ["#2e7d32" if m else "#c62828" for m in known["met"]]
    fig = go.Figure(
        [
            go.Bar(
                x=known["label"].tolist(),
                y=known["value"].astype(float).round(2).tolist(),
                marker_color=colors,
                name="value",
                text=[
                    f"{v:.1f}% ({verdict})"
                    for v, verdict in zip(known["value"], known["verdict"], strict=True)
                ],
                textposition="outside",
            ),
            go.Scatter(
                x=known["label"].tolist(),
                y=known["target"].tolist(),
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 40, "color": "#000"},
                name="target",
            ),
        ]
    )
    fig.update_yaxes(range=[0, 110], title="%")
    return _layout(fig, "Targets", 380)


def figure_run_history(runs: pd.DataFrame) -> go.Figure:
    """Pass rate and average quality score of every recorded run."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for column, name in (
        ("avg_quality_score", "average quality score"),
        ("pass_rate", "pass rate"),
    ):
        fig.add_trace(
            go.Scatter(
                x=runs["run_index"].tolist(),
                y=[None if pd.isna(v) else float(v) for v in runs[column]],
                mode="lines+markers",
                name=name,
                customdata=runs[["run_id"]].values.tolist(),
                hovertemplate="run %{customdata[0]}: %{y:.2f}%<extra>" + name + "</extra>",
            )
        )
    fig.update_xaxes(title="run (0 = first recorded)", dtick=1)
    fig.update_yaxes(title="%", range=[0, 105])
    return _layout(fig, "Quality across runs", 380)


def monitoring_figures(report: MonitoringReport) -> dict[str, go.Figure | str]:
    """The dashboard's figures by section id; a string instead of a figure says why it is absent."""
    figures: dict[str, go.Figure | str] = {
        "targets": (
            figure_targets(report.targets)
            if report.targets["value"].notna().any()
            else "no figure to compare with the targets yet"
        ),
        "scores": (
            figure_quality_scores(report.tables, report.run.threshold)
            if report.tables["quality_score"].notna().any()
            else "no table has a quality score in this run"
        ),
        "dimensions": figure_dimensions(report.tables),
        "failures": (
            figure_failures(report.failure_summary)
            if not report.failure_summary.empty
            else "no rule failed in this run"
        ),
        "freshness": (
            figure_freshness(report.freshness)
            if not report.freshness.empty
            else "no table to report freshness for"
        ),
        "history": (
            figure_run_history(report.runs)
            if report.history_status.enough
            else report.history_status.message
        ),
    }
    figures.update(_modeling_figures(report))
    return figures


def _modeling_figures(report: MonitoringReport) -> dict[str, go.Figure | str]:
    from . import modeling

    saved = report.modeling
    if not saved:
        return {}
    out: dict[str, go.Figure | str] = {}
    matrix = pd.DataFrame(saved.get("matrix") or [])
    if not matrix.empty and "table_name" in matrix:
        matrix = matrix.set_index("table_name").reindex(columns=list(modeling.DIMENSIONS))
        out["matrix"] = modeling.figure_dq_matrix(matrix.astype("float64"))
    else:
        out["matrix"] = "no validated table has dimension scores yet"
    forecast = pd.DataFrame(saved.get("forecast") or [], columns=modeling.FORECAST_COLUMNS)
    if report.history is not None and forecast["enough"].astype(bool).any():
        out["forecast"] = modeling.figure_forecast(report.history, forecast)
    else:
        notes = (saved.get("history") or {}).get("notes") or []
        out["forecast"] = next((n for n in notes if "forecast" in n), "no forecast yet")
    return out


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#263238;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;opacity:.8;font-size:13px}
main{padding:16px 28px;max-width:1400px}
section{background:#fff;border-radius:6px;padding:12px 18px;margin:14px 0;box-shadow:0 1px 2px #0002}
h2{font-size:17px;margin:6px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border-radius:6px;padding:10px 16px;min-width:150px;box-shadow:0 1px 2px #0002}
.card .v{font-size:24px;font-weight:600} .card .l{font-size:12px;color:#555}
.met{color:#2e7d32} .missed{color:#c62828} .nodata{color:#757575}
table.dq{border-collapse:collapse;font-size:12px;width:100%}
table.dq th,table.dq td{border-bottom:1px solid #e0e0e0;padding:3px 6px;text-align:left}
table.dq th{background:#eceff1}
.note{font-size:13px;color:#555;font-style:italic}
"""


def _fmt(value: Any, digits: int = 1, suffix: str = "%") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def _table_html(frame: pd.DataFrame, max_rows: int | None = None, fold_above: int = 15) -> str:
    """An HTML table; long ones are folded (<details>) so the figures stay in view."""
    shown = frame if max_rows is None else frame.head(max_rows)
    body = shown.to_html(
        index=False,
        escape=True,
        classes="dq",
        border=0,
        na_rep="",
        float_format=lambda v: f"{v:,.2f}",
    )
    if max_rows is not None and len(frame) > max_rows:
        body += f'<p class="note">{len(frame) - max_rows} more row(s) not shown.</p>'
    if len(shown) > fold_above:
        body = f"<details><summary>{len(frame)} rows</summary>{body}</details>"
    return body


def _figure_html(section: str, fig: go.Figure | str) -> str:
    if isinstance(fig, str):
        return f'<p class="note" id="fig-{section}-note">{html.escape(fig)}</p>'
    height = fig.layout.height or 420
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"fig-{section}",
        default_height=f"{int(height)}px",
        config={"displaylogo": False, "responsive": True},
    )


def _pipeline_html(pipeline: dict[str, Any] | None) -> str:
    """The latest run's phases: status and why (skip reason, error), coloured by status."""
    if pipeline is None:
        return '<p class="note" id="pipeline-none">no orchestration run log yet</p>'
    if pipeline.get("problem"):
        return f'<p class="note" id="pipeline-none">{html.escape(pipeline["problem"])}</p>'
    rows = "".join(
        f'<tr data-phase="{html.escape(str(r["phase"]))}" data-status="{html.escape(str(r["status"]))}">'
        f'<td>{html.escape(str(r["phase"]))}</td>'
        f'<td style="color:{PHASE_COLORS.get(str(r["status"]), "#1565c0")}"><b>'
        f'{html.escape(str(r["status"]))}</b></td>'
        f'<td>{html.escape(str(r["details"] or ""))}</td></tr>'
        for r in pipeline["phases"]
    )
    skipped = sum(1 for r in pipeline["phases"] if r["status"] == "skipped")
    title = (
        f'<p id="pipeline-status">run {html.escape(str(pipeline["run_id"]))} started '
        f'{html.escape(str(pipeline["start_time"]))}: <b>{html.escape(str(pipeline["status"]))}'
        f"</b>{f' ({skipped} phase(s) skipped, reasons below)' if skipped else ''}</p>"
    )
    return (
        title + '<table class="dq" id="pipeline-phases"><tr><th>phase</th><th>status</th>'
        f"<th>details (why, for a phase that did not succeed)</th></tr>{rows}</table>"
    )


def _failed_tables_html(tables: pd.DataFrame, run: ValidationRun) -> str:
    """One row per table that did not pass: its verdict, why (the gating rule, the share of rows
    quarantined or the thresholds missed, in order), and its rows quarantined."""
    bad = tables[tables["status"].isin(["FAILED", "ERROR"])].sort_values(
        ["status", "table_name"], ascending=[False, True]
    )
    if bad.empty:
        return '<p class="note" id="failed-tables-none">every judged table passed</p>'
    rows = []
    for _, row in bad.iterrows():
        entry = run.tables.get(str(row["table_name"]), {})
        reasons = [str(r) for r in entry.get("threshold_failures") or []] or [
            str(row.get("why_failed") or "")
        ]
        items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
        rows.append(
            f'<tr data-table="{html.escape(str(row["table_name"]))}">'
            f'<td>{html.escape(str(row["table_name"]))}</td>'
            f'<td style="color:{STATUS_COLORS.get(str(row["status"]), "#000")}"><b>'
            f'{html.escape(str(row["status"]))}</b></td>'
            f'<td><ul style="margin:0;padding-left:16px">{items}</ul></td>'
            f"<td>{html.escape(_quarantine_text(row))}</td></tr>"
        )
    return (
        '<table class="dq" id="failed-tables"><tr><th>table</th><th>verdict</th>'
        "<th>why (gating rule, rows quarantined, thresholds missed)</th>"
        f"<th>rows quarantined</th></tr>{''.join(rows)}</table>"
    )


def render_dashboard(report: MonitoringReport, generated_at: str | None = None) -> str:
    """The dashboard as one HTML document with plotly.js inline (no network needed to open it)."""
    from plotly.offline import get_plotlyjs

    figures = monitoring_figures(report)
    o = report.overall
    run = report.run
    met = report.targets["met"]
    cards = [
        (
            "Tables",
            f"{o['tables']}",
            f"{o['passed']} passed · {o['failed']} failed · "
            f"{o['errors']} error · {o['skipped']} skipped"
            + (f" · {o['no_verdict']} without a verdict" if o["no_verdict"] else ""),
        ),
        (
            "Loads",
            f"{o['loads_ok']} loaded",
            f"{o['loads_failed']} failed · {o['loads_not_promoted']} not promoted · "
            f"{o['never_loaded']} never loaded",
        ),
        (
            "Pass rate",
            _fmt(o["pass_rate"]),
            f"{o['passing']} of {o['judged']} tables passed and reached Silver",
        ),
        ("Avg quality score", _fmt(o["avg_quality_score"]), "% of rules passed"),
        (
            "Rows quarantined",
            "n/a" if o["quarantine_rows"] is None else f"{o['quarantine_rows']:,}",
            (
                "no verdict measured it"
                if o["quarantine_rows"] is None
                else f"{_fmt(o['quarantine_percent'])} of {o['quarantine_rows_of']:,} rows "
                "break a quarantining rule (per table below)"
            ),
        ),
        (
            "Targets",
            f"{int(met.eq(True).sum())} of {len(met)} met",
            f"{int(met.eq(False).sum())} missed · {int(met.isna().sum())} no data",
        ),
        ("Completeness", _fmt(o["completeness"]), "non-null cells"),
        ("Validity", _fmt(o["validity"]), "validity rules"),
        ("Consistency", _fmt(o["consistency"]), "cross-table rules"),
        ("Failed rules", f"{o['failed_rules']:,}", f"{o['critical_failed_rules']} critical"),
    ]
    card_html = "".join(
        f'<div class="card" id="card-{label.lower().replace(" ", "-")}"><div class="v">'
        f'{html.escape(v)}</div><div class="l">'
        f"{html.escape(label)}<br>{html.escape(sub)}</div></div>"
        for label, v, sub in cards
    )
    verdicts = "".join(
        f'<div class="card" data-target="{html.escape(r.metric)}"><div class="v '
        f'{"met" if r.met is True else "missed" if r.met is False else "nodata"}">'
        f'{html.escape(r.verdict)}</div><div class="l">{html.escape(r.label)} '
        f"{_fmt(r.value)} (target ≥ {r.target:g}%)</div></div>"
        for r in report.targets.itertuples()
    )
    sections = [
        ("Pipeline run", _pipeline_html(report.pipeline)),
        ("Why tables did not pass", _failed_tables_html(report.tables, run)),
        (
            "Targets",
            f'<div class="cards">{verdicts}</div>' + _figure_html("targets", figures["targets"]),
        ),
        ("Quality score per table", _figure_html("scores", figures["scores"])),
        ("Dimensions", _figure_html("dimensions", figures["dimensions"])),
        (
            "Failures by rule type and severity",
            _figure_html("failures", figures["failures"]) + _table_html(report.failure_summary),
        ),
        (
            "Freshness",
            f'<p class="note">stale after {report.max_age_hours:g} h without a successful load</p>'
            + _figure_html("freshness", figures["freshness"])
            + _table_html(
                report.freshness[
                    [
                        "table_name",
                        "status",
                        "bronze_modified",
                        "last_load_at",
                        "last_load_status",
                        "newest_record",
                    ]
                ]
            ),
        ),
        ("Run history", _figure_html("history", figures["history"])),
    ]
    if report.modeling:
        saved = report.modeling
        anomalies = pd.DataFrame(saved.get("anomalies") or [])
        if anomalies.empty:
            anomaly_html = (
                '<p class="note" id="anomalies-none">no anomaly in the metric history</p>'
            )
        else:
            anomalies = anomalies.sort_values(["is_latest", "run_index"], ascending=[False, False])
            anomaly_html = (
                f'<p>Tables with an anomaly in their latest run: <b id="anomalous-tables">'
                f"{html.escape(', '.join(saved.get('anomalous_tables') or []) or 'none')}</b></p>"
                + _table_html(
                    anomalies[
                        [
                            "table_name",
                            "column_name",
                            "metric",
                            "run_id",
                            "value",
                            "previous",
                            "robust_z",
                            "reason",
                            "is_latest",
                        ]
                    ],
                    50,
                )
            )
        notes = "".join(
            f'<p class="note">{html.escape(n)}</p>'
            for n in (saved.get("history") or {}).get("notes", [])
        )
        sections += [
            (
                "DQ matrix (table x dimension)",
                _figure_html("matrix", figures["matrix"]),
            ),
            ("Anomalies in the metric history", notes + anomaly_html),
            ("Quality score forecast", _figure_html("forecast", figures["forecast"])),
        ]
    else:
        sections.append(
            (
                "Anomalies and forecast",
                '<p class="note">not computed yet: run notebook 07 or '
                "<code>python -m aims_nb_utils dq-model</code></p>",
            )
        )
    table_cols = [
        "table_name",
        "status",
        "quality_score",
        "weighted_score",
        "row_count",
        "completeness",
        "validity",
        "consistency",
        "quarantine_rows",
        "quarantine_percent",
        "rules_failed",
        "critical_failed",
        "why_failed",
        "load_outcome",
        "load_error",
    ]
    sections.append(("Tables", _table_html(report.tables[table_cols])))
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in report.notes)
    body = "".join(
        f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections
    )
    generated_at = generated_at or state.utc_now()
    subtitle = (
        f"validation run {run.run_id or 'n/a'} at {run.timestamp or 'n/a'} · threshold "
        f"{_fmt(run.threshold, 0)} · {report.history_status.message} · generated {generated_at}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        "<title>AIMS Data Quality Dashboard</title>"
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<header><h1>AIMS Data Quality Dashboard</h1><p>{html.escape(subtitle)}</p></header>"
        f'<main><div class="cards">{card_html}</div>{notes_html}{body}</main></body></html>\n'
    )


def dashboard_path(settings: Settings) -> Path:
    return settings.paths.dashboards / DASHBOARD_FILE_NAME


def write_dashboard(
    settings: Settings, report: MonitoringReport | None = None, path: str | Path | None = None
) -> Path:
    """Render and write the dashboard atomically (a reader never sees half a file)."""
    report = report or build_monitoring_report(settings)
    target = Path(path) if path is not None else dashboard_path(settings)
    return atomic_write_text(target, render_dashboard(report))
