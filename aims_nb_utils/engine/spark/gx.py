"""Great Expectations on Spark DataFrames: the GX runner, the prepared frame, the kwargs.

The spark engine gives GX the same expectations (classes and kwargs) the arrow engine builds
(``validation._gx_kwargs``, ``validation._GxRunner.expectation``, ``validation._run_gx``), run by a
GX Checkpoint whose data source is Spark (``context.data_sources.add_spark``): every metric is a
Spark job on the executors. What differs is only where a column is prepared and how a few
kwargs are written for Spark:

* the prepared frame (:func:`prepared_frame`): one Spark column per (Bronze column, form) a rule
  needs, built by :mod:`.masks` (``masks.prepare`` of ``masks.normalized``: the Spark copy of
  ``checks.prepare_form`` of ``checks.normalize_nulls``): placeholders and NaN null, canonical ids
  ('13000015.0' -> '13000015'), text numbers/booleans/dates parsed as ``checks`` parses them.
  A date or timestamp becomes a Spark TIMESTAMP (an instant, UTC), as the arrow engine hands
  pandas a timestamp column. Columns get internal names (``__aims_c<n>``): GX addresses columns
  with ``F.col(name)``, which a Bronze name holding a dot or a backtick would break.
* the referential rule (``expect_column_values_to_be_in_reference_set``, the custom expectation of
  ``validation``): its Spark implementation is a condition partial registered here
  (:func:`register_reference_metric`). The frame holds a boolean column per referential rule,
  true where the child's key is not among the parent's keys: a left join of the child with the
  parent's distinct canonical keys (``masks.expectation_mask``/``masks.reference_keys``), so the
  parent is never collected to the driver. The rule's ``reference_key`` names that column; GX
  still computes the counts, ``mostly`` and the partial list of the child's values.
* kwargs (:func:`spark_kwargs`): a regex in Java's dialect with the meaning GX gives it on the
  arrow engine, where pandas runs Python's ``re`` (``str.contains``): '$' also matches before a
  final line break ('12\\n' matches ``^[0-9]+$``), written ``(?=\\n?\\z)`` for Java, whose own '$'
  also accepts '\\r' and Unicode line separators; ``\\d``, ``\\w``, ``\\s``, ``\\b`` are Unicode
  classes in Python, so Java gets ``(?U)`` for them. (The quarantine masks keep RE2's meaning,
  '$' the very end, as pyarrow does on the arrow engine.) Rule-file dates become UTC instants:
  ``F.lit`` reads a naive ``datetime`` in the driver's local time zone.

Spark's length counts code points as pandas does (a non-BMP character is one); a float column's
NaN is null here as it is for the arrow engine (``masks.normalized``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ... import checks, gx_compat
from ... import validation as v
from ...errors import AimsError
from ...rules import Expectation
from . import masks

# Counts and ``mostly`` come from GX's one aggregation per frame; the partial list of unexpected
# values is one more Spark job per rule (a filtered ``limit``). Rules that failed get theirs in a
# second, smaller GX run (see validate.py), so this run asks for none: Spark plans ``limit(0)``
# as an empty relation and runs no job for it (GX still plans the query).
COUNTS_ONLY = {"result_format": "BASIC", "partial_unexpected_count": 0}
WITH_SAMPLES = {"result_format": "BASIC", "partial_unexpected_count": v.PARTIAL_LIST_MAX}

_RUNNERS: dict[tuple[int, str], Any] = {}
_REFERENCE_METRIC: type | None = None


def runner(samples: bool = False) -> Any:
    """This process's GX runner on Spark (``validation._GxRunner`` with a Spark data source):
    counts only, or with the partial unexpected lists (``samples``)."""
    register_reference_metric()
    key = (os.getpid(), "samples" if samples else "counts")
    if key not in _RUNNERS:
        _RUNNERS[key] = v._GxRunner(
            spark=True, result_format=WITH_SAMPLES if samples else COUNTS_ONLY
        )
    return _RUNNERS[key]


def register_reference_metric() -> type:
    """The Spark implementation of the referential rule's GX metric (registered once).

    ``column_values.in_reference_set`` is declared for pandas by ``validation`` (parent values in
    this process). On Spark, ``reference_key`` names a boolean column of the frame that is true
    where the row's key is an orphan (the join of :func:`prepared_frame`)."""
    global _REFERENCE_METRIC
    if _REFERENCE_METRIC is not None:
        return _REFERENCE_METRIC
    gx_compat.import_gx()  # GX imported the platform's way (without the IRI grammar)
    v._define_reference_expectation()  # the expectation and its pandas metric first
    from great_expectations.execution_engine import SparkDFExecutionEngine
    from great_expectations.expectations.metrics.map_metric_provider import (
        ColumnMapMetricProvider,
        column_condition_partial,
    )

    class SparkColumnValuesInReferenceSet(ColumnMapMetricProvider):
        """Membership of a column's values in a parent column's keys, joined into the frame."""

        condition_metric_name = "column_values.in_reference_set"
        condition_value_keys = ("reference_key",)

        @column_condition_partial(engine=SparkDFExecutionEngine)
        def _spark(cls, column: Column, reference_key: str, **kwargs: Any) -> Column:
            return ~F.col(reference_key)

    _REFERENCE_METRIC = SparkColumnValuesInReferenceSet
    return _REFERENCE_METRIC


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    if isinstance(value, list):
        return [_utc(item) for item in value]
    return value


