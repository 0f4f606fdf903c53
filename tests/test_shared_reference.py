"""Tests that read ../shared/reference skip on a plain clone and fail in CI when it is missing.

``make test`` must pass on a clone without the sibling ../shared folder (issue #13, point 6), yet
CI, which has the folder, must not pass by skipping the legacy-file tests: ``.ci/run`` exports
AIMS_REQUIRE_SHARED=1, read when conftest is imported (its autouse fixture clears AIMS_* variables).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from conftest import REQUIRE_SHARED_VARIABLE, require_reference_dir

REPO = Path(__file__).resolve().parents[1]


def test_missing_folder_skips_with_the_reason(tmp_path: Path) -> None:
    absent = tmp_path / "shared" / "reference"
    with pytest.raises(pytest.skip.Exception, match="shared reference folder not found at") as info:
        require_reference_dir(absent, required=False)
    assert str(absent) in str(info.value)
    assert REQUIRE_SHARED_VARIABLE in str(info.value)


def test_missing_folder_fails_when_required(tmp_path: Path) -> None:
    absent = tmp_path / "shared" / "reference"
    with pytest.raises(pytest.fail.Exception, match="shared reference folder not found at") as info:
        require_reference_dir(absent, required=True)
    assert str(absent) in str(info.value)


def test_present_folder_is_returned(tmp_path: Path) -> None:
    assert require_reference_dir(tmp_path, required=True) == tmp_path


def test_fixture_skips_when_the_folder_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The reference_dir fixture itself goes through the same check (no test reads the path raw)."""
    monkeypatch.setattr(conftest, "REFERENCE_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(conftest, "REQUIRE_SHARED", False)
    with pytest.raises(pytest.skip.Exception, match="nowhere"):
        conftest.reference_dir.__wrapped__()


def _run_clone_without_shared(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    """pytest on a copy of conftest plus one test needing the folder, where ../shared is absent."""
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_needs_shared.py").write_text(
        "def test_reads_legacy_files(reference_dir):\n"
        "    assert (reference_dir / 'legacy_configs').is_dir()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMS_")}
    env["GX_ANALYTICS_ENABLED"] = "False"
    if require is not None:
        env[REQUIRE_SHARED_VARIABLE] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
        cwd=tests.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plain_clone_skips_and_ci_fails(tmp_path: Path) -> None:
    # the copy lives in <tmp>/<case>/clone/tests: its ../shared/reference is <tmp>/<case>/shared
    plain = _run_clone_without_shared(tmp_path / "plain", require=None)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "1 skipped" in plain.stdout
    assert "shared reference folder not found at" in plain.stdout
    ci = _run_clone_without_shared(tmp_path / "ci", require="1")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "1 error" in ci.stdout or "1 failed" in ci.stdout
    assert f"{REQUIRE_SHARED_VARIABLE} is set" in ci.stdout
