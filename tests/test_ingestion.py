"""Bronze -> Silver: typed, nothing lost, incremental, atomic under SIGKILL, one run at a time."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import ingestion, state, storage
from aims_nb_utils.cli import main
from aims_nb_utils.errors import BronzeNameWarning, TableNameError
from aims_nb_utils.ingestion import (
    IngestInvariantError,
    LakeLockedError,
    Verdict,
    ingest_tables,
    lake_lock,
)
from aims_nb_utils.io import TEMP_MARKER
from aims_nb_utils.profiling import profile_tables
from aims_nb_utils.quarantine import FAILED_RULES, REASON, ROW_HASH, RUN_ID
from aims_nb_utils.rules import load_rule_file, save_rule_file

TABLES = ["aims_owners", "aims_phases", "aims_stages", "aims_assets", "aims_assethierarchymap"]
PASS = {t: Verdict("PASSED") for t in TABLES}
PLACEHOLDERS = {"None", "NaT", "", " "}


@pytest.fixture(scope="module")
def profiled(lake_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = copy_home(lake_home, tmp_path_factory.mktemp("ingest") / "home")
    profile_tables(make_settings(home))
    return home


@pytest.fixture
def home(profiled: Path, tmp_path: Path) -> Path:
    return copy_home(profiled, tmp_path / "home")


def _ingest(home: Path, tables=TABLES, verdicts=PASS, force=None, **overrides):
    overrides.setdefault("max_workers", 1)
    return ingest_tables(
        make_settings(home, **overrides), tables=tables, verdicts=verdicts, force=force
    )


def _silver(home: Path, table: str, **overrides) -> pa.Table:
    return storage.read_table(make_settings(home, **overrides), "silver", table)


def _quarantine(home: Path, table: str, **overrides) -> pa.Table:
    return storage.read_table(make_settings(home, **overrides), "quarantine", table)


def _bronze(home: Path, table: str) -> pa.Table:
    return pq.read_table(home / "data/bronze" / f"{table}.parquet")


def _write_bronze(home: Path, table: str, data: pa.Table) -> None:
    pq.write_table(data, home / "data/bronze" / f"{table}.parquet", compression="zstd")


def _temp_files(home: Path) -> list[Path]:
    return [p for p in (home / "data").rglob(f"*{TEMP_MARKER}*") if p.is_file()]


def _without_run_id(data: pa.Table) -> pa.Table:
    return data.drop_columns([RUN_ID])


# --- first load ---------------------------------------------------------------------------------


def test_first_load_types_silver_and_accounts_for_every_row(home: Path) -> None:
    settings = make_settings(home, max_workers=1)
    run = ingest_tables(settings, tables=TABLES)  # no verdicts given: validates them itself
    assert run.validation_seconds > 0
    for table in TABLES:
        result = run.tables[table]
        bronze_rows = _bronze(home, table).num_rows
        assert result.status == "loaded" and result.verdict == "PASSED" and result.mode == "full"
        assert result.rows_in == bronze_rows == result.rows_silver + result.rows_quarantined
        assert _silver(home, table).num_rows == result.rows_silver
        assert _quarantine(home, table).num_rows == result.rows_quarantined
    assert run.summary["loaded"] == len(TABLES) and run.summary["errors"] == 0
    assert run.summary["rows_in"] == sum(_bronze(home, t).num_rows for t in TABLES)

    assets = _silver(home, "aims_assets")
    schema = {f.name: f.type for f in assets.schema}
    assert schema["ID"] == pa.int64() and schema["OWNERID"] == pa.int64()
    assert schema["VALIDFROM"] == pa.timestamp("us") and schema["REFERENCECHAINAGE"] == pa.float64()
    assert schema["NAME"] == pa.string() and schema[ROW_HASH] == pa.int64()
    assert schema["ISPRIMARYASSET"] == pa.bool_()  # '0'/'-1' flags
    assert pc.count_distinct(assets.column("ID")).as_py() == assets.num_rows  # no duplicate IDs
    assert assets.column("ID").null_count == 0
    for name in ("NAME", "NOTES", "OWNER", "REMOVEDREASON"):  # placeholders are nulls in Silver
        assert not set(assets.column(name).drop_null().to_pylist()) & PLACEHOLDERS
    # '13000015.0'-style IDs are accepted: Silver holds every ID of its rows' Bronze text.
    bronze = _bronze(home, "aims_assets")
    position = {h: i for i, h in enumerate(ingestion.row_hashes(bronze).tolist())}
    rows = pa.array([position[h] for h in assets.column(ROW_HASH).to_pylist()])
    raw_ids = bronze.column("ID").take(rows)
    assert [int(float(v)) for v in raw_ids.to_pylist()] == assets.column("ID").to_pylist()
    flags = {"-1": True, "1": True, "0": False}
    raw_flags = bronze.column("ISPRIMARYASSET").take(rows).to_pylist()
    assert [flags.get(v) for v in raw_flags] == assets.column("ISPRIMARYASSET").to_pylist()

    history = state.load_history(settings.paths.state_db, limit=50)
    assert {
        h["table_name"]: (h["rows_in"], h["rows_silver"], h["rows_quarantined"], h["status"])
        for h in history
    } == {
        t: (r.rows_in, r.rows_silver, r.rows_quarantined, "loaded") for t, r in run.tables.items()
    }
    marks = {m["table_name"]: m for m in state.watermarks(settings.paths.state_db)}
    assert marks["aims_assets"]["rows"] == bronze.num_rows
    dates = [
        v for v in bronze.column("LASTUPDATED").to_pylist() if v and v[:4].isdigit() and v[4] == "-"
    ]
    assert marks["aims_assets"]["last_updated"] == max(dates)[:19]
    assert marks["aims_assethierarchymap"]["last_updated"] is None  # no LASTUPDATED column


def test_second_run_processes_nothing_and_rewrites_nothing(home: Path) -> None:
    _ingest(home)
    files = sorted(p for p in (home / "data" / "silver").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in files]
    run = _ingest(home, verdicts=None)  # nothing needs a verdict: validation does not even run
    assert {r.status for r in run.tables.values()} == {"unchanged"}
    assert run.summary["rows_in"] == 0 and run.validation_seconds == 0
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    history = state.load_history(make_settings(home).paths.state_db, limit=len(TABLES))
    assert {h["status"] for h in history} == {"unchanged"} and {h["rows_in"] for h in history} == {
        0
    }


# --- incremental --------------------------------------------------------------------------------


def _silver_rows_by_id(home: Path, table: str) -> dict[int, dict]:
    return {row["ID"]: row for row in _silver(home, table).to_pylist()}


def _pick_silver_rows(home: Path, count: int, skip: int = 0) -> list[int]:
    """Bronze positions of rows that are in Silver and whose ID occurs once in Bronze."""
    bronze = _bronze(home, "aims_assets")
    silver_hashes = set(_silver(home, "aims_assets").column(ROW_HASH).to_pylist())
    ids = [
        str(int(float(v))) if v and v.replace(".", "").isdigit() else v
        for v in bronze.column("ID").to_pylist()
    ]
    once = {i for i in ids if ids.count(i) == 1} if len(ids) < 20000 else set(ids)
    hashes = ingestion.row_hashes(bronze).tolist()
    picked = [
        i
        for i, (h, key) in enumerate(zip(hashes, ids, strict=True))
        if h in silver_hashes and key in once
    ]
    return picked[skip : skip + count]


def test_new_drop_processes_only_changed_and_added_rows(home: Path) -> None:
    _ingest(home)
    settings = make_settings(home)
    watermark = state.get_watermark(settings.paths.state_db, "aims_assets")["last_updated"]
    bronze = _bronze(home, "aims_assets")
    changed, deleted = _pick_silver_rows(home, 5), _pick_silver_rows(home, 2, skip=5)
    names = bronze.column("NAME").to_pylist()
    stamps = bronze.column("LASTUPDATED").to_pylist()
    for i in changed:
        names[i] = f"Renamed asset number {i:06d}"  # within the learned 23-58 characters
        stamps[i] = "2031-01-01 00:00:00"
    data = bronze.set_column(bronze.schema.get_field_index("NAME"), "NAME", pa.array(names))
    data = data.set_column(
        data.schema.get_field_index("LASTUPDATED"), "LASTUPDATED", pa.array(stamps)
    )
    added = data.take(pa.array(changed[:3]))
    added = added.set_column(0, "ID", pa.array(["99000001", "99000002.0", "99000003"]))
    added = added.set_column(
        added.schema.get_field_index("UNIQUEASSETID"),
        "UNIQUEASSETID",
        pa.array(["NEW000001", "NEW000002", "NEW000003"]),
    )
    keep = np.ones(data.num_rows, dtype=bool)
    keep[deleted] = False
    new_drop = pa.concat_tables([data.filter(pa.array(keep)), added])
    deleted_ids = {int(float(bronze.column("ID")[i].as_py())) for i in deleted}
    changed_ids = {int(float(bronze.column("ID")[i].as_py())) for i in changed}
    _write_bronze(home, "aims_assets", new_drop)

    run = _ingest(home)

    result = run.tables["aims_assets"]
    assert result.status == "loaded" and result.mode == "incremental"
    assert result.rows_in == len(changed) + 3 == result.rows_silver + result.rows_quarantined
    assert result.rows_deleted == len(changed) + len(deleted)  # old versions of changed rows too
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}")
    newer = [
        s
        for s in new_drop.column("LASTUPDATED").to_pylist()
        if s and iso.match(s) and s > watermark
    ]
    assert len(newer) == result.rows_in  # the same rows a LASTUPDATED watermark would have picked
    silver = _silver_rows_by_id(home, "aims_assets")
    assert all(silver[i]["NAME"].startswith("Renamed asset") for i in changed_ids)
    assert {99000001, 99000002, 99000003} <= set(silver)
    assert not deleted_ids & set(silver)
    ids = _silver(home, "aims_assets").column("ID")
    assert pc.count_distinct(ids).as_py() == len(ids)  # upserted: no ID twice
    assert len(ids) + _quarantine(home, "aims_assets").num_rows == new_drop.num_rows
    others = {
        t: run.tables[t].status
        for t in TABLES
        if t not in ("aims_assets", "aims_assethierarchymap")
    }
    assert set(others.values()) == {"unchanged"}
    # The hierarchy references aims_assets: its rows pointing at the deleted assets are now
    # orphans, so exactly those are re-evaluated (and quarantined), though its own file is unchanged.
    hierarchy = run.tables["aims_assethierarchymap"]
    refs = (
        _bronze(home, "aims_assethierarchymap")
        .select(["ANCESTORASSETID", "DESCENDANTASSETID"])
        .to_pylist()
    )
    orphans = sum(
        any(v not in (None, "None", " ", "") and int(float(v)) in deleted_ids for v in row.values())
        for row in refs
    )
    assert hierarchy.mode == "incremental" and orphans > 0
    assert hierarchy.rows_in == orphans == hierarchy.rows_quarantined


def test_incremental_result_equals_a_full_reload(home: Path, tmp_path: Path) -> None:
    _ingest(home)
    bronze = _bronze(home, "aims_assets")
    names = bronze.column("NAME").to_pylist()
    for i in _pick_silver_rows(home, 20):
        names[i] = "edited"
    _write_bronze(home, "aims_assets", bronze.set_column(5, "NAME", pa.array(names)))
    assert _ingest(home).tables["aims_assets"].mode == "incremental"
    full = copy_home(home, tmp_path / "full")
    _ingest(full, force=True)

    def canonical(data: pa.Table) -> pa.Table:
        return _without_run_id(data).sort_by(ROW_HASH)

    assert canonical(_silver(home, "aims_assets")).equals(canonical(_silver(full, "aims_assets")))
    assert canonical(_quarantine(home, "aims_assets").drop_columns(["_dq_reason"])).equals(
        canonical(_quarantine(full, "aims_assets").drop_columns(["_dq_reason"]))
    )


def test_a_new_duplicate_takes_its_older_twin_out_of_silver(home: Path) -> None:
    _ingest(home)
    bronze = _bronze(home, "aims_assets")
    twin = _pick_silver_rows(home, 1)[0]
    twin_id = int(float(bronze.column("ID")[twin].as_py()))
    copy = bronze.take(pa.array([twin]))
    copy = copy.set_column(5, "NAME", pa.array(["a different asset, same ID"]))
    _write_bronze(home, "aims_assets", pa.concat_tables([bronze, copy]))
    result = _ingest(home).tables["aims_assets"]
    assert result.mode == "incremental" and result.rows_in == 2 and result.rows_quarantined == 2
    assert twin_id not in _silver_rows_by_id(home, "aims_assets")
    quarantine = _quarantine(home, "aims_assets")
    flagged = [r for r in quarantine.to_pylist() if r["ID"] and int(float(r["ID"])) == twin_id]
    assert len(flagged) == 2 and all(
        "expect_column_values_to_be_unique(ID)" in r[FAILED_RULES] for r in flagged
    )


def test_force_reloads_every_row(home: Path) -> None:
    _ingest(home)
    for run in (_ingest(home, force_reprocess=True), _ingest(home, force=True)):
        for table in TABLES:
            assert run.tables[table].mode == "full"
            assert run.tables[table].rows_in == _bronze(home, table).num_rows


# --- verdicts and drift -------------------------------------------------------------------------


def _new_drop(home: Path, table: str = "aims_assets") -> None:
    """The same rows delivered again (a new file): the table needs a verdict again."""
    _write_bronze(home, table, _bronze(home, table))


def test_failed_table_quarantine_all_empties_silver_and_names_the_failure(home: Path) -> None:
    _ingest(home)
    _new_drop(home)
    failed = {**PASS, "aims_assets": Verdict("FAILED", ["critical rules passed 50.0% < 95.0%"])}
    result = _ingest(home, verdicts=failed).tables["aims_assets"]
    rows = _bronze(home, "aims_assets").num_rows
    assert result.status == "not_promoted" and result.rows_in == rows == result.rows_quarantined
    assert _silver(home, "aims_assets").num_rows == 0
    quarantine = _quarantine(home, "aims_assets")
    assert quarantine.num_rows == rows
    assert all(
        r.startswith("table failed its table-level verdict (critical rules passed 50.0% < 95.0%)")
        for r in quarantine.column(REASON).to_pylist()
    )
    assert all(f[0] == "table_verdict(FAILED)" for f in quarantine.column(FAILED_RULES).to_pylist())
    # The next drop passes: a full reload, since the previous load was not promoted.
    assert _ingest(home).tables["aims_assets"].status == "unchanged"
    _new_drop(home)
    reload = _ingest(home).tables["aims_assets"]
    assert reload.status == "loaded" and reload.mode == "full" and reload.rows_in == rows


def test_failed_table_keep_previous_keeps_silver_and_quarantines_the_drop(home: Path) -> None:
    _ingest(home, failed_table_policy="keep_previous")
    before = _silver(home, "aims_assets", failed_table_policy="keep_previous")
    _new_drop(home)
    failed = {**PASS, "aims_assets": Verdict("FAILED", ["quality score 80.0% < 85.0%"])}
    result = _ingest(home, verdicts=failed, failed_table_policy="keep_previous").tables[
        "aims_assets"
    ]
    assert result.status == "not_promoted" and result.rows_silver == 0
    assert _silver(home, "aims_assets").equals(before)
    assert _quarantine(home, "aims_assets").num_rows == _bronze(home, "aims_assets").num_rows


def test_a_real_failed_verdict_from_validation(home: Path) -> None:
    settings = make_settings(home, dq_threshold=100.0, max_workers=1)
    rule_file = load_rule_file(settings.paths.rule_file("aims_assets"))
    for rule in rule_file.expectations:  # no tolerance: every defect fails its rule
        rule.kwargs.pop("mostly", None)
    save_rule_file(rule_file)
    run = ingest_tables(settings, tables=["aims_assets"])
    result = run.tables["aims_assets"]
    assert result.verdict == "FAILED" and result.status == "not_promoted"
    reason = _quarantine(home, "aims_assets").column(REASON)[0].as_py()
    assert reason.startswith("table failed its table-level verdict (") and "100" in reason


def _drift(home: Path) -> pa.Table:
    bronze = _bronze(home, "aims_assets").drop_columns(["NOTES"])
    bronze = bronze.append_column("COLOUR", pa.array(["red"] * bronze.num_rows))
    _write_bronze(home, "aims_assets", bronze)
    return bronze


def test_drift_evolve_keeps_new_columns_as_text_and_missing_ones_null(home: Path) -> None:
    _ingest(home)
    bronze = _drift(home)
    result = _ingest(home).tables["aims_assets"]
    assert result.status == "loaded" and result.mode == "full"
    assert any("schema drift, evolved: missing NOTES; extra COLOUR" in n for n in result.notes)
    silver = _silver(home, "aims_assets")
    assert silver.column("NOTES").null_count == silver.num_rows
    assert set(silver.column("COLOUR").to_pylist()) == {"red"}
    assert silver.num_rows + _quarantine(home, "aims_assets").num_rows == bronze.num_rows
    marks = {r["table"]: r for r in ingestion.watermark_rows(make_settings(home))}
    assert marks["aims_assets"]["drift"] == "missing NOTES; extra COLOUR"


def test_drift_quarantine_sends_the_whole_drop_with_the_drift_named(home: Path) -> None:
    bronze = _drift(home)
    result = _ingest(home, drift_policy="quarantine").tables["aims_assets"]
    assert result.status == "not_promoted" and result.rows_quarantined == bronze.num_rows
    quarantine = _quarantine(home, "aims_assets")
    head = "schema drift (missing NOTES; extra COLOUR) with drift policy 'quarantine'"
    assert all(r.startswith(head) for r in quarantine.column(REASON).to_pylist())
    assert {f[0] for f in quarantine.column(FAILED_RULES).to_pylist()} == {"schema_drift"}


def test_drift_fail_errors_and_leaves_silver_alone(home: Path) -> None:
    _ingest(home)
    before = _silver(home, "aims_assets")
    _drift(home)
    result = _ingest(home, drift_policies={"aims_assets": "fail"}).tables["aims_assets"]
    assert result.status == "error"
    assert "missing NOTES; extra COLOUR" in result.error and "drift policy 'fail'" in result.error
    assert _silver(home, "aims_assets").equals(before)
    history = state.load_history(make_settings(home).paths.state_db, table="aims_assets", limit=1)[
        0
    ]
    assert history["status"] == "error" and "NOTES" in history["error"]


# --- reliability --------------------------------------------------------------------------------


def test_a_second_run_is_refused_with_the_holder_named(home: Path) -> None:
    settings = make_settings(home)
    with lake_lock(settings, "a long ingest"):
        with pytest.raises(
            LakeLockedError, match=rf"pid {os.getpid()} on {socket.gethostname()} \(a long ingest"
        ):
            ingest_tables(settings, tables=TABLES, verdicts=PASS)
    assert not ingestion.lock_path(settings).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(home: Path) -> None:
    settings = make_settings(home)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = ingestion.lock_path(settings)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_at": "x"}))
    assert ingest_tables(settings, tables=["aims_phases"], verdicts=PASS).ok
    assert not lock.exists()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, pathlib
    from aims_nb_utils import ingestion, storage
    from aims_nb_utils.ingestion import Verdict, ingest_tables
    from aims_nb_utils.settings import load_settings

    storage.ROW_GROUP_ROWS = 500  # flush often, so the kill lands with half a file on disk
    ingestion.BATCH_ROWS = 500
    flush = storage.TableWriter._flush
    calls = []

    def slow_flush(self):
        flush(self)
        calls.append(1)
        if len(calls) == 3:
            pathlib.Path(sys.argv[2]).touch()
            time.sleep(120)

    storage.TableWriter._flush = slow_flush
    settings = load_settings(env={}, home=sys.argv[1], max_workers=1)
    ingest_tables(settings, tables=["aims_assets"], force=True, verdicts={"aims_assets": Verdict("PASSED")})
    """)


