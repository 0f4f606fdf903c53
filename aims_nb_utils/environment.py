"""Where are we running: a Microsoft Fabric notebook or a local machine?

Everything else asks this module for two roots only: the *Files* root (Bronze, quarantine, state,
config, outputs) and the *Tables* root (managed Delta tables in Fabric). Local runs put both under
``$AIMS_HOME/data`` so that the same relative layout works in both places.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvironmentDetectionError

FABRIC = "fabric"
LOCAL = "local"
DEFAULT_LAKEHOUSE_ROOT = Path("/lakehouse/default")


@dataclass(frozen=True)
class RuntimeEnvironment:
    """The resolved runtime and its storage roots."""

    name: str
    home: Path
    files_root: Path
    tables_root: Path

    @property
    def is_fabric(self) -> bool:
        return self.name == FABRIC

    @property
    def label(self) -> str:
        return "Fabric" if self.is_fabric else "Local"


def repository_root() -> Path:
    """The checkout this package lives in (the default AIMS_HOME for local runs)."""
    return Path(__file__).resolve().parent.parent


def _lakehouse_root(env: Mapping[str, str]) -> Path:
    # AIMS_LAKEHOUSE_ROOT exists for tests and for Fabric setups that mount elsewhere.
    return Path(env.get("AIMS_LAKEHOUSE_ROOT", str(DEFAULT_LAKEHOUSE_ROOT)))


def fabric_available(env: Mapping[str, str] | None = None) -> bool:
    """True when notebookutils imports and a default lakehouse is mounted."""
    env = os.environ if env is None else env
    if importlib.util.find_spec("notebookutils") is None:
        return False
    return _lakehouse_root(env).is_dir()


def detect_environment(env: Mapping[str, str] | None = None) -> RuntimeEnvironment:
    """Resolve the runtime; ``AIMS_ENVIRONMENT=local|fabric`` overrides detection."""
    env = os.environ if env is None else env
    forced = env.get("AIMS_ENVIRONMENT", "").strip().lower()
    if forced and forced not in (FABRIC, LOCAL):
        raise EnvironmentDetectionError(
            f"AIMS_ENVIRONMENT={forced!r} is not a known environment",
            hint="set AIMS_ENVIRONMENT to 'local' or 'fabric', or unset it to auto-detect",
        )
    name = forced or (FABRIC if fabric_available(env) else LOCAL)
    if name == FABRIC:
        lakehouse = _lakehouse_root(env)
        if not lakehouse.is_dir():
            raise EnvironmentDetectionError(
                f"Fabric was requested but no default lakehouse is mounted at {lakehouse}",
                hint="attach a default lakehouse to the notebook, or set AIMS_ENVIRONMENT=local",
            )
        files_root = lakehouse / "Files"
        home = Path(env["AIMS_HOME"]) if env.get("AIMS_HOME") else files_root
        return RuntimeEnvironment(FABRIC, home, files_root, lakehouse / "Tables")
    home = Path(env.get("AIMS_HOME") or repository_root()).expanduser().resolve()
    data = home / "data"
    return RuntimeEnvironment(LOCAL, home, data, data)
