"""Row-level semantics of the rules, shared by validation (what GX sees) and quarantine (masks).

Great Expectations gives a table its verdict; ingestion needs to know *which rows* break a rule.
Both must agree on what a rule means, so this module owns the two halves of that meaning:

* :func:`prepare_column` builds exactly the column GX validates for a rule (see
  docs/architecture.md, "How a column is prepared"): placeholders become null; for uniqueness,
  referential rules and id/fk columns integer-looking text is canonicalised ('13000015.0' ->
  '13000015'); for ``expect_column_values_to_be_between`` values are read as numbers
  (unparseable text -> null: the type-conformance rule reports those).
* :func:`unexpected_mask` computes the same rule independently with pyarrow (each kind's mask is
  in its record, :mod:`aims_nb_utils.rule_kinds`, which also says its preparation), row by row, with
  GX's conventions: a null is never unexpected except for the not-null rule; a uniqueness rule
  flags *every* occurrence of a duplicated non-null value; in-set, regex, length and range rules
  ignore nulls. ``tests/test_checks.py`` and ``tests/test_validation.py`` prove the parity with
  GX's ``unexpected_count`` on the defective sample lake.

Typed columns (a Bronze file that is not all text) are checked on their own values: ints as
int64, decimals and floats as float64, dates and timestamps as timestamp[us] in UTC, bools as
bool; only regex and length rules read a typed column's text form, and keys compare as int64
when both sides are integers (else as canonical text: a text child '5.0' matches an int parent 5).
The text-parsing rules themselves (``parse_integers``, ``parse_numbers``, ``parse_booleans``,
``parse_timestamps``, ``canonical_ids``) live here once, for the masks, typing, profiling and Gold.

Nothing here imports Great Expectations: quarantine and profiling tests stay fast.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import rule_kinds
from .errors import AimsError, BronzeReadError
from .io import validate_table_name
from .rules import FALSE_STRINGS, TRUE_STRINGS, TYPE_PATTERNS, Expectation
from .spec import get_table

if TYPE_CHECKING:
    from .settings import Settings

# Column preparations: plain text, canonical ids, numbers.
TEXT = "text"
CANONICAL = "canonical"
NUMBER = "number"
TYPED = "typed"  # a typed column's own values (ints as int64, numbers as float64, ...)

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


def is_text_type(arrow_type: pa.DataType) -> bool:
    """Text columns are the ones placeholders, type inference and type-conformance rules apply
    to; any other Arrow type came typed from the source and is taken as it is."""
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or _is_string_view(arrow_type)
    )


def _is_string_view(arrow_type: pa.DataType) -> bool:
    # string_view arrived in pyarrow 16; the Fabric Spark runtime ships 14, which cannot hold it.
    check = getattr(pa.types, "is_string_view", None)
    return check is not None and check(arrow_type)


_is_text_type = is_text_type  # the name older callers use


def is_typed(arrow_type: pa.DataType) -> bool:
    """A column whose values carry their own type (not text, not Arrow's all-null type)."""
    return not is_text_type(arrow_type) and not pa.types.is_null(arrow_type)


def as_text(values: ArrowValues) -> pa.ChunkedArray:
    """The text form of a column: what regex and length rules read (a typed column's values as
    Arrow prints them)."""
    values = _chunked(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
        if is_text_type(values.type):
            return as_text(values)
    return pc.cast(values, pa.string())


def normalize_nulls(values: ArrowValues, placeholders: Sequence[str]) -> pa.ChunkedArray:
    """Text column with every placeholder ('None', 'NaT', ' ', ...) turned into a real null.

    A typed column is returned as it is: placeholders are text, and an int or a date cannot hold
    one (an all-null column of Arrow's null type becomes null text)."""
    values = _chunked(values)
    if is_typed(values.type) and not pa.types.is_dictionary(values.type):
        return values
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
    mask of those (None when every row holds a value). A typed column keeps its type.

    What GX's row rules other than not-null look at: GX drops the nulls itself, one copy of the
    column per rule, unless the column it is given holds none."""
    values = _chunked(values)
    if not is_typed(values.type) or pa.types.is_dictionary(values.type):
        values = as_text(values)
    present = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        present = pc.and_not(present, pc.is_nan(values))
    if placeholders and len(values) and is_text_type(values.type):
        placeholder = pc.is_in(values, value_set=pa.array(list(placeholders), type=values.type))
        present = pc.and_not(present, placeholder)
    if pc.all(present).as_py() is not False:
        return values, None
    return values.filter(present), present


def canonical_ids(values: ArrowValues) -> pa.ChunkedArray:
    """'13000015.0' -> '13000015' for integer-looking text; everything else unchanged (a typed
    column is compared in its text form).

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


_CANONICAL_ID = re.compile(r"^(-?[0-9]+)\.0+$")


def canonical_id_text(value: str) -> str:
    """:func:`canonical_ids` for one Python string."""
    return _CANONICAL_ID.sub(r"\1", value)


def key_values(values: ArrowValues) -> pa.ChunkedArray:
    """A column as keys are compared: integer types as int64 (equal integers are equal keys and
    hashing int64 is twice as fast as text), anything else as canonical text."""
    values = _chunked(values)
    if pa.types.is_integer(values.type):
        return values if values.type == pa.int64() else pc.cast(values, pa.int64())
    return canonical_ids(values)


def comparable(values: ArrowValues, allowed: pa.Array) -> tuple[ArrowValues, pa.Array]:
    """Child values and parent values of a reference in one type: both int64 when both are
    integers (or the text side is exactly integer text), else both canonical text."""
    if values.type == allowed.type:
        return values, allowed
    if pa.types.is_integer(values.type) and is_text_type(allowed.type):
        integers = integer_form(allowed)
        if integers is not None:
            return pc.cast(values, pa.int64()), integers
    if pa.types.is_integer(allowed.type) and is_text_type(values.type):
        integers = integer_form(values)
        if integers is not None:
            return integers, pc.cast(allowed, pa.int64())
    if pa.types.is_integer(values.type) and pa.types.is_integer(allowed.type):
        return pc.cast(values, pa.int64()), pc.cast(allowed, pa.int64())
    left, right = key_values(values), key_values(allowed)
    if not is_text_type(left.type):
        left = as_text(left)
    right = as_text(right).combine_chunks() if not is_text_type(right.type) else right
    if isinstance(right, pa.ChunkedArray):
        right = right.combine_chunks()
    if right.type != left.type:
        right = right.cast(left.type)
    return left, right


# --- text parsing: the one copy of each rule (see /tmp/helpers/parsing_api.md) ------------------

_INTEGER_18 = r"^-?[0-9]{1,18}(\.0+)?$"  # at most 18 digits: every such integer fits int64
_OFFSET = r"(?P<off>Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
_WITH_OFFSET = (
    r"^(?P<base>[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?) ?"
    + _OFFSET
    + "$"
)


def _strip_zero_fraction(values: ArrowValues) -> ArrowValues:
    """'13000015.0' -> '13000015' (and '7.00' -> '7'), the regex only when '.0' alone misses."""
    if not pc.any(pc.match_substring(values, ".")).as_py():
        return values
    values = pc.if_else(pc.ends_with(values, ".0"), pc.utf8_slice_codeunits(values, 0, -2), values)
    if pc.any(pc.match_substring(values, ".")).as_py():
        values = pc.replace_substring_regex(values, r"\.0+$", "")
    return values


def parse_integers(values: ArrowValues, *, conforming: bool = False) -> pa.ChunkedArray:
    """int64 of integer text ('13000015.0' -> 13000015, at most 18 digits), integer types cast,
    float/decimal values only when whole; anything else null. ``conforming`` says every present
    text value already matches the integer pattern (the type rule checked it)."""
    values = _chunked(values)
    if pa.types.is_integer(values.type):
        return pc.cast(values, pa.int64())
    if pa.types.is_floating(values.type) or pa.types.is_decimal(values.type):
        floats = pc.cast(values, pa.float64())
        whole = pc.and_(pc.equal(floats, pc.floor(floats)), pc.less(pc.abs(floats), 2.0**62))
        return pc.cast(pc.if_else(whole, floats, pa.scalar(None, pa.float64())), pa.int64())
    if pa.types.is_boolean(values.type):
        return pc.cast(values, pa.int64())
    values = as_text(values)
    if not conforming:
        ok = pc.match_substring_regex(values, _INTEGER_18)
        values = pc.if_else(ok, values, pa.scalar(None, values.type))
    digits = _strip_zero_fraction(values)
    try:
        return _chunked(pc.cast(digits, pa.int64()))
    except pa.ArrowInvalid:  # more than 18 digits: only those fail
        fits = pc.match_substring_regex(digits, r"^-?[0-9]{1,18}$")
        return _chunked(pc.cast(pc.if_else(fits, digits, pa.scalar(None, digits.type)), pa.int64()))


def parse_numbers(values: ArrowValues, *, conforming: bool = False) -> pa.ChunkedArray:
    """float64 of numeric text; numeric types cast. When some text does not parse, only the
    values matching ``rules.TYPE_PATTERNS['decimal']`` are read and the rest become null (the
    type-conformance rule reports them)."""
    values = _chunked(values)
    if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
        return pc.cast(values, pa.float64())
    if pa.types.is_decimal(values.type):
        # Arrow's decimal -> float cast is not correctly rounded (9987.71 -> 9987.710000000001);
        # through the decimal's text it is, and equals the double of the same text in a rule
        return pc.cast(pc.cast(values, pa.string()), pa.float64())
    values = as_text(values)
    try:
        return pc.cast(values, pa.float64())  # the common case: every value parses, no regex pass
    except pa.ArrowInvalid:
        pass
    if conforming:
        kept = values
    else:
        numeric = pc.match_substring_regex(values, _DECIMAL_TEXT)
        kept = pc.if_else(numeric, values, pa.scalar(None, type=values.type))
    try:
        return pc.cast(kept, pa.float64())
    except pa.ArrowInvalid:  # a form the pattern accepts but Arrow's parser does not ('5.')
        return pa.chunked_array(
            [pa.array([_float_or_none(v) for v in kept.to_pylist()], pa.float64())]
        )


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


to_numbers = parse_numbers  # the name the rule preparation has always used


def parse_booleans(values: ArrowValues) -> pa.ChunkedArray:
    """bool of ``rules.TRUE_STRINGS``/``FALSE_STRINGS`` text ('-1', 'Yes', 'false', ...); bool
    kept; numbers -> value != 0; anything else null."""
    values = _chunked(values)
    if pa.types.is_boolean(values.type):
        return values
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.not_equal(values, 0)
    text = as_text(values)
    true = pc.is_in(text, value_set=pa.array(sorted(TRUE_STRINGS), text.type))
    false = pc.is_in(text, value_set=pa.array(sorted(FALSE_STRINGS), text.type))
    return pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))


