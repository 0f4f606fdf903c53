"""Profiling for verdicts that mean something (issue 11): which rules gate a table, rules that
generalise to new data (calendar parts, growing measures, rare real codes) while sentinels and
unseen codes in a significant share of rows fail it, and rules calibrated on several drops."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import cli, state
from aims_nb_utils.profiling import profile_table, profile_tables, suggest_rules
from aims_nb_utils.rules import Expectation, RuleFile, load_rule_file
from aims_nb_utils.settings import Settings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
ROWS = 4_000
TABLE = "aims_demo"


def _write(settings: Settings, columns: dict[str, list]) -> None:
    path = settings.paths.bronze_file(TABLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pa.table({k: pa.array(v) for k, v in columns.items()})
    if path.exists():  # a new drop: a new file time even within the same clock tick
        path.unlink()
        time.sleep(0.01)
    pq.write_table(data, path)


def _home(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    (home / "data" / "bronze").mkdir(parents=True)
    return make_settings(home)


def _demo(rng: np.random.Generator, rows: int = ROWS, start: int = 0) -> dict[str, list]:
    """A typical all-text extract (the AIMS export's shape): an integer key, a status code, two
    measures, a sparse note and calendar parts of the first half of a year."""
    amounts = rng.uniform(10, 900, rows)
    return {
        "ID": [str(13_000_000 + start + i) for i in range(rows)],
        "STATUS": list(rng.choice(["Active", "Closed", "Proposed"], rows, p=[0.6, 0.3, 0.1])),
        "AMOUNT": [f"{v:.2f}" for v in amounts],
        "WEIGHT": [f"{v:.3f}" for v in rng.uniform(1.0, 50.0, rows)],
        "NOTE": [None if i % 3 else f"note {i}" for i in range(rows)],
        "MONTH": [str(v) for v in rng.integers(1, 7, rows)],
        "YEAR": ["2024"] * rows,
    }


def _rules(settings: Settings) -> dict[str, Expectation]:
    return {e.rule_id: e for e in load_rule_file(settings.paths.rule_file(TABLE)).expectations}


def _verdict(settings: Settings) -> tuple[str, list[str]]:
    from aims_nb_utils.validation import validate_tables

    result = validate_tables(settings, tables=[TABLE]).tables[TABLE]
    return result.status, list(result.threshold_failures or [])


def test_gates_mark_the_rules_whose_failure_means_the_table_cannot_be_trusted(
    tmp_path: Path,
) -> None:
    settings = _home(tmp_path)
    _write(settings, _demo(np.random.default_rng(1)))
    rule_file = suggest_rules(profile_table(settings, TABLE), settings)
    gates = {e.rule_id for e in rule_file.expectations if e.meta.get("gate") is True}
    rules = {e.rule_id: e for e in rule_file.expectations}

    # a row-count collapse, a dropped or renamed column, the key's uniqueness and completeness,
    # a complete column going null, a type that no longer parses
    row_count = rules["expect_table_row_count_to_be_between"]
    assert row_count.rule_id in gates and row_count.kwargs["min_value"] == ROWS // 10
    for column in ("ID", "STATUS", "AMOUNT", "NOTE", "MONTH"):
        assert f"expect_column_to_exist({column})" in gates
    assert "expect_column_values_to_be_unique(ID)" in gates
    assert "mostly" not in rules["expect_column_values_to_be_unique(ID)"].kwargs  # was unique
    for column in ("ID", "STATUS", "AMOUNT", "WEIGHT"):
        assert f"expect_column_values_to_not_be_null({column})" in gates
    assert "expect_column_values_to_match_regex(AMOUNT)" in gates
    # a sparse column keeps the share-based verdict and its rows
    note = rules["expect_column_values_to_not_be_null(NOTE)"]
    assert note.rule_id not in gates and note.meta["quarantine"] is False
    # drift in the number of columns is not a gate (an added column is reported by its rule)
    assert "expect_table_column_count_to_equal" not in gates


def test_calendar_parts_get_their_domain_not_a_value_set(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    _write(settings, _demo(np.random.default_rng(2)))
    rules = _rules_of(settings)
    kinds = {(e.expectation_type, e.column) for e in rules.values()}
    for column in ("MONTH", "YEAR"):
        assert ("expect_column_values_to_be_in_set", column) not in kinds, column
    month = rules["expect_column_values_to_be_between(MONTH)"]
    assert (month.kwargs["min_value"], month.kwargs["max_value"]) == (1, 12)
    assert month.meta["calendar_part"] == "month"
    year = rules["expect_column_values_to_be_between(YEAR)"]
    assert year.kwargs["min_value"] <= 2024 and year.kwargs["max_value"] >= 2030
    # the status code is genuinely categorical: it keeps its set
    assert rules["expect_column_values_to_be_in_set(STATUS)"].kwargs["value_set"] == [
        "Active",
        "Closed",
        "Proposed",
    ]


def _rules_of(settings: Settings) -> dict[str, Expectation]:
    rule_file: RuleFile = suggest_rules(profile_table(settings, TABLE), settings)
    return {e.rule_id: e for e in rule_file.expectations}


def test_a_second_half_of_the_year_passes_and_loses_no_row(tmp_path: Path) -> None:
    """Months 7-12, a measure slightly past its old maximum, new keys: ordinary new data."""
    settings = _home(tmp_path)
    rng = np.random.default_rng(3)
    _write(settings, _demo(rng))
    profile_tables(settings, max_workers=1)
    later = _demo(rng, start=ROWS)
    later["MONTH"] = [str(v) for v in rng.integers(7, 13, ROWS)]
    later["AMOUNT"] = [f"{v:.2f}" for v in rng.uniform(10, 990, ROWS)]  # 10 % past the max
    later["WEIGHT"] = [f"{v:.3f}" for v in rng.uniform(1.0, 60.0, ROWS)]
    _write(settings, later)
    status, why = _verdict(settings)
    assert status == "PASSED", why
    from aims_nb_utils.checks import unexpected_mask

    data = pq.read_table(settings.paths.bronze_file(TABLE))
    for rule in _rules(settings).values():
        if rule.is_row_level and rule.meta.get("quarantine", True):
            mask = unexpected_mask(data, rule, list(settings.null_placeholders))
            assert not mask.any(), f"{rule.rule_id} would quarantine {int(mask.sum())} rows"


@pytest.mark.parametrize(
    ("share", "fails"),
    [(0.005, False), (0.05, True)],
)
def test_a_sentinel_fails_the_table_only_in_a_significant_share_of_rows(
    tmp_path: Path, share: float, fails: bool
) -> None:
    settings = _home(tmp_path)
    rng = np.random.default_rng(4)
    _write(settings, _demo(rng))
    profile_tables(settings, max_workers=1)
    rule = _rules(settings)["expect_column_values_to_be_between(AMOUNT)"]
    assert rule.kwargs["max_value"] < 99_999 and rule.meta["gate"] is True
    drop = _demo(rng)
    hit = rng.choice(ROWS, int(ROWS * share), replace=False)
    for i in hit:
        drop["AMOUNT"][i] = "99999"
    _write(settings, drop)
    status, why = _verdict(settings)
    assert (status == "FAILED") is fails, why
    if fails:
        assert any("expect_column_values_to_be_between(AMOUNT)" in w for w in why), why


@pytest.mark.parametrize(("share", "fails"), [(0.005, False), (0.05, True)])
def test_an_unseen_code_fails_the_table_only_in_a_significant_share(
    tmp_path: Path, share: float, fails: bool
) -> None:
    settings = _home(tmp_path)
    rng = np.random.default_rng(5)
    _write(settings, _demo(rng))
    profile_tables(settings, max_workers=1)
    drop = _demo(rng)
    for i in rng.choice(ROWS, int(ROWS * share), replace=False):
        drop["STATUS"][i] = "Suspended"
    _write(settings, drop)
    status, why = _verdict(settings)
    assert (status == "FAILED") is fails, why


def test_a_real_rare_code_is_kept_and_its_rows_are_not_defects(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    rng = np.random.default_rng(6)
    columns = _demo(rng, rows=20_000)
    for i in (5, 7_000, 15_000):  # a real code on 0.015 % of the rows
        columns["STATUS"][i] = "Withdrawn"
    columns["STATUS"][9] = "??"  # and a value whose characters are unlike any code's
    _write(settings, columns)
    rule = _rules_of(settings)["expect_column_values_to_be_in_set(STATUS)"]
    assert "Withdrawn" in rule.kwargs["value_set"]
    assert "??" not in rule.kwargs["value_set"]
    assert rule.meta["observed_excluded_values"] == {"??": 1}
    assert "characters" in rule.meta["exclusion_evidence"]["??"]


def test_an_extreme_outlier_is_left_out_of_the_range_with_its_evidence(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    columns = _demo(np.random.default_rng(7))
    columns["AMOUNT"][11] = "99999"
    _write(settings, columns)
    rule = _rules_of(settings)["expect_column_values_to_be_between(AMOUNT)"]
    assert rule.kwargs["max_value"] < 99_999
    outliers = rule.meta["observed_outliers"]
    assert outliers["above"]["rows"] == 1 and outliers["above"]["values"] == [99999]
    assert "gap" in outliers["evidence"]
    assert rule.meta["observed_max"] == 99999


def test_history_widens_sets_ranges_and_null_rates_to_every_drop(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    rng = np.random.default_rng(8)
    first = _demo(rng)
    first["NOTE"] = [None if i % 5 < 2 else "n" for i in range(ROWS)]  # 40 % null
    _write(settings, first)
    profile_tables(settings, max_workers=1)  # records drop 1
    second = _demo(rng, start=ROWS)
    second["STATUS"] = list(rng.choice(["Active", "Closed", "Retired"], ROWS))
    second["AMOUNT"] = [f"{v:.2f}" for v in rng.uniform(2_000, 5_000, ROWS)]
    second["NOTE"] = [None if i % 5 == 0 else "n" for i in range(ROWS)]  # 20 % null
    _write(settings, second)

    alone = _rules_of(settings)
    assert "Proposed" not in alone["expect_column_values_to_be_in_set(STATUS)"].kwargs["value_set"]

    args = ["profile", "--home", str(settings.paths.home), "--history", "2", "--max-workers", "1"]
    assert cli.main(args) == 0
    rules = _rules(settings)
    in_set = rules["expect_column_values_to_be_in_set(STATUS)"]
    assert in_set.kwargs["value_set"] == ["Active", "Closed", "Proposed", "Retired"]
    assert in_set.meta["observed_drops"] == 2
    amount = rules["expect_column_values_to_be_between(AMOUNT)"]
    assert amount.meta["observed_min"] < 20 and amount.meta["observed_max"] > 4_900
    assert amount.kwargs["min_value"] <= amount.meta["observed_min"]
    note = rules["expect_column_values_to_not_be_null(NOTE)"]
    assert note.meta["observed_null_percent_max"] == 40.0  # the worst drop's share
    assert note.kwargs["mostly"] == pytest.approx(1 - 0.4 * 1.5)  # tolerates half again
    # both drops are kept in the state database, newest first
    drops = state.drop_statistics(settings.paths.state_db, TABLE, 5)
    assert [d["rows"] for d in drops] == [ROWS, ROWS] and len({d["drop_id"] for d in drops}) == 2
    # the first drop's file is gone: validating it again against these rules passes
    _write(settings, first)
    status, why = _verdict(settings)
    assert status == "PASSED", why


def test_history_must_be_at_least_one_drop(tmp_path: Path, capsys) -> None:
    settings = _home(tmp_path)
    _write(settings, _demo(np.random.default_rng(9), rows=300))
    with pytest.raises(SystemExit):
        cli.main(["profile", "--home", str(settings.paths.home), "--history", "0"])
    assert "give 1 or more" in capsys.readouterr().err


def test_an_unwritable_state_database_costs_the_history_not_the_rules(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    _write(settings, _demo(np.random.default_rng(10), rows=300))
    blocker = settings.paths.state_db.parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the state folder should be")
    with pytest.warns(UserWarning, match="drop statistics not recorded"):
        run = profile_tables(settings, max_workers=1)
    assert run.written == [settings.paths.rule_file(TABLE)]
    # ... but a profile that must read the history says why it cannot
    from aims_nb_utils.errors import AimsError

    with pytest.raises(AimsError, match="state"):
        profile_tables(settings, max_workers=1, history=2, force=True)


def test_a_row_identity_that_may_be_chance_does_not_gate(tmp_path: Path) -> None:
    """600 times of day unique among 86,400 seconds: the best key found, but chance would give
    about two duplicate pairs only; a later drop may repeat one. A dense ID gates."""
    settings = _home(tmp_path)
    rng = np.random.default_rng(11)
    seconds = rng.choice(86_400, 600, replace=False)
    _write(settings, {"T": list(seconds), "CODE": list(rng.choice(["a", "b"], 600))})
    rules = _rules_of(settings)
    unique = rules["expect_column_values_to_be_unique(T)"]
    assert "gate" not in unique.meta and unique.meta["quarantine"] is False
    _write(settings, {"T": list(range(600)), "CODE": list(rng.choice(["a", "b"], 600))})
    unique = _rules_of(settings)["expect_column_values_to_be_unique(T)"]
    assert unique.meta["gate"] is True and unique.meta["quarantine"] is True
