"""Validation with Great Expectations: parity with the row masks, verdicts, outputs, state.

One module-scoped run (profile + validate the whole defective sample lake, with one Bronze file
truncated on purpose and hand-written rules added) feeds most tests, so GX runs over the lake
only twice here (profiled rules, then the 68 legacy rule files).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import checks, quarantine, state
from aims_nb_utils.cli import main
from aims_nb_utils.io import read_bronze
from aims_nb_utils.rules import (
    COLUMN_MAP_EXPECTATIONS,
    Expectation,
    RuleFile,
    load_rule_file,
    save_rule_file,
)
from aims_nb_utils.validation import (
    PARTIAL_LIST_MAX,
    RESULTS_FILE,
    ValidationError,
    ValidationRun,
    load_results,
    validate_table,
    validate_tables,
)

CORRUPTED = "aims_links"
EXTRA_TABLE = "aims_assetclassattributes"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _add_hand_written_rules(settings, table: str) -> list[Expectation]:
    """Rules the profiler does not write, so every expectation type and path is exercised."""
    rule_file = load_rule_file(settings.paths.rule_file(table))
    data = read_bronze(settings.paths.bronze, table)
    text_column = next(
        c for c in data.column_names if c not in ("ID",) and checks.column_kind(table, c) == "text"
    )
    extra = [
        Expectation("expect_column_values_to_be_unique", {"column": "ID"}, {"severity": "high"}),
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": text_column, "value_set": ["None", " ", "NaT"]},
            {"severity": "low", "description": "placeholders only: every real value is unexpected"},
        ),
        Expectation(
            "expect_column_value_lengths_to_be_between",
            {"column": text_column, "min_value": 3, "max_value": 12, "strict_min": True},
            {"severity": "low"},
        ),
        Expectation(
            "expect_column_values_to_match_regex", {"column": text_column, "regex": "[aeiou]"}, {}
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "ID", "min_value": 0, "max_value": 1e15},
            {"severity": "low"},
        ),
        Expectation("expect_column_values_to_not_be_null", {"column": "NOT_IN_FILE"}, {}),
        Expectation("expect_column_to_exist", {"column": "NOT_IN_FILE"}, {}),
    ]
    rule_file.expectations.extend(extra)
    save_rule_file(rule_file)
    return extra


@pytest.fixture(scope="module")
def validated(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    from aims_nb_utils.profiling import profile_tables

    home = copy_home(lake_home, tmp_path_factory.mktemp("validation") / "home")
    settings = make_settings(home)
    profile_tables(settings, max_workers=2)
    extra = _add_hand_written_rules(settings, EXTRA_TABLE)
    _truncate(settings.paths.bronze_file(CORRUPTED))
    run = validate_tables(settings, max_workers=2, run_id="run-one")
    return settings, run, extra


def test_every_table_gets_a_computed_verdict(validated) -> None:
    settings, run, _ = validated
    assert isinstance(run, ValidationRun)
    bronze = {p.stem for p in settings.paths.bronze.glob("aims_*.parquet")}
    assert set(run.tables) == bronze
    statuses = {t: r.status for t, r in run.tables.items()}
    assert statuses[CORRUPTED] == "ERROR"
    assert {"PASSED", "SKIPPED", "ERROR"} <= set(statuses.values())
    for result in run.tables.values():
        if result.status in ("PASSED", "FAILED"):
            assert result.status == ("PASSED" if not result.threshold_failures else "FAILED")
            assert result.statistics["evaluated_expectations"] == len(result.rule_results) > 0
            assert result.row_count and result.seconds > 0
    summary = run.summary
    assert summary["total"] == len(run.tables)
    assert (
        summary["passed"] + summary["failed"] + summary["skipped"] + summary["errors"]
        == summary["total"]
    )
    assert summary["pass_rate"] == pytest.approx(
        100.0 * summary["passed"] / (summary["total"] - summary["skipped"])
    )


def test_gx_counts_equal_the_row_masks_for_every_rule(validated) -> None:
    """Parity: GX's unexpected_count == checks.unexpected_mask count, every rule of every table."""
    settings, run, _ = validated
    placeholders = settings.null_placeholders
    covered: set[str] = set()
    canonical_mattered = False
    compared = 0
    for table, result in run.tables.items():
        if result.status not in ("PASSED", "FAILED"):
            continue
        rule_file = load_rule_file(settings.paths.rule_file(table))
        data = read_bronze(settings.paths.bronze, table)
        for rule, outcome in zip(rule_file.expectations, result.rule_results, strict=True):
            assert outcome.rule_id == rule.rule_id
            if not rule.is_row_level or rule.column not in data.column_names:
                continue
            kind = checks.column_kind(table, rule.column, rule)
            reference = (
                checks.reference_values(settings, *rule.reference) if rule.reference else None
            )
            expected = int(checks.unexpected_mask(data, rule, placeholders, reference, kind).sum())
            assert outcome.error is None, (table, rule.rule_id, outcome.error)
            assert outcome.unexpected_count == expected, (table, rule.rule_id)
            assert outcome.element_count == data.num_rows
            compared += 1
            covered.add("reference" if rule.reference else rule.expectation_type)
            if checks.preparation(rule, kind) == checks.CANONICAL and not canonical_mattered:
                raw = checks.normalize_nulls(data.column(rule.column), placeholders)
                canonical_mattered = raw != checks.canonical_ids(raw)
    assert covered == set(COLUMN_MAP_EXPECTATIONS) | {"reference"}
    assert canonical_mattered, "no '13000015.0'-style id reached a canonicalised rule"
    assert compared > 500


