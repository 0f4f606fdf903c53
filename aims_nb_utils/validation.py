"""Rules -> Great Expectations -> table verdicts, scores, the results file and metric history.

How GX is used, and why (measured on the 10.4M-row lake, see DESIGN.md "Facts measured"):

* One ephemeral Context per process with one pandas data source, one dataframe asset and one
  whole-dataframe batch definition, reused for every table: building them per table costs about
  0.4 s each. Every frame is validated through GX's own run path, a Checkpoint per table with
  one ValidationDefinition (:mod:`aims_nb_utils.gx_run`); the private GX internals validation
  needs for speed and memory live in :mod:`aims_nb_utils.gx_compat`, checked by a test.
* GX validates one-column frames: per column, its rules run in one suite over a frame holding
  only that column's *present* values (placeholders and nulls left out), prepared by
  :mod:`aims_nb_utils.checks` (canonical ids, numbers). Every row rule but not-null ignores
  nulls, and GX drops them itself by copying the column once per rule unless it holds none
  (pandas then hands back the frame as it is): giving it the present values once is the same
  domain, the same counts, ``mostly`` and partial lists, without a copy per rule (validate at
  scale 1.0: 33 -> 27 s). ``element_count`` is set back to the column's full length. Columns
  without a single null are the same length, so several of them share one frame (up to
  ``SHARED_FRAME_CELLS`` values): one Checkpoint run instead of one per column (every run
  re-reads the suite from the store to check it is fresh and stores its result). On a small
  table the columns with nulls share a frame too, put back at full length
  (``PADDED_FRAME_CELLS``): GX's copy per rule of so small a frame costs less than a run per
  column. Not-null rules run on a boolean "value present" column (null where the row has no value: n/8 bytes)
  in the table frame below. On a whole frame GX filters every column for each nullable column
  and hashes it: 4-5x slower and four times the memory. The pandas engine's batch fingerprint
  (a hash of the frame) is switched off: nothing reads it.
* GX is imported without rfc3987_syntax (:func:`gx_compat.without_iri_grammar`): 1 s of its 3 s.
* Every batch of the reused asset has the same id and the engine caches each resolved metric by
  id for the life of the process (each map rule's full-length condition series included): the
  cache and the batch are dropped after each validation (:func:`gx_compat.forget_batches`),
  which keeps a worker near the size of one column instead of growing by every column it has
  validated.
* Table-level rules (row count, column count, and any rule naming a column the file lacks) and
  the not-null rules run on a frame whose columns are zero-byte Arrow null arrays of the table's
  full length (or the presence columns above), so GX observes the real row and column counts
  without a copy of the data. The plain ``expect_column_to_exist`` rules of a table (a third of
  all rules) are answered together by one GX ``expect_table_columns_to_match_set`` (not exact):
  each passes when its column is among the columns GX observed; each still counts as one rule in
  the scores.
* GX 1.x rebuilds an expectation's ``configuration`` ~70 times per rule; that property is
  memoised for the duration of each of our validate calls (:func:`gx_compat.memoized_configuration`),
  which halves GX's bookkeeping and changes no result (the parity tests run with it).
* Referential rules (``expect_column_values_to_be_in_set`` with ``meta.reference``) need the
  parent's values, often millions: GX 1.x copies an expectation's kwargs through pydantic dozens
  of times per validation (a 100k-value set costs 20 s, a 2M one 131 s). They run as
  ``expect_column_values_to_be_in_reference_set``, a GX ColumnMapExpectation whose metric looks
  the parent's canonical values up by name in this process, so GX still computes the counts,
  ``mostly`` and the partial unexpected list, and no value set ever reaches a result.
* Columns are read one at a time with pyarrow (only the columns that have rules) and freed as we
  go; tables run in ``max_workers`` processes, biggest first, and a table large enough to hold
  up the run is split into column groups so both cores stay busy until the end.

Verdict of a table (:func:`aims_nb_utils.verdict.judge`): a failed gating rule (``meta.gate:
true``) fails it; so do more than ``settings.max_quarantine_percent`` of its rows breaking a
quarantining rule (counted with ingestion's masks, for the rules GX found rows breaking, see
:class:`aims_nb_utils.quarantine.RowsQuarantined`); then the users' existing semantics: for every
severity present, the share of its rules that passed must reach ``rule_file.threshold(severity)``,
and the quality score (share of all rules passed) must reach ``settings.dq_threshold``. A rule
that could not be evaluated (a column the file lacks, an unreadable parent) counts as failed. An empty Bronze table is SKIPPED,
an unreadable file or a missing rule file is ERROR; neither counts as passed.

Pass rate = PASSED / (tables - SKIPPED) * 100: an ERROR table is a table that did not pass, a
SKIPPED (empty) one has nothing to judge.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import checks, rule_kinds, state, verdict
from .engine import get_engine, is_arrow
from .errors import AimsError, BronzeReadError
from .io import atomic_write_text, list_bronze_tables, read_bronze, validate_table_name
from .quarantine import RowsQuarantined
from .rules import (
    DIMENSIONS,
    RULE_FILE_SUFFIX,
    SEVERITY_WEIGHTS,
    Expectation,
    RuleFile,
    load_rule_file,
    table_from_rule_path,
)
from .settings import Settings

RESULTS_FILE = "validation_results.json"
DATA_DOCS_FOLDER = "data_docs"  # under settings.paths.outputs
PARTIAL_LIST_MAX = 20
VALUE_TEXT_MAX = 200  # characters kept of one unexpected value in results
STATUSES = ("PASSED", "FAILED", "SKIPPED", "ERROR")
REFERENCE_EXPECTATION = "expect_column_values_to_be_in_reference_set"
# Row-level rules whose GX metric looks at nulls; every other one is computed by GX on the
# column's non-null values only (GX filters them out per rule, a full copy of the column each
# time: we hand it the filtered column once instead, see the module docstring).
_RULES_THAT_SEE_NULLS = frozenset(k for k, r in rule_kinds.KINDS.items() if r.sees_nulls)
# Null-free columns of a table share one GX frame up to this many values (rows x columns): one
# Checkpoint run for all of a small table's complete columns, a big column still alone.
SHARED_FRAME_CELLS = 1_000_000
# On a small table the columns with nulls share a frame too, at full length (nulls where the
# column has no value): GX copies that frame once per rule to drop a column's nulls, which costs
# less than a Checkpoint run per column while the frame holds at most this many values.
PADDED_FRAME_CELLS = 100_000
SPLIT_TASKS_PER_WORKER = 3  # a table costing more than 1/(workers*3) of the run is split

# GX classes: each rule kind's (rule_kinds.py), plus the probe answering column existence.
_GX_CLASS_NAMES = {
    **{k: r.gx_class for k, r in rule_kinds.KINDS.items()},
    "expect_table_columns_to_match_set": "ExpectTableColumnsToMatchSet",
}


class ValidationError(AimsError):
    """Validation cannot start (nothing to validate, a results file that cannot be read)."""


# --- result model -----------------------------------------------------------------------------


@dataclass
class RuleResult:
    """One rule's outcome as GX computed it on the full (or explicitly sampled) data."""

    rule_id: str
    expectation_type: str
    column: str | None
    severity: str
    dimension: str
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_list: list[Any] = field(default_factory=list)
    observed_value: Any = None
    error: str | None = None
    rule_index: int = 0

    def failure_entry(self) -> dict[str, Any]:
        """The bounded record a failed rule leaves in the results file (never a value set)."""
        entry: dict[str, Any] = {
            "expectation": self.expectation_type,
            "column": self.column,
            "severity": self.severity,
            "dimension": self.dimension,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "partial_unexpected_list": self.partial_unexpected_list,
        }
        if self.observed_value is not None:
            entry["observed_value"] = self.observed_value
        if self.error:
            entry["error"] = self.error
        return entry


