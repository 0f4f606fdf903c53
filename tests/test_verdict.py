"""Verdicts that mean something (issue 11): gating rules, the share of rows quarantined, refused
ranges, and the one record per rule kind every module reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_settings

from aims_nb_utils import checks, quarantine, rule_kinds, validation
from aims_nb_utils.errors import RuleFileError
from aims_nb_utils.rules import (
    COLUMN_MAP_EXPECTATIONS,
    MULTICOLUMN_EXPECTATIONS,
    SUPPORTED_EXPECTATIONS,
    TABLE_EXPECTATIONS,
    Expectation,
    RuleFile,
    load_rule_file,
    save_rule_file,
)
from aims_nb_utils.validation import validate_table, validate_tables

UNIQUE = "expect_column_values_to_be_unique"
NOT_NULL = "expect_column_values_to_not_be_null"


def _keyed_table(rows: int = 100, duplicated: int = 2, others: int = 20) -> pa.Table:
    """K is a key with ``duplicated`` rows copying another row's key; C0..C<others> complete."""
    keys = list(range(rows))
    for i in range(duplicated):
        keys[rows - 1 - i] = keys[i]  # the last rows reuse the first keys
    columns = {"K": pa.array([str(k) for k in keys])}
    for c in range(others):
        columns[f"C{c}"] = pa.array([f"v{r % 7}" for r in range(rows)])
    return pa.table(columns)


def _keyed_rules(data: pa.Table, gate: bool) -> RuleFile:
    """One uniqueness rule on K among 20 not-null rules, all severity high: one failing rule
    leaves 95.2% of the high rules passed, above every share threshold."""
    meta = {"severity": "high", "gate": True} if gate else {"severity": "high"}
    rules = [Expectation(UNIQUE, {"column": "K"}, meta)]
    rules += [
        Expectation(NOT_NULL, {"column": c}, {"severity": "high"})
        for c in data.column_names
        if c != "K"
    ]
    return RuleFile(table="aims_keyed", expectations=rules)


def test_a_failed_gating_rule_fails_a_table_the_shares_would_pass(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data = _keyed_table(rows=100, duplicated=2)
    counts = Counter(data.column("K").to_pylist())
    duplicated_rows = sum(n for n in counts.values() if n > 1)
    assert duplicated_rows == 4  # 2 keys twice each: GX counts every occurrence

    ungated = validate_table(settings, "aims_keyed", rule_file=_keyed_rules(data, False), data=data)
    assert ungated.success_percentage == pytest.approx(100 * 20 / 21)
    assert ungated.status == "PASSED"  # the issue: one failing rule among many passes

    gated = validate_table(settings, "aims_keyed", rule_file=_keyed_rules(data, True), data=data)
    assert gated.success_percentage == ungated.success_percentage
    assert gated.status == "FAILED"
    assert [r["kind"] for r in gated.failed_because] == ["gate"]
    reason = gated.failed_because[0]
    assert reason["rule"] == f"{UNIQUE}(K)" and reason["column"] == "K"
    assert reason["unexpected_count"] == duplicated_rows
    assert reason["unexpected_percent"] == pytest.approx(100.0 * duplicated_rows / 100)
    assert gated.threshold_failures == [
        f"gating rule {UNIQUE}(K) failed: {duplicated_rows} of 100 rows unexpected (4.00%)"
    ]
    # the duplicated rows are what quarantine takes: 4 of 100, under max_quarantine_percent
    assert gated.quarantine_rows == duplicated_rows
    assert gated.quarantine_percent == pytest.approx(4.0)


def test_a_passing_gating_rule_changes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data = _keyed_table(rows=50, duplicated=0)
    result = validate_table(settings, "aims_keyed", rule_file=_keyed_rules(data, True), data=data)
    assert result.status == "PASSED" and result.failed_because == []
    assert result.quarantine_rows == 0


def test_a_gating_table_rule_names_what_was_observed(tmp_path: Path) -> None:
    """A renamed column under a gating expect_column_to_exist fails the table, naming it."""
    settings = make_settings(tmp_path)
    data = _keyed_table(rows=30, duplicated=0).rename_columns(
        ["K_RENAMED"] + [f"C{c}" for c in range(20)]
    )
    rules = [Expectation("expect_column_to_exist", {"column": "K"}, {"gate": True})]
    rules += [Expectation(NOT_NULL, {"column": f"C{c}"}, {}) for c in range(20)]
    result = validate_table(
        settings, "aims_keyed", rule_file=RuleFile("aims_keyed", rules), data=data
    )
    assert result.success_percentage == pytest.approx(100 * 20 / 21)
    assert result.status == "FAILED"
    assert result.failed_because[0]["rule"] == "expect_column_to_exist(K)"
    assert result.threshold_failures == [
        "gating rule expect_column_to_exist(K) failed: column K is not in the data"
    ]


def test_a_gating_row_count_says_what_it_saw_and_expected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    data = _keyed_table(rows=10, duplicated=0)
    rules = [
        Expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": 100, "max_value": 1000},
            {"gate": True},
        )
    ]
    rules += [Expectation(NOT_NULL, {"column": f"C{c}"}, {}) for c in range(20)]
    result = validate_table(
        settings, "aims_keyed", rule_file=RuleFile("aims_keyed", rules), data=data
    )
    assert result.success_percentage == pytest.approx(100 * 20 / 21)
    assert result.threshold_failures == [
        "gating rule expect_table_row_count_to_be_between failed: observed 10, expected 100-1000"
    ]


