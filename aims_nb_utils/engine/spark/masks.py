"""The rules as Spark column expressions: the same preparation and row masks as ``checks``.

:mod:`aims_nb_utils.checks` is the specification: how a column is prepared for a rule
(``checks.preparation`` decides the form, and is called here) and which rows break it
(``checks.mask_prepared``). This module writes the same thing for Spark DataFrames, so a mask
is a boolean Column evaluated on the executors and nothing is collected to the driver. Parity with
``checks.unexpected_mask`` is tested on the synthetic lake and on TPC-H
(``tests/test_spark_engine.py``).

Where Spark and pyarrow differ, this module does what pyarrow does:

* regex dialect: rule files hold RE2/Python patterns and Spark runs Java's. In Java ``$`` also
  matches before a final line break ('12\\n' matches ``^[0-9]+$``), in RE2 only at the very end:
  :func:`java_regex` writes ``$`` as ``\\z``; Python's ``(?P<name>`` becomes Java's ``(?<name>``.
* null placeholders: text equal to one ('None', 'NaT', '', ' ') is null, as in ``checks``;
  a NaN in a float column is null too (Arrow's ``nan_is_null``).
* text of typed values (what regex and length rules and quarantine reasons read): Arrow prints a
  whole double as an integer ('3', Spark '3.0') and a timestamp with six fraction digits; both are
  written Arrow's way by :func:`text_form`.
* dates are compared as UTC microseconds (``bigint``), whatever the session time zone would do
  to a TIMESTAMP; text dates are parsed with ``checks.parse_timestamps``' rules (pattern, 'T' or
  ' ', optional fraction, UTC offset applied, calendar check).
* string length counts code points in both (a non-BMP character is one), as pandas does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ... import checks
from ...rules import FALSE_STRINGS, TRUE_STRINGS, TYPE_PATTERNS, Expectation

_INTEGER_18 = r"^-?[0-9]{1,18}(\.0+)?$"


# --- regex and types -------------------------------------------------------------------------


def java_regex(pattern: str, end: str = r"\z") -> str:
    """An RE2/Python pattern as Java runs it with the same meaning (see the module docstring).

    ``end`` is what '$' becomes: RE2's very end by default; GX on pandas runs Python's ``re``,
    whose '$' also matches before a final '\\n' (``(?=\\n?\\z)``, see engine/spark/gx.py)."""
    out: list[str] = []
    i, in_class = 0, False
    pattern = pattern.replace("(?P<", "(?<")
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # a literal ']' first in a class
                out.append("[]")
                i += 2
                continue
        elif ch == "$":
            out.append(end)
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def arrow_type_of(dtype: T.DataType) -> pa.DataType:
    """The Arrow type ``checks`` reasons about for a Spark column type."""
    if isinstance(dtype, T.StringType):
        return pa.string()
    if isinstance(dtype, T.NullType):
        return pa.null()
    if isinstance(dtype, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return pa.int64()
    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        return pa.float64()
    if isinstance(dtype, T.DecimalType):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, T.DateType):
        return pa.date32()
    if isinstance(dtype, T.TimestampNTZType):
        return pa.timestamp("us")
    if isinstance(dtype, T.TimestampType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(dtype, T.BooleanType):
        return pa.bool_()
    return pa.binary()


def _is_text(dtype: T.DataType) -> bool:
    return isinstance(dtype, (T.StringType, T.NullType))


def _is_integer(dtype: T.DataType) -> bool:
    return isinstance(dtype, (T.ByteType, T.ShortType, T.IntegerType, T.LongType))


def _is_float(dtype: T.DataType) -> bool:
    return isinstance(dtype, (T.FloatType, T.DoubleType))


def _is_temporal(dtype: T.DataType) -> bool:
    return isinstance(dtype, (T.DateType, T.TimestampType, T.TimestampNTZType))


# --- column forms ------------------------------------------------------------------------------


def normalized(col: Column, dtype: T.DataType, placeholders: Sequence[str]) -> Column:
    """Placeholders as null (text), NaN as null (floats); other typed values unchanged."""
    if isinstance(dtype, T.NullType):
        return col.cast("string")
    if _is_text(dtype):
        if not placeholders:
            return col
        return F.when(col.isin(list(placeholders)), F.lit(None).cast("string")).otherwise(col)
    if _is_float(dtype):
        return F.when(F.isnan(col), F.lit(None).cast(dtype)).otherwise(col)
    return col


def text_form(col: Column, dtype: T.DataType) -> Column:
    """A column's text as Arrow prints it (``checks.as_text``)."""
    if _is_text(dtype):
        return col.cast("string")
    if _is_float(dtype):
        d = col.cast("double")
        whole = (d == F.floor(d)) & (F.abs(d) < F.lit(1e15))
        return F.when(whole, d.cast("bigint").cast("string")).otherwise(d.cast("string"))
    if isinstance(dtype, T.TimestampNTZType):
        return F.date_format(col.cast("timestamp"), "yyyy-MM-dd HH:mm:ss.SSSSSS")
    if isinstance(dtype, T.TimestampType):
        return F.concat(F.date_format(col, "yyyy-MM-dd HH:mm:ss.SSSSSS"), F.lit("Z"))
    return col.cast("string")