def has_utc_offsets(values: ArrowValues) -> bool:
    """True when a text value ends in a UTC offset ('Z', '+02:00', '-0500'): three literal scans
    rule most columns out before any regex runs."""
    values = _chunked(values)
    if not is_text_type(values.type) or len(values) == 0:
        return False
    candidate = pc.or_(
        pc.or_(pc.ends_with(values, "Z"), pc.match_substring(values, "+")),
        pc.greater(pc.count_substring(values, "-"), 2),
    )
    if not pc.any(candidate).as_py():
        return False
    return bool(pc.any(pc.match_substring_regex(values, _WITH_OFFSET)).as_py())


def _offset_micros(offset: ArrowValues) -> ArrowValues:
    """'Z', '+02:00', '-0530', '+02' -> the offset in microseconds (null offset -> 0)."""
    digits = pc.replace_substring(pc.if_else(pc.equal(offset, "Z"), "+00", offset), ":", "")
    hours = pc.cast(pc.utf8_slice_codeunits(digits, 1, 3), pa.int64())
    minutes_text = pc.utf8_slice_codeunits(digits, 3, 5)
    minutes_text = pc.if_else(pc.equal(pc.utf8_length(minutes_text), 2), minutes_text, "0")
    minutes = pc.add(pc.multiply(hours, 60), pc.cast(minutes_text, pa.int64()))
    minutes = pc.if_else(pc.starts_with(digits, "-"), pc.negate(minutes), minutes)
    return pc.multiply(pc.fill_null(minutes, 0), 60_000_000)