def spark_kwargs(kwargs: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """GX kwargs of a rule as Spark runs them: internal column names (``columns``: Bronze name
    -> frame name), regex in Java's dialect, dates as UTC instants (module docstring)."""
    out = {key: _utc(value) for key, value in kwargs.items()}
    if "column" in out:
        out["column"] = columns[out["column"]]
    if "column_list" in out:
        out["column_list"] = [columns[c] for c in out["column_list"]]
    if isinstance(out.get("regex"), str):
        out["regex"] = python_regex_for_java(out["regex"])
    return out


PYTHON_END = r"(?=\n?\z)"  # Python's '$' (no MULTILINE): the end, or before a final '\n'
_UNICODE_CLASSES = re.compile(r"(?<!\\)(?:\\\\)*\\[dDwWsSbB]")


def python_regex_for_java(pattern: str) -> str:
    """A pattern as Python's ``re.search`` reads it, for Java's ``rlike`` (module docstring)."""
    java = masks.java_regex(pattern, end=PYTHON_END)
    return "(?U)" + java if _UNICODE_CLASSES.search(pattern) else java


Item = tuple[int, Expectation, Expectation, dict[str, Any]]


@dataclass
class Prepared:
    """A table's prepared frame and what runs on it."""

    frame: DataFrame
    items: list[Item] = field(default_factory=list)  # (index, rule, gx rule, kwargs): _run_gx's
    failed: dict[int, str] = field(default_factory=dict)  # rule index -> why it cannot run
    quarantining: list[str] = field(default_factory=list)  # flag columns (rows quarantine takes)
    present: dict[str, str] = field(default_factory=dict)  # Bronze column -> "value present" flag


def prepared_frame(
    settings: Any,
    table: str,
    raw: DataFrame,
    rules: Sequence[tuple[int, Expectation]],
    references: dict[int, DataFrame | AimsError],
) -> Prepared:
    """The frame GX validates ``rules`` on (row-level rules whose column is in ``raw`` and
    multicolumn rules whose columns are), with the quarantine flags and presence of each column.

    ``references`` maps a referential rule's index to the parent's distinct keys
    (``masks.reference_keys``) or to the error that made them unreadable (the rule fails)."""
    placeholders = list(settings.null_placeholders)
    dtypes = {f.name: f.dataType for f in raw.schema.fields}
    df = raw
    exprs: list[Column] = []
    names: dict[tuple[str, str], str] = {}
    out = Prepared(raw)

    def column_for(column: str, form: str) -> str:
        key = (column, form)
        if key not in names:
            name = f"__aims_c{len(names)}"
            dtype = dtypes[column]
            value = masks.normalized(F.col(f"`{column}`"), dtype, placeholders)
            prepared, holds = masks.prepare(value, dtype, form)
            if holds == "micros":  # an instant, as pandas gets a timestamp column
                prepared = F.timestamp_micros(prepared)
            exprs.append(prepared.alias(name))
            names[key] = name
        return names[key]

    orphans: dict[int, str] = {}
    for index, rule in rules:
        if index not in references:
            continue
        reference = references[index]
        if isinstance(reference, AimsError):
            out.failed[index] = str(reference)
            continue
        kind = checks.column_kind(table, rule.column, rule)
        df, mask = masks.expectation_mask(df, rule, placeholders, kind, reference, str(index))
        orphans[index] = f"__aims_orphan{index}"
        exprs.append(F.coalesce(mask, F.lit(False)).alias(orphans[index]))

    for index, rule in rules:
        if index in out.failed:
            continue
        kind = checks.column_kind(table, rule.column, rule)
        columns = list(rule.columns) if rule.is_multicolumn else [str(rule.column)]
        local: dict[str, str] = {}
        try:
            for column in columns:
                arrow_type = masks.arrow_type_of(dtypes[column])
                form = checks.preparation(rule, kind, arrow_type)
                local[column] = column_for(column, form)
            target = None
            if not rule.is_multicolumn:
                target = checks.prepared_type(arrow_type, form)
            gx_rule, kwargs = v._gx_kwargs(settings, rule, kind, target, orphans.get(index))
        except AimsError as exc:
            out.failed[index] = str(exc)
            continue
        out.items.append((index, rule, gx_rule, spark_kwargs(kwargs, local)))
        if not rule.quarantines_rows:
            continue
        if index in orphans:
            out.quarantining.append(orphans[index])
            continue
        try:
            df, mask = masks.expectation_mask(df, rule, placeholders, kind, None, str(index))
        except AimsError:  # GX reports the rule; it has no rows to quarantine by
            continue
        flag = f"__aims_q{index}"
        exprs.append(F.coalesce(mask, F.lit(False)).alias(flag))
        out.quarantining.append(flag)

    for column in sorted({str(rule.column) for _, rule in rules if rule.is_row_level}):
        flag = f"__aims_p{len(out.present)}"
        value = masks.normalized(F.col(f"`{column}`"), dtypes[column], placeholders)
        exprs.append(value.isNotNull().alias(flag))
        out.present[column] = flag
    out.frame = df.select(*exprs) if exprs else df.select(F.lit(1).alias("__aims_row"))
    return out