def canonical_text(text: Column) -> Column:
    """``checks.canonical_ids``: '13000015.0' -> '13000015'."""
    return F.regexp_replace(text, java_regex(r"^(-?[0-9]+)\.0+$"), "$1")


def key_form(col: Column, dtype: T.DataType) -> Column:
    """``checks.key_values``: integers as bigint, anything else as canonical text."""
    if _is_integer(dtype):
        return col.cast("bigint")
    return canonical_text(text_form(col, dtype))


_WITH_OFFSET = (
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?) ?"
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)


def parse_timestamp_micros(text: Column) -> Column:
    """``checks.parse_timestamps`` of text as UTC microseconds (bigint); null when not a date."""
    ok = text.rlike(java_regex(TYPE_PATTERNS["date"]))
    t = F.when(ok, text)
    base = F.regexp_extract(t, java_regex(_WITH_OFFSET), 1)
    offset = F.regexp_extract(t, java_regex(_WITH_OFFSET), 2)
    t = F.when(base != "", base).otherwise(t)
    norm = F.regexp_replace(t, java_regex(r"^(\d{4}-\d{2}-\d{2})T"), "$1 ")
    norm = F.when(F.length(norm) == 10, F.concat(norm, F.lit(" 00:00:00"))).otherwise(norm)
    norm = F.when(F.length(norm) == 16, F.concat(norm, F.lit(":00"))).otherwise(norm)
    parsed = F.to_timestamp(F.substring(norm, 1, 19), "yyyy-MM-dd HH:mm:ss")
    seconds = F.unix_micros(parsed)
    fraction = F.regexp_extract(norm, java_regex(r"\.(\d+)$"), 1)
    micros = F.substring(F.rpad(fraction, 6, "0"), 1, 6).cast("bigint")
    digits = F.regexp_replace(F.when(offset == "Z", F.lit("+00")).otherwise(offset), ":", "")
    hours = F.substring(digits, 2, 2).cast("bigint")
    minutes_text = F.substring(digits, 4, 2)
    minutes = hours * 60 + F.when(F.length(minutes_text) == 2, minutes_text).otherwise("0").cast(
        "bigint"
    )
    minutes = F.when(digits.startswith("-"), -minutes).otherwise(minutes)
    shift = F.coalesce(minutes, F.lit(0)) * F.lit(60_000_000)
    return seconds + F.coalesce(micros, F.lit(0)) - shift


def temporal_micros(col: Column, dtype: T.DataType) -> Column:
    """A date or timestamp column as UTC microseconds."""
    if isinstance(dtype, T.DateType):
        return F.unix_date(col).cast("bigint") * F.lit(86_400_000_000)
    if isinstance(dtype, T.TimestampNTZType):
        return F.unix_micros(col.cast("timestamp"))  # the session time zone is UTC
    return F.unix_micros(col)


def parse_numbers(col: Column, dtype: T.DataType) -> Column:
    """``checks.parse_numbers``: double; text only when it matches the decimal pattern."""
    if _is_float(dtype) or _is_integer(dtype):
        return col.cast("double")
    if isinstance(dtype, T.DecimalType):
        return col.cast("string").cast("double")  # correctly rounded, as checks does
    text = text_form(col, dtype)
    return F.when(text.rlike(java_regex(TYPE_PATTERNS["decimal"])), text.cast("double"))


def parse_integers(text: Column) -> Column:
    """``checks.parse_integers`` of text: bigint of at most 18 digits ('5.0' -> 5), else null."""
    return F.when(
        text.rlike(java_regex(_INTEGER_18)),
        F.regexp_replace(text, java_regex(r"\.0+$"), "").cast("bigint"),
    )


