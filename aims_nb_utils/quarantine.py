"""The row split: which Bronze rows go to quarantine, under which rule ids, and why in words.

A row is quarantined when it breaks a rule whose ``Expectation.quarantines_rows`` is true (the
masks are :func:`aims_nb_utils.checks.unexpected_mask`, the same semantics GX validates with, so
the rows a rule quarantines are exactly its GX ``unexpected_count``), when a text value cannot be
typed for Silver (``cast(<COLUMN> as <kind>)``, see :mod:`aims_nb_utils.typing_rules`; a typed
source column is never cast), or, for a table with a key (its row identity, resolved by
ingestion: declared in ``table_keys``, the rule file's ``keys:``, or the published spec's id
column; composite keys allowed), when the key is empty or duplicated in the drop
(``key_not_null(<cols>)`` / ``duplicate_key(<cols>)``: every row of a duplicated key goes, none
is silently preferred; these implicit rules only apply when the rule file has no quarantining
rule saying the same: not-null on every key column, uniqueness on the key column, or a compound
uniqueness rule on exactly the key columns).

Rules come in two scopes. *Row* rules depend on the row alone. *Table* rules (uniqueness,
cross-table references, the key rules) depend on other rows too, so ingestion evaluates them on the
whole Bronze column even when it processes only the changed rows.

Quarantine keeps the Bronze values as Bronze has them (text in AIMS), plus ``_dq_run_id``, ``_dq_failed_rules`` (the rule ids,
as in rule files and validation results), ``_dq_reason`` (one sentence per broken rule, with the
offending value) and ``_dq_row_hash`` (the content hash incremental loads compare).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checks, rule_kinds
from .errors import AimsError
from .rules import TYPE_PATTERNS, Expectation, RuleFile
from .typing_rules import ColumnType, ColumnView, column_view

RUN_ID = "_dq_run_id"
FAILED_RULES = "_dq_failed_rules"
REASON = "_dq_reason"
ROW_HASH = "_dq_row_hash"
QUARANTINE_FIELDS = (
    pa.field(RUN_ID, pa.string()),
    pa.field(FAILED_RULES, pa.list_(pa.string())),
    pa.field(REASON, pa.string()),
    pa.field(ROW_HASH, pa.int64()),
)
SILVER_FIELDS = (pa.field(RUN_ID, pa.string()), pa.field(ROW_HASH, pa.int64()))


def key_not_null_id(key: Sequence[str]) -> str:
    """Rule id of the implicit 'key present' rule of a key."""
    return f"key_not_null({', '.join(key)})"


def duplicate_key_id(key: Sequence[str]) -> str:
    """Rule id of the implicit 'key unique in the drop' rule of a key."""
    return f"duplicate_key({', '.join(key)})"


VALUE_CHARS = 40  # a quoted value in a reason is cut here: reasons stay one readable line


@dataclass(frozen=True)
class RowRule:
    """One reason a row can be quarantined."""

    rule_id: str
    column: str
    check: str  # expectation | compound_unique | cast | key_not_null | key_unique
    scope: str  # row | table
    before: str  # sentence text before the value
    after: str  # sentence text after the value
    show_value: bool = True
    expectation: Expectation | None = None
    kind: str | None = None  # column kind passed to checks (decides id canonicalisation)
    columns: tuple[str, ...] = ()  # every column a multicolumn rule reads (column = the first)

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns or (self.column,)


def _expectation_rule(table: str, exp: Expectation) -> RowRule:
    """A column rule's quarantine reason and scope, from its rule kind's record."""
    column = str(exp.column)
    record = rule_kinds.rule_kind(exp.expectation_type)
    after = record.reason(exp) if record.reason is not None else "breaks the rule"
    return RowRule(
        exp.rule_id,
        column,
        "expectation",
        rule_kinds.scope_of(exp),
        f"{column} ",
        f" {after}",
        record.show_value,
        exp,
        checks.column_kind(table, column, exp),
    )


def _compound_rule(table: str, exp: Expectation) -> RowRule:
    columns = tuple(exp.columns)
    record = rule_kinds.rule_kind(exp.expectation_type)
    return RowRule(
        exp.rule_id,
        columns[0],
        "compound_unique",
        rule_kinds.scope_of(exp),
        f"({', '.join(columns)}) = ",
        f" {record.reason(exp) if record.reason is not None else 'breaks the rule'}",
        record.show_value,
        exp,
        None,
        columns,
    )


def row_rules(
    table: str,
    rule_file: RuleFile | None,
    types: Sequence[ColumnType],
    present_columns: Sequence[str],
    key: Sequence[str] = (),
) -> tuple[list[RowRule], list[str]]:
    """The quarantining rules of a table, in rule-file order, then typing, then key rules.

    ``key`` is the table's row identity (see the module doc; empty: no key rules). Returns the
    rules and notes on rules that cannot apply (their column is not in this drop)."""
    present = set(present_columns)
    rules: list[RowRule] = []
    notes: list[str] = []
    seen: set[str] = set()
    not_null: set[str] = set()
    unique: set[tuple[str, ...]] = set()
    for exp in rule_file.expectations if rule_file is not None else []:
        if not exp.quarantines_rows:
            continue
        missing = [c for c in exp.columns if c not in present]
        if missing:
            notes.append(
                f"rule {exp.rule_id} skipped: column {', '.join(missing)} is not in this drop"
            )
            continue
        if exp.rule_id in seen:  # the same rule twice in a file counts once
            continue
        seen.add(exp.rule_id)
        if exp.is_multicolumn:
            rules.append(_compound_rule(table, exp))
            if checks.compound_ignore_rule(exp) == "any_value_is_missing":
                unique.add(tuple(sorted(exp.columns)))
            continue
        rules.append(_expectation_rule(table, exp))
        if exp.expectation_type == "expect_column_values_to_not_be_null":
            not_null.add(str(exp.column))
        elif exp.expectation_type == "expect_column_values_to_be_unique":
            unique.add((str(exp.column),))
    for col_type in types:
        if col_type.needs_cast and col_type.column in present:
            rules.append(
                RowRule(
                    col_type.rule_id,
                    col_type.column,
                    "cast",
                    "row",
                    f"{col_type.column} ",
                    f" cannot be read as {col_type.kind}",
                )
            )
    key = tuple(key)
    if key and all(c in present for c in key):
        named = ", ".join(key)
        if not set(key) <= not_null:
            rules.append(
                RowRule(
                    key_not_null_id(key),
                    key[0],
                    "key_not_null",
                    "table",
                    f"key {named} ",
                    " is empty, so the row cannot be upserted",
                    False,
                    columns=key,
                )
            )
        if tuple(sorted(key)) not in unique:
            rules.append(
                RowRule(
                    duplicate_key_id(key),
                    key[0],
                    "key_unique",
                    "table",
                    f"key ({named}) = " if len(key) > 1 else f"key {named} ",
                    " occurs more than once in this drop",
                    columns=key,
                )
            )
    return rules, notes


def _null_result(rule: RowRule, reference: pa.Array | None, arrow_type: pa.DataType) -> bool:
    """What a rule says about a null value (GX: only the not-null rule flags it)."""
    exp = rule.expectation
    assert exp is not None
    empty = checks.prepare_arrow(pa.nulls(1, type=arrow_type), exp, [], rule.kind)
    return bool(checks.mask_prepared(empty, exp, reference, rule.kind)[0])


def _duplicated(view: ColumnView, canonical: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows whose (canonical) value occurs more than once, from per-value canonical text."""
    if view.codes is None:
        return checks.duplicated_mask(canonical)
    # Distinct raw values can share a canonical form ('5' and '5.0'): count canonical ids per row.
    if isinstance(canonical, pa.ChunkedArray):
        canonical = canonical.combine_chunks()
    ids = np.asarray(
        pc.fill_null(pc.dictionary_encode(canonical).indices, -1).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    per_row = np.append(ids, -1)[view.codes]
    present = per_row >= 0
    counts = np.bincount(per_row[present], minlength=int(ids.max(initial=-1)) + 1)
    mask = np.zeros(len(per_row), dtype=bool)
    mask[present] = counts[per_row[present]] > 1
    return mask


def evaluate(
    data: pa.Table,
    rules: Sequence[RowRule],
    placeholders: Sequence[str],
    references: Mapping[str, pa.Array] | None = None,
    cast_failures: Mapping[str, np.ndarray] | None = None,
    views: dict[str, ColumnView] | None = None,
    per_value: dict[int, np.ndarray] | None = None,
    prepared: dict[tuple[str, str], pa.ChunkedArray] | None = None,
) -> np.ndarray:
    """Boolean matrix (rows x rules): True where a row breaks a rule.

    Each column is null-normalised once (:func:`typing_rules.column_view`, distinct values when
    it repeats) and prepared once per form (text, canonical ids, numbers); every rule on it is then
    one ``checks.mask_prepared`` call on those values, expanded to rows: the same result as
    ``checks.unexpected_mask`` rule by rule (every row-level rule but uniqueness is a function of
    the value alone; uniqueness is counted over all rows). ``views`` may be shared with typing;
    ``per_value`` (rule index -> None) receives those rules' masks aligned with the view's values;
    ``prepared`` receives the prepared columns per (column, form), aligned likewise.
    Cast rules read ``cast_failures`` (left False when None, to be filled in later). Evaluate
    table-scope rules on whole columns only."""
    matrix = np.zeros((data.num_rows, len(rules)), dtype=bool)
    references = references or {}
    views = {} if views is None else views
    prepared = {} if prepared is None else prepared

    def view_of(column: str) -> ColumnView:
        if column not in views:
            views[column] = column_view(data.column(column), placeholders)
        return views[column]

    def key_form(column: str) -> pa.ChunkedArray:
        """A column as keys compare (ints as int64, text canonical), aligned with its view."""
        key = (column, checks.CANONICAL)
        if key not in prepared:
            prepared[key] = checks.key_values(view_of(column).values)
        return prepared[key]

    def per_row(column: str, values: pa.ChunkedArray) -> pa.Array:
        view = view_of(column)
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return view.take(values)

    for j, rule in enumerate(rules):
        if rule.check == "cast":
            if cast_failures is None:
                continue
            if rule.column not in cast_failures:
                raise ValueError(f"no typing result for {rule.rule_id}")
            matrix[:, j] = cast_failures[rule.column]
            continue
        if rule.check == "expectation":
            view = view_of(rule.column)
            exp = rule.expectation
            assert exp is not None
            key = (rule.column, checks.preparation(exp, rule.kind, view.values.type))
            if key not in prepared:  # placeholders are already null: prepare with none
                prepared[key] = checks.prepare_arrow(view.values, exp, [], rule.kind)
            if exp.expectation_type == "expect_column_values_to_be_unique":
                matrix[:, j] = _duplicated(view, prepared[key])
                continue
            reference = references.get(rule.rule_id)
            values_mask = checks.mask_prepared(prepared[key], exp, reference, rule.kind)
            if per_value is not None and j in per_value:
                per_value[j] = values_mask
            matrix[:, j] = view.expand(values_mask, _null_result(rule, reference, view.values.type))
        elif rule.check == "key_not_null":
            empty = np.zeros(data.num_rows, dtype=bool)
            for column in rule.all_columns:
                nulls = np.asarray(
                    pc.is_null(key_form(column), nan_is_null=True).to_numpy(zero_copy_only=False),
                    dtype=bool,
                )
                empty |= view_of(column).expand(nulls, True)
            matrix[:, j] = empty
        elif len(rule.all_columns) == 1:  # a one-column key
            column = rule.column
            matrix[:, j] = _duplicated(view_of(column), key_form(column))
        else:  # a composite key, or a compound uniqueness rule
            ignore = (
                checks.compound_ignore_rule(rule.expectation)
                if rule.expectation is not None
                else "any_value_is_missing"
            )
            matrix[:, j] = checks.duplicated_rows(
                [per_row(c, key_form(c)) for c in rule.all_columns], ignore
            )
    return matrix


def type_pattern_rules(rules: Sequence[RowRule], types: Sequence[ColumnType]) -> dict[str, int]:
    """column -> index of a rule that checks exactly ``rules.TYPE_PATTERNS`` of the column's Silver
    kind: its mask already says which values cannot be typed, so typing can skip that regex."""
    kinds = {t.column: t.kind for t in types if t.needs_cast}
    found: dict[str, int] = {}
    for j, rule in enumerate(rules):
        exp = rule.expectation
        if exp is None or exp.expectation_type != "expect_column_values_to_match_regex":
            continue
        kind = exp.meta.get("value_type")
        pattern = TYPE_PATTERNS.get(kind)
        # files profiled before the patterns were written with [0-9] say \d: the same in Arrow
        if (
            kind == kinds.get(rule.column)
            and pattern is not None
            and (exp.kwargs.get("regex") in (pattern, pattern.replace("[0-9]", r"\d")))
        ):
            found.setdefault(rule.column, j)
    return found


def _text_values(raw: pa.Table, column: str, rows: np.ndarray) -> pa.Array:
    values = raw.column(column).take(pa.array(rows)).combine_chunks()
    return values if pa.types.is_string(values.type) else values.cast(pa.string())


def _tuple_text(quoted: Sequence[pa.Array]) -> pa.Array:
    """('1', '2') from the quoted values of each column of a composite key."""
    return pc.binary_join_element_wise(
        "(", *[part for i, q in enumerate(quoted) for part in ((", ", q) if i else (q,))], ")", ""
    )


def _quoted(values: pa.Array) -> pa.Array:
    short = pc.utf8_slice_codeunits(values, 0, VALUE_CHARS)
    cut = pc.greater(pc.utf8_length(values), VALUE_CHARS)
    short = pc.if_else(cut, pc.binary_join_element_wise(short, "...", ""), short)
    quoted = pc.binary_join_element_wise("'", short, "'", "")
    return pc.fill_null(quoted, "null")


def quarantine_rows(
    raw: pa.Table,
    matrix: np.ndarray,
    rules: Sequence[RowRule],
    run_id: str,
    row_hashes: np.ndarray,
    table_reason: str | None = None,
    table_rule_id: str | None = None,
) -> pa.Table:
    """Bronze rows (as text) plus the ``_dq_*`` columns. ``table_reason``/``table_rule_id`` head the
    reason and rule list of every row when the whole drop is quarantined."""
    n = raw.num_rows
    rows_idx, rule_idx = np.nonzero(matrix)
    pieces = []
    for j, rule in enumerate(rules):
        rows_j = rows_idx[rule_idx == j]
        if not len(rows_j):
            continue
        if rule.show_value:
            quoted = [_quoted(_text_values(raw, c, rows_j)) for c in rule.all_columns]
            shown = quoted[0] if len(quoted) == 1 else _tuple_text(quoted)
            text = pc.binary_join_element_wise(
                rule.before, shown, f"{rule.after} [{rule.rule_id}]", ""
            )
        else:
            text = pa.array([f"{rule.before.rstrip()}{rule.after} [{rule.rule_id}]"] * len(rows_j))
        pieces.append(text)
    order = np.lexsort((rows_idx, rule_idx))  # rule-major: the order ``pieces`` are concatenated in
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    sentences = (pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())).take(
        pa.array(inverse)
    )
    ids = pa.array(np.array([r.rule_id for r in rules], dtype=object)[rule_idx], pa.string())
    counts = np.bincount(rows_idx, minlength=n)
    if table_reason is not None:
        counts = counts + 1
        heads = np.concatenate([[0], np.cumsum(counts)[:-1]])  # first slot of each row
        slot = np.ones(int(counts.sum()), dtype=bool)
        slot[heads] = False
        ids = _interleave(ids, slot, table_rule_id or "table_verdict")
        sentences = _interleave(sentences, slot, table_reason)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    failed = pa.ListArray.from_arrays(offsets, ids)
    reasons = pc.binary_join(pa.ListArray.from_arrays(offsets, sentences), "; ")
    extra = [
        pa.array([run_id] * n, pa.string()),
        failed,
        reasons,
        pa.array(np.asarray(row_hashes, dtype=np.int64)),
    ]
    arrays = [raw.column(c).combine_chunks() for c in raw.column_names] + extra
    schema = pa.schema([*raw.schema, *QUARANTINE_FIELDS])
    return pa.Table.from_arrays(arrays, schema=schema)


