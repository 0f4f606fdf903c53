"""The spark engine gives what the arrow engine gives: masks, verdicts, Silver and quarantine.

One SparkSession (local[2]) is shared by the whole test session (``spark`` in conftest.py). Each
test compares the spark engine with the arrow engine on the same files: the synthetic lake with
its defects, and TPC-H (sf 0.01, typed columns: ints, decimals, dates) that nobody here wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import checks
from aims_nb_utils.engine import get_engine, resolve_engine_name
from aims_nb_utils.rules import Expectation, load_rule_file

pytestmark = pytest.mark.usefixtures("spark")


@pytest.fixture(scope="module")
def profiled_lake(lake_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defective synthetic lake with rule files profiled by the arrow engine."""
    from aims_nb_utils.profiling import profile_tables

    home = copy_home(lake_home, tmp_path_factory.mktemp("spark_lake") / "home")
    profile_tables(make_settings(home, engine="arrow"))
    return home


@pytest.fixture(scope="module")
def tpch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H at sf 0.01 (typed columns) with rule files profiled by the arrow engine."""
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.public_lakes import build_lake

    home = tmp_path_factory.mktemp("spark_tpch") / "home"
    build_lake("tpch", home / "data" / "bronze", 0.01)
    profile_tables(make_settings(home, engine="arrow"))
    return home


# Spark pays a second or more per query whatever the size, so the synthetic lake is compared on
# the tables with the most rules, defects and references rather than on all 68 (the benchmark
# bench/bench_spark.py runs every table).
SYNTHETIC_TABLES = (
    "aims_consents",
    "aims_undertakings_assurances",
    "aims_links",
    "aims_attributedomains",
    "aims_ua_entities",
)


def _rule_files(home: Path, tables: tuple[str, ...] | None) -> dict[str, list[Expectation]]:
    settings = make_settings(home)
    out = {}
    for path in sorted(settings.paths.rules.glob("*_validation.yml")):
        if tables is not None and path.name.removesuffix("_validation.yml") not in tables:
            continue
        rule_file = load_rule_file(path)
        out[rule_file.table] = [
            e for e in rule_file.expectations if e.is_row_level or e.is_multicolumn
        ]
    return out


def _counts_by_engine(home: Path, tables: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    arrow = make_settings(home, engine="arrow")
    spark = make_settings(home, engine="spark")
    got_arrow, got_spark = {}, {}
    for table, rules in _rule_files(home, tables).items():
        got_arrow[table] = get_engine(arrow).unexpected_counts(arrow, table, rules)
        got_spark[table] = get_engine(spark).unexpected_counts(spark, table, rules)
    return got_arrow, got_spark


def test_auto_keeps_arrow_under_the_test_session_and_spark_is_chosen_by_name(tmp_path):
    assert resolve_engine_name(make_settings(tmp_path)) == "arrow"  # the session opted out
    assert resolve_engine_name(make_settings(tmp_path, engine="spark")) == "spark"
    assert get_engine(make_settings(tmp_path, engine="spark")).name == "spark"


def test_row_masks_match_checks_on_tpch_orders_and_lineitem(tpch_home: Path):
    """The engine step ``unexpected_counts``: every row rule, references to customer included."""
    arrow, spark = _counts_by_engine(tpch_home, ("orders", "lineitem"))
    assert sum(len(c) for c in arrow.values()) > 20
    assert spark == arrow


def _one_table(spark, tmp_path: Path, values: list, rule: Expectation) -> tuple[int, int]:
    """(arrow count, spark count) of one rule on a one-column text table."""
    home = tmp_path / "home"
    bronze = home / "data" / "bronze"
    bronze.mkdir(parents=True)
    pq.write_table(pa.table({"V": pa.array(values, pa.string())}), bronze / "T.parquet")
    arrow = checks.unexpected_mask(pq.read_table(bronze / "T.parquet"), rule, ["None", ""])
    settings = make_settings(home, engine="spark", null_placeholders=["None", ""])
    counted = get_engine(settings).unexpected_counts(settings, "T", [rule])
    return int(arrow.sum()), counted[rule.rule_id]


def test_regex_dialect_dollar_before_a_final_newline(spark, tmp_path: Path):
    """Java's '$' matches before a trailing line break, RE2's does not: '12\\n' breaks the rule."""
    rule = Expectation("expect_column_values_to_match_regex", {"column": "V", "regex": "^[0-9]+$"})
    assert _one_table(spark, tmp_path, ["12", "12\n", "x", None, "None"], rule) == (2, 2)


def test_string_length_counts_code_points_for_non_bmp_characters(spark, tmp_path: Path):
    """'a😀' is two characters for Arrow and Spark alike (Java's String.length would say 3)."""
    rule = Expectation(
        "expect_column_value_lengths_to_be_between",
        {"column": "V", "min_value": 1, "max_value": 2},
    )
    assert _one_table(spark, tmp_path, ["a\U0001f600", "abc", "ab", "😀😀😀"], rule) == (2, 2)


def test_text_dates_parse_like_checks(spark):
    """Offsets applied (UTC), 'T' or ' ', fractions, and 2021-02-30 is no date (null)."""
    from aims_nb_utils.engine.spark.masks import parse_timestamp_micros

    values = [
        "2021-01-01T23:30:00-01:00",
        "2021-02-30",
        "2021-01-02 00:30:00.5Z",
        "2021-03-04",
        "2021-03-04 05:06",
        "2021-03-04 05:06:07.123456789",
        "2021-03-04T05:06:07+0530",
        "x",
        None,
    ]
    expected = checks.parse_timestamps(pa.array(values, pa.string())).cast(pa.int64()).to_pylist()
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    got = [r[0] for r in frame.select(parse_timestamp_micros(frame["v"])).collect()]
    assert got == expected
    assert expected[1] is None and expected[0] is not None


def test_numbers_read_like_checks(spark, tmp_path: Path):
    between = Expectation(
        "expect_column_values_to_be_between",
        {"column": "V", "min_value": 0, "max_value": 10},
    )
    values = ["5.", "1e1", "11", "-0.5", "abc", ".5", "1E2"]
    arrow, spark_count = _one_table(spark, tmp_path, values, between)
    assert arrow == 3 and spark_count == arrow


# --- verdicts and ingestion: the same run on both engines --------------------------------------


def _run(home: Path, engine: str, tables: tuple[str, ...] | None):
    """validate + ingest the lake at ``home`` with one engine."""
    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.validation import validate_tables

    settings = make_settings(home, engine=engine)
    names = list(tables) if tables else None
    validation = validate_tables(settings, tables=names)
    ingest = ingest_tables(settings, tables=names, verdicts=validation.tables, force=True)
    return settings, validation, ingest


def _rows(settings, layer: str, table: str, drop: tuple[str, ...]) -> tuple[pa.Schema, list]:
    from aims_nb_utils import storage

    data = storage.read_table(settings, layer, table)
    data = data.drop_columns([c for c in drop if c in data.column_names])
    rows = sorted(repr(r) for r in data.to_pylist())
    return data.schema, rows


def _engines_agree(source: Path, tmp_path: Path, tables: tuple[str, ...] | None = None) -> Any:
    arrow_home = copy_home(source, tmp_path / "arrow")
    spark_home = copy_home(source, tmp_path / "spark")
    a_settings, a_val, a_ing = _run(arrow_home, "arrow", tables)
    s_settings, s_val, s_ing = _run(spark_home, "spark", tables)
    # verdicts: status per table, and per rule success and unexpected count
    # (and the rows the verdict's max_quarantine_percent counts)
    assert {t: (r.status, r.quarantine_rows) for t, r in s_val.tables.items()} == {
        t: (r.status, r.quarantine_rows) for t, r in a_val.tables.items()
    }
    for table, a_result in a_val.tables.items():
        a_rules = [(r.rule_id, r.success, r.unexpected_count) for r in a_result.rule_results]
        s_rules = [
            (r.rule_id, r.success, r.unexpected_count) for r in s_val.tables[table].rule_results
        ]
        assert s_rules == a_rules, table
    # ingestion: the same split, the same Silver rows and types, the same quarantine and reasons
    assert {t: (r.status, r.rows_silver, r.rows_quarantined) for t, r in s_ing.tables.items()} == {
        t: (r.status, r.rows_silver, r.rows_quarantined) for t, r in a_ing.tables.items()
    }
    loaded = [t for t, r in a_ing.tables.items() if r.status in ("loaded", "not_promoted")]
    assert loaded
    # watermarks and load history as the arrow engine records them
    from aims_nb_utils.ingestion import watermark_rows

    def marks(settings) -> dict:
        return {
            r["table"]: (
                r["latest LASTUPDATED"],
                r["bronze rows"],
                r["silver rows"],
                r["quarantined"],
                r["state"],
                r["fingerprint"],
            )
            for r in watermark_rows(settings)
        }

    assert marks(s_settings) == marks(a_settings)
    assert len(marks(a_settings)) == len(loaded)
    # every row, fingerprint included (both engines store the arrow engine's row hash); only the
    # run id differs between two runs
    compared = 0
    for table in loaded:
        drop = ("_dq_run_id",)
        for layer in ("silver", "quarantine"):
            a_schema, a_rows = _rows(a_settings, layer, table, drop)
            s_schema, s_rows = _rows(s_settings, layer, table, drop)
            # names and types (a file's metadata says which library wrote it)
            assert [(f.name, f.type) for f in s_schema] == [(f.name, f.type) for f in a_schema], (
                layer,
                table,
            )
            assert s_rows == a_rows, (layer, table)
            compared += len(a_rows)
    assert compared == sum(
        a_ing.tables[t].rows_silver + a_ing.tables[t].rows_quarantined for t in loaded
    )
    return a_ing


def test_verdicts_silver_and_quarantine_match_arrow_on_the_synthetic_lake(
    profiled_lake: Path, tmp_path: Path
):
    arrow = _engines_agree(profiled_lake, tmp_path, SYNTHETIC_TABLES)
    assert sum(r.rows_quarantined for r in arrow.tables.values()) > 0  # defects were compared


def test_verdicts_silver_and_quarantine_match_arrow_on_tpch(tpch_home: Path, tmp_path: Path):
    _engines_agree(tpch_home, tmp_path)
