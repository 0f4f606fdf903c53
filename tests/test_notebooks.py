"""The notebooks as committed: valid, clean, Fabric-ready, and executable end to end with papermill.

Execution is the expensive part (a kernel per notebook, GX import in 02), so notebook 00 runs once
with every phase whose notebook exists (which executes 01-08 through the orchestrator) and 01 runs
once standalone with ``sample_size``.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import orchestration as orch
from aims_nb_utils.io import list_bronze_tables

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]_AIMS_*.ipynb"))
MINE = [
    "00_AIMS_Orchestration.ipynb",
    "01_AIMS_Data_Profiling.ipynb",
    "02_AIMS_Data_Ingestion.ipynb",
]
LOCAL_ONLY = re.compile(r"^\s*(!|%pip|%run|%conda|%cd|%%bash|%%sh)", re.MULTILINE)
# Absolute local paths, or paths into the repository, would break a notebook uploaded to Fabric.
ABSOLUTE_LOCAL = re.compile(r"""["'](/work/|/home/|/tmp/|/Users/|[A-Za-z]:\\|\.\./|notebooks/)""")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def test_the_orchestrated_notebooks_are_all_committed() -> None:
    present = {p.name for p in ALL}
    for name in MINE:
        assert name in present, f"notebooks/{name} is missing"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name[:2])
def test_notebook_is_clean_valid_and_fabric_ready(path: Path) -> None:
    nb = read(path)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = tagged(nb, "parameters")
    assert len(params) == 1, "exactly one cell must be tagged `parameters`"
    assert params[0].cell_type == "code"
    assert re.search(r"^aims_home = None", params[0].source, re.MULTILINE)
    assert re.search(r"^run_id = None", params[0].source, re.MULTILINE)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"cell {index} was committed with outputs"
        assert cell.execution_count is None, f"cell {index} was committed executed"
        assert not LOCAL_ONLY.search(cell.source), f"cell {index} uses a local-only magic"
        assert not ABSOLUTE_LOCAL.search(cell.source), f"cell {index} holds an absolute local path"


def test_orchestration_parameters_hold_every_seed_key_defaulting_to_settings() -> None:
    source = tagged(read(NOTEBOOKS / "00_AIMS_Orchestration.ipynb"), "parameters")[0].source
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the committed parameters cell, plain assignments
    config = namespace["PIPELINE_CONFIG"]
    expected = set(orch.SEED_KEYS) | {
        "run_schema_reconciliation",
        "run_silver_enhancement",
        "run_quality_insights",
    }
    assert expected <= set(config)
    assert all(value is None for value in config.values()), "None means: use the settings"
    assert namespace["aims_home"] is None and namespace["run_id"] is None


def test_profiling_notebook_does_not_validate() -> None:
    sources = "\n".join(c.source for c in read(NOTEBOOKS / "01_AIMS_Data_Profiling.ipynb").cells)
    assert not re.search(r"great_expectations|import[^\n]*\bvalidation\b|\.validation\b", sources)


# --- Fabric: the environment cell against a simulated lakehouse ---------------------------------


