"""BI KPIs: every value equals an independent pandas computation on the Silver tables ingestion
wrote from the sample lake; exports are complete and typed; a lake without the AIMS inputs is skipped, one missing rows fails.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils import bi, gold, orchestration, storage
from aims_nb_utils.ingestion import ingest_tables
from aims_nb_utils.profiling import profile_tables

NOW = datetime(2024, 6, 30, tzinfo=timezone.utc)
TABLES = [
    "aims_assets",
    "aims_assetlocations",
    "aims_routes",
    "aims_assetclasses",
    "aims_organisations",
    "aims_owners",
    "aims_consentmilestones",
    "aims_noncompliances",
]


@pytest.fixture(scope="module")
def lake(lake_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Sample lake -> rule files -> Silver (8 tables) -> Gold -> KPIs, once for the module."""
    home = copy_home(lake_home, tmp_path_factory.mktemp("bi") / "home")
    settings = make_settings(home)
    profile_tables(settings, max_workers=1)
    run = ingest_tables(settings, tables=TABLES)
    assert run.summary["errors"] == 0, run.to_dict()
    # The sample never records an ACTUALDATE; give every third milestone one so that
    # "share completed" is a real computation, not a constant 0.
    milestones = storage.read_table(settings, "silver", "aims_consentmilestones")
    done = pa.array([i % 3 == 0 for i in range(milestones.num_rows)])
    actual = pc.if_else(
        done, milestones.column("FORECASTDATE"), pa.scalar(None, pa.timestamp("us"))
    )
    index = milestones.schema.get_field_index("ACTUALDATE")
    milestones = milestones.set_column(
        index, "ACTUALDATE", actual.cast(milestones.schema.field(index).type)
    )
    storage.write_table(settings, "silver", "aims_consentmilestones", milestones)
    gold.build_gold(settings)
    result = bi.compute_kpis(settings, run_id="bi-test", now=NOW)
    return settings, result


def _silver(settings, table: str) -> pd.DataFrame:
    return storage.read_table(settings, "silver", table).to_pandas()


def _kpi(result: bi.KpiResult, kpi: str) -> pd.DataFrame:
    frame = result.frame()
    return frame[frame["kpi"] == kpi]


def _by_member_id(result: bi.KpiResult, kpi: str) -> dict:
    part = _kpi(result, kpi)
    return {
        (None if pd.isna(i) else int(i)): v
        for i, v in zip(part["member_id"], part["value"], strict=True)
    }


def test_asset_counts_equal_pandas_on_silver(lake) -> None:
    settings, result = lake
    assets = _silver(settings, "aims_assets")
    locations = _silver(settings, "aims_assetlocations")
    routes = _silver(settings, "aims_routes")
    assert result.value("assets_total") == assets["ID"].nunique()
    by_status = assets.groupby(assets["STATUS"].fillna(gold.UNKNOWN_LABEL))["ID"].nunique()
    got = _kpi(result, "assets_by_status").set_index("member")["value"]
    assert got.to_dict() == by_status.astype(float).to_dict()
    by_phase = assets.groupby(assets["PHASEID"].astype("Int64"), dropna=False)["ID"].nunique()
    expected_phase = {(None if pd.isna(k) else int(k)): float(v) for k, v in by_phase.items()}
    assert _by_member_id(result, "assets_by_phase") == expected_phase
    # Route comes from the location; unmatched or missing routes count under Unknown (no id).
    joined = assets[["ID"]].merge(locations, left_on="ID", right_on="ASSETID", how="left")
    known = joined["ROUTEID"].isin(routes["ID"])
    route = joined["ROUTEID"].where(known).astype("Int64")
    by_route = joined.groupby(route, dropna=False)["ID_x"].nunique()
    expected_route = {(None if pd.isna(k) else int(k)): float(v) for k, v in by_route.items()}
    assert _by_member_id(result, "assets_by_route") == expected_route
    assert sum(expected_route.values()) >= assets["ID"].nunique()  # an asset may span routes


def test_location_coverage_equals_pandas(lake) -> None:
    settings, result = lake
    assets = _silver(settings, "aims_assets")
    locations = _silver(settings, "aims_assetlocations")
    located = assets["ID"].isin(locations["ASSETID"])
    expected = 100.0 * located.sum() / assets["ID"].nunique()
    assert 0 < expected < 100  # the sample has assets without a location
    assert result.value("location_coverage") == pytest.approx(expected)
    row = _kpi(result, "location_coverage").iloc[0]
    assert (row["numerator"], row["denominator"]) == (located.sum(), assets["ID"].nunique())


def test_consent_milestone_progress_equals_pandas(lake) -> None:
    settings, result = lake
    m = _silver(settings, "aims_consentmilestones")
    completed = m["ACTUALDATE"].notna()
    assert result.value("milestones_completed") == pytest.approx(100.0 * completed.mean())
    overdue = (~completed) & (m["FORECASTDATE"] < pd.Timestamp(NOW.replace(tzinfo=None)))
    assert result.value("milestones_overdue") == overdue.sum()
    by_type = completed.groupby(m["CONSENTMILESTONETYPEID"]).mean() * 100.0
    got = _by_member_id(result, "milestones_completed")
    got.pop(None)  # the overall row
    assert got.keys() == {int(k) for k in by_type.index}
    for type_id, share in by_type.items():
        assert got[int(type_id)] == pytest.approx(share), type_id


