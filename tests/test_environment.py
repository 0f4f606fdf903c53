"""Fabric or local: detection both ways, with a simulated lakehouse and a stand-in notebookutils."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aims_nb_utils.environment import detect_environment
from aims_nb_utils.errors import EnvironmentDetectionError
from aims_nb_utils.settings import load_settings


@pytest.fixture
def fake_fabric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lakehouse root with Files/ and Tables/, and an importable stand-in notebookutils."""
    lakehouse = tmp_path / "lakehouse" / "default"
    (lakehouse / "Files").mkdir(parents=True)
    (lakehouse / "Tables").mkdir()
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "notebookutils.py").write_text("notebook = None\n")
    monkeypatch.syspath_prepend(str(modules))
    sys.modules.pop("notebookutils", None)
    return lakehouse


def test_local_when_notebookutils_is_absent(tmp_path: Path) -> None:
    env = detect_environment({"AIMS_HOME": str(tmp_path)})
    assert env.name == "local" and env.label == "Local"
    assert env.files_root == tmp_path.resolve() / "data"
    assert env.tables_root == tmp_path.resolve() / "data"


def test_local_home_defaults_to_repository_root() -> None:
    env = detect_environment({})
    assert (env.home / "aims_nb_utils" / "environment.py").is_file()


def test_fabric_detected_from_notebookutils_and_mounted_lakehouse(fake_fabric: Path) -> None:
    env = detect_environment({"AIMS_LAKEHOUSE_ROOT": str(fake_fabric)})
    assert env.is_fabric and env.label == "Fabric"
    assert env.files_root == fake_fabric / "Files"
    assert env.tables_root == fake_fabric / "Tables"


def test_fabric_paths_put_files_under_files_and_tables_under_tables(fake_fabric: Path) -> None:
    settings = load_settings(env={"AIMS_LAKEHOUSE_ROOT": str(fake_fabric)})
    assert settings.environment.is_fabric
    assert settings.paths.bronze == fake_fabric / "Files" / "bronze"
    assert settings.paths.silver == fake_fabric / "Tables"
    assert settings.paths.gold == fake_fabric / "Tables"
    assert settings.paths.rules == fake_fabric / "Files" / "config" / "data_quality"
    assert settings.storage_format == "delta"  # Fabric's Tables/ lists Delta tables only


def test_notebookutils_without_lakehouse_is_local(fake_fabric: Path, tmp_path: Path) -> None:
    env = detect_environment({"AIMS_LAKEHOUSE_ROOT": str(tmp_path / "missing")})
    assert env.name == "local"


def test_override_forces_local_inside_fabric(fake_fabric: Path) -> None:
    env = detect_environment({"AIMS_LAKEHOUSE_ROOT": str(fake_fabric), "AIMS_ENVIRONMENT": "local"})
    assert env.name == "local"


def test_forcing_fabric_without_a_lakehouse_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentDetectionError) as err:
        detect_environment(
            {"AIMS_ENVIRONMENT": "fabric", "AIMS_LAKEHOUSE_ROOT": str(tmp_path / "x")}
        )
    assert "attach a default lakehouse" in str(err.value)


def test_unknown_environment_name_is_refused() -> None:
    with pytest.raises(EnvironmentDetectionError, match="'cloud'"):
        detect_environment({"AIMS_ENVIRONMENT": "cloud"})