def parse_timestamps(
    values: ArrowValues, utc: bool = False, *, conforming: bool = False
) -> pa.ChunkedArray:
    """timestamp[us] of the date pattern's forms (date, date + HH:MM[:SS[.fff]], ' ' or 'T', an
    optional UTC offset that is applied: the result is the UTC time) with a calendar check;
    anything else null. ``utc`` returns timestamp[us, tz=UTC]. date/timestamp input is cast.

    Each normalisation runs only when its form is present: most exports hold one form, and
    these regex passes dominate the cost of typing."""
    target = pa.timestamp("us", tz="UTC") if utc else pa.timestamp("us")
    values = _chunked(values)
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        if pa.types.is_timestamp(values.type) and values.type.tz is not None and not utc:
            return pc.cast(pc.cast(values, pa.timestamp("us", tz="UTC")), pa.timestamp("us"))
        return pc.cast(values, target)
    text = as_text(values).combine_chunks()
    if not conforming:
        ok = pc.match_substring_regex(text, TYPE_PATTERNS["date"])
        text = pc.if_else(ok, text, pa.scalar(None, text.type))
    shift = None
    if has_utc_offsets(text):
        parts = pc.extract_regex(text, _WITH_OFFSET)
        base = pc.struct_field(parts, [0])
        offset = pc.struct_field(parts, [1])
        text = pc.if_else(pc.is_valid(base), base, text)
        shift = _offset_micros(offset)
    norm = text
    lengths = pc.utf8_length(text)
    if pc.any(pc.match_substring(text, "T")).as_py():
        norm = pc.replace_substring_regex(norm, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
    if pc.any(pc.equal(lengths, 10)).as_py():
        norm = pc.replace_substring_regex(norm, r"^(\d{4}-\d{2}-\d{2})$", r"\1 00:00:00")
    if pc.any(pc.equal(lengths, 16)).as_py():
        norm = pc.replace_substring_regex(norm, r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2})$", r"\1:00")
    base = pc.utf8_slice_codeunits(norm, 0, 19)
    parsed = pc.strptime(base, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=True)
    # strptime rolls 2021-02-30 over to 2021-03-02; the pattern bounds every other field, so a
    # value is a real date exactly when its day survives the parse.
    printed_day = pc.utf8_lpad(pc.cast(pc.day(parsed), pa.string()), 2, "0")
    same = pc.equal(printed_day, pc.utf8_slice_codeunits(base, 8, 10))
    parsed = pc.if_else(pc.fill_null(same, False), parsed, pa.scalar(None, pa.timestamp("us")))
    if pc.any(pc.greater(lengths, 19)).as_py():
        fraction = pc.struct_field(pc.extract_regex(norm, r"\.(?P<f>\d+)$"), [0])
        micros = pc.cast(pc.utf8_slice_codeunits(pc.utf8_rpad(fraction, 6, "0"), 0, 6), pa.int64())
        parsed = pc.add(parsed, pc.cast(pc.fill_null(micros, 0), pa.duration("us")))
    if shift is not None:
        parsed = pc.subtract(parsed, pc.cast(shift, pa.duration("us")))
    return _chunked(pc.cast(parsed, target) if utc else parsed)


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