def _interleave(values: pa.Array, is_value: np.ndarray, head: str) -> pa.Array:
    """``values`` placed where ``is_value`` is True, ``head`` everywhere else."""
    pool = pa.concat_arrays([values.cast(pa.string()), pa.array([head], pa.string())])
    index = np.where(is_value, np.cumsum(is_value) - 1, len(values))
    return pool.take(pa.array(index))


def quarantine_schema(bronze_schema: pa.Schema) -> pa.Schema:
    return pa.schema([*bronze_schema, *QUARANTINE_FIELDS])


def count_by_rule(quarantine: pa.Table) -> dict[str, int]:
    """Rows per rule id in a quarantine table (a row breaking two rules counts for both)."""
    flat = pc.list_flatten(quarantine.column(FAILED_RULES))
    counts = pc.value_counts(flat)
    return {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}


class RowsQuarantined:
    """Rows breaking at least one quarantining rule of some rules, built column by column.

    The rule-file part of what ingestion quarantines (ingestion adds rows that cannot be typed
    and, for a key no rule covers, rows whose key is empty or duplicated), with :func:`evaluate`'s
    masks, the ones ingestion splits rows with. Rules are grouped by the columns they read and
    :meth:`finish` reads one group at a time (validation hands it only the rules GX found rows
    breaking, so most columns are never read twice). Each rule's mask is folded in as it is
    computed: memory holds one group's columns and one mask. A
    rule that cannot be evaluated (its column is missing, its parent unreadable: ``references``
    lacks it, bad kwargs) is left out with a note; validation reports it as a failed rule."""

    def __init__(
        self,
        table: str,
        expectations: Sequence[Expectation],
        rows: int,
        placeholders: Sequence[str],
        references: Mapping[str, pa.Array] | None = None,
    ) -> None:
        self.table = table
        self.rows = rows
        self.placeholders = list(placeholders)
        self.references = dict(references or {})
        self.mask = np.zeros(rows, dtype=bool)
        self.notes: list[str] = []
        self.pending: dict[tuple[str, ...], list[Expectation]] = {}
        for exp in expectations:
            if exp.quarantines_rows:
                self.pending.setdefault(tuple(exp.columns), []).append(exp)

    def finish(
        self, read_column: Callable[[str], pa.ChunkedArray], present_columns: Sequence[str]
    ) -> np.ndarray:
        """Evaluate every group, reading its columns; the rows flagged."""
        present = set(present_columns)
        for columns, members in list(self.pending.items()):
            del self.pending[columns]
            missing = [c for c in columns if c not in present]
            if missing:
                self.notes.append(f"rules on {', '.join(missing)} left out: not in the data")
                continue
            self._evaluate(pa.table({c: read_column(c) for c in columns}), members)
        return self.mask

    def _evaluate(self, data: pa.Table, members: list[Expectation]) -> None:
        rules, skipped = row_rules(self.table, RuleFile(self.table, members), [], data.column_names)
        self.notes += skipped
        views: dict[str, ColumnView] = {}
        prepared: dict[tuple[str, str], pa.ChunkedArray] = {}
        for rule in rules:
            exp = rule.expectation
            if (
                exp is not None
                and exp.reference is not None
                and "value_set" not in exp.kwargs
                and rule.rule_id not in self.references
            ):
                self.notes.append(f"rule {rule.rule_id} left out: its parent values are unreadable")
                continue
            try:
                flagged = evaluate(
                    data,
                    [rule],
                    self.placeholders,
                    self.references,
                    views=views,
                    prepared=prepared,
                )
            except AimsError as exc:
                self.notes.append(f"rule {rule.rule_id} left out: {exc}")
                continue
            self.mask |= flagged[:, 0]


def quarantined_by_rules(
    table: str,
    expectations: Sequence[Expectation],
    read_column: Callable[[str], pa.ChunkedArray],
    present_columns: Sequence[str],
    rows: int,
    placeholders: Sequence[str],
    references: Mapping[str, pa.Array] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Rows breaking at least one quarantining rule of ``expectations`` (see
    :class:`RowsQuarantined`), reading every column it needs; and notes on rules left out."""
    counter = RowsQuarantined(table, expectations, rows, placeholders, references)
    mask = counter.finish(read_column, present_columns)
    return mask, counter.notes
