"""Profiling on the spark engine writes the arrow engine's rule files, byte for byte.

Spark reduces each table to its columns' (value, count) pairs and the shared profiler computes
the statistics and rules from them (aims_nb_utils/engine/spark/profile.py). Each test profiles
the same Bronze files with both engines and compares the rule files (``generated_at`` aside):
a slice of the synthetic lake with its defects and references, TPC-H sf 0.01 (typed ints,
decimals, dates, a two-column key) and a table of typed and text edge cases.
"""

from __future__ import annotations

import re
import shutil
import warnings
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import state
from aims_nb_utils.errors import SettingsWarning
from aims_nb_utils.profiling import profile_table, profile_tables
from aims_nb_utils.rules import load_rule_file

pytestmark = pytest.mark.usefixtures("spark")

# Children with references and their parents; aims_assets and aims_owners are left out of the
# profiled tables, so their keys are found by a key scan (Spark's column profiles).
SYNTHETIC_TABLES = (
    "aims_consents",
    "aims_owners",
    "aims_consenttypes",
    "aims_links",
    "aims_assets",
    "aims_linktypes",
    "aims_undertakings_assurances",
    "aims_ua_entities",
    "aims_phases",
    "aims_attributedomains",
)
NOT_PROFILED = ("aims_assets", "aims_owners")


def _rule_texts(home: Path) -> dict[str, str]:
    rules = make_settings(home).paths.rules
    return {
        p.name: re.sub(r"(?m)^generated_at: .*$", "generated_at: -", p.read_text())
        for p in sorted(rules.glob("*_validation.yml"))
    }


