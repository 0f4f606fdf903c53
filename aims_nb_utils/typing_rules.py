"""Silver typing: which Arrow type each Bronze text column becomes, and the vectorised casts.

Bronze stores every value as text. Silver stores it typed, and the type of a column comes from, in
order of precedence:

1. the rule file's type-conformance rule: ``expect_column_values_to_match_regex`` with
   ``meta.value_type`` integer | decimal | date | boolean (the profiler writes these, and a person
   can edit them: the rule file is the contract);
2. a cross-table rule (``meta.reference``) whose parent column is an ID or FK -> integer;
3. the column named ``ID`` -> integer;
4. the published spec's inferred kind (``aims_nb_utils.spec``): id and fk -> integer, date -> date,
   bool -> boolean, number -> decimal;
5. otherwise text.

Silver types: integer -> int64 (nullable; '13000015.0' is accepted as 13000015), decimal -> float64,
date -> timestamp[us] without time zone, boolean -> bool ('0'/'-1', 'Yes'/'No', ... per
``rules.TRUE_STRINGS``/``FALSE_STRINGS``), text -> string. Null placeholders become null in every
type. A value that is present but does not cast is a *typing failure*: the row goes to quarantine
with the rule id ``cast(<COLUMN> as <kind>)``, because a typed layer that silently nulls bad values
loses data. The casts accept exactly what ``rules.TYPE_PATTERNS`` accepts, plus a calendar check
for dates (2021-02-30 matches the pattern but is not a date).

``python -m aims_nb_utils silver-schema <table>`` prints the derived schema with each type's source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checks, spec
from .rules import FALSE_STRINGS, TRUE_STRINGS, TYPE_PATTERNS, RuleFile

KINDS = ("integer", "decimal", "date", "boolean", "string")
ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "decimal": pa.float64(),
    "date": pa.timestamp("us"),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
SPEC_KINDS = {
    "id": "integer",
    "fk": "integer",
    "date": "date",
    "bool": "boolean",
    "number": "decimal",
}
KEY_COLUMN = "ID"
# At most 18 digits: every such integer fits int64, so the cast can never overflow.
_INTEGER = r"^-?\d{1,18}(\.0+)?$"


@dataclass(frozen=True)
class ColumnType:
    """The Silver type of one column and why it has that type."""

    column: str
    kind: str
    source: str

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]

    @property
    def rule_id(self) -> str:
        """Id of the implicit typing rule, as listed in quarantine's ``_dq_failed_rules``."""
        return f"cast({self.column} as {self.kind})"


def _rule_kinds(rule_file: RuleFile | None) -> dict[str, tuple[str, str]]:
    kinds: dict[str, tuple[str, str]] = {}
    if rule_file is None:
        return kinds
    for exp in rule_file.expectations:
        column = exp.column
        if not column:
            continue
        value_type = exp.meta.get("value_type")
        if exp.expectation_type == "expect_column_values_to_match_regex" and value_type in (
            "integer",
            "decimal",
            "date",
            "boolean",
        ):
            kinds[column] = (str(value_type), f"rule value_type ({exp.rule_id})")
        elif exp.reference is not None and column not in kinds:
            parent, parent_column = exp.reference
            parent_spec = spec.get_table(parent)
            parent_kind = None
            if parent_spec is not None and parent_column in parent_spec.column_names:
                parent_kind = parent_spec.column(parent_column).kind
            if parent_column == KEY_COLUMN or parent_kind in ("id", "fk"):
                kinds[column] = ("integer", f"reference to {parent}.{parent_column}")
    return kinds


def silver_types(
    table: str, columns: Sequence[str], rule_file: RuleFile | None = None
) -> list[ColumnType]:
    """The Silver type of each column (in the given order), by the precedence in the module doc."""
    from_rules = _rule_kinds(rule_file)
    table_spec = spec.get_table(table)
    out = []
    for column in columns:
        if column in from_rules:
            kind, source = from_rules[column]
        elif column == KEY_COLUMN:
            kind, source = "integer", "key column"
        elif table_spec is not None and column in table_spec.column_names:
            spec_kind = table_spec.column(column).kind
            kind = SPEC_KINDS.get(spec_kind, "string")
            source = f"spec kind {spec_kind}"
        else:
            kind, source = "string", "not in the spec: kept as text"
        out.append(ColumnType(column, kind, source))
    return out


