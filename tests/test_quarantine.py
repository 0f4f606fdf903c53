"""The row split: quarantine holds exactly the rows GX counts as unexpected, with readable reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import checks, storage
from aims_nb_utils.ingestion import ingest_tables, row_hashes
from aims_nb_utils.profiling import profile_tables
from aims_nb_utils.quarantine import (
    FAILED_RULES,
    REASON,
    ROW_HASH,
    count_by_rule,
    duplicate_key_id,
    evaluate,
    key_not_null_id,
    quarantine_rows,
    row_rules,
)
from aims_nb_utils.rules import Expectation, RuleFile, load_rule_file
from aims_nb_utils.typing_rules import silver_types
from aims_nb_utils.validation import validate_tables

# Parents first: the children's referential rules read them. assethierarchymap has no ID column.
TABLES = ["aims_owners", "aims_phases", "aims_stages", "aims_assets", "aims_assethierarchymap"]
PLACEHOLDERS = ["None", "NaT", "", " "]


@pytest.fixture(scope="module")
def loaded(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The defective sample lake profiled, validated with GX and ingested once."""
    home = copy_home(lake_home, tmp_path_factory.mktemp("quarantine") / "home")
    settings = make_settings(home)
    profile_tables(settings)
    validation = validate_tables(settings, tables=TABLES, write=False)
    run = ingest_tables(
        settings, tables=TABLES, verdicts=validation.tables, run_id=validation.run_id
    )
    return settings, validation, run


def test_rows_each_rule_quarantines_equal_its_mask_and_gx_unexpected_count(loaded) -> None:
    settings, validation, run = loaded
    compared, kinds = 0, set()
    for table in TABLES:
        assert run.tables[table].status == "loaded", run.tables[table]
        quarantined = count_by_rule(storage.read_table(settings, "quarantine", table))
        bronze = pq.read_table(settings.paths.bronze_file(table))
        rules = {e.rule_id: e for e in load_rule_file(settings.paths.rule_file(table)).expectations}
        for result in validation.tables[table].rule_results:
            rule = rules.get(result.rule_id)
            if rule is None or not rule.quarantines_rows:
                continue
            reference = (
                checks.reference_values(settings, *rule.reference) if rule.reference else None
            )
            kind = checks.column_kind(table, rule.column, rule)
            mask = checks.unexpected_mask(bronze, rule, PLACEHOLDERS, reference, kind)
            assert quarantined.get(rule.rule_id, 0) == int(mask.sum()) == result.unexpected_count, (
                table,
                rule.rule_id,
            )
            if result.unexpected_count:
                compared += 1
                kinds.add("reference" if rule.reference else rule.expectation_type)
    # Not vacuous: many rules of every kind the generator breaks did quarantine rows.
    assert compared >= 10
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_in_set",
        "reference",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_match_regex",
    } <= kinds


def test_quarantine_keeps_bronze_text_and_explains_each_rule(loaded) -> None:
    settings, _, run = loaded
    table = "aims_assets"
    quarantine = storage.read_table(settings, "quarantine", table)
    bronze = pq.read_table(settings.paths.bronze_file(table))
    assert quarantine.num_rows == run.tables[table].rows_quarantined > 0
    # Bronze values are kept as they were, text included: each row matches its Bronze row exactly.
    position = {h: i for i, h in enumerate(row_hashes(bronze).tolist())}
    rows = [position[h] for h in quarantine.column(ROW_HASH).to_pylist()]
    assert quarantine.select(bronze.column_names).equals(bronze.take(pa.array(rows)))
    assert all(
        pa.types.is_string(f.type) for f in quarantine.schema if not f.name.startswith("_dq_")
    )
    assert set(quarantine.column("_dq_run_id").to_pylist()) == {run.run_id}
    for failed, reason in zip(
        quarantine.column(FAILED_RULES).to_pylist(),
        quarantine.column(REASON).to_pylist(),
        strict=True,
    ):
        sentences = reason.split("; ")
        assert failed and len(sentences) == len(failed)
        for rule_id, sentence in zip(failed, sentences, strict=True):
            assert sentence.endswith(f"[{rule_id}]")
    # A readable sentence names the column and quotes the offending value.
    in_set = [
        r
        for r in quarantine.column(REASON).to_pylist()
        if "allowed values [expect_column_values_to_be_in_set(PHASE)]" in r
    ]
    assert in_set and all("PHASE '" in r for r in in_set)


