"""Keys and references found from the data alone, on public data sets nobody here wrote.

Expected keys and references are the PUBLISHED schemas (TPC-H and TPC-DS specifications, the
nycflights13 documentation), written out below; nothing is taken from the profiler's output.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from aims_nb_utils import checks
from aims_nb_utils.profiling import ProfileRun, profile_table, profile_tables
from aims_nb_utils.public_lakes import build_lake
from aims_nb_utils.rules import load_rule_file
from aims_nb_utils.settings import Settings

TPCH_KEYS = {
    "region": ["r_regionkey"],
    "nation": ["n_nationkey"],
    "part": ["p_partkey"],
    "supplier": ["s_suppkey"],
    "customer": ["c_custkey"],
    "orders": ["o_orderkey"],
    "partsupp": ["ps_partkey", "ps_suppkey"],
    "lineitem": ["l_orderkey", "l_linenumber"],
}
TPCH_FKS = {
    ("nation", "n_regionkey"): ("region", "r_regionkey"),
    ("supplier", "s_nationkey"): ("nation", "n_nationkey"),
    ("customer", "c_nationkey"): ("nation", "n_nationkey"),
    ("partsupp", "ps_partkey"): ("part", "p_partkey"),
    ("partsupp", "ps_suppkey"): ("supplier", "s_suppkey"),
    ("orders", "o_custkey"): ("customer", "c_custkey"),
    ("lineitem", "l_orderkey"): ("orders", "o_orderkey"),
    ("lineitem", "l_partkey"): ("part", "p_partkey"),
    ("lineitem", "l_suppkey"): ("supplier", "s_suppkey"),
}
FLIGHTS_KEYS = {"airlines": ["carrier"], "airports": ["faa"], "planes": ["tailnum"]}
FLIGHTS_FKS = {
    ("flights", "carrier"): ("airlines", "carrier"),
    ("flights", "tailnum"): ("planes", "tailnum"),
    ("flights", "origin"): ("airports", "faa"),
    ("flights", "dest"): ("airports", "faa"),
    ("weather", "origin"): ("airports", "faa"),
}
# TPC-DS specification 2.x, section 2 (fact and dimension tables): surrogate-key references.
_DS = {
    "store_sales": {
        "ss_sold_date_sk": "date_dim",
        "ss_sold_time_sk": "time_dim",
        "ss_item_sk": "item",
        "ss_customer_sk": "customer",
        "ss_cdemo_sk": "customer_demographics",
        "ss_hdemo_sk": "household_demographics",
        "ss_addr_sk": "customer_address",
        "ss_store_sk": "store",
        "ss_promo_sk": "promotion",
    },
    "store_returns": {
        "sr_returned_date_sk": "date_dim",
        "sr_return_time_sk": "time_dim",
        "sr_item_sk": "item",
        "sr_customer_sk": "customer",
        "sr_cdemo_sk": "customer_demographics",
        "sr_hdemo_sk": "household_demographics",
        "sr_addr_sk": "customer_address",
        "sr_store_sk": "store",
        "sr_reason_sk": "reason",
    },
    "catalog_sales": {
        "cs_sold_date_sk": "date_dim",
        "cs_sold_time_sk": "time_dim",
        "cs_ship_date_sk": "date_dim",
        "cs_bill_customer_sk": "customer",
        "cs_bill_cdemo_sk": "customer_demographics",
        "cs_bill_hdemo_sk": "household_demographics",
        "cs_bill_addr_sk": "customer_address",
        "cs_ship_customer_sk": "customer",
        "cs_ship_cdemo_sk": "customer_demographics",
        "cs_ship_hdemo_sk": "household_demographics",
        "cs_ship_addr_sk": "customer_address",
        "cs_call_center_sk": "call_center",
        "cs_catalog_page_sk": "catalog_page",
        "cs_ship_mode_sk": "ship_mode",
        "cs_warehouse_sk": "warehouse",
        "cs_item_sk": "item",
        "cs_promo_sk": "promotion",
    },
    "catalog_returns": {
        "cr_returned_date_sk": "date_dim",
        "cr_returned_time_sk": "time_dim",
        "cr_item_sk": "item",
        "cr_refunded_customer_sk": "customer",
        "cr_refunded_cdemo_sk": "customer_demographics",
        "cr_refunded_hdemo_sk": "household_demographics",
        "cr_refunded_addr_sk": "customer_address",
        "cr_returning_customer_sk": "customer",
        "cr_returning_cdemo_sk": "customer_demographics",
        "cr_returning_hdemo_sk": "household_demographics",
        "cr_returning_addr_sk": "customer_address",
        "cr_call_center_sk": "call_center",
        "cr_catalog_page_sk": "catalog_page",
        "cr_ship_mode_sk": "ship_mode",
        "cr_warehouse_sk": "warehouse",
        "cr_reason_sk": "reason",
    },
    "web_sales": {
        "ws_sold_date_sk": "date_dim",
        "ws_sold_time_sk": "time_dim",
        "ws_ship_date_sk": "date_dim",
        "ws_item_sk": "item",
        "ws_bill_customer_sk": "customer",
        "ws_bill_cdemo_sk": "customer_demographics",
        "ws_bill_hdemo_sk": "household_demographics",
        "ws_bill_addr_sk": "customer_address",
        "ws_ship_customer_sk": "customer",
        "ws_ship_cdemo_sk": "customer_demographics",
        "ws_ship_hdemo_sk": "household_demographics",
        "ws_ship_addr_sk": "customer_address",
        "ws_web_page_sk": "web_page",
        "ws_web_site_sk": "web_site",
        "ws_ship_mode_sk": "ship_mode",
        "ws_warehouse_sk": "warehouse",
        "ws_promo_sk": "promotion",
    },
    "web_returns": {
        "wr_returned_date_sk": "date_dim",
        "wr_returned_time_sk": "time_dim",
        "wr_item_sk": "item",
        "wr_refunded_customer_sk": "customer",
        "wr_refunded_cdemo_sk": "customer_demographics",
        "wr_refunded_hdemo_sk": "household_demographics",
        "wr_refunded_addr_sk": "customer_address",
        "wr_returning_customer_sk": "customer",
        "wr_returning_cdemo_sk": "customer_demographics",
        "wr_returning_hdemo_sk": "household_demographics",
        "wr_returning_addr_sk": "customer_address",
        "wr_web_page_sk": "web_page",
        "wr_reason_sk": "reason",
    },
    "inventory": {
        "inv_date_sk": "date_dim",
        "inv_item_sk": "item",
        "inv_warehouse_sk": "warehouse",
    },
    "customer": {
        "c_current_cdemo_sk": "customer_demographics",
        "c_current_hdemo_sk": "household_demographics",
        "c_current_addr_sk": "customer_address",
        "c_first_shipto_date_sk": "date_dim",
        "c_first_sales_date_sk": "date_dim",
        "c_last_review_date_sk": "date_dim",
    },
    "household_demographics": {"hd_income_band_sk": "income_band"},
    "promotion": {"p_start_date_sk": "date_dim", "p_end_date_sk": "date_dim", "p_item_sk": "item"},
    "catalog_page": {"cp_start_date_sk": "date_dim", "cp_end_date_sk": "date_dim"},
    "store": {"s_closed_date_sk": "date_dim"},
    "call_center": {"cc_closed_date_sk": "date_dim", "cc_open_date_sk": "date_dim"},
    "web_page": {
        "wp_creation_date_sk": "date_dim",
        "wp_access_date_sk": "date_dim",
        "wp_customer_sk": "customer",
    },
    "web_site": {"web_open_date_sk": "date_dim", "web_close_date_sk": "date_dim"},
}
DS_KEY = {
    "date_dim": "d_date_sk",
    "time_dim": "t_time_sk",
    "item": "i_item_sk",
    "customer": "c_customer_sk",
    "customer_demographics": "cd_demo_sk",
    "household_demographics": "hd_demo_sk",
    "customer_address": "ca_address_sk",
    "store": "s_store_sk",
    "promotion": "p_promo_sk",
    "reason": "r_reason_sk",
    "call_center": "cc_call_center_sk",
    "catalog_page": "cp_catalog_page_sk",
    "ship_mode": "sm_ship_mode_sk",
    "warehouse": "w_warehouse_sk",
    "web_page": "wp_web_page_sk",
    "web_site": "web_site_sk",
    "income_band": "ib_income_band_sk",
}
TPCDS_FKS = {
    (table, column): (parent, DS_KEY[parent])
    for table, columns in _DS.items()
    for column, parent in columns.items()
}
# The spec defines these date_dim columns as day numbers in d_date_sk's own domain (first and
# last day of the month, same day last year / last quarter): a self-reference in the data.
TPCDS_DAY_NUMBERS = {"d_first_dom", "d_last_dom", "d_same_day_ly", "d_same_day_lq"}


def _profiled(tmp_path_factory: pytest.TempPathFactory, dataset: str, **options) -> tuple:
    home = tmp_path_factory.mktemp(f"{dataset}{'_text' if options.get('as_text') else ''}")
    build_lake(dataset, home / "data" / "bronze", **options)
    settings = make_settings(home)
    return settings, profile_tables(settings, max_workers=2)


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ProfileRun]:
    return _profiled(tmp_path_factory, "tpch", scale=0.01)


@pytest.fixture(scope="module")
def tpch_text(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ProfileRun]:
    return _profiled(tmp_path_factory, "tpch", scale=0.01, as_text=True)


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ProfileRun]:
    return _profiled(tmp_path_factory, "flights")


@pytest.fixture(scope="module")
def tpcds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, ProfileRun]:
    return _profiled(tmp_path_factory, "tpcds", scale=0.01)


def _reference_rule(settings: Settings, table: str, column: str):
    rules = [
        e
        for e in load_rule_file(settings.paths.rule_file(table)).expectations
        if e.reference is not None and e.column == column
    ]
    assert len(rules) == 1, (table, column, len(rules))
    return rules[0]


def _floor4(x: float) -> float:
    return math.floor(x * 10_000 + 1e-9) / 10_000


# --- TPC-H, typed and all-text --------------------------------------------------------------


@pytest.mark.parametrize("lake", ["tpch", "tpch_text"])
def test_tpch_published_keys_are_found_and_written(lake: str, request) -> None:
    settings, run = request.getfixturevalue(lake)
    assert not run.errors
    for table, key in TPCH_KEYS.items():
        rule_file = load_rule_file(settings.paths.rule_file(table))
        assert rule_file.keys and rule_file.keys[0] == key, (table, rule_file.keys)
        kinds = {(e.expectation_type, tuple(e.columns)) for e in rule_file.expectations}
        if len(key) == 1:
            assert ("expect_column_values_to_be_unique", tuple(key)) in kinds, table
        else:
            (compound,) = [
                e
                for e in rule_file.expectations
                if e.expectation_type == "expect_compound_columns_to_be_unique"
            ]
            assert compound.kwargs["column_list"] == key
        # Never a comment, a price or a date: free text and measures are unique by chance.
        for candidate in rule_file.keys:
            for column in candidate:
                assert not column.endswith(("comment", "price", "date", "acctbal")), column


@pytest.mark.parametrize("lake", ["tpch", "tpch_text"])
def test_tpch_published_references_and_nothing_else(lake: str, request) -> None:
    settings, run = request.getfixturevalue(lake)
    assert run.foreign_keys == TPCH_FKS  # every published one, no coincidence
    for (table, column), parent in TPCH_FKS.items():
        rule = _reference_rule(settings, table, column)
        assert rule.expectation_type == "expect_column_values_to_be_in_set"
        assert set(rule.kwargs) <= {"column", "mostly"} and "value_set" not in rule.kwargs
        assert rule.meta["reference"] == {"table": parent[0], "column": parent[1]}
        assert rule.meta["observed_contained_percent"] == 100.0
        assert rule.meta["observed_orphan_rows"] == 0


def test_counters_and_sizes_inside_dense_key_ranges_are_not_references(tpch) -> None:
    """l_linenumber 1-7 and p_size 1-50 lie inside every key range 1..N: no evidence."""
    settings, run = tpch
    sizes = pq.read_table(settings.paths.bronze_file("part"), columns=["p_size"]).column(0)
    keys = pq.read_table(settings.paths.bronze_file("supplier"), columns=["s_suppkey"]).column(0)
    assert pc.all(pc.is_in(sizes, value_set=keys)).as_py()  # contained, and still no reference
    assert ("part", "p_size") not in run.foreign_keys
    assert ("lineitem", "l_linenumber") not in run.foreign_keys


def test_typed_columns_are_profiled_as_typed(tpch, tpch_text) -> None:
    """Type-conformance rules only on text; ranges from the typed values."""
    for (settings, _), text in ((tpch, False), (tpch_text, True)):
        rules = load_rule_file(settings.paths.rule_file("lineitem")).expectations
        regex = {e.column for e in rules if e.expectation_type.endswith("match_regex")}
        between = {  # what was observed (the rule's bounds add a margin, see test_profiling)
            e.column: (e.meta["observed_min"], e.meta["observed_max"])
            for e in rules
            if e.expectation_type == "expect_column_values_to_be_between"
        }
        if text:
            assert {"l_orderkey", "l_quantity", "l_shipdate"} <= regex
            value_types = {
                e.column: e.meta["value_type"]
                for e in rules
                if e.expectation_type.endswith("match_regex")
            }
            # '17.00' on every row is the published decimal(15,2), not an integer
            assert value_types["l_quantity"] == "decimal"
            assert value_types["l_orderkey"] == "integer"
        else:
            assert not regex
        data = pq.read_table(settings.paths.bronze_file("lineitem"), columns=["l_extendedprice"])
        prices = checks.to_numbers(data.column(0))
        expected = (pc.min(prices).as_py(), pc.max(prices).as_py())
        assert between["l_extendedprice"] == pytest.approx(expected)
        # Keys and references get no range: new keys must not fail a range learned from old.
        assert not {"l_orderkey", "l_partkey", "l_suppkey"} & set(between)


def test_profiling_twice_writes_byte_identical_files(tpch) -> None:
    settings, first = tpch
    before = {p: p.read_bytes() for p in first.written}
    again = profile_tables(settings, max_workers=1)
    assert not again.written and sorted(again.unchanged) == sorted(first.written)
    assert {p: p.read_bytes() for p in before} == before


# --- nycflights13 ---------------------------------------------------------------------------


def test_flights_keys_and_references(flights) -> None:
    settings, run = flights
    for table, key in FLIGHTS_KEYS.items():
        assert load_rule_file(settings.paths.rule_file(table)).keys[0] == key, table
    assert not load_rule_file(settings.paths.rule_file("flights")).keys  # it has none
    for child, parent in FLIGHTS_FKS.items():
        assert run.foreign_keys.get(child) == parent, child
    assert set(run.foreign_keys) == set(FLIGHTS_FKS)


@pytest.mark.parametrize("column", ["dest", "tailnum"])
def test_real_orphans_calibrate_mostly_and_are_recorded(flights, column: str) -> None:
    """4 destinations are not airports, 721 tailnums not planes: the rule says so and still
    passes on the profiled data, with the orphans checks.py counts at validation."""
    settings, _ = flights
    rule = _reference_rule(settings, "flights", column)
    data = pq.read_table(settings.paths.bronze_file("flights"), columns=[column])
    parents = checks.reference_values(settings, *rule.reference)
    values = pc.drop_null(data.column(0))
    orphans = int(pc.sum(pc.invert(pc.is_in(values, value_set=parents))).as_py())
    distinct = pc.unique(values)
    orphan_values = int(pc.sum(pc.invert(pc.is_in(distinct, value_set=parents))).as_py())
    assert orphans > 0 and rule.meta["observed_orphan_rows"] == orphans
    assert rule.meta["observed_contained_percent"] == round(
        100 * (1 - orphan_values / len(distinct)), 4
    )
    tolerance = settings.null_tolerance / 100
    assert rule.kwargs["mostly"] == _floor4(1 - orphans / len(values) - tolerance)
    mask = checks.unexpected_mask(data, rule, settings.null_placeholders, reference=parents)
    assert int(mask.sum()) == orphans
    if column == "dest":
        unknown = pc.filter(distinct, pc.invert(pc.is_in(distinct, value_set=parents)))
        assert sorted(unknown.to_pylist()) == ["BQN", "PSE", "SJU", "STT"]


def test_weather_is_keyed_by_origin_and_hour_if_unique(flights) -> None:
    settings, _ = flights
    data = pq.read_table(settings.paths.bronze_file("weather"), columns=["origin", "time_hour"])
    groups = data.group_by(["origin", "time_hour"]).aggregate([([], "count_all")]).num_rows
    keys = load_rule_file(settings.paths.rule_file("weather")).keys
    if groups == data.num_rows:
        assert keys[0] == ["origin", "time_hour"]
    else:  # the real data has a few duplicated hours: a pair must be unique on every row
        assert ["origin", "time_hour"] not in keys


# --- TPC-DS ------------------------------------------------------------------------------------


def test_tpcds_surrogate_key_references(tpcds) -> None:
    """A good share of the spec's references found, none that the spec does not list.

    A parent with one row (store, warehouse, call_center ... at sf=0.01) is never matched: its
    only possible child is a constant, and a constant 1 is contained in any key set with a 1.
    """
    settings, run = tpcds
    rows = {t: pq.read_metadata(settings.paths.bronze_file(t)).num_rows for t in DS_KEY}
    for (table, column), parent in run.foreign_keys.items():
        if table == "date_dim" and column in TPCDS_DAY_NUMBERS:
            assert parent == ("date_dim", "d_date_sk")
            continue
        assert TPCDS_FKS.get((table, column)) == parent, (table, column, parent)
        assert rows[parent[0]] > 1
    discoverable = {
        child: parent
        for child, parent in TPCDS_FKS.items()
        if rows[parent[0]] > 1
        and pq.read_table(settings.paths.bronze_file(child[0]), columns=[child[1]])
        .column(0)
        .unique()
        .drop_null()
        .__len__()
        > 1
    }
    found = [child for child in discoverable if run.foreign_keys.get(child) == discoverable[child]]
    assert len(found) >= 0.5 * len(discoverable), (len(found), len(discoverable))
    for child in (
        ("store_sales", "ss_item_sk"),
        ("store_sales", "ss_customer_sk"),
        ("store_sales", "ss_sold_date_sk"),
        ("catalog_sales", "cs_item_sk"),
        ("web_sales", "ws_item_sk"),
        ("inventory", "inv_item_sk"),
    ):
        assert run.foreign_keys.get(child) == TPCDS_FKS[child], child


def test_tpcds_dimension_keys(tpcds) -> None:
    settings, _ = tpcds
    for table, key in DS_KEY.items():
        assert load_rule_file(settings.paths.rule_file(table)).keys[0] == [key], table


# --- guards, on small hand-made lakes ------------------------------------------------------------


def _lake(tmp_path: Path, tables: dict[str, dict[str, pa.Array | list]]) -> Settings:
    bronze = tmp_path / "home" / "data" / "bronze"
    bronze.mkdir(parents=True)
    for name, columns in tables.items():
        pq.write_table(pa.table(columns), bronze / f"{name}.parquet")
    return make_settings(tmp_path / "home")


def test_guards_against_coincidental_containment(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    rows = 5_000
    settings = _lake(
        tmp_path,
        {
            # keys 0-1000: the counter, the 0/1 flag and the constant are all contained
            "parents": {"pk": pa.array(np.arange(0, 1_001), pa.int64())},
            "children": {
                "child_id": pa.array(np.arange(rows), pa.int64()),
                "parent_ref": pa.array(rng.integers(0, 1_001, rows), pa.int64()),
                "line": pa.array(rng.integers(1, 8, rows), pa.int64()),  # a counter 1-7
                "flag": pa.array(rng.integers(0, 2, rows).astype(bool)),
                "flag01": pa.array(rng.integers(0, 2, rows), pa.int64()),
                "constant": pa.array(np.full(rows, 5), pa.int64()),
                "ratio": pa.array(rng.integers(1, 1_001, rows).astype(float)),
                "text_flag": pa.array(rng.choice(["Y", "N"], rows)),
            },
            "letters": {"code": pa.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))},
        },
    )
    run = profile_tables(settings, max_workers=1)
    children = pq.read_table(settings.paths.bronze_file("children"))
    for column in ("line", "flag01", "constant"):
        assert pc.all(pc.is_in(children[column], value_set=pa.array(range(1_001)))).as_py()
    assert run.foreign_keys == {("children", "parent_ref"): ("parents", "pk")}
    rule = _reference_rule(settings, "children", "parent_ref")
    assert rule.meta["reference"] == {"table": "parents", "column": "pk"}


def test_ids_written_as_float_text_reference_typed_keys(tmp_path: Path) -> None:
    """'13000015.0' in an all-text export references the integer 13000015."""
    ids = np.arange(13_000_000, 13_000_300)
    rng = np.random.default_rng(2)
    settings = _lake(
        tmp_path,
        {
            "assets": {"asset_key": pa.array(ids, pa.int64())},
            "locations": {
                "loc": pa.array([str(i) for i in range(900)]),
                "asset": pa.array([f"{v}.0" for v in rng.choice(ids, 900)]),
            },
        },
    )
    run = profile_tables(settings, max_workers=1)
    assert run.foreign_keys == {("locations", "asset"): ("assets", "asset_key")}
    assert load_rule_file(settings.paths.rule_file("locations")).keys[0] == ["loc"]


def test_free_text_and_floats_are_never_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    words = np.array(["alpha", "beta", "gamma", "delta", "omega", "kappa"])
    comments = [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(40)]
    settings = _lake(
        tmp_path,
        {
            "notes": {
                "comment": pa.array(comments),  # unique, but free text
                "score": pa.array(rng.normal(size=40)),  # unique, but a float
                "code": pa.array([f"N{i:03d}" for i in range(40)]),
            }
        },
    )
    profile = profile_table(settings, "notes")
    assert profile.keys == [["code"]]


def test_codes_with_leading_zeros_stay_text_in_silver(tmp_path: Path) -> None:
    """An all-text export of zip codes: '01234' is a code, an integer would make it 1234."""
    from aims_nb_utils import storage
    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.typing_rules import silver_types

    rng = np.random.default_rng(21)
    zips = [f"{z:05d}" for z in rng.integers(0, 99_999, 2_000)]
    settings = _lake(
        tmp_path,
        {
            "addresses": {
                "address_id": pa.array([str(i) for i in range(2_000)]),
                "zip": pa.array(zips),
                "floor": pa.array([str(f) for f in rng.integers(0, 30, 2_000)]),
            }
        },
    )
    profile_tables(settings, max_workers=1)
    rule_file = load_rule_file(settings.paths.rule_file("addresses"))
    names = ["address_id", "zip", "floor"]
    types = {t.column: t for t in silver_types("addresses", names, rule_file)}
    assert types["zip"].kind == "string"
    assert "leading zero" in types["zip"].source  # what silver-schema prints
    assert types["floor"].kind == "integer" and types["address_id"].kind == "integer"
    ingest_tables(settings, tables=["addresses"])
    silver = storage.read_table(settings, "silver", "addresses")
    assert silver.schema.field("zip").type == pa.string()
    assert sorted(silver["zip"].to_pylist()) == sorted(zips)


def test_digits_stored_as_text_beside_typed_numbers_stay_text(tmp_path: Path) -> None:
    """A file that types its numbers (int64 keys) and stores street numbers as text chose text."""
    rng = np.random.default_rng(22)
    settings = _lake(
        tmp_path,
        {
            "addresses": {
                "address_sk": pa.array(np.arange(1, 1_001), pa.int64()),
                "street_number": pa.array([str(n) for n in rng.integers(1, 1_000, 1_000)]),
            }
        },
    )
    profile = profile_table(settings, "addresses")
    street = next(c for c in profile.columns if c.name == "street_number")
    assert street.inferred_type == "text"
    assert street.text_reason and "address_sk (int64)" in street.text_reason


def test_usual_orphans_are_watched_by_the_verdict_not_quarantined(tmp_path: Path) -> None:
    """nycflights13-like: 12 % of the children point at no parent, as the source always does."""
    from aims_nb_utils import storage
    from aims_nb_utils.ingestion import ingest_tables

    rng = np.random.default_rng(23)
    letters = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))
    tails = {
        f"N{n}{a}{b}"
        for n, a, b in zip(rng.integers(100, 999, 900), *rng.choice(letters, (2, 900)), strict=True)
    }
    codes = sorted(tails)[:400]
    unknown = sorted(tails)[400:460]  # tail numbers the planes table never listed
    rows = 5_000
    refs = rng.choice(codes, rows).astype(object)
    orphan_rows = rng.random(rows) < 0.12
    refs[orphan_rows] = rng.choice(unknown, int(orphan_rows.sum()))
    settings = _lake(
        tmp_path,
        {
            "planes": {"tailnum": pa.array(codes)},
            "flights": {"flight_id": pa.array(np.arange(rows)), "tailnum": pa.array(list(refs))},
        },
    )
    run = profile_tables(settings, max_workers=1)
    assert run.foreign_keys == {("flights", "tailnum"): ("planes", "tailnum")}
    rule = _reference_rule(settings, "flights", "tailnum")
    assert rule.meta["quarantine"] is False
    assert rule.meta["observed_orphan_rows"] == int(orphan_rows.sum())
    assert "orphans are usual" in rule.meta["not_quarantined_because"]
    ingest_tables(settings, tables=["flights"])
    assert storage.count_rows(settings, "silver", "flights") == rows
