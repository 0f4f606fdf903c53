"""What the notebooks call besides the pipeline functions: set-up, progress, display, metrics.

Notebooks stay thin: a ``parameters`` cell, then ``setup_notebook(...)`` (the environment cell),
then calls into aims_nb_utils. Imports here are light on purpose (no Great Expectations, no plotly
or pandas at import time): every phase notebook pays its own kernel start.

Phase notebooks hand their figures to the orchestrator with :func:`record_phase_metrics` (the
contract is documented in :mod:`aims_nb_utils.orchestration`)::

    ctx = setup_notebook("monitoring", aims_home=aims_home, run_id=run_id)
    ...
    record_phase_metrics(ctx.settings, ctx.run_id, "monitoring", {"tables_monitored": 68})
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AimsError
from .io import list_bronze_tables
from .orchestration import (
    PHASE_NAMES,
    LineReporter,
    OrchestrationError,
    OrchestrationRun,
    Phase,
    PhaseMetricsError,
    PhaseResult,
    PhaseTask,
    get_phase,
    headline,
    phase_skip,
    read_phase_metrics,
    record_phase_metrics,
    skip_reason,
)
from .settings import Settings, load_settings

__all__ = [
    "PHASE_NAMES",
    "NotebookContext",
    "phase_skip",
    "skip_reason",
    "WidgetReporter",
    "describe_environment",
    "in_notebook",
    "progress_reporter",
    "read_phase_metrics",
    "record_phase_metrics",
    "setup_notebook",
    "show_figure",
    "show_table",
    "repair_rows",
    "verdict_rows",
    "ingestion_metrics",
    "silver_vs_quarantine_figure",
    "bronze_inventory",
    "profiling_metrics",
    "rules_by_type",
    "rules_by_type_figure",
    "table_list",
    "config_rows",
    "phase_duration_figure",
]


@dataclass
class NotebookContext:
    """What the environment cell resolved: settings, the run id and the phase being run."""

    settings: Settings
    run_id: str
    phase: Phase | None
    overrides: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def record_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """record_phase_metrics for this notebook's phase, adding how long the notebook took."""
        if self.phase is None:
            raise PhaseMetricsError(
                "<none>",
                "this notebook was set up without a phase",
                hint=f"call setup_notebook('<phase>', ...) with one of {', '.join(PHASE_NAMES)}",
            )
        payload = {**metrics, "notebook_seconds": round(time.perf_counter() - self.started, 3)}
        return record_phase_metrics(self.settings, self.run_id, self.phase.name, payload)

    def record_skip(self, reason: str, metrics: Mapping[str, Any] | None = None) -> Path:
        """Record that this phase does not apply (the orchestrator marks it skipped, with why)."""
        return self.record_metrics(phase_skip(reason, **dict(metrics or {})))


def setup_notebook(
    phase: str | None = None,
    aims_home: str | Path | None = None,
    run_id: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    show: bool = True,
    **settings_overrides: Any,
) -> NotebookContext:
    """The environment cell: resolve settings (None means "use settings"), print where we run.

    ``overrides`` (a PIPELINE_CONFIG dict) and ``settings_overrides`` (parameters such as
    ``dq_threshold=dq_threshold``) are applied on top of pipeline.yaml and AIMS_* variables; None
    values are dropped so that an untouched parameters cell changes nothing.
    """
    from .state import new_run_id

    merged = {k: v for k, v in {**(overrides or {}), **settings_overrides}.items() if v is not None}
    settings = load_settings(config_file=config_file, home=aims_home, **merged)
    context = NotebookContext(
        settings=settings,
        run_id=run_id or new_run_id(),
        phase=get_phase(phase) if phase and phase != "orchestration" else None,
        overrides=merged,
    )
    if show:
        title = context.phase.notebook_name if context.phase else "AIMS orchestration"
        print(f"{title} | run {context.run_id}")
        print(describe_environment(settings, merged))
    return context