def test_silver_and_quarantine_split_every_bronze_row_once(loaded) -> None:
    settings, _, run = loaded
    for table in TABLES:
        bronze = pq.read_table(settings.paths.bronze_file(table))
        silver_h = (
            storage.read_table(settings, "silver", table, columns=[ROW_HASH]).column(0).to_numpy()
        )
        quarantine_h = (
            storage.read_table(settings, "quarantine", table, columns=[ROW_HASH])
            .column(0)
            .to_numpy()
        )
        assert len(silver_h) + len(quarantine_h) == bronze.num_rows == run.tables[table].rows_in
        assert sorted(np.concatenate([silver_h, quarantine_h]).tolist()) == sorted(
            row_hashes(bronze).tolist()
        )


def _rules(*expectations: Expectation) -> RuleFile:
    return RuleFile(table="aims_phases", expectations=list(expectations))


def test_key_rules_apply_only_where_the_rule_file_has_none() -> None:
    data = pa.table({"ID": ["1", "2", "2.0", "None"], "CODE": ["a", "b", "c", "d"]})
    types = silver_types("aims_phases", data.column_names)
    rules, _ = row_rules("aims_phases", _rules(), types, data.column_names, ["ID"])
    ids = [r.rule_id for r in rules]
    assert key_not_null_id(["ID"]) in ids and duplicate_key_id(["ID"]) in ids
    matrix = evaluate(
        data, rules, PLACEHOLDERS, cast_failures={c: np.zeros(4, bool) for c in data.column_names}
    )
    by_rule = dict(zip(ids, matrix.T, strict=True))
    # '2' and '2.0' are one key
    assert by_rule["duplicate_key(ID)"].tolist() == [False, True, True, False]
    assert by_rule["key_not_null(ID)"].tolist() == [False, False, False, True]
    unique = Expectation("expect_column_values_to_be_unique", {"column": "ID"})
    rules, _ = row_rules("aims_phases", _rules(unique), types, data.column_names, ["ID"])
    assert "duplicate_key(ID)" not in [r.rule_id for r in rules]
    # no key, no key rules: a keyless table is loaded as a snapshot
    rules, _ = row_rules("aims_phases", _rules(), types, data.column_names)
    assert not [r for r in rules if r.check in ("key_not_null", "key_unique")]


def test_a_composite_key_flags_every_row_of_a_duplicated_combination() -> None:
    data = pa.table(
        {
            "k1": pa.array([1, 1, 1, 2, None, None], pa.int32()),
            "k2": ["a", "b", "a", "a", "x", "x"],
        }
    )
    types = silver_types(
        "t", data.column_names, None, dict(zip(data.column_names, data.schema.types, strict=True))
    )
    rules, _ = row_rules("t", None, types, data.column_names, ["k1", "k2"])
    by_id = {r.rule_id: j for j, r in enumerate(rules)}
    matrix = evaluate(data, rules, PLACEHOLDERS, cast_failures={})
    dup = matrix[:, by_id["duplicate_key(k1, k2)"]].tolist()
    assert dup == [True, False, True, False, False, False]  # a null part never collides
    assert matrix[:, by_id["key_not_null(k1, k2)"]].tolist() == [False] * 4 + [True, True]
    q = quarantine_rows(data, matrix, rules, "run", np.arange(6))
    reasons = q.column(REASON).to_pylist()
    assert "key (k1, k2) = ('1', 'a') occurs more than once" in reasons[0]
    assert "[duplicate_key(k1, k2)]" in reasons[0]
    # a compound uniqueness rule on the key replaces the implicit key rule
    compound = Expectation("expect_compound_columns_to_be_unique", {"column_list": ["k2", "k1"]})
    rules, _ = row_rules("t", _rules(compound), types, data.column_names, ["k1", "k2"])
    ids = [r.rule_id for r in rules]
    assert "duplicate_key(k1, k2)" not in ids
    assert "expect_compound_columns_to_be_unique(k2, k1)" in ids
    matrix = evaluate(data, rules, PLACEHOLDERS, cast_failures={})
    assert matrix[:, ids.index("expect_compound_columns_to_be_unique(k2, k1)")].tolist() == dup


def test_rules_that_do_not_quarantine_and_absent_columns_are_left_out() -> None:
    soft = Expectation(
        "expect_column_values_to_not_be_null", {"column": "CODE"}, {"quarantine": False}
    )
    gone = Expectation("expect_column_values_to_not_be_null", {"column": "DESCRIPTION"})
    rules, notes = row_rules("aims_phases", _rules(soft, gone), [], ["ID", "CODE"])
    assert soft.rule_id not in [r.rule_id for r in rules]
    assert notes == [
        "rule expect_column_values_to_not_be_null(DESCRIPTION) skipped: column DESCRIPTION is not in this drop"
    ]