def test_hand_written_rules_fail_or_pass_as_the_data_says(validated) -> None:
    _, run, extra = validated
    result = run.tables[EXTRA_TABLE]
    tail = result.rule_results[-len(extra) :]
    by_type = {(r.expectation_type, r.column): r for r in tail}
    placeholder_set = tail[1]
    assert not placeholder_set.success and placeholder_set.unexpected_percent == pytest.approx(
        100.0
    )
    assert len(placeholder_set.partial_unexpected_list) == PARTIAL_LIST_MAX
    missing = by_type[("expect_column_values_to_not_be_null", "NOT_IN_FILE")]
    assert (
        not missing.success
        and "NOT_IN_FILE" in missing.error
        and f"{EXTRA_TABLE}.parquet" in missing.error
    )
    assert not by_type[("expect_column_to_exist", "NOT_IN_FILE")].success
    assert result.status in ("PASSED", "FAILED")  # a missing column fails rules, not the table


def test_empty_tables_are_skipped_with_a_reason(validated) -> None:
    settings, run, _ = validated
    skipped = [r for r in run.tables.values() if r.status == "SKIPPED"]
    assert skipped
    for result in skipped:
        assert pq.read_metadata(settings.paths.bronze_file(result.table)).num_rows == 0
        assert f"{result.table}.parquet has no rows" in result.reason
        assert result.success_percentage is None and not result.overall_success


def test_a_truncated_file_is_an_error_naming_it(validated) -> None:
    settings, run, _ = validated
    result = run.tables[CORRUPTED]
    assert result.status == "ERROR"
    assert str(settings.paths.bronze_file(CORRUPTED)) in result.error
    assert "repair" in result.error  # says how to fix it
    assert run.summary["errors"] == 1


def test_results_file_has_the_legacy_shape_and_bounded_size(validated) -> None:
    settings, run, _ = validated
    assert run.results_path == settings.paths.results / RESULTS_FILE
    document = load_results(run.results_path)
    assert document["run_id"] == "run-one" and document["threshold"] == settings.dq_threshold
    assert set(document["summary"]) >= {
        "total",
        "passed",
        "failed",
        "skipped",
        "errors",
        "pass_rate",
        "avg_quality_score",
        "avg_weighted_score",
    }
    assert set(document["files"]) == set(run.tables)
    for table, entry in document["files"].items():
        result = run.tables[table]
        assert entry["status"] == result.status
        assert entry["file"] == f"{table}.parquet"
        assert entry["score"] == entry["success_percentage"] == result.success_percentage
        for failure in entry["failures"]:
            assert {"expectation", "column", "severity", "dimension", "unexpected_count"} <= set(
                failure
            )
            assert len(failure["partial_unexpected_list"]) <= PARTIAL_LIST_MAX
    text = run.results_path.read_text()
    assert "value_set" not in text and "NaN" not in text
    # bounded: a table entry and a failure each take a few hundred bytes, whatever the row count
    failures = sum(len(e["failures"]) for e in document["files"].values())
    assert len(text) < 1500 * len(run.tables) + 2500 * failures
    validated_tables = [
        e for e in document["files"].values() if e["status"] in ("PASSED", "FAILED")
    ]
    assert document["summary"]["avg_quality_score"] == pytest.approx(
        sum(e["score"] for e in validated_tables) / len(validated_tables)
    )


