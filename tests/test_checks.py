"""Row-level rule semantics (checks.py): what a rule means for one row, without GX.

Parity with GX's counts on the sample lake is proven in test_validation.py; here each rule's
conventions are pinned on small, hand-checked data (every expected count is derivable by eye).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import checks
from aims_nb_utils.errors import AimsError, BronzeReadError
from aims_nb_utils.rules import Expectation

PLACEHOLDERS = ["None", "NaT", "", " "]


def rule(etype: str, **kwargs: object) -> Expectation:
    meta = kwargs.pop("meta", {})
    return Expectation(etype, dict(kwargs), dict(meta))  # type: ignore[arg-type]


def mask(values: list[str | None], expectation: Expectation, **kw: object) -> list[bool]:
    data = pa.table({"C": pa.array(values, type=pa.string())})
    return checks.unexpected_mask(data, expectation, PLACEHOLDERS, **kw).tolist()  # type: ignore[arg-type]


def test_placeholders_become_null_and_other_text_stays() -> None:
    values = pa.array(["a", "None", None, " ", "NaT", "", "  x", "none"])
    out = checks.normalize_nulls(values, PLACEHOLDERS).to_pylist()
    assert out == ["a", None, None, None, None, None, "  x", "none"]


def test_integer_looking_text_is_canonicalised_and_nothing_else() -> None:
    values = pa.array(["13000015.0", "13000015", "-5.00", "1.5", "ABC.0", "7.0x", None, "0.0"])
    out = checks.canonical_ids(values).to_pylist()
    assert out == ["13000015", "13000015", "-5", "1.5", "ABC.0", "7.0x", None, "0"]
    odd = [".0", "-.0", "1.5.0", "100.00", "--5.0", "+5.0", "5..0", "5.10", "0100.0", "-0.0"]
    for column in (odd, ["-5.00", "10"], ["10", "20"]):
        assert checks.canonical_ids(pa.array(column)).to_pylist() == [
            re.sub(r"^(-?[0-9]+)\.0+$", r"\1", value) for value in column
        ]


def test_prepared_column_is_what_the_rule_compares() -> None:
    values = pa.array(["13000015.0", "None", "12", "abc", None])
    not_null = rule("expect_column_values_to_not_be_null", column="C")
    unique = rule("expect_column_values_to_be_unique", column="C")
    between = rule("expect_column_values_to_be_between", column="C", min_value=0)

    text = checks.prepare_column(values, not_null, PLACEHOLDERS)
    assert text.isna().tolist() == [False, True, False, False, True]
    assert text.iloc[0] == "13000015.0"  # a plain text rule keeps the export's spelling
    assert checks.prepare_column(values, unique, PLACEHOLDERS).iloc[0] == "13000015"
    # an fk column is canonical for every rule (the spec or meta.kind says so)
    assert checks.prepare_column(values, not_null, PLACEHOLDERS, kind="fk").iloc[0] == "13000015"
    numbers = checks.prepare_column(values, between, PLACEHOLDERS)
    assert numbers.dtype == np.float64
    assert numbers.tolist()[:3] == [13000015.0, pytest.approx(np.nan, nan_ok=True), 12.0]
    assert np.isnan(numbers.iloc[3])  # 'abc' is not a number: null here, the regex rule reports it


def test_not_null_counts_placeholders_and_real_nulls() -> None:
    expectation = rule("expect_column_values_to_not_be_null", column="C")
    assert mask(["a", "None", None, " ", "b"], expectation) == [False, True, True, True, False]


def test_unique_flags_every_occurrence_and_equates_float_formatted_ids() -> None:
    expectation = rule("expect_column_values_to_be_unique", column="C")
    values = ["13000015", "13000015.0", "7", None, None, "None", "8", "8"]
    assert mask(values, expectation) == [True, True, False, False, False, False, True, True]


def test_in_set_ignores_nulls_and_tolerates_placeholders_in_the_set() -> None:
    expectation = rule(
        "expect_column_values_to_be_in_set", column="C", value_set=["A", "B", "None", " "]
    )
    assert mask(["A", "C", None, "None", "b", "B"], expectation) == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]


def test_in_set_on_an_id_column_compares_canonical_values() -> None:
    expectation = rule(
        "expect_column_values_to_be_in_set", column="C", value_set=["13000015", "2.0"]
    )
    values = ["13000015.0", "2", "3"]
    assert mask(values, expectation) == [True, True, True]  # text column: spelling matters
    assert mask(values, expectation, kind="fk") == [False, False, True]


def test_referential_rule_uses_the_parent_values() -> None:
    expectation = rule(
        "expect_column_values_to_be_in_set",
        column="C",
        meta={"reference": {"table": "p", "column": "ID"}},
    )
    parent = pa.array(["1", "2", "13000015"])
    assert mask(["13000015.0", "3", None, "2"], expectation, reference=parent) == [
        False,
        True,
        False,
        False,
    ]
    with pytest.raises(checks.RuleEvaluationError, match="needs the values of p.ID"):
        mask(["1"], expectation)


def test_present_values_drop_nulls_and_placeholders_and_say_where_they_were() -> None:
    values, present = checks.present_values(pa.array(["a", "None", None, " ", "b"]), PLACEHOLDERS)
    assert values.to_pylist() == ["a", "b"]
    assert present is not None and present.to_pylist() == [True, False, False, False, True]
    values, present = checks.present_values(pa.array(["a", "b"]), PLACEHOLDERS)
    assert values.to_pylist() == ["a", "b"] and present is None


def test_integer_form_only_for_text_that_is_exactly_an_integer() -> None:
    assert checks.integer_form(pa.array(["12", "-5", None, "0"])).to_pylist() == [12, -5, None, 0]
    for odd in ("012", "+5", "1.0", " 5", "5 ", "x", "99999999999999999999", "-0"):
        assert checks.integer_form(pa.array(["12", odd])) is None, odd


def test_large_lookups_by_integer_give_the_same_membership_as_text() -> None:
    n = checks.INTEGER_LOOKUP_MIN
    parent = pa.array([str(i) for i in range(0, 2 * n, 2)])  # even ids
    child = pa.array([str(i) for i in range(n)] + [None])
    expected = [i % 2 == 0 for i in range(n)] + [False]
    assert checks.is_in(child, parent).to_pylist() == expected  # integers: both sides exact
    with_text = pa.array([str(i) for i in range(n)] + ["012"])  # '012' is not 12: as text
    assert checks.is_in(with_text, parent).to_pylist() == expected
    odd_parent = pa.array(parent.to_pylist()[:-1] + ["12.5"])
    assert checks.is_in(child, odd_parent).to_pylist() == expected


def test_lengths_count_characters_and_honour_strict_bounds() -> None:
    loose = rule("expect_column_value_lengths_to_be_between", column="C", min_value=2, max_value=3)
    strict = rule(
        "expect_column_value_lengths_to_be_between",
        column="C",
        min_value=2,
        max_value=3,
        strict_max=True,
    )
    values = ["a", "ab", "abc", "abcd", "ééé", None]
    assert mask(values, loose) == [True, False, False, True, False, False]
    assert mask(values, strict) == [True, False, True, True, True, False]


def test_regex_searches_like_gx_unless_anchored() -> None:
    search = rule("expect_column_values_to_match_regex", column="C", regex=r"\d+")
    anchored = rule("expect_column_values_to_match_regex", column="C", regex=r"^\d+$")
    values = ["12", "a12", "abc", None]
    assert mask(values, search) == [False, False, True, False]
    assert mask(values, anchored) == [False, True, True, False]


def test_between_reads_numbers_and_ignores_text_that_is_not_one() -> None:
    expectation = rule("expect_column_values_to_be_between", column="C", min_value=0, max_value=10)
    strict = rule("expect_column_values_to_be_between", column="C", min_value=0, strict_min=True)
    values = ["-1", "0", "10.0", "10.5", "abc", "None", "1e1"]
    assert mask(values, expectation) == [True, False, False, True, False, False, False]
    assert mask(values, strict) == [True, True, False, False, False, False, False]


def test_rules_that_cannot_be_masked_say_why() -> None:
    data = pa.table({"C": pa.array(["a"])})
    with pytest.raises(checks.RuleEvaluationError, match="column 'MISSING' is not in the data"):
        checks.unexpected_mask(
            data, rule("expect_column_values_to_not_be_null", column="MISSING"), PLACEHOLDERS
        )
    with pytest.raises(checks.RuleEvaluationError, match="table-level rule"):
        checks.unexpected_mask(
            data, rule("expect_table_row_count_to_be_between", min_value=1), PLACEHOLDERS
        )
    with pytest.raises(checks.RuleEvaluationError, match="cannot both be empty"):
        checks.unexpected_mask(
            data, rule("expect_column_value_lengths_to_be_between", column="C"), PLACEHOLDERS
        )
    assert issubclass(checks.RuleEvaluationError, AimsError)


def test_column_kind_comes_from_meta_then_the_spec() -> None:
    assert checks.column_kind("aims_assets", "ID") == "id"
    assert checks.column_kind("aims_assets", "NOT_A_COLUMN") is None
    assert checks.column_kind("not_a_table", "ID") is None
    custom = rule("expect_column_values_to_be_unique", column="ID", meta={"kind": "text"})
    assert checks.column_kind("aims_assets", "ID", custom) == "text"


def _write_parent(path: Path, ids: list[str | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"ID": pa.array(ids, type=pa.string()), "X": pa.array(["x"] * len(ids))}), path
    )


def test_reference_values_are_distinct_canonical_and_reread_when_the_file_changes(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    parent = settings.paths.bronze_file("aims_parent")
    _write_parent(parent, ["1", "1.0", "2", None, "None", "3"])
    checks.clear_reference_cache()
    values = checks.reference_values(settings, "aims_parent", "ID")
    assert sorted(values.to_pylist()) == ["1", "2", "3"]

    _write_parent(parent, ["9"])
    later = time.time() + 5
    os.utime(parent, (later, later))  # a rewrite within the same clock tick still counts
    assert checks.reference_values(settings, "aims_parent", "ID").to_pylist() == ["9"]


def test_reference_values_name_the_missing_file_or_column(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(BronzeReadError, match="aims_nothere.parquet"):
        checks.reference_values(settings, "aims_nothere", "ID")
    _write_parent(settings.paths.bronze_file("aims_parent"), ["1"])
    with pytest.raises(BronzeReadError, match="has no column 'PARENT_ID'"):
        checks.reference_values(settings, "aims_parent", "PARENT_ID")


def test_masks_agree_with_a_plain_python_reading_of_the_rules() -> None:
    """An independent, row-by-row oracle on random data with placeholders and float-formatted ids."""
    rng = np.random.default_rng(3)
    pool = np.array(
        ["1", "2", "2.0", "13000015", "13000015.0", "None", " ", "abc", "12345", "-4", "7.5"]
    )
    values = [None if rng.random() < 0.05 else str(v) for v in rng.choice(pool, 400)]
    data = pa.table({"C": pa.array(values, type=pa.string())})

    def canon(v: str) -> str:
        head, _, tail = v.partition(".")
        return head if tail and set(tail) == {"0"} and head.lstrip("-").isdigit() else v

    present = [None if v is None or v in PLACEHOLDERS else v for v in values]
    ids = [None if v is None else canon(v) for v in present]
    counts = {v: ids.count(v) for v in set(ids) if v is not None}

    def number(v: str | None) -> float | None:
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None

    oracle = {
        "expect_column_values_to_not_be_null": ([v is None for v in present], {}),
        "expect_column_values_to_be_unique": ([v is not None and counts[v] > 1 for v in ids], {}),
        "expect_column_values_to_be_in_set": (
            [v is not None and v not in ("1", "abc") for v in present],
            {"value_set": ["1", "abc"]},
        ),
        "expect_column_value_lengths_to_be_between": (
            [v is not None and not 2 <= len(v) <= 5 for v in present],
            {"min_value": 2, "max_value": 5},
        ),
        "expect_column_values_to_match_regex": (
            [v is not None and not v.isdigit() for v in present],
            {"regex": r"^\d+$"},
        ),
        "expect_column_values_to_be_between": (
            [number(v) is not None and not 0 <= number(v) <= 100 for v in present],  # type: ignore[operator]
            {"min_value": 0, "max_value": 100},
        ),
    }
    for etype, (expected, kwargs) in oracle.items():
        got = checks.unexpected_mask(data, rule(etype, column="C", **kwargs), PLACEHOLDERS)
        assert got.tolist() == expected, etype
        assert 0 < got.sum() < len(values), f"{etype}: the data must exercise both outcomes"


# --- the one copy of each parsing rule, on text and on typed input ------------------------------


def test_parse_timestamps_applies_utc_offsets_and_keeps_naive_text() -> None:
    import datetime as dt

    text = pa.array(
        [
            "2013-01-01T10:00:00Z",
            "2021-03-04 05:06:07+02:00",
            "2021-03-04 05:06:07.25 -0530",
            "2013-01-01 05:00:00.000000+0000",
            "2021-03-04",
            "2021-02-30 00:00:00Z",  # matches the pattern, not the calendar
            "soon",
        ]
    )
    naive = checks.parse_timestamps(text).to_pylist()
    assert naive == [
        dt.datetime(2013, 1, 1, 10),
        dt.datetime(2021, 3, 4, 3, 6, 7),
        dt.datetime(2021, 3, 4, 10, 36, 7, 250000),
        dt.datetime(2013, 1, 1, 5),
        dt.datetime(2021, 3, 4),
        None,
        None,
    ]
    utc = checks.parse_timestamps(text, utc=True)
    assert utc.type == pa.timestamp("us", tz="UTC")
    assert utc[1].as_py() == dt.datetime(2021, 3, 4, 3, 6, 7, tzinfo=dt.timezone.utc)
    assert checks.has_utc_offsets(text) and not checks.has_utc_offsets(pa.array(["2021-03-04"]))


def test_parsers_read_text_and_typed_values_alike() -> None:
    import decimal

    assert checks.parse_integers(pa.array(["13000015.0", "7", "1.5", "x", None])).to_pylist() == [
        13000015,
        7,
        None,
        None,
        None,
    ]
    assert checks.parse_integers(pa.array([2.0, 2.5])).to_pylist() == [2, None]
    assert checks.parse_numbers(pa.array(["5.", "1e3", "-.5", "n/a"])).to_pylist() == [
        5.0,
        1000.0,
        -0.5,
        None,
    ]
    # correctly rounded: the double of a decimal equals the double of the same text in a rule
    money = pa.array([decimal.Decimal("9987.71")], pa.decimal128(15, 2))
    assert checks.parse_numbers(money).to_pylist() == [9987.71]
    assert checks.parse_booleans(pa.array(["-1", "No", "true", "maybe"])).to_pylist() == [
        True,
        False,
        True,
        None,
    ]
    assert checks.canonical_id_text("13000015.00") == "13000015"
    assert checks.canonical_id_text("1.50") == "1.50"


def test_composite_duplicates_follow_gx_ignore_row_if() -> None:
    a = pa.array([1, 1, None, None, 2, 2])
    b = pa.array(["x", "x", None, None, None, None])
    assert checks.duplicated_rows([a, b]).tolist() == [True, True, False, False, False, False]
    assert checks.duplicated_rows([a, b], "all_values_are_missing").tolist() == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert checks.duplicated_rows([a, b], "never").tolist() == [True] * 6


def test_references_compare_int_and_text_keys_by_value() -> None:
    child_text = pa.chunked_array([pa.array(["5", "7"])])
    values, allowed = checks.comparable(child_text, pa.array([5, 6], pa.int64()))
    assert checks.is_in(values, allowed).to_pylist() == [True, False]
    # text that is not plain integer text is compared canonically: '5.0' is the key 5
    values, allowed = checks.comparable(pa.array(["5.0", "x"]), pa.array([5], pa.int32()))
    assert checks.is_in(values, allowed).to_pylist() == [True, False]
    values, allowed = checks.comparable(pa.array([5, 8], pa.int16()), pa.array(["5", "6"]))
    assert checks.is_in(values, allowed).to_pylist() == [True, False]
