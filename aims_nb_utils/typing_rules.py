"""Silver typing: which Arrow type each Bronze column gets in Silver, and the vectorised casts.

A Bronze column that is already typed (int32, int64, double, decimal128(p, s), bool, date32,
timestamp with its time zone, ...) keeps its Arrow type in Silver: the source said what it is,
and converting it (a double to int64 because every value is whole today, a decimal to float64)
would lose what a later drop needs or what a reader relies on. Type inference and
type-conformance rules apply only to text columns: the AIMS case, where Bronze stores every
value as text. The type of a column comes from, in order of precedence (``origin`` in brackets,
what ``silver-schema`` shows):

1. [override] the rule file's top-level ``types: {column: kind}`` (``RuleFile.types``), a
   person's explicit choice; a typed source column is then read through its text form;
2. [source] the Bronze column's own Arrow type when it is not text;
3. [inferred | rule file] the rule file's type-conformance rule:
   ``expect_column_values_to_match_regex`` with ``meta.value_type`` integer | decimal | date |
   boolean. Written by the profiler it is *inferred*; a rule without the profiler's
   ``generated_by`` marker was written or edited by a person: *rule file*. ``meta.timezone: UTC``
   on a date rule types the column timestamp[us, tz=UTC];
4. [inferred] a cross-table rule (``meta.reference``) whose parent column the published spec
   calls an id or fk -> integer;
5. [inferred] the published spec's kind (``aims_nb_utils.spec``): id and fk -> integer, date ->
   date, bool -> boolean, number -> decimal;
6. [default] otherwise text.

Silver types of text columns: integer -> int64 (nullable; '13000015.0' is accepted as 13000015),
decimal -> float64, date -> timestamp[us] without time zone (values written with a UTC offset,
'2013-01-01T10:00:00Z' or '... +02:00', are converted to UTC; with ``meta.timezone: UTC`` the
type is timestamp[us, tz=UTC]), boolean -> bool ('0'/'-1', 'Yes'/'No', ... per
``rules.TRUE_STRINGS``/``FALSE_STRINGS``), text -> string. Null placeholders become null in every
type. A value that is present but does not cast is a *typing failure*: the row goes to quarantine
with the rule id ``cast(<COLUMN> as <kind>)``, because a typed layer that silently nulls bad values
loses data. The casts accept exactly what ``rules.TYPE_PATTERNS`` accepts, plus a calendar check
for dates (2021-02-30 matches the pattern but is not a date). The parsing itself is
:mod:`aims_nb_utils.checks`' (``parse_integers``, ``parse_numbers``, ``parse_timestamps``,
``parse_booleans``): one copy of each rule for masks, typing, profiling and Gold.

``python -m aims_nb_utils silver-schema <table>`` prints the derived schema with each type's origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checks, spec
from .rules import GENERATED_MARKER, GENERATOR_NAME, RuleFile

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
ORIGINS = ("override", "source", "rule file", "inferred", "default")
KEY_COLUMN = "ID"  # the AIMS tables' key (their spec calls it an id); no rule depends on the name


@dataclass(frozen=True)
class ColumnType:
    """The Silver type of one column and why it has that type (``origin``: one of ORIGINS;
    ``source``: the detail). ``arrow`` is set when the type is the source's own or carries a
    time zone."""

    column: str
    kind: str
    source: str
    origin: str = "inferred"
    arrow: pa.DataType | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return self.arrow if self.arrow is not None else ARROW_TYPES[self.kind]

    @property
    def from_source(self) -> bool:
        """The Bronze values are taken as they are: no cast, so no typing failure."""
        return self.origin == "source"

    @property
    def needs_cast(self) -> bool:
        return not self.from_source and self.kind != "string"

    @property
    def rule_id(self) -> str:
        """Id of the implicit typing rule, as listed in quarantine's ``_dq_failed_rules``."""
        return f"cast({self.column} as {self.kind})"


def kind_of(arrow_type: pa.DataType) -> str:
    """The Silver kind an Arrow type belongs to (for display and for the rules that need one)."""
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"


def _date_type(meta: Mapping[str, object]) -> pa.DataType | None:
    zone = meta.get("timezone")
    if zone is None:
        return None
    if str(zone).upper() not in ("UTC", "Z", "ETC/UTC"):
        raise ValueError(
            f"meta.timezone {zone!r}: only UTC is supported (values are stored in UTC)"
        )
    return pa.timestamp("us", tz="UTC")


def _rule_kinds(
    rule_file: RuleFile | None,
) -> dict[str, tuple[str, str, str, pa.DataType | None]]:
    kinds: dict[str, tuple[str, str, str, pa.DataType | None]] = {}
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
            origin = "inferred" if exp.meta.get(GENERATED_MARKER) == GENERATOR_NAME else "rule file"
            arrow = _date_type(exp.meta) if value_type == "date" else None
            kinds[column] = (str(value_type), f"rule value_type ({exp.rule_id})", origin, arrow)
        elif exp.meta.get("kept_as_text") and column not in kinds:
            # the profiler saw values that read as numbers or dates and chose text (leading
            # zeros, or a file that types that kind elsewhere): say why, and let no spec kind
            # cast them
            reason = str(exp.meta["kept_as_text"])
            kinds[column] = ("string", reason, "inferred", None)
        elif exp.reference is not None and column not in kinds:
            parent, parent_column = exp.reference
            parent_spec = spec.get_table(parent)
            parent_kind = None
            if parent_spec is not None and parent_column in parent_spec.column_names:
                parent_kind = parent_spec.column(parent_column).kind
            if parent_kind in ("id", "fk"):
                kinds[column] = (
                    "integer",
                    f"reference to {parent}.{parent_column}",
                    "inferred",
                    None,
                )
    return kinds


