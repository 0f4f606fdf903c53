"""Bronze schema against the rule files, and `validate-source`'s verdict per file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import copy_home, make_settings

from aims_nb_utils.cli import main
from aims_nb_utils.profiling import profile_tables
from aims_nb_utils.schema import compare_schema, validate_source

TABLES = ["aims_assets", "aims_phases", "aims_owners", "aims_stages"]


def test_identical_columns_have_no_drift() -> None:
    result = compare_schema(["ID", "NAME"], ["ID", "NAME"])
    assert not result.has_drift and not result.reordered
    assert result.describe() == "columns match"


def test_missing_extra_renamed_and_reordered_columns() -> None:
    expected = ["ID", "ASSETID", "NAME", "VALIDFROM", "NOTES"]
    actual = ["ID", "NAME", "ASSET_ID", "VALIDFROM", "COLOUR"]
    result = compare_schema(actual, expected)
    assert [(r.expected, r.actual) for r in result.renamed] == [("ASSETID", "ASSET_ID")]
    assert result.renamed[0].similarity >= 0.8
    assert result.missing == ("NOTES",)  # nothing similar to it among the extras
    assert result.extra == ("COLOUR",)
    assert result.missing_all == ("NOTES", "ASSETID")
    assert result.has_drift and not result.reordered
    assert result.describe() == "missing NOTES; extra COLOUR; renamed ASSETID -> ASSET_ID (93%)"


def test_reordering_alone_is_reported_but_is_not_drift() -> None:
    result = compare_schema(["NAME", "ID", "CODE"], ["ID", "CODE", "NAME"])
    assert result.reordered and result.moved == ("NAME",)
    assert not result.has_drift


def test_each_name_pairs_at_most_once_best_match_first() -> None:
    result = compare_schema(["OWNERS_ID", "OWNER_ID"], ["OWNERID"])
    assert [(r.expected, r.actual) for r in result.renamed] == [("OWNERID", "OWNER_ID")]
    assert result.extra == ("OWNERS_ID",) and result.missing == ()


@pytest.fixture(scope="module")
def profiled(lake_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = copy_home(lake_home, tmp_path_factory.mktemp("schema") / "home")
    profile_tables(make_settings(home), tables=TABLES)
    return home


@pytest.fixture
def home(profiled: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    copy_home(profiled, home)
    for path in (home / "data/bronze").glob("*.parquet"):  # keep the run small: four tables
        if path.stem not in TABLES and not path.name.startswith("_"):
            path.unlink()
    return home


def _by_table(home: Path, **overrides: object):
    return {c.table: c for c in validate_source(make_settings(home, **overrides))}


def test_a_good_lake_is_ingestible(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks = _by_table(home)
    assert sorted(checks) == sorted(TABLES)
    assets = checks["aims_assets"]
    metadata = pq.ParquetFile(home / "data/bronze/aims_assets.parquet").metadata
    assert (assets.readable, assets.rows, assets.columns) == (True, metadata.num_rows, 26)
    assert assets.size_bytes == (home / "data/bronze/aims_assets.parquet").stat().st_size
    assert all(c.ingestible and c.verdict == "ok" for c in checks.values())
    assert main(["validate-source", "--home", str(home)]) == 0
    assert "4 table(s): 4 ingestible, 0 blocked" in capsys.readouterr().out


def test_unreadable_file_blocks_and_exits_non_zero(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home / "data/bronze/aims_phases.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    check = _by_table(home)["aims_phases"]
    assert not check.readable and not check.ingestible
    assert "repair" in check.why()
    assert main(["validate-source", "--home", str(home)]) == 1
    captured = capsys.readouterr()
    assert "unreadable" in captured.out
    assert "cannot be ingested: aims_phases" in captured.err


def test_a_missing_rule_file_table_is_listed_as_missing(home: Path) -> None:
    (home / "data/bronze/aims_stages.parquet").unlink()
    check = _by_table(home)["aims_stages"]
    assert check.problem == "file not found" and not check.ingestible


def _rewrite(
    home: Path, table: str, drop: list[str] = (), rename: dict[str, str] | None = None
) -> None:
    path = home / "data/bronze" / f"{table}.parquet"
    data = pq.read_table(path).drop_columns(list(drop))
    if rename:
        data = data.rename_columns([rename.get(c, c) for c in data.column_names])
    pq.write_table(data, path)


def test_missing_key_column_blocks_whatever_the_policy(home: Path) -> None:
    _rewrite(home, "aims_owners", drop=["ID"])
    check = _by_table(home)["aims_owners"]
    assert check.required_missing == ("ID",)
    assert not check.ingestible and "required column(s) missing: ID" in check.why()


def test_drift_blocks_only_under_the_fail_policy(home: Path) -> None:
    _rewrite(home, "aims_assets", rename={"HYBRIDBILLCODE": "HYBRID_BILL_CODE"})
    evolve = _by_table(home)["aims_assets"]
    assert evolve.ingestible and evolve.verdict == "drift (evolve)"
    assert "renamed HYBRIDBILLCODE -> HYBRID_BILL_CODE" in evolve.why()
    fail = _by_table(home, drift_policies={"aims_assets": "fail"})["aims_assets"]
    assert not fail.ingestible and "drift policy 'fail'" in fail.why()
