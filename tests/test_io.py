"""Atomic writes and safe table names: a crash never leaves half a file, a name never escapes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from aims_nb_utils.errors import BronzeReadError, TableNameError
from aims_nb_utils.io import (
    atomic_path,
    atomic_write_text,
    list_bronze_tables,
    read_bronze,
    remove_stale_temp_files,
    validate_table_name,
    write_parquet_atomic,
)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "aims assets", "", ".hidden", "x" * 200])
def test_unsafe_table_names_are_refused(name: str) -> None:
    with pytest.raises(TableNameError):
        validate_table_name(name)


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "rules.yml"
    atomic_write_text(target, "good\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "good\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.yml"]


def test_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".aims_assets.parquet.tmp-abc").write_text("x")
    (tmp_path / "aims_assets.parquet").write_text("y")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".aims_assets.parquet.tmp-abc"]
    assert (tmp_path / "aims_assets.parquet").exists()


def test_bronze_listing_and_reading_with_sample(tmp_path: Path) -> None:
    table = pa.table({"ID": [str(i) for i in range(1000)], "NAME": ["n"] * 1000})
    write_parquet_atomic(table, tmp_path / "aims_routes.parquet")
    (tmp_path / "_defects.parquet").write_bytes(b"")
    assert list_bronze_tables(tmp_path) == ["aims_routes"]
    assert read_bronze(tmp_path, "aims_routes").num_rows == 1000
    assert read_bronze(tmp_path, "aims_routes", sample_size=10).num_rows == 10


def test_unreadable_file_error_names_table_file_and_fix(tmp_path: Path) -> None:
    (tmp_path / "aims_links.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(BronzeReadError) as err:
        read_bronze(tmp_path, "aims_links")
    message = str(err.value)
    assert "aims_links" in message and "aims_links.parquet" in message and "repair" in message


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "results.json", "{}")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o644