def test_metrics_are_appended_to_the_state_db_per_run(validated) -> None:
    settings, run, _ = validated
    db = settings.paths.state_db
    rows = state.query(db, "SELECT * FROM table_metrics WHERE run_id = ?", ("run-one",))
    assert {r["table_name"]: r["status"] for r in rows} == {
        t: r.status for t, r in run.tables.items()
    }
    rules = state.query(db, "SELECT COUNT(*) AS n FROM rule_metrics WHERE run_id = ?", ("run-one",))
    assert rules[0]["n"] == sum(len(r.rule_results) for r in run.tables.values())
    nulls = state.query(
        db,
        "SELECT null_percent FROM column_metrics WHERE run_id = ? AND table_name = ? AND column_name = 'ID'",
        ("run-one", EXTRA_TABLE),
    )
    assert nulls and 0 <= nulls[0]["null_percent"] < 100

    second = validate_tables(settings, tables=[EXTRA_TABLE, "aims_assets"], max_workers=1)
    assert second.run_id != "run-one"
    runs = state.query(db, "SELECT DISTINCT run_id FROM table_metrics ORDER BY run_id")
    assert {r["run_id"] for r in runs} == {"run-one", second.run_id}
    # the same data gives the same figures in both runs
    assert (
        second.tables[EXTRA_TABLE].success_percentage == run.tables[EXTRA_TABLE].success_percentage
    )


def test_split_parallel_run_equals_a_single_process_run(validated) -> None:
    settings, run, _ = validated
    biggest = max(
        (r for r in run.tables.values() if r.status in ("PASSED", "FAILED")),
        key=lambda r: r.row_count,
    )
    alone = validate_table(settings, biggest.table)
    assert [(r.rule_id, r.success, r.unexpected_count) for r in alone.rule_results] == [
        (r.rule_id, r.success, r.unexpected_count) for r in biggest.rule_results
    ]


def _verdict_rules(severity_outcomes: list[tuple[str, bool]]) -> tuple[pa.Table, RuleFile]:
    """One not-null rule per (severity, passes) on its own column of a 10-row table."""
    columns, rules = {}, []
    for i, (severity, passes) in enumerate(severity_outcomes):
        name = f"C{i}"
        columns[name] = pa.array(["x"] * 9 + (["x"] if passes else ["None"]))
        rules.append(
            Expectation(
                "expect_column_values_to_not_be_null", {"column": name}, {"severity": severity}
            )
        )
    return pa.table(columns), RuleFile(table="aims_verdict", expectations=rules)


def test_a_severity_threshold_fails_a_table_whose_quality_score_passes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    outcomes = [("critical", True), ("critical", False)] + [("low", True)] * 18
    data, rule_file = _verdict_rules(outcomes)
    result = validate_table(settings, "aims_verdict", rule_file=rule_file, data=data)
    assert result.success_percentage == pytest.approx(95.0)  # above dq_threshold 85
    assert result.status == "FAILED"
    assert result.threshold_failures == ["critical: 50.0% < 95.0%"]
    # weighted: 18 low (1) + 1 critical (4) passed of 18 + 8
    assert result.weighted_score == pytest.approx(100 * 22 / 26)
    assert result.dimension_scores["completeness"] == pytest.approx(95.0)
    assert result.dimension_scores["uniqueness"] is None