def test_meta_gate_must_be_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "aims_keyed_validation.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "expectations": [
                    {"expectation_type": UNIQUE, "kwargs": {"column": "K"}, "meta": {"gate": "yes"}}
                ]
            }
        )
    )
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)
    message = str(caught.value)
    assert str(path) in message and "meta.gate='yes'" in message and "expectations[0]" in message
    path.write_text(
        path.read_text().replace("gate: 'yes'", "gate: true").replace("gate: yes", "gate: true")
    )
    assert load_rule_file(path).expectations[0].gate is True


# --- the share of rows quarantined ----------------------------------------------------------------


def _write_lake(home: Path, table: str, data: pa.Table, rules: list[Expectation]) -> object:
    settings = make_settings(home)
    settings.paths.bronze.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, settings.paths.bronze_file(table))
    settings.paths.rules.mkdir(parents=True, exist_ok=True)
    save_rule_file(RuleFile(table, rules), settings.paths.rule_file(table))
    return settings


def _sentinel_lake(home: Path, share: float) -> tuple[object, int]:
    """A 200-row table whose AMOUNT holds the sentinel 99999 on ``share`` of its rows, under a
    range rule with a lenient mostly among 20 passing rules (the issue's 'measure set to
    99999' case): one failing low rule, or none, keeps every share threshold met."""
    rows = 200
    bad = int(rows * share)
    amount = [99999.0 if r < bad else float(r % 90 + 10) for r in range(rows)]
    data = pa.table(
        {
            "ID": pa.array([str(r) for r in range(rows)]),
            "AMOUNT": pa.array([str(a) for a in amount]),
            **{f"C{c}": pa.array(["x"] * rows) for c in range(19)},
        }
    )
    rules = [
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "AMOUNT", "min_value": 0, "max_value": 1000, "mostly": 0.05},
            {"severity": "low"},
        ),
        Expectation(UNIQUE, {"column": "ID"}, {"severity": "critical"}),
    ]
    rules += [Expectation(NOT_NULL, {"column": f"C{c}"}, {"severity": "medium"}) for c in range(19)]
    return _write_lake(home, "aims_sentinel", data, rules), bad


def test_a_table_losing_most_rows_to_quarantine_fails_with_that_reason(tmp_path: Path) -> None:
    settings, bad = _sentinel_lake(tmp_path / "home", 0.8)
    run = validate_tables(settings, max_workers=1)
    result = run.tables["aims_sentinel"]
    # GX passes the rule (mostly 5%) and every share is met: only quarantine fails the table
    assert result.success_percentage == 100.0
    assert result.quarantine_rows == bad == 160
    assert result.quarantine_percent == pytest.approx(80.0)
    assert result.status == "FAILED"
    assert [r["kind"] for r in result.failed_because] == ["quarantine"]
    text = "160 of 200 rows (80.0%) break a quarantining rule > max_quarantine_percent 20.0%"
    assert result.threshold_failures == [text]

    document = json.loads(run.results_path.read_text())
    entry = document["files"]["aims_sentinel"]
    assert entry["status"] == "FAILED"
    assert entry["quarantine_rows"] == 160 and entry["quarantine_percent"] == pytest.approx(80.0)
    assert entry["failed_because"][0]["kind"] == "quarantine"
    assert entry["threshold_failures"] == [text]
    assert document["max_quarantine_percent"] == 20.0

    from aims_nb_utils.reports import build_monitoring_report, render_dashboard

    page = render_dashboard(build_monitoring_report(settings))
    assert "160 of 200 rows (80.0%) break a quarantining rule" in page

    # the rows quarantine would take are exactly the rows ingestion's masks split off
    data = pq.read_table(settings.paths.bronze_file("aims_sentinel"))
    rule_file = load_rule_file(settings.paths.rule_file("aims_sentinel"))
    rules, _ = quarantine.row_rules("aims_sentinel", rule_file, [], data.column_names)
    matrix = quarantine.evaluate(data, rules, list(settings.null_placeholders))
    assert int(matrix.any(axis=1).sum()) == result.quarantine_rows


