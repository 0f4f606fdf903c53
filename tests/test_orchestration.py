"""Orchestration: phase list, metrics hand-off, statuses, failure handling, run logs, runners.

Phase notebooks here are tiny stand-ins written per test (record metrics, raise, forget to record,
hang) so that what is tested is the orchestrator's behaviour, in seconds; the real notebooks are
executed in tests/test_notebooks.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import SEED_KEYS, make_settings
from nbformat.v4 import new_code_cell, new_notebook

from aims_nb_utils import notebook_support as nbs
from aims_nb_utils import orchestration as orch
from aims_nb_utils.notebook_support import record_phase_metrics
from aims_nb_utils.settings import KEYS

REPO = Path(__file__).resolve().parents[1]
SKIP_TEXT = "not an AIMS lake: aims_assets, aims_routes missing in Bronze and Silver"


def write_phase_notebook(folder: Path, phase: orch.Phase, behaviour: str = "ok") -> Path:
    """A stand-in phase notebook: 'ok', 'raise', 'no_metrics', 'sleep', 'undeclared', 'skip'
    (records that it does not apply) or 'skip_then_raise'."""
    params = "aims_home = None\nrun_id = None\n"
    if behaviour != "undeclared":
        params += "dq_threshold = None\n"
    body = (
        "from aims_nb_utils import notebook_support as nbs\n"
        f"ctx = nbs.setup_notebook({phase.name!r}, aims_home=aims_home, run_id=run_id"
        + (", dq_threshold=dq_threshold" if behaviour != "undeclared" else "")
        + ", show=False)\n"
    )
    if behaviour in ("skip", "skip_then_raise"):
        body += f"ctx.record_skip({SKIP_TEXT!r}, {{'tables': 0}})\n"
        if behaviour == "skip_then_raise":
            body += "raise RuntimeError('broke after the skip')\n"
        behaviour = "no_metrics"  # the skip is the metrics
    if behaviour == "raise":
        body += "raise ValueError('bronze file aims_assets.parquet is truncated')\n"
    if behaviour == "sleep":
        body += "import time\ntime.sleep(30)\n"
    if behaviour != "no_metrics":
        body += (
            f"nbs.record_phase_metrics(ctx.settings, ctx.run_id, {phase.name!r}, "
            "{'tables': 3, 'dq_threshold_seen': ctx.settings.dq_threshold})\n"
        )
    nb = new_notebook(
        cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / phase.notebook
    nbformat.write(nb, path)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return folder


def three_phase_settings(home: Path, **overrides: Any):
    """Only profiling, ingestion and monitoring enabled (what the stand-ins provide)."""
    flags = orch.selection_overrides(["profiling", "ingestion", "monitoring"])
    return make_settings(home, **flags, **overrides), {**flags, **overrides}


class QuietReporter(orch.LineReporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def _print(self, text: str) -> None:
        self.lines.append(text)


# --- phase list and metrics contract ----------------------------------------------------------


def test_phase_list_covers_notebooks_01_to_08_and_every_flag_is_a_setting() -> None:
    assert [p.number for p in orch.PHASES] == [f"{i:02d}" for i in range(1, 9)]
    for phase in orch.PHASES:
        assert phase.flag in KEYS, phase
        assert phase.notebook.startswith(phase.number + "_AIMS_")
    assert SEED_KEYS <= set(KEYS)
    assert set(orch.SEED_KEYS) == SEED_KEYS
    assert {p.name for p in orch.PHASES if p.optional} == {
        "schema_reconciliation",
        "silver_enhancement",
        "quality_insights",
    }
    # Aliases, numbers and notebook names resolve to the same phase.
    assert (
        orch.get_phase("ingestion")
        is orch.get_phase("02")
        is orch.get_phase("02_AIMS_Data_Ingestion.ipynb")
    )
    with pytest.raises(orch.OrchestrationError, match="validation_ingestion"):
        orch.get_phase("ingest_everything")


def test_record_phase_metrics_writes_json_merges_and_converts(home: Path) -> None:
    settings = make_settings(home)
    path = record_phase_metrics(
        settings,
        "20250101_000000_abcdef",
        "ingestion",
        {
            "rows_silver": np.int64(41_000),
            "score": np.float64("nan"),
            "when": pd.Timestamp("2025-01-01"),
            "per_worker": np.array([1, 2]),
        },
    )
    assert (
        path == settings.paths.runs / "20250101_000000_abcdef" / "validation_ingestion_metrics.json"
    )
    record_phase_metrics(settings, "20250101_000000_abcdef", "02", {"rows_quarantined": 17})
    document = json.loads(path.read_text())
    assert document["phase"] == "validation_ingestion"
    assert document["metrics"] == {
        "rows_silver": 41_000,
        "score": None,
        "when": "2025-01-01T00:00:00",
        "per_worker": [1, 2],
        "rows_quarantined": 17,
    }
    assert not list(path.parent.glob("*.tmp-*")), "atomic write left a temporary file"
    assert (
        orch.read_phase_metrics(settings, "20250101_000000_abcdef", "02")["rows_silver"] == 41_000
    )


def test_record_phase_metrics_refuses_what_would_break_the_contract(home: Path) -> None:
    settings = make_settings(home)
    with pytest.raises(orch.PhaseMetricsError, match="unknown phase.*monitoring"):
        record_phase_metrics(settings, "run1", "monitor", {})
    with pytest.raises(orch.PhaseMetricsError, match="not a valid run id"):
        record_phase_metrics(settings, "../../etc", "profiling", {})
    with pytest.raises(orch.PhaseMetricsError, match=r"metrics\.frame is a DataFrame"):
        record_phase_metrics(settings, "run1", "profiling", {"frame": pd.DataFrame({"a": [1]})})
    assert not settings.paths.runs.exists() or not list(settings.paths.runs.rglob("*.json"))


# --- local runs through papermill ---------------------------------------------------------------


def test_successful_run_records_metrics_log_and_executed_notebooks(
    home: Path, notebooks: Path
) -> None:
    for phase in orch.PHASES[:3]:
        write_phase_notebook(notebooks, phase, "undeclared" if phase.name == "monitoring" else "ok")
    settings, overrides = three_phase_settings(home, dq_threshold=91.5)
    reporter = QuietReporter()
    run = orch.run_pipeline(
        settings,
        overrides=overrides,
        runner=orch.PapermillRunner(notebooks),
        reporter=reporter,
    )
    assert run.ok and run.status == "success"
    statuses = {p.phase: p.status for p in run.phases}
    assert [statuses[n] for n in ("profiling", "validation_ingestion", "monitoring")] == [
        "success"
    ] * 3
    assert all(statuses[p.name] == "skipped" for p in orch.PHASES[3:])

    log = json.loads(run.log_path.read_text())
    assert re.fullmatch(r"orchestration_log_\d{8}_\d{6}\.json", run.log_path.name)
    assert run.log_path.parent == settings.paths.results
    assert {
        "run_id",
        "start_time",
        "end_time",
        "total_duration_seconds",
        "environment",
        "storage_format",
        "config",
        "status",
        "phases",
    } <= set(log)
    assert log["status"] == "success" and log["environment"] == "Local"
    assert SEED_KEYS <= set(log["config"]) and log["config"]["dq_threshold"] == 91.5
    first = log["phases"][0]
    assert set(first) >= {"phase", "notebook", "status", "duration_seconds", "error", "metrics"}
    assert first["duration_seconds"] > 0
    # The override reached a notebook declaring it (parameter) and one that does not (AIMS_*).
    seen = {p["phase"]: p["metrics"]["dq_threshold_seen"] for p in log["phases"][:3]}
    assert seen == {"profiling": 91.5, "validation_ingestion": 91.5, "monitoring": 91.5}
    skipped = log["phases"][3]
    assert skipped["reason"] == "disabled (run_schema_reconciliation=false)"
    for phase in orch.PHASES[:3]:
        executed = nbformat.read(run.run_dir / phase.notebook, as_version=4)
        assert executed.metadata["papermill"]["parameters"]["run_id"] == run.run_id
    assert any("[3/3] monitoring SUCCESS" in line for line in reporter.lines)
    assert "AIMS_DQ_THRESHOLD" not in os.environ, "overrides exported to kernels must be restored"


def test_failed_phase_stops_the_run_and_the_log_names_cell_and_exception(
    home: Path, notebooks: Path
) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0])
    write_phase_notebook(notebooks, orch.PHASES[1], "raise")
    write_phase_notebook(notebooks, orch.PHASES[2])
    settings, overrides = three_phase_settings(home)
    reporter = QuietReporter()
    run = orch.run_pipeline(
        settings, overrides=overrides, runner=orch.PapermillRunner(notebooks), reporter=reporter
    )
    assert run.status == "failed" and not run.ok
    log = json.loads(run.log_path.read_text())
    phases = {p["phase"]: p for p in log["phases"]}
    assert log["status"] == "failed"
    assert phases["profiling"]["status"] == "success"
    error = phases["validation_ingestion"]["error"]
    assert phases["validation_ingestion"]["status"] == "failed"
    assert error["notebook"] == "02_AIMS_Data_Ingestion.ipynb"
    assert error["ename"] == "ValueError"
    assert error["evalue"] == "bronze file aims_assets.parquet is truncated"
    source = nbformat.read(notebooks / "02_AIMS_Data_Ingestion.ipynb", as_version=4)
    assert "raise ValueError" in source.cells[error["cell_index"]].source
    executed = nbformat.read(run.run_dir / "02_AIMS_Data_Ingestion.ipynb", as_version=4)
    failed_cell = next(c for c in executed.cells if c.get("execution_count") == error["exec_count"])
    assert "ValueError" in json.dumps(failed_cell.outputs)
    assert phases["monitoring"]["status"] == "skipped"
    assert phases["monitoring"]["reason"] == (
        "not run: phase validation_ingestion failed and continue_on_error is false"
    )
    assert not (run.run_dir / "03_AIMS_Monitoring.ipynb").exists()
    printed = "\n".join(reporter.lines)
    assert (
        "validation_ingestion FAILED" in printed and "aims_assets.parquet is truncated" in printed
    )
    with pytest.raises(orch.PipelineFailedError, match="validation_ingestion"):
        run.raise_for_status()


def test_continue_on_error_runs_later_phases_but_the_run_still_fails(
    home: Path, notebooks: Path
) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0], "raise")
    write_phase_notebook(notebooks, orch.PHASES[1], "no_metrics")
    write_phase_notebook(notebooks, orch.PHASES[2])
    settings, overrides = three_phase_settings(home, continue_on_error=True)
    run = orch.run_pipeline(
        settings,
        overrides=overrides,
        runner=orch.PapermillRunner(notebooks),
        reporter=QuietReporter(),
    )
    statuses = [run.result(n).status for n in ("profiling", "ingestion", "monitoring")]
    assert statuses == ["failed", "failed", "success"]
    missing = run.result("ingestion").error
    assert missing["ename"] == "PhaseMetricsMissing"
    assert "record_phase_metrics" in missing["evalue"]
    assert run.result("monitoring").metrics["tables"] == 3
    assert run.status == "failed"
    assert json.loads(run.log_path.read_text())["status"] == "failed"


def test_a_hanging_cell_is_stopped_by_the_explicit_timeout(home: Path, notebooks: Path) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0], "sleep")
    settings = make_settings(home, notebook_timeout_seconds=2, **orch.selection_overrides(["01"]))
    run = orch.run_pipeline(
        settings, runner=orch.PapermillRunner(notebooks), reporter=QuietReporter()
    )
    result = run.result("profiling")
    assert result.status == "failed"
    assert "Timeout" in result.error["ename"] or "timed out" in result.error["evalue"].lower()
    assert result.duration_seconds < 25


def test_no_enabled_phase_and_missing_notebook_are_reported(home: Path, notebooks: Path) -> None:
    settings = make_settings(home, **{p.flag: False for p in orch.PHASES})
    with pytest.raises(orch.OrchestrationError, match="no phase is enabled"):
        orch.run_pipeline(
            settings, runner=orch.PapermillRunner(notebooks), reporter=QuietReporter()
        )
    settings = make_settings(home, **orch.selection_overrides(["bi"]))
    run = orch.run_pipeline(
        settings, runner=orch.PapermillRunner(notebooks), reporter=QuietReporter()
    )
    error = run.result("bi").error
    assert (
        error["ename"] == "NotebookNotFound" and "08_AIMS_Business_Intelligence" in error["evalue"]
    )


def test_run_all_exit_codes_follow_the_phase_outcomes(home: Path, notebooks: Path) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0])
    write_phase_notebook(notebooks, orch.PHASES[1], "raise")
    base = [
        sys.executable,
        str(REPO / "run_all.py"),
        "--home",
        str(home),
        "--notebooks-dir",
        str(notebooks),
    ]
    ok = subprocess.run(
        [*base, "--phases", "profiling"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "profiling SUCCESS" in ok.stdout and "run log:" in ok.stdout
    failed = subprocess.run(
        [*base, "--phases", "profiling,ingestion", "--set", "dq_threshold=90"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert "validation_ingestion FAILED" in failed.stdout
    assert "ValueError: bronze file aims_assets.parquet is truncated" in failed.stdout
    bad = subprocess.run([*base, "--set", "dq_threshold=0.9x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "dq_threshold" in bad.stderr
    logs = sorted(Path(home, "config", "validation_results").glob("orchestration_log_*.json"))
    assert len(logs) == 2, "each run writes its own log, never overwriting another"
    assert {json.loads(p.read_text())["status"] for p in logs} == {"success", "failed"}


# --- Fabric -------------------------------------------------------------------------------------


class StandInNotebookutils:
    """Records runMultiple calls and plays Fabric: activities 'run' in order, writing metrics."""

    def __init__(self, settings, fail: set[str] = frozenset()) -> None:
        self.settings = settings
        self.fail = set(fail)
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.notebook = self

    def runMultiple(self, dag: dict[str, Any], config: dict[str, Any] | None = None):  # noqa: N802
        self.calls.append((json.loads(json.dumps(dag)), config))
        results: dict[str, Any] = {}
        failed = False
        for activity in dag["activities"]:
            if failed:
                continue  # dependents of a failed activity never start
            if activity["name"] in self.fail:
                results[activity["name"]] = {
                    "exitVal": None,
                    "exception": RuntimeError("cell 3 failed"),
                }
                failed = True
                continue
            record_phase_metrics(
                self.settings, activity["args"]["run_id"], activity["name"], {"ran": True}
            )
            results[activity["name"]] = {"exitVal": "", "exception": None}
        if failed:
            error = RuntimeError("some activities failed")
            error.result = results  # type: ignore[attr-defined]
            raise error
        return results


def test_fabric_runner_builds_one_dag_in_phase_order_with_explicit_timeouts(home: Path) -> None:
    settings = make_settings(
        home, notebook_timeout_seconds=1800, dq_threshold=90, run_monitoring=False
    )
    stand_in = StandInNotebookutils(settings)
    run = orch.run_pipeline(
        settings,
        run_id="20250101_000000_fab001",
        overrides={"dq_threshold": 90, "run_monitoring": False},
        runner=orch.FabricRunner(stand_in),
        reporter=QuietReporter(),
    )
    assert run.ok
    assert len(stand_in.calls) == 1
    dag, config = stand_in.calls[0]
    assert config == {"displayDAGViaGraphviz": False}
    names = [a["name"] for a in dag["activities"]]
    assert names == [p.name for p in orch.PHASES if p.name != "monitoring"]
    assert [a["path"] for a in dag["activities"]][:2] == [
        "01_AIMS_Data_Profiling",
        "02_AIMS_Data_Ingestion",
    ]
    assert dag["activities"][0]["dependencies"] == []
    for previous, activity in zip(dag["activities"], dag["activities"][1:], strict=False):
        assert activity["dependencies"] == [previous["name"]]
    assert {a["timeoutPerCellInSeconds"] for a in dag["activities"]} == {1800}
    assert dag["timeoutInSeconds"] == 1800 * len(names)
    run_config = settings.paths.runs / "20250101_000000_fab001" / "pipeline.yaml"
    assert dag["activities"][0]["args"] == {
        "aims_home": str(settings.paths.home),
        "run_id": "20250101_000000_fab001",
        "dq_threshold": 90,
        "run_monitoring": False,
        "config_file": str(run_config),
    }
    assert run.result("monitoring").status == "skipped"
    assert all(run.result(n).metrics == {"ran": True} for n in names)


@pytest.mark.parametrize("continue_on_error", [False, True])
def test_fabric_failure_skips_or_resubmits_the_remaining_phases(
    home: Path, continue_on_error: bool
) -> None:
    settings = make_settings(home, continue_on_error=continue_on_error)
    stand_in = StandInNotebookutils(settings, fail={"monitoring"})
    run = orch.run_pipeline(settings, runner=orch.FabricRunner(stand_in), reporter=QuietReporter())
    monitoring = run.result("monitoring")
    assert monitoring.status == "failed"
    assert monitoring.error["evalue"] == "cell 3 failed"
    assert run.result("profiling").status == run.result("ingestion").status == "success"
    later = [run.result(p.name) for p in orch.PHASES[3:]]
    if continue_on_error:
        assert len(stand_in.calls) == 2
        resubmitted = stand_in.calls[1][0]["activities"]
        assert resubmitted[0]["name"] == "schema_reconciliation"
        assert resubmitted[0]["dependencies"] == []
        assert all(r.status == "success" for r in later)
    else:
        assert len(stand_in.calls) == 1
        assert all(r.status == "skipped" and "monitoring failed" in r.reason for r in later)
    assert run.status == "failed"


def _declared(notebook: Path) -> tuple[str, set[str]]:
    """The notebook's parameters cell and the names it assigns."""
    cells = nbformat.read(notebook, as_version=4).cells
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return source, {k for k in namespace if not k.startswith("__")}


