"""Schema drift: run-to-run snapshots and Bronze against the rule files, on a copy of the lake."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import drift, state
from aims_nb_utils.io import list_bronze_tables
from aims_nb_utils.profiling import profile_tables

ROUTES = "aims_routes"


def _profiled(home: Path, **overrides: object):
    settings = make_settings(home, **overrides)
    run = profile_tables(settings, max_workers=1)
    assert not run.errors
    return settings


def _rewrite(settings, table: str, change) -> None:
    path = settings.paths.bronze_file(table)
    pq.write_table(change(pq.read_table(path)), path)


def _break_routes(data: pa.Table) -> pa.Table:
    """Drop LPO, rename DESCRIPTION, make MINIMUM text, add NEWCOL, keep half the rows."""
    data = data.drop_columns(["LPO"])
    names = ["DESCRIPTIONS" if c == "DESCRIPTION" else c for c in data.column_names]
    data = data.rename_columns(names)
    words = pa.array([f"about {i}" for i in range(data.num_rows)])
    data = data.set_column(data.schema.get_field_index("MINIMUM"), "MINIMUM", words)
    data = data.append_column("NEWCOL", pa.array(["x"] * data.num_rows))
    return data.slice(0, data.num_rows // 2)


def test_first_run_is_an_honest_baseline(fresh_home: Path) -> None:
    settings = _profiled(fresh_home)
    report = drift.reconcile(settings, run_id="run1")
    tables = list_bronze_tables(settings.paths.bronze)
    assert report.first_run and report.previous_run_id is None
    assert set(report.tables) == set(tables)
    assert {t.status for t in report.tables.values()} == {"baseline"}
    summary = report.summary()
    assert summary["columns_added"] == summary["columns_removed"] == 0
    assert summary["tables_drifting_from_rules"] == 0  # rule files were profiled from this data
    saved = json.loads(Path(report.paths["json"]).read_text())
    assert "no previous run to compare yet" in saved["comparison"]
    assert saved["summary"]["first_run"] is True
    page = Path(report.paths["html"]).read_text()
    assert "no previous run to compare yet" in page
    assert "<script" not in page and "http" not in page  # self-contained
    stored = state.query(
        settings.paths.state_db, "SELECT COUNT(*) AS n FROM schema_snapshots WHERE run_id='run1'"
    )
    assert stored[0]["n"] == len(tables)
    assets = report.tables["aims_assets"].snapshot
    assert assets is not None
    assert assets.row_count == pq.read_metadata(settings.paths.bronze_file("aims_assets")).num_rows
    assert assets.types()["ID"] == "integer"


def test_second_run_finds_added_removed_renamed_and_type_changed_columns(fresh_home: Path) -> None:
    settings = _profiled(fresh_home)
    drift.reconcile(settings, run_id="run1")
    _rewrite(settings, ROUTES, _break_routes)
    report = drift.reconcile(settings, run_id="run2")
    assert report.previous_run_id == "run1" and not report.first_run
    routes = report.tables[ROUTES]
    assert routes.status == "drift"
    found = {(c.change, c.column, c.previous, c.current) for c in routes.changes}
    assert found == {
        ("added", "NEWCOL", None, "NEWCOL"),
        ("removed", "LPO", "LPO", None),
        ("renamed", "DESCRIPTIONS", "DESCRIPTION", "DESCRIPTIONS"),
        ("type_changed", "MINIMUM", "decimal", "text"),
    }
    assert routes.row_count_swing
    assert routes.row_count_change_percent == pytest.approx(100.0 * (16 - 33) / 33, abs=0.01)
    # The same drift seen against the rule file, i.e. what ingestion will meet.
    rf = routes.rule_file
    assert rf is not None
    assert rf.missing == ["LPO"] and rf.extra == ["NEWCOL"]
    assert [(a, b) for a, b, _ in rf.renamed] == [("DESCRIPTION", "DESCRIPTIONS")]
    assert ("MINIMUM", "decimal", "text") in rf.type_mismatches
    assert routes.ingestion_action.startswith("evolve:")
    # No false alarms on the 67 tables that did not change.
    others = [t for name, t in report.tables.items() if name != ROUTES]
    assert {t.status for t in others} == {"ok"}
    assert not any(t.changes or t.row_count_swing for t in others)
    saved = json.loads(Path(report.paths["json"]).read_text())["tables"][ROUTES]
    assert saved["renamed"] == "DESCRIPTION -> DESCRIPTIONS"
    assert saved["type_changed"] == "MINIMUM (decimal -> text)"
    page = Path(report.paths["html"]).read_text()
    assert "NEWCOL" in page and "DESCRIPTIONS" in page


def test_policy_decides_what_ingestion_will_do(fresh_home: Path) -> None:
    settings = _profiled(fresh_home, drift_policy="quarantine", drift_policies={ROUTES: "fail"})
    _rewrite(settings, ROUTES, lambda t: t.drop_columns(["LPO"]))
    _rewrite(settings, "aims_phases", lambda t: t.drop_columns(["ID"]))
    _rewrite(settings, "aims_stages", lambda t: t.select(list(reversed(t.column_names))))
    report = drift.reconcile(settings, tables=[ROUTES, "aims_phases", "aims_stages", "aims_owners"])
    assert report.tables[ROUTES].policy == "fail"
    assert report.tables[ROUTES].ingestion_action.startswith("fail: stop this table")
    phases = report.tables["aims_phases"]
    assert phases.policy == "quarantine"
    assert phases.ingestion_action == (
        "cannot ingest whatever the policy: required column(s) missing: ID"
    )
    stages = report.tables["aims_stages"]  # reordering alone is harmless for ingestion
    assert stages.rule_file is not None and stages.rule_file.reordered
    assert stages.ingestion_action.startswith("none:")
    assert report.tables["aims_owners"].ingestion_action.startswith("none:")


def test_row_count_threshold_is_configurable(fresh_home: Path) -> None:
    settings = _profiled(fresh_home)
    drift.reconcile(settings, run_id="run1", tables=["aims_assets"], write=False)
    _rewrite(settings, "aims_assets", lambda t: t.slice(0, int(t.num_rows * 0.9)))
    loose = drift.reconcile(settings, tables=["aims_assets"], record=False, write=False)
    assert not loose.tables["aims_assets"].row_count_swing  # -10 % < 20 % (default)
    assert loose.tables["aims_assets"].status == "ok"
    strict_settings = make_settings(fresh_home, drift_row_count_threshold=5)
    strict = drift.reconcile(strict_settings, tables=["aims_assets"], record=False, write=False)
    table = strict.tables["aims_assets"]
    assert table.row_count_swing and table.status == "drift"
    assert table.row_count_change_percent == pytest.approx(-10.0, abs=0.05)
    assert strict.row_count_threshold == 5.0


def test_unreadable_and_removed_tables_are_reported_not_fatal(fresh_home: Path) -> None:
    settings = _profiled(fresh_home)
    drift.reconcile(settings, run_id="run1", write=False)
    broken = settings.paths.bronze_file("aims_owners")
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    settings.paths.bronze_file("aims_phases").unlink()
    report = drift.reconcile(settings, run_id="run2", write=False)
    owners = report.tables["aims_owners"]
    assert owners.status == "error"
    assert "aims_owners" in owners.notes[0]
    assert "repair" in owners.ingestion_action
    assert report.tables["aims_phases"].status == "removed"
    assert report.summary()["tables_unreadable"] == 1
    assert report.tables["aims_assets"].status == "ok"
    # The next run still compares aims_owners with its last readable snapshot.
    _, _, previous = drift.previous_snapshots(settings, "run3")
    assert previous["aims_owners"].run_id == "run1"


def test_unknown_table_names_the_table_and_the_fix(fresh_home: Path) -> None:
    settings = make_settings(fresh_home)
    with pytest.raises(drift.DriftError, match=r"aims_nosuchtable: no Bronze file"):
        drift.reconcile(settings, tables=["aims_nosuchtable"])
