"""Repair: salvage every readable row group of a damaged Bronze file, keep the original, idempotent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import state
from aims_nb_utils.cli import main
from aims_nb_utils.repair import RepairError, repair_bronze, salvage_bytes
from aims_nb_utils.sample_data import generate_lake

SEED = 11
SCALE = 0.01  # the corrupted candidate then has 1,313 rows in 8 row groups of 165


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A corrupted lake (one table truncated by the generator) and the same table intact."""
    root = tmp_path_factory.mktemp("repair")
    tables = ["aims_assetclassattributes", "aims_phases"]
    report = generate_lake(
        root / "corrupt/data/bronze", scale=SCALE, seed=SEED, corrupt=True, tables=tables
    )
    generate_lake(root / "intact/data/bronze", scale=SCALE, seed=SEED, tables=tables)
    return {"root": root, "report": report, "tables": tables}


@pytest.fixture
def home(generated: dict, tmp_path: Path) -> Path:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(generated["root"] / "corrupt", home)
    return home


def test_truncated_file_is_salvaged_row_group_by_row_group(generated: dict, home: Path) -> None:
    corruption = generated["report"].corruption
    table = corruption["table"]
    bronze = home / "data/bronze"
    damaged = bronze / f"{table}.parquet"
    damaged_digest = _digest(damaged)
    with pytest.raises(pa.ArrowInvalid, match="magic bytes not found"):
        pq.read_table(damaged)

    run = repair_bronze(make_settings(home))

    by_table = {f.table: f for f in run.files}
    assert by_table["aims_phases"].status == "ok"
    fixed = by_table[table]
    assert fixed.status == "repaired" and fixed.method == "footer rebuilt from page headers"
    assert corruption["row_groups_intact"] < corruption["row_groups_total"]  # a real loss to report
    assert fixed.rows_recovered == corruption["salvageable_rows"]
    assert fixed.row_groups_recovered == corruption["row_groups_intact"]
    # No rule file, no earlier load: the total is unknown, and the report says what it knows.
    assert fixed.rows_lost is None and fixed.expected_source is None
    assert f"at least {corruption['row_group_rows']:,} rows lost" in fixed.detail
    # The recovered rows are exactly the leading rows of the intact file, schema included.
    intact = pq.read_table(generated["root"] / f"intact/data/bronze/{table}.parquet")
    repaired = pq.read_table(damaged)
    assert repaired.equals(intact.slice(0, corruption["salvageable_rows"]))
    # The original is kept byte for byte, with a report beside it.
    backup = Path(fixed.backup)
    assert backup.parent.parent == bronze / "_backup" and _digest(backup) == damaged_digest
    report = json.loads((backup.parent / "repair_report.json").read_text())
    assert (
        report["summary"]["repaired"] == 1
        and report["summary"]["rows_recovered"] == fixed.rows_recovered
    )


def test_running_repair_twice_changes_nothing_more(home: Path) -> None:
    settings = make_settings(home)
    repair_bronze(settings)
    bronze = home / "data/bronze"
    before = {p: _digest(p) for p in bronze.rglob("*") if p.is_file()}
    second = repair_bronze(settings)
    assert all(f.status == "ok" for f in second.files) and second.backup_dir is None
    assert {p: _digest(p) for p in bronze.rglob("*") if p.is_file()} == before


def test_rows_lost_are_counted_against_the_last_load(generated: dict, home: Path) -> None:
    corruption = generated["report"].corruption
    table = corruption["table"]
    settings = make_settings(home)
    state.set_watermark(
        settings.paths.state_db,
        table_name=table,
        last_updated=None,
        fingerprint="x",
        rows=corruption["rows_total"],
        run_id="r0",
        updated_at=state.utc_now(),
    )
    fixed = {f.table: f for f in repair_bronze(settings).files}[table]
    assert fixed.expected_source == "last ingestion (watermark)"
    assert fixed.rows_lost == corruption["rows_total"] - corruption["salvageable_rows"]


def test_corrupt_row_group_behind_a_good_footer_loses_only_that_group(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bronze = settings.paths.bronze
    bronze.mkdir(parents=True)
    data = pa.table(
        {"ID": [str(i) for i in range(1000)], "NAME": [f"name {i % 37}" for i in range(1000)]}
    )
    path = bronze / "aims_phases.parquet"
    pq.write_table(data, path, row_group_size=250, compression="zstd")
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(2).column(1)
    start = chunk.data_page_offset + 60
    raw = bytearray(path.read_bytes())
    raw[start : start + 40] = b"\xff" * 40  # garbage inside row group 2's NAME data
    path.write_bytes(bytes(raw))

    fixed = repair_bronze(settings).files[0]

    assert fixed.status == "repaired" and fixed.row_groups_lost == 1
    assert (fixed.rows_recovered, fixed.rows_lost, fixed.expected_source) == (
        750,
        250,
        "original footer",
    )
    repaired = pq.read_table(path)
    assert repaired.column("ID").to_pylist() == [str(i) for i in range(1000) if not 500 <= i < 750]


def test_without_a_footer_or_a_column_list_the_error_says_what_to_do() -> None:
    data = pa.table({"A": ["x"] * 10})
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink)
    truncated = sink.getvalue().to_pybytes()[:-20]
    with pytest.raises(RepairError, match=r"aims_custom.*no column list.*rule file"):
        salvage_bytes(truncated, None, name="aims_custom")


def test_cli_reports_per_file_and_exit_code(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["repair", "--home", str(home), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in out and "rows recovered" in out
    assert not (home / "data/bronze/_backup").exists()  # a dry run changes nothing
    assert main(["repair", "--home", str(home)]) == 0
    assert "originals kept in" in capsys.readouterr().out
    assert main(["repair", "--home", str(home)]) == 0
    assert "0 unreadable" in capsys.readouterr().out
