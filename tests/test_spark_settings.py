"""Choosing the data engine and the phase runner: settings, CLI and notebook 00 (no Spark needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import make_settings

from aims_nb_utils import orchestration as orch
from aims_nb_utils.engine import get_engine, resolve_engine_name
from aims_nb_utils.errors import SettingsError
from aims_nb_utils.settings import OTHER_VARIABLES, load_settings


def test_engine_setting_defaults_to_auto_and_refuses_unknown_engines(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.engine == "auto"
    assert load_settings(env={"AIMS_ENGINE": "spark"}, home=tmp_path).engine == "spark"
    with pytest.raises(SettingsError, match="engine"):
        make_settings(tmp_path, engine="papermill")


def test_auto_is_arrow_without_a_spark_session_that_claims_it(tmp_path: Path) -> None:
    # (when a Spark test ran first in this process, its session opted out of auto: still arrow)
    settings = make_settings(tmp_path)
    assert resolve_engine_name(settings) == "arrow"
    assert get_engine(settings).name == "arrow"


def test_runner_old_spelling_still_works_with_a_deprecation(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert orch.runner_choice(None, "papermill") == "papermill"
    assert any("use runner='papermill'" in str(w.message) for w in caught)
    assert orch.runner_choice("fabric") == "fabric"
    with pytest.raises(orch.OrchestrationError, match="unknown runner 'spark'"):
        orch.make_runner(make_settings(tmp_path), "spark")


def test_cli_runner_flag_and_the_deprecated_engine_spelling(tmp_path: Path, capsys) -> None:
    """``--runner papermill`` is the runner; ``--engine papermill`` still is, with a warning."""
    from aims_nb_utils.cli import main

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    assert main(["orchestrate", "--home", str(home), "--engine", "papermill", "--plan"]) == 0
    assert "--engine papermill is deprecated" in capsys.readouterr().err
    assert main(["orchestrate", "--home", str(home), "--runner", "papermill", "--plan"]) == 0
    assert "deprecated" not in capsys.readouterr().err


def test_local_spark_heap_follows_the_machine_unless_the_user_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aims_nb_utils.engine.spark import session

    monkeypatch.delenv(session.DRIVER_MEMORY_VARIABLE, raising=False)
    chosen = session.local_driver_memory()
    assert chosen.endswith("g") and 1 <= int(chosen[:-1]) <= 8
    monkeypatch.setenv(session.DRIVER_MEMORY_VARIABLE, "3g")
    assert session.local_driver_memory() == "3g"
    # a known variable: settings do not report it as a misspelt AIMS_* setting
    assert session.DRIVER_MEMORY_VARIABLE in OTHER_VARIABLES
