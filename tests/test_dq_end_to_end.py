"""Profiling then checking, against the generator's ground truth.

On the defective sample lake every injected defect must be flagged by at least one generated
rule (recall 100 %), with the same row masks quarantine uses. On a lake without defects the
rules profiled from it must let Great Expectations pass every non-empty table (no false alarm).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from conftest import make_settings

from aims_nb_utils import checks
from aims_nb_utils.profiling import profile_tables
from aims_nb_utils.rules import load_rule_file


def test_every_injected_defect_is_flagged_by_a_generated_rule(fresh_home: Path) -> None:
    from aims_nb_utils.sample_data import read_manifest

    settings = make_settings(fresh_home)
    run = profile_tables(settings, max_workers=2)
    assert not run.errors and len(run.written) == 68

    manifest = read_manifest(settings.paths.bronze)
    assert set(manifest.defect_kind) == {
        "null_required",
        "out_of_value_set",
        "too_long",
        "duplicate_id",
        "orphan_fk",
        "bad_date",
        "bad_number",
    }
    misses: list[tuple[str, int, str, str, str]] = []
    flagged_by: Counter[str] = Counter()
    for table, defects in manifest.groupby("table"):
        data = pq.read_table(settings.paths.bronze_file(table))
        rule_file = load_rule_file(settings.paths.rule_file(table))
        flagged = np.zeros(data.num_rows, dtype=bool)
        rows = defects.row_index.to_numpy()
        for rule in rule_file.column_rules():
            reference = None
            if rule.reference is not None:
                reference = checks.reference_values(settings, *rule.reference)
            kind = checks.column_kind(table, rule.column, rule)
            mask = checks.unexpected_mask(
                data, rule, settings.null_placeholders, reference=reference, kind=kind
            )
            # Credit each defect to the first rule (in file order) that flags it.
            flagged_by[rule.expectation_type] += int((mask[rows] & ~flagged[rows]).sum())
            flagged |= mask
        for defect in defects.itertuples():
            if not flagged[defect.row_index]:
                misses.append(
                    (table, defect.row_index, defect.column, defect.defect_kind, defect.value)
                )
    by_kind = Counter(kind for *_, kind, _ in misses)
    assert not misses, (
        f"{len(misses)} of {len(manifest)} injected defects not flagged, by kind {dict(by_kind)}; "
        f"first: {misses[:10]}"
    )
    # Each kind of rule pulls its weight (not one catch-all rule flagging everything).
    for etype in (
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_match_regex",
    ):
        assert flagged_by[etype] > 0, etype


def test_rules_profiled_from_a_clean_lake_pass_validation(fresh_clean_home: Path) -> None:
    from aims_nb_utils.validation import validate_tables

    settings = make_settings(fresh_clean_home)
    profile_tables(settings, max_workers=2)
    run = validate_tables(settings, max_workers=2, write=False)
    assert len(run.tables) == 68
    empty = {t for t in run.tables if pq.read_metadata(settings.paths.bronze_file(t)).num_rows == 0}
    assert len(empty) == 13
    not_passed = {
        table: (result.status, result.threshold_failures or result.failures[:3] or result.error)
        for table, result in run.tables.items()
        if table not in empty and result.status != "PASSED"
    }
    assert not not_passed, f"false alarms on a clean lake: {not_passed}"
    assert all(run.tables[t].status == "SKIPPED" for t in empty)