@dataclass
class TableResult:
    table: str
    status: str
    overall_success: bool = False
    success_percentage: float | None = None
    weighted_score: float | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    threshold_failures: list[str] = field(default_factory=list)
    dimension_scores: dict[str, float | None] = field(default_factory=dict)
    row_count: int | None = None
    column_count: int | None = None
    seconds: float = 0.0
    error: str | None = None
    rule_results: list[RuleResult] = field(default_factory=list)
    reason: str | None = None
    file: str | None = None
    config: str | None = None
    column_null_percent: dict[str, float] = field(default_factory=dict)
    # Why a FAILED table failed, as records (verdict.judge): gates, quarantine share, shares.
    # threshold_failures holds the same reasons as text (the legacy field).
    failed_because: list[dict[str, Any]] = field(default_factory=list)
    # Rows breaking at least one quarantining rule of the rule file, and their share of rows.
    quarantine_rows: int | None = None
    quarantine_percent: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "PASSED"


@dataclass
class ValidationRun:
    run_id: str
    timestamp: str
    threshold: float
    tables: dict[str, TableResult]
    summary: dict[str, Any]
    results_path: Path | None
    seconds: float
    max_quarantine_percent: float | None = None
    data_docs: Path | None = None  # the GX Data Docs index.html, when asked for

    @property
    def has_errors(self) -> bool:
        return any(t.status == "ERROR" for t in self.tables.values())


# --- Great Expectations (one context per process) ------------------------------------------------

_REFERENCE_SETS: dict[str, pa.Array] = {}
_GX_RUNNER: tuple[int, _GxRunner] | None = None
_REFERENCE_CLASS: type | None = None


def _define_reference_expectation() -> type:
    """Register the GX metric + expectation for referential rules (once; forks inherit it)."""
    global _REFERENCE_CLASS
    if _REFERENCE_CLASS is not None:
        return _REFERENCE_CLASS
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import ColumnMapExpectation
    from great_expectations.expectations.metrics.map_metric_provider import (
        ColumnMapMetricProvider,
        column_condition_partial,
    )

    class ColumnValuesInReferenceSet(ColumnMapMetricProvider):
        """Membership of a column's values in a parent column's values held by this process."""

        condition_metric_name = "column_values.in_reference_set"
        condition_value_keys = ("reference_key",)

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column: pd.Series, reference_key: str, **kwargs: Any) -> pd.Series:
            values, allowed = checks.comparable(pa.array(column), _REFERENCE_SETS[reference_key])
            hit = checks.is_in(values, allowed).to_numpy(zero_copy_only=False)
            return pd.Series(hit, index=column.index)

    class ExpectColumnValuesToBeInReferenceSet(ColumnMapExpectation):
        """Every value of the column is a value of the parent column named by reference_key."""

        reference_key: str
        map_metric = "column_values.in_reference_set"
        success_keys = ("reference_key", "mostly")
        args_keys = ("column", "reference_key")

    _REFERENCE_CLASS = ExpectColumnValuesToBeInReferenceSet
    return _REFERENCE_CLASS


class _GxRunner:
    """This process's GX runner (:class:`gx_run.GxRunner`) plus the referential expectation."""

    def __init__(self, spark: bool = False, result_format: Any = "BASIC") -> None:
        from .gx_run import GxRunner

        self.runner = GxRunner(spark, result_format)
        self.gx = self.runner.gx
        self.reference_class = _define_reference_expectation()

    def expectation(self, rule: Expectation, index: int, kwargs: dict[str, Any]) -> Any:
        if rule.expectation_type == REFERENCE_EXPECTATION:
            cls = self.reference_class
        else:
            cls = getattr(self.gx.expectations, _GX_CLASS_NAMES[rule.expectation_type])
        return cls(**kwargs, meta={"rule_index": index})

    def validate(self, table: str, frame: pd.DataFrame, expectations: list[Any]) -> list[Any]:
        return self.runner.validate(table, frame, expectations)


def _gx() -> _GxRunner:
    global _GX_RUNNER
    if _GX_RUNNER is None or _GX_RUNNER[0] != os.getpid():
        _GX_RUNNER = (os.getpid(), _GxRunner())
    return _GX_RUNNER[1]


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What the parquet footer says: enough to plan without reading data."""

    table: str
    path: Path | None
    columns: tuple[str, ...]
    rows: int  # rows that will be validated (after sample_size)
    total_rows: int


def _layout(settings: Settings, table: str, sample_size: int | None) -> _Layout:
    path = settings.paths.bronze_file(table)
    if not path.is_file():
        raise BronzeReadError(
            table,
            path,
            "file not found",
            hint="export the table to Bronze, or delete its rule file if the table is gone",
        )
    try:
        meta = pq.read_metadata(path)
        names = tuple(meta.schema.to_arrow_schema().names)
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    total = int(meta.num_rows)
    rows = total if sample_size is None else min(total, sample_size)
    return _Layout(table, path, names, rows, total)


class _Reader:
    """Column-at-a-time access to one table (a parquet file, or an in-memory Arrow table)."""

    def __init__(
        self, settings: Settings, layout: _Layout, sample_size: int | None, data: pa.Table | None
    ):
        self.settings = settings
        self.layout = layout
        self.sample_size = sample_size
        self.data = data
        self._file = (
            None if data is not None or layout.path is None else pq.ParquetFile(layout.path)
        )

    def column(self, name: str) -> pa.ChunkedArray:
        if self.data is not None:
            return self.data.column(name)
        table = self.layout.table
        try:
            if self.sample_size is not None and self.sample_size < self.layout.total_rows:
                return read_bronze(
                    self.settings.paths.bronze, table, columns=[name], sample_size=self.sample_size
                ).column(0)
            return self._file.read(columns=[name], use_threads=False).column(0)
        except (OSError, pa.ArrowException) as exc:
            raise BronzeReadError(
                table, self.layout.path, f"column {name}: {str(exc).splitlines()[0]}"
            ) from None


# --- one table (or one column group of a table) --------------------------------------------------


@dataclass
class _Part:
    """The outcome of validating some columns of a table in one process."""

    table: str
    results: dict[int, RuleResult] = field(default_factory=dict)
    null_percent: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    # np.packbits of the rows breaking a quarantining rule of this part's rules (n/8 bytes to
    # send back from a worker); None when the part has no quarantining rule.
    quarantined: np.ndarray | None = None
    # the same as a count, from an engine that counts rows where they are (spark)
    quarantined_rows: int | None = None


def _clean_value(value: Any) -> Any:
    """JSON-safe, bounded: NaN -> None, numpy scalars -> Python, long text cut."""
    value = _number(value)
    if value is None:
        return None
    if isinstance(value, str) and len(value) > VALUE_TEXT_MAX:
        return value[:VALUE_TEXT_MAX] + "..."
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)[:VALUE_TEXT_MAX]


def _exception_message(evr: Any) -> str | None:
    info = evr.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "GX raised an exception")
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message") or "GX raised an exception")
    return None


def _number(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _result(rule: Expectation, index: int, success: bool, **outcome: Any) -> RuleResult:
    """A rule's result: who the rule is (from the rule file) and what became of it."""
    return RuleResult(
        rule_id=rule.rule_id,
        expectation_type=rule.expectation_type,
        column=rule.column,
        severity=rule.severity,
        dimension=rule.dimension,
        success=success,
        rule_index=index,
        **outcome,
    )