def test_sigkill_mid_write_keeps_previous_silver_and_a_rerun_converges(
    home: Path, tmp_path: Path
) -> None:
    _ingest(home, tables=["aims_assets"])
    previous = _silver(home, "aims_assets")
    reference = copy_home(home, tmp_path / "reference")
    for target in (home, reference):  # a new drop: every row changes
        bronze = _bronze(target, "aims_assets")
        _write_bronze(
            target,
            "aims_assets",
            bronze.set_column(
                5, "NAME", pc.binary_join_element_wise(bronze.column("NAME"), "v2", " ")
            ),
        )
    _ingest(reference, tables=["aims_assets"])  # what an uninterrupted run gives

    marker = tmp_path / "writing"
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(home), str(marker)])
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, "the ingest ended before it could be killed"
            assert time.monotonic() < deadline, "the ingest never reached the write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert _temp_files(home), "the kill should have landed mid-write"
    assert _silver(home, "aims_assets").equals(previous)  # still readable, still the old load
    assert ingestion.read_lock(make_settings(home))["pid"] == proc.pid

    run = _ingest(home, tables=["aims_assets"])  # takes the stale lock, cleans up, converges
    assert run.tables["aims_assets"].status == "loaded"
    assert _temp_files(home) == []
    silver = _silver(home, "aims_assets")
    assert _without_run_id(silver).equals(_without_run_id(_silver(reference, "aims_assets")))
    assert pc.count_distinct(silver.column("ID")).as_py() == silver.num_rows
    history = state.load_history(make_settings(home).paths.state_db, table="aims_assets", limit=5)
    assert any(h["status"] == "error" and h["error"].startswith("interrupted") for h in history)