def silver_schema(types: Sequence[ColumnType]) -> pa.Schema:
    return pa.schema([pa.field(t.column, t.arrow_type) for t in types])


# A batch column as the masks and casts see it. Most AIMS columns repeat a few values (codes,
# flags, FKs, dates), and every rule and cast is a function of the value alone: evaluated on the
# distinct values and expanded by code, the per-value work shrinks by the repetition factor.
PROBE_ROWS = 4096
DISTINCT_SHARE = 0.25  # encode when distinct values are at most this share of the rows


@dataclass(frozen=True)
class ColumnView:
    """Placeholders-as-null values of one column: plain, or distinct values plus per-row codes
    (``codes`` index ``values``; -1 marks a real null)."""

    values: pa.Array
    codes: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.values) if self.codes is None else len(self.codes)

    def expand(self, per_value: np.ndarray, null_result: bool) -> np.ndarray:
        """A per-value boolean result as one per row."""
        if self.codes is None:
            return per_value
        return np.append(np.asarray(per_value, dtype=bool), null_result)[self.codes]

    def take(self, per_value: pa.Array) -> pa.Array:
        """A per-value array (typed values, prepared text) as one per row."""
        if self.codes is None:
            return per_value
        return per_value.take(pa.array(self.codes, mask=self.codes < 0))