def _from_gx(rule: Expectation, index: int, evr: Any, file_name: str) -> RuleResult:
    result = evr.result or {}
    error = _exception_message(evr)
    if error and rule.column and "does not exist" in error:
        error = f"column {rule.column!r} is not in {file_name}"
    observed = result.get("observed_value")
    return _result(
        rule,
        index,
        bool(evr.success) and error is None,
        element_count=_number(result.get("element_count")),
        unexpected_count=_number(result.get("unexpected_count")),
        unexpected_percent=_number(result.get("unexpected_percent")),
        partial_unexpected_list=[
            _clean_value(v)
            for v in (result.get("partial_unexpected_list") or [])[:PARTIAL_LIST_MAX]
        ],
        observed_value=_clean_value(observed) if observed is not None else None,
        error=error,
    )


def _failed(rule: Expectation, index: int, error: str) -> RuleResult:
    return _result(rule, index, False, error=error)


def _gx_kwargs(
    settings: Settings,
    rule: Expectation,
    kind: str | None,
    target: pa.DataType | None = None,
    reference_key: str | None = None,
) -> tuple[Expectation, dict[str, Any]]:
    """The rule as GX should run it (value sets and bounds in the prepared column's type
    ``target``, see :func:`checks.prepared_type`; references resolved to a key: the parent's
    values read into this process, or ``reference_key`` when the engine resolves it itself)."""
    kwargs = dict(rule.kwargs)
    record = rule_kinds.KINDS.get(rule.expectation_type)
    problem = rule_kinds.bounds_problem(kwargs) if record and record.has_bounds else None
    if problem:  # rule files refuse it at load; a rule built in code is refused here
        raise checks.RuleEvaluationError(rule.rule_id, problem, hint="swap the bounds")
    if rule.expectation_type == "expect_column_values_to_be_in_set":
        if rule.reference is not None and "value_set" not in kwargs:
            parent, parent_column = rule.reference
            key = reference_key or f"{parent}.{parent_column}"
            if reference_key is None:
                _REFERENCE_SETS[key] = checks.reference_values(settings, parent, parent_column)
            kwargs["reference_key"] = key
            return Expectation(REFERENCE_EXPECTATION, kwargs, rule.meta), kwargs
        if "value_set" in kwargs:
            kwargs["value_set"] = checks.prepare_value_set(rule, kind, target)
    elif (
        rule.expectation_type == "expect_column_values_to_be_between"
        and target is not None
        and pa.types.is_timestamp(target)
    ):
        lo, hi = checks.range_bounds(rule, target)
        kwargs["min_value"], kwargs["max_value"] = lo, hi
    elif rule.expectation_type == checks.COMPOUND_UNIQUE:
        kwargs["ignore_row_if"] = checks.compound_ignore_rule(rule)
    return rule, kwargs


def _compound_frame(
    reader: _Reader, rule: Expectation, placeholders: Sequence[str]
) -> pd.DataFrame:
    """The key columns of a compound uniqueness rule at full length, each as keys compare."""
    return pd.DataFrame(
        {
            column: checks.to_series(
                checks.key_values(checks.normalize_nulls(reader.column(column), placeholders))
            )
            for column in rule.columns
        },
        copy=False,
    )


def _schema_frame(
    columns: Sequence[str], rows: int, presence: dict[str, pa.ChunkedArray] | None = None
) -> pd.DataFrame:
    """All the table's columns at full length: zero-byte Arrow null arrays, except the columns in
    ``presence`` (a boolean per row, null where the value is null: what not-null rules see)."""
    nulls = pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.nulls(rows)], type=pa.null()))
    presence = presence or {}
    frame = pd.DataFrame(
        {
            i: pd.Series(
                pd.arrays.ArrowExtensionArray(presence[name]) if name in presence else nulls,
                copy=False,
            )
            for i, name in enumerate(columns)
        },
        copy=False,
    )
    frame.columns = list(columns)
    return frame


def _presence(present_rows: pa.ChunkedArray | None, rows: int) -> pa.ChunkedArray:
    """True where a row holds a value, null where it does not: a column's nulls in n/8 bytes."""
    if present_rows is None:
        return pa.chunked_array([pa.array(np.ones(rows, dtype=bool))], type=pa.bool_())
    return pc.if_else(present_rows, True, pa.scalar(None, type=pa.bool_()))


def _run_gx(
    runner: _GxRunner,
    table: str,
    frame: pd.DataFrame,
    items: list[tuple[int, Expectation, Expectation, dict[str, Any]]],
    file_name: str,
    out: dict[int, RuleResult],
    exists: list[tuple[int, Expectation]] | None = None,
    element_count: int | None = None,
) -> None:
    """Validate ``items`` (index, rule, gx rule, kwargs) on ``frame``; bad kwargs fail one rule.

    ``exists`` are the expect_column_to_exist rules answered by the COLUMNS_PROBE item;
    ``element_count`` is the column's full length when ``frame`` holds only its non-null values."""
    built: list[Any] = []
    rules: dict[int, Expectation] = {}
    for index, rule, gx_rule, kwargs in items:
        try:
            built.append(runner.expectation(gx_rule, index, kwargs))
            rules[index] = rule
        except Exception as exc:  # pydantic rejects the kwargs: report it on this rule only
            message = str(exc).replace("\n", " ")
            out[index] = _failed(rule, index, f"invalid kwargs for GX: {message}")
    if not built:
        return
    for evr in runner.validate(table, frame, built):
        index = int(evr.expectation_config.meta["rule_index"])
        if index == COLUMNS_PROBE:
            _exists_results(evr, exists or [], file_name, out)
        else:
            out[index] = _from_gx(rules[index], index, evr, file_name)
            if element_count is not None and out[index].element_count is not None:
                out[index].element_count = element_count


