"""Phases, runners and run logs: one phase list drives notebook 00, run_all.py and Fabric.

The pipeline is a fixed sequence of phase notebooks (01 profiling ... 08 BI). What runs is decided by
settings (``run_profiling``, ``run_ingestion``, ...), how it runs by a runner: papermill locally (a
fresh kernel per notebook, executed copies kept under ``outputs/runs/<run_id>/``) or
``notebookutils.notebook.runMultiple`` in Fabric. Both runners get the same ordered task list and the
orchestrator computes every phase status from what actually happened:

* ``success``: the notebook ran to the end **and** wrote its metrics file for this run;
* ``failed``: the notebook raised (cell index, exception name and message are kept), timed out, its
  kernel died, or it finished without writing its metrics file;
* ``skipped``: disabled by settings; not run because an earlier phase failed while
  ``continue_on_error`` is false; or the notebook ran to the end and said, through its metrics,
  that it does not apply to this lake (see below). The reason is recorded in every case.

A run is ``failed`` exactly when one of its phases failed. Phases that succeeded or were skipped
with a reason make a ``success`` run: a Gold phase that does not apply to a lake without the
AIMS tables is not an error of the run, and the reason is in the log, the summary and the
dashboard, so nobody reads the skip as output.

Metrics hand-off contract (phase notebook -> orchestrator)
---------------------------------------------------------
Each phase notebook calls ``record_phase_metrics(settings, run_id, phase, metrics)`` (re-exported by
``aims_nb_utils.notebook_support``) before it ends. It writes
``settings.paths.runs / <run_id> / <phase>_metrics.json`` atomically::

    {"phase": "profiling", "run_id": "...", "recorded_at": "<UTC ISO time>", "metrics": {...}}

Calling it again in the same run merges the new keys into the file (later values win), so a notebook
may record validation figures before ingestion starts and still leave them behind if ingestion
fails. ``phase`` is a name of :data:`PHASES` or an alias (``"02"``, ``"ingestion"``, the notebook
file name); an unknown name raises, listing the valid ones. Metric values must be JSON-like (numpy
and pandas scalars, dates and paths are converted; NaN becomes null). The orchestrator deletes a
phase's file before running it, so a file present afterwards was written by that execution.

A phase that does not apply says so with the reserved metrics key ``skip_reason`` (use
:func:`phase_skip` or ``NotebookContext.record_skip``)::

    {"skip_reason": "not an AIMS lake: aims_assets, aims_routes missing in Bronze (...)", ...}

A non-empty text makes the phase ``skipped`` with that reason; ``None`` (or no key) means the
phase applied, and its status is computed as above. The phase never writes its own status: it
states a fact (why it does not apply) and the orchestrator decides. An exception after the skip
was recorded still makes the phase ``failed``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .environment import repository_root
from .errors import AimsError
from .io import atomic_write_text
from .settings import KEYS, PATH_KEYS, Settings

SUCCESS, FAILED, SKIPPED, RUNNING = "success", "failed", "skipped", "running"
SKIP_KEY = "skip_reason"  # the metrics key a phase uses to say it does not apply (see above)
METRICS_SUFFIX = "_metrics.json"
LOG_PREFIX = "orchestration_log_"
ORCHESTRATION_NOTEBOOK = "00_AIMS_Orchestration.ipynb"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# --- errors ------------------------------------------------------------------------------------


class OrchestrationError(AimsError):
    """The run cannot be planned or started as asked (unknown phase, missing notebook, ...)."""


class PhaseMetricsError(AimsError):
    """A phase's metrics cannot be recorded or read (bad run id, unknown phase, non-JSON value)."""

    def __init__(self, phase: str, problem: str, hint: str | None = None) -> None:
        self.phase = phase
        super().__init__(f"phase {phase!r} metrics: {problem}", hint=hint)


class PhaseError(AimsError):
    """A phase notebook cannot do its job (e.g. no Bronze table at all); the phase fails."""

    def __init__(self, phase: str, problem: str, hint: str | None = None) -> None:
        self.phase = phase
        super().__init__(f"phase {phase}: {problem}", hint=hint)


class PipelineFailedError(AimsError):
    """Raised by notebook 00's last cell so that papermill/`make` report a failed run as failed."""

    def __init__(self, run: OrchestrationRun) -> None:
        self.run = run
        failed = [p for p in run.phases if p.status == FAILED]
        details = "; ".join(f"{p.phase} ({p.error_line()})" for p in failed)
        super().__init__(
            f"run {run.run_id} failed: {details}",
            hint=f"read the run log {run.log_path} and the executed notebooks in {run.run_dir}",
        )


# --- the phase list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One step of the pipeline: the notebook that does it and the setting that enables it."""

    name: str
    notebook: str
    flag: str
    title: str
    optional: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def number(self) -> str:
        return self.notebook[:2]

    @property
    def notebook_name(self) -> str:
        """The notebook's item name in Fabric (the file name without .ipynb)."""
        return self.notebook.removesuffix(".ipynb")


