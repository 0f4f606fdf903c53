"""Row-level semantics of the rules, shared by validation (what GX sees) and quarantine (masks).

Great Expectations gives a table its verdict; ingestion needs to know *which rows* break a rule.
Both must agree on what a rule means, so this module owns the two halves of that meaning:

* :func:`prepare_column` builds exactly the column GX validates for a rule (see
  docs/architecture.md, "How a column is prepared"): placeholders become null; for uniqueness,
  referential rules and id/fk columns integer-looking text is canonicalised ('13000015.0' ->
  '13000015'); for ``expect_column_values_to_be_between`` values are read as numbers
  (unparseable text -> null: the type-conformance rule reports those).
* :func:`unexpected_mask` computes the same rule independently with pyarrow, row by row, with
  GX's conventions: a null is never unexpected except for the not-null rule; a uniqueness rule
  flags *every* occurrence of a duplicated non-null value; in-set, regex, length and range rules
  ignore nulls. ``tests/test_checks.py`` and ``tests/test_validation.py`` prove the parity with
  GX's ``unexpected_count`` on the defective sample lake.

Nothing here imports Great Expectations: quarantine and profiling tests stay fast.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import AimsError, BronzeReadError
from .io import validate_table_name
from .rules import TYPE_PATTERNS, Expectation
from .spec import get_table

if TYPE_CHECKING:
    from .settings import Settings

# Column preparations: plain text, canonical ids, numbers.
TEXT = "text"
CANONICAL = "canonical"
NUMBER = "number"

KEY_KINDS = ("id", "fk")
_INTEGER_TEXT = r"^(-?[0-9]+)\.0+$"
_DECIMAL_TEXT = TYPE_PATTERNS["decimal"]

ArrowValues = pa.ChunkedArray | pa.Array


class RuleEvaluationError(AimsError):
    """A rule cannot be evaluated row by row (missing column, table-level rule, bad kwargs)."""

    def __init__(self, rule_id: str, problem: str, hint: str | None = None) -> None:
        self.rule_id = rule_id
        self.problem = problem
        super().__init__(f"rule {rule_id}: {problem}", hint=hint)


# --- column preparation -------------------------------------------------------------------------


def _chunked(values: ArrowValues) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _is_text_type(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def as_text(values: ArrowValues) -> pa.ChunkedArray:
    """Bronze is text; a typed or all-null column (another export) is compared in its text form."""
    values = _chunked(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    return pc.cast(values, pa.string())


def normalize_nulls(values: ArrowValues, placeholders: Sequence[str]) -> pa.ChunkedArray:
    """Text column with every placeholder ('None', 'NaT', ' ', ...) turned into a real null."""
    values = as_text(values)
    if not placeholders or len(values) == 0:
        return values
    hits = pc.is_in(values, value_set=pa.array(list(placeholders), type=values.type))
    if not pc.any(hits).as_py():
        return values
    return pc.if_else(hits, pa.scalar(None, type=values.type), values)


def present_values(
    values: ArrowValues, placeholders: Sequence[str]
) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """The column's values that are neither null nor a placeholder, in row order, and the row
    mask of those (None when every row holds a value).

    What GX's row rules other than not-null look at: GX drops the nulls itself, one copy of the
    column per rule, unless the column it is given holds none."""
    values = as_text(values)
    present = pc.is_valid(values)
    if placeholders and len(values):
        placeholder = pc.is_in(values, value_set=pa.array(list(placeholders), type=values.type))
        present = pc.and_not(present, placeholder)
    if pc.all(present).as_py() is not False:
        return values, None
    return values.filter(present), present


def canonical_ids(values: ArrowValues) -> pa.ChunkedArray:
    """'13000015.0' -> '13000015' for integer-looking text; everything else unchanged.

    Exports write some ID columns through floats; the same key must compare equal whichever way
    it was written, for uniqueness and for references alike.
    """
    values = as_text(values)
    if len(values) == 0:
        return values
    if not pc.any(pc.ends_with(values, ".0")).as_py():
        # '5.00' ends in '0' but not in '.0': look at the values ending in '0' ('10', '20', ...)
        ends_with_zero = pc.ends_with(values, "0")
        if not pc.any(ends_with_zero).as_py():
            return values
        trimmed = pc.utf8_rtrim(values.filter(ends_with_zero), "0")
        if not pc.any(pc.ends_with(trimmed, ".")).as_py():
            return values
    return pc.replace_substring_regex(values, pattern=_INTEGER_TEXT, replacement=r"\1")


def to_numbers(values: ArrowValues) -> pa.ChunkedArray:
    """float64 of numeric text; when some text does not parse, only the values matching
    ``rules.TYPE_PATTERNS['decimal']`` are read and the rest become null (the type-conformance
    rule reports them)."""
    values = _chunked(values)
    if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
        return pc.cast(values, pa.float64())
    values = as_text(values)
    try:
        return pc.cast(values, pa.float64())  # the common case: every value parses, no regex pass
    except pa.ArrowInvalid:
        pass
    numeric = pc.match_substring_regex(values, _DECIMAL_TEXT)
    kept = pc.if_else(numeric, values, pa.scalar(None, type=values.type))
    try:
        return pc.cast(kept, pa.float64())
    except pa.ArrowInvalid:  # a form the pattern accepts but Arrow's parser does not ('5.')
        return pa.chunked_array(
            [pa.array([None if v is None else float(v) for v in kept.to_pylist()], pa.float64())]
        )


def column_kind(
    table: str | None, column: str | None, expectation: Expectation | None = None
) -> str | None:
    """Kind of a column (id, fk, date, ...): ``meta.kind`` of the rule, else the published spec.

    Validation and quarantine must pass the same kind to :func:`prepare_column` /
    :func:`unexpected_mask`, or id canonicalisation (and so their counts) would differ.
    """
    if expectation is not None and expectation.meta.get("kind"):
        return str(expectation.meta["kind"])
    if not table or not column:
        return None
    spec = get_table(table)
    if spec is None:
        return None
    for col in spec.columns:
        if col.name == column:
            return col.kind
    return None


def preparation(expectation: Expectation, kind: str | None = None) -> str:
    """Which form of the column a rule is checked on: TEXT, CANONICAL or NUMBER."""
    etype = expectation.expectation_type
    if etype == "expect_column_values_to_be_between":
        return NUMBER
    if etype == "expect_column_values_to_be_unique" or expectation.reference is not None:
        return CANONICAL
    kind = kind if kind is not None else expectation.meta.get("kind")
    return CANONICAL if kind in KEY_KINDS else TEXT


def prepare_arrow(
    values: ArrowValues,
    expectation: Expectation,
    placeholders: Sequence[str],
    kind: str | None = None,
) -> pa.ChunkedArray:
    """:func:`prepare_column` as Arrow (what the masks use, before pandas conversion)."""
    form = preparation(expectation, kind)
    values = normalize_nulls(values, placeholders)
    if form == CANONICAL:
        return canonical_ids(values)
    if form == NUMBER:
        return to_numbers(values)
    return values


def to_series(values: pa.ChunkedArray, name: str | None = None) -> pd.Series:
    """Arrow -> pandas without copying text (pyarrow-backed strings, NaN for null)."""
    if _is_text_type(values.type) and not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    if pa.types.is_string(values.type):
        series = pd.Series(pd.array(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))
    else:
        series = pd.Series(
            values.to_numpy(), dtype=np.float64 if pa.types.is_floating(values.type) else None
        )
    if name is not None:
        series.name = name
    return series


def prepare_column(
    values: ArrowValues,
    expectation: Expectation,
    placeholders: Sequence[str],
    kind: str | None = None,
) -> pd.Series:
    """Exactly the column GX validates for ``expectation`` (see the module docstring)."""
    return to_series(prepare_arrow(values, expectation, placeholders, kind), expectation.column)


def prepare_value_set(expectation: Expectation, kind: str | None = None) -> list[str] | None:
    """The rule's value set as text, canonicalised when the column is (YAML may hold numbers)."""
    raw = expectation.kwargs.get("value_set")
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple, set)):
        raise RuleEvaluationError(
            expectation.rule_id, f"value_set must be a list, not {type(raw).__name__}"
        )
    texts = [v if isinstance(v, str) else str(v) for v in raw if v is not None]
    if preparation(expectation, kind) == CANONICAL:
        texts = canonical_ids(pa.array(texts, type=pa.string())).to_pylist()
    return list(dict.fromkeys(texts))


