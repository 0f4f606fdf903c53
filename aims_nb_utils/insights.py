"""Quality trends across validation runs, read from the metric history in the state DB.

Validation appends one row per table, rule and column to the state DB on every run; this module
turns that history into the answers a data owner asks after a run: is quality going up or down,
which rules and columns fail most often, what broke since the previous run, which tables are
getting worse. Everything is computed from the recorded history, so with a single run the trend
questions are answered honestly ("1 run recorded; trends need at least 2") instead of with zeros.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import state
from .io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover - typing only
    import plotly.graph_objects as go

    from .settings import Settings

INSIGHTS_FILE_NAME = "dq_insights.json"
MIN_RUNS_FOR_TRENDS = 2

TABLE_COLUMNS = [
    "run_id",
    "run_at",
    "table_name",
    "status",
    "row_count",
    "column_count",
    "rules_total",
    "rules_passed",
    "quality_score",
    "weighted_score",
    "completeness",
    "validity",
    "uniqueness",
    "consistency",
    "integrity",
    "seconds",
]
RULE_COLUMNS = [
    "run_id",
    "run_at",
    "table_name",
    "rule_id",
    "expectation_type",
    "column_name",
    "severity",
    "dimension",
    "success",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
]
COLUMN_COLUMNS = ["run_id", "run_at", "table_name", "column_name", "null_percent", "distinct_count"]
RULE_KEY = ["table_name", "rule_id"]


@dataclass(frozen=True)
class History:
    """The metric history of every validation run, ordered by run time.

    ``runs`` has one row per run (run_id, run_at, run_index 0..n-1, tables); the other frames carry
    the run_index of their run so trends can be computed on run order even when runs are irregular
    in time.
    """

    runs: pd.DataFrame
    tables: pd.DataFrame
    rules: pd.DataFrame
    columns: pd.DataFrame
    source: str = ""

    @property
    def run_count(self) -> int:
        return int(len(self.runs))

    @property
    def latest_run_id(self) -> str | None:
        return None if self.runs.empty else str(self.runs["run_id"].iloc[-1])


@dataclass(frozen=True)
class HistoryStatus:
    """Whether the history is long enough for a question, with the sentence to show a reader."""

    runs: int
    needed: int
    enough: bool
    message: str


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def _state_db(source: Settings | str | Path) -> Path:
    return Path(source) if isinstance(source, (str, Path)) else source.paths.state_db


def empty_history(source: str = "") -> History:
    return History(
        runs=pd.DataFrame(columns=["run_id", "run_at", "run_index", "tables"]),
        tables=pd.DataFrame(columns=[*TABLE_COLUMNS, "run_index"]),
        rules=pd.DataFrame(columns=[*RULE_COLUMNS, "run_index"]),
        columns=pd.DataFrame(columns=[*COLUMN_COLUMNS, "run_index"]),
        source=source,
    )


def load_history(source: Settings | str | Path, max_runs: int | None = None) -> History:
    """Read the metric history of all runs (or the last ``max_runs``) from the state DB.

    A missing state DB is an empty history, not an error: a lake that was never validated simply
    has nothing to trend yet, and reading must not create the database as a side effect.
    """
    db = _state_db(source)
    if not db.is_file():
        return empty_history(str(db))
    tables = _frame(
        state.query(db, f"SELECT {', '.join(TABLE_COLUMNS)} FROM table_metrics"), TABLE_COLUMNS
    )
    rules = _frame(
        state.query(db, f"SELECT {', '.join(RULE_COLUMNS)} FROM rule_metrics"), RULE_COLUMNS
    )
    columns = _frame(
        state.query(db, f"SELECT {', '.join(COLUMN_COLUMNS)} FROM column_metrics"), COLUMN_COLUMNS
    )
    return history_from_frames(tables, rules, columns, max_runs=max_runs, source=str(db))


def history_from_frames(
    tables: pd.DataFrame,
    rules: pd.DataFrame | None = None,
    columns: pd.DataFrame | None = None,
    max_runs: int | None = None,
    source: str = "",
) -> History:
    """Build a :class:`History` from metric frames shaped like the state DB tables.

    Runs are ordered by their earliest ``run_at`` (then run id, which sorts by time too), so the
    order is the order in which the lake was validated.
    """
    # Missing columns become empty ones, so a partial frame (a test, an old DB) still works.
    tables = tables.reindex(columns=TABLE_COLUMNS)
    rules = (pd.DataFrame() if rules is None else rules).reindex(columns=RULE_COLUMNS)
    columns = (pd.DataFrame() if columns is None else columns).reindex(columns=COLUMN_COLUMNS)
    present = [f[["run_id", "run_at"]] for f in (tables, rules, columns) if not f.empty]
    if not present:
        return empty_history(source)
    stamps = pd.concat(present, ignore_index=True)
    runs = (
        stamps.assign(run_at=stamps["run_at"].astype(str))
        .groupby("run_id", as_index=False)["run_at"]
        .min()
        .sort_values(["run_at", "run_id"], kind="stable")
        .reset_index(drop=True)
    )
    if max_runs is not None:
        runs = runs.tail(max_runs).reset_index(drop=True)
    runs["run_index"] = np.arange(len(runs), dtype="int64")
    counts = tables.groupby("run_id")["table_name"].nunique()
    runs["tables"] = runs["run_id"].map(counts).fillna(0).astype("int64")
    index = dict(zip(runs["run_id"], runs["run_index"], strict=True))

    def attach(frame: pd.DataFrame, sort: list[str]) -> pd.DataFrame:
        frame = frame[frame["run_id"].isin(index)].copy()
        frame["run_index"] = frame["run_id"].map(index).astype("int64")
        return frame.sort_values(["run_index", *sort], kind="stable").reset_index(drop=True)

    tables = attach(tables, ["table_name"])
    for col in ("quality_score", "weighted_score", "row_count", "rules_total", "rules_passed"):
        tables[col] = pd.to_numeric(tables[col], errors="coerce")
    rules = attach(rules, ["table_name", "rule_id"])
    rules["success"] = pd.to_numeric(rules["success"], errors="coerce").fillna(0).astype("int64")
    for col in ("unexpected_count", "unexpected_percent", "element_count"):
        rules[col] = pd.to_numeric(rules[col], errors="coerce")
    columns = attach(columns, ["table_name", "column_name"])
    columns["null_percent"] = pd.to_numeric(columns["null_percent"], errors="coerce")
    return History(runs=runs, tables=tables, rules=rules, columns=columns, source=source)


def history_status(
    history: History, needed: int = MIN_RUNS_FOR_TRENDS, what: str = "trends"
) -> HistoryStatus:
    """Say how many runs are recorded and whether that is enough for ``what``."""
    runs = history.run_count
    noun = "run" if runs == 1 else "runs"
    if runs >= needed:
        message = f"{runs} {noun} recorded; {what} use all of them"
    elif runs == 0:
        message = (
            f"no validation run recorded yet; {what} need at least {needed} (run validation first)"
        )
    else:
        message = f"{runs} {noun} recorded; {what} need at least {needed}: not enough history yet"
    return HistoryStatus(runs=runs, needed=needed, enough=runs >= needed, message=message)


def run_summary(history: History) -> pd.DataFrame:
    """One row per run: tables validated, pass rate and mean quality score of that run.

    Pass rate counts PASSED among tables that got a verdict (SKIPPED tables, e.g. empty ones, are
    left out so that an empty export does not look like a failure).
    """
    columns = [
        "run_id",
        "run_at",
        "run_index",
        "tables",
        "passed",
        "failed",
        "errors",
        "skipped",
        "pass_rate",
        "avg_quality_score",
    ]
    if history.tables.empty:
        return pd.DataFrame(columns=columns)
    t = history.tables
    status = t["status"].astype(str).str.upper()
    grouped = (
        t.assign(
            passed=status.eq("PASSED"),
            failed=status.eq("FAILED"),
            errors=status.eq("ERROR"),
            skipped=status.eq("SKIPPED"),
            scored=t["quality_score"].where(~status.isin(["SKIPPED", "ERROR"])),
        )
        .groupby("run_index")
        .agg(
            passed=("passed", "sum"),
            failed=("failed", "sum"),
            errors=("errors", "sum"),
            skipped=("skipped", "sum"),
            avg_quality_score=("scored", "mean"),
        )
        .reset_index()
    )
    out = history.runs.merge(grouped, on="run_index", how="left")
    for col in ("passed", "failed", "errors", "skipped"):
        out[col] = out[col].fillna(0).astype("int64")
    judged = out["passed"] + out["failed"] + out["errors"]
    out["pass_rate"] = (100.0 * out["passed"] / judged.where(judged > 0)).astype("float64")
    return out[columns]


def score_trends(history: History) -> pd.DataFrame:
    """Quality score of each table in each run (the series the trend chart draws)."""
    cols = [
        "run_index",
        "run_id",
        "run_at",
        "table_name",
        "status",
        "quality_score",
        "weighted_score",
    ]
    return history.tables[cols].copy()


def most_failing_rules(history: History, top: int | None = 10) -> pd.DataFrame:
    """Rules ranked by how many runs they failed in, then by how many rows they rejected last.

    ``fail_rate`` is the share of the runs that evaluated the rule in which it failed, so a rule
    added recently is not ranked below an old rule that fails less often.
    """
    columns = [
        "table_name",
        "rule_id",
        "expectation_type",
        "column_name",
        "severity",
        "dimension",
        "runs_failed",
        "runs_evaluated",
        "fail_rate",
        "last_unexpected_count",
        "last_unexpected_percent",
        "failing_now",
    ]
    rules = history.rules
    if rules.empty:
        return pd.DataFrame(columns=columns)
    last = rules.sort_values("run_index").groupby(RULE_KEY, as_index=False).tail(1)
    last = last.set_index(RULE_KEY)
    agg = rules.groupby(RULE_KEY).agg(
        runs_evaluated=("success", "size"), runs_passed=("success", "sum")
    )
    agg["runs_failed"] = agg["runs_evaluated"] - agg["runs_passed"]
    agg = agg[agg["runs_failed"] > 0]
    if agg.empty:
        return pd.DataFrame(columns=columns)
    out = agg.join(
        last[
            [
                "expectation_type",
                "column_name",
                "severity",
                "dimension",
                "success",
                "unexpected_count",
                "unexpected_percent",
            ]
        ]
    )
    out["fail_rate"] = 100.0 * out["runs_failed"] / out["runs_evaluated"]
    out["failing_now"] = out["success"].eq(0)
    out = out.rename(
        columns={
            "unexpected_count": "last_unexpected_count",
            "unexpected_percent": "last_unexpected_percent",
        }
    )
    out = out.reset_index().sort_values(
        ["runs_failed", "fail_rate", "last_unexpected_count", "table_name", "rule_id"],
        ascending=[False, False, False, True, True],
        kind="stable",
    )
    out = out[columns].reset_index(drop=True)
    return out if top is None else out.head(top)


def most_failing_columns(history: History, top: int | None = 10) -> pd.DataFrame:
    """Columns ranked by failed rule evaluations over all runs (a column with three broken rules in
    two runs counts six), with the rules that failed on it in the latest run."""
    columns = [
        "table_name",
        "column_name",
        "failed_evaluations",
        "runs_with_failures",
        "rules_failing_now",
        "max_unexpected_percent_now",
    ]
    rules = history.rules
    if rules.empty:
        return pd.DataFrame(columns=columns)
    failed = rules[(rules["success"] == 0) & rules["column_name"].notna()]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    key = ["table_name", "column_name"]
    agg = failed.groupby(key).agg(
        failed_evaluations=("rule_id", "size"), runs_with_failures=("run_index", "nunique")
    )
    latest_per_table = rules.groupby("table_name")["run_index"].max()
    now = failed[failed["run_index"].eq(failed["table_name"].map(latest_per_table))]
    now_agg = now.groupby(key).agg(
        rules_failing_now=("rule_id", lambda s: ", ".join(sorted(set(s)))),
        max_unexpected_percent_now=("unexpected_percent", "max"),
    )
    out = agg.join(now_agg).reset_index()
    out["rules_failing_now"] = out["rules_failing_now"].fillna("")
    out = out.sort_values(
        ["failed_evaluations", "runs_with_failures", "max_unexpected_percent_now", "table_name"],
        ascending=[False, False, False, True],
        kind="stable",
        na_position="last",
    )
    out = out[columns].reset_index(drop=True)
    return out if top is None else out.head(top)


def _latest_two_runs_per_table(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Latest and previous run index in which each table was evaluated (previous may be missing)."""
    runs = frame[["table_name", "run_index"]].drop_duplicates()
    latest = runs.groupby("table_name")["run_index"].max()
    earlier = runs[runs["run_index"] < runs["table_name"].map(latest)]
    return latest, earlier.groupby("table_name")["run_index"].max()


