"""The DQ matrix, anomaly detection on the metric history, and a forecast of each table's score.

Rules say what a good table looks like; they do not notice that a table which always had 2.2M rows
arrived with 40k, or that a column which was 1% null is suddenly 60% null while still inside a loose
null rule. Like Deequ's anomaly checks, each new metric value is compared with its own history:

* a robust z-score, ``0.6745 * (x - median) / MAD`` over the previous runs (Iglewicz and Hoaglin's
  modified z-score; median and MAD are not dragged along by the outliers they are meant to find),
  with a floor on the MAD so a perfectly flat history does not turn a rounding difference into an
  infinite score;
* a rate-of-change check against the previous run: row counts as a ratio (Deequ's
  RelativeRateOfChangeStrategy), null rates as an absolute change in percentage points
  (AbsoluteChangeStrategy; ratios of small null rates are meaningless).

The forecast is a least-squares linear trend on run order with an ordinary prediction interval
from the residuals, clipped to 0-100. It is deliberately simple and says so; with fewer runs than
``min_runs`` it returns no number and a sentence instead.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from . import state
from .errors import AimsError
from .insights import History, HistoryStatus, history_status, load_history
from .io import atomic_write_text, write_parquet_atomic
from .rules import DIMENSIONS

if TYPE_CHECKING:  # pragma: no cover - typing only
    import plotly.graph_objects as go

    from .settings import Settings

ANOMALIES_FILE_NAME = "dq_anomalies.json"
ANOMALIES_PARQUET_NAME = "dq_anomalies.parquet"
FORECAST_PARQUET_NAME = "dq_forecast.parquet"
MATRIX_PARQUET_NAME = "dq_matrix.parquet"
MAD_TO_SIGMA = 0.6745  # MAD of a normal distribution is 0.6745 sigma

SERIES_KEY = ["table_name", "column_name", "metric"]
POINT_COLUMNS = [
    "table_name",
    "column_name",
    "metric",
    "run_index",
    "run_id",
    "run_at",
    "value",
    "previous",
    "baseline_median",
    "baseline_mad",
    "robust_z",
    "change",
    "z_flag",
    "rate_flag",
    "is_anomaly",
    "is_latest",
    "reason",
]
FORECAST_COLUMNS = [
    "table_name",
    "runs",
    "enough",
    "step",
    "run_index",
    "forecast",
    "lower",
    "upper",
    "slope_per_run",
    "residual_std",
    "method",
    "note",
]


class ModelingError(AimsError):
    """A modeling parameter is out of range; names the parameter and a sensible value."""

    def __init__(self, parameter: str, value: object, problem: str, hint: str) -> None:
        self.parameter = parameter
        self.value = value
        super().__init__(f"modeling parameter {parameter}={value!r}: {problem}", hint=hint)


@dataclass(frozen=True)
class AnomalyConfig:
    """Thresholds of the anomaly checks (defaults follow the literature and Deequ's examples)."""

    z_threshold: float = 3.5  # Iglewicz & Hoaglin: |modified z| > 3.5 is an outlier
    min_history: int = 3  # previous runs needed before the robust z-score is computed
    window: int = 20  # previous runs in the baseline
    row_rate_bounds: tuple[float, float] = (0.5, 2.0)  # allowed current/previous row-count ratio
    max_null_change: float = 5.0  # allowed change of a null rate between runs, in points
    null_mad_floor: float = 0.5  # points; MAD below this is treated as this
    row_mad_floor_fraction: float = 0.01  # of the baseline median row count

    def __post_init__(self) -> None:
        if self.z_threshold <= 0:
            raise ModelingError("z_threshold", self.z_threshold, "must be positive", "use 3.5")
        if self.min_history < 2:
            raise ModelingError(
                "min_history",
                self.min_history,
                "a median of fewer than 2 runs is no baseline",
                "use 3 or more",
            )
        if self.window < self.min_history:
            raise ModelingError(
                "window",
                self.window,
                f"must be at least min_history={self.min_history}",
                "use 20",
            )
        low, high = self.row_rate_bounds
        if not 0 <= low < 1 < high:
            raise ModelingError(
                "row_rate_bounds",
                self.row_rate_bounds,
                "needs lower < 1 < upper (ratios of current to previous row count)",
                "use (0.5, 2.0)",
            )
        if self.max_null_change <= 0:
            raise ModelingError(
                "max_null_change",
                self.max_null_change,
                "must be positive (percentage points)",
                "use 5",
            )


def robust_zscore(
    value: float, baseline: np.ndarray, mad_floor: float = 0.0
) -> tuple[float, float, float]:
    """Modified z-score of ``value`` against ``baseline``: (z, median, MAD used).

    ``mad_floor`` keeps a constant baseline from producing an infinite score for a tiny change;
    with a zero floor and a constant baseline any difference is infinitely unusual, which is true
    but not useful.
    """
    base = np.asarray(baseline, dtype="float64")
    base = base[~np.isnan(base)]
    if base.size == 0 or math.isnan(value):
        return math.nan, math.nan, math.nan
    median = float(np.median(base))
    mad = max(float(np.median(np.abs(base - median))), float(mad_floor))
    diff = value - median
    if mad == 0:
        return (0.0 if diff == 0 else math.copysign(math.inf, diff)), median, mad
    return MAD_TO_SIGMA * diff / mad, median, mad


def metric_series(history: History) -> pd.DataFrame:
    """The monitored series in long form: row counts and null rates per table, null rate per column.

    ``table_null_percent`` is the mean null % over a table's columns, i.e. the share of null cells.
    """
    cols = [*SERIES_KEY, "run_index", "run_id", "run_at", "value"]
    parts = []
    t = history.tables
    if not t.empty:
        rows = t[["table_name", "run_index", "run_id", "run_at", "row_count"]].rename(
            columns={"row_count": "value"}
        )
        parts.append(rows.assign(column_name=None, metric="row_count"))
    c = history.columns.dropna(subset=["null_percent"])
    if not c.empty:
        table_null = (
            c.groupby(["table_name", "run_index", "run_id", "run_at"], as_index=False)[
                "null_percent"
            ]
            .mean()
            .rename(columns={"null_percent": "value"})
        )
        parts.append(table_null.assign(column_name=None, metric="table_null_percent"))
        col_null = c[["table_name", "column_name", "run_index", "run_id", "run_at", "null_percent"]]
        parts.append(
            col_null.rename(columns={"null_percent": "value"}).assign(metric="null_percent")
        )
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat([p[cols] for p in parts], ignore_index=True)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    return out.sort_values(
        [*SERIES_KEY, "run_index"], kind="stable", na_position="first"
    ).reset_index(drop=True)


def _rate_of_change(
    values: np.ndarray, previous: np.ndarray, is_rows: np.ndarray, config: AnomalyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Change from the previous point (row counts: ratio; null rates: points) and its flag."""
    low, high = config.row_rate_bounds
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(previous == 0, np.where(values == 0, 1.0, np.inf), values / previous)
    change = np.where(is_rows, ratio, values - previous)
    known = ~np.isnan(change)
    rows_flag = is_rows & known & ((change < low) | (change > high))
    null_flag = ~is_rows & known & (np.abs(change) > config.max_null_change)
    return change, rows_flag | null_flag


def _reason(metric: str, point: dict[str, Any], config: AnomalyConfig) -> str:
    parts = []
    if point["z_flag"]:
        parts.append(
            f"robust z {point['robust_z']:+.1f} (|z| > {config.z_threshold:g}; baseline median "
            f"{point['baseline_median']:,.2f}, MAD {point['baseline_mad']:,.2f})"
        )
    if point["rate_flag"]:
        value, previous, change = point["value"], point["previous"], point["change"]
        if metric == "row_count":
            low, high = config.row_rate_bounds
            parts.append(
                f"rows {previous:,.0f} -> {value:,.0f} (x{change:.2f}, allowed {low:g}-{high:g})"
            )
        else:
            parts.append(
                f"null rate {previous:.2f}% -> {value:.2f}% ({change:+.2f} points, allowed "
                f"±{config.max_null_change:g})"
            )
    return "; ".join(parts)


def score_series(series: pd.DataFrame, config: AnomalyConfig | None = None) -> pd.DataFrame:
    """Evaluate every point of every series against the points before it.

    Each point gets its robust z-score against the previous ``window`` points of its series (once
    ``min_history`` earlier points exist) and its change from the previous point; ``is_anomaly``
    is true when either check fails. Evaluating every point, not only the newest, shows when a
    metric jumped as well as whether it is jumping now.

    Vectorised across series: the points are laid out as a series x position matrix and each
    position is scored for all series at once (a lake has ~1,200 column series; per-point Python
    took 9 s for 30 runs, this takes well under one).
    """
    config = config or AnomalyConfig()
    if series.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    data = series.sort_values(
        [*SERIES_KEY, "run_index"], kind="stable", na_position="first"
    ).reset_index(drop=True)
    groups = data.groupby(SERIES_KEY, sort=False, dropna=False)
    sid = groups.ngroup().to_numpy()
    pos = groups.cumcount().to_numpy()
    values = data["value"].to_numpy(dtype="float64")
    is_rows = data["metric"].eq("row_count").to_numpy()
    matrix = np.full((sid.max() + 1, pos.max() + 1), np.nan)
    matrix[sid, pos] = values

    previous = np.full(len(data), np.nan)
    later = pos > 0
    previous[later] = matrix[sid[later], pos[later] - 1]
    median = np.full(len(data), np.nan)
    mad = np.full(len(data), np.nan)
    for p in range(config.min_history, matrix.shape[1]):
        at = np.flatnonzero(pos == p)
        base = matrix[sid[at], max(0, p - config.window) : p]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN baseline -> NaN, wanted
            med = np.nanmedian(base, axis=1)
            median[at] = med
            mad[at] = np.nanmedian(np.abs(base - med[:, None]), axis=1)
    floor = np.where(is_rows, config.row_mad_floor_fraction * np.abs(median), config.null_mad_floor)
    mad_used = np.where(np.isnan(mad), np.nan, np.maximum(mad, floor))
    diff = values - median
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(
            mad_used > 0,
            MAD_TO_SIGMA * diff / mad_used,
            np.where(diff == 0, 0.0, np.sign(diff) * np.inf),
        )
    z[np.isnan(diff) | np.isnan(mad_used)] = np.nan
    z_flag = ~np.isnan(z) & (np.abs(z) > config.z_threshold)
    change, rate_flag = _rate_of_change(values, previous, is_rows, config)

    latest = data.groupby("table_name")["run_index"].transform("max").to_numpy()
    out = pd.DataFrame(
        {
            "table_name": data["table_name"].to_numpy(),
            "column_name": data["column_name"].to_numpy(dtype=object),
            "metric": data["metric"].to_numpy(),
            "run_index": data["run_index"].to_numpy(dtype="int64"),
            "run_id": data["run_id"].to_numpy(),
            "run_at": data["run_at"].to_numpy(),
            "value": values,
            "previous": previous,
            "baseline_median": median,
            "baseline_mad": mad_used,
            "robust_z": z,
            "change": change,
            "z_flag": z_flag,
            "rate_flag": rate_flag,
            "is_anomaly": z_flag | rate_flag,
            "is_latest": data["run_index"].to_numpy() == latest,
            "reason": "",
        },
        columns=POINT_COLUMNS,
    )
    out["column_name"] = out["column_name"].where(out["column_name"].notna(), None)
    flagged = np.flatnonzero(out["is_anomaly"].to_numpy())
    if len(flagged):
        records = out.iloc[flagged].to_dict("records")
        out.loc[out.index[flagged], "reason"] = [_reason(r["metric"], r, config) for r in records]
    return out


def detect_anomalies(
    source: History | pd.DataFrame, config: AnomalyConfig | None = None, latest_only: bool = False
) -> pd.DataFrame:
    """Anomalous points of the metric history (a History or a frame from :func:`metric_series`)."""
    series = metric_series(source) if isinstance(source, History) else source
    points = score_series(series, config)
    flagged = points[points["is_anomaly"].astype(bool)]
    if latest_only:
        flagged = flagged[flagged["is_latest"].astype(bool)]
    return flagged.reset_index(drop=True)


def anomalous_tables(anomalies: pd.DataFrame, latest_only: bool = True) -> list[str]:
    """Tables with at least one anomalous metric (in their latest run by default)."""
    if anomalies.empty:
        return []
    frame = anomalies[anomalies["is_latest"].astype(bool)] if latest_only else anomalies
    return sorted(frame["table_name"].astype(str).unique())


def _t_quantile(probability: float, dof: int) -> float:
    from scipy.stats import t  # scipy ships with great-expectations; imported only here

    return float(t.ppf(probability, dof))


def forecast_scores(
    history: History,
    horizon: int = 3,
    min_runs: int = 4,
    level: float = 0.95,
    metric: str = "quality_score",
) -> pd.DataFrame:
    """Linear-trend forecast of each table's ``metric`` for the next ``horizon`` runs.

    The interval is the ordinary least-squares prediction interval,
    ``t * s * sqrt(1 + 1/n + (x0 - mean(x))^2 / Sxx)``, which widens with distance from the data
    and with the scatter of the residuals. Tables with fewer than ``min_runs`` runs get one row
    with ``enough`` false and a note instead of a number.
    """
    if horizon < 1:
        raise ModelingError("horizon", horizon, "must be at least 1 run ahead", "use 3")
    if min_runs < 3:
        raise ModelingError(
            "min_runs", min_runs, "a trend line with an interval needs at least 3 runs", "use 4"
        )
    if not 0 < level < 1:
        raise ModelingError("level", level, "is a probability (0-1)", "use 0.95")
    t = history.tables.dropna(subset=[metric])
    rows: list[dict[str, Any]] = []
    for table, group in t.sort_values("run_index").groupby("table_name", sort=True):
        n = len(group)
        if n < min_runs:
            rows.append(
                {
                    "table_name": table,
                    "runs": n,
                    "enough": False,
                    "method": "linear trend (OLS on run order)",
                    "note": f"{n} run{'s' if n != 1 else ''} recorded; a forecast needs at least "
                    f"{min_runs}",
                }
            )
            continue
        x = group["run_index"].to_numpy(dtype="float64")
        y = group[metric].to_numpy(dtype="float64")
        slope, intercept = np.polyfit(x, y, 1)
        residuals = y - (slope * x + intercept)
        dof = n - 2
        s = float(np.sqrt(np.sum(residuals**2) / dof))
        sxx = float(np.sum((x - x.mean()) ** 2))
        tq = _t_quantile(0.5 + level / 2, dof)
        last = int(history.runs["run_index"].max())
        for step in range(1, horizon + 1):
            x0 = last + step
            yhat = float(slope * x0 + intercept)
            half = tq * s * math.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx)
            rows.append(
                {
                    "table_name": table,
                    "runs": n,
                    "enough": True,
                    "step": step,
                    "run_index": x0,
                    "forecast": min(100.0, max(0.0, yhat)),
                    "lower": min(100.0, max(0.0, yhat - half)),
                    "upper": min(100.0, max(0.0, yhat + half)),
                    "slope_per_run": float(slope),
                    "residual_std": s,
                    "method": "linear trend (OLS on run order)",
                    "note": f"{level:.0%} prediction interval from {n} runs",
                }
            )
    out = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    if not out.empty:
        out["enough"] = out["enough"].astype(bool)
    return out


def latest_dimension_scores(history: History) -> pd.DataFrame:
    """Each table's DQ-dimension scores in the latest run that validated it."""
    t = history.tables
    if t.empty:
        return pd.DataFrame(columns=["table_name", "run_id", "status", *DIMENSIONS])
    latest = t.sort_values("run_index").groupby("table_name", as_index=False).tail(1)
    return latest[["table_name", "run_id", "status", *DIMENSIONS]].reset_index(drop=True)


def dq_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """Table x dimension matrix (0-100, NaN where a table has no rule of that dimension).

    ``scores`` needs ``table_name`` and the dimension columns (from :func:`latest_dimension_scores`
    or ``reports.table_metrics``). Tables without any score (skipped empty tables, errors) are left
    out. Tables are sorted worst first by their mean dimension score so the top of the heat-map is
    where to look.
    """
    if scores.empty:
        return pd.DataFrame(columns=list(DIMENSIONS), index=pd.Index([], name="table_name"))
    matrix = scores.set_index("table_name")[list(DIMENSIONS)].apply(pd.to_numeric, errors="coerce")
    matrix = matrix.dropna(how="all")  # skipped (empty) or unreadable tables have no scores
    order = matrix.mean(axis=1, skipna=True).sort_values(kind="stable").index
    return matrix.loc[order].astype("float64")


# --- figures -----------------------------------------------------------------------------------


def figure_dq_matrix(matrix: pd.DataFrame) -> go.Figure:
    """Heat-map of the matrix; blank cells mean the table has no rule of that dimension."""
    import plotly.graph_objects as go

    z = matrix.to_numpy(dtype="float64")
    text = [["" if math.isnan(v) else f"{v:.0f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=[[None if math.isnan(v) else v for v in row] for row in z],
            x=list(matrix.columns),
            y=[str(i) for i in matrix.index],
            text=text,
            texttemplate="%{text}",
            zmin=0,
            zmax=100,
            colorscale="RdYlGn",
            colorbar={"title": "score %"},
            hovertemplate="%{y}<br>%{x}: %{z:.1f}%<extra></extra>",
        )
    )
    fig.update_layout(
        title="DQ matrix: table x dimension (worst tables first)",
        height=max(320, 18 * len(matrix) + 120),
        margin={"l": 20, "r": 20, "t": 50, "b": 40},
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return fig


def figure_metric_series(
    points: pd.DataFrame, metric: str, tables: list[str] | None = None
) -> go.Figure:
    """One metric over runs, per table, with anomalous points marked by a red ring."""
    import plotly.graph_objects as go

    data = points[(points["metric"] == metric) & points["column_name"].isna()]
    if tables is not None:
        data = data[data["table_name"].isin(tables)]
    fig = go.Figure()
    for table, group in data.groupby("table_name", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["run_index"].tolist(),
                y=group["value"].tolist(),
                mode="lines+markers",
                name=str(table),
            )
        )
    flagged = data[data["is_anomaly"].astype(bool)]
    if not flagged.empty:
        fig.add_trace(
            go.Scatter(
                x=flagged["run_index"].tolist(),
                y=flagged["value"].tolist(),
                mode="markers",
                name="anomaly",
                marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"color": "red", "width": 2}},
                text=(flagged["table_name"] + ": " + flagged["reason"]).tolist(),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{metric} per run (red rings: anomalies)",
        xaxis_title="run",
        yaxis_title=metric,
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    fig.update_xaxes(dtick=1)
    return fig


def figure_forecast(
    history: History, forecast: pd.DataFrame, tables: list[str] | None = None
) -> go.Figure:
    """Observed scores and the forecast with its interval band for tables that have one."""
    import plotly.graph_objects as go

    fc = forecast[forecast["enough"].astype(bool)] if not forecast.empty else forecast
    names = sorted(fc["table_name"].unique()) if not fc.empty else []
    if tables is not None:
        names = [n for n in names if n in tables]
    from plotly.colors import qualitative

    palette = qualitative.Plotly
    fig = go.Figure()
    for i, table in enumerate(names):
        color = palette[i % len(palette)]
        seen = history.tables[history.tables["table_name"] == table].sort_values("run_index")
        ahead = fc[fc["table_name"] == table].sort_values("run_index")
        band_x = ahead["run_index"].tolist() + ahead["run_index"].tolist()[::-1]
        band_y = ahead["upper"].tolist() + ahead["lower"].tolist()[::-1]
        fig.add_trace(
            go.Scatter(
                x=band_x,
                y=band_y,
                fill="toself",
                mode="lines",
                line={"width": 0, "color": color},
                opacity=0.25,
                name=f"{table} interval",
                legendgroup=table,
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=seen["run_index"].tolist(),
                y=seen["quality_score"].tolist(),
                mode="lines+markers",
                name=table,
                legendgroup=table,
                line={"color": color},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=ahead["run_index"].tolist(),
                y=ahead["forecast"].tolist(),
                mode="lines+markers",
                line={"dash": "dash", "color": color},
                name=f"{table} forecast",
                legendgroup=table,
                showlegend=False,
            )
        )
    fig.update_layout(
        title="Quality score forecast (dashed) with prediction interval",
        xaxis_title="run",
        yaxis_title="quality score (%)",
        height=440,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


# --- report -------------------------------------------------------------------------------------


@dataclass
class ModelingReport:
    """Everything notebook 07 shows and the dashboard reads back."""

    status: HistoryStatus
    forecast_status: HistoryStatus
    matrix: pd.DataFrame
    points: pd.DataFrame
    anomalies: pd.DataFrame
    forecast: pd.DataFrame
    config: AnomalyConfig
    latest_run_id: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def anomalous_tables(self) -> list[str]:
        return anomalous_tables(self.anomalies, latest_only=True)

    def metrics(self) -> dict[str, Any]:
        """Key figures for the run log (record_phase_metrics)."""
        fc = (
            self.forecast[self.forecast["enough"].astype(bool)] if not self.forecast.empty else None
        )
        return {
            "runs_recorded": self.status.runs,
            "tables_in_matrix": int(len(self.matrix)),
            "anomalies_latest_run": (
                int(self.anomalies["is_latest"].astype(bool).sum())
                if not self.anomalies.empty
                else 0
            ),
            "anomalies_all_runs": int(len(self.anomalies)),
            "tables_with_anomalies": len(self.anomalous_tables),
            "tables_forecast": int(fc["table_name"].nunique()) if fc is not None else 0,
        }


def build_modeling(
    source: Settings | History | str | Path,
    config: AnomalyConfig | None = None,
    horizon: int = 3,
    min_runs: int = 4,
    level: float = 0.95,
) -> ModelingReport:
    """Matrix, anomalies and forecast from the metric history (settings, state DB path or History)."""
    config = config or AnomalyConfig()
    history = source if isinstance(source, History) else load_history(source)
    status = history_status(history, needed=2, what="rate-of-change checks")
    forecast_status = history_status(history, needed=min_runs, what="forecasts")
    points = score_series(metric_series(history), config)
    anomalies = points[points["is_anomaly"].astype(bool)].reset_index(drop=True)
    notes = [status.message, forecast_status.message]
    z_status = history_status(history, needed=config.min_history + 1, what="robust z-scores")
    if not z_status.enough:
        notes.append(z_status.message)
    return ModelingReport(
        status=status,
        forecast_status=forecast_status,
        matrix=dq_matrix(latest_dimension_scores(history)),
        points=points,
        anomalies=anomalies,
        forecast=forecast_scores(history, horizon=horizon, min_runs=min_runs, level=level),
        config=config,
        latest_run_id=history.latest_run_id,
        notes=notes,
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def anomalies_path(settings: Settings) -> Path:
    return settings.paths.reports / ANOMALIES_FILE_NAME


def save_modeling(report: ModelingReport, settings: Settings) -> dict[str, Path]:
    """Write the JSON the dashboard reads and parquet files for analysts, each atomically."""
    reports = settings.paths.reports
    matrix = report.matrix.reset_index()
    payload = {
        "generated_at": state.utc_now(),
        "latest_run_id": report.latest_run_id,
        "history": {"runs": report.status.runs, "notes": report.notes},
        "config": asdict(report.config),
        "metrics": report.metrics(),
        "anomalous_tables": report.anomalous_tables,
        "anomalies": _records(report.anomalies),
        "forecast": _records(report.forecast),
        "matrix": _records(matrix),
    }
    written = {
        "anomalies_json": atomic_write_text(
            anomalies_path(settings), json.dumps(payload, indent=2)
        ),
    }
    for name, frame, file_name in (
        ("anomalies_parquet", report.anomalies, ANOMALIES_PARQUET_NAME),
        ("forecast_parquet", report.forecast, FORECAST_PARQUET_NAME),
        ("matrix_parquet", matrix, MATRIX_PARQUET_NAME),
    ):
        table = pa.Table.from_pandas(frame.astype(_arrow_safe_dtypes(frame)), preserve_index=False)
        written[name] = write_parquet_atomic(table, reports / file_name)
    return written


def _arrow_safe_dtypes(frame: pd.DataFrame) -> dict[str, str]:
    """Object columns holding only None become strings so parquet gets a real type, not null."""
    return {c: "string" for c in frame.columns if frame[c].dtype == object}


def load_saved_modeling(settings: Settings) -> dict[str, Any] | None:
    """The JSON written by :func:`save_modeling`, or None when modeling has not run yet."""
    path = anomalies_path(settings)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelingOutputError(path, str(exc)) from None


class ModelingOutputError(AimsError):
    """The saved modeling output cannot be read."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = str(path)
        super().__init__(
            f"cannot read modeling output {path}: {reason}",
            hint="re-run notebook 07 or `python -m aims_nb_utils dq-model` to rewrite it",
        )