class _SharedFrame:
    """Prepared columns of one table, each at the table's full length, run by GX together: one
    Checkpoint run for many columns (GX's fixed cost per run is paid once) while the frame stays
    under ``cells`` values (rows x columns)."""

    def __init__(
        self, runner: _GxRunner, table: str, file_name: str, out: dict[int, RuleResult], cells: int
    ) -> None:
        self.runner = runner
        self.table = table
        self.file_name = file_name
        self.out = out
        self.cells = cells
        self.columns: dict[str, pd.Series] = {}
        self.items: list[tuple[int, Expectation, Expectation, dict[str, Any]]] = []

    def fits(self, rows: int) -> bool:
        """Whether two columns of this length fit: one alone gains nothing from sharing."""
        return 2 * rows <= self.cells

    def add(
        self,
        column: str,
        values: pa.ChunkedArray,
        items: list[tuple[int, Expectation, Expectation, dict[str, Any]]],
    ) -> bool:
        """Queue the column (False, nothing queued, when it alone exceeds the frame's size)."""
        rows = len(values)
        if not self.fits(rows):
            return False
        if column in self.columns or (len(self.columns) + 1) * rows > self.cells:
            self.run()
        self.columns[column] = checks.to_series(values)
        self.items.extend(items)
        return True

    def run(self) -> None:
        if self.columns:
            frame = pd.DataFrame(self.columns, copy=False)
            _run_gx(self.runner, self.table, frame, self.items, self.file_name, self.out)
            self.columns, self.items = {}, []


def _at_rows(values: pa.ChunkedArray, present_rows: pa.ChunkedArray | None) -> pa.ChunkedArray:
    """A column's present values (prepared) put back at their rows, null at every other row:
    GX then leaves out exactly the rows the present values left out."""
    if present_rows is None:
        return values
    mask = pc.fill_null(present_rows, False).to_numpy(zero_copy_only=False)
    rank = np.cumsum(mask) - 1
    return values.take(pa.array(rank, mask=~mask))


COLUMNS_PROBE = -1  # rule_index of the one columns expectation that answers every exists rule


def _exists_probe(columns: list[str]) -> tuple[int, Expectation, Expectation, dict[str, Any]]:
    """One GX expect_table_columns_to_match_set (not exact) whose observed columns answer all the
    table's plain expect_column_to_exist rules: ~5 ms of GX bookkeeping per rule saved on about
    1,100 rules, the columns still observed by GX."""
    probe = Expectation(
        "expect_table_columns_to_match_set", {"column_set": columns, "exact_match": False}
    )
    return COLUMNS_PROBE, probe, probe, dict(probe.kwargs)


def _exists_results(
    evr: Any, exists: list[tuple[int, Expectation]], file_name: str, out: dict[int, RuleResult]
) -> None:
    error = _exception_message(evr)
    observed = set((evr.result or {}).get("observed_value") or [])
    for index, rule in exists:
        out[index] = _result(rule, index, error is None and rule.column in observed, error=error)


def _validate_part(
    settings: Settings,
    layout: _Layout,
    rule_file: RuleFile,
    columns: Sequence[str] | None,
    table_rules: bool,
    sample_size: int | None,
    data: pa.Table | None = None,
) -> _Part:
    """Validate the rules of ``columns`` (and the table-level rules when asked) with GX, and
    count the rows its quarantining rules would send to quarantine."""
    started = time.perf_counter()
    part = _Part(layout.table)
    try:
        _validate_part_inner(
            settings, layout, rule_file, columns, table_rules, sample_size, data, part
        )
        counter = _quarantine_counter(settings, layout, rule_file, columns, table_rules, part)
        if counter is not None:
            reader = _Reader(settings, layout, sample_size, data)
            part.quarantined = np.packbits(counter.finish(reader.column, layout.columns))
    except AimsError as exc:
        part.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one table's crash must not stop the other tables
        part.error = (
            f"table {layout.table}: validation failed with {type(exc).__name__}: {exc} -> "
            "report it with the rule file; the other tables were validated"
        )
    part.seconds = time.perf_counter() - started
    return part


def _quarantine_counter(
    settings: Settings,
    layout: _Layout,
    rule_file: RuleFile,
    columns: Sequence[str] | None,
    table_rules: bool,
    part: _Part,
) -> RowsQuarantined | None:
    """The count of rows quarantine would take, for this part's quarantining rules (None: none).

    A part's rules are its columns' row rules, and the multicolumn rules when it holds the table
    rules: the parts of a table hold disjoint rules, and :func:`_assemble` ORs their rows. Only
    the rules GX found rows breaking are evaluated: the masks are GX's unexpected rows
    (``checks.unexpected_mask``), so a rule GX counted no row against flags none, and on data
    that mostly conforms most rules cost nothing here. A rule GX could not count (an error)
    is evaluated, so the count never leans on a missing figure."""
    wanted = None if columns is None else set(columns)

    def may_flag(index: int) -> bool:
        result = part.results.get(index)
        return result is None or result.unexpected_count is None or result.unexpected_count > 0

    rules = [
        rule
        for index, rule in enumerate(rule_file.expectations)
        if rule.quarantines_rows
        and (
            (rule.is_row_level and (wanted is None or rule.column in wanted))
            or (rule.is_multicolumn and table_rules)
        )
        and may_flag(index)
    ]
    if not rules:
        return None
    references: dict[str, pa.Array] = {}
    for rule in rules:
        if rule.reference is not None and "value_set" not in rule.kwargs:
            try:
                references[rule.rule_id] = checks.reference_values(settings, *rule.reference)
            except AimsError:  # the rule fails in GX with this error; no rows to split by it
                continue
    return RowsQuarantined(
        layout.table, rules, layout.rows, list(settings.null_placeholders), references
    )


