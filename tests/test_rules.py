"""The rule-file model: the legacy files load as they are, bad files say where, thresholds move."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from aims_nb_utils import cli
from aims_nb_utils.errors import RuleFileError, SettingsError
from aims_nb_utils.rules import (
    DEFAULT_QUALITY_THRESHOLDS,
    adjust_thresholds,
    adjust_thresholds_text,
    load_rule_file,
    load_rules_dir,
    save_rule_file,
    threshold_values,
)


@pytest.fixture
def legacy_dir(reference_dir: Path) -> Path:
    return reference_dir / "legacy_configs"


@pytest.fixture
def rules_copy(legacy_dir: Path, tmp_path: Path) -> Path:
    """Three legacy files in a private folder (small, medium and a 58-column table)."""
    target = tmp_path / "rules"
    target.mkdir()
    for table in ("aims_activitydates", "aims_assets", "aims_assetattributes"):
        name = f"{table}_validation.yml"
        shutil.copy(legacy_dir / name, target / name)
    return target


# --- legacy files ----------------------------------------------------------------------------


def test_all_legacy_files_load_unchanged(legacy_dir: Path) -> None:
    files = sorted(legacy_dir.glob("*_validation.yml"))
    assert len(files) == 68
    for path in files:
        raw = yaml.safe_load(path.read_text())
        rule_file = load_rule_file(path)
        # Nothing dropped or rewritten: the model gives back exactly the document it read.
        assert rule_file.to_dict() == raw, path.name
        assert rule_file.table == path.name.removesuffix("_validation.yml")
        assert len(rule_file.expectations) == len(raw["expectations"]) > 0


def test_legacy_files_round_trip(legacy_dir: Path, tmp_path: Path) -> None:
    loaded = load_rules_dir(legacy_dir)
    assert len(loaded) == 68
    for table, rule_file in loaded.items():
        saved = save_rule_file(rule_file, tmp_path / f"{table}_validation.yml")
        again = load_rule_file(saved)
        assert again.to_dict() == rule_file.to_dict(), table
        assert [e.rule_id for e in again.expectations] == [
            e.rule_id for e in rule_file.expectations
        ]
        # Legacy rules carry no generator marker: they count as written by a person.
        assert again.has_manual_edits()


# --- bad files name the file and the rule ----------------------------------------------------


def _write(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "aims_demo_validation.yml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _doc(*expectations: dict, thresholds: dict | None = None) -> dict:
    return {
        "validation_name": "aims_aims_demo",
        "quality_thresholds": thresholds or dict(DEFAULT_QUALITY_THRESHOLDS),
        "expectations": list(expectations),
    }


def test_unknown_expectation_type_names_file_and_rule(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _doc(
            {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "ID"}},
            {"expectation_type": "expect_column_values_to_be_purple", "kwargs": {"column": "ID"}},
        ),
    )
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "expectations[1]" in message and "expect_column_values_to_be_purple" in message
    assert "expect_column_values_to_not_be_null" in message  # the hint lists what is supported


def test_missing_column_kwarg_names_the_rule(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _doc({"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {}})
    )
    with pytest.raises(RuleFileError, match=r"expectations\[0\].*not_be_null.*kwargs.column"):
        load_rule_file(path)


def test_mostly_as_percentage_is_refused(tmp_path: Path) -> None:
    rule = {
        "expectation_type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "NAME", "mostly": 95},
    }
    with pytest.raises(RuleFileError) as info:
        load_rule_file(_write(tmp_path, _doc(rule)))
    assert "column NAME" in str(info.value) and "mostly=95" in str(info.value)
    assert "fraction" in str(info.value)


def test_threshold_as_fraction_is_refused_with_a_hint(tmp_path: Path) -> None:
    thresholds = {"critical": 0.95, "high": 95.0, "medium": 80.0, "low": 50.0}
    rule = {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "ID"}}
    with pytest.raises(RuleFileError) as info:
        load_rule_file(_write(tmp_path, _doc(rule, thresholds=thresholds)))
    assert "quality_thresholds.critical" in str(info.value)
    assert "write 95, not 0.95" in str(info.value)


# --- thresholds ------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_threshold_values_sets_critical_and_high_only_unless_asked() -> None:
    assert threshold_values(90) == {"critical": 90.0, "high": 90.0}
    assert threshold_values(90, medium=70, low=40) == {
        "critical": 90.0,
        "high": 90.0,
        "medium": 70.0,
        "low": 40.0,
    }
    with pytest.raises(SettingsError, match="write 95, not 0.95"):
        threshold_values(0.95)
    with pytest.raises(SettingsError, match="low"):
        threshold_values(90, low=120)


def test_dry_run_writes_nothing_and_shows_a_diff(rules_copy: Path) -> None:
    before = _snapshot(rules_copy)
    changes = adjust_thresholds(rules_copy, threshold_values(90), dry_run=True)
    assert _snapshot(rules_copy) == before
    assert len(changes) == 3 and all(c.changed for c in changes)
    for change in changes:
        assert "-  critical: 95.0\n" in change.diff and "+  critical: 90.0\n" in change.diff
        assert "-  high: 95.0\n" in change.diff and "+  high: 90.0\n" in change.diff
        assert "medium" not in change.diff.replace("  medium: 80.0\n", "")  # context only
        assert change.after == {"critical": 90.0, "high": 90.0, "medium": 80.0, "low": 50.0}


def test_real_run_changes_only_the_threshold_lines_and_is_stable(rules_copy: Path) -> None:
    before = _snapshot(rules_copy)
    adjust_thresholds(rules_copy, threshold_values(90, medium=70))
    after = _snapshot(rules_copy)
    for name, old in before.items():
        old_lines = old.decode().splitlines()
        new_lines = after[name].decode().splitlines()
        assert len(old_lines) == len(new_lines)
        changed = {
            o.strip(): n.strip() for o, n in zip(old_lines, new_lines, strict=True) if o != n
        }
        assert changed == {
            "critical: 95.0": "critical: 90.0",
            "high: 95.0": "high: 90.0",
            "medium: 80.0": "medium: 70.0",
        }, name
        loaded = load_rule_file(rules_copy / name)
        assert loaded.quality_thresholds == {
            "critical": 90.0,
            "high": 90.0,
            "medium": 70.0,
            "low": 50.0,
        }
    second = adjust_thresholds(rules_copy, threshold_values(90, medium=70))
    assert not any(c.changed for c in second)
    assert _snapshot(rules_copy) == after  # byte-identical


def test_file_without_thresholds_gets_the_keys_and_keeps_everything_else() -> None:
    text = "validation_name: x\nexpectations:\n- expectation_type: expect_table_row_count_to_be_between\n"
    adjusted = adjust_thresholds_text(text, {"critical": 90.0, "high": 90.0})
    assert adjusted.startswith(text)
    assert yaml.safe_load(adjusted)["quality_thresholds"] == {"critical": 90.0, "high": 90.0}
    assert adjust_thresholds_text(adjusted, {"critical": 90.0, "high": 90.0}) == adjusted


def test_unknown_table_is_an_error_naming_the_file(rules_copy: Path) -> None:
    with pytest.raises(RuleFileError, match="aims_nosuch_validation.yml.*does not exist"):
        adjust_thresholds(rules_copy, threshold_values(90), tables=["aims_nosuch"])


def test_cli_dry_run_then_apply(rules_copy: Path, tmp_path: Path, capsys) -> None:
    base = ["--home", str(tmp_path), "--rules-dir", str(rules_copy)]
    before = _snapshot(rules_copy)
    assert cli.main(["adjust-thresholds", "--threshold", "92", "--dry-run", *base]) == 0
    out = capsys.readouterr().out
    assert "+  critical: 92.0" in out and "3 of 3 files would change" in out
    assert _snapshot(rules_copy) == before

    assert (
        cli.main(["adjust-thresholds", "--threshold", "92", "--tables", "aims_assets", *base]) == 0
    )
    out = capsys.readouterr().out
    assert f"changed {rules_copy / 'aims_assets_validation.yml'}" in out
    assert "1 of 1 files changed" in out
    assert load_rule_file(rules_copy / "aims_assets_validation.yml").threshold("critical") == 92.0
    assert (
        load_rule_file(rules_copy / "aims_activitydates_validation.yml").threshold("high") == 95.0
    )

    assert cli.main(["adjust-thresholds", "--threshold", "0.92", *base]) == 2
    assert "write 92, not 0.92" in capsys.readouterr().err


def test_compound_uniqueness_rules_and_type_overrides_load_and_save(tmp_path: Path) -> None:
    from aims_nb_utils.rules import dump_rule_file, parse_rule_file

    raw = {
        "keys": [["l_orderkey", "l_linenumber"]],
        "types": {"l_shipdate": "date"},
        "expectations": [
            {
                "expectation_type": "expect_compound_columns_to_be_unique",
                "kwargs": {"column_list": ["l_orderkey", "l_linenumber"]},
            }
        ],
    }
    rule_file = parse_rule_file(raw, tmp_path / "lineitem_validation.yml")
    rule = rule_file.expectations[0]
    assert rule.rule_id == "expect_compound_columns_to_be_unique(l_orderkey, l_linenumber)"
    assert rule.columns == ["l_orderkey", "l_linenumber"] and rule.quarantines_rows
    assert rule.dimension == "uniqueness" and rule_file.types == {"l_shipdate": "date"}
    again = parse_rule_file(
        yaml.safe_load(dump_rule_file(rule_file)), tmp_path / "x_validation.yml"
    )
    assert again.types == rule_file.types and again.expectations[0].kwargs == rule.kwargs
    bad = {**raw, "expectations": [{**raw["expectations"][0], "kwargs": {"column_list": "a"}}]}
    with pytest.raises(RuleFileError, match="column_list"):
        parse_rule_file(bad, tmp_path / "lineitem_validation.yml")
    with pytest.raises(RuleFileError, match="types"):
        parse_rule_file({**raw, "types": {"l_shipdate": "datetime"}}, tmp_path / "l_validation.yml")


def test_the_date_pattern_accepts_utc_offsets_only_after_a_time() -> None:
    import re

    from aims_nb_utils.rules import TYPE_PATTERNS

    ok = ["2013-01-01T10:00:00Z", "2021-03-04 05:06:07+02:00", "2021-03-04 05:06:07 -0500"]
    bad = ["2021-03-04Z", "2021-03-04-05", "2021-03-04 05:06:07+25:00"]
    assert all(re.match(TYPE_PATTERNS["date"], v) for v in ok)
    assert not any(re.match(TYPE_PATTERNS["date"], v) for v in bad)