def test_the_quality_score_fails_a_table_whose_severities_pass(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data, rule_file = _verdict_rules([("low", True)] * 7 + [("low", False)] * 3)
    result = validate_table(settings, "aims_verdict", rule_file=rule_file, data=data)
    assert result.success_percentage == pytest.approx(70.0)  # low needs 50 %: met
    assert result.threshold_failures == ["quality score 70.0% < 85.0%"]
    assert result.status == "FAILED" and not result.overall_success

    lenient = make_settings(tmp_path, dq_threshold=60)
    assert (
        validate_table(lenient, "aims_verdict", rule_file=rule_file, data=data).status == "PASSED"
    )


def test_sample_size_limits_rows_only_when_asked(validated) -> None:
    settings, run, _ = validated
    sampled = validate_table(make_settings(settings.paths.home, sample_size=50), EXTRA_TABLE)
    assert sampled.row_count == 50
    counts = {r.element_count for r in sampled.rule_results if r.element_count is not None}
    assert counts == {50}
    assert run.tables[EXTRA_TABLE].row_count > 50


def test_missing_inputs_are_errors_that_say_what_to_run(validated, tmp_path: Path) -> None:
    settings, _, _ = validated
    no_rules = validate_tables(settings, tables=["aims_assets"], rules_dir=tmp_path, write=False)
    assert no_rules.tables["aims_assets"].status == "ERROR"
    assert "profile --tables aims_assets" in no_rules.tables["aims_assets"].error
    # without a rule file, an unreadable Bronze file is still named first: it is what to fix
    unreadable = validate_tables(settings, tables=[CORRUPTED], rules_dir=tmp_path, write=False)
    message = unreadable.tables[CORRUPTED].error
    assert f"cannot read {settings.paths.bronze_file(CORRUPTED)}" in message
    assert "no rule file" in message
    with pytest.raises(ValidationError, match="nothing to validate"):
        validate_tables(make_settings(tmp_path / "empty_home"), write=False)


def test_all_68_legacy_rule_files_validate_without_errors(validated, reference_dir: Path) -> None:
    settings, _, _ = validated
    legacy = reference_dir / "legacy_configs"
    run = validate_tables(settings, rules_dir=legacy, max_workers=2, write=False)
    assert len(run.tables) == 68
    errors = {t: r.error for t, r in run.tables.items() if r.status == "ERROR"}
    assert errors.keys() == {CORRUPTED}
    rule_errors = [
        (t, r.rule_id, r.error)
        for t, res in run.tables.items()
        for r in res.rule_results
        if r.error
    ]
    assert rule_errors == []
    assert run.results_path is None  # write=False leaves the results file alone

    # Legacy files have no gates; their share semantics are unchanged, and a table also fails
    # when most of its rows would be quarantined (the "100% quarantined under PASSED").
    bound = settings.max_quarantine_percent
    for table, result in run.tables.items():
        if result.status not in ("PASSED", "FAILED"):
            continue
        kinds = [r["kind"] for r in result.failed_because]
        assert "gate" not in kinds
        assert ("quarantine" in kinds) == (result.quarantine_percent > bound), table
        assert result.status == ("FAILED" if kinds else "PASSED")
        rule_file = load_rule_file(legacy / f"{table}_validation.yml")
        assert result.quarantine_rows == _rows_ingestion_quarantines(settings, rule_file), table
    consents = run.tables["aims_assetconsents"]  # every CONSENTID breaks its length rule
    assert consents.success_percentage > 90 and consents.quarantine_rows == consents.row_count
    assert [r["kind"] for r in consents.failed_because] == ["quarantine"]


def _rows_ingestion_quarantines(settings, rule_file: RuleFile) -> int:
    """Rows breaking a quarantining rule of the file, by ingestion's own masks on all of Bronze."""
    data = read_bronze(settings.paths.bronze, rule_file.table)
    rules, _ = quarantine.row_rules(rule_file.table, rule_file, [], data.column_names)
    references = {
        r.rule_id: checks.reference_values(settings, *r.expectation.reference)
        for r in rules
        if r.expectation is not None and r.expectation.reference is not None
    }
    matrix = quarantine.evaluate(data, rules, list(settings.null_placeholders), references)
    return int(matrix.any(axis=1).sum())


def test_rows_quarantined_equal_ingestion_masks_for_generated_rules(validated) -> None:
    settings, run, _ = validated
    judged = {t: r for t, r in run.tables.items() if r.status in ("PASSED", "FAILED")}
    assert judged
    for table, result in judged.items():
        rule_file = load_rule_file(settings.paths.rule_file(table))
        assert result.quarantine_rows == _rows_ingestion_quarantines(settings, rule_file), table
        assert result.quarantine_percent == pytest.approx(
            100.0 * result.quarantine_rows / result.row_count
        )
    # the hand-written rules of EXTRA_TABLE quarantine rows; the results file carries the figure
    assert judged[EXTRA_TABLE].quarantine_rows > 0
    entry = json.loads(run.results_path.read_text())["files"][EXTRA_TABLE]
    assert entry["quarantine_rows"] == judged[EXTRA_TABLE].quarantine_rows


def test_cli_prints_a_summary_and_exits_by_outcome(
    validated, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _, _ = validated
    home = str(settings.paths.home)
    code = main(
        [
            "validate-dq",
            "--home",
            home,
            "--tables",
            EXTRA_TABLE,
            "aims_assets",
            "--max-workers",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert EXTRA_TABLE in out and "weighted" in out and RESULTS_FILE in out
    document = json.loads((settings.paths.results / RESULTS_FILE).read_text())
    assert set(document["validated_in_run"]) == {EXTRA_TABLE, "aims_assets"}

    code = main(["validate-dq", "--home", home, "--tables", CORRUPTED, "--max-workers", "1"])
    assert code == 1
    assert "ERROR" in capsys.readouterr().out


def test_gx_is_left_as_found_after_validating(tmp_path: Path) -> None:
    """The memoised GX configuration property is scoped to our validate calls."""
    from great_expectations.expectations.expectation import Expectation as GxExpectation

    before = GxExpectation.__dict__["configuration"]
    data, rule_file = _verdict_rules([("high", True), ("high", False)])
    result = validate_table(make_settings(tmp_path), "aims_verdict", rule_file=rule_file, data=data)
    assert [r.unexpected_count for r in result.rule_results] == [0, 1]
    assert GxExpectation.__dict__["configuration"] is before


def _page_text(path: Path) -> str:
    """An HTML page's visible text (scripts dropped), whitespace collapsed."""
    import html
    import re

    text = re.sub(r"<script.*?</script>", " ", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_data_docs_show_each_validated_table_with_its_rule_results(
    validated, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, run, _ = validated
    tables = [EXTRA_TABLE, "aims_assets"]
    args = ["validate-dq", "--home", str(settings.paths.home), "--tables", *tables]
    assert main([*args, "--max-workers", "1", "--data-docs"]) == 0
    out = capsys.readouterr().out
    index = settings.paths.outputs / "data_docs" / "index.html"
    assert f"data docs: {index}" in out
    # offline (no CDN scripts) the index still links every table of this run, and nothing else
    static = re.sub(r"<script.*?</script>", " ", index.read_text(), flags=re.S)
    links = re.findall(r'href="(validations/[^"]+)"', static)
    assert {link.split("/")[1] for link in links} == set(tables)
    assert all((index.parent / link).is_file() for link in links)
    for table in tables:
        result = run.tables[table]
        (page,) = (settings.paths.outputs / "data_docs" / "validations" / table).rglob("*.html")
        text = _page_text(page)
        statistics = result.statistics
        assert f"Evaluated Expectations {statistics['evaluated_expectations']}" in text
        assert f"Unsuccessful Expectations {statistics['unsuccessful_expectations']}" in text
        assert ("Status: Failed" in text) == (statistics["unsuccessful_expectations"] > 0)
    assert run.tables[EXTRA_TABLE].statistics["unsuccessful_expectations"] > 0
    assert "NOT_IN_FILE" in _page_text(
        next((settings.paths.outputs / "data_docs" / "validations" / EXTRA_TABLE).rglob("*.html"))
    )
    # the setting does the same as the flag; without either, no Data Docs are written
    shutil.rmtree(settings.paths.outputs / "data_docs")
    assert main([*args[:-1], "--set", "data_docs=false"]) == 0
    assert not index.exists() and "data docs:" not in capsys.readouterr().out
    assert main([*args[:-1], "--set", "data_docs=true"]) == 0
    assert index.is_file()