def _child_settings(notebook: Path, injected: Mapping[str, Any], exported: Mapping[str, Any]):
    """What the real phase notebook resolves: its parameters cell, the values the runner injects
    (only the declared ones reach it), then its environment cell, with ``exported`` as the AIMS_*
    variables of its kernel."""
    source, declared = _declared(notebook)
    cells = nbformat.read(notebook, as_version=4).cells
    setup = next(c.source for c in cells if "setup_notebook(" in c.source)
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    namespace.update({k: v for k, v in injected.items() if k in declared})
    with orch.exported_overrides(exported):
        exec(setup, namespace)
    return namespace["ctx"].settings


def test_overrides_reach_every_runmultiple_child_exactly_as_under_papermill(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Notebook 00's overrides reach a papermill child as AIMS_* variables of its kernel; a
    runMultiple child inherits no variable and gets only the parameters it declares (04 declares
    no max_workers). Every child of the submitted DAG must resolve the settings a papermill child
    resolves, with the run's pipeline.yaml under them kept."""
    (home / "config").mkdir(parents=True)
    (home / "config" / "pipeline.yaml").write_text("sample_size: 5000\ndrift_policy: quarantine\n")
    overrides = {
        "max_workers": 3,
        "dq_threshold": 91.5,
        "force_reprocess": True,
        "null_placeholders": ["N/A", "-"],
        "drift_row_count_threshold": 7.5,
        "quarantine": str(home / "elsewhere" / "quarantine"),
    }
    settings = make_settings(home, **overrides)
    stand_in = StandInNotebookutils(settings)
    run = orch.run_pipeline(
        settings,
        run_id="20250101_000000_fab002",
        overrides=overrides,
        runner=orch.FabricRunner(stand_in),
        reporter=QuietReporter(),
    )
    assert run.ok
    dag = stand_in.calls[0][0]
    tasks = {t.phase.name: t for t in orch.plan_tasks(settings, run.run_id, overrides)}
    assert [a["name"] for a in dag["activities"]] == list(tasks)
    for activity in dag["activities"]:
        notebook = REPO / "notebooks" / f"{activity['path']}.ipynb"
        fabric = _child_settings(notebook, activity["args"], exported={})
        task = tasks[activity["name"]]
        papermill = _child_settings(notebook, task.parameters, exported=task.overrides)
        assert fabric.values == papermill.values, activity["name"]
        assert fabric.paths == papermill.paths, activity["name"]
        assert fabric.max_workers == 3 and fabric.dq_threshold == 91.5
        assert fabric.null_placeholders == ["N/A", "-"] and fabric.force_reprocess is True
        assert fabric.paths.quarantine == home / "elsewhere" / "quarantine"
        assert fabric.sample_size == 5000 and fabric.drift_policy == "quarantine"  # the base file
    capsys.readouterr()


class ValidatingNotebookutils(StandInNotebookutils):
    def __init__(self, settings, valid: bool | Exception) -> None:
        super().__init__(settings)
        self.valid = valid
        self.order: list[str] = []

    def validateDAG(self, dag: dict[str, Any]) -> bool:  # noqa: N802
        self.order.append("validateDAG")
        assert [a["name"] for a in dag["activities"]]  # the DAG that will be submitted
        if isinstance(self.valid, Exception):
            raise self.valid
        return self.valid

    def runMultiple(self, dag: dict[str, Any], config: dict[str, Any] | None = None):  # noqa: N802
        self.order.append("runMultiple")
        return super().runMultiple(dag, config)


def test_the_dag_is_validated_before_it_is_submitted(home: Path) -> None:
    settings = make_settings(home)
    stand_in = ValidatingNotebookutils(settings, valid=True)
    run = orch.run_pipeline(settings, runner=orch.FabricRunner(stand_in), reporter=QuietReporter())
    assert run.ok and stand_in.order == ["validateDAG", "runMultiple"]


@pytest.mark.parametrize(
    "verdict", [False, RuntimeError("Notebook 04_AIMS_Schema_Reconciliation not found")]
)
def test_an_invalid_dag_is_never_submitted_and_fails_the_run_saying_why(
    home: Path, verdict: Any
) -> None:
    settings = make_settings(home)
    stand_in = ValidatingNotebookutils(settings, valid=verdict)
    run = orch.run_pipeline(settings, runner=orch.FabricRunner(stand_in), reporter=QuietReporter())
    assert stand_in.order == ["validateDAG"] and not stand_in.calls
    assert run.status == "failed"
    first = run.result("profiling")
    assert first.status == "failed" and first.error["ename"] == "InvalidDAG"
    assert "01_AIMS_Data_Profiling" in first.error["evalue"]
    assert "import every phase notebook" in first.error["evalue"]
    if isinstance(verdict, Exception):
        assert "04_AIMS_Schema_Reconciliation not found" in first.error["evalue"]
    later = [run.result(p.name) for p in orch.PHASES[1:]]
    assert all(r.status == "skipped" and "profiling failed" in r.reason for r in later)
    log = json.loads(run.log_path.read_text())
    assert log["status"] == "failed"


def test_make_runner_picks_fabric_only_inside_fabric(home: Path, notebooks: Path) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0])
    settings = make_settings(home)
    runner = orch.make_runner(settings, notebooks_dir=notebooks)
    assert isinstance(runner, orch.PapermillRunner)
    if "notebookutils" not in sys.modules:
        with pytest.raises(orch.OrchestrationError, match="only inside Fabric"):
            orch.make_runner(settings, runner="fabric")


