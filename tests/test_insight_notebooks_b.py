"""Notebooks 04 (schema reconciliation), 05 (Silver -> Gold) and 08 (BI) executed with papermill.

Two homes share the module: a *prepared* one (rule files, Silver for the tables Gold and BI read,
a previous drift snapshot and a Bronze change since) and a *first-run* one (Bronze only: no rule
files, no history, no Silver), where 04 still runs and says there is nothing to compare with,
while 05 and 08 stop with an error naming the Silver tables to load first (never an empty Gold
or empty KPIs under a success). Each executed kernel is checked not to have imported Great
Expectations.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import bi, drift, gold, storage
from aims_nb_utils import orchestration as orch
from aims_nb_utils.ingestion import ingest_tables
from aims_nb_utils.io import list_bronze_tables
from aims_nb_utils.profiling import profile_tables

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NB04 = "04_AIMS_Schema_Reconciliation.ipynb"
NB05 = "05_AIMS_Silver_Data_Enhancement.ipynb"
NB08 = "08_AIMS_Business_Intelligence.ipynb"
GOLD_SOURCES = list(gold.SOURCE_TABLES) + ["aims_consentmilestones", "aims_noncompliances"]
PLOTLY = "application/vnd.plotly.v1+json"


def execute(name: str, home: Path, out_dir: Path, run_id: str) -> str:
    """Run a notebook as committed (plus a no-GX assertion); return all its text outputs."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import sys\nassert 'great_expectations' not in sys.modules, 'this notebook imported GX'"
        )
    )
    output = out_dir / name
    papermill.execute_notebook(
        nb,
        str(output),
        parameters={"aims_home": str(home), "run_id": run_id},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOKS),
    )
    executed = nbformat.read(output, as_version=4)
    texts = []
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.extend(str(v) for v in out.get("data", {}).values())
            if PLOTLY in out.get("data", {}):
                texts.append(PLOTLY)
    return "\n".join(texts)


@pytest.fixture(scope="module")
def prepared(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nb_b")
    home = copy_home(lake_home, root / "home")
    settings = make_settings(home)
    profile_tables(settings, max_workers=1)
    run = ingest_tables(settings, tables=GOLD_SOURCES)
    assert run.summary["errors"] == 0, run.to_dict()
    drift.reconcile(settings, run_id="previous", write=False)  # the earlier run's snapshot
    stages = settings.paths.bronze_file("aims_stages")
    data = pq.read_table(stages)
    pq.write_table(data.append_column("NEWFLAG", pa.array(["0"] * data.num_rows)), stages)
    outputs = {}
    for name in (NB04, NB05, NB08):
        outputs[name] = execute(name, home, root, run_id="nbrun")
    return settings, outputs


@pytest.fixture(scope="module")
def first_run(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Bronze only. 04 applies and runs; 05 and 08 apply to this AIMS lake but have no Silver to
    read, so each stops with its reason (the text of the raised error, kept here)."""
    root = tmp_path_factory.mktemp("nb_b_first")
    home = copy_home(lake_home, root / "home")
    outputs = {}
    for name in (NB04, NB05, NB08):
        try:
            outputs[name] = execute(name, home, root, run_id="first")
        except papermill.PapermillExecutionError as exc:
            outputs[name] = f"{exc.ename}: {exc.evalue}"
    return make_settings(home), outputs


def test_schema_reconciliation_notebook_reports_the_change(prepared) -> None:
    settings, outputs = prepared
    metrics = orch.read_phase_metrics(settings, "nbrun", "schema_reconciliation")
    assert metrics["previous_run_id"] == "previous" and not metrics["first_run"]
    assert metrics["columns_added"] == 1 and metrics["tables_with_drift"] == 1
    assert metrics["tables"] == len(list_bronze_tables(settings.paths.bronze))
    report = json.loads(Path(metrics["reports"]["json"]).read_text())
    assert report["tables"]["aims_stages"]["added"] == "NEWFLAG"
    assert report["tables"]["aims_stages"]["vs_rules_extra"] == "NEWFLAG"
    assert Path(metrics["reports"]["html"]).is_file()
    assert "NEWFLAG" in outputs[NB04] and PLOTLY in outputs[NB04]


def test_gold_notebook_builds_an_integral_star(prepared) -> None:
    settings, outputs = prepared
    metrics = orch.read_phase_metrics(settings, "nbrun", "silver_enhancement")
    assert metrics["status"] == "success" and metrics["integrity_passed"] is True
    assert metrics["orphan_fact_rows"] == 0
    fact = storage.read_table(settings, "gold", gold.FACT, columns=["ASSET_ID"])
    assert metrics["fact_rows"] == fact.num_rows > 0
    assets = storage.read_table(settings, "silver", "aims_assets", columns=["ID"]).to_pandas()
    locations = storage.read_table(settings, "silver", "aims_assetlocations", columns=["ASSETID"])
    joined = assets.merge(locations.to_pandas(), left_on="ID", right_on="ASSETID", how="left")
    assert fact.num_rows == len(joined)
    assert "Integrity: passed" in outputs[NB05] and PLOTLY in outputs[NB05]


def test_bi_notebook_exports_kpis(prepared) -> None:
    settings, outputs = prepared
    metrics = orch.read_phase_metrics(settings, "nbrun", "bi_analytics")
    assets = storage.read_table(settings, "silver", "aims_assets", columns=["ID"])
    assert metrics["assets_total"] == assets.num_rows
    exported = pq.read_table(metrics["exports"]["parquet"])
    assert exported.schema == bi.KPI_SCHEMA and exported.num_rows == metrics["kpi_rows"] > 0
    assert Path(metrics["exports"]["csv"]).is_file()
    assert outputs[NB08].count(PLOTLY) >= 8


def test_first_run_notebooks_say_what_is_missing(first_run) -> None:
    """A first run (no Silver yet): drift compares with nothing and says so; Gold and BI do not
    build an empty star or empty KPIs under a success, they stop naming the Silver tables to
    load and the command that loads them, and no Gold table is written."""
    settings, outputs = first_run
    m04 = orch.read_phase_metrics(settings, "first", "schema_reconciliation")
    tables = list_bronze_tables(settings.paths.bronze)
    assert m04["first_run"] and m04["tables_without_rule_file"] == len(tables)
    assert "no previous run to compare yet" in outputs[NB04]
    assert outputs[NB05].startswith("GoldSourceError: Gold cannot be built: Silver has no rows")
    for source in set(gold.SOURCE_TABLES) - set(gold.REFERENCE_SOURCES):  # the ones Gold needs
        assert source in outputs[NB05], source
    assert "ingest-all" in outputs[NB05]
    assert not any(storage.table_exists(settings, "gold", name) for name in gold.GOLD_TABLES)
    assert outputs[NB08].startswith("BiSourceError"), outputs[NB08]
    assert "ingest-all" in outputs[NB08] or "build-gold" in outputs[NB08]