def test_max_quarantine_percent_is_a_setting(tmp_path: Path) -> None:
    settings, _ = _sentinel_lake(tmp_path / "home", 0.2)
    assert settings.max_quarantine_percent == 20.0
    at_bound = validate_tables(settings, max_workers=1).tables["aims_sentinel"]
    assert at_bound.quarantine_percent == pytest.approx(20.0)
    assert at_bound.status == "PASSED"  # a table fails above the bound, not at it
    strict = make_settings(tmp_path / "home", max_quarantine_percent=10)
    result = validate_tables(strict, max_workers=1).tables["aims_sentinel"]
    assert result.status == "FAILED"
    assert result.failed_because[0]["max_quarantine_percent"] == 10.0
    settings_100, _ = _sentinel_lake(tmp_path / "home100", 0.9)
    assert validate_tables(settings_100, max_workers=1).tables["aims_sentinel"].status == "FAILED"
    off = make_settings(tmp_path / "home100", max_quarantine_percent=100)
    assert validate_tables(off, max_workers=1).tables["aims_sentinel"].status == "PASSED"


def test_rules_that_do_not_quarantine_do_not_count(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings, _ = _sentinel_lake(home, 0.8)
    rule_file = load_rule_file(settings.paths.rule_file("aims_sentinel"))
    rule_file.expectations[0].meta["quarantine"] = False
    save_rule_file(rule_file)
    result = validate_tables(settings, max_workers=1).tables["aims_sentinel"]
    assert result.quarantine_rows == 0 and result.status == "PASSED"


def test_split_validation_counts_quarantined_rows_once(tmp_path: Path) -> None:
    """Column groups in worker processes OR their rows: a row breaking rules in two groups
    counts once."""
    rows = 400
    data = pa.table(
        {
            f"C{c}": pa.array(["bad" if r % (c + 2) == 0 else "ok" for r in range(rows)])
            for c in range(6)
        }
    )
    rules = [
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": f"C{c}", "value_set": ["ok"], "mostly": 0.0},
            {"severity": "low"},
        )
        for c in range(6)
    ]
    bad = np.zeros(rows, dtype=bool)
    for c in range(6):
        bad |= np.array([r % (c + 2) == 0 for r in range(rows)])
    settings = _write_lake(tmp_path / "home", "aims_split", data, rules)
    layout = validation._layout(settings, "aims_split", None)
    rule_file = load_rule_file(settings.paths.rule_file("aims_split"))
    tasks = validation._plan([(layout, rule_file), (layout, rule_file)], workers=2)
    assert any(t.columns is not None for t in tasks)  # the table was split into groups
    parts = [validation._run_task(settings, t, None) for t in tasks if t.layout is tasks[0].layout]
    result = validation._assemble(settings, layout, rule_file, parts, 85.0)
    assert result.quarantine_rows == int(bad.sum())


# --- min_value > max_value ------------------------------------------------------------------------


def test_an_inverted_range_is_refused_by_the_rule_file_gx_and_the_masks(tmp_path: Path) -> None:
    rule = Expectation(
        "expect_column_values_to_be_between", {"column": "AMOUNT", "min_value": 10, "max_value": 1}
    )
    data = pa.table({"AMOUNT": pa.array(["5", "50"])})
    settings = _write_lake(tmp_path / "home", "aims_range", data, [rule])
    path = settings.paths.rule_file("aims_range")
    # the file: refused at load, naming the file and the rule
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert "expectations[0] (expect_column_values_to_be_between, column AMOUNT)" in message
    assert "min_value 10 is greater than max_value 1" in message
    # validation of the lake: the table is an ERROR naming file and rule (never a verdict)
    result = validate_tables(settings, max_workers=1, write=False).tables["aims_range"]
    assert result.status == "ERROR" and str(path) in result.error
    assert "expect_column_values_to_be_between" in result.error
    # a rule built in code: GX path fails the rule with the reason, mask path raises it
    in_memory = validate_table(
        settings, "aims_range", rule_file=RuleFile("aims_range", [rule]), data=data
    )
    assert in_memory.rule_results[0].success is False
    assert "min_value 10 is greater than max_value 1" in in_memory.rule_results[0].error
    with pytest.raises(
        checks.RuleEvaluationError, match="min_value 10 is greater than max_value 1"
    ):
        checks.unexpected_mask(data, rule, [])
    lengths = Expectation(
        "expect_column_value_lengths_to_be_between",
        {"column": "AMOUNT", "min_value": 3, "max_value": 2},
    )
    with pytest.raises(checks.RuleEvaluationError, match="expect_column_value_lengths"):
        checks.unexpected_mask(data, lengths, [])


# --- one record per rule kind ---------------------------------------------------------------------