# --- reference sets ------------------------------------------------------------------------------

_REFERENCE_CACHE: dict[tuple[Any, ...], pa.Array] = {}
_REFERENCE_LOCK = threading.Lock()


def clear_reference_cache() -> None:
    """Forget cached parent value sets (tests; long-lived notebooks after Bronze changed)."""
    with _REFERENCE_LOCK:
        _REFERENCE_CACHE.clear()
        _INTEGER_FORMS.clear()


def reference_values(settings: Settings, table: str, column: str) -> pa.Array:
    """Distinct canonical non-null values of a parent column, read from its whole Bronze file.

    Always all rows, whatever ``sample_size``: a sampled parent would turn real references into
    orphans. Cached per process, keyed on the file's size and modification time, so one run reads
    each parent once and a rewritten file is read again.
    """
    validate_table_name(table, origin="reference table")
    path = Path(settings.paths.bronze_file(table))
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise BronzeReadError(
            table,
            path,
            "file not found (parent of a referential rule)",
            hint=f"restore {path.name} or remove meta.reference from the rules that point at it",
        ) from None
    placeholders = tuple(settings.null_placeholders)
    key = (str(path), stat.st_mtime_ns, stat.st_size, column, placeholders)
    with _REFERENCE_LOCK:
        cached = _REFERENCE_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if column not in names:
            raise BronzeReadError(
                table,
                path,
                f"has no column {column!r} (parent column of a referential rule)",
                hint=f"fix meta.reference (columns: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})",
            )
        data = parquet.read(columns=[column]).column(0)
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    values = pc.unique(canonical_ids(normalize_nulls(data, placeholders)))
    values = pc.drop_null(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    with _REFERENCE_LOCK:
        _REFERENCE_CACHE[key] = values
    return values


# --- membership -----------------------------------------------------------------------------------

# Building Arrow's hash table of a 2.2M-value parent column costs ~0.4 s, and pc.is_in builds it on
# every call (once per rule, batch and worker). When the values looked up are much fewer than the
# allowed ones, the parent values are probed against the (small) distinct values instead, and only
# the parent values found make up the set: the same answer for a fraction of the work.
REVERSE_LOOKUP_MIN = 65_536


# Between two large key columns (4.2M child ids looked up in 2.2M parent ids) hashing text costs
# twice what hashing the same ids as int64 does, conversions included. Keys are compared as
# integers only when every value on both sides is exactly the decimal text of its integer.
INTEGER_LOOKUP_MIN = 65_536
_INTEGER_FORMS: dict[int, tuple[pa.Array, pa.Array | None]] = {}
_INTEGER_FORMS_MAX = 16


def integer_form(values: ArrowValues) -> ArrowValues | None:
    """int64 of text whose every value is the canonical decimal form of an int64 ('12', '-5';
    not '012', '+5', '1.0', ' 5'), else None. Equal texts <=> equal integers, so membership and
    duplicates computed on the integers are those of the text."""
    if not _is_text_type(values.type):
        return None
    try:
        integers = pc.cast(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if pc.all(pc.equal(pc.cast(integers, values.type), values)).as_py() is False:
        return None
    return integers


def _allowed_integers(allowed: pa.Array) -> pa.Array | None:
    """:func:`integer_form` of a parent value set, once per set object in this process."""
    with _REFERENCE_LOCK:
        hit = _INTEGER_FORMS.get(id(allowed))
    if hit is not None and hit[0] is allowed:
        return hit[1]
    integers = integer_form(allowed)
    with _REFERENCE_LOCK:
        if len(_INTEGER_FORMS) >= _INTEGER_FORMS_MAX:
            _INTEGER_FORMS.clear()
        _INTEGER_FORMS[id(allowed)] = (allowed, integers)  # holding it keeps the id unique
    return integers


def is_in(values: ArrowValues, allowed: pa.Array) -> ArrowValues:
    """``pc.is_in(values, value_set=allowed)`` (same types; ``allowed`` without nulls), with the
    hash table built on the smaller side when ``allowed`` is large (see REVERSE_LOOKUP_MIN), and
    keys compared as integers when both sides are large (see INTEGER_LOOKUP_MIN)."""
    if len(allowed) >= INTEGER_LOOKUP_MIN and len(values) >= INTEGER_LOOKUP_MIN:
        allowed_integers = _allowed_integers(allowed)
        integers = integer_form(values) if allowed_integers is not None else None
        if integers is not None:
            return pc.is_in(integers, value_set=allowed_integers)
    if len(allowed) >= REVERSE_LOOKUP_MIN and len(values) * 4 <= len(allowed):
        distinct = pc.unique(values)
        if isinstance(distinct, pa.ChunkedArray):
            distinct = distinct.combine_chunks()
        allowed = allowed.filter(pc.is_in(allowed, value_set=pc.drop_null(distinct)))
    return pc.is_in(values, value_set=allowed)


# --- masks ---------------------------------------------------------------------------------------


def _bool(values: ArrowValues) -> np.ndarray:
    """Arrow boolean -> numpy bool, null -> False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _bound(value: Any, rule_id: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleEvaluationError(rule_id, f"{name}={value!r} is not a number")
    return float(value)


def _outside(values: pa.ChunkedArray, kwargs: dict[str, Any], rule_id: str) -> np.ndarray:
    lo = _bound(kwargs.get("min_value"), rule_id, "min_value")
    hi = _bound(kwargs.get("max_value"), rule_id, "max_value")
    if lo is None and hi is None:
        raise RuleEvaluationError(rule_id, "min_value and max_value cannot both be empty")
    bad = np.zeros(len(values), dtype=bool)
    if lo is not None:
        below = pc.less_equal if kwargs.get("strict_min") else pc.less
        bad |= _bool(below(values, lo))
    if hi is not None:
        above = pc.greater_equal if kwargs.get("strict_max") else pc.greater
        bad |= _bool(above(values, hi))
    return bad


def duplicated_mask(values: ArrowValues) -> np.ndarray:
    """True on every occurrence of a non-null value that occurs more than once."""
    values = _chunked(values)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    distinct = pc.drop_null(pc.unique(values))
    if isinstance(distinct, pa.ChunkedArray):
        distinct = distinct.combine_chunks()
    if len(distinct) == len(values):
        return np.zeros(len(values), dtype=bool)
    index = pc.index_in(values, value_set=distinct)
    codes = np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    present = codes >= 0
    counts = np.bincount(codes[present], minlength=len(distinct))
    mask = np.zeros(len(values), dtype=bool)
    mask[present] = counts[codes[present]] > 1
    return mask


def mask_prepared(
    prepared: pa.ChunkedArray,
    expectation: Expectation,
    reference: pa.Array | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Rows of an already prepared column that break ``expectation`` (see :func:`unexpected_mask`)."""
    etype = expectation.expectation_type
    kwargs = expectation.kwargs
    rule_id = expectation.rule_id
    if etype == "expect_column_values_to_not_be_null":
        return _bool(pc.is_null(prepared, nan_is_null=True))
    present = ~_bool(pc.is_null(prepared, nan_is_null=True))
    if etype == "expect_column_values_to_be_unique":
        return duplicated_mask(prepared)
    if etype == "expect_column_values_to_be_in_set":
        if expectation.reference is not None and "value_set" not in kwargs:
            if reference is None:
                parent, column = expectation.reference
                raise RuleEvaluationError(
                    rule_id,
                    f"needs the values of {parent}.{column}",
                    hint="pass reference=checks.reference_values(settings, parent, column)",
                )
            allowed = reference
        else:
            value_set = prepare_value_set(expectation, kind)
            if value_set is None:
                return np.zeros(len(prepared), dtype=bool)  # GX: no value set -> vacuously true
            allowed = pa.array(value_set, type=pa.string())
        if allowed.type != prepared.type:
            allowed = allowed.cast(prepared.type)
        return present & ~_bool(is_in(prepared, pc.drop_null(allowed)))
    if etype == "expect_column_value_lengths_to_be_between":
        return present & _outside(pc.utf8_length(prepared), kwargs, rule_id)
    if etype == "expect_column_values_to_match_regex":
        regex = kwargs.get("regex")
        if not isinstance(regex, str):
            raise RuleEvaluationError(rule_id, "kwargs.regex is missing or not text")
        return present & ~_bool(pc.match_substring_regex(prepared, regex))
    if etype == "expect_column_values_to_be_between":
        return present & _outside(prepared, kwargs, rule_id)
    raise RuleEvaluationError(
        rule_id,
        f"{etype} is a table-level rule and has no row mask",
        hint="only rules with Expectation.is_row_level split rows",
    )


def unexpected_mask(
    table: pa.Table,
    expectation: Expectation,
    placeholders: Sequence[str],
    reference: pa.Array | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Boolean numpy array, True where a row breaks ``expectation`` (GX's unexpected rows).

    Computed with pyarrow, independently of GX. ``reference`` holds the parent values of a
    referential rule (:func:`reference_values`); ``kind`` is the column's kind
    (:func:`column_kind`), which decides id canonicalisation exactly as validation does.
    Raises :class:`RuleEvaluationError` for a table-level rule or a column the table lacks.
    """
    column = expectation.column
    if not expectation.is_row_level:
        mask_prepared(pa.chunked_array([], pa.string()), expectation)  # raises with the reason
    if column not in table.column_names:
        raise RuleEvaluationError(
            expectation.rule_id,
            f"column {column!r} is not in the data",
            hint="the expect_column_to_exist rule reports it; fix the export or the rule file",
        )
    prepared = prepare_arrow(table.column(column), expectation, placeholders, kind)
    return mask_prepared(prepared, expectation, reference, kind)
