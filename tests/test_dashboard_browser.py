"""The HTML dashboard in a real headless Chromium, and notebooks 03, 06, 07 run by papermill.

A dashboard is only useful if it renders where nobody has network access: these tests open the
file offline in Debian's Chromium and look at what plotly actually drew. The notebook tests share
one lake prepared like a real pipeline (profile, validate, run the notebooks on the first run; then
change Bronze, validate and ingest again, and run them once more), so the browser finally opens the
dashboard the notebooks wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import modeling, reports, state

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
MONITORING, INSIGHTS, MODELING = (
    "03_AIMS_Monitoring.ipynb",
    "06_AIMS_Data_Quality_Insights.ipynb",
    "07_AIMS_DQ_Matrix_and_Modeling.ipynb",
)
CHROMIUM_CANDIDATES = ("/usr/bin/chromium",)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
INSTALL_HINT = (
    "install it with `apt-get update && apt-get install -y chromium` (Debian; .ci/run does this "
    "before `make test`); the dashboard must be checked in a real browser, so this test fails "
    "instead of skipping"
)

# What every plotly graph on the page holds once rendered: its traces' point counts and how many
# marks were drawn for them (svg paths of bars/lines/markers, the heat-map's image); the modebar's
# icons are svg paths too, so only paths inside traces count.
_PLOTS_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(el => ({
    id: el.id,
    rendered: el.classList.contains('js-plotly-plot') && !!el._fullLayout,
    traces: (el.data || []).map(t => ({
        type: t.type || 'scatter',
        points: Math.max(...['x', 'y', 'z'].map(k => (t[k] && t[k].length) || 0)),
    })),
    marks: el.querySelectorAll('.cartesianlayer .trace path, .hm image').length,
}))"""


def chromium_path(candidates: Iterable[str] = CHROMIUM_CANDIDATES) -> str:
    """The Chromium binary, or a test failure that says how to install it."""
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    pytest.fail(f"Chromium not found at {', '.join(candidates)}: {INSTALL_HINT}", pytrace=False)