PHASES: tuple[Phase, ...] = (
    Phase(
        "profiling",
        "01_AIMS_Data_Profiling.ipynb",
        "run_profiling",
        "profile Bronze, write rule files",
    ),
    Phase(
        "validation_ingestion",
        "02_AIMS_Data_Ingestion.ipynb",
        "run_ingestion",
        "repair, validate (GX), Bronze -> Silver + quarantine",
        aliases=("ingestion", "validation"),
    ),
    Phase("monitoring", "03_AIMS_Monitoring.ipynb", "run_monitoring", "monitoring dashboard"),
    Phase(
        "schema_reconciliation",
        "04_AIMS_Schema_Reconciliation.ipynb",
        "run_schema_reconciliation",
        "schema drift and reconciliation",
        optional=True,
        aliases=("schema",),
    ),
    Phase(
        "silver_enhancement",
        "05_AIMS_Silver_Data_Enhancement.ipynb",
        "run_silver_enhancement",
        "Silver -> Gold star schema",
        optional=True,
        aliases=("gold",),
    ),
    Phase(
        "quality_insights",
        "06_AIMS_Data_Quality_Insights.ipynb",
        "run_quality_insights",
        "quality trends across runs",
        optional=True,
        aliases=("insights",),
    ),
    Phase(
        "dq_modeling",
        "07_AIMS_DQ_Matrix_and_Modeling.ipynb",
        "run_dq_modeling",
        "DQ matrix and anomaly modeling",
        aliases=("modeling",),
    ),
    Phase(
        "bi_analytics",
        "08_AIMS_Business_Intelligence.ipynb",
        "run_bi_analytics",
        "BI KPIs over Gold",
        aliases=("bi",),
    ),
)
PHASE_NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)


def get_phase(name: str) -> Phase:
    """Resolve a phase by name, alias, number ('02') or notebook file name."""
    key = str(name).strip().lower().removesuffix(".ipynb")
    for phase in PHASES:
        if key in (phase.name, phase.number, phase.notebook_name.lower(), *phase.aliases):
            return phase
    raise OrchestrationError(
        f"unknown phase {name!r}",
        hint=f"use one of {', '.join(PHASE_NAMES)} (or a notebook number 01-08)",
    )


# --- metrics hand-off --------------------------------------------------------------------------