def describe_environment(settings: Settings, overrides: Mapping[str, Any] | None = None) -> str:
    """Fabric or Local, the storage roots and every resolved path, as printable lines."""
    env = settings.environment
    paths = settings.paths
    lines = [f"Environment: {env.label}"]
    rows: list[tuple[str, str]] = [("home (AIMS_HOME)", str(paths.home))]
    if env.is_fabric:
        rows += [("Files root", str(env.files_root)), ("Tables root", str(env.tables_root))]
    else:
        rows += [("data root", str(env.files_root))]
    for name in ("bronze", "silver", "gold", "quarantine", "state", "rules", "results", "runs"):
        rows.append((name, str(getattr(paths, name))))
    try:
        rows.append(("bronze tables", f"{len(list_bronze_tables(paths.bronze))} parquet files"))
    except AimsError as exc:  # a badly named file must not hide where we are running
        rows.append(("bronze tables", f"cannot list: {exc}"))
    rows.append(("storage format", settings.storage_format))
    rows.append(("dq_threshold", f"{settings.dq_threshold:g}%"))
    rows.append(
        ("sample_size", "all rows" if settings.sample_size is None else str(settings.sample_size))
    )
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if overrides:
        changed = ", ".join(f"{k}={settings.values.get(k, v)!r}" for k, v in overrides.items())
        lines.append(f"  set by this notebook: {changed}")
    return "\n".join(lines)