def test_the_papermill_runner_without_the_local_tools_says_what_to_install(
    home: Path, notebooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0])
    real_find_spec = orch.importlib.util.find_spec
    monkeypatch.setattr(
        orch.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "papermill" else real_find_spec(name, *a),
    )
    with pytest.raises(orch.OrchestrationError, match=r"aims-nb-utils\[local\]"):
        orch.make_runner(make_settings(home), runner="papermill", notebooks_dir=notebooks)


def test_widget_progress_shows_position_and_turns_red_on_failure(capsys) -> None:
    reporter = nbs.progress_reporter("widgets")
    assert isinstance(reporter, nbs.WidgetReporter)
    assert isinstance(nbs.progress_reporter("auto"), orch.LineReporter)  # not in a kernel
    phase = orch.get_phase("02")
    task = orch.PhaseTask(phase, {}, {}, Path("x.ipynb"), 60)
    reporter.bar.max = 3
    reporter.phase_started(2, 3, task)
    assert "validation_ingestion" in reporter.status.value
    failed = orch.PhaseResult(
        phase.name, phase.notebook, "failed", 1.5, {"ename": "KeyError", "evalue": "'ID'"}
    )
    reporter.phase_finished(2, 3, failed)
    assert reporter.bar.value == 2 and reporter.bar.bar_style == "danger"
    assert "KeyError" in reporter.status.value
    assert "[2/3] validation_ingestion FAILED in 1.5s" in capsys.readouterr().out
    with pytest.raises(orch.OrchestrationError, match="progress mode"):
        nbs.progress_reporter("fancy")


