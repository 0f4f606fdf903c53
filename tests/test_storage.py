"""Silver/Gold/quarantine storage: layout per format, atomic publication, Fabric's Tables root."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import make_settings

from aims_nb_utils import storage
from aims_nb_utils.errors import TableNameError
from aims_nb_utils.io import TEMP_MARKER
from aims_nb_utils.settings import load_settings

ROWS = pa.table({"ID": pa.array([1, 2, 3], pa.int64()), "NAME": ["a", "b", None]})


@pytest.fixture(params=["parquet", "delta"])
def settings(request: pytest.FixtureRequest, tmp_path: Path):
    return make_settings(tmp_path, storage_format=request.param)


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{TEMP_MARKER}*") if p.is_file()] if root.exists() else []


def test_layout_per_format(tmp_path: Path) -> None:
    parquet = make_settings(tmp_path)
    delta = make_settings(tmp_path, storage_format="delta")
    assert (
        storage.table_path(parquet, "silver", "aims_assets")
        == tmp_path / "data/silver/aims_assets.parquet"
    )
    assert (
        storage.table_path(delta, "silver", "aims_assets") == tmp_path / "data/silver/aims_assets"
    )
    assert (
        storage.table_path(parquet, "quarantine", "aims_assets").parent
        == tmp_path / "data/quarantine"
    )
    assert (
        storage.table_path(delta, "gold", "FACT_Asset_Inventory")
        == tmp_path / "data/gold/FACT_Asset_Inventory"
    )


def test_write_read_round_trip_and_listing(settings) -> None:
    assert not storage.table_exists(settings, "silver", "aims_assets")
    path = storage.write_table(settings, "silver", "aims_assets", ROWS)
    assert path == storage.table_path(settings, "silver", "aims_assets")
    assert storage.table_exists(settings, "silver", "aims_assets")
    assert storage.read_table(settings, "silver", "aims_assets").equals(ROWS)
    assert storage.read_table(settings, "silver", "aims_assets", columns=["NAME"]).column(
        0
    ).to_pylist() == [
        "a",
        "b",
        None,
    ]
    assert storage.count_rows(settings, "silver", "aims_assets") == 3
    storage.write_table(settings, "silver", "aims_phases", ROWS.slice(0, 1))
    assert storage.list_tables(settings, "silver") == ["aims_assets", "aims_phases"]
    assert storage.list_tables(settings, "gold") == []


def test_overwrite_replaces_and_append_adds_with_new_columns_as_null(settings) -> None:
    storage.write_table(settings, "quarantine", "t1", ROWS)
    storage.write_table(settings, "quarantine", "t1", ROWS.slice(0, 1))
    assert storage.count_rows(settings, "quarantine", "t1") == 1
    more = pa.table({"ID": pa.array([9], pa.int64()), "NAME": ["z"], "EXTRA": ["x"]})
    storage.write_table(settings, "quarantine", "t1", more, mode="append")
    data = storage.read_table(settings, "quarantine", "t1").sort_by("ID")
    assert data.column("ID").to_pylist() == [1, 9]
    assert data.column("EXTRA").to_pylist() == [None, "x"]


def test_missing_table_and_column_errors_name_layer_table_and_fix(settings) -> None:
    with pytest.raises(
        storage.StorageError, match=r"silver table aims_assets .* does not exist.*ingest-all"
    ):
        storage.read_table(settings, "silver", "aims_assets")
    storage.write_table(settings, "silver", "aims_assets", ROWS)
    with pytest.raises(storage.StorageError, match=r"has no column\(s\) NOPE.*available: ID, NAME"):
        storage.read_table(settings, "silver", "aims_assets", columns=["NOPE"])
    with pytest.raises(storage.StorageError, match="unknown layer 'bronze'"):
        storage.table_path(settings, "bronze", "aims_assets")


@pytest.mark.parametrize("name", ["../outside", "a/b", "x y", ""])
def test_table_names_cannot_escape_the_layer(settings, name: str) -> None:
    with pytest.raises(TableNameError):
        storage.write_table(settings, "silver", name, ROWS)
    assert not (settings.paths.home / "data" / "outside").exists()
    assert not (settings.paths.home / "outside.parquet").exists()


def test_writer_publishes_nothing_until_commit(settings) -> None:
    storage.write_table(settings, "silver", "aims_assets", ROWS)
    schema = ROWS.schema
    with pytest.raises(RuntimeError, match="killed"):
        with storage.TableWriter(settings, "silver", "aims_assets", schema) as writer:
            writer.write(pa.table({"ID": pa.array([7], pa.int64()), "NAME": ["new"]}))
            raise RuntimeError("killed mid-write")
    assert storage.read_table(settings, "silver", "aims_assets").equals(ROWS)
    assert _temp_files(settings.paths.home) == []
    with storage.TableWriter(settings, "silver", "aims_assets", schema) as writer:
        for i in range(5):
            writer.write(pa.table({"ID": pa.array([i], pa.int64()), "NAME": [str(i)]}))
        assert storage.read_table(settings, "silver", "aims_assets").equals(ROWS)  # not yet
        writer.commit()
    assert storage.read_table(settings, "silver", "aims_assets").column("ID").to_pylist() == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert _temp_files(settings.paths.home) == []


def test_writer_refuses_rows_that_do_not_fit_and_casts_those_that_do(settings) -> None:
    with storage.TableWriter(settings, "silver", "t", ROWS.schema) as writer:
        writer.write(pa.table({"NAME": ["reordered"], "ID": pa.array([5], pa.int32())}))
        with pytest.raises(storage.StorageError, match="silver table t .* do not fit"):
            writer.write(pa.table({"ID": ["not a number"], "NAME": ["x"]}))
        writer.commit()
    assert storage.read_table(settings, "silver", "t").to_pylist() == [
        {"ID": 5, "NAME": "reordered"}
    ]


def test_empty_commit_creates_an_empty_table_with_the_schema(settings) -> None:
    with storage.TableWriter(settings, "silver", "empty", ROWS.schema) as writer:
        writer.commit()
    data = storage.read_table(settings, "silver", "empty")
    assert data.num_rows == 0 and data.schema.names == ["ID", "NAME"]


def test_clean_staging_removes_what_a_killed_writer_left(settings) -> None:
    writer = storage.TableWriter(settings, "silver", "aims_assets", ROWS.schema)
    writer.write(ROWS)
    writer._flush()  # a row group is on disk, then the process "dies": no abort, no commit
    leftovers = _temp_files(settings.paths.home)
    assert len(leftovers) == 1
    assert storage.clean_staging(settings) == leftovers
    assert _temp_files(settings.paths.home) == []
    assert not storage.table_exists(settings, "silver", "aims_assets")


def test_fabric_puts_silver_and_gold_as_delta_tables_under_tables_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lakehouse = tmp_path / "lakehouse"
    (lakehouse / "Files").mkdir(parents=True)
    (lakehouse / "Tables").mkdir()
    env = {"AIMS_ENVIRONMENT": "fabric", "AIMS_LAKEHOUSE_ROOT": str(lakehouse)}
    fabric = load_settings(env=env)
    assert fabric.environment.is_fabric and fabric.storage_format == "delta"
    silver = storage.write_table(fabric, "silver", "aims_assets", ROWS)
    gold = storage.write_table(fabric, "gold", "DIM_Asset", ROWS)
    quarantine = storage.write_table(fabric, "quarantine", "aims_assets", ROWS)
    assert silver == lakehouse / "Tables" / "aims_assets" and (silver / "_delta_log").is_dir()
    assert gold == lakehouse / "Tables" / "DIM_Asset"
    assert quarantine.parent == lakehouse / "Files" / "quarantine"
    assert storage.read_table(fabric, "silver", "aims_assets").equals(ROWS)


def test_readers_see_a_committed_publish_before_it_is_installed(tmp_path) -> None:
    """After the manifest (the commit point) and before the renames, both layers read new."""
    settings = load_settings(env={}, home=tmp_path)
    old, new = pa.table({"x": [1, 2]}), pa.table({"x": [3, 4, 5]})
    for layer in ("silver", "quarantine"):
        storage.write_table(settings, layer, "t", old)
    staged = []
    for layer in ("silver", "quarantine"):
        writer = storage.TableWriter(settings, layer, "t", new.schema)
        writer.write(new)
        staged.append(writer.stage())
    assert storage.read_table(settings, "silver", "t").equals(old)  # staged: nothing visible
    manifest = storage._manifest_path(settings, "t")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"table": "t", "tables": [vars(s) for s in staged]}))
    for layer in ("silver", "quarantine"):  # committed, nothing installed yet
        assert storage.read_table(settings, layer, "t").equals(new)
    assert storage.recover_publishes(settings) == ["t"]
    assert not manifest.exists() and all(not Path(s.staged).exists() for s in staged)
    for layer in ("silver", "quarantine"):
        assert storage.read_table(settings, layer, "t").equals(new)
