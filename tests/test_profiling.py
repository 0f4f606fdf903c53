"""Profiling: full-data rule files in the legacy layout, calibrated rules, discovered references,
and hand-edited files that are never overwritten silently."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import copy_home, make_settings

from aims_nb_utils import checks, cli
from aims_nb_utils.errors import AimsError
from aims_nb_utils.io import list_bronze_tables
from aims_nb_utils.profiling import (
    HASH_KEY,
    ProfileRun,
    excluded_values,
    profile_table,
    profile_tables,
    rare_values,
    rules_hash,
    suggest_rules,
)
from aims_nb_utils.rules import (
    DEFAULT_QUALITY_THRESHOLDS,
    GENERATOR_NAME,
    SEVERITIES,
    SUPPORTED_EXPECTATIONS,
    TYPE_PATTERNS,
    adjust_thresholds,
    load_rule_file,
    threshold_values,
)
from aims_nb_utils.settings import Settings
from aims_nb_utils.spec import get_table

PLACEHOLDERS = ("None", "NaT", "", " ")
TOP_KEYS = [
    "validation_name",
    "description",
    "generated_at",
    "data_source",
    "quality_thresholds",
    "keys",  # candidate keys, best first; only when the data has one
    HASH_KEY,
    "expectations",
]


@pytest.fixture(scope="module")
def profiled(
    lake_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, ProfileRun]:
    """The defective sample lake profiled once, in two worker processes."""
    home = copy_home(lake_home, tmp_path_factory.mktemp("profiled") / "home")
    settings = make_settings(home)
    return settings, profile_tables(settings, max_workers=2)


def _rule(settings: Settings, table: str, etype: str, column: str):
    rule_file = load_rule_file(settings.paths.rule_file(table))
    found = [
        e for e in rule_file.expectations if e.expectation_type == etype and e.column == column
    ]
    assert len(found) == 1, f"{table}: expected one {etype}({column}), found {len(found)}"
    return found[0]


def _text(settings: Settings, table: str, column: str) -> pd.Series:
    """A Bronze column with placeholders as null, as pandas text."""
    values = (
        pq.read_table(settings.paths.bronze_file(table), columns=[column]).column(0).to_pandas()
    )
    return values.where(~values.isin(PLACEHOLDERS))


# --- the files ----------------------------------------------------------------------------------


def test_a_rule_file_per_table_in_the_legacy_layout(profiled) -> None:
    settings, run = profiled
    tables = list_bronze_tables(settings.paths.bronze)
    assert len(tables) == 68 and not run.errors and not run.kept
    assert sorted(p.name for p in run.written) == sorted(f"{t}_validation.yml" for t in tables)
    for table in tables:
        path = settings.paths.rule_file(table)
        raw = yaml.safe_load(path.read_text())
        layout = [k for k in TOP_KEYS if k != "keys" or "keys" in raw]
        assert list(raw) == layout, table
        meta = pq.read_metadata(settings.paths.bronze_file(table))
        columns = list(meta.schema.to_arrow_schema().names)
        if "ID" in columns and meta.num_rows:  # the generator's row identity, found from data
            assert raw["keys"][0] == ["ID"], table
        source = raw["data_source"]
        assert source["type"] == "parquet" and source["path"].endswith(f"{table}.parquet")
        assert source["profiled_rows"] == meta.num_rows  # every row, not a sample
        assert source["profiled_columns"] == len(columns) and source["sampled"] is False
        assert raw["quality_thresholds"] == DEFAULT_QUALITY_THRESHOLDS
        assert raw["validation_name"] == f"aims_{table}"

        rule_file = load_rule_file(path)
        assert raw[HASH_KEY] == rules_hash(rule_file.expectations)
        assert rule_file.columns() == columns  # one exists rule per column, in file order
        count = [e for e in rule_file.expectations if e.expectation_type.endswith("count_to_equal")]
        assert [e.kwargs["value"] for e in count] == [len(columns)]
        for e in rule_file.expectations:
            assert e.expectation_type in SUPPORTED_EXPECTATIONS
            assert e.meta["generated_by"] == GENERATOR_NAME and e.meta["severity"] in SEVERITIES
            assert e.meta["description"] and e.meta["dimension"]
            if e.is_row_level:
                assert isinstance(e.meta["quarantine"], bool)
                assert e.column in columns
                assert "mostly" not in e.kwargs or 0 < e.kwargs["mostly"] < 1


def test_empty_tables_say_so_and_learn_nothing(profiled) -> None:
    settings, _ = profiled
    empty = [
        t
        for t in list_bronze_tables(settings.paths.bronze)
        if pq.read_metadata(settings.paths.bronze_file(t)).num_rows == 0
    ]
    assert len(empty) == 13
    for table in empty:
        rule_file = load_rule_file(settings.paths.rule_file(table))
        assert rule_file.data_source["empty_table"] is True
        assert rule_file.data_source["profiled_rows"] == 0
        assert rule_file.is_empty_table and not rule_file.column_rules()
        names = pq.read_schema(settings.paths.bronze_file(table)).names
        assert rule_file.columns() == names
        (row_count,) = [
            e for e in rule_file.expectations if e.expectation_type.startswith("expect_table_row")
        ]
        assert row_count.kwargs["min_value"] == 0 and "empty" in row_count.meta["description"]


# --- calibration ------------------------------------------------------------------------------


def _floor4(x: float) -> float:
    return math.floor(x * 10_000 + 1e-9) / 10_000


def test_not_null_mostly_is_observed_share_minus_tolerance(profiled) -> None:
    """A complete column gates the table on a burst of nulls past the tolerance; a sparse one
    tolerates its usual share half again (at least the tolerance) and keeps its rows."""
    settings, _ = profiled
    table = "aims_assetlocations"
    tolerance = settings.null_tolerance / 100
    frame = pq.read_table(settings.paths.bronze_file(table)).to_pandas()
    checked = sparse = 0
    for e in load_rule_file(settings.paths.rule_file(table)).expectations:
        if e.expectation_type != "expect_column_values_to_not_be_null":
            continue
        column = frame[e.column]
        present = float((column.notna() & ~column.isin(PLACEHOLDERS)).mean())
        complete = 1 - present < 0.01
        if complete:
            assert e.kwargs["mostly"] == _floor4(present - tolerance), e.column
        else:
            nulls = 1 - present
            expected = _floor4(1 - nulls - max(tolerance, nulls / 2))
            assert abs(e.kwargs.get("mostly", 0) - expected) <= 0.0001, e.column
            sparse += 1
        # a null is a defective row only where the column is complete, or (almost) complete
        # and the published spec says it is never null
        published = get_table(table).column(e.column).nullable_percent
        spec_nullable = published is None or published > 0
        kept = complete and (present == 1 or not spec_nullable)
        assert e.meta["quarantine"] is kept, e.column
        assert e.meta.get("gate", False) is complete, e.column
        checked += 1
    # every column at most half null has its rule (a column null on two rows in three tolerates
    # no share of nulls worth a rule: it would never fail)
    presence = {c: (frame[c].notna() & ~frame[c].isin(PLACEHOLDERS)).mean() for c in frame}
    assert checked >= sum(share >= 0.5 for share in presence.values())
    assert sparse > 0


def test_type_rules_for_ids_dates_numbers_and_flags(profiled) -> None:
    settings, _ = profiled
    cases = [
        ("aims_assets", "ID", "integer"),
        ("aims_assetlocations", "ASSETID", "integer"),
        ("aims_assetlocations", "WHENCREATED", "date"),
        ("aims_assetlocations", "OSGBEASTING", "decimal"),
        ("aims_assets", "ISPRIMARYASSET", "boolean"),
    ]
    tolerance = settings.null_tolerance / 100
    for table, column, vtype in cases:
        rule = _rule(settings, table, "expect_column_values_to_match_regex", column)
        assert rule.meta["value_type"] == vtype and rule.kwargs["regex"] == TYPE_PATTERNS[vtype]
        values = _text(settings, table, column).dropna()
        share = float(values.str.fullmatch(TYPE_PATTERNS[vtype]).mean())
        assert share >= 0.99
        assert rule.kwargs["mostly"] == _floor4(share - tolerance), (table, column)
    # The range of a number column is the range of its conforming values ('12,5' is not one).
    values = _text(settings, "aims_assetlocations", "OSGBEASTING").dropna()
    numbers = values[values.str.fullmatch(TYPE_PATTERNS["decimal"])].astype(float)
    between = _rule(
        settings, "aims_assetlocations", "expect_column_values_to_be_between", "OSGBEASTING"
    )
    assert between.meta["observed_min"] == numbers.min()
    assert between.meta["observed_max"] == numbers.max()
    # the range reaches past what was seen (new data may go a little further), not across zero
    assert 0 <= between.kwargs["min_value"] <= numbers.min()
    assert between.kwargs["max_value"] >= numbers.max() + (numbers.max() - numbers.min())
    # Keys get no range: new IDs must not fail a range learned from old ones.
    rule_file = load_rule_file(settings.paths.rule_file("aims_assets"))
    ranged = [
        e.column
        for e in rule_file.expectations
        if e.expectation_type == "expect_column_values_to_be_between"
    ]
    assert ranged and not any(c.endswith("ID") for c in ranged)


def test_keys_are_unique_over_canonical_values(profiled) -> None:
    settings, _ = profiled
    rule = _rule(settings, "aims_assets", "expect_column_values_to_be_unique", "ID")
    ids = _text(settings, "aims_assets", "ID").dropna().str.replace(r"\.0+$", "", regex=True)
    duplicated = int(ids.duplicated(keep=False).sum())
    assert duplicated > 0  # the sample lake duplicates some IDs on purpose
    assert rule.meta["observed_duplicate_rows"] == duplicated
    # the row identity tolerates twice the duplicates it was seen with, and gates the table
    assert rule.kwargs["mostly"] == _floor4(1 - 2 * duplicated / len(ids))
    assert rule.meta["severity"] == "high" and rule.meta["gate"] is True


def test_value_sets_leave_out_injected_values(profiled) -> None:
    from aims_nb_utils.sample_data import read_manifest

    settings, _ = profiled
    manifest = read_manifest(settings.paths.bronze)
    injected = manifest[manifest.defect_kind == "out_of_value_set"]
    assert len(injected)
    with_rule = 0
    for (table, column), group in injected.groupby(["table", "column"]):
        rule_file = load_rule_file(settings.paths.rule_file(table))
        sets = [
            e
            for e in rule_file.expectations
            if e.expectation_type == "expect_column_values_to_be_in_set"
            and e.column == column
            and e.reference is None
        ]
        for rule in sets:
            with_rule += 1
            assert not set(group.value) & set(rule.kwargs["value_set"]), (table, column)
            assert set(group.value) <= set(rule.meta["observed_excluded_values"])
    assert with_rule > 0


def test_rare_values_are_kept_unless_there_is_evidence_they_are_wrong() -> None:
    # 'INVALID' once next to four common values: its characters are unlike all of theirs.
    counts = [("a", 300), ("b", 250), ("c", 200), ("d", 80), ("INVALID", 1)]
    assert rare_values(counts, 831) == {"INVALID": 1}
    assert "characters" in excluded_values(counts, 831)["INVALID"][1]
    # A natural long tail is data.
    tail = [("a", 150), ("b", 100), ("c", 40), ("d", 10), ("e", 3), ("f", 1)]
    assert rare_values(tail, 304) == {}
    # A real code used by 0.01 % of the rows, a rare make: rare is not wrong.
    big = [("AB", 60_000), ("CD", 39_940), ("XY", 10)]
    assert rare_values(big, 100_000) == {}
    makes = [("BOEING", 1630), ("EMBRAER", 299), ("AIRBUS", 400), ("AGUSTA SPA", 1)]
    assert rare_values(makes, 2330) == {}
    # ... but a case/whitespace variant of a common value, '??' among codes, text among numbers
    # and a pasted text among codes are, each with its evidence.
    codes = [("Active", 5000), ("Closed", 4000), ("active ", 3), ("??", 2), ("x" * 40, 1)]
    found = excluded_values(codes, 9006)
    assert set(found) == {"active ", "??", "x" * 40}
    assert "variant of 'Active'" in found["active "][1]
    numbers = [("10", 400), ("20", 300), ("35", 200), ("n/a", 2), ("7", 1)]
    assert rare_values(numbers, 903) == {"n/a": 2}
    # A published value set tells a rare defect from a rare category: unlisted and under 1 %.
    notes = [("p", 36), ("q", 30), ("r", 26), ("s", 23), ("t", 14), ("u", 14), ("v", 4)]
    published = ["p", "q", "r", "s", "t", "u", "v"]
    assert rare_values([*notes, ("zz", 1)], 148) == {}
    assert rare_values([*notes, ("zz", 1)], 148, published) == {"zz": 1}
    # ... but a common unlisted value is a new category, and '7.0' is the listed '7'.
    assert rare_values([("p", 90), ("new", 50), ("7.0", 8)], 148, ["p", "7"]) == {}


def test_distinct_counting_is_exact_whatever_the_layout() -> None:
    """Sorted IDs, shuffled IDs with orphans, repeating codes, sparse values, weighted counts:
    the fast paths must agree with a plain np.unique."""
    from aims_nb_utils.profiling import _distinct_with_counts

    rng = np.random.default_rng(11)
    ids = np.arange(13_000_000, 13_050_000, dtype=np.int64)
    layouts = {
        "sorted": np.sort(np.concatenate([ids, ids[:10]])),
        "shuffled with orphans": rng.permutation(np.concatenate([ids, [99_900_001, 0, -5]])),
        "codes": rng.choice(np.array([5, 900_000_000, -3], dtype=np.int64), 40_000),
        "sparse": rng.integers(-(2**60), 2**60, 20_000),
        "one value": np.full(1_000, 42, dtype=np.int64),
    }
    for name, values in layouts.items():
        for weights in (None, rng.integers(1, 9, values.size)):
            distinct, counts = _distinct_with_counts(values, weights)
            expected, inverse = np.unique(values, return_inverse=True)
            expected_counts = np.bincount(inverse, weights=weights).astype(np.int64)
            assert distinct.tolist() == expected.tolist(), name
            assert counts.tolist() == expected_counts.tolist(), name


# --- hand-made tables: exact expectations ---------------------------------------------------------


def _demo_home(tmp_path: Path, columns: dict[str, list[str | None]]) -> Settings:
    home = tmp_path / "home"
    bronze = home / "data" / "bronze"
    bronze.mkdir(parents=True)
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})
    pq.write_table(table, bronze / "aims_demo.parquet")
    return make_settings(home)


def test_lengths_ignore_pasted_outliers_and_ranges_use_conforming_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnop"))
    names = ["".join(rng.choice(letters, int(n))) for n in rng.integers(5, 21, 1000)]
    names[10] = names[500] = names[900] = "y" * 400  # three pastes, far above the bulk
    amounts = [f"{v:.2f}" for v in rng.uniform(-50, 150, 1000)]
    amounts[7] = "12,5"  # not a number: the type rule reports it, the range ignores it
    settings = _demo_home(tmp_path, {"NAME": names, "AMOUNT": amounts})
    rules = suggest_rules(profile_table(settings, "aims_demo"), settings)
    by_rule = {e.rule_id: e for e in rules.expectations}

    lengths = by_rule["expect_column_value_lengths_to_be_between(NAME)"]
    real = [len(n) for n in names if len(n) < 400]
    assert lengths.kwargs["min_value"] == min(real) and lengths.kwargs["max_value"] == max(real)
    assert lengths.meta["observed_max_length"] == 400
    assert lengths.kwargs["mostly"] == _floor4(997 / 1000 - 0.02)

    numbers = [float(a) for a in amounts if a != "12,5"]
    between = by_rule["expect_column_values_to_be_between(AMOUNT)"]
    assert (between.meta["observed_min"], between.meta["observed_max"]) == (
        min(numbers),
        max(numbers),
    )
    regex = by_rule["expect_column_values_to_match_regex(AMOUNT)"]
    assert regex.meta["value_type"] == "decimal" and regex.kwargs["mostly"] == _floor4(0.999 - 0.02)


def test_a_column_with_a_value_set_gets_no_length_or_range_rule(tmp_path: Path) -> None:
    """The set implies both: they could only flag rows the set flags already."""
    rng = np.random.default_rng(5)
    status = list(rng.choice(["Active", "Closed", "Proposed"], 2000))
    grade = list(rng.choice(["1", "2", "3", "4"], 2000))
    settings = _demo_home(tmp_path, {"STATUS": status, "GRADE": grade})
    rules = suggest_rules(profile_table(settings, "aims_demo"), settings)
    kinds = {(e.expectation_type, e.column) for e in rules.expectations}
    for column in ("STATUS", "GRADE"):
        assert ("expect_column_values_to_be_in_set", column) in kinds
        assert ("expect_column_value_lengths_to_be_between", column) not in kinds
        assert ("expect_column_values_to_be_between", column) not in kinds
    assert ("expect_column_values_to_match_regex", "GRADE") in kinds  # its type for Silver


STRATEGIES = {
    "default": {},
    "per column, dictionary reads": {"WHOLE_TABLE_ROWS": 0, "DICTIONARY_DISTINCT_SHARE": 1.0},
    "per column, row by row": {
        "WHOLE_TABLE_ROWS": 0,
        "DICTIONARY_DISTINCT_SHARE": 0.0,
        "PROBE_DISTINCT_SHARE": 0.0,
    },
}


def _rules_with(settings: Settings, table: str, monkeypatch, knobs: dict) -> list[dict]:
    from aims_nb_utils import profiling

    with monkeypatch.context() as patch:
        for name, value in knobs.items():
            patch.setattr(profiling, name, value)
        rule_file = suggest_rules(profile_table(settings, table), settings)
    return [e.to_dict() for e in rule_file.expectations]


def test_reading_and_counting_strategies_do_not_change_the_rules(
    profiled, tmp_path: Path, monkeypatch
) -> None:
    """How a column is read (whole table, per column, parquet dictionary) and counted (distinct
    values or row by row) is a speed choice only: every strategy yields the same rules."""
    rng = np.random.default_rng(5)
    rows = 12_000
    codes = rng.choice(
        ["A", "B", "C", "None", " ", None], rows, p=[0.4, 0.3, 0.2, 0.05, 0.04, 0.01]
    )
    codes[[17, 4_000, 9_999]] = "INVALID"
    ids = [f"{13_000_000 + i}" + (".0" if i % 3 else "") for i in range(rows)]
    ids[50] = ids[49]
    amounts = [None if i % 10 == 0 else f"{v:.1f}" for i, v in enumerate(rng.normal(100, 20, rows))]
    demo = _demo_home(tmp_path, {"ID": ids, "STATUS": list(codes), "AMOUNT": amounts})
    table = pa.table(
        {"ID": ids, "STATUS": list(codes), "AMOUNT": amounts},
        schema=pa.schema([(n, pa.string()) for n in ("ID", "STATUS", "AMOUNT")]),
    )
    # Many row groups: each brings its own parquet dictionary, which must be added up.
    pq.write_table(table, demo.paths.bronze_file("aims_demo"), row_group_size=1_000)

    settings, _ = profiled
    for home, name in ((demo, "aims_demo"), (settings, "aims_assetlocations")):
        results = {k: _rules_with(home, name, monkeypatch, v) for k, v in STRATEGIES.items()}
        for strategy, rules in results.items():
            assert rules == results["default"], f"{name}: {strategy} differs"
        if name == "aims_demo":
            (in_set,) = [
                e
                for e in results["default"]
                if e["expectation_type"] == "expect_column_values_to_be_in_set"
            ]
    assert in_set["kwargs"]["column"] == "STATUS"
    assert in_set["kwargs"]["value_set"] == ["A", "B", "C"]  # placeholders are null, not values
    assert in_set["meta"]["observed_excluded_values"] == {"INVALID": 3}


def test_zero_tolerance_makes_clean_rules_strict(tmp_path: Path) -> None:
    settings = _demo_home(tmp_path, {"ID": [str(i) for i in range(1, 301)]})
    settings = make_settings(settings.paths.home, null_tolerance=0)
    rules = suggest_rules(profile_table(settings, "aims_demo"), settings)
    for e in rules.column_rules():
        assert "mostly" not in e.kwargs, e.rule_id  # held on every row, no tolerance: strict


def test_a_clearly_degraded_drop_fails_the_calibrated_rule(profiled, tmp_path: Path) -> None:
    """Re-checking the profiled data passes; the same table with 10 % more nulls does not."""
    settings, _ = profiled
    table = "aims_assets"
    rule = _rule(settings, table, "expect_column_values_to_not_be_null", "NAME")
    data = pq.read_table(settings.paths.bronze_file(table))
    unexpected = checks.unexpected_mask(data, rule, settings.null_placeholders)
    assert 1 - unexpected.mean() >= rule.kwargs["mostly"]

    names = data.column("NAME").to_pylist()
    for index in range(0, len(names), 10):
        names[index] = "None"
    degraded = data.set_column(data.schema.get_field_index("NAME"), "NAME", pa.array(names))
    unexpected = checks.unexpected_mask(degraded, rule, settings.null_placeholders)
    assert 1 - unexpected.mean() < rule.kwargs["mostly"]


# --- references ---------------------------------------------------------------------------------


def test_references_are_discovered_from_the_data(profiled) -> None:
    settings, run = profiled
    expected = {
        ("aims_assetlocations", "ASSETID"): ("aims_assets", "ID"),
        ("aims_assetlocations", "ROUTEID"): ("aims_routes", "ID"),
        ("aims_assethierarchymap", "ANCESTORASSETID"): ("aims_assets", "ID"),
        ("aims_assethierarchymap", "DESCENDANTASSETID"): ("aims_assets", "ID"),
        ("aims_assetattributes", "ASSETID"): ("aims_assets", "ID"),
    }
    for key, parent in expected.items():
        assert run.foreign_keys.get(key) == parent, key
        rule = next(
            e
            for e in load_rule_file(settings.paths.rule_file(key[0])).expectations
            if e.reference is not None and e.column == key[1]
        )
        assert rule.expectation_type == "expect_column_values_to_be_in_set"
        assert "value_set" not in rule.kwargs and set(rule.kwargs) <= {"column", "mostly"}
        assert rule.meta["reference"] == {"table": parent[0], "column": "ID"}
        assert rule.dimension == "consistency" and parent[0] in rule.meta["description"]

    # Every reference found holds on >= 99 % of the child's distinct values or rows.
    for (table, column), (parent, parent_column) in run.foreign_keys.items():
        assert column.endswith("ID") and column != "ID"
        child = _text(settings, table, column).dropna().str.replace(r"\.0+$", "", regex=True)
        ids = set(
            _text(settings, parent, parent_column).dropna().str.replace(r"\.0+$", "", regex=True)
        )
        inside = child.isin(ids)
        distinct = child.drop_duplicates()
        assert child.nunique() >= 2
        assert inside.mean() >= 0.99 or distinct.isin(ids).mean() >= 0.99, (table, column)


def test_references_to_unprofiled_parents_are_found(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    run = profile_tables(settings, tables=["aims_assetlocations"], max_workers=1)
    assert list(run.tables) == ["aims_assetlocations"]
    assert run.foreign_keys[("aims_assetlocations", "ASSETID")] == ("aims_assets", "ID")
    assert not settings.paths.rule_file("aims_assets").exists()


# --- ownership of the files ---------------------------------------------------------------------


def test_hand_edited_file_is_kept_and_force_replaces_it_with_a_backup(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    table = "aims_routes"
    profile_tables(settings, tables=[table], max_workers=1)
    path = settings.paths.rule_file(table)

    # A threshold change is not an edit of the rules: the file stays the profiler's, thresholds kept.
    adjust_thresholds(settings.paths.rules, threshold_values(90), tables=[table])
    run = profile_tables(settings, tables=[table], max_workers=1)
    assert run.unchanged == [path] and load_rule_file(path).threshold("critical") == 90.0

    # A person tightens a rule: re-profiling keeps the file byte for byte.
    text = path.read_text()
    edited = text.replace("mostly: 0.98\n", "mostly: 0.99\n", 1)
    assert edited != text
    path.write_text(edited)
    run = profile_tables(settings, tables=[table], max_workers=1)
    assert run.kept == [path] and not run.written
    assert "hash differs" in run.kept_reasons[table]
    assert path.read_text() == edited

    # A rule added by hand (no generated_by) is kept too.
    rule_file = load_rule_file(path)
    extra = {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "NAME"}}
    path.write_text(
        edited.replace("expectations:\n", "expectations:\n" + yaml.safe_dump([extra]), 1)
    )
    run = profile_tables(settings, tables=[table], max_workers=1)
    assert run.kept == [path] and "without meta.generated_by" in run.kept_reasons[table]
    hand_made = path.read_text()

    run = profile_tables(settings, tables=[table], max_workers=1, force=True)
    assert run.written == [path] and len(run.backups) == 1
    assert run.backups[0].read_text() == hand_made
    assert run.backups[0].name.startswith(f"{path.name}.bak-")
    regenerated = load_rule_file(path)
    assert not regenerated.has_manual_edits()
    assert len(regenerated.expectations) == len(rule_file.expectations)
    assert regenerated.threshold("critical") == 90.0  # thresholds are a setting, not learned


def test_legacy_and_unreadable_files_are_kept(fresh_home: Path, reference_dir: Path) -> None:
    settings = make_settings(fresh_home)
    settings.paths.rules.mkdir(parents=True)
    legacy = settings.paths.rule_file("aims_routes")
    legacy.write_bytes((reference_dir / "legacy_configs" / legacy.name).read_bytes())
    broken = settings.paths.rule_file("aims_phases")
    broken.write_text("expectations: [unclosed\n")
    before = legacy.read_bytes(), broken.read_bytes()
    run = profile_tables(settings, tables=["aims_routes", "aims_phases"], max_workers=1)
    assert sorted(run.kept) == sorted([legacy, broken]) and not run.written
    assert "not a valid rule file" in run.kept_reasons["aims_phases"]
    assert (legacy.read_bytes(), broken.read_bytes()) == before


def test_profiling_twice_gives_identical_rules(profiled, tmp_path: Path, lake_home: Path) -> None:
    settings, _ = profiled
    other = make_settings(copy_home(lake_home, tmp_path / "again"))
    profile_tables(other, max_workers=1)  # other process layout, same data
    for path in sorted(settings.paths.rules.glob("*_validation.yml")):
        first = yaml.safe_load(path.read_text())
        second = yaml.safe_load((other.paths.rules / path.name).read_text())
        first.pop("generated_at"), second.pop("generated_at")
        assert first == second, path.name


# --- failures and options -------------------------------------------------------------------


def test_a_corrupt_file_is_reported_and_the_rest_carries_on(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    victim = settings.paths.bronze_file("aims_routes")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    run = profile_tables(settings, tables=["aims_routes", "aims_phases"], max_workers=2)
    assert set(run.errors) == {"aims_routes"} and run.status == "failed"
    assert str(victim) in run.errors["aims_routes"]
    assert run.tables["aims_routes"].error == run.errors["aims_routes"]
    assert run.written == [settings.paths.rule_file("aims_phases")]
    assert not settings.paths.rule_file("aims_routes").exists()


def test_an_empty_bronze_folder_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    with pytest.raises(AimsError, match="no Bronze tables.*make init"):
        profile_tables(settings)


def test_sampling_only_when_asked(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    total = pq.read_metadata(settings.paths.bronze_file("aims_assets")).num_rows
    run = profile_tables(settings, tables=["aims_assets"], sample_size=500, max_workers=1)
    source = load_rule_file(run.written[0]).data_source
    assert source["sampled"] is True and source["profiled_rows"] == 500
    assert source["total_rows"] == total > 500


def test_cli_profile_prints_a_summary_and_what_it_kept(fresh_home: Path, capsys) -> None:
    args = ["profile", "--home", str(fresh_home), "--tables", "aims_routes", "aims_phases"]
    assert cli.main([*args, "--max-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"aims_routes\s+\d+\s+\d+\s+\d+\s+written", out)
    assert "2 written, 0 unchanged, 0 kept, 0 error(s)" in out
    assert cli.main([*args, "--max-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"aims_phases\s+\d+\s+\d+\s+\d+\s+unchanged", out)
    assert "0 written, 2 unchanged, 0 kept, 0 error(s)" in out
    path = make_settings(fresh_home).paths.rule_file("aims_routes")
    path.write_text(path.read_text().replace("generated_by: aims_nb_utils.profiling", "x: 1", 1))
    assert cli.main([*args, "--max-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"aims_routes\s+\d+\s+\d+\s+\d+\s+kept", out)
    assert f"kept {path}" in out and "--force" in out


def test_reprofiling_unchanged_data_leaves_rule_files_byte_stable(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    tables = ["aims_routes", "aims_assets"]
    first = profile_tables(settings, tables=tables, max_workers=1)
    before = {p: p.read_bytes() for p in first.written}
    second = profile_tables(settings, tables=tables, max_workers=1)
    assert second.written == [] and sorted(second.unchanged) == sorted(first.written)
    assert {p: p.read_bytes() for p in first.written} == before