def test_plan_shows_which_phases_run_and_which_setting_decided(home: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "run_all.py"),
            "--home",
            str(home),
            "--plan",
            "--phases",
            "01,gold",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[2:]}
    assert rows["profiling"][2] == "True" and rows["silver_enhancement"][2] == "True"
    assert rows["validation_ingestion"][2:4] == ["False", "run_ingestion=false"]
    assert not (home / "config").exists(), "--plan must not run or write anything"


# --- phases that do not apply -------------------------------------------------------------------


def test_a_phase_that_does_not_apply_is_skipped_with_its_reason_and_the_run_succeeds(
    home: Path, notebooks: Path
) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0])
    write_phase_notebook(notebooks, orch.PHASES[1], "skip")
    write_phase_notebook(notebooks, orch.PHASES[2])
    settings, overrides = three_phase_settings(home)
    reporter = QuietReporter()
    run = orch.run_pipeline(
        settings, overrides=overrides, runner=orch.PapermillRunner(notebooks), reporter=reporter
    )
    statuses = [run.result(n).status for n in ("profiling", "ingestion", "monitoring")]
    assert statuses == ["success", "skipped", "success"]  # a skip does not stop the run
    skipped = run.result("ingestion")
    assert skipped.reason == SKIP_TEXT and skipped.error is None
    assert skipped.metrics["tables"] == 0  # the figures recorded with the skip are kept
    assert run.status == "success" and run.ok
    log = json.loads(run.log_path.read_text())
    assert log["status"] == "success"
    assert log["skipped_phases"]["validation_ingestion"] == SKIP_TEXT
    logged = {p["phase"]: p for p in log["phases"]}["validation_ingestion"]
    assert (logged["status"], logged["reason"]) == ("skipped", SKIP_TEXT)
    text = "\n".join(reporter.lines)
    assert "validation_ingestion SKIPPED" in text and SKIP_TEXT in text
    summary = {r["phase"]: r for r in run.summary_rows()}["validation_ingestion"]
    assert (summary["status"], summary["details"]) == ("skipped", SKIP_TEXT)