def preparation(
    expectation: Expectation, kind: str | None = None, arrow_type: pa.DataType | None = None
) -> str:
    """Which form of the column a rule is checked on: TEXT, CANONICAL, NUMBER or TYPED.

    The rule kind's record (:mod:`aims_nb_utils.rule_kinds`) says it: range rules read numbers,
    uniqueness and references canonical keys, regex and lengths text; the others a column's own
    values. ``arrow_type`` is the Bronze column's type: a typed column is checked on its values
    (ints as int64, numbers as float64, dates and timestamps as timestamp[us] in UTC), and only
    the rules that read text see its text form. On text, id/fk columns are canonical."""
    record = rule_kinds.KINDS.get(expectation.expectation_type)
    form = record.form if record is not None else None
    if form == rule_kinds.NUMBER_FORM:
        return NUMBER
    if form == rule_kinds.CANONICAL_FORM or expectation.reference is not None:
        return CANONICAL
    if arrow_type is not None and is_typed(arrow_type):
        return TEXT if form == rule_kinds.TEXT_FORM else TYPED
    kind = kind if kind is not None else expectation.meta.get("kind")
    return CANONICAL if kind in KEY_KINDS else TEXT


def _is_temporal(arrow_type: pa.DataType) -> bool:
    return pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type)