def _rule_changes(history: History, now_failing: bool) -> pd.DataFrame:
    columns = [
        "table_name",
        "rule_id",
        "expectation_type",
        "column_name",
        "severity",
        "dimension",
        "change",
        "previous_run_id",
        "run_id",
        "unexpected_count",
        "unexpected_percent",
    ]
    rules = history.rules
    if rules.empty:
        return pd.DataFrame(columns=columns)
    latest, previous = _latest_two_runs_per_table(rules)
    if previous.empty:
        return pd.DataFrame(columns=columns)
    cur = rules[
        rules["run_index"].eq(rules["table_name"].map(latest))
        & rules["table_name"].isin(previous.index)
    ]
    prev = rules[rules["run_index"].eq(rules["table_name"].map(previous))]
    prev = prev[[*RULE_KEY, "success"]].rename(columns={"success": "previous_success"})
    merged = cur.merge(prev, on=RULE_KEY, how="left")
    if now_failing:
        merged = merged[merged["success"].eq(0) & ~merged["previous_success"].eq(0)].copy()
        merged["change"] = np.where(
            merged["previous_success"].eq(1),
            "regressed (passed in previous run)",
            "new rule (not evaluated in previous run)",
        )
    else:
        merged = merged[merged["success"].eq(1) & merged["previous_success"].eq(0)].copy()
        merged["change"] = "resolved (failed in previous run)"
    run_ids = history.runs.set_index("run_index")["run_id"]
    merged["previous_run_id"] = merged["table_name"].map(previous).map(run_ids)
    merged = merged.sort_values(["table_name", "rule_id"], kind="stable")
    return merged[columns].reset_index(drop=True)


