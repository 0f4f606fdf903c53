"""Silver typing: the type a column gets, and casts that never silently lose a value."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aims_nb_utils.rules import TYPE_PATTERNS, Expectation, RuleFile
from aims_nb_utils.typing_rules import cast_column, silver_schema, silver_types, type_table

PLACEHOLDERS = ["None", "NaT", "", " "]


def _cast(values: list[str | None], kind: str) -> tuple[list, list[bool]]:
    typed, failed = cast_column(pa.array(values, pa.string()), kind, PLACEHOLDERS)
    return typed.to_pylist(), failed.tolist()


def test_integers_accept_float_formatted_ids_and_flag_the_rest() -> None:
    values, failed = _cast(
        ["13000015.0", "12", "-3", "7.00", "abc", "1.5", "None", " ", None, "9" * 19], "integer"
    )
    assert values == [13000015, 12, -3, 7, None, None, None, None, None, None]
    # placeholders and real nulls are nulls, not failures; 19 digits would overflow int64
    assert failed == [False, False, False, False, True, True, False, False, False, True]


def test_decimals() -> None:
    values, failed = _cast(["6.0", "1e3", ".5", "-2", "12,5", "n/a", "NaT"], "decimal")
    assert values == [6.0, 1000.0, 0.5, -2.0, None, None, None]
    assert failed == [False, False, False, False, True, True, False]


def test_dates_in_every_form_the_pattern_accepts_with_a_calendar_check() -> None:
    values, failed = _cast(
        [
            "2021-03-04",
            "2021-03-04 10:22",
            "2021-03-04T10:22:33",
            "2021-03-04 10:22:33.5",
            "2021-02-30 00:00:00",
            "31/12/2021",
            "0000-00-00",
            "NaT",
        ],
        "date",
    )
    assert values[:4] == [
        dt.datetime(2021, 3, 4),
        dt.datetime(2021, 3, 4, 10, 22),
        dt.datetime(2021, 3, 4, 10, 22, 33),
        dt.datetime(2021, 3, 4, 10, 22, 33, 500000),
    ]
    assert values[4:] == [None, None, None, None]
    assert failed == [False, False, False, False, True, True, True, False]


def test_booleans_use_the_rule_vocabulary() -> None:
    values, failed = _cast(["0", "-1", "1", "Yes", "No", "true", "maybe", "None"], "boolean")
    assert values == [False, True, True, True, False, True, None, None]
    assert failed == [False, False, False, False, False, False, True, False]


def test_text_keeps_values_and_nulls_placeholders() -> None:
    values, failed = _cast(["x", "None", " ", "", "  padded "], "string")
    assert values == ["x", None, None, None, "  padded "]
    assert not any(failed)


def _rule_file(*expectations: Expectation) -> RuleFile:
    return RuleFile(table="aims_assets", expectations=list(expectations))


def test_type_precedence_rule_then_reference_then_key_then_spec_then_text() -> None:
    rule_file = _rule_file(
        # The rule file says NAME holds integers: the rule file is the contract and wins over the spec.
        Expectation(
            "expect_column_values_to_match_regex",
            {"column": "NAME", "regex": "x"},
            {"value_type": "integer"},
        ),
        Expectation(
            "expect_column_values_to_be_in_set",
            {"column": "OWNER"},
            {"reference": {"table": "aims_owners", "column": "ID"}},
        ),
    )
    types = {
        t.column: t
        for t in silver_types(
            "aims_assets", ["NAME", "OWNER", "ID", "VALIDFROM", "PHASEID", "NEWCOL"], rule_file
        )
    }
    assert types["NAME"].kind == "integer" and "rule value_type" in types["NAME"].source
    assert (
        types["OWNER"].kind == "integer" and types["OWNER"].source == "reference to aims_owners.ID"
    )
    assert types["ID"].kind == "integer"
    assert types["VALIDFROM"].kind == "date" and types["VALIDFROM"].source == "spec kind date"
    assert types["PHASEID"].kind == "integer" and types["PHASEID"].source == "spec kind fk"
    assert types["NEWCOL"].kind == "string" and "not in the spec" in types["NEWCOL"].source
    schema = silver_schema(list(types.values()))
    assert schema.field("VALIDFROM").type == pa.timestamp("us")
    assert schema.field("NEWCOL").type == pa.string()


def test_type_table_keeps_a_dropped_column_as_typed_nulls() -> None:
    raw = pa.table({"ID": ["1", "2.0"], "NAME": ["a", "None"]})
    types = silver_types("aims_assets", ["ID", "NAME", "VALIDFROM"], None)
    typed, failures = type_table(raw, types, PLACEHOLDERS)
    assert typed.schema.names == ["ID", "NAME", "VALIDFROM"]
    assert typed.column("ID").to_pylist() == [1, 2]
    assert typed.column("NAME").to_pylist() == ["a", None]
    assert (
        typed.column("VALIDFROM").type == pa.timestamp("us")
        and typed.column("VALIDFROM").null_count == 2
    )
    assert not any(f.any() for f in failures.values())


@pytest.mark.parametrize("kind", ["integer", "decimal", "date"])
def test_casts_agree_with_the_type_patterns_on_the_sample_lake(lake_home: Path, kind: str) -> None:
    """On real (defective) Bronze text, a non-placeholder value fails to cast exactly when it does
    not match rules.TYPE_PATTERNS (dates: or is not a calendar date), computed here independently.
    """
    spec_kind = {"integer": ("fk", "id"), "decimal": ("number",), "date": ("date",)}[kind]
    from aims_nb_utils import spec

    table = spec.get_table("aims_assets")
    columns = [c.name for c in table.columns if c.kind in spec_kind]
    data = pq.read_table(lake_home / "data/bronze/aims_assets.parquet", columns=columns)
    pattern = re.compile(TYPE_PATTERNS[kind])
    checked = failures = 0
    for name in columns:
        values = data.column(name).to_pylist()
        _, failed = cast_column(data.column(name), kind, PLACEHOLDERS)
        for value, fail in zip(values, failed, strict=True):
            if value is None or value in PLACEHOLDERS:
                assert not fail
                continue
            ok = bool(pattern.match(value))
            if ok and kind == "date":
                try:
                    dt.datetime.fromisoformat(value.replace(" ", "T")[:19])
                except ValueError:
                    ok = False
            assert fail == (not ok), (name, value)
            checked += 1
            failures += fail
    assert checked > 1000
    if kind != "integer":  # the generator injects bad dates and numbers: the check saw some
        assert failures > 0


def test_source_types_win_over_rules_and_overrides_win_over_sources() -> None:
    from aims_nb_utils.rules import GENERATED_MARKER, GENERATOR_NAME

    generated = {GENERATED_MARKER: GENERATOR_NAME, "value_type": "integer"}
    rule_file = RuleFile(
        table="t",
        expectations=[
            Expectation(
                "expect_column_values_to_match_regex", {"column": "n", "regex": "x"}, generated
            ),
            Expectation(
                "expect_column_values_to_match_regex", {"column": "code", "regex": "x"}, generated
            ),
            Expectation(
                "expect_column_values_to_match_regex",
                {"column": "at", "regex": "x"},
                {"value_type": "date", "timezone": "UTC"},
            ),
        ],
        types={"ratio": "string"},
    )
    bronze = {"n": pa.int32(), "ratio": pa.float64(), "code": pa.string(), "at": pa.string()}
    types = {t.column: t for t in silver_types("t", list(bronze), rule_file, bronze)}
    assert (types["n"].origin, types["n"].arrow_type) == ("source", pa.int32())
    assert not types["n"].needs_cast
    assert (types["ratio"].origin, types["ratio"].arrow_type) == ("override", pa.string())
    assert (types["code"].origin, types["code"].arrow_type) == ("inferred", pa.int64())
    assert types["at"].origin == "rule file"  # no generator marker: a person wrote it
    assert types["at"].arrow_type == pa.timestamp("us", tz="UTC")
    raw = pa.table(
        {
            "n": pa.array([1, None], pa.int32()),
            "ratio": [1.5, 2.0],
            "code": ["7.0", "x"],
            "at": ["2013-01-01T10:00:00Z", None],
        }
    )
    typed, failures = type_table(raw, list(types.values()), PLACEHOLDERS)
    assert typed.schema.field("n").type == pa.int32() and typed.column("n").to_pylist() == [1, None]
    assert typed.column("ratio").to_pylist() == ["1.5", "2"]
    assert typed.column("code").to_pylist() == [7, None] and failures["code"].tolist() == [
        False,
        True,
    ]
    assert typed.column("at")[0].as_py() == dt.datetime(2013, 1, 1, 10, tzinfo=dt.timezone.utc)
