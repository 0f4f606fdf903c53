"""Gold star schema: integrity, Unknown members, surrogate keys, hierarchy, empty Silver, formats.

A hand-made typed Silver layer gives exact expectations (which row must land on Unknown and why);
an end-to-end test on the generated lake (profile -> ingest -> Gold) checks the fact's row count
against an independent pandas join of the Silver tables ingestion produced.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import gold, orchestration, state, storage

I64 = pa.int64()
TS = pa.timestamp("us")


def _ts(*days: str | None) -> pa.Array:
    return pa.array([None if d is None else dt.datetime.fromisoformat(d) for d in days], TS)


def silver_tables() -> dict[str, pa.Table]:
    """Typed Silver with known defects: unmatched owner/route/class keys, an orphan location."""
    return {
        "aims_assets": pa.table(
            {
                "ID": pa.array([1, 2, 3, 4, 5, 6], I64),
                "UNIQUEASSETID": ["U1", "U2", "U3", "U4", "U5", "U6"],
                "OWNERID": pa.array([10, 10, 999, 11, None, 10], I64),  # 999: no such owner
                "OWNER": ["Ten", "Ten", "Ghost", "Eleven", None, "Ten"],
                "STATUS": ["Published", "Archived", None, "Published", None, "Published"],
                "PHASEID": pa.array([100, 100, None, 101, 100, 999], I64),  # 999: no such phase
                "PHASE": ["Phase 1", "Phase 1", None, "Phase 2", "Phase 1", "Phase ?"],
                "STAGEID": pa.array([1, 2, None, 1, 1, 1], I64),
                "STAGE": ["1 - Brief", "2 - Concept", None, "1 - Brief", "1 - Brief", "1 - Brief"],
                "ISPRIMARYASSET": pa.array([True, False, None, True, False, True]),
                "REFERENCECHAINAGE": pa.array([1.5, 2.5, None, 3.5, 4.5, 5.5]),
                "WHENCREATED": _ts(
                    "2024-01-01", "2024-01-05 10:00", None, "2024-02-01", "2024-01-03", "2024-01-02"
                ),
                "LASTUPDATED": _ts(
                    "2024-03-01", "2024-03-01", "2024-03-02", None, "2024-03-01", "2024-03-01"
                ),
                "VALIDFROM": _ts(None, None, None, None, None, None),
            }
        ),
        "aims_assetlocations": pa.table(
            {
                "ID": pa.array([50, 51, 52, 53, 54], I64),
                "ASSETID": pa.array([1, 1, 2, 4, 77], I64),  # 77: no such asset
                "ROUTEID": pa.array([7, 9, None, 8, 7], I64),  # 8: no such route
                "ASSETCLASSID": pa.array([1000, 1002, 1001, 5555, 1000], I64),  # 5555: no class
                "OSGBEASTING": pa.array([1.0, 2.0, 3.0, 4.0, 5.0]),
                "OSGBNORTHING": pa.array([1.0, 2.0, 3.0, 4.0, 5.0]),
            }
        ),
        "aims_routes": pa.table(
            {
                "ID": pa.array([9, 7], I64),
                "CODE": ["R9", "R7"],
                "DESCRIPTION": ["Route nine", "Route seven"],
                "LPO": ["b", "a"],
                "CHAINAGEUNITS": ["km", "km"],
                "MINIMUM": pa.array([1.0, 0.0]),
                "MAXIMUM": pa.array([6.0, 5.0]),
            }
        ),
        "aims_assetclasses": pa.table(
            {
                "ID": pa.array([1000, 1001, 1002, 2000, 2001], I64),
                "CODE": ["A", "A-B", "A-B-C", "X", "Y"],
                "NAME": ["Alpha", "Beta", "Gamma", "Xi", "Ypsilon"],
                "PARENTID": pa.array([None, 1000, 1001, 2001, 2000], I64),  # 2000 <-> 2001: cycle
                "PARENT": [None, "Alpha", "Beta", "Ypsilon", "Xi"],
                "LEVELNUMBER": pa.array([1.0, 2.0, 3.0, 1.0, 1.0]),
                "ASSETLEVEL": ["Group", "Group", "Primary asset", None, None],
                "STATUS": ["Live"] * 5,
            }
        ),
        "aims_organisations": pa.table(
            {
                "ID": pa.array([500, 501], I64),
                "NAME": ["Org A", "Org B"],
                "PARENTID": pa.array([None, 500], I64),
                "PARENT": [None, "Org A"],
                "OWNERID": pa.array([10, 12], I64),
                "OWNER": ["Ten", "Twelve"],
                "DEFAULTASSETSTATUS": ["Published", "Work in progress"],
            }
        ),
        "aims_owners": pa.table(
            {"ID": pa.array([11, 10], I64), "NAME": ["Eleven", "Ten"], "CODE": ["E", "T"]}
        ),
        "aims_phases": pa.table(
            {"ID": pa.array([100, 101], I64), "DESCRIPTION": ["Phase 1", "Phase 2"]}
        ),
        "aims_stages": pa.table(
            {"ID": pa.array([1, 2], I64), "DESCRIPTION": ["Brief", "Concept Design"]}
        ),
    }


def write_silver(settings, tables: dict[str, pa.Table]) -> None:
    for name, data in tables.items():
        storage.write_table(settings, "silver", name, data)


@pytest.fixture
def built(tmp_path: Path):
    settings = make_settings(tmp_path / "home")
    write_silver(settings, silver_tables())
    return settings, gold.build_gold(settings, run_id="t1")


def _gold(settings, name: str) -> pd.DataFrame:
    return storage.read_table(settings, "gold", name).to_pandas()


def test_fact_row_count_equals_independent_left_join(built) -> None:
    settings, build = built
    src = silver_tables()
    assets = src["aims_assets"].to_pandas()
    locations = src["aims_assetlocations"].to_pandas()
    expected = assets.merge(locations, left_on="ID", right_on="ASSETID", how="left")
    fact = _gold(settings, gold.FACT)
    assert len(fact) == len(expected) == 7
    assert build.row_counts[gold.FACT] == 7
    assert sorted(fact["LOCATION_ID"].dropna().astype(int)) == [50, 51, 52, 53]
    assert build.join["locations_without_asset"] == 1  # location 54 points at asset 77
    assert build.join["assets_without_location"] == 3  # assets 3, 5 and 6
    located = fact.groupby("ASSET_ID")["HAS_LOCATION"].any()
    assert located.to_dict() == {1: True, 2: True, 3: False, 4: True, 5: False, 6: False}


def test_every_fact_row_finds_every_dimension(built) -> None:
    settings, build = built
    fact = _gold(settings, gold.FACT)
    orphans = {}
    for column, (dim_name, key) in gold.FACT_KEYS.items():
        dim_keys = set(_gold(settings, dim_name)[key])
        orphans[column] = int((~fact[column].isin(dim_keys)).sum() + fact[column].isna().sum())
    assert orphans == {c: 0 for c in gold.FACT_KEYS}
    assert build.integrity is not None and build.integrity.passed
    assert build.integrity.orphan_rows == 0
    assert build.status == "success"


def test_unmatched_keys_land_on_the_unknown_member(built) -> None:
    settings, build = built
    fact = _gold(settings, gold.FACT).set_index("LOCATION_ID", drop=False)
    by_asset = _gold(settings, gold.FACT).groupby("ASSET_ID").first()
    assert by_asset.loc[3, "ORGANISATION_KEY"] == gold.UNKNOWN_KEY  # owner 999 unknown
    assert by_asset.loc[5, "ORGANISATION_KEY"] == gold.UNKNOWN_KEY  # owner null
    assert fact.loc[53, "ROUTE_KEY"] == gold.UNKNOWN_KEY  # route 8 unknown
    assert fact.loc[53, "ASSETCLASS_KEY"] == gold.UNKNOWN_KEY  # class 5555 unknown
    assert by_asset.loc[3, "STATUS_KEY"] == gold.UNKNOWN_KEY  # no status, phase or stage
    assert by_asset.loc[3, "CREATED_DATE_KEY"] == gold.UNKNOWN_KEY  # no creation date
    # ... and the integrity report counts exactly those rows as Unknown.
    unknown = build.unknown_rows
    assert unknown["ORGANISATION_KEY"] == 2
    assert unknown["ROUTE_KEY"] == 5  # 53 (route 8), 52 (null route), assets 3, 5 and 6
    assert unknown["ASSETCLASS_KEY"] == 4  # 53 and the three assets without a location
    for name in gold.DIMENSIONS:
        dim = _gold(settings, name)
        key = gold.SCHEMAS[name].names[0]
        assert (dim[key] == gold.UNKNOWN_KEY).sum() == 1, name


def test_surrogate_keys_are_unique_int64_and_resolve_to_the_right_ids(built) -> None:
    settings, _ = built
    for name in gold.DIMENSIONS:
        table = storage.read_table(settings, "gold", name)
        key = gold.SCHEMAS[name].names[0]
        assert table.schema.field(key).type == pa.int64(), name
        assert table.column(key).to_pandas().is_unique, name
    fact = _gold(settings, gold.FACT)
    routes = _gold(settings, gold.DIM_ROUTE)
    resolved = fact.merge(routes, on="ROUTE_KEY", how="left").set_index("LOCATION_ID")
    assert resolved.loc[50, "ROUTE_ID"] == 7 and resolved.loc[50, "ROUTE_CODE"] == "R7"
    assert resolved.loc[51, "ROUTE_ID"] == 9
    owners = _gold(settings, gold.DIM_ORGANISATION)
    by_owner = fact.merge(owners, on="ORGANISATION_KEY").groupby("ASSET_ID").first()
    assert by_owner.loc[1, "OWNER_ID"] == 10
    assert by_owner.loc[1, "ORGANISATION_NAME"] == "Org A"  # organisation joined via OWNERID
    assert by_owner.loc[4, "OWNER_NAME"] == "Eleven"
    # Owner 12 exists only through an organisation: still a member, named from it.
    assert owners.set_index("OWNER_ID").loc[12, "OWNER_NAME"] == "Twelve"


def test_status_dimension_is_keyed_by_ids_with_names_attached(built) -> None:
    settings, build = built
    status = _gold(settings, gold.DIM_STATUS)
    real = status[status["STATUS_KEY"] > 0]
    combos = set(zip(real["STATUS"], real["PHASE_ID"], real["STAGE_ID"], strict=True))
    unknown_phase = ("Published", None, 1)  # asset 6: phase 999 is not in aims_phases
    unknown_status = (gold.UNKNOWN_LABEL, 100, 1)  # asset 5: no status, known phase and stage
    expected = {
        ("Published", 100, 1),
        ("Archived", 100, 2),
        ("Published", 101, 1),
        unknown_phase,
        unknown_status,
    }
    assert {(s, None if pd.isna(p) else p, g) for s, p, g in combos} == expected
    assert set(real.loc[real["PHASE_ID"] == 101, "PHASE"]) == {"Phase 2"}
    assert real.loc[real["PHASE_ID"].isna(), "PHASE"].tolist() == [gold.UNKNOWN_LABEL]
    assert any("1 assets have a PHASEID not found" in n for n in build.notes)
    fact = _gold(settings, gold.FACT).merge(status, on="STATUS_KEY").set_index("ASSET_ID")
    assert fact.loc[5, "STATUS"] == gold.UNKNOWN_LABEL and fact.loc[5, "PHASE_ID"] == 100
    assert pd.isna(fact.loc[6, "PHASE_ID"]) and fact.loc[6, "STATUS"] == "Published"


def test_date_dimension_is_contiguous_and_matches_the_fact_dates(built) -> None:
    settings, _ = built
    dates = _gold(settings, gold.DIM_DATE)
    real = dates[dates["DATE_KEY"] > 0].sort_values("DATE")
    assert real["DATE"].min() == dt.date(2024, 1, 1) and real["DATE"].max() == dt.date(2024, 3, 2)
    assert len(real) == (dt.date(2024, 3, 2) - dt.date(2024, 1, 1)).days + 1
    fact = _gold(settings, gold.FACT).groupby("ASSET_ID").first()
    created = dates.set_index("DATE_KEY").loc[fact.loc[2, "CREATED_DATE_KEY"]]
    assert created["DATE"] == dt.date(2024, 1, 5) and created["DAY_NAME"] == "Friday"


def test_assetclass_hierarchy_parent_level_path_and_cycle(built) -> None:
    settings, build = built
    classes = _gold(settings, gold.DIM_ASSETCLASS).set_index("ASSETCLASS_ID")
    gamma = classes.loc[1002]
    assert gamma["PARENT_ASSETCLASS_ID"] == 1001 and gamma["PARENT_ASSETCLASS_NAME"] == "Beta"
    assert gamma["HIERARCHY_LEVEL"] == 3
    assert gamma["HIERARCHY_PATH"] == "Alpha > Beta > Gamma"
    assert gamma["HIERARCHY_PATH_CODES"] == "A > A-B > A-B-C"
    assert gamma["ROOT_ASSETCLASS_ID"] == 1000
    assert classes.loc[1001, "PARENT_ASSETCLASS_KEY"] == classes.loc[1000, "ASSETCLASS_KEY"]
    assert classes.loc[1000, "PARENT_ASSETCLASS_KEY"] == gold.UNKNOWN_KEY
    assert classes.loc[1000, "HIERARCHY_LEVEL"] == 1
    for cyclic in (2000, 2001):  # a parent cycle is reported, not looped forever
        assert classes.loc[cyclic, "HIERARCHY_LEVEL"] == 0
        assert classes.loc[cyclic, "HIERARCHY_PATH"].startswith("(cycle)")
    assert any("cycle" in note for note in build.notes)


def test_integrity_check_of_written_files_catches_a_broken_dimension(built) -> None:
    settings, _ = built
    routes = storage.read_table(settings, "gold", gold.DIM_ROUTE)
    keep = [code != "R7" for code in routes.column("ROUTE_CODE").to_pylist()]
    storage.write_table(settings, "gold", gold.DIM_ROUTE, routes.filter(pa.array(keep)))
    report = gold.check_written_integrity(settings)
    route = next(c for c in report.checks if c.fact_column == "ROUTE_KEY")
    assert route.orphan_rows == 1  # location 50 pointed at R7
    assert not route.passed and not report.passed


def _gold_written(settings) -> list[str]:
    return [name for name in gold.GOLD_TABLES if storage.table_exists(settings, "gold", name)]


def test_empty_lake_skips_gold_naming_every_missing_source(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    build = gold.build_gold(settings)
    assert build.status == "skipped" and not build.applies
    assert build.skip_reason.startswith("not an AIMS lake: ")
    for table in gold.SOURCE_TABLES:
        assert table in build.skip_reason
    assert str(settings.paths.bronze) in build.skip_reason
    assert _gold_written(settings) == []  # a skip writes nothing, not empty tables
    metrics = build.metrics()
    assert metrics[orchestration.SKIP_KEY] == build.skip_reason
    assert orchestration.skip_reason(metrics) == build.skip_reason


def test_lake_of_other_tables_skips_gold(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(pa.table({"o_orderkey": [1, 2]}), settings.paths.bronze / "orders.parquet")
    pq.write_table(pa.table({"c_custkey": [1]}), settings.paths.bronze / "customer.parquet")
    build = gold.build_gold(settings)
    assert build.status == "skipped"
    assert "aims_assets" in build.skip_reason and "orders" not in build.skip_reason
    assert _gold_written(settings) == []


def test_aims_sources_in_bronze_that_silver_lacks_fail_gold_naming_each_load(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "home")
    settings.paths.bronze.mkdir(parents=True)
    for name, data in silver_tables().items():
        pq.write_table(data, settings.paths.bronze_file(name))
    db = settings.paths.state_db
    load = state.start_load(db, "r1", "aims_assets", state.utc_now(), 6)
    state.finish_load(db, load, status="error", error="disk full", ended_at=state.utc_now())
    build = gold.build_gold(settings)
    assert build.status == "failed" and build.applies
    assert "aims_assets (Bronze 6 rows, Silver no table, last load error: disk full)" in (
        build.failure
    )
    assert "aims_routes (Bronze 2 rows, Silver no table, last load never loaded)" in build.failure
    # reference tables only check IDs: a note, not a reason to fail
    assert "aims_phases" not in build.failure
    assert any(n.startswith("aims_phases (") for n in build.notes)
    assert _gold_written(settings) == []
    with pytest.raises(gold.GoldSourceError, match=r"Silver has no rows for aims_assets"):
        build.raise_for_sources()
    assert build.metrics()[orchestration.SKIP_KEY] is None


def test_a_source_with_no_rows_in_bronze_is_not_a_failed_load(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    tables = silver_tables()
    settings.paths.bronze.mkdir(parents=True)
    pq.write_table(tables["aims_routes"].slice(0, 0), settings.paths.bronze_file("aims_routes"))
    del tables["aims_routes"]
    write_silver(settings, tables)
    build = gold.build_gold(settings)
    assert build.status == "success", build.failure
    assert build.row_counts[gold.DIM_ROUTE] == 1  # Unknown only


def test_empty_assets_everywhere_is_nothing_to_build(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    tables = silver_tables()
    tables["aims_assets"] = tables["aims_assets"].slice(0, 0)
    write_silver(settings, tables)
    build = gold.build_gold(settings)
    assert build.status == "skipped"
    assert build.skip_reason == "nothing to build from: aims_assets has 0 rows in Silver"


def _as_text(table: pa.Table, id_suffix: str = "") -> pa.Table:
    """Every column as text, the way a rule file without type rules leaves Silver."""
    columns = {}
    for field in table.schema:
        values = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        else:
            text = values.cast(pa.string())
        if pa.types.is_integer(field.type) and id_suffix:
            text = pc.binary_join_element_wise(text, id_suffix, "")
        columns[field.name] = text
    return pa.table(columns)


def test_text_silver_gives_the_same_gold_as_typed_silver(tmp_path: Path) -> None:
    typed = make_settings(tmp_path / "typed")
    write_silver(typed, silver_tables())
    typed_build = gold.build_gold(typed, keep_tables=True)
    text = make_settings(tmp_path / "text")
    write_silver(text, {n: _as_text(t, ".0") for n, t in silver_tables().items()})
    text_build = gold.build_gold(text, keep_tables=True)
    assert text_build.status == "success"
    for name in gold.GOLD_TABLES:
        assert text_build.tables[name].equals(typed_build.tables[name]), name


def test_typed_silver_columns_are_used_as_they_are() -> None:
    data = pa.table(
        {
            "ID": pa.array([13000015, None], I64),
            "WHEN": pa.array([dt.datetime(2024, 1, 5, 23, 30), None], pa.timestamp("us", "UTC")),
            "FLAG": pa.array([True, None]),
            "N": pa.array([1.5, None]),
        }
    )
    assert gold.as_ids(data, "t", "ID").to_pylist() == [13000015, None]
    assert gold.as_timestamps(data, "t", "WHEN").to_pylist() == [
        dt.datetime(2024, 1, 5, 23, 30),
        None,
    ]
    assert gold.as_booleans(data, "t", "FLAG").to_pylist() == [True, None]
    assert gold.as_floats(data, "t", "N").to_pylist() == [1.5, None]
    text = pa.table(
        {"ID": ["13000015.0", "x"], "WHEN": ["2024-01-05T23:30:00+02:00", "2024-02-30"]}
    )
    assert gold.as_ids(text, "t", "ID").to_pylist() == [13000015, None]
    assert gold.as_timestamps(text, "t", "WHEN").to_pylist() == [
        dt.datetime(2024, 1, 5, 21, 30),
        None,
    ]


def test_partial_silver_reports_missing_columns_and_sources(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    tables = silver_tables()
    tables["aims_assets"] = tables["aims_assets"].drop_columns(["STAGEID", "STAGE"])
    del tables["aims_routes"]
    write_silver(settings, tables)
    build = gold.build_gold(settings)
    assert build.sources["aims_assets"].missing_columns == ["STAGEID", "STAGE"]
    assert not build.sources["aims_routes"].present
    assert build.row_counts[gold.DIM_ROUTE] == 1
    assert build.unknown_rows["ROUTE_KEY"] == build.row_counts[gold.FACT]
    assert build.integrity is not None and build.integrity.passed


def test_delta_storage_format_round_trips(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", storage_format="delta")
    write_silver(settings, silver_tables())
    build = gold.build_gold(settings)
    assert (storage.table_path(settings, "gold", gold.FACT) / "_delta_log").is_dir()
    assert storage.read_table(settings, "gold", gold.FACT).num_rows == 7
    assert build.integrity is not None and build.integrity.passed
    assert build.metrics()["storage_format"] == "delta"


def test_text_ids_in_silver_are_rejected_with_the_table_and_column_named(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    tables = silver_tables()
    tables["aims_routes"] = tables["aims_routes"].set_column(
        0, "ID", pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)])
    )
    write_silver(settings, tables)
    with pytest.raises(gold.GoldBuildError, match=r"aims_routes, column ID.*not an ID type"):
        gold.build_gold(settings)
