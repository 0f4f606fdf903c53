"""One record per rule kind: everything the platform knows about an expectation type, in one place.

A rule kind is a Great Expectations expectation type the rule files may use. Its record says
which GX class validates it, which DQ dimension it measures, its shape (table, one column, several
columns), how its column is prepared before GX or the masks see it, the row mask that says which
rows break it (the rows quarantine takes), the words a quarantine reason uses, whether GX looks at
nulls for it, whether it has a ``min_value``/``max_value`` range, and whether profiling may mark
it gating (``meta.gate: true``, see docs/architecture.md "Verdicts"). Adding a kind touches this
module only: rules.py (vocabulary and dimensions), checks.py (preparation and masks),
quarantine.py (reasons and scopes) and validation.py (GX classes) all read these records, and so
may any other engine (e.g. a Spark one): ``rule_kind(expectation_type)``.

Masks take ``(prepared, expectation, reference, kind)``: the column as :func:`checks.prepare_arrow`
prepared it, the rule, the parent values of a referential rule and the column's kind; they return
a numpy bool per value, True where the value breaks the rule, with GX's conventions (a null is
unexpected only for the not-null rule; every occurrence of a duplicated value is unexpected).
This module imports checks only inside the masks (checks imports rules, rules imports this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pyarrow as pa

    from .rules import Expectation

# Shapes
TABLE = "table"  # about the whole table: row/column counts, column existence
COLUMN = "column"  # one column, row by row (kwargs.column)
MULTICOLUMN = "multicolumn"  # several columns of one row (kwargs.column_list)

# How a column is prepared (the forms checks.prepare_form builds)
VALUES = "values"  # the column's own values: typed values, or text (canonical ids for id/fk kinds)
TEXT_FORM = "text"  # text even for a typed column (regex, lengths read text)
NUMBER_FORM = "number"  # numbers (dates as timestamps): range rules
CANONICAL_FORM = "canonical"  # keys as they compare: uniqueness, references

# Whether a row's outcome depends on the row alone ("row") or on other rows too ("table")
ROW_SCOPE = "row"
TABLE_SCOPE = "table"

Mask = Callable[["pa.ChunkedArray", "Expectation", "pa.Array | None", "str | None"], "np.ndarray"]


@dataclass(frozen=True)
class RuleKind:
    """Everything about one expectation type (see the module docstring)."""

    expectation_type: str
    gx_class: str  # the class in great_expectations.expectations
    dimension: str  # completeness | uniqueness | validity | consistency | integrity
    shape: str  # TABLE | COLUMN | MULTICOLUMN
    form: str | None  # column preparation (None: a table rule reads no column)
    mask: Mask | None  # rows breaking the rule (None: a table rule has no rows to split)
    reason: Callable[[Expectation], str] | None  # words after the value in a quarantine reason
    show_value: bool  # the quarantine reason quotes the offending value
    scope: str  # ROW_SCOPE | TABLE_SCOPE (quarantine evaluates table scope on whole columns)
    sees_nulls: bool  # GX's metric looks at nulls (else it is computed on present values)
    has_bounds: bool  # kwargs min_value/max_value: refused when min_value > max_value
    profiling_may_gate: bool  # profiling may write meta.gate: true on it
    summary: str  # one line, for docs and error hints

    @property
    def is_row_level(self) -> bool:
        return self.shape == COLUMN

    @property
    def is_multicolumn(self) -> bool:
        return self.shape == MULTICOLUMN


# --- masks (checks is imported lazily: it imports rules, which imports this module) -------------


def _mask_not_null(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    import pyarrow.compute as pc

    from . import checks

    return checks.bool_mask(pc.is_null(prepared, nan_is_null=True))


def _present(prepared: Any) -> np.ndarray:
    import pyarrow.compute as pc

    from . import checks

    return ~checks.bool_mask(pc.is_null(prepared, nan_is_null=True))


def _mask_unique(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    from . import checks

    return checks.duplicated_mask(prepared)


def _mask_in_set(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from . import checks

    if exp.reference is not None and "value_set" not in exp.kwargs:
        if reference is None:
            parent, column = exp.reference
            raise checks.RuleEvaluationError(
                exp.rule_id,
                f"needs the values of {parent}.{column}",
                hint="pass reference=checks.reference_values(settings, parent, column)",
            )
        allowed = reference
    else:
        value_set = checks.prepare_value_set(exp, kind, prepared.type)
        if value_set is None:
            return np.zeros(len(prepared), dtype=bool)  # GX: no value set -> vacuously true
        allowed = pa.array(value_set, type=prepared.type)
    values, allowed = checks.comparable(prepared, pc.drop_null(allowed))
    return _present(prepared) & ~checks.bool_mask(checks.is_in(values, allowed))


def _mask_lengths(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    import pyarrow.compute as pc

    from . import checks

    lengths = pc.utf8_length(checks.as_text(prepared))
    return _present(prepared) & checks.outside(
        lengths, checks.range_bounds(exp), exp.rule_id, exp.kwargs
    )


def _mask_regex(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    import pyarrow.compute as pc

    from . import checks

    regex = exp.kwargs.get("regex")
    if not isinstance(regex, str):
        raise checks.RuleEvaluationError(exp.rule_id, "kwargs.regex is missing or not text")
    return _present(prepared) & ~checks.bool_mask(pc.match_substring_regex(prepared, regex))


def _mask_between(prepared: Any, exp: Expectation, reference: Any, kind: Any) -> np.ndarray:
    from . import checks

    return _present(prepared) & checks.outside(
        prepared, checks.range_bounds(exp, prepared.type), exp.rule_id, exp.kwargs
    )


# --- quarantine reasons ---------------------------------------------------------------------------


def range_text(kwargs: Mapping[str, Any]) -> str:
    """'1-5', '>= 1' or '<= 5': a rule's range in a reason."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is not None and hi is not None:
        return f"{lo}-{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _reason_in_set(exp: Expectation) -> str:
    if exp.reference is not None:
        parent, parent_column = exp.reference
        return f"is not a {parent_column} of {parent}"
    return f"is not one of the {len(exp.kwargs.get('value_set') or [])} allowed values"