def column_view(values: pa.Array | pa.ChunkedArray, placeholders: Sequence[str]) -> ColumnView:
    """Encode the column when it repeats enough (a probe of its first rows decides)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    rows = len(values)
    if (
        rows >= 2 * PROBE_ROWS
        and len(pc.unique(values.slice(0, PROBE_ROWS))) <= PROBE_ROWS * DISTINCT_SHARE
    ):
        encoded = pc.dictionary_encode(values)
        if len(encoded.dictionary) <= rows * DISTINCT_SHARE:
            codes = np.asarray(
                pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
            )
            distinct = checks.normalize_nulls(encoded.dictionary, placeholders).combine_chunks()
            return ColumnView(distinct, codes)
    return ColumnView(checks.normalize_nulls(values, placeholders).combine_chunks())


def _to_numpy(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _null_like(kind: str, n: int) -> pa.Array:
    return pa.nulls(n, type=ARROW_TYPES[kind])


def _cast_date(text: pa.Array) -> pa.Array:
    """Parse the date pattern's forms (date, date + HH:MM[:SS[.fff]], ' ' or 'T') with a calendar
    check; anything else is null. Each normalisation runs only when its form is present: most
    exports hold one form, and these regex passes dominate the cost of typing."""
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
    return parsed


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _strip_zero_fraction(values: pa.Array) -> pa.Array:
    """'13000015.0' -> '13000015' (and '7.00' -> '7'), with the regex only when '.0' alone misses."""
    if not pc.any(pc.match_substring(values, ".")).as_py():
        return values
    values = pc.if_else(pc.ends_with(values, ".0"), pc.utf8_slice_codeunits(values, 0, -2), values)
    if pc.any(pc.match_substring(values, ".")).as_py():
        values = pc.replace_substring_regex(values, r"\.0+$", "")
    return values


def cast_column(
    values: pa.Array | pa.ChunkedArray,
    kind: str,
    placeholders: Sequence[str],
    known_bad: np.ndarray | None = None,
    normalized: bool = False,
) -> tuple[pa.Array, np.ndarray]:
    """Cast Bronze text to ``kind``; returns the typed array and a mask of typing failures
    (present, non-placeholder values that do not cast; those typed values are null).

    ``known_bad`` (True where a present value does not match ``TYPE_PATTERNS[kind]``, i.e. the
    mask of the profiler's type-conformance rule) spares the regex pass; ``normalized`` says the
    placeholders are already null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    n = len(values)
    if normalized:
        text = values
    else:
        is_placeholder = pc.is_in(values, value_set=pa.array(list(placeholders), pa.string()))
        text = pc.if_else(pc.fill_null(is_placeholder, False), pa.scalar(None, pa.string()), values)
    present = pc.is_valid(text)
    if kind == "string":
        return text, np.zeros(n, dtype=bool)
    if kind == "boolean":
        true = pc.is_in(text, value_set=pa.array(sorted(TRUE_STRINGS), pa.string()))
        false = pc.is_in(text, value_set=pa.array(sorted(FALSE_STRINGS), pa.string()))
        typed = pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
        return typed, _to_numpy(present) & ~_to_numpy(pc.is_valid(typed))
    if kind not in ARROW_TYPES:
        raise ValueError(f"unknown Silver kind {kind!r}; known: {', '.join(KINDS)}")
    if known_bad is not None:
        ok = pc.and_(present, pa.array(~np.asarray(known_bad, dtype=bool)))
    else:
        ok = pc.match_substring_regex(text, _INTEGER if kind == "integer" else TYPE_PATTERNS[kind])
    conforming = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    if kind == "integer":
        digits = _strip_zero_fraction(conforming)
        try:
            typed = pc.cast(digits, pa.int64())
        except pa.ArrowInvalid:  # more than 18 digits: only those fail
            fits = pc.match_substring_regex(digits, r"^-?\d{1,18}$")
            typed = pc.cast(pc.if_else(fits, digits, pa.scalar(None, pa.string())), pa.int64())
    elif kind == "decimal":
        try:
            typed = pc.cast(conforming, pa.float64())
        except pa.ArrowInvalid:  # a form the pattern accepts but Arrow's parser does not ('5.')
            typed = pa.array([_float_or_none(v) for v in conforming.to_pylist()], pa.float64())
    else:
        typed = _cast_date(conforming)
    return typed, _to_numpy(present) & ~_to_numpy(pc.is_valid(typed))


def type_table(
    raw: pa.Table,
    types: Sequence[ColumnType],
    placeholders: Sequence[str],
    views: dict[str, ColumnView] | None = None,
    known_bad: dict[str, np.ndarray] | None = None,
    numbers: dict[str, pa.Array | pa.ChunkedArray] | None = None,
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Type every column of ``types`` (a column absent from ``raw`` becomes all-null, which is how
    schema evolution keeps a dropped column); returns the typed table and the failure masks.

    ``views`` (shared with the row masks, filled here when missing) hold the columns with
    placeholders already null, possibly as distinct values; ``known_bad`` per column, aligned
    with its view's values, the values that do not match the type pattern (see cast_column);
    ``numbers`` per column its values already read as numbers by ``checks.to_numbers`` (the range
    rules' preparation, which accepts exactly the decimal pattern): reused for decimal columns."""
    arrays, failures = [], {}
    views = {} if views is None else views
    known_bad = known_bad or {}
    for col_type in types:
        name = col_type.column
        if name not in raw.column_names:
            arrays.append(_null_like(col_type.kind, raw.num_rows))
            failures[name] = np.zeros(raw.num_rows, bool)
            continue
        if name not in views:
            views[name] = column_view(raw.column(name), placeholders)
        view = views[name]
        if col_type.kind == "decimal" and numbers and name in numbers:
            typed = numbers[name]
            typed = typed.combine_chunks() if isinstance(typed, pa.ChunkedArray) else typed
            failed = _to_numpy(pc.is_valid(view.values)) & ~_to_numpy(pc.is_valid(typed))
        else:
            typed, failed = cast_column(
                view.values, col_type.kind, placeholders, known_bad.get(name), normalized=True
            )
        arrays.append(view.take(typed))
        failures[name] = view.expand(failed, False)
    return pa.Table.from_arrays(arrays, schema=silver_schema(types)), failures


def describe(types: Sequence[ColumnType]) -> list[dict[str, str]]:
    """Rows for the ``silver-schema`` command and the docs."""
    return [
        {"column": t.column, "kind": t.kind, "silver type": str(t.arrow_type), "source": t.source}
        for t in types
    ]