def test_every_expectation_type_has_exactly_one_complete_record() -> None:
    import great_expectations as gx

    assert set(rule_kinds.KINDS) == set(SUPPORTED_EXPECTATIONS)
    assert len(rule_kinds._RECORDS) == len(rule_kinds.KINDS)  # no type described twice
    for etype, record in rule_kinds.KINDS.items():
        assert record.expectation_type == etype
        assert hasattr(gx.expectations, record.gx_class), record.gx_class
        assert record.dimension in ("completeness", "uniqueness", "validity", "integrity")
        assert record.shape in (rule_kinds.TABLE, rule_kinds.COLUMN, rule_kinds.MULTICOLUMN)
        assert isinstance(record.profiling_may_gate, bool) and record.summary
        assert record.scope in (rule_kinds.ROW_SCOPE, rule_kinds.TABLE_SCOPE)
        if record.shape == rule_kinds.TABLE:
            assert record.form is None and record.mask is None and record.reason is None
        else:
            assert record.form is not None and record.reason is not None
            assert (record.mask is not None) == (record.shape == rule_kinds.COLUMN)
    # the vocabulary, the GX classes and the masks all come from the records
    shapes = {
        rule_kinds.TABLE: TABLE_EXPECTATIONS,
        rule_kinds.COLUMN: COLUMN_MAP_EXPECTATIONS,
        rule_kinds.MULTICOLUMN: MULTICOLUMN_EXPECTATIONS,
    }
    for shape, vocabulary in shapes.items():
        assert vocabulary == rule_kinds.kinds_of_shape(shape)
    for etype, record in rule_kinds.KINDS.items():
        assert validation._GX_CLASS_NAMES[etype] == record.gx_class
    assert validation._RULES_THAT_SEE_NULLS == {NOT_NULL}
    with pytest.raises(KeyError, match="supported"):
        rule_kinds.rule_kind("expect_column_to_be_pretty")


def test_profiling_may_gate_the_rules_that_must_never_break() -> None:
    gateable = {k for k, r in rule_kinds.KINDS.items() if r.profiling_may_gate}
    assert gateable == {
        "expect_table_row_count_to_be_between",
        "expect_column_to_exist",
        NOT_NULL,
        UNIQUE,
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_match_regex",
        # at their mostly: a significant share of unseen codes, orphans or sentinels
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
    }


def test_quarantine_reasons_and_scopes_come_from_the_records() -> None:
    in_set = Expectation("expect_column_values_to_be_in_set", {"column": "S", "value_set": ["a"]})
    reference = Expectation(
        "expect_column_values_to_be_in_set",
        {"column": "P"},
        {"reference": {"table": "aims_parent", "column": "ID"}},
    )
    rule_file = RuleFile("aims_child", [in_set, reference])
    rules, _ = quarantine.row_rules("aims_child", rule_file, [], ["S", "P"])
    assert [r.after for r in rules] == [
        " is not one of the 1 allowed values",
        " is not a ID of aims_parent",
    ]
    assert [r.scope for r in rules] == [rule_kinds.ROW_SCOPE, rule_kinds.TABLE_SCOPE]
    # and the masks: each column kind's record computes its rows
    data = pa.table({"S": pa.array(["a", "b", None])})
    mask = checks.unexpected_mask(data, in_set, [])
    assert mask.tolist() == [False, True, False]
    assert (
        mask.tolist()
        == rule_kinds.KINDS[in_set.expectation_type]
        .mask(pc.cast(data.column("S"), pa.string()), in_set, None, None)
        .tolist()
    )


def test_ingestion_never_loads_a_table_that_loses_most_rows_under_passed(tmp_path: Path) -> None:
    """The issue's other half: a table whose rows mostly break a quarantining rule used to be
    PASSED and loaded with most rows in quarantine. Now its verdict fails and the drop is handled
    as a failed table; changing max_quarantine_percent re-judges an unchanged table."""
    from aims_nb_utils.ingestion import ingest_tables

    home = tmp_path / "home"
    _sentinel_lake(home, 0.8)
    lenient = make_settings(home, max_quarantine_percent=100)
    before = ingest_tables(lenient).tables["aims_sentinel"]
    assert (before.verdict, before.status) == ("PASSED", "loaded")
    assert (before.rows_silver, before.rows_quarantined) == (40, 160)  # what the issue saw

    run = ingest_tables(make_settings(home))  # default 50 %: same data, another verdict
    after = run.tables["aims_sentinel"]
    assert after.verdict == "FAILED" and after.status == "not_promoted"
    assert after.rows_silver == 0 and after.rows_quarantined == 200
    from aims_nb_utils import storage

    quarantined = storage.read_table(make_settings(home), "quarantine", "aims_sentinel")
    reasons = quarantined.column("_dq_reason")
    assert quarantined.num_rows == 200
    assert all(
        "160 of 200 rows (80.0%) break a quarantining rule" in r for r in reasons.to_pylist()
    )
