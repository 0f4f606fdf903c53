"""Verdicts of the spark engine are GX's on Spark DataFrames and equal the arrow engine's.

tests/test_spark_engine.py compares whole runs (synthetic lake, TPC-H); these tests pin the
cases a Spark implementation has to get right on purpose, on a table written here so every
expected count is known from the data: text ids ('13000015.0' is the parent's '13000015'), a
referential rule with orphans (the parent's keys joined, never collected), placeholders, text
numbers, and the places where Spark's semantics differ from pandas'.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils.rules import Expectation, RuleFile, save_rule_file

pytestmark = pytest.mark.usefixtures("spark")


def _rule(etype: str, **kwargs) -> Expectation:
    meta = kwargs.pop("meta", {})
    return Expectation(etype, kwargs, {"severity": "high", **meta})


def _validate_both(home: Path, table: str) -> tuple[list, list]:
    """Per engine, on the same files: (success, unexpected_count, unexpected_percent, error) of
    each rule in rule-file order, then the rows quarantine would take."""
    from aims_nb_utils.validation import validate_tables

    out = []
    for engine in ("arrow", "spark"):
        settings = make_settings(home, engine=engine, null_placeholders=["None", ""])
        run = validate_tables(settings, tables=[table], write=False)
        result = run.tables[table]
        assert result.status in ("PASSED", "FAILED"), result.error
        out.append(
            [
                (r.success, r.unexpected_count, r.unexpected_percent, r.error)
                for r in result.rule_results
            ]
            + [result.quarantine_rows]
        )
    return out[0], out[1]


def _lake(tmp_path: Path, child: pa.Table, rules: list[Expectation]) -> Path:
    home = tmp_path / "home"
    bronze = home / "data" / "bronze"
    bronze.mkdir(parents=True)
    parent = pa.table({"ID": pa.array(["1", "2", "3", "13000015", "None"], pa.string())})
    pq.write_table(parent, bronze / "PARENT.parquet")
    pq.write_table(child, bronze / "CHILD.parquet")
    settings = make_settings(home)
    save_rule_file(RuleFile(table="CHILD", expectations=rules), settings.paths.rule_file("CHILD"))
    return home


def test_per_rule_counts_equal_arrow_with_text_ids_orphans_and_placeholders(tmp_path: Path):
    child = pa.table(
        {
            # '13000015.0' and '2.0' are the parent's 13000015 and 2; '9' and '4.5' are orphans
            "PID": pa.array(
                ["1", "2.0", "13000015.0", "9", "4.5", None, "None", "2", "3"], pa.string()
            ),
            "AMOUNT": pa.array(["5.", "1e1", "11", "-0.5", "abc", ".5", "", "3", None]),
            "FLAG": pa.array(["true", "no", "maybe", "1", "0", "Yes", "x", None, "TRUE"]),
        }
    )
    reference = {"reference": {"table": "PARENT", "column": "ID"}, "quarantine": True}
    rules = [
        _rule("expect_column_values_to_be_in_set", column="PID", value_set=[], meta=reference),
        _rule("expect_column_values_to_be_unique", column="PID", meta={"kind": "fk"}),
        _rule("expect_column_values_to_not_be_null", column="PID", mostly=0.9),
        _rule("expect_column_values_to_be_between", column="AMOUNT", min_value=0, max_value=10),
        _rule("expect_column_values_to_be_in_set", column="FLAG", value_set=["true", "no", "1"]),
        _rule("expect_table_row_count_to_be_between", min_value=1, max_value=5),
    ]
    del rules[0].kwargs["value_set"]  # a referential rule reads its parent, not a value set
    arrow, spark = _validate_both(_lake(tmp_path, child, rules), "CHILD")
    assert spark == arrow
    assert arrow[0][:2] == (False, 2)  # '9' and '4.5': nulls and 'None' are not orphans
    assert arrow[1][:2] == (False, 2)  # '2.0' and '2' are one id: both copies
    assert arrow[2][:2] == (False, 2)  # None and the placeholder 'None'
    assert arrow[3][:2] == (False, 2)  # '11' and '-0.5' ('abc' is no number: not counted)
    assert arrow[4][:2] == (False, 5)  # 'maybe', '0', 'Yes', 'x', 'TRUE'
    assert arrow[5][0] is False  # 9 rows
    assert arrow[6] == 8  # every row but the first breaks a (quarantining) row rule


def test_spark_results_are_gx_results_with_the_orphans_listed(tmp_path: Path):
    """The partial unexpected list is GX's (its second run on the failing rules)."""
    from aims_nb_utils.validation import validate_tables

    child = pa.table({"PID": pa.array(["1", "9", "13000015.0", "77"], pa.string())})
    rule = _rule(
        "expect_column_values_to_be_in_set",
        column="PID",
        meta={"reference": {"table": "PARENT", "column": "ID"}},
    )
    home = _lake(tmp_path, child, [rule])
    run = validate_tables(make_settings(home, engine="spark"), tables=["CHILD"], write=False)
    (result,) = run.tables["CHILD"].rule_results
    assert (result.success, result.unexpected_count, result.element_count) == (False, 2, 4)
    assert sorted(result.partial_unexpected_list) == ["77", "9"]


def test_regex_dollar_before_a_final_newline_as_gx_on_pandas_reads_it(tmp_path: Path):
    """GX on pandas runs Python's re: '$' matches before a final '\\n' ('12\\n' conforms), Java's
    '$' also before '\\r' ('12\\r' must not). Non-BMP lengths count code points in both."""
    child = pa.table(
        {
            "CODE": pa.array(["12", "12\n", "12\r", "x", "\u0663", None], pa.string()),
            "NAME": pa.array(["a\U0001f600", "abc", "ab", "😀😀😀", "a", ""], pa.string()),
        }
    )
    rules = [
        _rule("expect_column_values_to_match_regex", column="CODE", regex="^[0-9]+$"),
        _rule("expect_column_values_to_match_regex", column="CODE", regex=r"^\d+$"),
        _rule("expect_column_value_lengths_to_be_between", column="NAME", min_value=1, max_value=2),
    ]
    arrow, spark = _validate_both(_lake(tmp_path, child, rules), "CHILD")
    assert spark == arrow
    assert arrow[0][1] == 3  # '12\r', 'x' and the Arabic-Indic digit three
    assert arrow[1][1] == 2  # '12\r' and 'x': Python's \d is Unicode
    assert arrow[2][1] == 2  # 'abc' and three emoji


def test_date_bounds_are_utc_whatever_the_drivers_time_zone(tmp_path: Path):
    """A rule-file date is an instant in UTC; ``F.lit`` of a naive datetime would read it in the
    driver's local zone (here UTC-5: the 03:00 bound would move to 08:00 UTC)."""
    from datetime import datetime

    stamps = [datetime(2021, 1, 1, h) for h in (1, 4, 6, 9)]
    child = pa.table({"AT": pa.array(stamps, pa.timestamp("us", tz="UTC"))})
    rule = _rule(
        "expect_column_values_to_be_between",
        column="AT",
        min_value="2021-01-01 03:00:00",
        max_value="2021-01-01 07:00:00",
    )
    home = _lake(tmp_path, child, [rule])
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        arrow, spark = _validate_both(home, "CHILD")
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
    assert arrow[0][:2] == (False, 2)  # 01:00 and 09:00
    assert spark == arrow