def config_rows(settings: Settings, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Setting, value and where it came from (default, pipeline.yaml, AIMS_* variable, argument)."""
    keys = list(keys) if keys is not None else list(settings.values)
    return [
        {"setting": k, "value": settings.values.get(k), "source": settings.sources.get(k, "")}
        for k in keys
    ]


def table_list(tables: str | Sequence[str] | None) -> list[str] | None:
    """A notebook's ``tables`` parameter: None (all), "a,b" or a list."""
    if tables is None:
        return None
    if isinstance(tables, str):
        names = [t.strip() for t in tables.split(",") if t.strip()]
    else:
        names = [str(t).strip() for t in tables if str(t).strip()]
    return names or None


def bronze_inventory(
    settings: Settings, tables: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Rows, columns and size of each Bronze file from its parquet footer (no data is read).

    A file whose footer cannot be read is listed with the reason, which is what a person needs to
    see before profiling or validation reports it as an error.
    """
    import pyarrow.parquet as pq

    rows = []
    for table in tables or list_bronze_tables(settings.paths.bronze):
        path = settings.paths.bronze_file(table)
        row: dict[str, Any] = {"table": table, "rows": None, "columns": None, "size_mb": None}
        try:
            meta = pq.ParquetFile(path).metadata
            row.update(rows=meta.num_rows, columns=meta.num_columns, problem="")
            row["size_mb"] = round(path.stat().st_size / 1e6, 2)
        except Exception as exc:  # noqa: BLE001 - any unreadable footer is shown, not raised
            row["problem"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        rows.append(row)
    return rows


def profiling_metrics(run: Any, rule_files: Mapping[str, Any]) -> dict[str, Any]:
    """The profiling phase's figures for the run log (``run`` is a profiling.ProfileRun)."""
    profiled = [p for p in run.tables.values() if p.error is None]
    return {
        "files_profiled": len(profiled),
        "configs_generated": len(run.written),
        "configs_unchanged": len(getattr(run, "unchanged", [])),
        "configs_kept": len(run.kept),
        "errors": len(run.errors),
        "error_tables": dict(run.errors),
        "rows_profiled": int(sum(p.rows for p in profiled)),
        "empty_tables": sum(1 for p in profiled if p.empty),
        "sampled_tables": sum(1 for p in profiled if p.sampled),
        "rules_total": int(sum(len(rf.expectations) for rf in rule_files.values())),
        "foreign_keys_found": len(run.foreign_keys),
        "profiling_seconds": run.seconds,
    }


def rules_by_type(rule_files: Mapping[str, Any]) -> Any:
    """Table x expectation type -> number of rules, from the rule files validation will use."""
    import pandas as pd

    records = [
        {"table": table, "rule": e.expectation_type.removeprefix("expect_"), "rules": 1}
        for table, rf in rule_files.items()
        for e in rf.expectations
    ]
    if not records:
        return pd.DataFrame(columns=["table", "rule", "rules"])
    frame = pd.DataFrame(records).groupby(["table", "rule"], as_index=False)["rules"].sum()
    return frame.sort_values(["table", "rule"], ignore_index=True)


def rules_by_type_figure(counts: Any) -> Any:
    """Stacked bars: how many rules of each type every table got (tables sorted by total)."""
    import plotly.express as px

    order = counts.groupby("table")["rules"].sum().sort_values(ascending=False).index.tolist()
    fig = px.bar(
        counts,
        x="table",
        y="rules",
        color="rule",
        category_orders={"table": order},
        title="Rules per table by expectation type",
    )
    fig.update_layout(height=460, xaxis_tickangle=-60, legend_title_text="expectation")
    return fig


def repair_rows(run: Any) -> list[dict[str, Any]]:
    """The Bronze files repair touched or could not save (``run`` is a repair.RepairRun)."""
    return [
        {
            "table": f.table,
            "status": f.status,
            "problem": f.problem,
            "method": f.method,
            "rows_recovered": f.rows_recovered,
            "rows_lost": f.rows_lost,
            "backup": f.backup,
        }
        for f in run.files
        if f.status != "ok"
    ]


def verdict_rows(run: Any, only_not_passed: bool = True) -> list[dict[str, Any]]:
    """Table verdicts with the reason a table did not pass (``run`` is a validation.ValidationRun)."""
    rows = []
    for table, result in run.tables.items():
        if only_not_passed and result.status == "PASSED":
            continue
        why = "; ".join(result.threshold_failures) or result.error or result.reason or ""
        rows.append(
            {
                "table": table,
                "status": result.status,
                "quality_score": result.success_percentage,
                "weighted_score": result.weighted_score,
                "rules_failed": len(result.failures),
                "rows": result.row_count,
                "why": why,
            }
        )
    order = {"ERROR": 0, "FAILED": 1, "SKIPPED": 2, "PASSED": 3}
    return sorted(rows, key=lambda r: (order.get(r["status"], 9), r["quality_score"] or 0))


def ingestion_metrics(
    validation_run: Any, ingest_run: Any, repair_run: Any | None, source_checks: Sequence[Any]
) -> dict[str, Any]:
    """The validation_ingestion phase's figures for the run log (legacy keys kept)."""
    summary = ingest_run.summary
    verdicts: dict[str, int] = {}
    for check in source_checks:
        verdicts[check.verdict] = verdicts.get(check.verdict, 0) + 1
    statuses = {t: r.status for t, r in validation_run.tables.items()}
    metrics: dict[str, Any] = {
        "validation_summary": dict(validation_run.summary),
        "failed_tables": sorted(t for t, s in statuses.items() if s == "FAILED"),
        "error_tables": sorted(t for t, s in statuses.items() if s == "ERROR"),
        "validation_seconds": validation_run.seconds,
        "results_path": validation_run.results_path,
        "rows_in": summary["rows_in"],
        "rows_silver": summary["rows_silver"],
        "rows_quarantined": summary["rows_quarantined"],
        "tables_loaded": summary["loaded"],
        "tables_unchanged": summary["unchanged"],
        "tables_not_promoted": summary["not_promoted"],
        "ingestion_errors": summary["errors"],
        "ingestion_seconds": ingest_run.seconds,
        "source_checks": verdicts,
    }
    if repair_run is not None:
        repaired = repair_run.summary
        metrics.update(
            files_repaired=repaired["repaired"],
            files_unrecoverable=repaired["unrecoverable"],
            rows_lost_in_repair=repaired["rows_lost"],
        )
    return metrics


def silver_vs_quarantine_figure(ingest_run: Any, top: int = 40) -> Any:
    """Rows promoted to Silver and rows quarantined per table (the tables with most rows)."""
    import plotly.graph_objects as go

    results = sorted(
        (r for r in ingest_run.tables.values() if r.rows_in),
        key=lambda r: r.rows_in,
        reverse=True,
    )[:top]
    tables = [r.table for r in results]
    fig = go.Figure(
        [
            go.Bar(
                name="to Silver",
                x=tables,
                y=[r.rows_silver for r in results],
                marker_color="#2e7d32",
            ),
            go.Bar(
                name="quarantined",
                x=tables,
                y=[r.rows_quarantined for r in results],
                marker_color="#c62828",
            ),
        ]
    )
    fig.update_layout(
        barmode="stack",
        title=f"Rows to Silver vs quarantine (top {len(tables)} tables by rows processed)",
        yaxis_title="rows",
        xaxis_tickangle=-60,
        height=460,
    )
    return fig


# --- display ------------------------------------------------------------------------------------


def in_notebook() -> bool:
    """True inside a Jupyter/Fabric kernel (where display() renders rich output)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ in ("ZMQInteractiveShell", "Shell")


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def show_table(data: Any, title: str | None = None, max_rows: int = 60) -> None:
    """Show a DataFrame (or a list of dicts) as a table in a notebook, as text elsewhere."""
    import pandas as pd

    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    if title:
        print(title)
    if in_notebook():
        _display(frame.head(max_rows) if len(frame) > max_rows else frame)
    else:
        print(frame.head(max_rows).to_string(index=False) if len(frame) else "(no rows)")
    if len(frame) > max_rows:
        print(f"... {len(frame) - max_rows} more rows not shown")


def show_figure(fig: Any) -> None:
    """Render a plotly figure in the notebook; headless (plain python) it prints the title only.

    Outside Fabric the renderer loads plotly.js from its CDN instead of embedding 3.5 MB in every
    executed notebook kept under outputs/runs.
    """
    if not in_notebook():
        title = getattr(getattr(fig.layout, "title", None), "text", None)
        print(f"[figure] {title or 'untitled'}")
        return
    import plotly.io as pio

    outside_fabric = sys.modules.get("notebookutils") is None
    if outside_fabric and not os.environ.get("PLOTLY_RENDERER"):
        pio.renderers.default = "plotly_mimetype+notebook_connected"
    fig.show()


# --- progress -------------------------------------------------------------------------------------


class WidgetReporter(LineReporter):
    """A progress bar and a status line (ipywidgets) over the plain progress lines.

    The lines stay: they are the textual record of the run in the executed notebook.
    """

    def __init__(self) -> None:
        super().__init__()
        import ipywidgets as widgets

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="phases")
        self.status = widgets.HTML(value="starting")
        _display(widgets.VBox([self.bar, self.status]))

    def run_started(self, run: OrchestrationRun, tasks: Sequence[PhaseTask]) -> None:
        self.bar.max = max(len(tasks), 1)
        self.status.value = f"run <b>{run.run_id}</b>: {len(tasks)} phase(s)"
        super().run_started(run, tasks)

    def phase_started(self, index: int, total: int, task: PhaseTask) -> None:
        self.status.value = (
            f"[{index}/{total}] running <b>{task.phase.name}</b> ({task.phase.notebook})"
        )
        super().phase_started(index, total, task)

    def phase_finished(self, index: int, total: int, result: PhaseResult) -> None:
        self.bar.value = index
        if result.status == "failed":
            self.bar.bar_style = "danger"
        detail = headline(result.metrics) if result.status == "success" else result.error_line()
        self.status.value = f"[{index}/{total}] <b>{result.phase}</b> {result.status}: {detail}"
        super().phase_finished(index, total, result)

    def run_finished(self, run: OrchestrationRun) -> None:
        self.bar.bar_style = "success" if run.ok else "danger"
        self.status.value = (
            f"run <b>{run.run_id}</b> {run.status} in {run.total_duration_seconds or 0:.1f}s"
        )
        # The notebook shows the summary as a table in its next cell.


def progress_reporter(mode: str = "auto") -> LineReporter:
    """``widgets`` (bar + status), ``lines`` (plain text) or ``auto`` (widgets when in a kernel).

    Headless callers (papermill, CI) should pass ``lines``: a widget in an executed notebook
    shows nothing in a log.
    """
    mode = (mode or "auto").lower()
    if mode not in ("auto", "widgets", "lines"):
        raise OrchestrationError(
            f"progress mode {mode!r} is unknown", hint="use progress='auto', 'widgets' or 'lines'"
        )
    if mode == "lines" or (mode == "auto" and not in_notebook()):
        return LineReporter()
    try:
        return WidgetReporter()
    except ImportError:
        if mode == "widgets":
            raise
        return LineReporter()


def phase_duration_figure(run: OrchestrationRun) -> Any:
    """Seconds per phase, coloured by status: where the time of a run went, and what failed."""
    import plotly.graph_objects as go

    colours = {"success": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}
    phases = [p for p in run.phases if p.status != "skipped" or p.duration_seconds]
    fig = go.Figure(
        go.Bar(
            x=[p.phase for p in phases],
            y=[p.duration_seconds or 0 for p in phases],
            marker_color=[colours.get(p.status, "#1565c0") for p in phases],
            text=[p.status for p in phases],
            hovertext=[p.error_line() or headline(p.metrics) for p in phases],
        )
    )
    fig.update_layout(
        title=f"Run {run.run_id}: seconds per phase ({run.status})",
        yaxis_title="seconds",
        height=360,
        margin={"t": 50, "b": 40},
    )
    return fig