@pytest.fixture
def fabric_sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    lakehouse = tmp_path / "lakehouse"
    (lakehouse / "Files" / "bronze").mkdir(parents=True)
    (lakehouse / "Tables").mkdir()
    stub = tmp_path / "stub"
    (stub / "notebookutils").mkdir(parents=True)
    (stub / "notebookutils" / "__init__.py").write_text(
        '"""Stand-in for Fabric\'s notebookutils."""\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMS_")}
    env.update(
        AIMS_LAKEHOUSE_ROOT=str(lakehouse),
        PYTHONPATH=os.pathsep.join([str(stub), str(REPO)]),
        GX_ANALYTICS_ENABLED="False",
    )
    return lakehouse, env


ENVIRONMENT_NOTEBOOKS = [p for p in ALL if tagged(read(p), "environment")]


@pytest.mark.parametrize("path", ENVIRONMENT_NOTEBOOKS, ids=lambda p: p.name[:2])
def test_environment_cell_reports_fabric_and_lakehouse_paths(
    path: Path, fabric_sandbox: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    lakehouse, env = fabric_sandbox
    nb = read(path)
    code = tagged(nb, "parameters")[0].source + "\n" + tagged(nb, "environment")[0].source
    script = tmp_path / "cells.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    files, tables = lakehouse / "Files", lakehouse / "Tables"
    assert "Environment: Fabric" in out
    assert re.search(rf"Files root\s+{re.escape(str(files))}\n", out)
    assert re.search(rf"Tables root\s+{re.escape(str(tables))}\n", out)
    assert re.search(rf"bronze\s+{re.escape(str(files / 'bronze'))}\n", out)
    assert re.search(rf"silver\s+{re.escape(str(tables))}\n", out)
    assert re.search(rf"home \(AIMS_HOME\)\s+{re.escape(str(files))}\n", out)
    assert "storage format    delta" in out


# --- execution -----------------------------------------------------------------------------------


def outputs_of(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_profiling_notebook_runs_standalone_with_a_sample(fresh_home: Path, tmp_path: Path) -> None:
    nb = read(NOTEBOOKS / "01_AIMS_Data_Profiling.ipynb")
    # The kernel must never have imported Great Expectations (its import is paid per notebook).
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import sys\nassert 'great_expectations' not in sys.modules, 'profiling imported GX'"
        )
    )
    output = tmp_path / "01_out.ipynb"
    papermill.execute_notebook(
        nb,
        str(output),
        parameters={"aims_home": str(fresh_home), "sample_size": 500, "run_id": "test_run_01"},
        progress_bar=False,
        cwd=str(NOTEBOOKS),
    )
    settings = make_settings(fresh_home)
    tables = list_bronze_tables(settings.paths.bronze)
    written = sorted(p.name for p in settings.paths.rules.glob("*_validation.yml"))
    assert written == sorted(f"{t}_validation.yml" for t in tables)
    metrics = orch.read_phase_metrics(settings, "test_run_01", "profiling")
    assert metrics["files_profiled"] == len(tables) == metrics["configs_generated"]
    assert metrics["errors"] == 0 and metrics["sample_size"] == 500
    assert 0 < metrics["rows_profiled"] <= 500 * len(tables)
    assert metrics["rules_total"] >= 3 * len(tables)
    executed = outputs_of(nbformat.read(output, as_version=4))
    assert "Environment: Local" in executed
    assert "application/vnd.plotly.v1+json" in executed, "the rules-per-type chart is missing"


def test_orchestration_notebook_runs_every_present_phase(lake_home: Path, tmp_path: Path) -> None:
    home = copy_home(lake_home, tmp_path / "home")
    present = {p.name for p in ALL}
    flags = {p.flag: p.notebook in present for p in orch.PHASES}
    output = tmp_path / "00_out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "00_AIMS_Orchestration.ipynb"),
        str(output),
        parameters={
            "aims_home": str(home),
            "progress": "lines",
            "PIPELINE_CONFIG": {**flags, "max_workers": 2},
        },
        progress_bar=False,
        cwd=str(NOTEBOOKS),
    )
    settings = make_settings(home)
    logs = sorted(settings.paths.results.glob("orchestration_log_*.json"))
    assert len(logs) == 1
    log = json.loads(logs[0].read_text())
    assert log["status"] == "success" and log["environment"] == "Local"
    phases = {p["phase"]: p for p in log["phases"]}
    for phase in orch.PHASES:
        expected = "success" if flags[phase.flag] else "skipped"
        assert phases[phase.name]["status"] == expected, (phase.name, phases[phase.name])
        if expected == "success":
            assert phases[phase.name]["metrics"], f"{phase.name} reported no metrics"
            assert (settings.paths.runs / log["run_id"] / phase.notebook).is_file()
    tables = list_bronze_tables(settings.paths.bronze)
    profiling = phases["profiling"]["metrics"]
    assert profiling["files_profiled"] == len(tables) and profiling["errors"] == 0
    ingestion = phases["validation_ingestion"]["metrics"]
    summary = ingestion["validation_summary"]
    assert summary["total"] == len(tables)
    assert summary["passed"] + summary["failed"] + summary["skipped"] + summary["errors"] == len(
        tables
    )
    assert ingestion["rows_silver"] + ingestion["rows_quarantined"] == ingestion["rows_in"] > 0
    assert ingestion["rows_quarantined"] > 0, "the sample lake has defects: some rows must go"
    assert ingestion["ingestion_errors"] == 0 and ingestion["error_tables"] == []
    assert log["quality"]["pass_rate"] == summary["pass_rate"]
    executed = outputs_of(nbformat.read(output, as_version=4))
    assert "profiling SUCCESS" in executed and "validation_ingestion SUCCESS" in executed