def new_failures(history: History) -> pd.DataFrame:
    """Rules failing in a table's latest run that passed, or did not exist, in its previous run.

    Each table is compared with its own previous run, so a run that validated only some tables
    does not make every other table look new. Tables validated only once have no previous run and
    are not reported here (see :func:`history_status`).
    """
    return _rule_changes(history, now_failing=True)


def resolved_failures(history: History) -> pd.DataFrame:
    """Rules that failed in a table's previous run and pass in its latest run."""
    return _rule_changes(history, now_failing=False)


def worsening_tables(history: History, window: int = 5, min_drop: float = 0.0) -> pd.DataFrame:
    """Tables whose quality score fell since their previous run, with the slope over ``window`` runs.

    ``worse`` is true when the latest score is more than ``min_drop`` points below the previous one;
    the least-squares slope (points per run) over the last ``window`` runs shows whether the drop
    is a one-off or a slide. Sorted with the largest drop first.
    """
    columns = [
        "table_name",
        "runs",
        "previous_score",
        "latest_score",
        "delta",
        "slope_per_run",
        "worse",
        "latest_status",
    ]
    t = history.tables.dropna(subset=["quality_score"])
    if t.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for table, group in t.sort_values("run_index").groupby("table_name", sort=True):
        if len(group) < 2:
            continue
        scores = group["quality_score"].to_numpy(dtype="float64")
        tail = scores[-window:]
        slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) >= 2 else np.nan
        delta = float(scores[-1] - scores[-2])
        rows.append(
            {
                "table_name": table,
                "runs": len(group),
                "previous_score": float(scores[-2]),
                "latest_score": float(scores[-1]),
                "delta": delta,
                "slope_per_run": slope,
                "worse": delta < -min_drop,
                "latest_status": str(group["status"].iloc[-1]),
            }
        )
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["delta", "table_name"], kind="stable").reset_index(drop=True)