def _validate_part_inner(
    settings: Settings,
    layout: _Layout,
    rule_file: RuleFile,
    columns: Sequence[str] | None,
    table_rules: bool,
    sample_size: int | None,
    data: pa.Table | None,
    part: _Part,
) -> None:
    runner = _gx()
    placeholders = list(settings.null_placeholders)
    file_name = layout.path.name if layout.path is not None else f"{layout.table} (in memory)"
    present = set(layout.columns)
    wanted = None if columns is None else set(columns)

    by_column: dict[str, list[tuple[int, Expectation]]] = defaultdict(list)
    table_items: list[tuple[int, Expectation, Expectation, dict[str, Any]]] = []
    exists: list[tuple[int, Expectation]] = []
    compound: list[tuple[int, Expectation]] = []
    for index, rule in enumerate(rule_file.expectations):
        if rule.is_row_level and rule.column in present:
            if wanted is None or rule.column in wanted:
                by_column[rule.column].append((index, rule))
        elif not table_rules:
            continue
        elif rule.expectation_type == "expect_column_to_exist" and set(rule.kwargs) == {"column"}:
            exists.append((index, rule))
        elif rule.is_multicolumn:
            missing = [c for c in rule.columns if c not in present]
            if missing:
                part.results[index] = _failed(
                    rule, index, f"column(s) {', '.join(missing)} not in {file_name}"
                )
            else:
                compound.append((index, rule))
        else:
            try:
                gx_rule, kwargs = _gx_kwargs(settings, rule, None)
            except AimsError as exc:
                part.results[index] = _failed(rule, index, str(exc))
                continue
            table_items.append((index, rule, gx_rule, kwargs))
    if exists:
        table_items.append(_exists_probe([str(rule.column) for _, rule in exists]))

    presence: dict[str, pa.ChunkedArray] = {}
    reader = _Reader(settings, layout, sample_size, data)
    # Prepared columns waiting for one GX run together: null-free ones (GX copies nothing), and
    # on a small table the others at full length (GX then copies the small frame per rule).
    complete = _SharedFrame(runner, layout.table, file_name, part.results, SHARED_FRAME_CELLS)
    padded = _SharedFrame(runner, layout.table, file_name, part.results, PADDED_FRAME_CELLS)

    for column in [c for c in layout.columns if c in by_column]:
        raw = reader.column(column)
        rows = len(raw)
        text, present_rows = checks.present_values(raw, placeholders)
        del raw
        part.null_percent[column] = 100.0 * (rows - len(text)) / rows if rows else 0.0
        groups: dict[str, list[tuple[int, Expectation, Expectation, dict[str, Any]]]] = defaultdict(
            list
        )
        for index, rule in by_column[column]:
            kind = checks.column_kind(layout.table, column, rule)
            form = checks.preparation(rule, kind, text.type)
            try:
                target = checks.prepared_type(text.type, form)
                gx_rule, kwargs = _gx_kwargs(settings, rule, kind, target)
            except AimsError as exc:
                part.results[index] = _failed(rule, index, str(exc))
                continue
            if rule.expectation_type in _RULES_THAT_SEE_NULLS:
                presence[column] = _presence(present_rows, rows)
                table_items.append((index, rule, gx_rule, kwargs))
            else:
                groups[form].append((index, rule, gx_rule, kwargs))
        for form, items in groups.items():
            prepared = checks.prepare_form(text, form)
            if present_rows is None and not prepared.null_count:  # not a value left out
                if complete.add(column, prepared, items):
                    continue
            elif padded.fits(rows):
                padded.add(column, _at_rows(prepared, present_rows), items)
                continue
            if prepared.null_count:  # text no number can be read from
                prepared = prepared.drop_null()
            frame = pd.DataFrame({column: checks.to_series(prepared)}, copy=False)
            _run_gx(runner, layout.table, frame, items, file_name, part.results, element_count=rows)
            del frame, prepared
        del text, present_rows
    complete.run()
    padded.run()

    if table_items:
        frame = _schema_frame(layout.columns, layout.rows, presence)
        _run_gx(runner, layout.table, frame, table_items, file_name, part.results, exists)
    for index, rule in compound:
        try:
            gx_rule, kwargs = _gx_kwargs(settings, rule, None)
            frame = _compound_frame(reader, rule, placeholders)
        except AimsError as exc:
            part.results[index] = _failed(rule, index, str(exc))
            continue
        _run_gx(
            runner, layout.table, frame, [(index, rule, gx_rule, kwargs)], file_name, part.results
        )
        del frame


# --- verdict ------------------------------------------------------------------------------------


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _judge(
    result: TableResult,
    rule_results: list[RuleResult],
    rule_file: RuleFile,
    dq_threshold: float,
    max_quarantine_percent: float = 100.0,
) -> None:
    """Fill scores, statistics, failures and the verdict of a validated table (verdict.judge:
    gates, share of rows quarantined, then the users' share thresholds)."""
    total = len(rule_results)
    passed = sum(r.success for r in rule_results)
    result.rule_results = rule_results
    result.overall_success = passed == total
    score = _pct(passed, total)
    result.success_percentage = 100.0 if score is None else score
    weights = [SEVERITY_WEIGHTS.get(r.severity, 1.0) for r in rule_results]
    weighted = _pct(
        sum(w for w, r in zip(weights, rule_results, strict=True) if r.success), sum(weights)
    )
    result.weighted_score = 100.0 if weighted is None else weighted
    result.statistics = {
        "evaluated_expectations": total,
        "successful_expectations": passed,
        "unsuccessful_expectations": total - passed,
        "success_percent": result.success_percentage,
    }
    result.dimension_scores = {}
    for dimension in DIMENSIONS:
        members = [r for r in rule_results if r.dimension == dimension]
        result.dimension_scores[dimension] = _pct(sum(r.success for r in members), len(members))
    result.failures = [r.failure_entry() for r in rule_results if not r.success]
    judgement = verdict.judge(
        rule_results,
        rule_file,
        dq_threshold,
        result.success_percentage,
        result.quarantine_rows,
        result.row_count,
        max_quarantine_percent,
    )
    result.failed_because = judgement.failed_because
    result.threshold_failures = judgement.reasons
    result.status = judgement.status


def _display(settings: Settings, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(settings.paths.home.resolve()))
    except ValueError:
        return str(path)


def _assemble(
    settings: Settings,
    layout: _Layout,
    rule_file: RuleFile,
    parts: Iterable[_Part],
    dq_threshold: float,
) -> TableResult:
    parts = list(parts)
    result = TableResult(
        table=layout.table,
        status="ERROR",
        row_count=layout.rows,
        column_count=len(layout.columns),
        file=layout.path.name if layout.path is not None else None,
        config=_display(settings, rule_file.path),
    )
    result.seconds = round(sum(p.seconds for p in parts), 3)
    errors = [p.error for p in parts if p.error]
    if errors:
        result.error = result.reason = errors[0]
        return result
    merged: dict[int, RuleResult] = {}
    quarantined: np.ndarray | None = None
    for part in parts:
        merged.update(part.results)
        result.column_null_percent.update(part.null_percent)
        if part.quarantined is not None:
            quarantined = (
                part.quarantined if quarantined is None else quarantined | part.quarantined
            )
    missing = [i for i in range(len(rule_file.expectations)) if i not in merged]
    for index in missing:  # cannot happen unless a part lost results; never pass silently
        merged[index] = _failed(rule_file.expectations[index], index, "rule was not evaluated")
    # packbits pads the last byte with zeros: the count of set bits is the count of rows
    result.quarantine_rows = (
        0 if quarantined is None else int(np.unpackbits(quarantined).sum(dtype=np.int64))
    ) + sum(p.quarantined_rows or 0 for p in parts)
    result.quarantine_percent = _pct(result.quarantine_rows, layout.rows)
    _judge(
        result,
        [merged[i] for i in sorted(merged)],
        rule_file,
        dq_threshold,
        float(settings.max_quarantine_percent),
    )
    return result


