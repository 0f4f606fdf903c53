"""Incremental loads on the spark engine, and tables switching engine between runs.

Each test runs the same sequence of Bronze edits on two copies of one lake: one loaded by the
arrow engine only (the reference), the other by the spark engine (or alternately by both). After
every run the two must agree on what the load did (mode, rows processed, to Silver, quarantined,
deleted), on Silver (rows, types and row fingerprints), on quarantine (rows, failed rules and
reasons) and on the watermarks and ingest state. Verdicts come from the arrow engine's validation
of each copy (validation parity is tests/test_spark_engine.py's subject), so only ingestion is
compared. The lake: two synthetic AIMS tables (text columns, defects, references) and TPC-H
orders (integer, decimal and date columns: the row fingerprint must hash what the arrow engine
hashes, not Spark's types).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import state, storage
from aims_nb_utils.ingestion import ingest_tables, watermark_rows

pytestmark = pytest.mark.usefixtures("spark")

SYNTHETIC = ("aims_ua_entities", "aims_attributedomains")
TPCH = ("orders",)
TABLES = SYNTHETIC + TPCH
DROP = ("_dq_run_id",)


@pytest.fixture(scope="module")
def mixed_lake(lake_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tables (see the module doc) with rule files profiled by the arrow engine."""
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.public_lakes import build_lake

    home = tmp_path_factory.mktemp("spark_ingest") / "home"
    bronze = home / "data" / "bronze"
    bronze.mkdir(parents=True)
    for table in SYNTHETIC:
        (bronze / f"{table}.parquet").write_bytes(
            (lake_home / "data" / "bronze" / f"{table}.parquet").read_bytes()
        )
    build_lake("tpch", bronze, 0.01, tables=list(TPCH))
    profile_tables(make_settings(home, engine="arrow"))
    return home


def _edited(rows: pa.Table, step: int) -> pa.Table:
    """``rows`` with their last column changed (text suffixed, numbers + 1)."""
    last = rows.schema.field(rows.num_columns - 1)
    values = rows.column(last.name)
    if pa.types.is_string(last.type):
        values = pc.binary_join_element_wise(values, pa.scalar(f" e{step}"), "")
    else:
        values = pc.add(values, pa.scalar(1).cast(last.type))
    return rows.set_column(rows.num_columns - 1, last, values)


def _edit(home: Path, step: int) -> None:
    """Change every Bronze file: five rows edited, five deleted, and (in the synthetic tables,
    whose verdict tolerates it) one key repeated with other content: its stored row must leave
    Silver, as uniqueness is judged on the whole table."""
    for path in sorted((home / "data" / "bronze").glob("*.parquet")):
        data = pq.read_table(path)
        at = 10 * step
        parts = [
            data.slice(0, at),
            _edited(data.slice(at, 5), step),
            data.slice(at + 10),
        ]
        if path.stem in SYNTHETIC:
            parts.append(_edited(data.slice(at + 20, 1), step))
        pq.write_table(pa.concat_tables(parts).cast(data.schema), path)


def _rewrite(home: Path) -> None:
    """The same rows written again: a new file (new fingerprint), nothing to load."""
    for path in sorted((home / "data" / "bronze").glob("*.parquet")):
        pq.write_table(pq.read_table(path), path)


def _load(home: Path, engine: str, force: bool = False) -> dict[str, tuple]:
    from aims_nb_utils.validation import validate_tables

    verdicts = validate_tables(make_settings(home, engine="arrow"), tables=list(TABLES)).tables
    run = ingest_tables(
        make_settings(home, engine=engine), tables=list(TABLES), verdicts=verdicts, force=force
    )
    return {
        t: (
            r.status,
            r.mode,
            r.rows_in,
            r.rows_silver,
            r.rows_quarantined,
            r.rows_deleted,
            r.silver_total,
            r.quarantine_total,
        )
        for t, r in run.tables.items()
    }


def _rows(settings: Any, layer: str, table: str) -> tuple[list, list[str]]:
    data = storage.read_table(settings, layer, table).drop_columns(list(DROP))
    return [(f.name, str(f.type)) for f in data.schema], sorted(repr(r) for r in data.to_pylist())