def test_noncompliance_counts_equal_pandas(lake) -> None:
    settings, result = lake
    n = _silver(settings, "aims_noncompliances")
    assert result.value("noncompliances_total") == len(n)
    assert result.value("noncompliances_open") == n["DATECLOSED"].isna().sum()
    for kpi, column in (
        ("noncompliances_by_status", "STATUS"),
        ("noncompliances_by_category", "CATEGORYTYPE"),
    ):
        expected = n[column].fillna(gold.UNKNOWN_LABEL).value_counts().astype(float).to_dict()
        assert _kpi(result, kpi).set_index("member")["value"].to_dict() == expected, kpi


def test_exports_are_complete_and_atomic(lake) -> None:
    settings, result = lake
    paths = bi.export_kpis(settings, result)
    parquet = pq.read_table(paths["parquet"])
    assert parquet.schema == bi.KPI_SCHEMA
    assert parquet.equals(result.kpis)
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == bi.KPI_SCHEMA.names
    assert len(csv) == result.kpis.num_rows
    assert csv["value"].sum() == pytest.approx(pc.sum(result.kpis.column("value")).as_py())
    leftovers = [p.name for p in settings.paths.reports.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_lake_without_any_bi_input_skips_and_exports_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(pa.table({"l_orderkey": [1]}), settings.paths.bronze / "lineitem.parquet")
    result = bi.run_bi(settings, run_id="first")
    assert not result.applies and result.failure is None
    assert result.skip_reason.startswith("not an AIMS lake: ")
    for table in bi.BI_SOURCES:
        assert table in result.skip_reason
    assert result.headline()[orchestration.SKIP_KEY] == result.skip_reason
    assert result.paths == {}
    assert not (settings.paths.reports / "bi_kpis.parquet").exists()


def test_missing_inputs_of_a_partial_lake_give_typed_exports_and_say_why(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    milestones = pa.table(
        {
            "ID": pa.array([1, 2], pa.int64()),
            "CONSENTMILESTONETYPEID": pa.array([5, 5], pa.int64()),
            "CONSENTMILESTONETYPE": ["Survey", "Survey"],
            "FORECASTDATE": pa.array(
                [datetime(2024, 1, 1), datetime(2025, 1, 1)], pa.timestamp("us")
            ),
            "ACTUALDATE": pa.array([datetime(2024, 1, 2), None], pa.timestamp("us")),
        }
    )
    storage.write_table(settings, "silver", "aims_consentmilestones", milestones)
    result = bi.run_bi(settings, run_id="first")
    assert result.applies
    assert result.value("milestones_completed") == 50.0
    assert result.headline()["assets_total"] is None
    assert any("no asset KPIs: aims_assets is not in this lake" in n for n in result.notes)
    assert any("aims_noncompliances is not in this lake" in n for n in result.notes)
    parquet = pq.read_table(result.paths["parquet"])
    assert parquet.num_rows == result.kpis.num_rows and parquet.schema == bi.KPI_SCHEMA
    header = Path(result.paths["csv"]).read_text().splitlines()[0]
    assert header.replace('"', "").split(",") == bi.KPI_SCHEMA.names


def test_assets_in_silver_without_gold_fail_bi(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    assets = pa.table({"ID": pa.array([1, 2, 3], pa.int64())})
    storage.write_table(settings, "silver", "aims_assets", assets)
    result = bi.run_bi(settings)
    assert result.skip_reason is None
    assert "Gold FACT_Asset_Inventory is not built while Silver aims_assets has 3 rows" in (
        result.failure
    )
    assert result.paths == {}
    with pytest.raises(bi.BiSourceError, match="not built"):
        result.raise_for_sources()


def test_an_input_in_bronze_that_silver_lacks_fails_bi(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(
        pa.table({"ID": ["1", "2"], "STATUS": ["Open", "Closed"]}),
        settings.paths.bronze_file("aims_noncompliances"),
    )
    result = bi.run_bi(settings)
    assert result.failure == (
        "aims_noncompliances (Bronze 2 rows, Silver no table, last load never loaded)"
    )


def test_ratio_over_nothing_is_null_not_zero(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    empty = pa.table(
        {
            "ID": pa.array([], pa.int64()),
            "CONSENTMILESTONETYPEID": pa.array([], pa.int64()),
            "CONSENTMILESTONETYPE": pa.array([], pa.string()),
            "FORECASTDATE": pa.array([], pa.timestamp("us")),
            "ACTUALDATE": pa.array([], pa.timestamp("us")),
        }
    )
    storage.write_table(settings, "silver", "aims_consentmilestones", empty)
    result = bi.compute_kpis(settings)
    assert result.value("milestones_completed") is None
    row = _kpi(result, "milestones_completed").iloc[0]
    assert row["denominator"] == 0 and math.isnan(row["value"])