def parse_booleans(text: Column) -> Column:
    """``checks.parse_booleans`` of text (``rules.TRUE_STRINGS`` / ``FALSE_STRINGS``)."""
    return F.when(text.isin(sorted(TRUE_STRINGS)), F.lit(True)).when(
        text.isin(sorted(FALSE_STRINGS)), F.lit(False)
    )


def prepare(col: Column, dtype: T.DataType, form: str) -> tuple[Column, str]:
    """A null-normalised column in ``form`` (``checks.prepare_form``) and what it holds:
    'text', 'int', 'double', 'micros' or 'other'."""
    if form == checks.CANONICAL:
        return key_form(col, dtype), "int" if _is_integer(dtype) else "text"
    if form == checks.NUMBER:
        if _is_temporal(dtype):
            return temporal_micros(col, dtype), "micros"
        return parse_numbers(col, dtype), "double"
    if form == checks.TYPED and not _is_text(dtype):
        if _is_integer(dtype):
            return col.cast("bigint"), "int"
        if _is_float(dtype) or isinstance(dtype, T.DecimalType):
            return parse_numbers(col, dtype), "double"
        if _is_temporal(dtype):
            return temporal_micros(col, dtype), "micros"
        return col, "other"
    return text_form(col, dtype), "text"


# --- masks ------------------------------------------------------------------------------------