def _skipped(settings: Settings, layout: _Layout, rule_file: RuleFile) -> TableResult:
    reason = f"{layout.path.name if layout.path else layout.table} has no rows: nothing to validate"
    if rule_file.is_empty_table:
        reason += " (its rule file was profiled from an empty table too)"
    return TableResult(
        table=layout.table,
        status="SKIPPED",
        row_count=0,
        column_count=len(layout.columns),
        reason=reason,
        file=layout.path.name if layout.path else None,
        config=_display(settings, rule_file.path),
    )


def _error(
    table: str, message: str, settings: Settings, rule_path: Path | None = None
) -> TableResult:
    return TableResult(
        table=table,
        status="ERROR",
        error=message,
        reason=message,
        file=f"{table}.parquet",
        config=_display(settings, rule_path),
    )


def validate_table(
    settings: Settings,
    table: str,
    rule_file: RuleFile | None = None,
    data: pa.Table | None = None,
    run_id: str | None = None,
) -> TableResult:
    """Validate one table in this process (no results file, no state rows: see validate_tables).

    ``rule_file`` defaults to the table's file under ``settings.paths.rules``; ``data`` validates
    an Arrow table instead of the Bronze file (all its rows). ``settings.sample_size`` limits
    the rows read from Bronze only when set. Unreadable inputs return an ERROR result.
    """
    del run_id  # accepted for symmetry with validate_tables; a single table records nothing
    validate_table_name(table)
    started = time.perf_counter()
    try:
        if rule_file is None:
            rule_file = load_rule_file(settings.paths.rule_file(table))
        if data is not None:
            layout = _Layout(table, None, tuple(data.column_names), data.num_rows, data.num_rows)
        else:
            layout = _layout(settings, table, settings.sample_size)
    except AimsError as exc:
        return _error(table, str(exc), settings, rule_file.path if rule_file else None)
    if layout.rows == 0:
        return _skipped(settings, layout, rule_file)
    part = _validate_part(settings, layout, rule_file, None, True, settings.sample_size, data)
    result = _assemble(settings, layout, rule_file, [part], settings.dq_threshold)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


# --- many tables --------------------------------------------------------------------------------


@dataclass
class _Task:
    layout: _Layout
    rule_file: RuleFile
    columns: tuple[str, ...] | None
    table_rules: bool
    cost: float


def _column_costs(layout: _Layout, rule_file: RuleFile) -> dict[str, int]:
    present = set(layout.columns)
    costs: dict[str, int] = defaultdict(int)
    for rule in rule_file.column_rules():
        if rule.column in present:
            costs[rule.column] += 1
    return costs


def _plan(jobs: list[tuple[_Layout, RuleFile]], workers: int) -> list[_Task]:
    """Tasks biggest first; a table costing more than its share is split into column groups."""
    overhead = 2_000  # rows-equivalent of GX's fixed bookkeeping per rule (a few ms)
    costed = []
    for layout, rule_file in jobs:
        col_costs = _column_costs(layout, rule_file)
        cost = sum(n * (layout.rows + overhead) for n in col_costs.values()) + overhead * 4
        costed.append((layout, rule_file, col_costs, cost))
    total = sum(c[3] for c in costed) or 1.0
    limit = total / (workers * SPLIT_TASKS_PER_WORKER) if workers > 1 else math.inf
    tasks: list[_Task] = []
    for layout, rule_file, col_costs, cost in costed:
        groups = min(len(col_costs), math.ceil(cost / limit)) if cost > limit else 1
        if groups <= 1:
            tasks.append(_Task(layout, rule_file, None, True, cost))
            continue
        bins: list[list[str]] = [[] for _ in range(groups)]
        loads = [0.0] * groups
        for column, n in sorted(col_costs.items(), key=lambda kv: -kv[1]):
            i = loads.index(min(loads))
            bins[i].append(column)
            loads[i] += n * (layout.rows + overhead)
        for i, columns in enumerate(bins):
            tasks.append(_Task(layout, rule_file, tuple(columns), i == 0, loads[i]))
    return sorted(tasks, key=lambda t: -t.cost)