def _profile_both(home: Path, **options: object) -> tuple[dict[str, str], dict[str, str]]:
    """Rule files from the arrow engine, then (files removed) from the spark engine; the spark
    run must not warn that it fell back to the arrow engine."""
    rules = make_settings(home).paths.rules
    arrow = profile_tables(make_settings(home, engine="arrow"), **options)
    assert not arrow.errors
    by_arrow = _rule_texts(home)
    shutil.rmtree(rules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spark = profile_tables(make_settings(home, engine="spark"), **options)
    assert not [w for w in caught if issubclass(w.category, SettingsWarning)]
    assert not spark.errors
    assert spark.foreign_keys == arrow.foreign_keys
    return by_arrow, _rule_texts(home)


def test_synthetic_lake_rule_files_are_byte_identical(lake_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data" / "bronze").mkdir(parents=True)
    for table in SYNTHETIC_TABLES:
        shutil.copy(lake_home / "data" / "bronze" / f"{table}.parquet", home / "data" / "bronze")
    tables = [t for t in SYNTHETIC_TABLES if t not in NOT_PROFILED]
    settings = make_settings(home)
    by_arrow, by_spark = _profile_both(home, tables=tables)
    arrow_drops = {t: state.drop_statistics(settings.paths.state_db, t, 1) for t in tables}

    assert sorted(by_arrow) == sorted(f"{t}_validation.yml" for t in tables)
    assert by_spark == by_arrow
    # references to the tables not profiled were found from Spark's scan of their keys
    parents = {
        e.reference[0]
        for t in tables
        for e in load_rule_file(settings.paths.rule_file(t)).expectations
        if e.reference is not None
    }
    assert set(NOT_PROFILED) <= parents
    # the drop statistics history keeps (profile --history N) are the same under Spark
    spark_drops = {t: state.drop_statistics(settings.paths.state_db, t, 1) for t in tables}
    for table in tables:
        assert spark_drops[table][0]["statistics"] == arrow_drops[table][0]["statistics"]
    shutil.rmtree(settings.paths.rules)
    again = profile_tables(make_settings(home, engine="spark"), tables=tables, history=2)
    assert not again.errors and len(again.written) == len(tables)


def test_tpch_rule_files_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aims_nb_utils.cli import main
    from aims_nb_utils.engine.spark import profile as spark_profile
    from aims_nb_utils.public_lakes import build_lake

    # Both ways Spark counts: small tables in one stacked job, lineitem and orders (rows x
    # columns over the bound) one job per column.
    monkeypatch.setattr(spark_profile, "DRIVER_VALUES_MAX", 100_000)
    home = tmp_path / "home"
    build_lake("tpch", home / "data" / "bronze", 0.01)
    rules = make_settings(home).paths.rules
    assert main(["profile", "--home", str(home), "--set", "engine=arrow"]) == 0
    by_arrow = _rule_texts(home)
    shutil.rmtree(rules)
    assert main(["profile", "--home", str(home), "--set", "engine=spark"]) == 0
    assert len(by_arrow) == 8
    assert _rule_texts(home) == by_arrow
    lineitem = load_rule_file(rules / "lineitem_validation.yml")
    assert lineitem.keys and len(lineitem.keys[0]) == 2  # the pair key, checked by Spark


def _edge_tables(bronze: Path) -> dict[str, list]:
    """300 rows of the types and texts where Spark and pyarrow differ if nobody takes care: a
    typed table ('edge') and a text one ('codes': a file that types numbers keeps digit text
    as text for that reason alone)."""
    n = 300
    paris = [datetime(2024, 3, 30, 22, tzinfo=timezone.utc) + timedelta(hours=i) for i in range(n)]
    # 4..15 code points, the emoji 4 bytes (2 UTF-16 units) each; distinct (free text, no set)
    note = ["ab\U0001f600" * (1 + i % 4) + str(i) for i in range(n)]
    note[7], note[8] = "None", None  # a placeholder and a null
    # leading-zero codes: the first row's is not the smallest
    zips = [f"{(97 * i) % 1000:05d}" for i in range(n)]
    zips[0] = "09999"
    ratio = [float(i % 7) / 4 for i in range(n)]
    ratio[1], ratio[2], ratio[3] = float("nan"), -0.0, 1e-7
    amount = [Decimal(i % 50) / Decimal(100) - Decimal("0.0001") for i in range(n)]
    amount[5] = Decimal("99999999.9999")  # a sentinel far past the bulk
    columns = {
        "seen_at": pa.array(paris, pa.timestamp("ms", tz="Europe/Paris")),
        "logged": pa.array([datetime(2023, 1, 1, 0, 0, 0, 123456) + timedelta(minutes=i)
                            for i in range(n)], pa.timestamp("us")),  # fmt: skip
        "day": pa.array([date(1999, 12, 31) + timedelta(days=i) for i in range(n)], pa.date32()),
        "amount": pa.array(amount, pa.decimal128(12, 4)),
        "wide": pa.array(
            [Decimal(i) * Decimal("1.000001") for i in range(n)], pa.decimal128(30, 6)
        ),
        "ratio": pa.array(ratio, pa.float64()),
        "small": pa.array([None if i % 10 == 0 else i % 40 for i in range(n)], pa.int32()),
        "flag": pa.array([None if i % 9 == 0 else i % 2 == 0 for i in range(n)], pa.bool_()),
    }
    pq.write_table(pa.table(columns), bronze / "edge.parquet")
    texts = {"note": pa.array(note, pa.string()), "zip": pa.array(zips, pa.string())}
    pq.write_table(pa.table(texts), bronze / "codes.parquet")
    return {"note": note, "zips": zips}


def test_edge_cases_timestamps_decimals_floats_non_bmp_text(tmp_path: Path, spark: object) -> None:
    """Time zones and units of typed timestamps (Spark works in UTC microseconds), decimal
    scales (exact values, not doubles), -0.0 and NaN, non-BMP string lengths, placeholders, and
    the example quoted for a leading-zero code column."""
    from aims_nb_utils.engine.spark.profile import SparkProfiler

    home = tmp_path / "home"
    (home / "data" / "bronze").mkdir(parents=True)
    made = _edge_tables(home / "data" / "bronze")
    by_arrow, by_spark = _profile_both(home)
    assert sorted(by_spark) == ["codes_validation.yml", "edge_validation.yml"]
    assert by_spark == by_arrow

    settings = make_settings(home)
    rules = {
        (e.expectation_type, e.kwargs.get("column")): e
        for table in ("edge", "codes")
        for e in load_rule_file(settings.paths.rule_file(table)).expectations
    }
    longest = max(len(v) for v in made["note"] if v not in (None, "None"))
    assert rules[("expect_column_value_lengths_to_be_between", "note")].kwargs["max_value"] == (
        longest
    )
    kept = rules[("expect_column_to_exist", "zip")].meta["kept_as_text"]
    assert f"e.g. {min(made['zips'])!r}" in kept
    outliers = rules[("expect_column_values_to_be_between", "amount")].meta["observed_outliers"]
    assert outliers["above"]["values"] == [99999999.9999]

    # the typed figures rule files do not show (timestamps' ISO range) agree too
    arrow = {c.name: c for c in profile_table(settings, "edge").columns}
    by_spark_profile = SparkProfiler(settings, spark).profile_table("edge")
    for col in by_spark_profile.columns:
        mine = arrow[col.name]
        for field in ("null_count", "distinct_count", "temporal_min", "temporal_max",
                      "numeric_min", "numeric_max", "range_low", "range_high", "value_counts",
                      "min_length", "length_bound", "inferred_type", "source_type"):  # fmt: skip
            assert getattr(col, field) == getattr(mine, field), (col.name, field)
    assert arrow["seen_at"].temporal_min == "2024-03-30T23:00:00+01:00"  # Paris before DST
