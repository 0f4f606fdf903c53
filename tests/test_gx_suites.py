"""Rule files <-> GX 1.x Expectation Suites: what a GX user loads, and back to the same rules."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import copy_home, make_settings

from aims_nb_utils.cli import main
from aims_nb_utils.errors import RuleFileError
from aims_nb_utils.gx_suites import (
    SuiteError,
    export_suites,
    import_suite,
    reference_parameter,
    rule_file_to_suite,
    suite_to_rule_file,
)
from aims_nb_utils.rules import RULE_FILE_SUFFIX, Expectation, RuleFile, load_rule_file


def _gx_suite(document: dict):
    from aims_nb_utils.gx_compat import import_gx

    gx = import_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gx.ExpectationSuite(**document)


def _assert_round_trip(path: Path) -> None:
    """export -> JSON text -> gx.ExpectationSuite keeps every rule -> import == the loaded file."""
    original = load_rule_file(path)
    document = json.loads(json.dumps(rule_file_to_suite(original), allow_nan=False))
    suite = _gx_suite(document)
    assert len(suite.expectations) == len(original.expectations), path.name
    assert [e.expectation_type for e in suite.expectations] == [
        e.expectation_type for e in original.expectations
    ]
    back = suite_to_rule_file(document, path)
    assert back.expectations == original.expectations, path.name
    assert back.to_dict() == original.to_dict(), path.name


def test_all_68_legacy_rule_files_round_trip_through_gx(reference_dir: Path) -> None:
    paths = sorted((reference_dir / "legacy_configs").glob(f"*{RULE_FILE_SUFFIX}"))
    assert len(paths) == 68
    for path in paths:
        _assert_round_trip(path)


@pytest.fixture(scope="module")
def profiled(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    from aims_nb_utils.profiling import profile_tables

    home = copy_home(lake_home, tmp_path_factory.mktemp("suites") / "home")
    settings = make_settings(home)
    profile_tables(settings, max_workers=2)
    return settings


def test_every_generated_rule_file_round_trips_through_gx(profiled) -> None:
    paths = sorted(profiled.paths.rules.glob(f"*{RULE_FILE_SUFFIX}"))
    assert len(paths) >= 60
    generated = [load_rule_file(p) for p in paths]
    # the sample lake exercises what a GX suite cannot say directly: references, keys, meta
    assert any(e.reference for rf in generated for e in rf.expectations)
    assert any(rf.keys for rf in generated)
    for path in paths:
        _assert_round_trip(path)


def test_gx_vocabulary_and_what_is_kept_in_meta(tmp_path: Path) -> None:
    rule_file = RuleFile(
        table="aims_child",
        expectations=[
            Expectation(
                "expect_column_values_to_be_in_set",
                {"column": "PARENT_ID", "mostly": 0.99},
                {"severity": "high", "reference": {"table": "aims_parent", "column": "ID"}},
            ),
            Expectation(
                "expect_column_values_to_not_be_null",
                {"column": "ID"},
                {"severity": "low", "description": "ID is always there", "gate": True},
            ),
        ],
        keys=[["ID"]],
        quality_thresholds={"critical": 100.0, "high": 90.0, "medium": 80.0, "low": 50.0},
        path=tmp_path / f"aims_child{RULE_FILE_SUFFIX}",
    )
    document = rule_file_to_suite(rule_file)
    reference, not_null = document["expectations"]
    assert document["name"] == "aims_child"
    assert reference["type"] == "expect_column_values_to_be_in_set"
    assert "expectation_type" not in reference
    assert reference["kwargs"]["value_set"] == {
        "$PARAMETER": reference_parameter("aims_parent", "ID")
    }
    assert reference["meta"]["reference"] == {"table": "aims_parent", "column": "ID"}
    assert (reference["severity"], not_null["severity"]) == ("warning", "info")
    assert not_null["description"] == "ID is always there"
    table_meta = document["meta"]["aims_rule_file"]
    assert table_meta["keys"] == [["ID"]]
    assert table_meta["quality_thresholds"]["high"] == 90.0
    assert _gx_suite(document).expectations[1].severity.value == "info"
    back = suite_to_rule_file(document, rule_file.path)
    assert "value_set" not in back.expectations[0].kwargs  # read from the parent again
    assert back.expectations[0].reference == ("aims_parent", "ID")
    assert back.expectations == rule_file.expectations


def test_a_suite_written_by_a_gx_user_imports_with_mapped_severities(tmp_path: Path) -> None:
    suite = {
        "name": "aims_orders",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "ID"}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "QTY", "min_value": 0},
                "severity": "warning",
                "description": "no negative quantities",
            },
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": "ID"},
                "severity": "info",
            },
        ],
        "meta": {"great_expectations_version": "1.5.0"},
    }
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(suite))
    target = import_suite(path, tmp_path / "rules")
    assert target.name == f"aims_orders{RULE_FILE_SUFFIX}"
    rule_file = load_rule_file(target)
    # GX's default severity is critical; warning -> medium, info -> low
    assert [e.severity for e in rule_file.expectations] == ["critical", "medium", "low"]
    assert rule_file.expectations[1].meta["description"] == "no negative quantities"
    assert rule_file.expectations[1].kwargs == {"column": "QTY", "min_value": 0}


def test_import_refuses_what_the_platform_cannot_run(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "name": "aims_x",
                "expectations": [
                    {"type": "expect_column_to_exist", "kwargs": {"column": "A"}},
                    {"type": "expect_column_kl_divergence_to_be_less_than", "kwargs": {}},
                ],
            }
        )
    )
    with pytest.raises(RuleFileError, match=r"expectations\[1\].*unsupported expectation_type"):
        import_suite(path, tmp_path / "rules")
    assert not (tmp_path / "rules").exists()  # nothing half-written
    path.write_text(json.dumps({"name": "../evil", "expectations": []}))
    with pytest.raises(Exception, match="not a valid table name"):
        import_suite(path, tmp_path / "rules")


def test_export_names_a_rule_gx_would_drop(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / f"aims_bad{RULE_FILE_SUFFIX}").write_text(
        "expectations:\n"
        "- expectation_type: expect_column_to_exist\n  kwargs: {column: A}\n"
        "- expectation_type: expect_column_values_to_be_unique\n"
        "  kwargs: {column: B, no_such_option: 1}\n"
    )
    with pytest.raises(SuiteError, match=r"aims_bad_validation.yml.*GX .*(refuses|dropped)"):
        export_suites(rules, tmp_path / "out")


def test_cli_export_then_import_gives_back_the_same_rules(
    profiled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(profiled.paths.home)
    out = tmp_path / "suites"
    assert main(["export-gx-suites", "--home", home, "--out", str(out)]) == 0
    rule_paths = sorted(profiled.paths.rules.glob(f"*{RULE_FILE_SUFFIX}"))
    assert sorted(p.stem for p in out.glob("*.json")) == [
        p.name[: -len(RULE_FILE_SUFFIX)] for p in rule_paths
    ]
    table = "aims_assets"
    rules = tmp_path / "imported"
    args = ["import-gx-suite", str(out / f"{table}.json"), "--home", home]
    assert main([*args, "--rules-dir", str(rules)]) == 0
    original = load_rule_file(profiled.paths.rule_file(table))
    imported = load_rule_file(rules / f"{table}{RULE_FILE_SUFFIX}")
    assert imported.expectations == original.expectations
    assert imported.to_dict() == original.to_dict()
    capsys.readouterr()
    assert main(args) == 2  # the existing rule file is kept
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert load_rule_file(profiled.paths.rule_file(table)).to_dict() == original.to_dict()


def test_an_exported_reference_rule_runs_in_plain_gx_with_the_parent_values() -> None:
    """A GX user runs the exported suite and passes the parent's values as the suite parameter."""
    import pandas as pd

    from aims_nb_utils.gx_compat import import_gx

    gx = import_gx()
    rule_file = RuleFile(
        table="aims_child",
        expectations=[
            Expectation(
                "expect_column_values_to_be_in_set",
                {"column": "PARENT_ID"},
                {"severity": "high", "reference": {"table": "aims_parent", "column": "ID"}},
            )
        ],
    )
    document = json.loads(json.dumps(rule_file_to_suite(rule_file)))
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("p")
        .add_dataframe_asset("a")
        .add_batch_definition_whole_dataframe("b")
        .get_batch(batch_parameters={"dataframe": pd.DataFrame({"PARENT_ID": ["1", "2", "9"]})})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = batch.validate(
            gx.ExpectationSuite(**document),
            expectation_parameters={reference_parameter("aims_parent", "ID"): ["1", "2", "3"]},
        )
    (rule,) = result.results
    assert not rule.success
    assert rule.result["unexpected_count"] == 1
    assert rule.result["partial_unexpected_list"] == ["9"]