def prepare_form(values: ArrowValues, form: str) -> pa.ChunkedArray:
    """A null-normalised column (:func:`normalize_nulls`) in the given form."""
    values = _chunked(values)
    if form == CANONICAL:
        return key_values(values)
    if form == NUMBER:
        if _is_temporal(values.type):
            return parse_timestamps(values)
        return parse_numbers(values)
    if form == TYPED and is_typed(values.type):
        if pa.types.is_integer(values.type):
            return key_values(values)
        if pa.types.is_decimal(values.type) or pa.types.is_floating(values.type):
            return parse_numbers(values)
        if _is_temporal(values.type):
            return parse_timestamps(values)
        return values
    return as_text(values)


def prepared_type(arrow_type: pa.DataType, form: str) -> pa.DataType:
    """The type :func:`prepare_form` gives a column of ``arrow_type`` (without reading it)."""
    if is_typed(arrow_type) and form != TEXT:
        if pa.types.is_integer(arrow_type):
            return pa.int64()
        if form == CANONICAL:
            return pa.string()
        if _is_temporal(arrow_type):
            return pa.timestamp("us")
        if pa.types.is_decimal(arrow_type) or pa.types.is_floating(arrow_type):
            return pa.float64()
        return arrow_type
    return pa.float64() if form == NUMBER else pa.string()


def prepare_arrow(
    values: ArrowValues,
    expectation: Expectation,
    placeholders: Sequence[str],
    kind: str | None = None,
) -> pa.ChunkedArray:
    """:func:`prepare_column` as Arrow (what the masks use, before pandas conversion)."""
    values = _chunked(values)
    form = preparation(expectation, kind, values.type)
    return prepare_form(normalize_nulls(values, placeholders), form)


def _nan_string_dtype() -> pd.StringDtype:
    """pyarrow-backed strings whose missing value is NaN, on every supported pandas.

    pandas 2.3+ spells it ``StringDtype("pyarrow", na_value=np.nan)``; pandas 2.1 and 2.2 (the
    Fabric runtimes ship 2.1.4) know the same dtype only as ``"pyarrow_numpy"``, which 3.0 removed.
    """
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    except TypeError:  # pandas < 2.3: no na_value argument
        return pd.StringDtype("pyarrow_numpy")


NAN_STRING_DTYPE = _nan_string_dtype()


def to_series(values: pa.ChunkedArray, name: str | None = None) -> pd.Series:
    """Arrow -> pandas without copying text (pyarrow-backed strings, NaN for null)."""
    if is_text_type(values.type) and not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    if pa.types.is_string(values.type):
        series = pd.Series(pd.array(values, dtype=NAN_STRING_DTYPE))
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


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _coerce(texts: pa.Array, target: pa.DataType) -> pa.ChunkedArray:
    """Rule-file values (as text) in a prepared column's type; those that do not parse -> null."""
    if pa.types.is_integer(target):
        return parse_integers(texts)
    if pa.types.is_floating(target):
        return parse_numbers(texts)
    if pa.types.is_boolean(target):
        return parse_booleans(texts)
    if pa.types.is_timestamp(target):
        return parse_timestamps(texts)
    return _chunked(texts)