def _reason_regex(exp: Expectation) -> str:
    value_type = exp.meta.get("value_type")
    if value_type:
        return f"is not a valid {value_type}"
    return f"does not match {exp.kwargs.get('regex')}"


# --- the records ----------------------------------------------------------------------------------

_RECORDS = (
    RuleKind(
        expectation_type="expect_table_row_count_to_be_between",
        gx_class="ExpectTableRowCountToBeBetween",
        dimension="integrity",
        shape=TABLE,
        form=None,
        mask=None,
        reason=None,
        show_value=False,
        scope=TABLE_SCOPE,
        sees_nulls=False,
        has_bounds=True,
        profiling_may_gate=True,  # a row count that collapsed
        summary="the table's row count is within min_value-max_value",
    ),
    RuleKind(
        expectation_type="expect_table_column_count_to_equal",
        gx_class="ExpectTableColumnCountToEqual",
        dimension="integrity",
        shape=TABLE,
        form=None,
        mask=None,
        reason=None,
        show_value=False,
        scope=TABLE_SCOPE,
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=False,
        summary="the table has exactly `value` columns",
    ),
    RuleKind(
        expectation_type="expect_column_to_exist",
        gx_class="ExpectColumnToExist",
        dimension="integrity",
        shape=TABLE,
        form=None,
        mask=None,
        reason=None,
        show_value=False,
        scope=TABLE_SCOPE,
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=True,  # a renamed or dropped column
        summary="the column is in the table",
    ),
    RuleKind(
        expectation_type="expect_column_values_to_not_be_null",
        gx_class="ExpectColumnValuesToNotBeNull",
        dimension="completeness",
        shape=COLUMN,
        form=VALUES,
        mask=_mask_not_null,
        reason=lambda exp: "is empty",
        show_value=False,
        scope=ROW_SCOPE,
        sees_nulls=True,
        has_bounds=False,
        profiling_may_gate=True,  # key completeness; a complete column gone mostly null
        summary="every row holds a value (placeholders count as null)",
    ),
    RuleKind(
        expectation_type="expect_column_values_to_be_unique",
        gx_class="ExpectColumnValuesToBeUnique",
        dimension="uniqueness",
        shape=COLUMN,
        form=CANONICAL_FORM,
        mask=_mask_unique,
        reason=lambda exp: "is not unique in the table",
        show_value=True,
        scope=TABLE_SCOPE,
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=True,  # key uniqueness
        summary="no value occurs twice (ids compared canonically, '5.0' = '5')",
    ),
    RuleKind(
        expectation_type="expect_column_values_to_be_in_set",
        gx_class="ExpectColumnValuesToBeInSet",
        dimension="validity",
        shape=COLUMN,
        form=VALUES,
        mask=_mask_in_set,
        reason=_reason_in_set,
        show_value=True,
        scope=ROW_SCOPE,  # TABLE_SCOPE with meta.reference: see scope_of
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=True,  # at its mostly: a significant share of unseen codes or orphans
        summary="every value is in value_set (or, with meta.reference, in the parent column)",
    ),
    RuleKind(
        expectation_type="expect_column_value_lengths_to_be_between",
        gx_class="ExpectColumnValueLengthsToBeBetween",
        dimension="validity",
        shape=COLUMN,
        form=TEXT_FORM,
        mask=_mask_lengths,
        reason=lambda exp: f"has a length outside {range_text(exp.kwargs)}",
        show_value=True,
        scope=ROW_SCOPE,
        sees_nulls=False,
        has_bounds=True,
        profiling_may_gate=False,
        summary="every value's length is within min_value-max_value",
    ),
    RuleKind(
        expectation_type="expect_column_values_to_match_regex",
        gx_class="ExpectColumnValuesToMatchRegex",
        dimension="validity",
        shape=COLUMN,
        form=TEXT_FORM,
        mask=_mask_regex,
        reason=_reason_regex,
        show_value=True,
        scope=ROW_SCOPE,
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=True,  # type conformance (meta.value_type): the value parses as its Silver type
        summary="every value matches regex (with meta.value_type: parses as that type)",
    ),
    RuleKind(
        expectation_type="expect_column_values_to_be_between",
        gx_class="ExpectColumnValuesToBeBetween",
        dimension="validity",
        shape=COLUMN,
        form=NUMBER_FORM,
        mask=_mask_between,
        reason=lambda exp: f"is outside {range_text(exp.kwargs)}",
        show_value=True,
        scope=ROW_SCOPE,
        sees_nulls=False,
        has_bounds=True,
        profiling_may_gate=True,  # at its mostly: a significant share of sentinels, sign flips, unit errors
        summary="every value is a number (or date) within min_value-max_value",
    ),
    RuleKind(
        expectation_type="expect_compound_columns_to_be_unique",
        gx_class="ExpectCompoundColumnsToBeUnique",
        dimension="uniqueness",
        shape=MULTICOLUMN,
        form=CANONICAL_FORM,
        mask=None,  # several columns: checks.duplicated_rows over the column_list
        reason=lambda exp: "is not unique in the table",
        show_value=True,
        scope=TABLE_SCOPE,
        sees_nulls=False,
        has_bounds=False,
        profiling_may_gate=True,  # composite key uniqueness
        summary="no combination of the column_list values occurs twice (a composite key)",
    ),
)

