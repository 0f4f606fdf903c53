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
import pytest
from conftest import make_settings

from aims_nb_utils import gold, storage

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


def test_empty_silver_gives_typed_empty_gold(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    build = gold.build_gold(settings)
    for name in gold.GOLD_TABLES:
        table = storage.read_table(settings, "gold", name)
        assert table.schema.names == gold.SCHEMAS[name].names, name
        assert [f.type for f in table.schema] == [f.type for f in gold.SCHEMAS[name]], name
        expected_rows = 0 if name == gold.FACT else 1  # the Unknown member only
        assert table.num_rows == expected_rows, name
    assert build.empty
    assert any("aims_assets does not exist" in n for n in build.notes)
    assert any("FACT_Asset_Inventory is empty" in n for n in build.notes)
    assert build.status == "success"  # nothing to resolve is not an integrity failure


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