def prepare_value_set(
    expectation: Expectation, kind: str | None = None, target: pa.DataType | None = None
) -> list[Any] | None:
    """The rule's value set in the prepared column's type ``target`` (:func:`prepared_type`;
    text when None), canonicalised when the column is (YAML may hold numbers for text)."""
    raw = expectation.kwargs.get("value_set")
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple, set)):
        raise RuleEvaluationError(
            expectation.rule_id, f"value_set must be a list, not {type(raw).__name__}"
        )
    typed = target is not None and not is_text_type(target)
    texts = [
        _text_of(v) if typed else (v if isinstance(v, str) else str(v))
        for v in raw
        if v is not None
    ]
    if typed:
        coerced = _coerce(pa.array(texts, type=pa.string()), target)
        return list(dict.fromkeys(v for v in coerced.to_pylist() if v is not None))
    if preparation(expectation, kind) == CANONICAL:
        texts = canonical_ids(pa.array(texts, type=pa.string())).to_pylist()
    return list(dict.fromkeys(texts))


def range_bounds(expectation: Expectation, target: pa.DataType | None = None) -> tuple[Any, Any]:
    """(min_value, max_value) of a range rule in the prepared column's type: numbers, or
    datetimes (UTC, no zone) for a date/timestamp column (YAML dates and ISO text accepted)."""
    rule_id = expectation.rule_id
    kwargs = expectation.kwargs
    problem = rule_kinds.bounds_problem(kwargs)
    if problem:  # every row would be unexpected; GX refuses the rule: refuse it here too
        raise RuleEvaluationError(rule_id, problem, hint="swap the bounds, or remove the rule")
    out = []
    for name in ("min_value", "max_value"):
        value = kwargs.get(name)
        if value is None:
            out.append(None)
        elif target is not None and pa.types.is_timestamp(target):
            if isinstance(value, bool):
                raise RuleEvaluationError(rule_id, f"{name}={value!r} is not a date")
            parsed = parse_timestamps(pa.array([_text_of(value).replace("+00:00", "Z")]))
            moment = parsed[0].as_py()
            if moment is None:
                raise RuleEvaluationError(
                    rule_id,
                    f"{name}={value!r} is not a date",
                    hint="write dates as YYYY-MM-DD or YYYY-MM-DD HH:MM:SS",
                )
            out.append(moment)
        else:
            out.append(_bound(value, rule_id, name))
    return out[0], out[1]


# --- reference sets ------------------------------------------------------------------------------

_REFERENCE_CACHE: dict[tuple[Any, ...], pa.Array] = {}
_REFERENCE_LOCK = threading.Lock()


def clear_reference_cache() -> None:
    """Forget cached parent value sets (tests; long-lived notebooks after Bronze changed)."""
    with _REFERENCE_LOCK:
        _REFERENCE_CACHE.clear()
        _INTEGER_FORMS.clear()


def reference_values(settings: Settings, table: str, column: str) -> pa.Array:
    """Distinct canonical non-null values of a parent column, read from its whole Bronze file
    (int64 for an integer column, canonical text otherwise: see :func:`key_values`).

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
    values = pc.unique(key_values(normalize_nulls(data, placeholders)))
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


def bool_mask(values: ArrowValues) -> np.ndarray:
    """Arrow boolean -> numpy bool, null -> False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


_bool = bool_mask