def test_an_error_after_a_recorded_skip_fails_the_phase(home: Path, notebooks: Path) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0], "skip_then_raise")
    overrides = orch.selection_overrides(["profiling"])
    settings = make_settings(home, **overrides)
    run = orch.run_pipeline(
        settings,
        overrides=overrides,
        runner=orch.PapermillRunner(notebooks),
        reporter=QuietReporter(),
    )
    result = run.result("profiling")
    assert result.status == "failed" and result.error["ename"] == "RuntimeError"
    assert run.status == "failed"


def test_a_skip_needs_a_reason(home: Path) -> None:
    settings = make_settings(home)
    for bad in ("", "  ", 3):
        with pytest.raises(orch.PhaseMetricsError, match="skip_reason must be a non-empty text"):
            record_phase_metrics(settings, "r1", "gold", {orch.SKIP_KEY: bad})
    with pytest.raises(orch.PhaseMetricsError, match="needs a reason"):
        orch.phase_skip("")
    # None says "the phase applied": the status is then computed as usual
    record_phase_metrics(settings, "r1", "gold", {orch.SKIP_KEY: None, "fact_rows": 5})
    assert orch.skip_reason(orch.read_phase_metrics(settings, "r1", "gold")) is None


def test_run_all_exits_0_when_phases_succeed_or_are_skipped(home: Path, notebooks: Path) -> None:
    write_phase_notebook(notebooks, orch.PHASES[0], "skip")
    write_phase_notebook(notebooks, orch.PHASES[1])
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "run_all.py"),
            "--home",
            str(home),
            "--notebooks-dir",
            str(notebooks),
            "--phases",
            "profiling,ingestion",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "profiling SKIPPED" in done.stdout and SKIP_TEXT in done.stdout
    # the run's own line: skipped phases do not fail it
    assert re.search(r"^run \S+: SUCCESS in", done.stdout, re.MULTILINE), done.stdout