def test_invariant_violation_publishes_nothing_and_fails_the_run(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(home)
    before = _silver(home, "aims_assets")
    real = ingestion.quarantine_rows

    def lose_a_row(*args, **kwargs):
        return real(*args, **kwargs).slice(1)

    monkeypatch.setattr(ingestion, "quarantine_rows", lose_a_row)
    with pytest.raises(
        IngestInvariantError, match=r"aims_assets: Bronze has [\d,]+ rows but Silver would hold"
    ) as caught:
        _ingest(home, tables=["aims_assets"], force=True)
    assert caught.value.run.tables["aims_assets"].status == "error"
    assert _silver(home, "aims_assets").equals(before)
    assert _temp_files(home) == []
    history = state.load_history(make_settings(home).paths.state_db, table="aims_assets", limit=1)[
        0
    ]
    assert history["status"] == "error" and "invariant violated" in history["error"]


def test_table_names_from_files_and_arguments_are_validated(home: Path) -> None:
    settings = make_settings(home)
    with pytest.raises(TableNameError):
        ingest_tables(settings, tables=["../../outside"], verdicts=PASS)
    (home / "data/bronze/aims-bad name.parquet").write_bytes(
        (home / "data/bronze/aims_phases.parquet").read_bytes()
    )
    with pytest.warns(BronzeNameWarning, match="aims-bad name.parquet"):
        run = ingest_tables(settings)  # the badly named file is skipped, the rest loads
    assert "aims_phases" in run.tables
    assert not (home / "outside").exists() and not (home.parent / "outside.parquet").exists()


# --- formats, workers, CLI ----------------------------------------------------------------------


def test_delta_storage_gives_the_same_silver_incrementally(home: Path, tmp_path: Path) -> None:
    parquet_home = copy_home(home, tmp_path / "parquet")
    for target, fmt in ((home, "delta"), (parquet_home, "parquet")):
        _ingest(target, storage_format=fmt)
        bronze = _bronze(target, "aims_assets")
        names = bronze.column("NAME").to_pylist()
        names[3] = "changed"
        _write_bronze(target, "aims_assets", bronze.set_column(5, "NAME", pa.array(names)))
        assert _ingest(target, storage_format=fmt).tables["aims_assets"].mode == "incremental"
    assert (home / "data/silver/aims_assets/_delta_log").is_dir()
    delta = _silver(home, "aims_assets", storage_format="delta")
    parquet = _silver(parquet_home, "aims_assets")
    # Same rows and values; Delta holds them in the types Fabric's SQL endpoint reads (naive
    # timestamps tagged UTC, their values unchanged).
    assert any(pa.types.is_timestamp(t) and t.tz is None for t in parquet.schema.types)
    assert delta.schema == storage.delta_schema(parquet.schema)
    assert (
        _without_run_id(delta)
        .sort_by(ROW_HASH)
        .equals(_without_run_id(storage.to_delta(parquet)).sort_by(ROW_HASH))
    )


def test_worker_processes_give_the_same_result(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingestion, "PARALLEL_MIN_BYTES", 0)  # the sample lake is small
    serial = copy_home(home, tmp_path / "serial")
    parallel = _ingest(home, max_workers=2)
    _ingest(serial, max_workers=1)
    for table in TABLES:
        assert parallel.tables[table].status == "loaded"
        assert _without_run_id(_silver(home, table)).equals(_without_run_id(_silver(serial, table)))


def test_cli_ingest_watermarks_and_history(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "aims_phases", "aims_stages", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "2 loaded, 0 unchanged, 0 not promoted, 0 error(s)" in out
    assert main(["watermarks", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "aims_phases" in out and "aims_stages" in out and "latest LASTUPDATED" in out
    assert main(["history", "--home", str(home), "--limit", "5"]) == 0
    assert out.count("aims_") and "loaded" in capsys.readouterr().out
    assert main(["silver-schema", "aims_assets", "--home", str(home)]) == 0
    assert "ISPRIMARYASSET           boolean  bool" in capsys.readouterr().out
    (home / "data/bronze/aims_stages.parquet").write_bytes(b"PAR1 not really")
    assert main(["ingest", "aims_stages", "--home", str(home)]) == 1
    assert "repair" in capsys.readouterr().out


def test_history_hides_runs_that_found_nothing_unless_asked(home: Path) -> None:
    settings = make_settings(home, max_workers=1)
    _ingest(home, tables=["aims_phases"])
    _ingest(home, tables=["aims_phases"])
    shown = ingestion.history_rows(settings)
    assert [(r["table"], r["status"]) for r in shown] == [("aims_phases", "loaded")]
    everything = ingestion.history_rows(settings, include_unchanged=True)
    assert [r["status"] for r in everything] == ["unchanged", "loaded"]