def _run_task(settings: Settings, task: _Task, sample_size: int | None) -> _Part:
    return _validate_part(
        settings, task.layout, task.rule_file, task.columns, task.table_rules, sample_size
    )


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork shares the already imported GX (3-4 s to import) with the workers.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _execute(
    settings: Settings,
    tasks: list[_Task],
    workers: int,
    sample_size: int | None,
    on_done: Callable[[_Task, _Part], None],
) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(task, _run_task(settings, task, sample_size))
        return
    _gx()  # import GX once in the parent; forked workers inherit it
    from .lake_lock import pool_options

    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=_pool_context(), **pool_options()
    ) as pool:
        pending: dict[Future[_Part], _Task] = {
            pool.submit(_run_task, settings, task, sample_size): task for task in tasks
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                try:
                    part = future.result()
                except Exception as exc:  # a worker died (out of memory, killed): name the table
                    part = _Part(task.layout.table, error=f"validation worker failed: {exc!r}")
                on_done(task, part)


def _discover(
    settings: Settings, rules_dir: Path, tables: list[str] | None
) -> tuple[list[str], dict[str, Path]]:
    rule_paths = {
        table_from_rule_path(p): p for p in sorted(rules_dir.glob(f"*{RULE_FILE_SUFFIX}"))
    }
    if tables is not None:
        return [validate_table_name(t) for t in dict.fromkeys(tables)], rule_paths
    names = sorted(set(rule_paths) | set(list_bronze_tables(settings.paths.bronze)))
    if not names:
        raise ValidationError(
            f"nothing to validate: no rule files in {rules_dir} and no Bronze files in "
            f"{settings.paths.bronze}",
            hint="run `python -m aims_nb_utils init` then `python -m aims_nb_utils profile`",
        )
    return names, rule_paths


def summarize(tables: dict[str, TableResult]) -> dict[str, Any]:
    """Counts per status, pass rate and average scores of a run (see the module docstring)."""
    counts = {s: sum(t.status == s for t in tables.values()) for s in STATUSES}
    judged = [t for t in tables.values() if t.status in ("PASSED", "FAILED")]
    considered = len(tables) - counts["SKIPPED"]
    return {
        "total": len(tables),
        "passed": counts["PASSED"],
        "failed": counts["FAILED"],
        "skipped": counts["SKIPPED"],
        "errors": counts["ERROR"],
        "pass_rate": _pct(counts["PASSED"], considered),
        "avg_quality_score": (
            sum(t.success_percentage for t in judged) / len(judged) if judged else None
        ),
        "avg_weighted_score": (
            sum(t.weighted_score for t in judged) / len(judged) if judged else None
        ),
    }


def validate_tables(
    settings: Settings,
    tables: list[str] | None = None,
    rules_dir: Path | None = None,
    sample_size: int | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    run_id: str | None = None,
    write: bool = True,
    data_docs: bool | None = None,
) -> ValidationRun:
    """Validate every table that has a rule file or a Bronze file (or ``tables``), all rows.

    Writes ``settings.paths.results / validation_results.json`` and appends table, rule and
    column metrics to the state DB unless ``write=False``. ``sample_size`` (or
    ``settings.sample_size``) limits rows per table only when given. ``data_docs`` (or
    ``settings.data_docs``) also writes GX Data Docs of the validated tables to
    ``outputs/data_docs`` (:func:`write_data_docs`).
    Runs on the engine the settings name (``aims_nb_utils.engine``); this body is the arrow
    engine's.
    """
    if not is_arrow(settings):
        return get_engine(settings).validate_tables(
            settings,
            tables=tables,
            rules_dir=rules_dir,
            sample_size=sample_size,
            max_workers=max_workers,
            progress=progress,
            run_id=run_id,
            write=write,
            data_docs=data_docs,
        )
    started = time.perf_counter()
    run_id = run_id or state.new_run_id()
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rules_dir = Path(rules_dir) if rules_dir is not None else settings.paths.rules
    sample_size = settings.sample_size if sample_size is None else sample_size
    workers = int(max_workers or settings.max_workers or 1)
    dq_threshold = float(settings.dq_threshold)
    names, rule_paths = _discover(settings, rules_dir, tables)

    results, jobs = _prepare_tables(settings, names, rule_paths, rules_dir, sample_size)

    tasks = _plan(jobs, workers)
    parts: dict[str, list[_Part]] = defaultdict(list)
    remaining = defaultdict(int)
    for task in tasks:
        remaining[task.layout.table] += 1
    by_table = {layout.table: (layout, rule_file) for layout, rule_file in jobs}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="validate-dq", unit="table")
        bar.update(len(names) - len(jobs))

    def on_done(task: _Task, part: _Part) -> None:
        table = task.layout.table
        parts[table].append(part)
        remaining[table] -= 1
        if remaining[table] == 0:
            layout, rule_file = by_table[table]
            results[table] = _assemble(settings, layout, rule_file, parts.pop(table), dq_threshold)
            if bar is not None:
                bar.set_postfix_str(f"{table} {results[table].status}", refresh=False)
                bar.update(1)

    try:
        _execute(settings, tasks, workers, sample_size, on_done)
    finally:
        if bar is not None:
            bar.close()

    rule_files = {layout.table: rule_file for layout, rule_file in jobs}
    return finish_run(
        settings, run_id, timestamp, started, results, names, rule_files, write, data_docs
    )


def _prepare_tables(
    settings: Settings,
    names: Sequence[str],
    rule_paths: dict[str, Path],
    rules_dir: Path,
    sample_size: int | None,
) -> tuple[dict[str, TableResult], list[tuple[_Layout, RuleFile]]]:
    """(results of the tables that need no validation: no rule file, unreadable, empty; the
    (layout, rule file) of the others), the same for every engine."""
    results: dict[str, TableResult] = {}
    jobs: list[tuple[_Layout, RuleFile]] = []
    for table in names:
        rule_path = rule_paths.get(table, rules_dir / f"{table}{RULE_FILE_SUFFIX}")
        if table not in rule_paths:
            bronze = settings.paths.bronze_file(table)
            message = (
                f"table {table}: no rule file {rule_path} -> run `python -m aims_nb_utils "
                f"profile --tables {table}` to generate it"
            )
            if bronze.is_file():
                try:  # an unreadable file is the first thing to fix (profiling failed on it)
                    _layout(settings, table, sample_size)
                except AimsError as exc:
                    message = f"{exc}; then profile it: it has no rule file yet"
            else:
                message = message.replace(" ->", f" and no Bronze file {bronze} ->", 1)
            results[table] = _error(table, message, settings)
            continue
        try:
            rule_file = load_rule_file(rule_path)
            layout = _layout(settings, table, sample_size)
        except AimsError as exc:
            results[table] = _error(table, str(exc), settings, rule_path)
            continue
        if layout.rows == 0:
            results[table] = _skipped(settings, layout, rule_file)
        else:
            jobs.append((layout, rule_file))
    return results, jobs


def finish_run(
    settings: Settings,
    run_id: str,
    timestamp: str,
    started: float,
    results: dict[str, TableResult],
    names: Sequence[str],
    rule_files: dict[str, RuleFile],
    write: bool,
    data_docs: bool | None,
) -> ValidationRun:
    """The run of every engine from its table results: summary, results file, metric history
    and (``data_docs``, else ``settings.data_docs``) GX Data Docs."""
    ordered = {t: results[t] for t in names}
    run = ValidationRun(
        run_id=run_id,
        timestamp=timestamp,
        threshold=float(settings.dq_threshold),
        tables=ordered,
        summary=summarize(ordered),
        results_path=None,
        seconds=0.0,
        max_quarantine_percent=float(settings.max_quarantine_percent),
    )
    run.seconds = round(time.perf_counter() - started, 3)
    if write:
        run.results_path = write_results(settings, run)
        record_metrics(settings, run)
    if settings.data_docs if data_docs is None else data_docs:
        run.data_docs = write_data_docs(settings, run, rule_files)
    return run


def write_data_docs(
    settings: Settings, run: ValidationRun, rule_files: dict[str, RuleFile]
) -> Path:
    """GX Data Docs of the run's judged tables (PASSED/FAILED; an ERROR or SKIPPED table has no
    rule results) in ``outputs/data_docs``, replaced each time; the path of its index.html."""
    from .gx_run import build_data_docs

    judged = {
        table: (rule_files[table], result.rule_results, result.statistics)
        for table, result in run.tables.items()
        if result.status in ("PASSED", "FAILED") and table in rule_files
    }
    return build_data_docs(
        settings.paths.outputs / DATA_DOCS_FOLDER,
        judged,
        run.run_id,
        datetime.fromisoformat(run.timestamp),
    )


# --- outputs ------------------------------------------------------------------------------------


