"""Benchmark a Delta incremental load (MERGE on the key) against a whole-table overwrite.

    python bench/bench_delta_merge.py --scale 0.1 --changed 10

TPC-H ``lineitem`` (key ``l_orderkey, l_linenumber``) is built at ``--scale`` and written once as
a Delta table through ``storage.write_table``; then the same table with ``--changed`` rows edited
is installed (a) as a MERGE on the key (``storage.write_table(..., key=...)``: the change set is
computed, only those rows are the merge's source) and (b) as a plain overwrite of a second table
with ``deltalake.write_deltalake`` (what every load did before: the floor for writing the rows).
Prints seconds, the ratio and peak memory of each, and the MERGE's row counts from the Delta
history.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from benchlib import GIB, PeakMemory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aims_nb_utils import storage  # noqa: E402
from aims_nb_utils.public_lakes import build_lake  # noqa: E402
from aims_nb_utils.settings import load_settings  # noqa: E402

KEY = ["l_orderkey", "l_linenumber"]


def _timed(call) -> tuple[float, int]:  # noqa: ANN001 - a thunk
    with PeakMemory() as memory:
        started = time.perf_counter()
        call()
        seconds = time.perf_counter() - started
    return seconds, memory.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--changed", type=int, default=10)
    args = parser.parse_args()
    import deltalake

    home = Path(tempfile.mkdtemp(prefix="aims_bench_merge_"))
    try:
        build_lake("tpch", home / "bronze", args.scale, tables=["lineitem"])
        data = pq.read_table(home / "bronze" / "lineitem.parquet")
        settings = load_settings(env={}, home=home, storage_format="delta")
        storage.write_table(settings, "silver", "merged", data, key=KEY)
        plain = storage.table_path(settings, "silver", "plain")
        deltalake.write_deltalake(str(plain), storage.to_delta(data), mode="overwrite")
        comments = data.column("l_comment").to_pylist()
        for i in range(min(args.changed, len(comments))):
            comments[i] = f"edited {i}"
        column = data.schema.get_field_index("l_comment")
        changed = data.set_column(column, "l_comment", pa.array(comments))
        merge_s, merge_mem = _timed(
            lambda: storage.write_table(settings, "silver", "merged", changed, key=KEY)
        )
        over_s, over_mem = _timed(
            lambda: deltalake.write_deltalake(
                str(plain), storage.to_delta(changed), mode="overwrite"
            )
        )
        history = deltalake.DeltaTable(str(storage.table_path(settings, "silver", "merged")))
        merge = next(h for h in history.history() if h["operation"] == "MERGE")
        metrics = merge["operationMetrics"]
        print(f"deltalake {deltalake.__version__}, lineitem rows {data.num_rows:,}")
        print(f"MERGE ({args.changed} changed): {merge_s:.2f} s, peak {merge_mem / GIB:.2f} GiB")
        print(f"overwrite:                {over_s:.2f} s, peak {over_mem / GIB:.2f} GiB")
        print(f"ratio MERGE / overwrite: {merge_s / over_s:.1f}")
        print(
            "MERGE rows updated / inserted / deleted:",
            metrics["num_target_rows_updated"],
            metrics["num_target_rows_inserted"],
            metrics["num_target_rows_deleted"],
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