def test_gold_and_bi_notebooks_skip_on_a_lake_without_aims_tables(tmp_path: Path) -> None:
    """Real notebooks 03, 05 and 08 on two non-AIMS tables whose every load failed: Gold and BI
    are skipped naming the missing tables, the run is a success, and the dashboard (refreshed
    after the run) shows the skips and does not read "pass rate 100 %"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aims_nb_utils import reports, state

    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(pa.table({"o_orderkey": [1, 2, 3]}), settings.paths.bronze / "orders.parquet")
    pq.write_table(pa.table({"c_custkey": [7, 8]}), settings.paths.bronze / "customer.parquet")
    files = {
        t: {"status": "PASSED", "score": 100.0, "row_count": 3, "failures": []}
        for t in ("orders", "customer")
    }
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps({"run_id": "v1", "files": files}))
    for table in files:
        load = state.start_load(settings.paths.state_db, "v1", table, state.utc_now(), 3)
        state.finish_load(
            settings.paths.state_db,
            load,
            status="error",
            error="disk full",
            ended_at=state.utc_now(),
        )
    flags = orch.selection_overrides(["monitoring", "silver_enhancement", "bi_analytics"])
    run = orch.run_pipeline(
        make_settings(settings.paths.home, **flags),
        overrides=flags,
        runner=orch.PapermillRunner(NOTEBOOKS),
        reporter=orch.LineReporter(stream=io.StringIO()),
    )
    assert run.status == "success", [(p.phase, p.status, p.error_line()) for p in run.phases]
    gold_phase, bi_phase = run.result("silver_enhancement"), run.result("bi_analytics")
    assert (gold_phase.status, bi_phase.status) == ("skipped", "skipped")
    assert gold_phase.reason.startswith("not an AIMS lake: aims_assets, aims_assetlocations")
    assert str(settings.paths.bronze) in gold_phase.reason
    assert "aims_consentmilestones, aims_noncompliances" in bi_phase.reason
    assert not settings.paths.gold.exists() or not any(settings.paths.gold.iterdir())
    assert not (settings.paths.reports / "bi_kpis.parquet").exists()
    log = json.loads(run.log_path.read_text())
    assert log["status"] == "success"
    assert log["skipped_phases"]["silver_enhancement"] == gold_phase.reason
    monitoring = run.result("monitoring").metrics
    assert (monitoring["pass_rate"], monitoring["loads_failed"]) == (0.0, 2)
    dashboard = reports.dashboard_path(settings).read_text()
    phases = dict(re.findall(r'<tr data-phase="(\w+)" data-status="(\w+)">', dashboard))
    assert phases["silver_enhancement"] == phases["bi_analytics"] == "skipped"
    assert "not an AIMS lake: aims_assets" in dashboard
    pass_rate = re.search(r'id="card-pass-rate"><div class="v">([^<]*)<', dashboard).group(1)
    assert pass_rate == "0.0%"
