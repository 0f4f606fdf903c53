"""Ingestion on lakes nobody here wrote: typed sources keep their types, any key (or none) works.

Tiny lakes are written here with pyarrow (typed and all-text tables, keyless, composite keys,
duplicate keys, a time zone, decimals) with hand-written rule files, so these tests depend on
ingestion and typing only; the TPC-H test at the end runs profiling, validation and ingestion on
the public data set, checked against its published schema.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import checks, storage
from aims_nb_utils.ingestion import ingest_tables, silver_type_rows
from aims_nb_utils.quarantine import FAILED_RULES, REASON, ROW_HASH, evaluate, row_rules
from aims_nb_utils.rules import (
    GENERATED_MARKER,
    GENERATOR_NAME,
    TYPE_PATTERNS,
    Expectation,
    RuleFile,
    save_rule_file,
)
from aims_nb_utils.settings import Settings
from aims_nb_utils.typing_rules import silver_types
from aims_nb_utils.validation import validate_tables

DQ_FIELDS = {"_dq_run_id", "_dq_row_hash"}
UTC = dt.timezone.utc


def _write(home: Path, table: str, data: pa.Table) -> None:
    bronze = home / "data" / "bronze"
    bronze.mkdir(parents=True, exist_ok=True)
    path = bronze / f"{table}.parquet"
    before = path.stat().st_mtime_ns if path.exists() else None
    pq.write_table(data, path)
    if before is not None and path.stat().st_mtime_ns == before:  # coarse clocks
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def _rules(
    home: Path,
    table: str,
    columns: list[str],
    *rules: Expectation,
    keys: list[list[str]] | None = None,
    types: dict[str, str] | None = None,
) -> None:
    exists = [Expectation("expect_column_to_exist", {"column": c}) for c in columns]
    rule_file = RuleFile(
        table=table,
        expectations=[*exists, *rules],
        keys=keys or [],
        types=types or {},
        quality_thresholds={"critical": 0.0, "high": 0.0, "medium": 0.0, "low": 0.0},
    )
    save_rule_file(rule_file, home / "config" / "data_quality" / f"{table}_validation.yml")


def _settings(home: Path, **overrides: object) -> Settings:
    return make_settings(home, max_workers=1, dq_threshold=0.0, **overrides)


def _silver(settings: Settings, table: str) -> pa.Table:
    return storage.read_table(settings, "silver", table)


def _quarantine(settings: Settings, table: str) -> pa.Table:
    return storage.read_table(settings, "quarantine", table)


def _conserved(settings: Settings, table: str) -> None:
    """Every Bronze row is in Silver or quarantine, once (by content hash)."""
    from aims_nb_utils.ingestion import row_hashes

    bronze = pq.read_table(settings.paths.bronze_file(table))
    stored = np.concatenate(
        [
            _silver(settings, table).column(ROW_HASH).to_numpy(),
            _quarantine(settings, table).column(ROW_HASH).to_numpy(),
        ]
    )
    assert sorted(stored.tolist()) == sorted(row_hashes(bronze).tolist())


def _typed_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "big": pa.array([10, 20, 30], pa.int64()),
            "ratio": pa.array([1.0, 2.0, 3.0], pa.float64()),
            "flag": pa.array([True, False, None], pa.bool_()),
            "day": pa.array([dt.date(2020, 1, 1), dt.date(2020, 2, 29), None], pa.date32()),
            "at": pa.array(
                [dt.datetime(2013, 1, 1, 5, tzinfo=UTC)] * 2 + [None],
                pa.timestamp("us", tz="Etc/UTC"),
            ),
            "price": pa.array(
                [decimal.Decimal("1.250"), decimal.Decimal("9987.710"), None],
                pa.decimal128(10, 3),
            ),
            "name": ["a", "b", None],
        }
    )


def test_typed_sources_keep_their_arrow_types_and_values(tmp_path: Path) -> None:
    data = _typed_table()
    _write(tmp_path, "things", data)
    # A profiler-style integer rule on a typed column must not turn int32 into int64.
    generated = {GENERATED_MARKER: GENERATOR_NAME, "value_type": "integer"}
    _rules(
        tmp_path,
        "things",
        data.column_names,
        Expectation(
            "expect_column_values_to_match_regex",
            {"column": "id", "regex": "^-?[0-9]+$"},
            generated,
        ),
        keys=[["id"]],
    )
    settings = _settings(tmp_path)
    run = ingest_tables(settings)
    assert run.tables["things"].status == "loaded", run.tables["things"].error
    silver = _silver(settings, "things")
    kept = [f for f in silver.schema if f.name not in DQ_FIELDS]
    assert [(f.name, f.type) for f in kept] == [(f.name, f.type) for f in data.schema]
    assert silver.select(data.column_names).equals(data)
    assert _quarantine(settings, "things").num_rows == 0
    rows = {r["column"]: r for r in silver_type_rows(settings, "things")}
    assert rows["price"]["silver type"] == "decimal128(10, 3)"
    assert rows["price"]["origin"] == "source" and rows["at"]["origin"] == "source"
    assert rows["at"]["silver type"] == "timestamp[us, tz=Etc/UTC]"


def test_text_timestamps_with_offsets_become_utc(tmp_path: Path) -> None:
    text = pa.table(
        {
            "k": ["1", "2", "3", "4"],
            "at": [
                "2013-01-01T10:00:00Z",
                "2021-03-04 05:06:07+02:00",
                "2021-03-04 05:06:07.5-0130",
                "2021-03-04 05:06",  # no offset: taken as UTC in a UTC column
            ],
            "local": ["2021-03-04", "2021-03-04 05:06:07", "2021-03-04T05:06", None],
        }
    )
    _write(tmp_path, "events", text)
    date_rule = {"value_type": "date"}
    _rules(
        tmp_path,
        "events",
        text.column_names,
        Expectation(
            "expect_column_values_to_match_regex",
            {"column": "at", "regex": TYPE_PATTERNS["date"]},
            {**date_rule, "timezone": "UTC"},
        ),
        Expectation(
            "expect_column_values_to_match_regex",
            {"column": "local", "regex": TYPE_PATTERNS["date"]},
            date_rule,
        ),
        keys=[["k"]],
        types={"k": "integer"},
    )
    settings = _settings(tmp_path)
    run = ingest_tables(settings)
    assert run.tables["events"].rows_quarantined == 0, run.tables["events"]
    silver = _silver(settings, "events")
    assert silver.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert silver.schema.field("local").type == pa.timestamp("us")
    assert silver.schema.field("k").type == pa.int64()
    assert silver.column("at").to_pylist() == [
        dt.datetime(2013, 1, 1, 10, tzinfo=UTC),
        dt.datetime(2021, 3, 4, 3, 6, 7, tzinfo=UTC),
        dt.datetime(2021, 3, 4, 6, 36, 7, 500000, tzinfo=UTC),
        dt.datetime(2021, 3, 4, 5, 6, tzinfo=UTC),
    ]
    assert silver.column("local").to_pylist()[:3] == [
        dt.datetime(2021, 3, 4),
        dt.datetime(2021, 3, 4, 5, 6, 7),
        dt.datetime(2021, 3, 4, 5, 6),
    ]
    origins = {r["column"]: r["origin"] for r in silver_type_rows(settings, "events")}
    assert origins == {"k": "override", "at": "rule file", "local": "rule file"}


def test_duplicate_composite_keys_are_quarantined_naming_the_key(tmp_path: Path) -> None:
    data = pa.table(
        {
            "order": pa.array([1, 1, 1, 2, 3], pa.int64()),
            "line": pa.array([1, 2, 1, 1, None], pa.int32()),
            "qty": [5.0, 6.0, 7.0, 8.0, 9.0],
        }
    )
    _write(tmp_path, "lines", data)
    _rules(tmp_path, "lines", data.column_names, keys=[["order", "line"]])
    settings = _settings(tmp_path)
    result = ingest_tables(settings).tables["lines"]
    assert (result.rows_in, result.rows_silver, result.rows_quarantined) == (5, 2, 3)
    quarantine = _quarantine(settings, "lines")
    by_qty = dict(
        zip(
            quarantine.column("qty").to_pylist(), quarantine.column(REASON).to_pylist(), strict=True
        )
    )
    assert set(by_qty) == {5.0, 7.0, 9.0}  # both rows of (1, 1), and the row without a line
    assert "[duplicate_key(order, line)]" in by_qty[5.0] and "('1', '1')" in by_qty[5.0]
    assert "key_not_null(order, line)" in by_qty[9.0]
    silver = _silver(settings, "lines")
    assert sorted(
        zip(silver.column("order").to_pylist(), silver.column("line").to_pylist(), strict=True)
    ) == [
        (1, 2),
        (2, 1),
    ]
    _conserved(settings, "lines")


def test_incremental_drop_replaces_a_changed_row_and_a_rerun_is_unchanged(tmp_path: Path) -> None:
    data = pa.table(
        {"id": pa.array(range(1, 1001), pa.int64()), "v": [f"x{i}" for i in range(1000)]}
    )
    _write(tmp_path, "items", data)
    _rules(tmp_path, "items", data.column_names, keys=[["id"]])
    settings = _settings(tmp_path)
    assert ingest_tables(settings).tables["items"].status == "loaded"
    again = ingest_tables(settings).tables["items"]
    assert again.status == "unchanged"
    changed = data.set_column(1, "v", pa.array(["changed"] + data.column("v").to_pylist()[1:]))
    _write(tmp_path, "items", changed)
    result = ingest_tables(settings).tables["items"]
    assert (result.status, result.mode, result.rows_in) == ("loaded", "incremental", 1)
    silver = _silver(settings, "items")
    assert silver.num_rows == 1000
    assert len(pc.unique(silver.column("id"))) == 1000
    assert silver.filter(pc.equal(silver.column("id"), 1)).column("v").to_pylist() == ["changed"]
    _conserved(settings, "items")
    assert ingest_tables(settings).tables["items"].status == "unchanged"


def test_a_keyless_table_is_a_snapshot_replaced_when_its_content_changes(tmp_path: Path) -> None:
    data = pa.table({"a": ["x", "x", "y"], "b": pa.array([1, 1, 2], pa.int16())})  # twin rows
    _write(tmp_path, "loose", data)
    _rules(tmp_path, "loose", data.column_names)
    settings = _settings(tmp_path)
    first = ingest_tables(settings).tables["loose"]
    assert (first.status, first.rows_silver, first.rows_quarantined) == ("loaded", 3, 0)
    assert "snapshot" in " ".join(first.notes)
    assert ingest_tables(settings).tables["loose"].status == "unchanged"
    _write(tmp_path, "loose", data)  # the same content rewritten: nothing to do
    same = ingest_tables(settings).tables["loose"]
    assert (same.status, same.rows_in) == ("unchanged", 0)
    new = pa.table({"a": ["x", "z"], "b": pa.array([1, 3], pa.int16())})
    _write(tmp_path, "loose", new)
    replaced = ingest_tables(settings).tables["loose"]
    assert (replaced.status, replaced.rows_in, replaced.rows_silver) == ("loaded", 2, 2)
    silver = _silver(settings, "loose")
    assert sorted(silver.select(["a", "b"]).to_pylist(), key=str) == sorted(
        new.to_pylist(), key=str
    )
    assert silver.schema.field("b").type == pa.int16()
    _conserved(settings, "loose")
    thrice = pa.table({"a": ["x", "x", "x", "z"], "b": pa.array([1, 1, 1, 3], pa.int16())})
    _write(tmp_path, "loose", thrice)  # one more twin of a stored row
    assert ingest_tables(settings).tables["loose"].status == "loaded"
    assert _silver(settings, "loose").num_rows == 4
    _conserved(settings, "loose")


def test_a_double_column_stays_double_when_a_later_drop_has_fractions(tmp_path: Path) -> None:
    whole = pa.table({"id": pa.array([1, 2], pa.int64()), "x": [1.0, 2.0]})
    _write(tmp_path, "measures", whole)
    _rules(tmp_path, "measures", whole.column_names, keys=[["id"]])
    settings = _settings(tmp_path)
    ingest_tables(settings)
    assert _silver(settings, "measures").schema.field("x").type == pa.float64()
    later = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "x": [1.0, 2.0, 2.5]})
    _write(tmp_path, "measures", later)
    result = ingest_tables(settings).tables["measures"]
    assert (result.status, result.rows_quarantined) == ("loaded", 0)
    silver = _silver(settings, "measures")
    assert silver.schema.field("x").type == pa.float64()
    assert sorted(silver.column("x").to_pylist()) == [1.0, 2.0, 2.5]


def test_the_settings_key_wins_and_a_missing_key_column_is_named(tmp_path: Path) -> None:
    data = pa.table({"a": pa.array([1, 1, 2]), "b": pa.array([1, 2, 1])})
    _write(tmp_path, "pairs", data)
    _rules(tmp_path, "pairs", data.column_names, keys=[["a"]])  # 'a' alone is not unique
    settings = _settings(tmp_path, table_keys={"pairs": [["a", "b"]]})
    result = ingest_tables(settings).tables["pairs"]
    assert (result.rows_silver, result.rows_quarantined) == (3, 0)
    broken = _settings(tmp_path, table_keys={"pairs": [["a", "gone"]]})
    error = ingest_tables(broken, force=True).tables["pairs"]
    assert error.status == "error" and "gone" in (error.error or "")
    assert "key" in (error.error or "")


# --- rules on typed columns: GX and the row masks agree ----------------------------------------


def test_rules_on_typed_columns_agree_between_gx_and_the_masks(tmp_path: Path) -> None:
    parent = pa.table({"pk": pa.array([1, 2, 3], pa.int32()), "code": ["1", "2", "3"]})
    child = pa.table(
        {
            "id": pa.array([1, 2, 2, 4, None, 6], pa.int64()),
            "sub": pa.array([1, 1, 2, 2, 1, 1], pa.int32()),
            "parent": pa.array([1, 2, 9, 3, None, 1], pa.int64()),
            "parent_text": ["1", "2.0", "9", "3", None, "x"],
            "amount": pa.array(
                [decimal.Decimal(v) for v in ("1.00", "9987.71", "-1.00", "5.50", "0.00", "2")],
                pa.decimal128(15, 2),
            ),
            "day": pa.array(
                [dt.date(1995, 1, 1), dt.date(1999, 1, 1), None, dt.date(2001, 5, 5)] * 1
                + [dt.date(1996, 1, 1), dt.date(1997, 1, 1)],
                pa.date32(),
            ),
            "status": pa.array([1, 2, 3, 1, 2, 7], pa.int16()),
        }
    )
    _write(tmp_path, "parent", parent)
    _write(tmp_path, "child", child)
    _rules(tmp_path, "parent", parent.column_names)
    rules = [
        Expectation("expect_column_values_to_not_be_null", {"column": "day"}),
        Expectation("expect_column_values_to_be_unique", {"column": "id"}),
        Expectation("expect_compound_columns_to_be_unique", {"column_list": ["id", "sub"]}),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "amount", "min_value": 0, "max_value": 9987.71},
        ),
        Expectation(
            "expect_column_values_to_be_between",
            {"column": "day", "min_value": dt.date(1996, 1, 1), "max_value": "2000-01-01"},
        ),
        Expectation(
            "expect_column_values_to_be_in_set", {"column": "status", "value_set": [1, 2, "3"]}
        ),
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": "parent"},
            {"reference": {"table": "parent", "column": "pk"}},
        ),
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": "parent_text"},
            {"reference": {"table": "parent", "column": "pk"}},
        ),
    ]
    _rules(tmp_path, "child", child.column_names, *rules)
    settings = _settings(tmp_path)
    checks.clear_reference_cache()
    run = validate_tables(settings, tables=["parent", "child"])
    by_id = {r.rule_id: r for r in run.tables["child"].rule_results}
    expected = {  # from the data above, by hand
        "expect_column_values_to_not_be_null(day)": 1,
        "expect_column_values_to_be_unique(id)": 2,
        "expect_compound_columns_to_be_unique(id, sub)": 0,
        "expect_column_values_to_be_between(amount)": 1,
        "expect_column_values_to_be_between(day)": 2,
        "expect_column_values_to_be_in_set(status)": 1,
        "expect_column_values_to_be_in_set(parent)": 1,
        "expect_column_values_to_be_in_set(parent_text)": 2,
    }
    gx_counts = {rule_id: by_id[rule_id].unexpected_count for rule_id in expected}
    assert all(by_id[r].error is None for r in expected), [by_id[r].error for r in expected]
    assert gx_counts == expected
    references = {
        e.rule_id: checks.reference_values(settings, *e.reference) for e in rules if e.reference
    }
    for exp in rules:
        mask = checks.unexpected_mask(child, exp, [], references.get(exp.rule_id))
        assert int(mask.sum()) == expected[exp.rule_id], exp.rule_id
    # the masks ingestion evaluates (column views, shared preparation) say the same
    types = silver_types(
        "child",
        child.column_names,
        None,
        dict(zip(child.column_names, child.schema.types, strict=True)),
    )
    from aims_nb_utils.rules import load_rule_file

    row, _ = row_rules(
        "child", load_rule_file(settings.paths.rule_file("child")), types, child.column_names
    )
    matrix = evaluate(child, row, [], references, cast_failures={})
    assert {r.rule_id: int(matrix[:, j].sum()) for j, r in enumerate(row)} == expected


def test_compound_uniqueness_parity_with_gx_on_text_and_nulls(tmp_path: Path) -> None:
    data = pa.table(
        {
            "a": ["1", "1.0", "1", "2", None, None, "3"],
            "b": ["x", "x", "y", "y", "z", "z", None],
        }
    )
    _write(tmp_path, "t", data)
    rule = Expectation("expect_compound_columns_to_be_unique", {"column_list": ["a", "b"]})
    _rules(tmp_path, "t", data.column_names, rule)
    run = validate_tables(_settings(tmp_path), tables=["t"])
    result = next(r for r in run.tables["t"].rule_results if r.rule_id == rule.rule_id)
    mask = checks.unexpected_mask(data, rule, ["None"])
    assert mask.tolist() == [True, True, False, False, False, False, False]  # '1' == '1.0'
    assert result.unexpected_count == 2 == int(mask.sum())


# --- TPC-H: the public data set, against its published schema -----------------------------------

TPCH_KEYS = {
    "region": ["r_regionkey"],
    "nation": ["n_nationkey"],
    "part": ["p_partkey"],
    "supplier": ["s_suppkey"],
    "customer": ["c_custkey"],
    "orders": ["o_orderkey"],
    "partsupp": ["ps_partkey", "ps_suppkey"],
    "lineitem": ["l_orderkey", "l_linenumber"],
}


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, object]:
    pytest.importorskip("duckdb_extension_tpch")
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.public_lakes import build_lake

    home = tmp_path_factory.mktemp("tpch")
    build_lake("tpch", home / "data" / "bronze", 0.01)
    settings = _settings(home, table_keys={t: [k] for t, k in TPCH_KEYS.items()})
    profile_tables(settings)
    validation = validate_tables(settings)
    run = ingest_tables(settings, verdicts=validation.tables, run_id=validation.run_id)
    return settings, run


def test_tpch_every_table_ingests_with_its_source_types(tpch: tuple[Settings, object]) -> None:
    settings, run = tpch
    assert set(run.tables) == set(TPCH_KEYS)
    for table, result in run.tables.items():
        assert result.status == "loaded", (table, result.error)
        bronze = pq.read_schema(settings.paths.bronze_file(table))
        silver = _silver(settings, table)
        kept = [(f.name, f.type) for f in silver.schema if f.name not in DQ_FIELDS]
        assert kept == [(f.name, f.type) for f in bronze], table
        quarantined = _quarantine(settings, table).num_rows
        bronze_rows = pq.read_metadata(settings.paths.bronze_file(table)).num_rows
        assert silver.num_rows + quarantined == bronze_rows == result.rows_in, table
        key = silver.select(TPCH_KEYS[table])
        assert key.group_by(TPCH_KEYS[table]).aggregate([]).num_rows == silver.num_rows, table


def test_tpch_quarantine_holds_only_rows_breaking_a_rule(tpch: tuple[Settings, object]) -> None:
    settings, run = tpch
    for table in run.tables:
        quarantine = _quarantine(settings, table)
        assert all(quarantine.column(FAILED_RULES).to_pylist()), table  # each row says why
        # the published keys hold in TPC-H: no key rule ever fires
        assert not [
            rule
            for rules in quarantine.column(FAILED_RULES).to_pylist()
            for rule in rules
            if rule.startswith(("duplicate_key", "key_not_null"))
        ], table
    assert ingest_tables(settings).summary["unchanged"] == len(TPCH_KEYS)
