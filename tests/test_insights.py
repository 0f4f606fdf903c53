"""Trends across runs from a metric history whose story is known run by run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_settings

from aims_nb_utils import insights, state

RUNS = ["20250101_000000_aaaaaa", "20250102_000000_bbbbbb", "20250103_000000_cccccc"]

# (table, rule_id, column, severity) -> success per run (None: not evaluated in that run)
RULES = {
    ("aims_assets", "not_null(ASSETID)", "ASSETID", "critical"): [1, 1, 0],  # regressed in run 3
    ("aims_assets", "in_set(STATUS)", "STATUS", "high"): [0, 0, 0],  # always failing
    ("aims_assets", "length(STATUS)", "STATUS", "low"): [None, None, 0],  # new rule, failing
    ("aims_assets", "unique(ASSETNUM)", "ASSETNUM", "high"): [0, 0, 1],  # resolved in run 3
    ("aims_routes", "not_null(ROUTE)", "ROUTE", "medium"): [1, 0, 0],  # failing since run 2
    ("aims_routes", "in_set(TYPE)", "TYPE", "low"): [1, 1, 1],
}
SCORES = {"aims_assets": [95.0, 90.0, 80.0], "aims_routes": [70.0, 75.0, 75.0]}


def _record(db: Path, runs: list[int], tables: list[str] | None = None) -> None:
    for i in runs:
        run_id, run_at = RUNS[i], f"2025-01-0{i + 1}T00:00:00+00:00"
        rows = []
        for (table, rule_id, column, severity), outcome in RULES.items():
            if outcome[i] is None or (tables and table not in tables):
                continue
            rows.append(
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": table,
                    "rule_id": rule_id,
                    "expectation_type": "expect_" + rule_id.split("(")[0],
                    "column_name": column,
                    "severity": severity,
                    "dimension": "validity",
                    "success": outcome[i],
                    "element_count": 100,
                    "unexpected_count": 0 if outcome[i] else 10 * (i + 1),
                    "unexpected_percent": 0.0 if outcome[i] else 10.0 * (i + 1),
                }
            )
        state.record_rule_metrics(db, rows)
        state.record_table_metrics(
            db,
            [
                {
                    "run_id": run_id,
                    "run_at": run_at,
                    "table_name": t,
                    "quality_score": s[i],
                    "status": "PASSED" if s[i] >= 85 else "FAILED",
                    "row_count": 100,
                }
                for t, s in SCORES.items()
                if not tables or t in tables
            ],
        )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    _record(path, [0, 1, 2])
    return path


def test_new_failures_are_rules_that_passed_or_did_not_exist_in_the_previous_run(db: Path) -> None:
    new = insights.new_failures(insights.load_history(db))
    found = {(r.table_name, r.rule_id): r.change for r in new.itertuples()}
    assert found == {
        ("aims_assets", "not_null(ASSETID)"): "regressed (passed in previous run)",
        ("aims_assets", "length(STATUS)"): "new rule (not evaluated in previous run)",
    }
    assert set(new["previous_run_id"]) == {RUNS[1]} and set(new["run_id"]) == {RUNS[2]}


def test_resolved_failures(db: Path) -> None:
    resolved = insights.resolved_failures(insights.load_history(db))
    assert list(zip(resolved["table_name"], resolved["rule_id"], strict=True)) == [
        ("aims_assets", "unique(ASSETNUM)")
    ]


def test_most_failing_rules_rank_by_runs_failed(db: Path) -> None:
    ranked = insights.most_failing_rules(insights.load_history(db), top=None)
    assert list(ranked["rule_id"])[:3] == ["in_set(STATUS)", "not_null(ROUTE)", "unique(ASSETNUM)"]
    first = ranked.iloc[0]
    assert (first["runs_failed"], first["runs_evaluated"], first["fail_rate"]) == (3, 3, 100.0)
    assert first["last_unexpected_count"] == 30 and bool(first["failing_now"])
    resolved = ranked.set_index("rule_id").loc["unique(ASSETNUM)"]
    assert not resolved["failing_now"]
    assert "in_set(TYPE)" not in set(ranked["rule_id"])  # never failed
    new_rule = ranked.set_index("rule_id").loc["length(STATUS)"]
    assert (new_rule["runs_failed"], new_rule["runs_evaluated"]) == (1, 1)


def test_most_failing_columns(db: Path) -> None:
    columns = insights.most_failing_columns(insights.load_history(db), top=None)
    status = columns.set_index(["table_name", "column_name"]).loc[("aims_assets", "STATUS")]
    # in_set failed 3 times, length once
    assert (status["failed_evaluations"], status["runs_with_failures"]) == (4, 3)
    assert status["rules_failing_now"] == "in_set(STATUS), length(STATUS)"
    assert status["max_unexpected_percent_now"] == 30.0
    assert columns.iloc[0]["column_name"] == "STATUS"


def test_worsening_tables(db: Path) -> None:
    worse = insights.worsening_tables(insights.load_history(db))
    assets = worse.set_index("table_name").loc["aims_assets"]
    assert (assets["previous_score"], assets["latest_score"], assets["delta"]) == (
        90.0,
        80.0,
        -10.0,
    )
    assert assets["slope_per_run"] == pytest.approx(-7.5)
    assert bool(assets["worse"])
    assert not worse.set_index("table_name").loc["aims_routes", "worse"]  # flat 75 -> 75
    assert list(worse["table_name"])[0] == "aims_assets"  # largest drop first
    tolerant = insights.worsening_tables(insights.load_history(db), min_drop=10.0)
    assert not tolerant["worse"].any()


def test_run_summary(db: Path) -> None:
    runs = insights.run_summary(insights.load_history(db))
    assert list(runs["run_id"]) == RUNS
    assert list(runs["passed"]) == [1, 1, 0]
    assert list(runs["pass_rate"]) == [50.0, 50.0, 0.0]
    assert list(runs["avg_quality_score"]) == [82.5, 82.5, 77.5]


def test_one_run_says_not_enough_history_and_finds_no_trend(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _record(db, [0])
    report = insights.build_insights(db)
    assert report.status.message == "1 run recorded; trends need at least 2: not enough history yet"
    assert not report.status.enough
    assert report.new_failures.empty and report.worsening.empty
    assert report.metrics()["new_failures"] is None  # unknown, not zero
    assert len(report.failing_rules) == 2  # what fails in the one run is still worth listing


def test_no_state_db_is_an_empty_history_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "aims_state.db"
    status = insights.history_status(insights.load_history(db))
    assert status.runs == 0 and "run validation first" in status.message
    assert not db.parent.exists()


def test_each_table_is_compared_with_its_own_previous_run(tmp_path: Path) -> None:
    """A run that validated only aims_routes must not make aims_assets' failures look new."""
    db = tmp_path / "state.db"
    _record(db, [0])
    _record(db, [1], tables=["aims_routes"])
    history = insights.load_history(db)
    assert history.run_count == 2
    new = insights.new_failures(history)
    assert list(zip(new["table_name"], new["rule_id"], strict=True)) == [
        ("aims_routes", "not_null(ROUTE)")
    ]
    assert set(insights.worsening_tables(history)["table_name"]) == {"aims_routes"}
    notes = insights.build_insights(history).notes
    assert "1 table(s) were scored in only one run, nothing to compare yet: aims_assets" in notes


