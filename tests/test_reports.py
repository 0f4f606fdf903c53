"""Monitoring figures computed from a small results file and state DB whose answers are known."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import modeling, reports, state
from aims_nb_utils.errors import AimsError, SettingsError
from aims_nb_utils.settings import Settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
RUN1, RUN2 = "20250228_120000_aaaaaa", "20250301_110000_bbbbbb"

# Null % per column recorded for each run; completeness must come from RUN2 (the results' run).
NULLS = {
    RUN1: {"aims_assets": [0.0, 9.0, 18.0], "aims_routes": [50.0, 50.0]},
    RUN2: {"aims_assets": [0.0, 10.0, 20.0], "aims_routes": [5.0, 5.0], "aims_empty": [0.0]},
}


def _failure(expectation: str, column: str, severity: str, dimension: str, count: int) -> dict:
    return {
        "expectation": expectation,
        "column": column,
        "severity": severity,
        "dimension": dimension,
        "unexpected_count": count,
        "unexpected_percent": count / 10,
        "partial_unexpected_list": [],
    }


RESULTS = {
    "timestamp": "2025-03-01T11:00:00+00:00",
    "run_id": RUN2,
    "threshold": 85.0,
    "summary": {"total": 4, "passed": 2, "failed": 1, "skipped": 1, "errors": 0},
    "files": {
        "aims_assets": {
            "status": "PASSED",
            "score": 96.0,
            "weighted_score": 97.0,
            "row_count": 1000,
            "failures": [
                _failure(
                    "expect_column_values_to_not_be_null", "DESCRIPTION", "low", "completeness", 200
                )
            ],
            "dimension_scores": {"completeness": 90.0, "validity": 100.0, "consistency": 100.0},
        },
        "aims_routes": {
            "status": "FAILED",
            "score": 70.0,
            "weighted_score": 60.0,
            "row_count": 400,
            "failures": [
                _failure(
                    "expect_column_values_to_not_be_null", "ROUTEID", "critical", "completeness", 20
                ),
                _failure("expect_column_values_to_be_in_set", "STATUS", "high", "validity", 40),
                _failure("expect_column_values_to_be_in_set", "SITEID", "high", "consistency", 8),
            ],
            "dimension_scores": {"completeness": 50.0, "validity": 80.0, "consistency": 0.0},
        },
        "aims_sites": {
            "status": "PASSED",
            "score": 100.0,
            "weighted_score": 100.0,
            "row_count": 10,
            "failures": [],
            "dimension_scores": {"completeness": 100.0, "validity": 100.0},
        },
        "aims_empty": {
            "status": "SKIPPED",
            "score": None,
            "row_count": 0,
            "failures": [],
            "reason": "empty table",
        },
    },
}


def _write_bronze(settings: Settings, table: str, modified: datetime) -> None:
    path = settings.paths.bronze_file(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"ID": ["1"]}), path)
    os.utime(path, (modified.timestamp(), modified.timestamp()))


def _record_runs(settings: Settings, runs: dict[str, dict[str, list[float]]]) -> None:
    db = settings.paths.state_db
    for i, (run_id, tables) in enumerate(runs.items()):
        run_at = (NOW - timedelta(days=len(runs) - i)).isoformat()
        state.record_column_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": t,
                    "column_name": f"C{j}",
                    "null_percent": v,
                }
                for t, values in tables.items()
                for j, v in enumerate(values)
            ],
        )
        state.record_table_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": t,
                    "status": "PASSED",
                    "quality_score": 90.0 + i,
                    "row_count": 100,
                    "validity": 80.0 + i,
                }
                for t in tables
            ],
        )


@pytest.fixture
def lake(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "home")
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps(RESULTS))
    _record_runs(settings, NULLS)
    db = settings.paths.state_db
    # aims_assets: loaded 2 h ago from a file written 2 days ago -> fresh.
    _write_bronze(settings, "aims_assets", NOW - timedelta(days=2))
    load = state.start_load(db, RUN2, "aims_assets", (NOW - timedelta(hours=3)).isoformat(), 1000)
    state.finish_load(db, load, ended_at=(NOW - timedelta(hours=2)).isoformat(), status="success")
    state.set_watermark(
        db,
        table_name="aims_assets",
        last_updated="2025-02-27 08:00:00",
        fingerprint="f",
        rows=1000,
        run_id=RUN2,
        updated_at=NOW.isoformat(),
    )
    # aims_routes: a new export arrived 1 h ago, after the load 5 h ago -> pending load.
    _write_bronze(settings, "aims_routes", NOW - timedelta(hours=1))
    load = state.start_load(db, RUN2, "aims_routes", (NOW - timedelta(hours=6)).isoformat(), 400)
    state.finish_load(db, load, ended_at=(NOW - timedelta(hours=5)).isoformat(), status="success")
    # aims_sites: last successful load 30 h ago; a later load failed -> stale.
    _write_bronze(settings, "aims_sites", NOW - timedelta(days=3))
    load = state.start_load(db, RUN1, "aims_sites", (NOW - timedelta(hours=31)).isoformat(), 10)
    state.finish_load(db, load, ended_at=(NOW - timedelta(hours=30)).isoformat(), status="success")
    load = state.start_load(db, RUN2, "aims_sites", (NOW - timedelta(hours=2)).isoformat(), 10)
    state.finish_load(db, load, ended_at=(NOW - timedelta(hours=2)).isoformat(), status="failed")
    # aims_empty: never loaded.
    _write_bronze(settings, "aims_empty", NOW - timedelta(days=1))
    # aims_tracks: loaded yesterday; the new export failed its verdict and stayed out of Silver.
    _write_bronze(settings, "aims_tracks", NOW - timedelta(hours=4))
    load = state.start_load(db, RUN1, "aims_tracks", (NOW - timedelta(hours=20)).isoformat(), 5)
    state.finish_load(db, load, ended_at=(NOW - timedelta(hours=20)).isoformat(), status="loaded")
    load = state.start_load(db, RUN2, "aims_tracks", (NOW - timedelta(hours=3)).isoformat(), 5)
    state.finish_load(
        db, load, ended_at=(NOW - timedelta(hours=3)).isoformat(), status="not_promoted"
    )
    return settings


def test_completeness_is_100_minus_mean_null_percent_of_the_results_run(lake: Settings) -> None:
    report = reports.build_monitoring_report(lake, now=NOW)
    by_table = report.tables.set_index("table_name")
    assert by_table.loc["aims_assets", "completeness"] == pytest.approx(100 - (0 + 10 + 20) / 3)
    assert by_table.loc["aims_routes", "completeness"] == pytest.approx(95.0)
    # no cells, no completeness; and a table without column metrics has none either
    assert by_table["completeness"].isna()[["aims_empty", "aims_sites"]].all()
    assert report.overall["completeness"] == pytest.approx((90.0 + 95.0) / 2)
    # the rule-based completeness score stays a separate figure
    assert by_table.loc["aims_routes", "completeness_rules"] == 50.0


def test_overall_figures_and_failure_counts(lake: Settings) -> None:
    report = reports.build_monitoring_report(lake, now=NOW)
    o = report.overall
    # aims_tracks has no verdict but its latest load was not promoted: it is in the figures
    assert (o["tables"], o["passed"], o["failed"], o["skipped"], o["errors"]) == (5, 2, 1, 1, 0)
    assert o["no_verdict"] == 1
    assert (o["loads_ok"], o["loads_failed"], o["loads_not_promoted"], o["never_loaded"]) == (
        2,
        1,
        1,
        1,
    )
    # passing: aims_assets only (aims_sites PASSED but its latest load failed); judged: assets,
    # routes, sites (verdicts) and tracks (not promoted); the skipped empty table is not judged
    assert (o["passing"], o["judged"]) == (1, 4)
    assert o["pass_rate"] == pytest.approx(25.0)
    assert o["avg_quality_score"] == pytest.approx((96 + 70 + 100) / 3)
    assert o["validity"] == pytest.approx((100 + 80 + 100) / 3)
    assert o["consistency"] == pytest.approx((100 + 0) / 2)  # aims_sites has no such rule
    assert (o["failed_rules"], o["critical_failed_rules"]) == (4, 1)
    summary = report.failure_summary.set_index(["expectation", "severity"])
    in_set = summary.loc[("expect_column_values_to_be_in_set", "high")]
    assert (in_set["failed_rules"], in_set["tables"], in_set["unexpected_rows"]) == (2, 1, 48)
    assert list(report.failure_summary["severity"])[0] == "critical"  # worst severity first


def test_targets_are_computed_verdicts(lake: Settings) -> None:
    default = reports.build_monitoring_report(lake, now=NOW).targets.set_index("metric")
    # pass rate 25 < 80, score 88.7 >= 85, completeness 92.5 < 95
    assert default["verdict"].to_dict() == {
        "pass_rate": "missed",
        "quality_score": "met",
        "completeness": "missed",
    }
    relaxed = reports.Targets(pass_rate=25, quality_score=90, completeness=92.5)
    verdicts = reports.build_monitoring_report(lake, targets=relaxed, now=NOW).targets
    assert verdicts.set_index("metric")["verdict"].to_dict() == {
        "pass_rate": "met",
        "quality_score": "missed",
        "completeness": "met",
    }


def test_target_without_data_is_no_data_not_met() -> None:
    overall = {"pass_rate": None, "avg_quality_score": 90.0, "completeness": None}
    verdicts = reports.evaluate_targets(overall, reports.Targets()).set_index("metric")
    assert verdicts.loc["pass_rate", "verdict"] == "no data"
    assert verdicts.loc["pass_rate", "met"] is None


def test_fraction_target_is_refused_with_a_hint() -> None:
    with pytest.raises(SettingsError, match="target_pass_rate.*write 80, not 0.8"):
        reports.Targets(pass_rate=0.8)


def test_freshness_statuses(lake: Settings) -> None:
    fresh = reports.freshness(lake, now=NOW, max_age_hours=24).set_index("table_name")
    assert fresh["status"].to_dict() == {
        "aims_assets": "fresh",
        "aims_empty": "never loaded",
        "aims_routes": "pending load",
        "aims_sites": "stale",
        "aims_tracks": "not promoted",
    }
    assert fresh.loc["aims_assets", "load_age_hours"] == pytest.approx(2.0)
    assert fresh.loc["aims_assets", "bronze_age_hours"] == pytest.approx(48.0)
    assert fresh.loc["aims_assets", "newest_record"].startswith("2025-02-27T08:00")
    assert fresh.loc["aims_sites", "last_load_status"] == "failed"
    assert fresh.loc["aims_sites", "load_age_hours"] == pytest.approx(30.0)
    assert fresh.loc["aims_tracks", "last_load_at"].startswith("2025-02-28T16:00")  # last good one
    # a longer allowance turns the stale table fresh
    relaxed = reports.freshness(lake, now=NOW, max_age_hours=48).set_index("table_name")
    assert relaxed.loc["aims_sites", "status"] == "fresh"


def test_a_load_in_the_same_second_as_its_export_is_fresh(tmp_path: Path) -> None:
    """Load times kept to the second once read as older than the file they had just loaded."""
    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(pa.table({"ID": ["1"]}), settings.paths.bronze_file("aims_routes"))
    db = settings.paths.state_db
    load = state.start_load(db, "r1", "aims_routes", state.utc_now(), rows_in=1)
    state.finish_load(db, load, ended_at=state.utc_now(), status="loaded")
    status = reports.freshness(settings).set_index("table_name").loc["aims_routes", "status"]
    assert status == "fresh"


def test_missing_results_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(AimsError) as info:
        reports.build_monitoring_report(settings)
    assert str(reports.results_path(settings)) in str(info.value)
    assert "python -m aims_nb_utils validate-dq" in str(info.value)


def test_unknown_status_names_the_table(tmp_path: Path) -> None:
    path = tmp_path / "validation_results.json"
    path.write_text(json.dumps({"files": {"aims_assets": {"status": "success"}}}))
    with pytest.raises(reports.ResultsFileError, match="aims_assets.*'success'"):
        reports.load_results(path)


def test_legacy_results_file_is_read(reference_dir: Path) -> None:
    run = reports.load_results(reference_dir / "legacy_results" / "validation_results.json")
    raw = json.loads((reference_dir / "legacy_results" / "validation_results.json").read_text())
    assert len(run.tables) == len(raw["files"])
    failures = reports.failures_frame(run)
    assert len(failures) == sum(len(f["failures"]) for f in raw["files"])
    first = next(f for f in raw["files"] if f["failures"])
    table = Path(first["file"]).stem
    expected = first["failures"][0]["details"]["unexpected_count"]
    assert failures[failures["table_name"] == table]["unexpected_count"].iloc[0] == expected
    passed = sum(f["status"] == "PASSED" for f in raw["files"])
    metrics = reports.overall_metrics(reports.table_metrics(run))
    assert metrics["passed"] == passed


def test_dashboard_is_self_contained_and_written_atomically(lake: Settings) -> None:
    path = reports.write_dashboard(lake, reports.build_monitoring_report(lake, now=NOW))
    assert path == lake.paths.dashboards / "dq_dashboard.html"
    text = path.read_text()
    assert re.search(r"<script[^>]+src=", text) is None  # no CDN, nothing fetched
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js itself is inline
    for div in (
        "fig-targets",
        "fig-scores",
        "fig-dimensions",
        "fig-failures",
        "fig-freshness",
        "fig-history",
    ):
        assert f'id="{div}"' in text
    assert RUN2 in text
    assert "not computed yet" in text  # modeling has not run
    assert [p.name for p in path.parent.iterdir()] == ["dq_dashboard.html"]  # no temp file left


def test_dashboard_with_one_run_says_history_is_too_short(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps(RESULTS))
    _record_runs(settings, {RUN2: NULLS[RUN2]})
    report = reports.build_monitoring_report(settings, now=NOW)
    assert report.history_status.message == (
        "1 run recorded; trends need at least 2: not enough history yet"
    )
    text = reports.render_dashboard(report)
    assert 'id="fig-history"' not in text
    assert "1 run recorded; trends need at least 2" in text


def test_dashboard_shows_saved_anomalies(lake: Settings) -> None:
    saved = modeling.build_modeling(lake)
    modeling.save_modeling(saved, lake)
    report = reports.build_monitoring_report(lake, now=NOW)
    assert report.modeling is not None
    text = reports.render_dashboard(report)
    # aims_routes' null rate fell from 50% to 5%: the only table that jumped
    assert re.search(r'id="anomalous-tables">aims_routes<', text)
    assert 'id="fig-matrix"' in text
    assert "not computed yet" not in text


def test_modeling_output_from_an_older_run_is_flagged(lake: Settings) -> None:
    modeling.save_modeling(modeling.build_modeling(lake), lake)
    _record_runs(lake, {"20250302_000000_cccccc": NULLS[RUN2]})
    report = reports.build_monitoring_report(lake, now=NOW)
    assert any("re-run notebook 07" in note for note in report.notes)


def test_monitor_command_exit_code_follows_the_targets(
    lake: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from aims_nb_utils.cli import main

    home = str(lake.paths.home)
    assert main(["monitor", "--home", home, "--strict", "--no-html"]) == 1  # two targets missed
    out = capsys.readouterr().out
    assert "Pass rate              25.00%  >= 80%  missed" in out
    assert "loads: 2 loaded, 1 failed, 1 not promoted, 1 never loaded" in out
    assert not reports.dashboard_path(lake).exists()
    relaxed = ["--target-pass-rate", "25", "--target-completeness", "90"]
    assert main(["monitor", "--home", home, "--strict", *relaxed]) == 0
    assert reports.dashboard_path(lake).is_file()
    assert main(["monitor", "--home", home, "--target-pass-rate", "0.8"]) == 2  # a fraction
    assert "write 80, not 0.8" in capsys.readouterr().err


# --- failed loads and the pipeline run in the headline ---------------------------------------------


def _all_passed_but_every_load_failed(settings: Settings, tables: list[str]) -> None:
    files = {
        t: {"status": "PASSED", "score": 100.0, "row_count": 3, "failures": []} for t in tables
    }
    settings.paths.results.mkdir(parents=True, exist_ok=True)
    reports.results_path(settings).write_text(json.dumps({"run_id": RUN2, "files": files}))
    db = settings.paths.state_db
    for table in tables:
        _write_bronze(settings, table, NOW - timedelta(hours=2))
        load = state.start_load(db, RUN2, table, (NOW - timedelta(hours=1)).isoformat(), 3)
        state.finish_load(
            db, load, ended_at=NOW.isoformat(), status="error", error=f"cannot write {table}"
        )


def _card(text: str, name: str) -> str:
    match = re.search(rf'<div class="card" id="card-{name}">(.*?)</div></div>', text)
    assert match, f"no {name} card"
    return re.sub(r"<[^>]+>", " ", match.group(1))


def test_every_load_failed_is_not_a_100_percent_pass_rate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    _all_passed_but_every_load_failed(settings, ["orders", "customer", "nation"])
    report = reports.build_monitoring_report(settings, now=NOW)
    o = report.overall
    assert o["passed"] == 3  # the verdicts alone would say 100 %
    assert (o["loads_failed"], o["passing"], o["judged"], o["pass_rate"]) == (3, 0, 3, 0.0)
    targets = report.targets.set_index("metric")
    assert targets.loc["pass_rate", "verdict"] == "missed"
    assert report.metrics()["loads_failed"] == 3 and report.metrics()["targets_missed"] >= 1
    text = reports.render_dashboard(report)
    assert "0.0%" in _card(text, "pass-rate") and "0 of 3 tables" in _card(text, "pass-rate")
    assert "3 failed" in _card(text, "loads")
    assert "1 missed" in _card(text, "targets")
    assert "100.0%" not in _card(text, "pass-rate")
    assert "cannot write orders" in text  # the load's error is in the tables section
    assert any("did not reach Silver" in n and "orders (load failed)" in n for n in report.notes)


def test_a_table_errored_in_validation_counts_against_the_pass_rate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    files = {
        "orders": {"status": "PASSED", "score": 100.0, "row_count": 3, "failures": []},
        "lineitem": {"status": "ERROR", "score": None, "row_count": None, "failures": []},
    }
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps({"run_id": RUN2, "files": files}))
    o = reports.build_monitoring_report(settings, now=NOW).overall
    assert (o["errors"], o["judged"], o["pass_rate"]) == (1, 2, 50.0)


def test_dashboard_shows_each_phase_of_the_latest_run_with_why(tmp_path: Path) -> None:
    from aims_nb_utils import orchestration as orch

    settings = make_settings(tmp_path / "home")
    settings.paths.results.mkdir(parents=True)
    reports.results_path(settings).write_text(json.dumps(RESULTS))
    reason = "not an AIMS lake: aims_assets, aims_routes missing in Bronze (/x) and Silver"
    log = {
        "run_id": "run-7",
        "status": "success",
        "start_time": "2025-03-01T10:00:00+00:00",
        "phases": [
            orch.PhaseResult("monitoring", "03.ipynb", "success", 1.0, metrics={"t": 2}).to_log(),
            orch.PhaseResult("silver_enhancement", "05.ipynb", "skipped", reason=reason).to_log(),
            orch.PhaseResult(
                "bi_analytics",
                "08.ipynb",
                "failed",
                error={"notebook": "08", "ename": "BiSourceError", "evalue": "no Gold"},
            ).to_log(),
        ],
    }
    (settings.paths.results / "orchestration_log_20250301_100000.json").write_text(json.dumps(log))
    text = reports.render_dashboard(reports.build_monitoring_report(settings, now=NOW))
    rows = dict(re.findall(r'<tr data-phase="(\w+)" data-status="(\w+)">', text))
    assert rows == {
        "monitoring": "success",
        "silver_enhancement": "skipped",
        "bi_analytics": "failed",
    }
    assert html_escape(reason) in text and "BiSourceError: no Gold" in text
    assert "1 phase(s) skipped" in text


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def _with_verdict_reasons(results: dict) -> dict:
    """RESULTS with the fields validation writes since issue 11 on some tables."""
    results = json.loads(json.dumps(results))
    gate = (
        "gating rule expect_column_values_to_be_unique(ROUTEID) failed: 8 of 400 rows "
        "unexpected (2.00%)"
    )
    share = "300 of 400 rows (75.0%) break a quarantining rule > max_quarantine_percent 50.0%"
    routes = results["files"]["aims_routes"]
    routes["threshold_failures"] = [gate, share, "critical: 50.0% < 95.0%"]
    routes["failed_because"] = [
        {"kind": "gate", "text": gate},
        {"kind": "quarantine", "text": share},
    ]
    routes["quarantine_rows"], routes["quarantine_percent"] = 300, 75.0
    results["files"]["aims_assets"].update(quarantine_rows=10, quarantine_percent=1.0)
    # aims_sites keeps the older shape (no figure): it counts in neither total
    return results


def test_dashboard_says_why_each_table_failed_and_rows_quarantined(lake: Settings) -> None:
    reports.results_path(lake).write_text(json.dumps(_with_verdict_reasons(RESULTS)))
    report = reports.build_monitoring_report(lake, now=NOW)
    o = report.overall
    assert (o["quarantine_rows"], o["quarantine_rows_of"]) == (310, 1400)
    assert o["quarantine_percent"] == pytest.approx(100 * 310 / 1400)
    by_table = report.tables.set_index("table_name")
    assert by_table.loc["aims_routes", "why_failed"].startswith(
        "gating rule expect_column_values_to_be_unique(ROUTEID) failed"
    )
    assert pd.isna(by_table.loc["aims_assets", "why_failed"])  # PASSED: nothing to explain
    page = reports.render_dashboard(report)
    card = re.search(r'id="card-rows-quarantined">(.*?)</div></div>', page, re.S).group(1)
    assert "310" in card and "22.1% of 1,400 rows" in card
    section = re.search(r'<table class="dq" id="failed-tables">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r'data-table="([^"]+)"', section) == ["aims_routes"]
    assert "<li>gating rule expect_column_values_to_be_unique(ROUTEID) failed" in section
    assert "<li>300 of 400 rows (75.0%) break a quarantining rule" in section
    assert "<li>critical: 50.0% &lt; 95.0%</li>" in section
    assert "300 rows (75.0%)" in section


def test_a_results_file_without_quarantine_figures_says_not_measured(lake: Settings) -> None:
    report = reports.build_monitoring_report(lake, now=NOW)  # RESULTS predates the figures
    assert report.overall["quarantine_rows"] is None
    page = reports.render_dashboard(report)
    card = re.search(r'id="card-rows-quarantined">(.*?)</div></div>', page, re.S).group(1)
    assert "n/a" in card and "no verdict measured it" in card
    # the failed table is still explained, from the legacy threshold_failures (none here)
    section = re.search(r'id="failed-tables">(.*?)</table>', page, re.S).group(1)
    assert 'data-table="aims_routes"' in section and "not measured" in section