def render(path: Path) -> dict[str, Any]:
    """Open ``path`` offline in headless Chromium; return plots, console errors and requests."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".every(el => el._fullLayout)",
                timeout=30_000,
            )
            plots = page.evaluate(_PLOTS_JS)
            text = page.inner_text("body")
        finally:
            browser.close()
    return {"plots": plots, "errors": errors, "requests": requests, "text": text}


def assert_rendered(page: dict[str, Any], expected_ids: set[str], source: Path) -> None:
    plots = {p["id"]: p for p in page["plots"]}
    assert page["errors"] == [], f"console errors on {source}: {page['errors']}"
    assert page["requests"] == [source.as_uri()], "the dashboard must not fetch anything"
    assert expected_ids <= set(plots), f"missing figures: {expected_ids - set(plots)}"
    for plot_id, plot in plots.items():
        assert plot["rendered"], f"{plot_id} was not rendered by plotly"
        assert plot["traces"] and all(t["points"] > 0 for t in plot["traces"]), plot
        assert plot["marks"] > 0, f"{plot_id} drew nothing: {plot}"


# --- a dashboard built from a small known history --------------------------------------------


def _known_lake(home: Path) -> Path:
    settings = make_settings(home)
    bronze = settings.paths.bronze
    bronze.mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    db = settings.paths.state_db
    rows = {"aims_assets": [1000, 1000, 1010, 990, 200], "aims_routes": [50, 50, 50, 50, 50]}
    for table in rows:
        pq.write_table(pa.table({"ID": ["1"]}), settings.paths.bronze_file(table))
    runs = [f"2025010{i + 1}_000000_abcdef" for i in range(5)]
    for i, run_id in enumerate(runs):
        at = f"2025-01-0{i + 1}T00:00:00+00:00"
        state.record_table_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": at,
                    "table_name": t,
                    "status": "PASSED",
                    "row_count": counts[i],
                    "quality_score": 95.0 - i if t == "aims_assets" else 80.0,
                    "completeness": 100.0,
                    "validity": 90.0,
                    "consistency": 70.0 + i,
                }
                for t, counts in rows.items()
            ],
        )
        state.record_column_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": at,
                    "table_name": t,
                    "column_name": "ID",
                    "null_percent": 1.0,
                }
                for t in rows
            ],
        )
        load = state.start_load(db, run_id, "aims_assets", at, rows["aims_assets"][i])
        state.finish_load(db, load, ended_at=state.utc_now(), status="success")
    results = {
        "timestamp": "2025-01-05T00:00:00+00:00",
        "run_id": runs[-1],
        "threshold": 85.0,
        "summary": {},
        "files": {
            "aims_assets": {
                "status": "PASSED",
                "score": 91.0,
                "row_count": 200,
                "failures": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "column": "ID",
                        "severity": "critical",
                        "dimension": "completeness",
                        "unexpected_count": 2,
                        "unexpected_percent": 1.0,
                    }
                ],
                "dimension_scores": {"completeness": 90.0, "validity": 90.0, "consistency": 74.0},
            },
            "aims_routes": {
                "status": "FAILED",
                "score": 80.0,
                "row_count": 50,
                "failures": [],
                "dimension_scores": {"validity": 90.0, "consistency": 74.0},
            },
        },
    }
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps(results))
    modeling.save_modeling(modeling.build_modeling(settings), settings)
    return reports.write_dashboard(settings)


def test_dashboard_renders_every_figure_offline(tmp_path: Path) -> None:
    path = _known_lake(tmp_path / "home")
    page = render(path)
    assert_rendered(
        page,
        {
            "fig-targets",
            "fig-scores",
            "fig-dimensions",
            "fig-failures",
            "fig-freshness",
            "fig-history",
            "fig-matrix",
            "fig-forecast",
        },
        path,
    )
    plots = {p["id"]: p for p in page["plots"]}
    assert [t["points"] for t in plots["fig-history"]["traces"]] == [5, 5]  # one point per run
    assert "aims_assets" in page["text"].split("Tables with an anomaly in their latest run:")[1]
    assert "rows 1,010 -> 200" not in page["text"]  # the previous run was 990
    assert "rows 990 -> 200" in page["text"]


def test_missing_chromium_fails_with_install_instructions() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium_path(["/nonexistent/chromium"])


# --- notebooks 03, 06, 07 on a real lake ----------------------------------------------------------


def _execute(notebook: str, home: Path, out_dir: Path, run_id: str, **params: Any) -> dict:
    """Run a notebook with papermill as the orchestrator does; return its outputs as text."""
    import nbformat
    import papermill

    output = out_dir / f"{run_id}_{notebook}"
    started = time.perf_counter()
    papermill.execute_notebook(
        str(NOTEBOOKS / notebook),
        str(output),
        parameters={"aims_home": str(home), "run_id": run_id, **params},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOKS),
    )
    seconds = time.perf_counter() - started
    book = nbformat.read(output, as_version=4)
    texts, figures = [], 0
    for cell in book.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
            elif "data" in out:
                texts.append(out["data"].get("text/plain", ""))
                figures += "application/vnd.plotly.v1+json" in out["data"]
    return {"text": "\n".join(texts), "figures": figures, "seconds": seconds, "path": output}


def _metrics(settings: Any, run_id: str, phase: str) -> dict:
    from aims_nb_utils.notebook_support import read_phase_metrics

    metrics = read_phase_metrics(settings, run_id, phase)
    assert metrics is not None, f"{phase} recorded no metrics for {run_id}"
    return metrics


# A slice of the lake with parents and children (assetlocations -> assets, routes, assetclasses,
# tracks) and an empty export: the notebooks' logic does not depend on the table count, and six
# tables keep two validation runs and six notebook executions near a minute.
TABLES = [
    "aims_assets",
    "aims_assetlocations",
    "aims_routes",
    "aims_assetclasses",
    "aims_tracks",
    "aims_workorders",
]


@pytest.fixture(scope="module")
def pipeline(lake_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two validation runs on the sample lake with the notebooks executed after each."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aims_nb_utils import ingestion, profiling, validation

    home = copy_home(lake_home, tmp_path_factory.mktemp("dq_pipeline") / "home")
    out = home / "executed"
    out.mkdir()
    settings = make_settings(home)
    profiling.profile_tables(settings, tables=TABLES)
    validation.validate_tables(settings, tables=TABLES)
    first = {nb: _execute(nb, home, out, "first") for nb in (MONITORING, INSIGHTS, MODELING)}

    # A new export: assets lost 80% of its rows (so asset locations point at missing parents) and
    # the asset name in asset locations is now mostly the null placeholder 'None'.
    assets = settings.paths.bronze_file("aims_assets")
    table = pq.read_table(assets)
    pq.write_table(table.slice(0, table.num_rows // 5), assets)
    locations = settings.paths.bronze_file("aims_assetlocations")
    table = pq.read_table(locations)
    index = table.schema.get_field_index("ASSET")
    names = table.column(index).to_pylist()
    blank = np.random.default_rng(1).random(len(names)) < 0.8
    column = pa.array(["None" if b else v for b, v in zip(blank, names, strict=True)], pa.string())
    pq.write_table(table.set_column(index, "ASSET", column), locations)
    second_run = validation.validate_tables(settings, tables=TABLES)
    ingestion.ingest_tables(settings, tables=TABLES, verdicts=second_run.tables)
    second = {nb: _execute(nb, home, out, "second") for nb in (INSIGHTS, MODELING, MONITORING)}
    return {"home": home, "settings": settings, "first": first, "second": second}


def test_reports_never_import_great_expectations(pipeline: dict[str, Any]) -> None:
    """What notebooks 03, 06 and 07 run, run in a fresh interpreter: GX must stay unloaded."""
    for name in (MONITORING, INSIGHTS, MODELING):
        assert "great_expectations" not in (NOTEBOOKS / name).read_text(), name
    code = (
        "import sys\n"
        "from aims_nb_utils import insights, modeling, notebook_support, reports\n"
        "from aims_nb_utils.settings import load_settings\n"
        f"settings = load_settings(env={{}}, home={str(pipeline['home'])!r})\n"
        "reports.write_dashboard(settings, reports.build_monitoring_report(settings))\n"
        "insights.build_insights(settings)\n"
        "modeling.build_modeling(settings)\n"
        "print(sorted(m for m in sys.modules if m.startswith('great_expectations')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_first_run_is_honest_about_missing_history(pipeline: dict[str, Any]) -> None:
    first, settings = pipeline["first"], pipeline["settings"]
    assert (
        "1 run recorded; trends need at least 2: not enough history yet" in first[INSIGHTS]["text"]
    )
    assert "1 run recorded; forecasts need at least 4" in first[MODELING]["text"]
    assert "1 run recorded; rate-of-change checks need at least 2" in first[MODELING]["text"]
    monitoring = _metrics(settings, "first", "monitoring")
    results = json.loads(reports.results_path(settings).read_text())  # second run's by now
    assert monitoring["runs_recorded"] == 1 and monitoring["tables_monitored"] == len(
        results["files"]
    )
    assert _metrics(settings, "first", "quality_insights")["new_failures"] is None
    assert _metrics(settings, "first", "dq_modeling")["anomalies_all_runs"] == 0
    # targets, scores, dimensions, freshness (+ failures if a rule failed); no history chart yet
    assert first[MONITORING]["figures"] >= 4
    assert "1 run recorded; trends need at least 2" in first[MONITORING]["text"]


def test_second_run_finds_what_changed(pipeline: dict[str, Any]) -> None:
    """Only two things changed, and each notebook names them."""
    settings = pipeline["settings"]
    modeling_metrics = _metrics(settings, "second", "dq_modeling")
    assert modeling_metrics["anomalous_tables"] == ["aims_assetlocations", "aims_assets"]
    saved = modeling.load_saved_modeling(settings)
    jumps = {(a["table_name"], a["metric"], a["column_name"]) for a in saved["anomalies"]}
    assert jumps == {
        ("aims_assets", "row_count", None),  # 80% of its rows vanished
        ("aims_assetlocations", "null_percent", "ASSET"),  # the asset name went null
    }
    insights_metrics = _metrics(settings, "second", "quality_insights")
    assert insights_metrics["runs_recorded"] == 2 and insights_metrics["enough_history"]
    saved_insights = json.loads((settings.paths.reports / "dq_insights.json").read_text())
    new = {
        (r["table_name"], r["column_name"], r["dimension"], r["change"])
        for r in saved_insights["new_failures"]
    }
    regressed = "regressed (passed in previous run)"
    assert new == {
        ("aims_assetlocations", "ASSETID", "consistency", regressed),  # orphans of lost assets
        ("aims_assetlocations", "ASSET", "completeness", regressed),
    }
    worse = {r["table_name"] for r in saved_insights["worsening_tables"] if r["worse"]}
    assert worse == {"aims_assetlocations"}
    assert "2 runs recorded; trends use all of them" in pipeline["second"][INSIGHTS]["text"]


def test_monitoring_after_ingestion(pipeline: dict[str, Any]) -> None:
    settings = pipeline["settings"]
    monitoring = _metrics(settings, "second", "monitoring")
    summary = reports.load_results(settings).summary  # validation's own figures
    assert monitoring["pass_rate"] == pytest.approx(summary["pass_rate"])
    assert monitoring["avg_quality_score"] == pytest.approx(summary["avg_quality_score"])
    assert monitoring["runs_recorded"] == 2
    fresh = reports.freshness(settings).set_index("table_name")["status"]
    assert fresh["aims_assets"] == "fresh"  # its new export was loaded
    assert fresh["aims_assetlocations"] == "not promoted"  # FAILED: kept out of Silver
    assert fresh["aims_activitydates"] == "never loaded"  # outside the slice


def test_validation_summary_and_monitoring_agree(pipeline: dict[str, Any]) -> None:
    settings = pipeline["settings"]
    run = reports.load_results(settings)
    overall = reports.build_monitoring_report(settings).overall
    summary = run.summary
    assert (overall["passed"], overall["failed"]) == (summary["passed"], summary["failed"])
    assert overall["skipped"] == summary["skipped"] and overall["errors"] == summary["errors"]


def test_dashboard_written_by_the_notebooks_renders(pipeline: dict[str, Any]) -> None:
    path = reports.dashboard_path(pipeline["settings"])
    page = render(path)
    assert_rendered(
        page,
        {
            "fig-targets",
            "fig-scores",
            "fig-dimensions",
            "fig-freshness",
            "fig-history",
            "fig-matrix",
        },
        path,
    )
    assert "aims_assets" in page["text"].split("Tables with an anomaly in their latest run:")[1]
    assert "2 runs recorded; forecasts need at least 4" in page["text"]
