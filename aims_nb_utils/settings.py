"""One configuration source for notebooks, CLI, Makefile and tests.

Precedence, lowest to highest: defaults in this module <- ``config/pipeline.yaml`` <- ``AIMS_*``
environment variables <- explicit call arguments. Every value remembers where it came from, so an
error can name the file or variable to fix, and every path the platform touches is derived here.
Thresholds are percentages (0-100) everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .environment import RuntimeEnvironment, detect_environment
from .errors import SettingsError, SettingsWarning

STORAGE_FORMATS = ("parquet", "delta")
FAILED_TABLE_POLICIES = ("quarantine_all", "keep_previous")
DRIFT_POLICIES = ("evolve", "quarantine", "fail")
ENGINES = ("arrow", "spark", "auto")  # the data engine (aims_nb_utils.engine), not the runner


@dataclass(frozen=True)
class _Key:
    kind: str  # bool | int | float | percent | optional_int | str | str_list | choice | mapping
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    # A threshold between 0 and 1 is almost surely a fraction written where a percentage belongs.
    refuse_fractions: bool = False


KEYS: dict[str, _Key] = {
    # The seed's PIPELINE_CONFIG keys.
    "run_profiling": _Key("bool", True, "run phase 01 (profiling and rule files)"),
    "run_ingestion": _Key("bool", True, "run phase 02 (validation and Bronze->Silver)"),
    "run_monitoring": _Key("bool", True, "run phase 03 (monitoring dashboard)"),
    "run_dq_modeling": _Key("bool", True, "run phase 07 (DQ matrix and anomaly modeling)"),
    "run_bi_analytics": _Key("bool", True, "run phase 08 (BI KPIs over Gold)"),
    "run_schema_reconciliation": _Key("bool", True, "run optional phase 04 (schema drift)"),
    "run_silver_enhancement": _Key("bool", True, "run optional phase 05 (Silver -> Gold)"),
    "run_quality_insights": _Key("bool", True, "run optional phase 06 (trends across runs)"),
    "force_reprocess": _Key("bool", False, "ignore watermarks and reprocess every table"),
    "dq_threshold": _Key(
        "percent",
        85.0,
        "minimum quality score (% of rules passed) per table",
        refuse_fractions=True,
    ),
    # 20: a PASSED table never loses most of its rows to quarantine, with room to spare. Generated
    # rules are calibrated so the data they learned from quarantines little (measured: at most
    # 3.2% of a table on the defective sample lake, 0% on TPC-H); a drop where one row in five
    # breaks a quarantining rule is a broken export or stale rules, not a few bad rows, and 50
    # would still pass a column half nulls or half sentinels. 100 turns the check off.
    "max_quarantine_percent": _Key(
        "percent",
        20.0,
        "a table whose rows breaking a quarantining rule exceed this % of its rows fails",
        refuse_fractions=True,
    ),
    "max_workers": _Key(
        "int",
        2,
        "tables side by side (worker processes; Spark: driver threads, profiling and ingestion)",
        minimum=1,
    ),
    "continue_on_error": _Key("bool", False, "keep running later phases/tables after a failure"),
    # Data handling.
    "sample_size": _Key(
        "optional_int", None, "rows per table to read; None means all rows", minimum=1
    ),
    "storage_format": _Key("choice", "parquet", "Silver/Gold format", choices=STORAGE_FORMATS),
    "null_placeholders": _Key(
        "str_list", ["None", "NaT", "", " "], "strings that mean null in Bronze"
    ),
    "null_tolerance": _Key(
        "percent", 2.0, "percentage points added to the observed null rate by profiling"
    ),
    "failed_table_policy": _Key(
        "choice",
        "quarantine_all",
        "what ingestion does with a table that fails its table-level verdict",
        choices=FAILED_TABLE_POLICIES,
    ),
    "drift_policy": _Key("choice", "evolve", "default schema-drift policy", choices=DRIFT_POLICIES),
    "drift_policies": _Key("mapping", {}, "per-table schema-drift policy overrides"),
    "table_keys": _Key(
        "mapping",
        {},
        "per-table key(s) declared by the user: table -> column, [columns] or [[columns], ...];"
        " the first key is the row identity of incremental loads (before the rule file's keys)",
    ),
    "drift_row_count_threshold": _Key(
        "percent", 20.0, "row-count change between runs (%) that the drift report flags"
    ),
    "notebook_timeout_seconds": _Key(
        "int", 3600, "per-notebook timeout (papermill/Fabric)", minimum=1
    ),
    "data_docs": _Key(
        "bool", False, "validate-dq also writes GX Data Docs to outputs/data_docs (index.html)"
    ),
    "engine": _Key(
        "choice",
        "auto",
        "data engine for profiling, validation and ingestion: arrow (pyarrow/pandas on one"
        " machine), spark (PySpark DataFrames), auto (spark when a SparkSession is active, as in"
        " a Fabric Spark notebook, else arrow); see aims_nb_utils.engine",
        choices=ENGINES,
    ),
    "delta_retention_hours": _Key(
        "float",
        1.0,
        "Delta only: data files a table no longer uses are vacuumed after each write once they"
        " are this old (readers of an older version keep it this long)",
        minimum=0,
    ),
    "delta_optimize_every": _Key(
        "int",
        10,
        "Delta only: every this many versions of a table, its small files are compacted, a"
        " checkpoint is written and expired log files are removed (0: never)",
        minimum=0,
    ),
}

# AIMS_* variables that are not settings but are read by the platform (or its tests).
OTHER_VARIABLES = frozenset(
    {
        "AIMS_HOME",
        "AIMS_CONFIG",
        "AIMS_ENVIRONMENT",
        "AIMS_LAKEHOUSE_ROOT",
        "AIMS_NOTEBOOKS_DIR",
        "AIMS_FAULT_POINT",
        "AIMS_FAULT_MARKER",
        "AIMS_SPARK_DRIVER_MEMORY",
    }
)

PATH_KEYS = ("bronze", "silver", "gold", "quarantine", "state", "config", "outputs")


@dataclass(frozen=True)
class Paths:
    """Every folder the platform reads or writes, resolved once."""

    home: Path
    bronze: Path
    silver: Path
    gold: Path
    quarantine: Path
    state: Path
    config: Path
    outputs: Path

    @property
    def rules(self) -> Path:
        return self.config / "data_quality"

    @property
    def results(self) -> Path:
        return self.config / "validation_results"

    @property
    def pipeline_yaml(self) -> Path:
        return self.config / "pipeline.yaml"

    @property
    def state_db(self) -> Path:
        return self.state / "aims_state.db"

    @property
    def dashboards(self) -> Path:
        return self.outputs / "dashboards"

    @property
    def reports(self) -> Path:
        return self.outputs / "reports"

    @property
    def runs(self) -> Path:
        return self.outputs / "runs"

    def bronze_file(self, table: str) -> Path:
        return self.bronze / f"{table}.parquet"

    def rule_file(self, table: str) -> Path:
        return self.rules / f"{table}_validation.yml"

    def as_dict(self) -> dict[str, str]:
        names = (*PATH_KEYS, "rules", "results")
        return {"home": str(self.home), **{n: str(getattr(self, n)) for n in names}}


@dataclass(frozen=True)
class Settings:
    """Resolved settings plus where each value came from."""

    values: dict[str, Any]
    paths: Paths
    environment: RuntimeEnvironment
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def pipeline_config(self) -> dict[str, Any]:
        """The seed's PIPELINE_CONFIG view (what run logs record)."""
        return dict(self.values)

    def drift_policy_for(self, table: str) -> str:
        return self.values["drift_policies"].get(table, self.values["drift_policy"])

    def keys_for(self, table: str) -> list[list[str]]:
        """The keys declared for ``table`` in ``table_keys`` (already checked when loaded)."""
        from .rules import parse_keys

        return parse_keys(self.values["table_keys"].get(table), f"table_keys.{table}")