def test_tables_never_scored_are_named_as_such(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _record(db, [0, 1])
    for i in (0, 1):
        state.record_table_metrics(
            db,
            [
                {
                    "run_id": RUNS[i],
                    "run_at": f"2025-01-0{i + 1}T00:00:00+00:00",
                    "table_name": "aims_workorders",
                    "status": "SKIPPED",
                    "row_count": 0,
                }
            ],
        )
    report = insights.build_insights(db)
    assert "aims_workorders" not in set(report.worsening["table_name"])
    assert (
        "1 table(s) have no quality score in any run (SKIPPED, e.g. empty exports): "
        "aims_workorders" in report.notes
    )


def test_build_and_save_insights(db: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.state.mkdir(parents=True)
    db.replace(settings.paths.state_db)
    report = insights.build_insights(settings, top=3)
    assert report.metrics() == {
        "runs_recorded": 3,
        "enough_history": True,
        "new_failures": 2,
        "resolved_failures": 1,
        "tables_getting_worse": 1,
        "rules_failing": 3,
    }
    path = insights.save_insights(report, settings)
    saved = json.loads(path.read_text())
    assert saved["history"] == {
        "runs": 3,
        "enough": True,
        "message": "3 runs recorded; trends use all of them",
    }
    assert {r["rule_id"] for r in saved["new_failures"]} == {"not_null(ASSETID)", "length(STATUS)"}
    assert len(saved["most_failing_rules"]) == 3


def test_trend_figure_has_a_line_per_table(db: Path) -> None:
    fig = insights.figure_score_trends(insights.load_history(db))
    assert sorted(t.name for t in fig.data) == ["aims_assets", "aims_routes"]
    assert list(next(t for t in fig.data if t.name == "aims_assets").y) == SCORES["aims_assets"]
