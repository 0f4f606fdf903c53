"""The synthetic Bronze lake: shape, realism, relationships and an exact defect manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aims_nb_utils.errors import AimsError, BronzeReadError
from aims_nb_utils.sample_data import (
    DEFAULT_SCALE,
    DEFECT_KINDS,
    GENERATION_NAME,
    MANIFEST_NAME,
    ORPHAN_BASE,
    DefectRates,
    defect_count,
    defect_counts,
    eligible_columns,
    generate_lake,
    read_generation,
    read_manifest,
    relations,
    rows_for_scale,
    table_ids,
)
from aims_nb_utils.spec import load_spec

SCALE = 0.004  # ~50k rows, a few seconds
SEED = 11
PLACEHOLDERS = ["None", "NaT", " "]
STRICT_ISO = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])( \d{2}:\d{2}:\d{2})?$")
LISTED_RELATIONS = {
    ("aims_assetlocations", "ASSETID"): "aims_assets",
    ("aims_assetlocations", "ROUTEID"): "aims_routes",
    ("aims_assetlocations", "ASSETCLASSID"): "aims_assetclasses",
    ("aims_assetclasses", "PARENTID"): "aims_assetclasses",
    ("aims_assethierarchymap", "ANCESTORASSETID"): "aims_assets",
    ("aims_assethierarchymap", "DESCENDANTASSETID"): "aims_assets",
    ("aims_assetattributes", "ASSETID"): "aims_assets",
    ("aims_assetattributes", "ATTRIBUTEID"): "aims_attributes",
    ("aims_relationships", "SOURCEASSETID"): "aims_assets",
    ("aims_relationships", "TARGETASSETID"): "aims_assets",
    ("aims_assets", "OWNERID"): "aims_owners",
    ("aims_assets", "PHASEID"): "aims_phases",
    ("aims_assets", "STAGEID"): "aims_stages",
    ("aims_people", "ORGANISATIONID"): "aims_organisations",
    ("aims_assetclassattributes", "ATTRIBUTEID"): "aims_attributes",
    ("aims_tracks", "ROUTEID"): "aims_routes",
}


# --------------------------------------------------------------------------------------------
# Fixtures: lakes generated once per module
# --------------------------------------------------------------------------------------------


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: pq.read_table(folder / f"{t}.parquet").to_pandas() for t in load_spec()}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("dirty")
    report = generate_lake(folder, scale=SCALE, seed=SEED)
    return folder, report, _frames(folder), read_manifest(folder)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("clean")
    report = generate_lake(folder, scale=SCALE, seed=SEED, clean=True)
    return folder, report, _frames(folder), read_manifest(folder)


def _defects(manifest: pd.DataFrame, table: str, column: str, kind: str) -> list[int]:
    m = manifest[
        (manifest.table == table) & (manifest.column == column) & (manifest.defect_kind == kind)
    ]
    return sorted(int(i) for i in m.row_index)


def _ids(series: pd.Series) -> pd.Series:
    """Non-null, non-placeholder ID-like strings as integers ('13000015.0' -> 13000015)."""
    s = series[series.notna() & ~series.isin(PLACEHOLDERS)]
    return s.astype(float).astype("int64")


def _orphan_rows(frames, table: str, column: str, parent: str) -> list[int]:
    values = _ids(frames[table][column])
    parent_ids = set(_ids(frames[parent]["ID"]))
    return sorted(int(i) for i in values.index[~values.isin(parent_ids)])


# --------------------------------------------------------------------------------------------
# Shape
# --------------------------------------------------------------------------------------------


def test_all_68_tables_with_spec_columns_in_order_all_strings(dirty) -> None:
    folder, report, _, _ = dirty
    spec = load_spec()
    assert len(spec) == 68
    assert sorted(p.stem for p in folder.glob("aims_*.parquet")) == sorted(spec)
    for name, table in spec.items():
        schema = pq.read_schema(folder / f"{name}.parquet")
        assert schema.names == table.column_names, name
        assert all(field.type == pa.string() for field in schema), name
        assert pq.ParquetFile(folder / f"{name}.parquet").metadata.num_rows == report.tables[name]


def test_row_count_formula(dirty) -> None:
    _, report, frames, _ = dirty
    spec = load_spec()
    empty = [t for t in spec.values() if t.rows == 0]
    assert len(empty) == 13
    for table in spec.values():
        n = len(frames[table.name])
        if table.rows == 0:
            assert n == 0, table.name
        elif table.rows < 1000:
            assert n == table.rows, table.name  # small tables keep the published count
        else:
            assert n == max(1, round(table.rows * SCALE)), table.name
        assert rows_for_scale(table.name, SCALE) == n
    assert report.total_rows == sum(len(f) for f in frames.values())
    assert sum(rows_for_scale(t, 1.0) for t in spec) == 10_359_945
    assert {t: rows_for_scale(t, 1.0) for t in spec} == {t.name: t.rows for t in spec.values()}
    assert 100_000 <= sum(rows_for_scale(t, DEFAULT_SCALE) for t in spec) <= 200_000


def test_empty_tables_have_columns_and_no_rows(dirty) -> None:
    folder, _, _, _ = dirty
    table = pq.read_table(folder / "aims_workorders.parquet")
    assert table.num_rows == 0
    assert table.column_names == load_spec()["aims_workorders"].column_names


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_same_seed_same_data_and_subset_equals_full_run(dirty, tmp_path: Path) -> None:
    folder, _, _, manifest = dirty
    subset = ["aims_assets", "aims_assetlocations", "aims_routes", "aims_links"]
    generate_lake(tmp_path, scale=SCALE, seed=SEED, tables=subset)
    for name in subset:
        assert pq.read_table(tmp_path / f"{name}.parquet").equals(
            pq.read_table(folder / f"{name}.parquet")
        ), name
    sub_manifest = read_manifest(tmp_path)
    expected = manifest[manifest.table.isin(subset)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        sub_manifest.sort_values(["table", "row_index"]).reset_index(drop=True),
        expected.sort_values(["table", "row_index"]).reset_index(drop=True),
    )


def test_other_seed_gives_other_data(dirty, tmp_path: Path) -> None:
    folder, _, _, _ = dirty
    generate_lake(tmp_path, scale=SCALE, seed=SEED + 1, tables=["aims_assets"])
    a = pq.read_table(folder / "aims_assets.parquet")
    b = pq.read_table(tmp_path / "aims_assets.parquet")
    assert a.num_rows == b.num_rows
    for column in ("NAME", "OWNERID", "WHENCREATED", "STATUS"):
        assert not a[column].equals(b[column]), column


def test_regenerating_replaces_files_and_removes_stale_temp_files(tmp_path: Path) -> None:
    generate_lake(tmp_path, scale=SCALE, seed=1, tables=["aims_routes"])
    stale = tmp_path / "aims_routes.parquet.tmp-99999"
    stale.write_bytes(b"half written")
    first = pq.read_table(tmp_path / "aims_routes.parquet")
    generate_lake(tmp_path, scale=SCALE, seed=2, tables=["aims_routes"])
    assert not stale.exists()
    assert not list(tmp_path.glob("*.tmp-*"))
    assert not pq.read_table(tmp_path / "aims_routes.parquet").equals(first)
    assert read_generation(tmp_path)["seed"] == 2


# --------------------------------------------------------------------------------------------
# Realism
# --------------------------------------------------------------------------------------------


def test_ids_unique_and_in_the_13m_range_styles_follow_value_sets(clean) -> None:
    _, _, frames, _ = clean
    for name, df in frames.items():
        if "ID" in df and len(df):
            assert not df["ID"].duplicated().any(), name
            assert df["ID"].str.fullmatch(r"\d+").all(), name
    assets = frames["aims_assets"]
    assert _ids(assets["ID"]).between(13_000_000, 30_000_000).all()
    # assets.PHASEID is int-formatted, assetattributes.PHASEID float-formatted (as published)
    assert set(assets["PHASEID"]) <= set(load_spec()["aims_assets"].column("PHASEID").value_set)
    attr_phase = frames["aims_assetattributes"]["PHASEID"].dropna()
    real = attr_phase[~attr_phase.isin(PLACEHOLDERS)]
    assert len(real) and real.str.fullmatch(r"1300001[56]\.0").all()
    assert set(frames["aims_phases"]["ID"]) == {
        "13000015", "13000016", "13000017", "13000018", "13000068", "13000118"
    }  # fmt: skip
    # FK ids of different tables never collide
    seen: dict[int, str] = {}
    for name, df in frames.items():
        if "ID" in df:
            for value in _ids(df["ID"]):
                assert seen.setdefault(int(value), name) == name, (value, name, seen[int(value)])


def test_nullable_percent_and_value_sets_are_respected(clean) -> None:
    _, _, frames, _ = clean
    for table in load_spec().values():
        df = frames[table.name]
        if len(df) < 200:
            continue
        for col in table.columns:
            s = df[col.name]
            if col.nullable_percent == 0.0:
                assert s.notna().all(), (table.name, col.name)  # no real nulls at all
            elif col.nullable_percent is None and col.kind != "unknown":
                missing = (s.isna() | s.isin(PLACEHOLDERS)).mean()
                assert 0.05 <= missing <= 0.5, (table.name, col.name, missing)
            elif col.nullable_percent:
                assert s.isna().mean() <= col.nullable_percent / 100 + 0.05, (table.name, col.name)
            if col.kind == "category" and col.value_set:
                assert s.dropna().isin(col.value_set).all(), (table.name, col.name)
            if col.kind == "text" and col.length:
                lengths = s.dropna().str.len()
                assert lengths.max() <= col.length[1], (table.name, col.name)
            if col.kind == "unknown":
                assert (s.isna() | s.isin(PLACEHOLDERS)).mean() >= 0.7, (table.name, col.name)


def test_values_look_like_the_export(clean) -> None:
    _, _, frames, _ = clean
    assets = frames["aims_assets"]
    assert (
        assets["NAME"]
        .str.fullmatch(r"[A-Z][A-Za-z ]+ [A-Z]+-\d{4}(?: at Chainage \d+\+\d{3}| near .+)")
        .all()
    )
    assert assets["ISPRIMARYASSET"].isin(["0", "-1"]).all()
    when = assets["WHENCREATED"]
    assert when[when != "NaT"].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
    people = frames["aims_people"]
    assert people["EMAILADDRESS"].str.endswith("@example.org").all()
    locations = frames["aims_assetlocations"]
    easting = locations["OSGBEASTING"].dropna()
    easting = easting[~easting.isin(PLACEHOLDERS)].astype(float)
    assert easting.between(400_000, 460_000).all()
    assert locations["TRACKID"].dropna().isin(["None", "25.0", "26.0"]).all()
    # a label follows its id: the same PHASEID always shows the same PHASE
    pairs = assets[["PHASEID", "PHASE"]].drop_duplicates()
    assert not pairs["PHASEID"].duplicated().any()
    routes = frames["aims_routes"].set_index("ID")
    attrs = frames["aims_assetattributes"]
    sample = attrs[attrs["ROUTEID"].notna() & ~attrs["ROUTEID"].isin(PLACEHOLDERS)].head(20)
    for route_id, label in zip(sample["ROUTEID"], sample["ROUTE"], strict=True):
        code = routes.loc[str(int(float(route_id))), "CODE"]
        assert label.startswith(code + " - ")


# --------------------------------------------------------------------------------------------
# Relationships
# --------------------------------------------------------------------------------------------


def test_relations_cover_the_listed_foreign_keys() -> None:
    rels = relations()
    for key, parent in LISTED_RELATIONS.items():
        assert rels.get(key) == parent, key
    assert rels[("aims_assets", "OWNERID")] == "aims_owners"


def test_clean_lake_foreign_keys_resolve(clean) -> None:
    _, _, frames, _ = clean
    for (table, column), parent in relations().items():
        assert _orphan_rows(frames, table, column, parent) == [], (table, column)
    hier = frames["aims_assethierarchymap"]
    assert (hier["ANCESTORASSETID"] != hier["DESCENDANTASSETID"]).all()
    assert set(hier["LEVELS"]) <= {"1", "2", "3"}


def test_dirty_lake_foreign_keys_resolve_except_recorded_orphans(dirty) -> None:
    _, _, frames, manifest = dirty
    orphans = manifest[manifest.defect_kind == "orphan_fk"]
    assert len(orphans) > 0
    assert orphans["value"].str.fullmatch(r"999\d{5}(\.0)?").all()
    assert (orphans["value"].astype(float) > ORPHAN_BASE).all()
    for (table, column), parent in relations().items():
        assert _orphan_rows(frames, table, column, parent) == _defects(
            manifest, table, column, "orphan_fk"
        ), (table, column)


def test_table_ids_are_the_clean_ids_of_the_files(clean) -> None:
    _, _, frames, _ = clean
    for name in ("aims_assets", "aims_owners", "aims_stages", "aims_people"):
        assert frames[name]["ID"].tolist() == [str(v) for v in table_ids(name, SCALE)]


# --------------------------------------------------------------------------------------------
# Defects and the manifest
# --------------------------------------------------------------------------------------------


def test_clean_lake_has_empty_manifest_and_no_defects(clean) -> None:
    folder, report, frames, manifest = clean
    assert len(manifest) == 0
    assert list(manifest.columns) == [
        "table",
        "row_index",
        "row_id",
        "column",
        "defect_kind",
        "value",
    ]
    assert report.defects == {k: 0 for k in DEFECT_KINDS}
    for table in load_spec().values():
        df = frames[table.name]
        for kind, columns in eligible_columns(table.name).items():
            for column in columns:
                s = df[column]
                if kind == "out_of_value_set":
                    assert s.dropna().isin(table.column(column).value_set).all()
                if kind == "too_long":
                    assert (s.dropna().str.len() <= table.column(column).length[1]).all()
                if kind == "bad_date":
                    assert s.str.match(STRICT_ISO).all(), (table.name, column)
                if kind == "null_required":
                    assert not (s.isna() | s.isin(PLACEHOLDERS)).any(), (table.name, column)
    assert json.loads((folder / GENERATION_NAME).read_text())["clean"] is True


def test_manifest_counts_follow_the_formula(dirty) -> None:
    folder, report, frames, manifest = dirty
    rates = DefectRates()
    assert set(manifest.defect_kind) == set(DEFECT_KINDS)
    for name, df in frames.items():
        expected = defect_counts(name, len(df), rates)
        got = manifest[manifest.table == name].defect_kind.value_counts().to_dict()
        assert {k: v for k, v in expected.items() if v} == got, name
        if len(df) < 200:
            assert not got, name
        for kind, n in expected.items():
            if n:
                assert n == max(1, round(getattr(rates, kind) * len(df)))
    assert (
        report.defects
        == manifest.defect_kind.value_counts().reindex(list(DEFECT_KINDS), fill_value=0).to_dict()
    )
    assert defect_count(0.003, 199) == 0
    assert defect_count(0.003, 200) == 1
    assert defect_count(0.003, 10_000) == 30
    assert defect_count(0.0, 10_000) == 0
    # one defect per row at most, never row 0
    assert not manifest.duplicated(["table", "row_index"]).any()
    assert (manifest.row_index > 0).all()
    generation = read_generation(folder)
    assert generation["defects"] == report.defects
    assert generation["rates"] == rates.as_dict()


def test_every_manifest_entry_is_in_the_data(dirty) -> None:
    _, _, frames, manifest = dirty
    for entry in manifest.itertuples():
        df = frames[entry.table]
        value = df[entry.column].iloc[entry.row_index]
        if pd.isna(entry.value):
            assert pd.isna(value), entry
        else:
            assert value == entry.value, (entry, value)
        if "ID" in df:
            assert df["ID"].iloc[entry.row_index] == entry.row_id
        else:
            assert pd.isna(entry.row_id)


def test_manifest_equals_what_a_rule_finds_in_the_dirty_data(dirty) -> None:
    _, _, frames, manifest = dirty
    for table in load_spec().values():
        df = frames[table.name]
        if not len(df):
            continue
        eligible = eligible_columns(table.name)
        for column in eligible["null_required"]:
            s = df[column]
            found = sorted(s.index[s.isna() | s.isin(PLACEHOLDERS)])
            assert found == _defects(manifest, table.name, column, "null_required")
        for column in eligible["out_of_value_set"]:
            s = df[column]
            bad = s.notna() & ~s.isin(table.column(column).value_set) & ~s.isin(PLACEHOLDERS)
            assert sorted(s.index[bad]) == _defects(
                manifest, table.name, column, "out_of_value_set"
            )
        for column in eligible["too_long"]:
            s = df[column]
            too_long = s.notna() & (s.str.len() > table.column(column).length[1])
            assert sorted(s.index[too_long]) == _defects(manifest, table.name, column, "too_long")
        for column in eligible["bad_date"]:
            s = df[column]
            bad = s.notna() & ~s.isin(PLACEHOLDERS) & ~s.str.match(STRICT_ISO).astype(bool)
            assert sorted(s.index[bad]) == _defects(manifest, table.name, column, "bad_date")
        for column in eligible["bad_number"]:
            s = df[column]
            ok = s.isna() | s.isin(PLACEHOLDERS) | pd.to_numeric(s, errors="coerce").notna()
            assert sorted(s.index[~ok]) == _defects(manifest, table.name, column, "bad_number")
        if "ID" in df:
            assert sorted(df.index[df["ID"].duplicated()]) == _defects(
                manifest, table.name, "ID", "duplicate_id"
            )


def test_defects_keep_columns_mostly_right(dirty) -> None:
    _, _, frames, manifest = dirty
    per_column = manifest.groupby(["table", "column"]).size()
    for (table, column), n in per_column.items():
        assert n / len(frames[table]) <= 0.01, (table, column, n)


def test_defect_forms(dirty) -> None:
    _, _, frames, manifest = dirty
    spec = load_spec()
    by_kind = {k: g for k, g in manifest.groupby("defect_kind")}
    assert set(by_kind["out_of_value_set"].value) <= {"INVALID", "UNKNOWN_CODE", "??"}
    assert set(by_kind["bad_date"].value) <= {
        "31/12/2021",
        "2021-13-45",
        "not a date",
        "0000-00-00",
    }
    assert set(by_kind["bad_number"].value) <= {"12,5", "n/a", "1.2.3", "abc"}
    nulls = by_kind["null_required"].value
    assert set(nulls.dropna()) <= {"None", " "} and nulls.isna().any()
    for row in by_kind["too_long"].itertuples():
        hi = spec[row.table].column(row.column).length[1]
        assert len(row.value) == max(2 * hi, hi + 40)
    for row in by_kind["duplicate_id"].itertuples():
        ids = frames[row.table]["ID"]
        earlier = ids.iloc[: row.row_index]
        assert row.value in set(earlier), row  # copied from an earlier row
        assert row.column == "ID"
    for row in by_kind["null_required"].itertuples():
        assert spec[row.table].column(row.column).nullable_percent == 0.0
        assert row.column != "ID"


def test_custom_rates_and_none(tmp_path: Path) -> None:
    rates = DefectRates(**{k: 0.0 for k in DEFECT_KINDS} | {"bad_date": 0.01})
    report = generate_lake(tmp_path / "a", scale=SCALE, seed=3, rates=rates, tables=["aims_assets"])
    n = len(pq.read_table(tmp_path / "a" / "aims_assets.parquet"))
    assert report.defects["bad_date"] == round(0.01 * n)
    assert sum(report.defects.values()) == report.defects["bad_date"]
    report = generate_lake(
        tmp_path / "b", scale=SCALE, rates=DefectRates.none(), tables=["aims_assets"]
    )
    assert sum(report.defects.values()) == 0
    assert len(read_manifest(tmp_path / "b")) == 0
    with pytest.raises(AimsError):
        generate_lake(tmp_path / "c", rates=DefectRates(null_required=5.0))
    with pytest.raises(AimsError):
        generate_lake(tmp_path / "c", tables=["aims_nope"])


def test_read_manifest_without_manifest_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BronzeReadError) as err:
        read_manifest(tmp_path)
    assert MANIFEST_NAME in str(err.value)


# --------------------------------------------------------------------------------------------
# Corruption
# --------------------------------------------------------------------------------------------


def test_corrupt_truncates_one_table_and_records_it(tmp_path: Path) -> None:
    report = generate_lake(tmp_path, scale=SCALE, seed=SEED, corrupt=True)
    table = report.corrupted_table
    assert table == "aims_assetclassattributes"
    assert read_generation(tmp_path)["corrupted_table"] == table
    path = tmp_path / f"{table}.parquet"
    with pytest.raises((pa.ArrowInvalid, OSError)):
        pq.read_table(path)
    info = report.corruption
    assert info["table"] == table and path.stat().st_size == info["truncated_bytes"]
    assert info["truncated_bytes"] < info["original_bytes"]
    assert (
        info["row_groups_total"] >= 4 and 0 < info["row_groups_intact"] < info["row_groups_total"]
    )
    assert info["salvageable_rows"] == info["row_groups_intact"] * info["row_group_rows"]
    assert path.read_bytes()[:4] == b"PAR1"
    # the other tables stay readable
    assert pq.read_table(tmp_path / "aims_links.parquet").num_rows == report.tables["aims_links"]


def test_corrupt_with_clean_has_no_row_defects_and_prefers_listed_tables(tmp_path: Path) -> None:
    report = generate_lake(
        tmp_path,
        scale=SCALE,
        seed=SEED,
        corrupt=True,
        clean=True,
        tables=["aims_links", "aims_routes"],
    )
    assert report.corrupted_table == "aims_links"  # the first candidate that was generated
    assert sum(report.defects.values()) == 0 and len(read_manifest(tmp_path)) == 0
    with pytest.raises((pa.ArrowInvalid, OSError)):
        pq.read_table(tmp_path / "aims_links.parquet")
    assert pq.read_table(tmp_path / "aims_routes.parquet").num_rows == 33