def _check_run_id(run_id: Any, phase: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise PhaseMetricsError(
            phase,
            f"run_id {run_id!r} is not a valid run id",
            hint="pass the run_id the notebook received (setup_notebook() returns one when it was None)",
        )
    return run_id


def phase_metrics_path(settings: Settings, run_id: str, phase: str) -> Path:
    """Where a phase notebook leaves its metrics for this run."""
    name = _phase_for_metrics(phase).name
    return settings.paths.runs / _check_run_id(run_id, name) / f"{name}{METRICS_SUFFIX}"


def _phase_for_metrics(phase: str) -> Phase:
    try:
        return get_phase(phase)
    except OrchestrationError:
        raise PhaseMetricsError(
            str(phase), "unknown phase name", hint=f"use one of {', '.join(PHASE_NAMES)}"
        ) from None


def to_jsonable(value: Any, where: str = "metrics") -> Any:
    """Convert numpy/pandas scalars, dates, paths and dataclasses to JSON; refuse anything else.

    Refusing (instead of ``str()``-ing) keeps run logs machine-readable: a DataFrame or an object
    repr in a log is useless to the dashboards that read it.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value), where)
    if type(value).__name__ == "ndarray":
        return to_jsonable(value.tolist(), where)
    item = getattr(value, "item", None)  # numpy scalars, pandas NA-free scalars
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return to_jsonable(item(), where)
        except (TypeError, ValueError):
            pass
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        return isoformat()
    raise TypeError(f"{where} is a {type(value).__name__}, which is not JSON-like")


def record_phase_metrics(
    settings: Settings, run_id: str, phase: str, metrics: Mapping[str, Any]
) -> Path:
    """Leave this phase's figures for the orchestrator (see the module docstring for the contract).

    Merges into an existing file of the same run and phase, so a notebook can record in steps.
    """
    canonical = _phase_for_metrics(phase).name
    if not isinstance(metrics, Mapping):
        raise PhaseMetricsError(canonical, f"metrics must be a dict, got {type(metrics).__name__}")
    try:
        payload = to_jsonable(dict(metrics))
    except TypeError as exc:
        raise PhaseMetricsError(
            canonical,
            str(exc),
            hint="record plain numbers, text, lists and dicts (e.g. df.to_dict('records'))",
        ) from None
    reason = payload.get(SKIP_KEY)
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise PhaseMetricsError(
            canonical,
            f"{SKIP_KEY} must be a non-empty text saying why the phase does not apply, "
            f"got {reason!r}",
            hint=f"record {SKIP_KEY}=None when the phase applies",
        )
    path = phase_metrics_path(settings, run_id, canonical)
    merged = dict(read_phase_metrics(settings, run_id, canonical) or {})
    merged.update(payload)
    document = {
        "phase": canonical,
        "run_id": run_id,
        "recorded_at": datetime.now(timezone.utc).isoformat(),
        "metrics": merged,
    }
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def phase_skip(reason: str, **metrics: Any) -> dict[str, Any]:
    """Metrics saying the phase does not apply, and why (the orchestrator marks it skipped)."""
    if not isinstance(reason, str) or not reason.strip():
        raise PhaseMetricsError(
            "<skip>", f"a skip needs a reason a person can act on, got {reason!r}"
        )
    return {SKIP_KEY: reason.strip(), **metrics}


def skip_reason(metrics: Mapping[str, Any] | None) -> str | None:
    """The reason a phase recorded for not applying, or None when it applied."""
    reason = (metrics or {}).get(SKIP_KEY)
    return reason.strip() if isinstance(reason, str) and reason.strip() else None


def read_phase_metrics(settings: Settings, run_id: str, phase: str) -> dict[str, Any] | None:
    """The metrics a phase recorded for a run, or None when it recorded none."""
    document = _read_metrics_document(settings, run_id, phase)
    return None if document is None else dict(document.get("metrics") or {})


def _read_metrics_document(settings: Settings, run_id: str, phase: str) -> dict[str, Any] | None:
    path = phase_metrics_path(settings, run_id, phase)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PhaseMetricsError(
            phase,
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
            hint="delete the file and run the phase again",
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("metrics", {}), dict):
        raise PhaseMetricsError(phase, f"{path} does not hold a metrics document")
    return document


# --- planning ----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """What happened to one phase; ``status`` is set by the orchestrator from the facts."""

    phase: str
    notebook: str
    status: str
    duration_seconds: float | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    output_notebook: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    def error_line(self) -> str:
        """One sentence a person can act on: notebook, cell, exception, message."""
        if not self.error:
            return self.reason or ""
        err = self.error
        where = err.get("notebook", self.notebook)
        if err.get("cell_index") is not None:
            where += f" cell {err['cell_index']}"
        if err.get("exec_count") is not None:
            where += f" (In [{err['exec_count']}])"
        return f"{where}: {err.get('ename', 'Error')}: {err.get('evalue', '')}".rstrip(": ")

    def to_log(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "notebook": self.notebook,
            "status": self.status,
            "duration_seconds": (
                None if self.duration_seconds is None else round(self.duration_seconds, 3)
            ),
            "error": self.error,
            "reason": self.reason,
            "metrics": self.metrics,
            "output_notebook": self.output_notebook,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass
class OrchestrationRun:
    """A whole run: what was configured, what each phase did, and where the log is."""

    run_id: str
    start_time: str
    environment: str
    storage_format: str
    config: dict[str, Any]
    overrides: dict[str, Any]
    runner: str
    run_dir: Path
    phases: list[PhaseResult] = field(default_factory=list)
    end_time: str | None = None
    total_duration_seconds: float | None = None
    log_path: Path | None = None
    finished: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """failed if any phase failed; success once finished with every phase a success or
        skipped with its reason (disabled, not applicable to this lake)."""
        if any(p.status == FAILED for p in self.phases):
            return FAILED
        if not self.finished:
            return RUNNING
        return SUCCESS

    @property
    def ok(self) -> bool:
        return self.finished and self.status == SUCCESS

    def result(self, phase: str) -> PhaseResult:
        name = get_phase(phase).name
        for result in self.phases:
            if result.phase == name:
                return result
        raise KeyError(name)

    def quality(self) -> dict[str, Any]:
        """Pass rate and quality scores as the validation phase reported them, and how many
        loads failed or were not promoted (empty if the phase did not run).

        The verdicts' pass rate alone would read 100 % on a run whose every load failed; the
        load figures sit next to it so the summary cannot say one without the other.
        """
        metrics = next((p.metrics for p in self.phases if p.phase == "validation_ingestion"), {})
        summary = metrics.get("validation_summary") or {}
        keys = ("total", "passed", "failed", "pass_rate", "avg_quality_score", "avg_weighted_score")
        quality = {k: summary[k] for k in keys if k in summary}
        if "errors" in summary:
            quality["validation_errors"] = summary["errors"]
        for key, name in (
            ("tables_loaded", "tables_loaded"),
            ("tables_unchanged", "tables_unchanged"),
            ("tables_not_promoted", "tables_not_promoted"),
            ("ingestion_errors", "loads_failed"),
        ):
            if key in metrics:
                quality[name] = metrics[key]
        return quality

    def to_log(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "total_duration_seconds": (
                None
                if self.total_duration_seconds is None
                else round(self.total_duration_seconds, 3)
            ),
            "environment": self.environment,
            "storage_format": self.storage_format,
            "runner": self.runner,
            "config": self.config,
            "overrides": self.overrides,
            "status": self.status,
            "skipped_phases": {p.phase: p.reason for p in self.phases if p.status == SKIPPED},
            "quality": self.quality(),
            "run_dir": str(self.run_dir),
            "phases": [p.to_log() for p in self.phases],
            "notes": list(self.notes),
        }

    def summary_rows(self) -> list[dict[str, Any]]:
        """The final table: phase, status, duration, key metrics (or why it failed/skipped)."""
        rows = []
        for p in self.phases:
            detail = p.error_line() if p.status != SUCCESS else headline(p.metrics)
            rows.append(
                {
                    "phase": p.phase,
                    "notebook": p.notebook,
                    "status": p.status,
                    "seconds": None if p.duration_seconds is None else round(p.duration_seconds, 1),
                    "details": detail,
                }
            )
        return rows

    def raise_for_status(self) -> None:
        if self.status == FAILED:
            raise PipelineFailedError(self)


def headline(metrics: Mapping[str, Any], limit: int = 6) -> str:
    """A short 'key=value' digest of a phase's metrics for summary tables and progress lines.

    Numbers first-level and one level down (e.g. the validation summary); timings, paths and long
    texts are left to the run log.
    """
    parts: list[str] = []
    for key, value in metrics.items():
        if key.endswith(("seconds", "_path")):
            continue
        if isinstance(value, Mapping):
            inner = [
                f"{k}={_fmt(v)}"
                for k, v in value.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            if inner:
                parts.append(f"{key}: {', '.join(inner[:limit])}")
        elif isinstance(value, (bool, int, float)):
            parts.append(f"{key}={_fmt(value)}")
        elif isinstance(value, str) and len(value) <= 40:
            parts.append(f"{key}={value}")
        if len(parts) >= limit:
            break
    return "; ".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


SEED_KEYS: tuple[str, ...] = (
    "run_profiling",
    "run_ingestion",
    "run_monitoring",
    "run_dq_modeling",
    "run_bi_analytics",
    "force_reprocess",
    "dq_threshold",
    "max_workers",
    "continue_on_error",
)
"""The seed's PIPELINE_CONFIG keys (the legacy run logs record exactly these)."""


def describe_plan(settings: Settings) -> list[dict[str, Any]]:
    """Every phase with whether it will run and the setting (and its source) that decided it."""
    rows = []
    for phase in PHASES:
        value = bool(settings.values.get(phase.flag, True))
        rows.append(
            {
                "phase": phase.name,
                "notebook": phase.notebook,
                "runs": value,
                "setting": f"{phase.flag}={str(value).lower()}",
                "source": settings.sources.get(phase.flag, "default"),
                "optional": phase.optional,
                "what": phase.title,
            }
        )
    return rows


def enabled_phases(settings: Settings) -> list[Phase]:
    """The phases this settings object asks for, in pipeline order."""
    return [p for p in PHASES if settings.values.get(p.flag, True)]


def selection_overrides(phases: Iterable[str]) -> dict[str, bool]:
    """Turn `--phases a,b` into run_* flags: the named phases on, every other phase off."""
    chosen = {get_phase(name).name for name in phases}
    return {p.flag: p.name in chosen for p in PHASES}


def resolve_notebooks_dir(settings: Settings, notebooks_dir: str | Path | None = None) -> Path:
    """Find the folder holding the phase notebooks (explicit, cwd, AIMS_HOME, then the checkout)."""
    candidates: list[Path] = []
    if notebooks_dir is not None:
        candidates.append(Path(notebooks_dir).expanduser())
    elif os.environ.get("AIMS_NOTEBOOKS_DIR"):
        candidates.append(Path(os.environ["AIMS_NOTEBOOKS_DIR"]).expanduser())
    else:
        cwd = Path.cwd()
        candidates += [cwd, cwd / "notebooks", settings.paths.home / "notebooks"]
        candidates.append(repository_root() / "notebooks")
    for folder in candidates:
        if (folder / ORCHESTRATION_NOTEBOOK).is_file() or any(
            (folder / p.notebook).is_file() for p in PHASES
        ):
            return folder.resolve()
    raise OrchestrationError(
        "cannot find the phase notebooks (looked in " + ", ".join(str(c) for c in candidates) + ")",
        hint="pass notebooks_dir= (run_all.py --notebooks-dir) or set AIMS_NOTEBOOKS_DIR",
    )


# --- runners -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseTask:
    """Everything a runner needs to execute one phase notebook."""

    phase: Phase
    parameters: dict[str, Any]  # aims_home, run_id, config_file and the call's overrides
    overrides: dict[str, Any]  # the call's setting overrides (exported to child kernels)
    output_path: Path
    timeout_seconds: int
    run_config: Path | None = None  # this run's pipeline.yaml with the overrides (Fabric children)


@dataclass
class TaskOutcome:
    """What the runner saw; the orchestrator turns it into a status."""

    error: dict[str, Any] | None
    duration_seconds: float | None
    output_notebook: str | None = None


class RunHooks(Protocol):
    """What the orchestrator offers a runner while it works through a batch."""

    def started(self, task: PhaseTask) -> None: ...

    def finished(self, task: PhaseTask, outcome: TaskOutcome) -> PhaseResult: ...

    def metrics_recorded_at(self, task: PhaseTask) -> datetime | None: ...


class Runner(Protocol):
    """Runs tasks in order and stops at the first failed phase (the orchestrator decides what next)."""

    name: str

    def run_batch(self, tasks: Sequence[PhaseTask], hooks: RunHooks) -> list[PhaseResult]: ...


def execution_error(exc: BaseException, notebook: str) -> dict[str, Any]:
    """Turn a papermill/nbclient/kernel exception into the run log's error record."""
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        text = str(exc).strip()
        evalue = text.splitlines()[-1] if text else repr(exc)
    record: dict[str, Any] = {
        "notebook": notebook,
        "cell_index": getattr(exc, "cell_index", None),
        "exec_count": getattr(exc, "exec_count", None),
        "ename": str(ename),
        "evalue": str(evalue),
    }
    traceback = getattr(exc, "traceback", None)
    if isinstance(traceback, list) and traceback:
        record["traceback_tail"] = _strip_ansi("\n".join(traceback[-3:]))[-2000:]
    return record


_ANSI = re.compile("\x1b\\[(K|.*?m)")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _source_cell_index(notebook: Path, exc: BaseException) -> int | None:
    """Index of the failed cell in the phase notebook itself (papermill counts its injected cell)."""
    source = getattr(exc, "source", None)
    index = getattr(exc, "cell_index", None)
    if source is None:
        return index
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    matches = [i for i, cell in enumerate(cells) if cell.source == source]
    return matches[0] if len(matches) == 1 else index


class PapermillRunner:
    """Executes each phase notebook in a fresh kernel, keeping the executed copy.

    A notebook receives the parameters its `parameters` cell declares (papermill would only warn
    about the others); every override is also exported as an AIMS_* variable to the kernel so a
    notebook that does not declare a setting still resolves the same value.
    """

    name = "papermill"

    def __init__(
        self,
        notebooks_dir: Path,
        kernel_name: str | None = None,
        log_output: bool = False,
        start_timeout: int = 120,
    ) -> None:
        self.notebooks_dir = Path(notebooks_dir)
        self.kernel_name = kernel_name
        self.log_output = log_output
        self.start_timeout = start_timeout

    def declared_parameters(self, phase: Phase) -> set[str]:
        """Names assigned in the notebook's `parameters` cell."""
        from papermill.inspection import inspect_notebook

        return set(inspect_notebook(str(self.notebooks_dir / phase.notebook)))

    def run_one(self, task: PhaseTask) -> TaskOutcome:
        import papermill

        started = time.perf_counter()  # the phase's cost includes kernel start-up
        source = self.notebooks_dir / task.phase.notebook
        if not source.is_file():
            problem = f"{source} does not exist (or disable the phase: {task.phase.flag}=false)"
            return TaskOutcome(
                {
                    "notebook": task.phase.notebook,
                    "cell_index": None,
                    "ename": "NotebookNotFound",
                    "evalue": problem,
                },
                0.0,
            )
        declared = self.declared_parameters(task.phase)
        parameters = {k: v for k, v in task.parameters.items() if k in declared}
        task.output_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with exported_overrides(task.overrides):
                papermill.execute_notebook(
                    str(source),
                    str(task.output_path),
                    parameters=parameters,
                    kernel_name=self.kernel_name,
                    progress_bar=False,
                    log_output=self.log_output,
                    start_timeout=self.start_timeout,
                    execution_timeout=task.timeout_seconds,
                    cwd=str(self.notebooks_dir),
                )
            error = None
        except Exception as exc:  # noqa: BLE001 - a notebook's failure is the phase's
            error = execution_error(exc, task.phase.notebook)
            error["cell_index"] = _source_cell_index(source, exc)
        output = str(task.output_path) if task.output_path.is_file() else None
        return TaskOutcome(error, time.perf_counter() - started, output)

    def run_batch(self, tasks: Sequence[PhaseTask], hooks: RunHooks) -> list[PhaseResult]:
        results = []
        for task in tasks:
            hooks.started(task)
            result = hooks.finished(task, self.run_one(task))
            results.append(result)
            if result.status == FAILED:
                break
        return results


class FabricRunner:
    """Runs the phases as one ``notebookutils.notebook.runMultiple`` DAG in Fabric.

    Each activity depends on the previous one (phase order) and carries an explicit per-cell
    timeout (``timeoutPerCellInSeconds``): Fabric's default of 90 s per cell would kill validation
    of a large lake; the DAG's ``timeoutInSeconds`` is the sum of the per-phase budgets. When an
    activity fails runMultiple does not start its dependents and raises; the orchestrator records
    them as skipped or, with continue_on_error, submits the remaining phases as a new DAG.
    Arguments are the scalar parameters (Fabric passes str/int/float/bool to a parameters cell),
    and ``config_file`` names the run's settings file (:func:`write_run_config`): a child receives
    in its parameters cell only what it declares, and runMultiple children do not inherit notebook
    00's environment, so the AIMS_* variables that carry the overrides under papermill would not
    reach them; the run's pipeline.yaml, which every phase notebook reads through its declared
    ``config_file``, does. The DAG is checked with ``notebookutils.notebook.validateDAG`` (where the
    runtime has it) before anything is submitted; a DAG it refuses fails the first phase with its
    reason and starts nothing.
    """

    name = "fabric"

    def __init__(self, notebookutils: Any | None = None, display_dag: bool = False) -> None:
        if notebookutils is None:
            try:
                import notebookutils  # type: ignore[import-not-found,no-redef]
            except ImportError:
                raise OrchestrationError(
                    "the Fabric runner needs notebookutils, which exists only inside Fabric",
                    hint="run locally with the papermill runner (run_all.py --engine papermill)",
                ) from None
        self.notebookutils = notebookutils
        self.display_dag = display_dag

    @staticmethod
    def build_dag(tasks: Sequence[PhaseTask]) -> dict[str, Any]:
        """The runMultiple DAG: one activity per phase, each depending on the one before."""
        activities = []
        previous: str | None = None
        for task in tasks:
            args = {
                k: v
                for k, v in task.parameters.items()
                if isinstance(v, (str, int, float, bool)) and v is not None
            }
            if task.run_config is not None:
                args["config_file"] = str(task.run_config)
            activity: dict[str, Any] = {
                "name": task.phase.name,
                "path": task.phase.notebook_name,
                "timeoutPerCellInSeconds": int(task.timeout_seconds),
                "args": args,
                "retry": 0,
                "dependencies": [previous] if previous else [],
            }
            activities.append(activity)
            previous = task.phase.name
        return {
            "activities": activities,
            "timeoutInSeconds": int(sum(t.timeout_seconds for t in tasks)),
            "concurrency": 1,
        }

    def dag_problem(self, dag: Mapping[str, Any]) -> str | None:
        """What ``notebookutils.notebook.validateDAG`` finds wrong with the DAG, before anything is
        submitted (runMultiple would otherwise stop part way with a vaguer message); None when it
        accepts it or the runtime has no validateDAG."""
        validate = getattr(self.notebookutils.notebook, "validateDAG", None)
        if not callable(validate):
            return None  # an older runtime: runMultiple checks the DAG itself
        names = ", ".join(a["path"] for a in dag["activities"])
        fix = "import every phase notebook into this workspace under its own name"
        try:
            valid = validate(dict(dag))
        except Exception as exc:  # noqa: BLE001 - Fabric raises its own types
            return f"notebookutils.notebook.validateDAG refused the DAG of {names}: {exc} ({fix})"
        if valid is False:
            return f"notebookutils.notebook.validateDAG found the DAG of {names} invalid ({fix})"
        return None

    def run_batch(self, tasks: Sequence[PhaseTask], hooks: RunHooks) -> list[PhaseResult]:
        if not tasks:
            return []
        dag = self.build_dag(tasks)
        problem = self.dag_problem(dag)
        if problem is not None:  # nothing submitted: the first phase fails with the reason
            first = tasks[0]
            hooks.started(first)
            error = {
                "notebook": first.phase.notebook_name,
                "cell_index": None,
                "ename": "InvalidDAG",
                "evalue": problem,
            }
            return [hooks.finished(first, TaskOutcome(error, 0.0))]
        for task in tasks:
            hooks.started(task)
        previous_end = datetime.now(timezone.utc)
        dag_error: BaseException | None = None
        try:
            raw = self.notebookutils.notebook.runMultiple(
                dag, {"displayDAGViaGraphviz": self.display_dag}
            )
        except Exception as exc:  # noqa: BLE001 - runMultiple raises when any activity fails
            dag_error = exc
            raw = getattr(exc, "result", None)
        dag_end = datetime.now(timezone.utc)
        activity_results = raw if isinstance(raw, Mapping) else {}
        results: list[PhaseResult] = []
        for task in tasks:
            entry = activity_results.get(task.phase.name)
            exception = entry.get("exception") if isinstance(entry, Mapping) else None
            recorded = hooks.metrics_recorded_at(task)
            end = recorded or dag_end
            duration = max((end - previous_end).total_seconds(), 0.0)
            previous_end = end
            error = None
            if exception:
                error = {
                    "notebook": task.phase.notebook_name,
                    "cell_index": None,
                    "ename": (
                        type(exception).__name__
                        if isinstance(exception, BaseException)
                        else "NotebookError"
                    ),
                    "evalue": str(exception),
                }
            elif recorded is None and dag_error is not None:
                error = execution_error(dag_error, task.phase.notebook_name)
            result = hooks.finished(task, TaskOutcome(error, duration))
            results.append(result)
            if result.status == FAILED:
                break
        return results


# --- orchestration -----------------------------------------------------------------------------


class Reporter(Protocol):
    def run_started(self, run: OrchestrationRun, tasks: Sequence[PhaseTask]) -> None: ...

    def phase_started(self, index: int, total: int, task: PhaseTask) -> None: ...

    def phase_finished(self, index: int, total: int, result: PhaseResult) -> None: ...

    def run_finished(self, run: OrchestrationRun) -> None: ...


class LineReporter:
    """Plain progress lines (CI logs, papermill, run_all.py)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_started(self, run: OrchestrationRun, tasks: Sequence[PhaseTask]) -> None:
        names = ", ".join(t.phase.name for t in tasks) or "none"
        self._print(
            f"run {run.run_id} ({run.environment}, runner {run.runner}): {len(tasks)} phase(s): {names}"
        )

    def phase_started(self, index: int, total: int, task: PhaseTask) -> None:
        self._print(f"[{index}/{total}] {task.phase.name} ({task.phase.notebook}) started")

    def phase_finished(self, index: int, total: int, result: PhaseResult) -> None:
        seconds = "" if result.duration_seconds is None else f" in {result.duration_seconds:.1f}s"
        detail = headline(result.metrics) if result.status == SUCCESS else result.error_line()
        self._print(f"[{index}/{total}] {result.phase} {result.status.upper()}{seconds}: {detail}")

    def run_finished(self, run: OrchestrationRun) -> None:
        print_summary(run, stream=self.stream)


def print_summary(run: OrchestrationRun, stream: Any = None) -> None:
    """The final table as aligned text, plus the quality figures and where the log is."""
    rows = run.summary_rows()
    columns = ["phase", "status", "seconds", "details"]
    cells = [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    widths[-1] = min(widths[-1], 110)
    out = [f"run {run.run_id}: {run.status.upper()} in {run.total_duration_seconds or 0:.1f}s"]
    out.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    out.append("  ".join("-" * w for w in widths))
    for row in cells:
        row[-1] = row[-1][:110]
        out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    quality = run.quality()
    if quality:
        out.append("quality: " + ", ".join(f"{k}={_fmt(v)}" for k, v in quality.items()))
    out += [f"note: {note}" for note in run.notes]
    if run.log_path:
        out.append(f"run log: {run.log_path}")
    print("\n".join(out), file=stream, flush=True)


def _local_now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _env_value(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if raw is None:
        return "none"
    if isinstance(raw, (list, dict)):
        return json.dumps(raw)
    return str(raw)


@contextmanager
def exported_overrides(overrides: Mapping[str, Any]) -> Iterator[None]:
    """Expose call-time overrides as AIMS_* variables to child kernels, restoring them afterwards.

    Phase notebooks resolve settings themselves; the environment layer is how a value set on
    notebook 00 or run_all.py reaches a notebook that does not declare it as a parameter.
    """
    names = {}
    for key, raw in overrides.items():
        if key in PATH_KEYS:
            names[f"AIMS_{key.upper()}_DIR"] = str(raw)
        elif key in KEYS:
            names[f"AIMS_{key.upper()}"] = _env_value(raw)
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def make_runner(
    settings: Settings,
    engine: str = "auto",
    notebooks_dir: str | Path | None = None,
    kernel_name: str | None = None,
    log_output: bool = False,
) -> Runner:
    """papermill locally, runMultiple in Fabric (``engine='auto'``), or the one asked for."""
    engine = (engine or "auto").lower()
    if engine == "auto":
        engine = "fabric" if settings.environment.is_fabric else "papermill"
    if engine == "fabric":
        return FabricRunner()
    if engine == "papermill":
        if importlib.util.find_spec("papermill") is None:
            raise OrchestrationError(
                "the papermill runner needs papermill, a local tool the package does not install "
                "by itself",
                hint="pip install 'aims-nb-utils[local]' (make setup does), or run in Fabric",
            )
        return PapermillRunner(
            resolve_notebooks_dir(settings, notebooks_dir), kernel_name, log_output=log_output
        )
    raise OrchestrationError(f"unknown engine {engine!r}", hint="use auto, papermill or fabric")


def log_path_for(settings: Settings, started: datetime) -> Path:
    """results/orchestration_log_YYYYMMDD_HHMMSS.json, never overwriting another run's log."""
    stamp = started.strftime("%Y%m%d_%H%M%S")
    path = settings.paths.results / f"{LOG_PREFIX}{stamp}.json"
    counter = 2
    while path.exists():
        path = settings.paths.results / f"{LOG_PREFIX}{stamp}_{counter}.json"
        counter += 1
    return path


def write_run_log(run: OrchestrationRun) -> Path:
    assert run.log_path is not None
    atomic_write_text(run.log_path, json.dumps(run.to_log(), indent=2) + "\n")
    return run.log_path


class _Hooks:
    """Binds a run to the runner callbacks: statuses are decided here, from the facts."""

    def __init__(
        self,
        settings: Settings,
        run: OrchestrationRun,
        tasks: Sequence[PhaseTask],
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.run = run
        self.reporter = reporter
        self.index = {t.phase.name: i + 1 for i, t in enumerate(tasks)}
        self.total = len(tasks)

    def _result(self, task: PhaseTask) -> PhaseResult:
        return self.run.result(task.phase.name)

    def started(self, task: PhaseTask) -> None:
        path = phase_metrics_path(self.settings, self.run.run_id, task.phase.name)
        path.unlink(missing_ok=True)  # a file present afterwards was written by this execution
        result = self._result(task)
        result.started_at, result.ended_at = _local_now(), None
        self.reporter.phase_started(self.index[task.phase.name], self.total, task)

    def finished(self, task: PhaseTask, outcome: TaskOutcome) -> PhaseResult:
        result = self._result(task)
        result.ended_at = _local_now()
        result.duration_seconds = outcome.duration_seconds
        result.output_notebook = outcome.output_notebook
        error = outcome.error
        try:
            metrics = read_phase_metrics(self.settings, self.run.run_id, task.phase.name)
        except PhaseMetricsError as exc:
            metrics = None
            error = error or _error_record(task, "PhaseMetricsError", str(exc))
        if error is None and metrics is None:
            expected = phase_metrics_path(self.settings, self.run.run_id, task.phase.name)
            error = _error_record(
                task,
                "PhaseMetricsMissing",
                f"the notebook finished without recording its metrics: call record_phase_metrics("
                f"settings, run_id, {task.phase.name!r}, {{...}}) (expected {expected})",
            )
        result.metrics = metrics or {}
        result.error = error
        reason = skip_reason(metrics)
        if error is not None:
            result.status = FAILED
        elif reason is not None:
            result.status, result.reason = SKIPPED, reason
        else:
            result.status = SUCCESS
        self.reporter.phase_finished(self.index[task.phase.name], self.total, result)
        write_run_log(self.run)
        return result

    def metrics_recorded_at(self, task: PhaseTask) -> datetime | None:
        document = _read_metrics_document(self.settings, self.run.run_id, task.phase.name)
        if not document or not document.get("recorded_at"):
            return None
        return datetime.fromisoformat(document["recorded_at"])


def _error_record(task: PhaseTask, ename: str, evalue: str) -> dict[str, Any]:
    return {"notebook": task.phase.notebook, "cell_index": None, "ename": ename, "evalue": evalue}


RUN_CONFIG = "pipeline.yaml"


def write_run_config(
    settings: Settings,
    run_id: str,
    overrides: Mapping[str, Any],
    config_file: str | Path | None = None,
) -> Path:
    """``<runs>/<run_id>/pipeline.yaml``: the run's settings file with the call's overrides in it.

    It is the file the run started from (``config_file``, ``AIMS_CONFIG`` or
    ``<config>/pipeline.yaml``, when there is one) with every override written over it, lists and
    path keys included, so that a phase notebook resolving ``load_settings(config_file=<it>)``
    gets the values notebook 00 was given without any variable of its environment.
    """
    import yaml

    explicit = config_file or os.environ.get("AIMS_CONFIG")
    base = Path(explicit) if explicit else settings.paths.config / "pipeline.yaml"
    document: dict[str, Any] = {}
    if base.is_file():
        loaded = yaml.safe_load(base.read_text()) or {}
        document = dict(loaded) if isinstance(loaded, Mapping) else {}
    paths = dict(document.get("paths") or {})
    for key, value in overrides.items():
        if value is None or key == "home":
            continue
        if key in PATH_KEYS:
            paths[key] = str(value)
        else:
            document[key] = to_jsonable(value, f"override {key}")
    if paths:
        document["paths"] = paths
    header = (
        f"# Settings of run {run_id}: {base if base.is_file() else 'the defaults'} with the "
        "overrides of the call (written by the orchestrator for the phase notebooks).\n"
    )
    target = settings.paths.runs / run_id / RUN_CONFIG
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, header + yaml.safe_dump(document, sort_keys=False))
    return target


def plan_tasks(
    settings: Settings,
    run_id: str,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> list[PhaseTask]:
    """The enabled phases as tasks, in order: the one plan both runners execute.

    With overrides, the run's settings file (:func:`write_run_config`) is written for the runners
    whose children cannot inherit them as AIMS_* variables (Fabric's runMultiple)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    common: dict[str, Any] = {"aims_home": str(settings.paths.home), "run_id": run_id}
    if config_file is not None:
        common["config_file"] = str(config_file)
    run_dir = settings.paths.runs / run_id
    phases = enabled_phases(settings)
    run_config = (
        write_run_config(settings, run_id, overrides, config_file) if overrides and phases else None
    )
    return [
        PhaseTask(
            phase=phase,
            parameters={**common, **overrides},
            overrides=dict(overrides),
            output_path=run_dir / phase.notebook,
            timeout_seconds=int(settings.notebook_timeout_seconds),
            run_config=run_config,
        )
        for phase in phases
    ]


def run_pipeline(
    settings: Settings,
    run_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    runner: Runner | None = None,
    reporter: Reporter | None = None,
    config_file: str | Path | None = None,
) -> OrchestrationRun:
    """Run every enabled phase in order and write the run log; a failed phase does not raise.

    ``settings`` must already include ``overrides`` (resolve it with the same values);
    ``overrides`` is what is handed on to the phase notebooks. Read ``run.status`` / ``run.ok`` or
    call ``run.raise_for_status()``. The log is rewritten after every phase, so a run killed half
    way still leaves a log saying which phases finished.
    """
    from .state import new_run_id

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    run_id = _check_run_id(run_id or new_run_id(), "orchestration")
    runner = runner or make_runner(settings)
    reporter = reporter or LineReporter()
    started_dt = datetime.now()
    run = OrchestrationRun(
        run_id=run_id,
        start_time=_local_now(),
        environment=settings.environment.label,
        storage_format=settings.storage_format,
        config=to_jsonable(settings.pipeline_config()),
        overrides=to_jsonable(overrides),
        runner=runner.name,
        run_dir=settings.paths.runs / run_id,
    )
    tasks = plan_tasks(settings, run_id, overrides, config_file)
    if not tasks:
        raise OrchestrationError(
            "no phase is enabled",
            hint="set at least one of " + ", ".join(p.flag for p in PHASES) + " to true",
        )
    enabled = {t.phase.name for t in tasks}
    for phase in PHASES:
        if phase.name in enabled:
            run.phases.append(PhaseResult(phase.name, phase.notebook, "pending"))
        else:
            reason = f"disabled ({phase.flag}=false)"
            run.phases.append(PhaseResult(phase.name, phase.notebook, SKIPPED, reason=reason))
    run.log_path = log_path_for(settings, started_dt)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_run_log(run)
    reporter.run_started(run, tasks)
    hooks = _Hooks(settings, run, tasks, reporter)
    started = time.perf_counter()
    pending = list(tasks)
    try:
        while pending:
            results = runner.run_batch(pending, hooks)
            if not results:
                raise OrchestrationError(
                    f"runner {runner.name} ran none of the phases it was given"
                )
            attempted = {r.phase for r in results}
            pending = [t for t in pending if t.phase.name not in attempted]
            failed = next((r for r in results if r.status == FAILED), None)
            if failed is not None and not settings.continue_on_error:
                for task in pending:
                    result = run.result(task.phase.name)
                    result.status, result.started_at = SKIPPED, None
                    result.reason = (
                        f"not run: phase {failed.phase} failed and continue_on_error is false"
                    )
                pending = []
    except BaseException as exc:
        for result in run.phases:
            if result.status != "pending":
                continue
            if result.started_at and not result.ended_at:
                result.status, result.error = FAILED, execution_error(exc, result.notebook)
            else:
                result.status = SKIPPED
                result.reason = f"not run: the run was interrupted ({type(exc).__name__})"
        _finish(run, started)
        raise
    _finish(run, started)
    _refresh_dashboard(settings, run)
    reporter.run_finished(run)
    return run


def _finish(run: OrchestrationRun, started: float) -> None:
    run.finished = True
    run.end_time = _local_now()
    run.total_duration_seconds = time.perf_counter() - started
    write_run_log(run)


def _refresh_dashboard(settings: Settings, run: OrchestrationRun) -> None:
    """Re-render an existing dashboard once every phase has a status.

    Monitoring (03) writes the dashboard before Gold and BI have run; its pipeline section
    would otherwise show them pending for ever. Only a dashboard that exists is refreshed (a run
    without monitoring writes none), and a refresh that fails is a note, not a failed phase.
    """
    from . import reports  # pandas/plotly only when there is a dashboard to refresh

    if (
        not reports.dashboard_path(settings).is_file()
        or not reports.results_path(settings).is_file()
    ):
        return
    try:
        reports.write_dashboard(settings)
    except (AimsError, OSError, ValueError) as exc:
        run.notes.append(f"dashboard not refreshed after the run: {exc}")
        write_run_log(run)


def read_run_log(path: str | Path) -> dict[str, Any]:
    """Load a run log (for notebooks 03/06 and tests)."""
    return json.loads(Path(path).read_text())


def latest_run_log(settings: Settings) -> Path | None:
    """The newest orchestration log in the results folder, if any."""
    logs = sorted(
        settings.paths.results.glob(f"{LOG_PREFIX}*.json"), key=lambda p: p.stat().st_mtime
    )
    return logs[-1] if logs else None