def _contents(home: Path) -> dict[str, Any]:
    """Silver and quarantine rows (fingerprints included), watermarks and ingest state."""
    settings = make_settings(home)
    out: dict[str, Any] = {
        t: (_rows(settings, "silver", t), _rows(settings, "quarantine", t)) for t in TABLES
    }
    out["watermarks"] = [
        {k: v for k, v in row.items() if k not in ("run", "updated")}
        for row in watermark_rows(settings)
    ]
    return out


def _history(home: Path) -> list[tuple]:
    rows = state.query(
        make_settings(home).paths.state_db,
        "SELECT table_name, status, rows_in, rows_silver, rows_quarantined FROM load_history "
        "ORDER BY id",
    )
    return sorted(tuple(r) for r in rows)


def _silver_mtimes(home: Path) -> dict[str, int]:
    settings = make_settings(home)
    return {t: storage.table_path(settings, "silver", t).stat().st_mtime_ns for t in TABLES}


def test_incremental_spark_load_matches_arrow(mixed_lake: Path, tmp_path: Path):
    arrow_home = copy_home(mixed_lake, tmp_path / "arrow")
    spark_home = copy_home(mixed_lake, tmp_path / "spark")

    first = _load(arrow_home, "arrow")
    assert _load(spark_home, "spark") == first
    assert {r[1] for r in first.values()} == {"full"}
    assert _contents(spark_home) == _contents(arrow_home)

    _edit(arrow_home, 1)
    _edit(spark_home, 1)
    second = _load(arrow_home, "arrow")
    assert _load(spark_home, "spark") == second
    for table, (status, mode, rows_in, *_rest) in second.items():
        bronze_rows = pq.read_metadata(spark_home / "data" / "bronze" / f"{table}.parquet")
        assert (status, mode) == ("loaded", "incremental"), table
        assert 0 < rows_in < bronze_rows.num_rows, table  # the changed rows, not a reload
    got = _contents(spark_home)
    assert got == _contents(arrow_home)
    assert sum(len(got[t][1][1]) for t in TABLES) > 0  # quarantined rows were compared

    # the same Bronze written again: the engine finds no row to load and writes nothing
    before = _silver_mtimes(spark_home)
    _rewrite(spark_home)
    third = _load(spark_home, "spark")
    assert {(r[0], r[1], r[2]) for r in third.values()} == {("unchanged", "none", 0)}
    assert _silver_mtimes(spark_home) == before
    assert _contents(spark_home)[TABLES[0]] == got[TABLES[0]]

    # an incremental load leaves what a full reload of the same Bronze leaves
    full_home = copy_home(spark_home, tmp_path / "full")
    _load(full_home, "arrow", force=True)
    full = _contents(full_home)
    assert {t: full[t] for t in TABLES} == {t: got[t] for t in TABLES}


def test_switching_engine_between_runs_neither_reloads_nor_duplicates(
    mixed_lake: Path, tmp_path: Path
):
    """arrow -> spark -> arrow -> spark on one lake does what arrow alone does at every run."""
    arrow_home = copy_home(mixed_lake, tmp_path / "arrow")
    mixed_home = copy_home(mixed_lake, tmp_path / "mixed")
    assert _load(mixed_home, "arrow") == _load(arrow_home, "arrow")
    for step, engine in ((1, "spark"), (2, "arrow")):
        _edit(arrow_home, step)
        _edit(mixed_home, step)
        expected = _load(arrow_home, "arrow")
        assert {r[1] for r in expected.values()} == {"incremental"}
        assert _load(mixed_home, engine) == expected, engine
        assert _contents(mixed_home) == _contents(arrow_home), engine
    assert _history(mixed_home) == _history(arrow_home)
    settings = make_settings(mixed_home)
    for table in TABLES:  # every Bronze row once: in Silver or in quarantine
        bronze = pq.read_metadata(settings.paths.bronze_file(table)).num_rows
        stored = [storage.count_rows(settings, layer, table) for layer in ("silver", "quarantine")]
        assert sum(stored) == bronze, table
    # rows the arrow engine wrote, fingerprints compared by Spark (a keyed table's identical
    # rows are looked at again on every load, by both engines)
    _rewrite(arrow_home)
    _rewrite(mixed_home)
    expected = _load(arrow_home, "arrow")
    assert expected[TPCH[0]][:3] == ("unchanged", "none", 0)
    assert _load(mixed_home, "spark") == expected
    got, want = _contents(mixed_home), _contents(arrow_home)
    assert {t: got[t] for t in TABLES} == {t: want[t] for t in TABLES}