def test_reasons_list_row_rules_after_the_table_reason() -> None:
    raw = pa.table({"ID": ["1", "2"], "CODE": ["x" * 50, None]})
    not_null = Expectation("expect_column_values_to_not_be_null", {"column": "CODE"})
    length = Expectation(
        "expect_column_value_lengths_to_be_between",
        {"column": "CODE", "min_value": 1, "max_value": 4},
    )
    rules, _ = row_rules("aims_phases", _rules(not_null, length), [], raw.column_names)
    rules = [r for r in rules if r.check == "expectation"]
    matrix = np.array([[False, True], [True, False]])
    out = quarantine_rows(
        raw, matrix, rules, "run1", np.array([7, 8]), "table failed", "table_verdict(FAILED)"
    )
    assert out.column(FAILED_RULES).to_pylist() == [
        ["table_verdict(FAILED)", length.rule_id],
        ["table_verdict(FAILED)", not_null.rule_id],
    ]
    first, second = out.column(REASON).to_pylist()
    assert first == (
        f"table failed; CODE '{'x' * 40}...' has a length outside 1-4 [{length.rule_id}]"
    )
    assert second == f"table failed; CODE is empty [{not_null.rule_id}]"
    assert out.column(ROW_HASH).to_pylist() == [7, 8]


def test_distinct_value_evaluation_gives_the_same_masks_and_types(
    loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Columns that repeat are evaluated on their distinct values: same matrix, same Silver."""
    from aims_nb_utils import typing_rules
    from aims_nb_utils.quarantine import type_pattern_rules

    settings, _, _ = loaded
    table = "aims_assets"
    bronze = pq.read_table(settings.paths.bronze_file(table))
    rule_file = load_rule_file(settings.paths.rule_file(table))
    types = silver_types(table, bronze.column_names, rule_file)
    rules, _ = row_rules(table, rule_file, types, bronze.column_names)
    references = {
        r.rule_id: checks.reference_values(settings, *r.expectation.reference)
        for r in rules
        if r.expectation is not None and r.expectation.reference is not None
    }

    def run() -> tuple[np.ndarray, pa.Table, dict[str, typing_rules.ColumnView]]:
        views: dict = {}
        pattern = type_pattern_rules(rules, types)
        per_value = dict.fromkeys(pattern.values())
        matrix = evaluate(bronze, rules, PLACEHOLDERS, references, None, views, per_value)
        known_bad = {c: per_value[j] for c, j in pattern.items()}
        typed, failures = typing_rules.type_table(bronze, types, PLACEHOLDERS, views, known_bad)
        for j, rule in enumerate(rules):
            if rule.check == "cast":
                matrix[:, j] = failures[rule.column]
        return matrix, typed, views

    plain_matrix, plain_typed, plain_views = run()  # the sample's 6.6k rows: never encoded
    monkeypatch.setattr(typing_rules, "PROBE_ROWS", 64)
    encoded_matrix, encoded_typed, encoded_views = run()
    assert not any(v.codes is not None for v in plain_views.values())
    assert sum(v.codes is not None for v in encoded_views.values()) >= 5
    assert plain_matrix.any() and np.array_equal(plain_matrix, encoded_matrix)
    assert plain_typed.equals(encoded_typed)
    # And both equal checks.unexpected_mask rule by rule (the validation semantics).
    for j, rule in enumerate(rules):
        if rule.check == "expectation":
            mask = checks.unexpected_mask(
                bronze, rule.expectation, PLACEHOLDERS, references.get(rule.rule_id), rule.kind
            )
            assert np.array_equal(mask, encoded_matrix[:, j]), rule.rule_id


def test_uniqueness_on_distinct_values_counts_canonical_twins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aims_nb_utils import typing_rules

    monkeypatch.setattr(typing_rules, "PROBE_ROWS", 4)
    # Repetitive (so it is encoded); '5' and '5.0' are one key; '11' and '12.0' occur once.
    values = (
        ["6"] * 12 + ["5"] * 4 + ["5.0"] + ["None"] * 8 + [None] * 8 + ["7"] * 5 + ["11", "12.0"]
    )
    data = pa.table({"PARENTID": values})
    unique = Expectation("expect_column_values_to_be_unique", {"column": "PARENTID"})
    rules, _ = row_rules("aims_assetclasses", _rules(unique), [], data.column_names)
    views: dict = {}
    matrix = evaluate(data, rules, PLACEHOLDERS, views=views)
    assert views["PARENTID"].codes is not None  # evaluated on distinct values
    expected = checks.unexpected_mask(data, unique, PLACEHOLDERS, None, rules[0].kind)
    assert np.array_equal(matrix[:, 0], expected)
    assert matrix[-2:, 0].tolist() == [False, False] and matrix[12:17, 0].all()
    assert not matrix[17:33, 0].any()  # nulls and placeholders are never duplicates