def _parse_bool(raw: Any, key: str, source: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and source.startswith("environment"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise SettingsError(key, raw, source, "expected true or false")


def _coerce(key: str, raw: Any, source: str) -> Any:
    spec = KEYS[key]
    from_env = source.startswith("environment")
    kind = spec.kind
    if kind == "bool":
        return _parse_bool(raw, key, source)
    if kind == "optional_int" and (
        raw is None or (from_env and str(raw).strip().lower() in ("", "none", "all"))
    ):
        return None
    if kind in ("int", "optional_int"):
        if isinstance(raw, bool):
            raise SettingsError(key, raw, source, "expected a whole number")
        if isinstance(raw, str) and from_env:
            try:
                raw = int(raw.strip())
            except ValueError:
                raise SettingsError(key, raw, source, "expected a whole number") from None
        if not isinstance(raw, int):
            raise SettingsError(key, raw, source, "expected a whole number")
        if spec.minimum is not None and raw < spec.minimum:
            raise SettingsError(key, raw, source, f"must be at least {spec.minimum:g}")
        return raw
    if kind in ("float", "percent"):
        if isinstance(raw, bool):
            raise SettingsError(key, raw, source, "expected a number")
        if isinstance(raw, str) and from_env:
            try:
                raw = float(raw.strip())
            except ValueError:
                raise SettingsError(key, raw, source, "expected a number") from None
        if not isinstance(raw, (int, float)):
            raise SettingsError(key, raw, source, "expected a number")
        if spec.minimum is not None and raw < spec.minimum:
            raise SettingsError(key, raw, source, f"must be at least {spec.minimum:g}")
        if kind == "percent" and not 0 <= raw <= 100:
            raise SettingsError(key, raw, source, "must be a percentage between 0 and 100")
        if spec.refuse_fractions and 0 < raw < 1:
            raise SettingsError(
                key,
                raw,
                source,
                "looks like a fraction; thresholds are percentages between 0 and 100",
                hint=f"write {raw * 100:g}, not {raw:g}",
            )
        return float(raw)
    if kind == "choice":
        if not isinstance(raw, str) or raw.strip().lower() not in spec.choices:
            raise SettingsError(key, raw, source, f"must be one of {', '.join(spec.choices)}")
        return raw.strip().lower()
    if kind == "str_list":
        if isinstance(raw, str) and from_env:
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise SettingsError(
                    key, raw, source, 'expected a JSON list of strings, e.g. ["None", "NaT", " "]'
                ) from None
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise SettingsError(key, raw, source, "expected a list of strings")
        return list(raw)
    if kind == "mapping":
        if isinstance(raw, str) and from_env:
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise SettingsError(key, raw, source, "expected a JSON object") from None
        if not isinstance(raw, dict):
            raise SettingsError(key, raw, source, "expected a mapping of table -> value")
        if key == "drift_policies":
            for table, policy in raw.items():
                if policy not in DRIFT_POLICIES:
                    raise SettingsError(
                        f"drift_policies.{table}",
                        policy,
                        source,
                        f"must be one of {', '.join(DRIFT_POLICIES)}",
                    )
        if key == "table_keys":
            from .rules import parse_keys

            for table, keys in raw.items():
                try:
                    parse_keys(keys, f"table_keys.{table}")
                except ValueError as exc:
                    raise SettingsError(
                        f"table_keys.{table}",
                        keys,
                        source,
                        str(exc),
                        hint="e.g. table_keys: {lineitem: [[l_orderkey, l_linenumber]]}",
                    ) from None
        return dict(raw)
    if kind == "str":
        if not isinstance(raw, str):
            raise SettingsError(key, raw, source, "expected text")
        return raw
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError("<file>", str(path), str(path), f"is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(
            "<file>", type(loaded).__name__, str(path), "top level must be a mapping"
        )
    return loaded


def _default_paths(env: RuntimeEnvironment) -> dict[str, Path]:
    if env.is_fabric:
        # Managed Delta tables live under Tables/; everything file-like under Files/.
        return {
            "bronze": env.files_root / "bronze",
            "silver": env.tables_root,
            "gold": env.tables_root,
            "quarantine": env.files_root / "quarantine",
            "state": env.files_root / "state",
            "config": env.home / "config",
            "outputs": env.home / "outputs",
        }
    data = env.files_root
    return {
        "bronze": data / "bronze",
        "silver": data / "silver",
        "gold": data / "gold",
        "quarantine": data / "quarantine",
        "state": data / "state",
        "config": env.home / "config",
        "outputs": env.home / "outputs",
    }


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings: defaults <- pipeline.yaml <- AIMS_* variables <- ``overrides``.

    ``config_file`` (or ``AIMS_CONFIG``) names the YAML file; otherwise
    ``<config>/pipeline.yaml`` is read when it exists. ``overrides`` may also hold path keys
    (``bronze``, ``silver``, ...) and ``home``.
    """
    env = os.environ if env is None else env
    runtime = detect_environment(env)
    if "home" in overrides and overrides["home"] is not None:
        home = Path(overrides.pop("home")).expanduser().resolve()
        runtime = RuntimeEnvironment(
            runtime.name,
            home,
            runtime.files_root if runtime.is_fabric else home / "data",
            runtime.tables_root if runtime.is_fabric else home / "data",
        )
    overrides.pop("home", None)

    values = {k: spec.default for k, spec in KEYS.items()}
    values = {
        k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
        for k, v in values.items()
    }
    sources = {k: "default" for k in KEYS}
    paths = _default_paths(runtime)
    path_sources = {k: "default" for k in paths}

    # Layer 2: pipeline.yaml
    explicit = config_file or env.get("AIMS_CONFIG")
    yaml_path = Path(explicit) if explicit else paths["config"] / "pipeline.yaml"
    if explicit and not yaml_path.is_file():
        source = "argument config_file" if config_file else "environment variable AIMS_CONFIG"
        raise SettingsError("config_file", str(yaml_path), source, "file does not exist")
    if yaml_path.is_file():
        loaded = _read_yaml(yaml_path)
        for key, raw in loaded.items():
            if key == "paths":
                if not isinstance(raw, dict):
                    raise SettingsError("paths", raw, str(yaml_path), "expected a mapping")
                for pkey, pval in raw.items():
                    if pkey not in PATH_KEYS:
                        raise SettingsError(
                            f"paths.{pkey}",
                            pval,
                            str(yaml_path),
                            f"unknown path key; known: {', '.join(PATH_KEYS)}",
                        )
                    paths[pkey] = _resolve_path(pval, runtime.home)
                    path_sources[pkey] = str(yaml_path)
                continue
            if key not in KEYS:
                raise SettingsError(
                    key,
                    raw,
                    str(yaml_path),
                    "unknown setting",
                    hint=f"known settings: {', '.join(sorted(KEYS))}",
                )
            values[key] = _coerce(key, raw, str(yaml_path))
            sources[key] = str(yaml_path)

    # Layer 3: environment variables
    _warn_unknown_variables(env)
    for key in KEYS:
        var = f"AIMS_{key.upper()}"
        if var in env:
            values[key] = _coerce(key, env[var], f"environment variable {var}")
            sources[key] = f"environment variable {var}"
    for pkey in PATH_KEYS:
        var = f"AIMS_{pkey.upper()}_DIR"
        if env.get(var):
            paths[pkey] = _resolve_path(env[var], runtime.home)
            path_sources[pkey] = f"environment variable {var}"

    # Layer 4: explicit arguments
    for key, raw in overrides.items():
        if key in PATH_KEYS:
            if raw is not None:
                paths[key] = _resolve_path(raw, runtime.home)
                path_sources[key] = "argument"
            continue
        if key not in KEYS:
            raise SettingsError(
                key,
                raw,
                "argument",
                "unknown setting",
                hint=f"known settings: {', '.join(sorted(KEYS))}",
            )
        values[key] = _coerce(key, raw, "argument")
        sources[key] = "argument"

    if runtime.is_fabric and sources["storage_format"] == "default":
        values["storage_format"] = "delta"  # Fabric's Tables/ only lists Delta tables
        sources["storage_format"] = "default (Fabric)"

    sources.update({f"paths.{k}": v for k, v in path_sources.items()})
    return Settings(
        values=values, paths=Paths(home=runtime.home, **paths), environment=runtime, sources=sources
    )


def unknown_variables(env: Mapping[str, str]) -> dict[str, str | None]:
    """AIMS_* variables that no setting, path or other part of the platform reads, each with the
    known variable it most resembles (None when nothing is close)."""
    import difflib

    known = {f"AIMS_{k.upper()}" for k in KEYS} | {f"AIMS_{k.upper()}_DIR" for k in PATH_KEYS}
    known |= OTHER_VARIABLES
    return {
        name: next(iter(difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)), None)
        for name in sorted(env)
        if name.startswith("AIMS_") and name not in known
    }


def _warn_unknown_variables(env: Mapping[str, str]) -> None:
    import warnings

    for name, close in unknown_variables(env).items():
        guess = f"; did you mean {close}?" if close else ""
        warnings.warn(
            f"environment variable {name} looks like a setting but is not one, so it is "
            f"ignored{guess} (`python -m aims_nb_utils settings` lists them)",
            SettingsWarning,
            stacklevel=3,
        )


def _resolve_path(raw: Any, home: Path) -> Path:
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else (home / path)


def describe_keys() -> list[dict[str, str]]:
    """Rows for README/CLI help: key, default, meaning, environment variable."""
    return [
        {"key": k, "default": repr(s.default), "meaning": s.doc, "env": f"AIMS_{k.upper()}"}
        for k, s in KEYS.items()
    ]
