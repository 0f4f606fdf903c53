"""The private GX internals validation relies on (aims_nb_utils.gx_compat) and GX's run path.

Each test fails naming the internal a GX release changed; the installed GX must be inside the
range pyproject.toml declares (the range these tests ran on)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pandas as pd
import pytest

from aims_nb_utils import gx_compat
from aims_nb_utils.gx_run import GxRunner, checkpoint_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def gx():
    return gx_compat.import_gx()


@pytest.fixture(scope="module")
def runner() -> GxRunner:
    return GxRunner()


def test_installed_gx_is_in_the_range_pyproject_declares(gx) -> None:
    from packaging.specifiers import SpecifierSet

    line = re.search(r'"great-expectations([^"]*)"', PYPROJECT.read_text())
    assert line, "pyproject.toml has no great-expectations dependency"
    assert gx.__version__ in SpecifierSet(line.group(1)), (
        f"great_expectations {gx.__version__} is outside {line.group(1)!r}: run "
        "tests/test_gx_compat.py and tests/test_validation.py on it, then move the range"
    )


def test_every_private_internal_is_there(gx) -> None:
    assert gx_compat.problems() == [], f"GX {gx.__version__} changed internals"
    gx_compat.check()  # what validation calls first: must not raise on the supported range


def test_batch_fingerprint_is_switched_off_by_hash_threshold(
    gx, runner: GxRunner, monkeypatch
) -> None:
    engine_module = importlib.import_module(gx_compat.PANDAS_ENGINE_MODULE)
    frame = pd.DataFrame({"a": ["x", "y"]})
    monkeypatch.setattr(engine_module, "HASH_THRESHOLD", 1e9)  # GX's own default
    batch = runner.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    assert "pandas_data_fingerprint" in batch.batch_markers, "GX no longer fingerprints batches"
    gx_compat.disable_batch_fingerprint()
    assert engine_module.HASH_THRESHOLD == 0
    batch = runner.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    assert "pandas_data_fingerprint" not in batch.batch_markers


def test_configuration_is_memoised_only_inside_the_block(gx) -> None:
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    rule = gx.expectations.ExpectColumnValuesToBeUnique(column="a")
    assert rule.configuration is not rule.configuration  # GX rebuilds it on every access
    with gx_compat.memoized_configuration():
        first = rule.configuration
        assert rule.configuration is first
        assert first.to_json_dict() == original.fget(rule).to_json_dict()
    assert Expectation.__dict__["configuration"] is original


def test_metric_cache_fills_during_a_run_and_is_emptied_after(gx, runner: GxRunner) -> None:
    engine = runner.datasource.get_execution_engine()
    frame = pd.DataFrame({"a": ["x", "y", "y"]})
    batch = runner.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(
        name="probe", expectations=[gx.expectations.ExpectColumnValuesToBeUnique(column="a")]
    )
    batch.validate(suite)  # plain GX: the engine keeps what it resolved
    assert engine._metric_cache, "GX no longer caches metrics in _metric_cache"
    assert engine.batch_manager._batch_data_cache, "GX no longer caches batch data"
    gx_compat.forget_batches(engine)
    assert not engine._metric_cache and not engine.batch_manager._batch_data_cache


def test_frames_run_through_a_checkpoint_per_table_and_leave_nothing_behind(
    gx, runner: GxRunner
) -> None:
    def rules():
        return [
            gx.expectations.ExpectColumnValuesToBeUnique(column="a", meta={"rule_index": 0}),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="a", value_set=["x", "y"], meta={"rule_index": 1}
            ),
        ]

    frame = pd.DataFrame({"a": ["x", "y", "y", "z"]})
    first = runner.validate("aims_one", frame, rules())
    outcome = {r.expectation_config.meta["rule_index"]: r for r in first}
    assert not outcome[0].success and outcome[0].result["unexpected_count"] == 2
    assert not outcome[1].success and outcome[1].result["unexpected_count"] == 1
    assert outcome[1].result["element_count"] == 4
    second = runner.validate("aims_two", frame[frame.a != "z"], rules())
    assert [r.success for r in second] == [False, True]
    context = runner.context
    assert [c.name for c in context.checkpoints.all()] == [checkpoint_name("aims_two")]
    assert [v.name for v in context.validation_definitions.all()] == ["aims_two"]
    assert context.validation_results_store.list_keys() == []
    assert not runner.datasource.get_execution_engine()._metric_cache


def test_a_changed_internal_is_named_and_stops_validation(gx, monkeypatch) -> None:
    """What a GX release that moved these internals would look like to a user."""
    from great_expectations.expectations.expectation import Expectation

    engine_module = importlib.import_module(gx_compat.PANDAS_ENGINE_MODULE)
    monkeypatch.delattr(engine_module, "HASH_THRESHOLD")
    monkeypatch.setattr(Expectation, "configuration", lambda self: None)
    found = gx_compat.problems()
    assert len(found) == 2
    assert "HASH_THRESHOLD" in found[0] and "Expectation.configuration" in found[1]
    with pytest.raises(gx_compat.GxCompatibilityError, match=r"HASH_THRESHOLD.*pyproject.toml"):
        GxRunner()