def _micros_of(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _outside(values: Column, bounds: tuple[Any, Any], exp: Expectation) -> Column:
    lo, hi = bounds
    if lo is None and hi is None:
        raise checks.RuleEvaluationError(
            exp.rule_id, "min_value and max_value cannot both be empty"
        )
    bad = F.lit(False)
    if lo is not None:
        bad = bad | (values <= lo if exp.kwargs.get("strict_min") else values < lo)
    if hi is not None:
        bad = bad | (values >= hi if exp.kwargs.get("strict_max") else values > hi)
    return bad


_TARGETS = {
    "text": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "micros": pa.timestamp("us"),
}


def _value_set(exp: Expectation, kind: str | None, holds: str, dtype: T.DataType) -> list | None:
    target = _TARGETS.get(holds, arrow_type_of(dtype))
    values = checks.prepare_value_set(exp, kind, target)
    if values is None or holds != "micros":
        return values
    return [_micros_of(v) for v in values]


def unique_mask(key: Column) -> Column:
    """Every occurrence of a non-null value that occurs more than once (a window count)."""
    count = F.count(F.lit(1)).over(Window.partitionBy(key))
    return key.isNotNull() & (count > 1)


def rows_duplicated(keys: Sequence[Column], ignore_row_if: str) -> Column:
    """``checks.duplicated_rows``: rows whose combination of values occurs more than once."""
    if ignore_row_if not in checks.IGNORE_ROW_IF:
        raise checks.RuleEvaluationError(
            checks.COMPOUND_UNIQUE,
            f"ignore_row_if={ignore_row_if!r} is not one of {', '.join(checks.IGNORE_ROW_IF)}",
        )
    count = F.count(F.lit(1)).over(Window.partitionBy(*keys))
    any_null = F.lit(False)
    all_null = F.lit(True)
    for key in keys:
        any_null = any_null | key.isNull()
        all_null = all_null & key.isNull()
    if ignore_row_if == "any_value_is_missing":
        return ~any_null & (count > 1)
    if ignore_row_if == "all_values_are_missing":
        return ~all_null & (count > 1)
    return count > 1


def expectation_mask(
    df: DataFrame,
    exp: Expectation,
    placeholders: Sequence[str],
    kind: str | None = None,
    reference: DataFrame | None = None,
    tag: str = "0",
) -> tuple[DataFrame, Column]:
    """Rows of ``df`` that break ``exp`` as a boolean Column (``checks.unexpected_mask``).

    ``reference`` is the parent's distinct key DataFrame of a referential rule
    (:func:`reference_keys`); it is joined to ``df``, so the DataFrame comes back with the join
    (columns prefixed ``__ref<tag>``) and the mask reads it."""
    dtypes = dict((f.name, f.dataType) for f in df.schema.fields)
    if exp.expectation_type == checks.COMPOUND_UNIQUE:
        missing = [c for c in exp.columns if c not in dtypes]
        if missing:
            raise checks.RuleEvaluationError(
                exp.rule_id, f"column(s) {', '.join(missing)} not in the data"
            )
        keys = []
        for column in exp.columns:
            dtype = dtypes[column]
            form = checks.preparation(exp, kind, arrow_type_of(dtype))
            keys.append(
                prepare(normalized(F.col(f"`{column}`"), dtype, placeholders), dtype, form)[0]
            )
        return df, rows_duplicated(keys, checks.compound_ignore_rule(exp))
    if not exp.is_row_level:
        checks.mask_prepared(pa.chunked_array([], pa.string()), exp)  # raises with the reason
    column = exp.column
    if column not in dtypes:
        raise checks.RuleEvaluationError(
            exp.rule_id,
            f"column {column!r} is not in the data",
            hint="the expect_column_to_exist rule reports it; fix the export or the rule file",
        )
    dtype = dtypes[column]
    form = checks.preparation(exp, kind, arrow_type_of(dtype))
    prepared, holds = prepare(normalized(F.col(f"`{column}`"), dtype, placeholders), dtype, form)
    etype = exp.expectation_type
    kwargs = exp.kwargs
    present = prepared.isNotNull()
    if etype == "expect_column_values_to_not_be_null":
        return df, prepared.isNull()
    if etype == "expect_column_values_to_be_unique":
        return df, unique_mask(prepared)
    if etype == "expect_column_values_to_be_in_set":
        if exp.reference is not None and "value_set" not in kwargs:
            if reference is None:
                parent, parent_column = exp.reference
                raise checks.RuleEvaluationError(
                    exp.rule_id,
                    f"needs the values of {parent}.{parent_column}",
                    hint="pass reference=reference_keys(...)",
                )
            key_name, hit_name = f"__ref{tag}_key", f"__ref{tag}_hit"
            child_key = f"__ref{tag}_child"
            parent = reference.select(
                F.col("key").cast("string").alias(key_name), F.lit(True).alias(hit_name)
            )
            df = df.withColumn(child_key, prepared.cast("string"))
            df = df.join(
                parent,
                F.col(child_key) == F.col(key_name),
                "left",
            )
            return df, F.col(child_key).isNotNull() & F.col(hit_name).isNull()
        value_set = _value_set(exp, kind, holds, dtype)
        if value_set is None:
            return df, F.lit(False)
        if not value_set:
            return df, present
        return df, present & ~prepared.isin(value_set)
    if etype == "expect_column_value_lengths_to_be_between":
        lengths = F.length(prepared if holds == "text" else text_form(prepared, dtype))
        return df, present & _outside(lengths, checks.range_bounds(exp), exp)
    if etype == "expect_column_values_to_match_regex":
        regex = kwargs.get("regex")
        if not isinstance(regex, str):
            raise checks.RuleEvaluationError(exp.rule_id, "kwargs.regex is missing or not text")
        return df, present & ~F.coalesce(prepared.rlike(java_regex(regex)), F.lit(False))
    if etype == "expect_column_values_to_be_between":
        if holds == "micros":
            lo, hi = checks.range_bounds(exp, pa.timestamp("us"))
            bounds = (
                None if lo is None else _micros_of(lo),
                None if hi is None else _micros_of(hi),
            )
        else:
            bounds = checks.range_bounds(exp)
        return df, present & _outside(prepared, bounds, exp)
    raise checks.RuleEvaluationError(
        exp.rule_id, f"{etype} is a table-level rule and has no row mask"
    )


def reference_keys(parent: DataFrame, column: str, placeholders: Sequence[str]) -> DataFrame:
    """Distinct canonical non-null keys of a parent column as one column ``key`` (text: a child
    is compared as canonical text, which equals ``checks.comparable``'s integer comparison)."""
    dtype = parent.schema[column].dataType
    key = key_form(normalized(F.col(f"`{column}`"), dtype, placeholders), dtype)
    return parent.select(key.cast("string").alias("key")).where(F.col("key").isNotNull()).distinct()


def unexpected_counts(
    df: DataFrame,
    expectations: Sequence[Expectation],
    placeholders: Sequence[str],
    kinds: Mapping[str, str | None],
    references: Mapping[str, DataFrame],
) -> dict[str, int]:
    """rule id -> rows breaking it, all rules counted in one aggregation."""
    sums = []
    for j, exp in enumerate(expectations):
        df, mask = expectation_mask(
            df, exp, placeholders, kinds.get(exp.rule_id), references.get(exp.rule_id), str(j)
        )
        df = df.withColumn(f"__m{j}", F.coalesce(mask, F.lit(False)))  # windows: not in agg
        sums.append(F.sum(F.col(f"__m{j}").cast("long")).alias(f"c{j}"))
    if not sums:
        return {}
    row = df.agg(*sums).collect()[0]
    return {exp.rule_id: int(row[f"c{j}"] or 0) for j, exp in enumerate(expectations)}