KINDS: dict[str, RuleKind] = {record.expectation_type: record for record in _RECORDS}


def rule_kind(expectation_type: str) -> RuleKind:
    """The record of an expectation type; KeyError naming the supported ones otherwise."""
    try:
        return KINDS[expectation_type]
    except KeyError:
        raise KeyError(
            f"unsupported expectation_type {expectation_type!r}; supported: "
            + ", ".join(sorted(KINDS))
        ) from None


def kinds_of_shape(shape: str) -> dict[str, str]:
    """expectation_type -> dimension of every kind of one shape (rules.py's vocabulary maps)."""
    return {k: r.dimension for k, r in KINDS.items() if r.shape == shape}


def scope_of(expectation: Expectation) -> str:
    """ROW_SCOPE or TABLE_SCOPE for a rule: a referential rule depends on another table."""
    if expectation.reference is not None:
        return TABLE_SCOPE
    return KINDS[expectation.expectation_type].scope


def bounds_problem(kwargs: Mapping[str, Any]) -> str | None:
    """Why a range rule's bounds cannot be run, or None: min_value > max_value is a rule nothing
    can meet (GX refuses it; a mask would quarantine every row), so it is refused everywhere."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if lo is None or hi is None:
        return None
    try:
        inverted = lo > hi
    except TypeError:  # e.g. a date and a number: the range check proper reports it
        return None
    if inverted:
        return f"min_value {lo!r} is greater than max_value {hi!r}: no value can meet the rule"
    return None