def results_document(run: ValidationRun) -> dict[str, Any]:
    """The results file's content: the legacy shape plus scores, dimensions and statistics."""
    files: dict[str, Any] = {}
    for table, result in run.tables.items():
        files[table] = {
            "file": result.file,
            "config": result.config,
            "status": result.status,
            "overall_success": result.overall_success,
            "success_percentage": result.success_percentage,
            "score": result.success_percentage,
            "weighted_score": result.weighted_score,
            "statistics": result.statistics,
            "failures": result.failures,
            "threshold_failures": result.threshold_failures,
            "failed_because": result.failed_because,
            "quarantine_rows": result.quarantine_rows,
            "quarantine_percent": result.quarantine_percent,
            "max_quarantine_percent": run.max_quarantine_percent,
            "dimension_scores": result.dimension_scores,
            "row_count": result.row_count,
            "seconds": result.seconds,
            "reason": result.reason,
            "run_id": run.run_id,
            "timestamp": run.timestamp,
        }
    return {
        "timestamp": run.timestamp,
        "run_id": run.run_id,
        "threshold": run.threshold,
        "max_quarantine_percent": run.max_quarantine_percent,
        "summary": run.summary,
        "validated_in_run": list(files),
        "run_summary": run.summary,
        "files": files,
    }


def _summary_of(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`summarize` over results-file entries (the merged verdicts of several runs)."""
    statuses = [str(e.get("status")) for e in files.values()]
    counts = {s: statuses.count(s) for s in STATUSES}
    judged = [e for e in files.values() if e.get("status") in ("PASSED", "FAILED")]

    def mean(key: str) -> float | None:
        values = [e[key] for e in judged if isinstance(e.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    return {
        "total": len(files),
        "passed": counts["PASSED"],
        "failed": counts["FAILED"],
        "skipped": counts["SKIPPED"],
        "errors": counts["ERROR"],
        "pass_rate": _pct(counts["PASSED"], len(files) - counts["SKIPPED"]),
        "avg_quality_score": mean("success_percentage"),
        "avg_weighted_score": mean("weighted_score"),
    }


def _previous_verdicts(settings: Settings, target: Path) -> dict[str, dict[str, Any]]:
    """The verdicts of the results file there now, by table (legacy list shape too); {} when
    there is none or it cannot be read (it is then rewritten from this run)."""
    try:
        document = load_results(target)
    except ValidationError:
        return {}
    files = document["files"]
    entries = files.items() if isinstance(files, dict) else ((None, e) for e in files)
    out: dict[str, dict[str, Any]] = {}
    for key, entry in entries:
        if not isinstance(entry, dict):
            continue
        name = key or Path(str(entry.get("file", ""))).stem
        try:
            validate_table_name(name)
        except AimsError:
            continue
        entry = dict(entry)
        entry.setdefault("run_id", document.get("run_id"))
        entry.setdefault("timestamp", document.get("timestamp"))
        out[name] = entry
    return out


def write_results(settings: Settings, run: ValidationRun) -> Path:
    """Write the lake's current verdicts: this run's tables, merged into the previous file's.

    A run over some tables (``--tables``, an incremental ingest) replaces only their verdicts;
    every other table keeps its own, with the run id and time it was validated in. A table that
    has neither a rule file nor a Bronze file any more is dropped. ``summary`` is over all the
    verdicts in the file; ``validated_in_run`` and ``run_summary`` are this run's. The merge runs
    under a lock of the results file, so two runs finishing together both keep their verdicts.
    """
    from filelock import FileLock, Timeout

    folder = settings.paths.results
    target = folder / RESULTS_FILE
    document = results_document(run)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(folder / f".{RESULTS_FILE}.lock"), timeout=120):
            merged = {
                table: entry
                for table, entry in _previous_verdicts(settings, target).items()
                if table not in document["files"]
                and (
                    settings.paths.rule_file(table).is_file()
                    or settings.paths.bronze_file(table).is_file()
                )
            }
            merged.update(document["files"])
            document["files"] = dict(sorted(merged.items()))
            document["summary"] = _summary_of(document["files"])
            text = json.dumps(document, indent=2, allow_nan=False) + "\n"
            atomic_write_text(target, text)
    except Timeout:
        raise ValidationError(
            f"the results file {target} stayed locked by another run for 120 s",
            hint="wait for the other validation to finish and run this one again",
        ) from None
    return target


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by :func:`validate_tables` (or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ValidationError(
            f"no validation results at {path}", hint="run `python -m aims_nb_utils validate-dq`"
        )
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"validation results {path} are not valid JSON: {exc}",
            hint="run `python -m aims_nb_utils validate-dq` to rewrite them",
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("files"), (dict, list)):
        raise ValidationError(f"validation results {path} have no 'files' section")
    return document


def record_metrics(settings: Settings, run: ValidationRun) -> None:
    """Append the run's table, rule and column metrics to the state DB (trends across runs)."""
    run_at = state.utc_now()
    table_rows, rule_rows, column_rows = [], [], []
    for table, result in run.tables.items():
        seen: dict[str, int] = defaultdict(int)
        dims = result.dimension_scores
        table_rows.append(
            {
                "run_id": run.run_id,
                "run_at": run_at,
                "table_name": table,
                "status": result.status,
                "row_count": result.row_count,
                "column_count": result.column_count,
                "rules_total": result.statistics.get("evaluated_expectations"),
                "rules_passed": result.statistics.get("successful_expectations"),
                "quality_score": result.success_percentage,
                "weighted_score": result.weighted_score,
                **{d: dims.get(d) for d in DIMENSIONS},
                "seconds": result.seconds,
            }
        )
        for rule in result.rule_results:
            seen[rule.rule_id] += 1  # the same rule written twice must not overwrite its twin
            rule_id = (
                rule.rule_id if seen[rule.rule_id] == 1 else f"{rule.rule_id}#{seen[rule.rule_id]}"
            )
            rule_rows.append(
                {
                    "run_id": run.run_id,
                    "run_at": run_at,
                    "table_name": table,
                    "rule_id": rule_id,
                    "expectation_type": rule.expectation_type,
                    "column_name": rule.column,
                    "severity": rule.severity,
                    "dimension": rule.dimension,
                    "success": int(rule.success),
                    "element_count": rule.element_count,
                    "unexpected_count": rule.unexpected_count,
                    "unexpected_percent": rule.unexpected_percent,
                }
            )
        for column, null_percent in result.column_null_percent.items():
            column_rows.append(
                {
                    "run_id": run.run_id,
                    "run_at": run_at,
                    "table_name": table,
                    "column_name": column,
                    "null_percent": null_percent,
                    "distinct_count": None,
                }
            )
    db = settings.paths.state_db
    state.record_table_metrics(db, table_rows)
    state.record_rule_metrics(db, rule_rows)
    state.record_column_metrics(db, column_rows)
