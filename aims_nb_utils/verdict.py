"""A table's verdict from its rules' outcomes: gates, the share of rows quarantined, the shares.

One function decides PASSED or FAILED, so every engine (GX validation, a Spark one) gives the same
verdict and the same reasons. A table FAILS when any of these holds, each giving one reason:

1. a gating rule failed (``meta.gate: true``): some rules must never break, whatever share of the
   others passed (a duplicated primary key, a renamed column, a type that no longer parses);
2. the rows breaking at least one quarantining rule (``meta.quarantine``, default true) exceed
   ``max_quarantine_percent`` of the table's rows: a PASSED table never loses most of its rows
   to quarantine;
3. the users' semantics, unchanged: for a severity present, the share of its rules that passed is
   below ``quality_thresholds.<severity>``; or the quality score (share of all rules passed) is
   below ``dq_threshold``.

A rule file without gates whose tables stay under ``max_quarantine_percent`` gets exactly the
verdict and the ``threshold_failures`` it always had. Reasons are ordered gates, quarantine,
shares; ``threshold_failures`` (the legacy field every consumer shows as "why") holds all of them
as text, ``failed_because`` the same reasons as records (kind, rule, column, counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import rule_kinds
from .rules import SEVERITIES, Expectation, RuleFile

GATE = "gate"
QUARANTINE = "quarantine"
SEVERITY_SHARE = "severity_threshold"
SCORE = "quality_score"


class RuleOutcome(Protocol):
    """What the verdict reads of one rule's result (validation.RuleResult has it)."""

    rule_id: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: Any
    error: str | None
    rule_index: int


@dataclass
class Judgement:
    """The verdict of a validated table and every reason it failed (none when PASSED)."""

    status: str
    failed_because: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """The reasons as text, in order (the results file's ``threshold_failures``)."""
        return [str(r["text"]) for r in self.failed_because]


def fmt_pct(value: float, other: float) -> str:
    """One decimal, more when one decimal would make a failing figure look equal to its bound."""
    for digits in (1, 2, 3, 4):
        text = f"{value:.{digits}f}"
        if text != f"{other:.{digits}f}":
            return text
    return f"{value:.6f}"


def _observed(outcome: RuleOutcome, rule: Expectation | None = None) -> str:
    """What was seen when a rule failed, in a few words (and what was expected, for a range)."""
    if outcome.error:
        return str(outcome.error)
    if outcome.unexpected_count is not None:
        total = f" of {outcome.element_count:,}" if outcome.element_count is not None else ""
        pct = (
            f" ({outcome.unexpected_percent:.2f}%)"
            if isinstance(outcome.unexpected_percent, (int, float))
            else ""
        )
        return f"{outcome.unexpected_count:,}{total} rows unexpected{pct}"
    if outcome.observed_value is not None:
        expected = ""
        if rule is not None and rule_kinds.KINDS[rule.expectation_type].has_bounds:
            expected = f", expected {rule_kinds.range_text(rule.kwargs)}"
        elif rule is not None and "value" in rule.kwargs:
            expected = f", expected {rule.kwargs['value']}"
        return f"observed {outcome.observed_value}{expected}"
    if outcome.expectation_type == "expect_column_to_exist" and outcome.column:
        return f"column {outcome.column} is not in the data"
    return "the rule is not met"


def gate_reason(outcome: RuleOutcome, rule: Expectation | None = None) -> dict[str, Any]:
    """The record of a failed gating rule: which rule, which column, what was observed."""
    return {
        "kind": GATE,
        "rule": outcome.rule_id,
        "expectation": outcome.expectation_type,
        "column": outcome.column,
        "unexpected_count": outcome.unexpected_count,
        "unexpected_percent": outcome.unexpected_percent,
        "observed_value": outcome.observed_value,
        "error": outcome.error,
        "text": f"gating rule {outcome.rule_id} failed: {_observed(outcome, rule)}",
    }


def quarantine_reason(
    quarantine_rows: int, rows: int, max_quarantine_percent: float
) -> dict[str, Any] | None:
    """The record saying too many rows would be quarantined, or None when within the bound."""
    if not rows:
        return None
    percent = 100.0 * quarantine_rows / rows
    if percent <= max_quarantine_percent:
        return None
    return {
        "kind": QUARANTINE,
        "quarantine_rows": quarantine_rows,
        "quarantine_percent": percent,
        "max_quarantine_percent": max_quarantine_percent,
        "text": (
            f"{quarantine_rows:,} of {rows:,} rows ({fmt_pct(percent, max_quarantine_percent)}%) "
            f"break a quarantining rule > max_quarantine_percent "
            f"{fmt_pct(max_quarantine_percent, percent)}%"
        ),
    }


def judge(
    outcomes: Sequence[RuleOutcome],
    rule_file: RuleFile,
    dq_threshold: float,
    score: float,
    quarantine_rows: int | None = None,
    rows: int | None = None,
    max_quarantine_percent: float = 100.0,
) -> Judgement:
    """PASSED or FAILED with every reason (see the module docstring).

    ``outcomes`` carry their rule's index in ``rule_file.expectations`` (``rule_index``), which
    says whether the rule gates; ``score`` is the share of rules passed (0-100);
    ``quarantine_rows`` of ``rows`` break a quarantining rule (None: not measured, no check)."""
    reasons: list[dict[str, Any]] = []
    expectations = rule_file.expectations
    for outcome in outcomes:
        index = outcome.rule_index
        if not outcome.success and 0 <= index < len(expectations) and expectations[index].gate:
            reasons.append(gate_reason(outcome, expectations[index]))
    if quarantine_rows is not None and rows:
        too_many = quarantine_reason(quarantine_rows, rows, max_quarantine_percent)
        if too_many is not None:
            reasons.append(too_many)
    for severity in SEVERITIES:
        members = [o for o in outcomes if o.severity == severity]
        if not members:
            continue
        share = 100.0 * sum(o.success for o in members) / len(members)
        bound = rule_file.threshold(severity)
        if share < bound:
            reasons.append(
                {
                    "kind": SEVERITY_SHARE,
                    "severity": severity,
                    "share": share,
                    "threshold": bound,
                    "text": f"{severity}: {fmt_pct(share, bound)}% < {fmt_pct(bound, share)}%",
                }
            )
    if score < dq_threshold:
        reasons.append(
            {
                "kind": SCORE,
                "score": score,
                "threshold": dq_threshold,
                "text": f"quality score {fmt_pct(score, dq_threshold)}% < "
                f"{fmt_pct(dq_threshold, score)}%",
            }
        )
    return Judgement("FAILED" if reasons else "PASSED", reasons)