# --- figures -----------------------------------------------------------------------------------


def figure_score_trends(history: History, tables: list[str] | None = None) -> go.Figure:
    """Quality score per table across runs (one line per table; legend click hides a table)."""
    import plotly.graph_objects as go

    trends = score_trends(history)
    if tables is not None:
        trends = trends[trends["table_name"].isin(tables)]
    fig = go.Figure()
    for table, group in trends.groupby("table_name", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["run_index"].tolist(),
                y=group["quality_score"].tolist(),
                mode="lines+markers",
                name=str(table),
                customdata=group[["run_id", "status"]].astype(str).values.tolist(),
                hovertemplate="%{fullData.name}<br>run %{customdata[0]}<br>score %{y:.2f}"
                "<br>%{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Quality score per table across runs",
        xaxis_title="run (0 = first recorded)",
        yaxis_title="quality score (%)",
        height=480,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    fig.update_xaxes(dtick=1)
    return fig


def figure_most_failing_rules(frame: pd.DataFrame) -> go.Figure:
    """Horizontal bars: runs each rule failed in (label table.rule)."""
    import plotly.graph_objects as go

    data = frame.iloc[::-1]
    labels = (data["table_name"].astype(str) + " · " + data["rule_id"].astype(str)).tolist()
    fig = go.Figure(
        go.Bar(
            x=data["runs_failed"].tolist(),
            y=labels,
            orientation="h",
            customdata=data[["fail_rate", "last_unexpected_count"]].values.tolist(),
            hovertemplate="%{y}<br>failed in %{x} runs (%{customdata[0]:.0f}%)"
            "<br>last run: %{customdata[1]} unexpected<extra></extra>",
        )
    )
    fig.update_layout(
        title="Most failing rules (runs failed)",
        height=max(300, 28 * len(labels) + 100),
        margin={"l": 20, "r": 20, "t": 50, "b": 40},
        yaxis={"automargin": True},
    )
    return fig


# --- report -------------------------------------------------------------------------------------


@dataclass
class InsightsReport:
    """Everything notebook 06 shows, computed once from the history."""

    status: HistoryStatus
    runs: pd.DataFrame
    trends: pd.DataFrame
    failing_rules: pd.DataFrame
    failing_columns: pd.DataFrame
    new_failures: pd.DataFrame
    resolved: pd.DataFrame
    worsening: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """Key figures for the run log (record_phase_metrics)."""
        return {
            "runs_recorded": self.status.runs,
            "enough_history": self.status.enough,
            "new_failures": int(len(self.new_failures)) if self.status.enough else None,
            "resolved_failures": int(len(self.resolved)) if self.status.enough else None,
            "tables_getting_worse": (
                int(self.worsening["worse"].sum()) if self.status.enough else None
            ),
            "rules_failing": int(len(self.failing_rules)),
        }


def _name_list(names: set[str], limit: int = 10) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _uncompared_tables(history: History, compared: set[str]) -> list[str]:
    """Say which tables have no score trend, and why (never scored vs. scored once)."""
    t = history.tables
    scored = t.dropna(subset=["quality_score"]).groupby("table_name")["run_index"].nunique()
    never = set(t["table_name"]) - set(scored.index)
    once = set(scored[scored < 2].index) - compared
    notes = []
    if never:
        statuses = "/".join(sorted(set(t[t["table_name"].isin(never)]["status"].astype(str))))
        notes.append(
            f"{len(never)} table(s) have no quality score in any run ({statuses}, e.g. empty "
            f"exports): {_name_list(never)}"
        )
    if once:
        notes.append(
            f"{len(once)} table(s) were scored in only one run, nothing to compare yet: "
            f"{_name_list(once)}"
        )
    return notes


def build_insights(
    source: Settings | History | str | Path,
    top: int = 10,
    window: int = 5,
    min_drop: float = 0.0,
    max_runs: int | None = None,
) -> InsightsReport:
    """Compute every insight from ``source``: settings or a state DB path (read), or a History."""
    history = source if isinstance(source, History) else load_history(source, max_runs=max_runs)
    status = history_status(history)
    notes = [status.message]
    new = new_failures(history)
    worse = worsening_tables(history, window=window, min_drop=min_drop)
    if status.enough and not history.tables.empty:
        notes += _uncompared_tables(history, set(worse["table_name"]))
    return InsightsReport(
        status=status,
        runs=run_summary(history),
        trends=score_trends(history),
        failing_rules=most_failing_rules(history, top=top),
        failing_columns=most_failing_columns(history, top=top),
        new_failures=new,
        resolved=resolved_failures(history),
        worsening=worse,
        notes=notes,
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def save_insights(report: InsightsReport, settings: Settings) -> Path:
    """Write the insights as JSON under the reports folder (atomically) for dashboards and logs."""
    payload = {
        "generated_at": state.utc_now(),
        "history": {
            "runs": report.status.runs,
            "enough": report.status.enough,
            "message": report.status.message,
        },
        "notes": report.notes,
        "runs": _records(report.runs),
        "most_failing_rules": _records(report.failing_rules),
        "most_failing_columns": _records(report.failing_columns),
        "new_failures": _records(report.new_failures),
        "resolved_failures": _records(report.resolved),
        "worsening_tables": _records(report.worsening),
    }
    target = settings.paths.reports / INSIGHTS_FILE_NAME
    return atomic_write_text(target, json.dumps(payload, indent=2))
