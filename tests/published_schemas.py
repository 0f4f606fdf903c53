"""The published schemas of the public data sets: the ground truth the acceptance tests and
bench/bench_public.py compare discovery and typing with (never the platform's own output).

Sources: the TPC-H specification (2.x, clause 1.4: primary and foreign keys), the TPC-DS
specification (clause 2: surrogate keys ``*_sk`` of the dimensions, referenced by the facts) and
the nycflights13 documentation (airlines.carrier, airports.faa, planes.tailnum, weather's
(origin, time_hour); flights has no key).
"""

from __future__ import annotations

# Primary keys (TPC-H spec 1.4.2; nycflights13 docs; TPC-DS spec 2.x: dimension surrogate keys).
TPCH_KEYS: dict[str, tuple[str, ...]] = {
    "region": ("r_regionkey",),
    "nation": ("n_nationkey",),
    "part": ("p_partkey",),
    "supplier": ("s_suppkey",),
    "customer": ("c_custkey",),
    "orders": ("o_orderkey",),
    "partsupp": ("ps_partkey", "ps_suppkey"),
    "lineitem": ("l_orderkey", "l_linenumber"),
}
# Single-column foreign keys: (child table, child column) -> (parent table, parent column).
TPCH_REFERENCES: dict[tuple[str, str], tuple[str, str]] = {
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
# The one composite foreign key of TPC-H: not required, but not bogus when it is found.
TPCH_COMPOSITE_REFERENCE = (
    ("lineitem", ("l_partkey", "l_suppkey")),
    ("partsupp", ("ps_partkey", "ps_suppkey")),
)
# TPC-H column kinds (spec 1.3.1: identifier, decimal, date) a text lake must recover in Silver.
TPCH_DECIMALS = {
    "part": ("p_retailprice",),
    "supplier": ("s_acctbal",),
    "partsupp": ("ps_supplycost",),
    "customer": ("c_acctbal",),
    "orders": ("o_totalprice",),
    "lineitem": ("l_quantity", "l_extendedprice", "l_discount", "l_tax"),
}
TPCH_DATES = {
    "orders": ("o_orderdate",),
    "lineitem": ("l_shipdate", "l_commitdate", "l_receiptdate"),
}

# nycflights13: flights has no key; weather's key is (origin, time_hour) (unique in this release).
FLIGHTS_KEYS: dict[str, tuple[str, ...]] = {
    "airlines": ("carrier",),
    "airports": ("faa",),
    "planes": ("tailnum",),
    "weather": ("origin", "time_hour"),
}
# Real orphans: ~15% of flights' tailnums are not in planes; BQN, SJU, STT, PSE not in airports.
FLIGHTS_REFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    ("flights", "carrier"): ("airlines", "carrier"),
    ("flights", "tailnum"): ("planes", "tailnum"),
    ("flights", "origin"): ("airports", "faa"),
    ("flights", "dest"): ("airports", "faa"),
    ("weather", "origin"): ("airports", "faa"),
}

# TPC-DS dimension surrogate keys. Tables with one row at sf=0.01 (call_center, reason, store,
# warehouse, web_page, web_site) are left out of the key check: every column of them is unique.
TPCDS_DIMENSION_KEYS: dict[str, str] = {
    "call_center": "cc_call_center_sk",
    "catalog_page": "cp_catalog_page_sk",
    "customer": "c_customer_sk",
    "customer_address": "ca_address_sk",
    "customer_demographics": "cd_demo_sk",
    "date_dim": "d_date_sk",
    "household_demographics": "hd_demo_sk",
    "income_band": "ib_income_band_sk",
    "item": "i_item_sk",
    "promotion": "p_promo_sk",
    "reason": "r_reason_sk",
    "ship_mode": "sm_ship_mode_sk",
    "store": "s_store_sk",
    "time_dim": "t_time_sk",
    "warehouse": "w_warehouse_sk",
    "web_page": "wp_web_page_sk",
    "web_site": "web_site_sk",
}
TPCDS_ONE_ROW_AT_SF001 = {"call_center", "reason", "store", "warehouse", "web_page", "web_site"}
TPCDS_KEYS: dict[str, tuple[str, ...]] = {
    t: (k,) for t, k in TPCDS_DIMENSION_KEYS.items() if t not in TPCDS_ONE_ROW_AT_SF001
}
# A sample of the spec's foreign keys into multi-row dimensions (all hold without orphans).
TPCDS_REFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    ("store_sales", "ss_item_sk"): ("item", "i_item_sk"),
    ("store_sales", "ss_sold_date_sk"): ("date_dim", "d_date_sk"),
    ("store_sales", "ss_customer_sk"): ("customer", "c_customer_sk"),
    ("store_sales", "ss_sold_time_sk"): ("time_dim", "t_time_sk"),
    ("store_returns", "sr_item_sk"): ("item", "i_item_sk"),
    ("catalog_sales", "cs_item_sk"): ("item", "i_item_sk"),
    ("catalog_sales", "cs_sold_date_sk"): ("date_dim", "d_date_sk"),
    ("catalog_sales", "cs_catalog_page_sk"): ("catalog_page", "cp_catalog_page_sk"),
    ("web_sales", "ws_item_sk"): ("item", "i_item_sk"),
    ("web_sales", "ws_sold_date_sk"): ("date_dim", "d_date_sk"),
    ("inventory", "inv_item_sk"): ("item", "i_item_sk"),
    ("inventory", "inv_date_sk"): ("date_dim", "d_date_sk"),
    ("customer", "c_current_addr_sk"): ("customer_address", "ca_address_sk"),
    ("customer", "c_current_cdemo_sk"): ("customer_demographics", "cd_demo_sk"),
    ("household_demographics", "hd_income_band_sk"): ("income_band", "ib_income_band_sk"),
}


KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "tpch": TPCH_KEYS,
    "flights": FLIGHTS_KEYS,
    "tpcds": TPCDS_KEYS,
}
REFERENCES: dict[str, dict[tuple[str, str], tuple[str, str]]] = {
    "tpch": TPCH_REFERENCES,
    "flights": FLIGHTS_REFERENCES,
    "tpcds": TPCDS_REFERENCES,
}

# date_dim columns that hold d_date_sk values by construction (the julian day of the month's first
# and last day, of the same day last year and last quarter): not declared foreign keys, so not
# required, but a reference from them to date_dim.d_date_sk is true, not a coincidence.
TPCDS_DATE_VALUED = {
    ("date_dim", "d_first_dom"),
    ("date_dim", "d_last_dom"),
    ("date_dim", "d_same_day_ly"),
    ("date_dim", "d_same_day_lq"),
}
