"""Settings: one source, four layers, errors that name the key, the value and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SEED_KEYS

from aims_nb_utils.errors import SettingsError
from aims_nb_utils.settings import KEYS, load_settings


def write_yaml(home: Path, text: str) -> Path:
    path = home / "config" / "pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_hold_every_seed_key_and_derive_paths(tmp_path: Path) -> None:
    settings = load_settings(env={}, home=tmp_path)
    assert SEED_KEYS <= set(settings.pipeline_config())
    assert settings.dq_threshold == 85.0
    assert settings.sample_size is None  # full data by default
    assert settings.null_placeholders == ["None", "NaT", "", " "]
    assert settings.paths.bronze == tmp_path / "data" / "bronze"
    assert settings.paths.rules == tmp_path / "config" / "data_quality"
    assert settings.paths.results == tmp_path / "config" / "validation_results"
    assert settings.paths.state_db.parent == tmp_path / "data" / "state"


def test_precedence_yaml_then_environment_then_arguments(tmp_path: Path) -> None:
    yaml_path = write_yaml(tmp_path, "dq_threshold: 70\nmax_workers: 3\nsample_size: 500\n")
    from_yaml = load_settings(env={}, home=tmp_path)
    assert (from_yaml.dq_threshold, from_yaml.max_workers, from_yaml.sample_size) == (70.0, 3, 500)
    assert from_yaml.sources["dq_threshold"] == str(yaml_path)

    env = {"AIMS_DQ_THRESHOLD": "75", "AIMS_SAMPLE_SIZE": "none"}
    from_env = load_settings(env=env, home=tmp_path)
    assert from_env.dq_threshold == 75.0
    assert from_env.sample_size is None
    assert from_env.max_workers == 3  # untouched layer below still shows through
    assert from_env.sources["dq_threshold"] == "environment variable AIMS_DQ_THRESHOLD"

    from_args = load_settings(env=env, home=tmp_path, dq_threshold=90)
    assert from_args.dq_threshold == 90.0
    assert from_args.sources["dq_threshold"] == "argument"


def test_bronze_dir_variable_overrides_only_bronze(tmp_path: Path) -> None:
    elsewhere = tmp_path / "exports"
    settings = load_settings(env={"AIMS_BRONZE_DIR": str(elsewhere)}, home=tmp_path)
    assert settings.paths.bronze == elsewhere
    assert settings.paths.silver == tmp_path / "data" / "silver"


def test_aims_home_variable_moves_every_path(tmp_path: Path) -> None:
    settings = load_settings(env={"AIMS_HOME": str(tmp_path)})
    assert settings.paths.home == tmp_path.resolve()
    assert settings.paths.outputs == tmp_path.resolve() / "outputs"


def test_yaml_path_overrides_are_relative_to_home(tmp_path: Path) -> None:
    write_yaml(tmp_path, "paths:\n  bronze: lake/raw\n")
    assert load_settings(env={}, home=tmp_path).paths.bronze == tmp_path / "lake" / "raw"


def test_unknown_key_in_yaml_names_key_and_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "dq_treshold: 90\n")
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, home=tmp_path)
    message = str(err.value)
    assert "dq_treshold" in message and str(path) in message and "dq_threshold" in message


def test_wrong_type_from_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"AIMS_MAX_WORKERS": "many"}, home=tmp_path)
    assert err.value.key == "max_workers"
    assert "AIMS_MAX_WORKERS" in str(err.value) and "'many'" in str(err.value)


def test_threshold_given_as_fraction_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, home=tmp_path, dq_threshold=0.85)
    assert "0-100" in str(err.value) or "between 0 and 100" in str(err.value)
    assert "write 85, not 0.85" in str(err.value)


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("dq_threshold", 101, "between 0 and 100"),
        ("storage_format", "csv", "parquet, delta"),
        ("max_workers", 0, "at least 1"),
        ("continue_on_error", "yes", "true or false"),
        ("null_placeholders", "None", "list of strings"),
    ],
)
def test_each_kind_of_bad_argument(tmp_path: Path, key: str, value: object, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, home=tmp_path, **{key: value})
    assert key in str(err.value) and fragment in str(err.value)


def test_yaml_string_for_bool_is_an_error_but_env_words_are_parsed(tmp_path: Path) -> None:
    write_yaml(tmp_path, "force_reprocess: 'sometimes'\n")
    with pytest.raises(SettingsError, match="force_reprocess"):
        load_settings(env={}, home=tmp_path)
    (tmp_path / "config" / "pipeline.yaml").unlink()
    assert load_settings(env={"AIMS_FORCE_REPROCESS": "yes"}, home=tmp_path).force_reprocess is True


def test_invalid_yaml_and_missing_explicit_file(tmp_path: Path) -> None:
    write_yaml(tmp_path, "dq_threshold: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(env={}, home=tmp_path)
    with pytest.raises(SettingsError, match="AIMS_CONFIG"):
        load_settings(env={"AIMS_CONFIG": str(tmp_path / "nope.yaml")}, home=tmp_path)


def test_unknown_argument_and_unknown_path_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(env={}, home=tmp_path, colour="blue")
    write_yaml(tmp_path, "paths:\n  lake: x\n")
    with pytest.raises(SettingsError, match="paths.lake"):
        load_settings(env={}, home=tmp_path)


def test_drift_policies_are_checked_per_table(tmp_path: Path) -> None:
    write_yaml(tmp_path, "drift_policies:\n  aims_assets: fail\n  aims_routes: explode\n")
    with pytest.raises(SettingsError, match="drift_policies.aims_routes"):
        load_settings(env={}, home=tmp_path)
    write_yaml(tmp_path, "drift_policies:\n  aims_assets: fail\n")
    settings = load_settings(env={}, home=tmp_path)
    assert settings.drift_policy_for("aims_assets") == "fail"
    assert settings.drift_policy_for("aims_routes") == "evolve"


def test_repository_pipeline_yaml_is_valid_and_complete() -> None:
    repo_yaml = Path(__file__).resolve().parents[1] / "config" / "pipeline.yaml"
    settings = load_settings(env={}, config_file=repo_yaml)
    assert set(settings.values) == set(KEYS)


def test_delta_retention_hours_must_not_be_negative() -> None:
    from aims_nb_utils.errors import SettingsError

    assert load_settings(env={}).delta_retention_hours == 1.0
    with pytest.raises(SettingsError, match="delta_retention_hours.*must be at least 0"):
        load_settings(env={"AIMS_DELTA_RETENTION_HOURS": "-1"})