def silver_types(
    table: str,
    columns: Sequence[str],
    rule_file: RuleFile | None = None,
    bronze_types: Mapping[str, pa.DataType] | None = None,
) -> list[ColumnType]:
    """The Silver type of each column (in the given order), by the precedence in the module doc.

    ``bronze_types`` maps a column to its Bronze Arrow type (``pq.read_schema``); without it
    every column is taken to be text, as in the AIMS lake."""
    from_rules = _rule_kinds(rule_file)
    overrides = dict(rule_file.types) if rule_file is not None else {}
    bronze_types = bronze_types or {}
    table_spec = spec.get_table(table)
    out = []
    for column in columns:
        source_type = bronze_types.get(column)
        if column in overrides:
            kind = overrides[column]
            out.append(ColumnType(column, kind, "rule file types:", "override"))
        elif source_type is not None and checks.is_typed(source_type):
            if pa.types.is_dictionary(source_type):
                source_type = source_type.value_type
            out.append(
                ColumnType(column, kind_of(source_type), str(source_type), "source", source_type)
            )
        elif column in from_rules:
            kind, source, origin, arrow = from_rules[column]
            out.append(ColumnType(column, kind, source, origin, arrow))
        elif table_spec is not None and column in table_spec.column_names:
            spec_kind = table_spec.column(column).kind
            kind = SPEC_KINDS.get(spec_kind, "string")
            out.append(ColumnType(column, kind, f"spec kind {spec_kind}", "inferred"))
        else:
            why = "not in the spec" if table_spec is not None else "no type rule"
            out.append(ColumnType(column, "string", f"{why}: kept as text", "default"))
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
    if not checks.is_typed(values.type) and not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())  # large text, or Arrow's all-null type
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


def _null_like(arrow_type: pa.DataType, n: int) -> pa.Array:
    return pa.nulls(n, type=arrow_type)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def cast_column(
    values: pa.Array | pa.ChunkedArray,
    kind: str,
    placeholders: Sequence[str],
    known_bad: np.ndarray | None = None,
    normalized: bool = False,
    arrow_type: pa.DataType | None = None,
) -> tuple[pa.Array, np.ndarray]:
    """Cast Bronze text to ``kind`` (``arrow_type`` when it is not the kind's default, e.g.
    timestamp[us, tz=UTC]); returns the typed array and a mask of typing failures (present,
    non-placeholder values that do not cast; those typed values are null). A typed input is
    read through its text form (a person's override of a source type).

    ``known_bad`` (True where a present value does not match ``TYPE_PATTERNS[kind]``, i.e. the
    mask of the profiler's type-conformance rule) spares the regex pass; ``normalized`` says the
    placeholders are already null."""
    values = _array(checks.as_text(values))
    n = len(values)
    if normalized:
        text = values
    else:
        text = _array(checks.normalize_nulls(values, placeholders))
    present = pc.is_valid(text)
    if kind == "string":
        return text, np.zeros(n, dtype=bool)
    if kind not in ARROW_TYPES:
        raise ValueError(f"unknown Silver kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "boolean":
        typed = _array(checks.parse_booleans(text))
        return typed, _to_numpy(present) & ~_to_numpy(pc.is_valid(typed))
    conforming = known_bad is not None
    if conforming:
        ok = pc.and_(present, pa.array(~np.asarray(known_bad, dtype=bool)))
        text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    if kind == "integer":
        typed = checks.parse_integers(text, conforming=conforming)
    elif kind == "decimal":
        typed = checks.parse_numbers(text, conforming=conforming)
    else:
        utc = arrow_type is not None and getattr(arrow_type, "tz", None) is not None
        typed = checks.parse_timestamps(text, utc=utc, conforming=conforming)
    typed = _array(typed)
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
            arrays.append(_null_like(col_type.arrow_type, raw.num_rows))
            failures[name] = np.zeros(raw.num_rows, bool)
            continue
        if col_type.from_source:
            column = raw.column(name)
            if column.type != col_type.arrow_type:  # a dictionary-encoded source column
                column = pc.cast(column, col_type.arrow_type)
            arrays.append(_array(column))
            failures[name] = np.zeros(raw.num_rows, bool)
            continue
        if name not in views:
            views[name] = column_view(raw.column(name), placeholders)
        view = views[name]
        if col_type.kind == "decimal" and numbers and name in numbers and col_type.arrow is None:
            typed = numbers[name]
            typed = typed.combine_chunks() if isinstance(typed, pa.ChunkedArray) else typed
            failed = _to_numpy(pc.is_valid(view.values)) & ~_to_numpy(pc.is_valid(typed))
        else:
            values = view.values
            normalized = True
            if checks.is_typed(values.type):  # an override of a source type: via its text
                values, normalized = checks.as_text(values).combine_chunks(), True
            typed, failed = cast_column(
                values,
                col_type.kind,
                placeholders,
                known_bad.get(name),
                normalized=normalized,
                arrow_type=col_type.arrow_type,
            )
        arrays.append(view.take(typed))
        failures[name] = view.expand(failed, False)
    return pa.Table.from_arrays(arrays, schema=silver_schema(types)), failures


def describe(types: Sequence[ColumnType]) -> list[dict[str, str]]:
    """Rows for the ``silver-schema`` command and the docs."""
    return [
        {
            "column": t.column,
            "kind": t.kind,
            "silver type": str(t.arrow_type),
            "origin": t.origin,
            "source": t.source,
        }
        for t in types
    ]