def _bound(value: Any, rule_id: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleEvaluationError(rule_id, f"{name}={value!r} is not a number")
    return float(value)


def outside(
    values: pa.ChunkedArray,
    bounds: tuple[Any, Any],
    rule_id: str,
    kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    lo, hi = bounds
    if lo is None and hi is None:
        raise RuleEvaluationError(rule_id, "min_value and max_value cannot both be empty")
    kwargs = kwargs or {}
    bad = np.zeros(len(values), dtype=bool)
    if pa.types.is_timestamp(values.type):
        lo = None if lo is None else pa.scalar(lo, values.type)
        hi = None if hi is None else pa.scalar(hi, values.type)
    if lo is not None:
        below = pc.less_equal if kwargs.get("strict_min") else pc.less
        bad |= _bool(below(values, lo))
    if hi is not None:
        above = pc.greater_equal if kwargs.get("strict_max") else pc.greater
        bad |= _bool(above(values, hi))
    return bad


_outside = outside


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


COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"


def compound_ignore_rule(expectation: Expectation) -> str:
    """The ``ignore_row_if`` a compound-uniqueness rule runs with: the rule's own, else
    ``any_value_is_missing`` (a key with a null part identifies nothing, so it never collides;
    GX's own default would compare nulls as equal values)."""
    return str(expectation.kwargs.get("ignore_row_if") or "any_value_is_missing")


IGNORE_ROW_IF = ("any_value_is_missing", "all_values_are_missing", "never")


def duplicated_rows(
    columns: Sequence[ArrowValues], ignore_row_if: str = "any_value_is_missing"
) -> np.ndarray:
    """True on every row whose combination of values occurs more than once (a composite key's
    duplicates). ``ignore_row_if`` is GX's: with ``any_value_is_missing`` (the platform's
    default) a row with a null never collides; otherwise a null is compared as a value, and
    ``all_values_are_missing`` leaves out only the rows null in every column."""
    if ignore_row_if not in IGNORE_ROW_IF:
        raise RuleEvaluationError(
            "expect_compound_columns_to_be_unique",
            f"ignore_row_if={ignore_row_if!r} is not one of {', '.join(IGNORE_ROW_IF)}",
        )
    if not columns:
        raise RuleEvaluationError("expect_compound_columns_to_be_unique", "no columns")
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, dtype=bool)
    combined = np.zeros(n, dtype=np.int64)
    any_null = np.zeros(n, dtype=bool)
    all_null = np.ones(n, dtype=bool)
    span = 1
    for values in columns:
        values = _chunked(values).combine_chunks()
        encoded = pc.dictionary_encode(values)
        codes = np.asarray(
            pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        if pa.types.is_floating(values.type):
            codes[_bool(pc.is_nan(values))] = -1
        null = codes < 0
        any_null |= null
        all_null &= null
        size = len(encoded.dictionary) + 1
        if span * size >= 2**62:  # renumber densely before the product could overflow
            combined = np.unique(combined, return_inverse=True)[1].astype(np.int64)
            span = int(combined.max(initial=0)) + 1
        combined = combined * size + (codes + 1)
        span *= size
    counted = ~any_null if ignore_row_if == "any_value_is_missing" else np.ones(n, dtype=bool)
    if ignore_row_if == "all_values_are_missing":
        counted = ~all_null
    mask = np.zeros(n, dtype=bool)
    if not counted.any():
        return mask
    _, inverse, counts = np.unique(combined[counted], return_inverse=True, return_counts=True)
    mask[counted] = counts[inverse] > 1
    return mask


def mask_prepared(
    prepared: pa.ChunkedArray,
    expectation: Expectation,
    reference: pa.Array | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Rows of an already prepared column that break ``expectation`` (see :func:`unexpected_mask`):
    the rule kind's mask (:mod:`aims_nb_utils.rule_kinds`)."""
    record = rule_kinds.KINDS.get(expectation.expectation_type)
    if record is None or record.mask is None:
        raise RuleEvaluationError(
            expectation.rule_id,
            f"{expectation.expectation_type} is a table-level rule and has no row mask",
            hint="only rules with Expectation.is_row_level split rows",
        )
    return record.mask(prepared, expectation, reference, kind)


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
    if expectation.expectation_type == COMPOUND_UNIQUE:
        missing = [c for c in expectation.columns if c not in table.column_names]
        if missing:
            raise RuleEvaluationError(
                expectation.rule_id,
                f"column(s) {', '.join(missing)} not in the data",
                hint="fix the export or the rule's column_list",
            )
        prepared = [
            prepare_arrow(table.column(c), expectation, placeholders, kind)
            for c in expectation.columns
        ]
        return duplicated_rows(prepared, compound_ignore_rule(expectation))
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
