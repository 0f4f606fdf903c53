"""Shared fixtures: small synthetic lakes generated once per session, copied per test that writes."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from aims_nb_utils.settings import Settings, load_settings

TEST_SCALE = 0.003  # ~45k rows: big enough for every defect kind, small enough for seconds
TEST_SEED = 7
# The seed's PIPELINE_CONFIG keys, written out here so tests check the product against the seed.
SEED_KEYS = frozenset(
    {
        "run_profiling",
        "run_ingestion",
        "run_monitoring",
        "run_dq_modeling",
        "run_bi_analytics",
        "force_reprocess",
        "dq_threshold",
        "max_workers",
        "continue_on_error",
    }
)
REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
# Read once at import: the autouse fixture below removes every AIMS_* variable from the tests'
# environment. A plain clone has no ../shared, so tests that need it skip there; CI (.ci/run) sets
# it to 1 because it has the folder, and a missing folder then fails instead of skipping quietly.
REQUIRE_SHARED_VARIABLE = "AIMS_REQUIRE_SHARED"
REQUIRE_SHARED = os.environ.get(REQUIRE_SHARED_VARIABLE, "").strip().lower() in {"1", "true", "yes"}
# The same for the Spark tests: a machine without pyspark or Java skips them; CI installs both and
# sets this, so a missing one fails there.
REQUIRE_SPARK_VARIABLE = "AIMS_REQUIRE_SPARK"
REQUIRE_SPARK = os.environ.get(REQUIRE_SPARK_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own AIMS_* variables must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith("AIMS_"):
            monkeypatch.delenv(name, raising=False)


def make_settings(home: Path, **overrides: object) -> Settings:
    return load_settings(env={}, home=home, **overrides)


def _generate(home: Path, clean: bool, corrupt: bool = False) -> Path:
    from aims_nb_utils.sample_data import generate_lake

    generate_lake(
        home / "data" / "bronze", scale=TEST_SCALE, seed=TEST_SEED, clean=clean, corrupt=corrupt
    )
    return home


@pytest.fixture(scope="session")
def lake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AIMS_HOME with a defective sample lake. Read-only: copy it (fresh_home) before writing."""
    return _generate(tmp_path_factory.mktemp("lake"), clean=False)


@pytest.fixture(scope="session")
def clean_lake_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AIMS_HOME with a lake that has no defects at all. Read-only."""
    return _generate(tmp_path_factory.mktemp("clean_lake"), clean=True)


def copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source / "data" / "bronze", target / "data" / "bronze")
    if (source / "config").exists():
        shutil.copytree(source / "config", target / "config")
    return target


@pytest.fixture
def fresh_home(lake_home: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the defective sample lake."""
    return copy_home(lake_home, tmp_path / "home")


@pytest.fixture
def fresh_clean_home(clean_lake_home: Path, tmp_path: Path) -> Path:
    return copy_home(clean_lake_home, tmp_path / "home")


def require_reference_dir(path: Path, required: bool) -> Path:
    """``path`` if it is a folder; else skip the test, or fail it when ``required`` (CI)."""
    if path.is_dir():
        return path
    message = f"shared reference folder not found at {path}"
    if required:
        pytest.fail(f"{message} ({REQUIRE_SHARED_VARIABLE} is set, so it must be there)")
    pytest.skip(f"{message} (set {REQUIRE_SHARED_VARIABLE}=1 to fail instead of skipping)")


@pytest.fixture
def reference_dir() -> Path:
    """../shared/reference (tests may read it; the product may not)."""
    return require_reference_dir(REFERENCE_DIR, REQUIRE_SHARED)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession (local[2]) for every Spark test of the session.

    It opts out of ``engine: auto`` (``spark.aims.engine.auto=false``), so tests that run after it
    in the same session keep the arrow engine unless they ask for spark. Needs pyspark (the
    ``spark`` extra) and a Java runtime; without them the Spark tests are skipped with the reason
    (CI installs both, see .ci/run)."""
    missing = None
    if importlib.util.find_spec("pyspark") is None:
        missing = "the spark extra (pyspark 3.5) is not installed (pip install -e '.[spark]')"
    elif shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing = "no Java runtime for Spark (apt-get install openjdk-17-jre-headless)"
    if missing and REQUIRE_SPARK:
        pytest.fail(f"{missing} ({REQUIRE_SPARK_VARIABLE} is set, so Spark must run here)")
    if missing:
        pytest.skip(f"{missing} (set {REQUIRE_SPARK_VARIABLE}=1 to fail instead of skipping)")
    from aims_nb_utils.engine.spark.session import local_session

    session = local_session(opt_out_of_auto=True)
    yield session
    session.stop()
