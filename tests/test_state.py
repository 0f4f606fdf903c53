"""State DB: history is appended per run, a failed transaction leaves the previous state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aims_nb_utils import state


def test_run_ids_sort_by_time_and_are_unique() -> None:
    ids = [state.new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i.split("_")) == 3 for i in ids)


def test_load_history_records_a_load_from_start_to_finish(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    load_id = state.start_load(db, "r1", "aims_assets", state.utc_now(), rows_in=10)
    assert state.load_history(db)[0]["status"] == "running"
    state.finish_load(db, load_id, rows_silver=8, rows_quarantined=2, status="loaded")
    row = state.load_history(db)[0]
    assert (row["rows_in"], row["rows_silver"], row["rows_quarantined"], row["status"]) == (
        10,
        8,
        2,
        "loaded",
    )
    with pytest.raises(ValueError, match="rows_lost"):
        state.finish_load(db, load_id, rows_lost=1)


def test_history_limit_and_order(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    for i in range(25):
        state.start_load(db, f"r{i}", "aims_routes", state.utc_now(), rows_in=i)
    rows = state.load_history(db, limit=20)
    assert len(rows) == 20 and rows[0]["run_id"] == "r24"


def test_metric_rows_accumulate_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    for run in ("r1", "r2"):
        state.record_table_metrics(
            db, [{"run_id": run, "run_at": state.utc_now(), "table_name": "t", "status": "PASSED"}]
        )
    runs = state.query(db, "SELECT run_id FROM table_metrics ORDER BY run_id")
    assert [r["run_id"] for r in runs] == ["r1", "r2"]


def test_failed_transaction_leaves_previous_watermark(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    state.set_watermark(
        db,
        table_name="t",
        last_updated="2024-01-01",
        fingerprint="a",
        rows=1,
        run_id="r1",
        updated_at=state.utc_now(),
    )
    with pytest.raises(sqlite3.IntegrityError):
        state.set_watermark(
            db, table_name="t", fingerprint=None, rows=2, run_id="r2", updated_at="x"
        )
    assert state.get_watermark(db, "t")["fingerprint"] == "a"


def test_a_state_database_that_is_not_one_names_the_file_and_the_fix(tmp_path) -> None:
    from aims_nb_utils.state import StateError, load_history

    db = tmp_path / "aims_state.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"aims_state.db: .*not a database -> move the file aside"):
        load_history(db)
