"""Benchmark ingest-all (Bronze -> Silver + quarantine) against a plain read-and-write of the lake.

    python bench/bench_ingest.py --scale 1.0               # full-size lake (10.4M rows)
    python bench/bench_ingest.py --scale 0.1 --home /tmp/x

The Bronze lake is generated once into ``--lake DIR/data/bronze`` (default
``/tmp/aims_bench_<scale>``, shared with the other benchmarks and only read here) and rule files
are profiled once into ``--home`` (default ``/tmp/aims_bench_ingest_<scale>``). Silver, quarantine
and state in ``--home`` are cleared first. In one process it then times:

1. plain: pyarrow reads every Bronze file and writes it back as parquet (zstd) - the floor of any
   Bronze -> Silver step;
2. ingest-all, which is what ``ingestion.ingest_tables(settings, force=True)`` does, timed in its
   two parts so the figures say where the time goes: (a) ``validation.validate_tables`` for every
   table (the GX verdicts), (b) ``ingest_tables(settings, force=True, verdicts=...)`` with those
   verdicts - typing, row masks, quarantine reasons, hashes, atomic writes, state;
3. again: ``ingest_tables(settings)`` on the unchanged lake (the incremental fast path).

Peak memory is the proportional set size (PSS) summed over this process and its children (the
worker pools), sampled every 0.25 s in a thread. Targets at scale 1.0 on 2 cores: ingest-all
<= 60 s and <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from benchlib import GIB, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 60.0
TARGET_PEAK_GIB = 4.0


def _timed(label: str, action: Any) -> tuple[Any, float, int]:
    return timed(label, action)


def plain_read_write(bronze: Path, out: Path) -> int:
    """Read every Bronze file whole and write it back: what moving the bytes costs."""
    import pyarrow.parquet as pq

    from aims_nb_utils.io import list_bronze_tables

    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for table in list_bronze_tables(bronze):
        data = pq.read_table(bronze / f"{table}.parquet")
        pq.write_table(data, out / f"{table}.parquet", compression="zstd")
        rows += data.num_rows
        del data
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake", type=Path, default=None, help="home of the Bronze lake to reuse")
    parser.add_argument(
        "--home", type=Path, default=None, help="home for rule files, Silver, state"
    )
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()

    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.sample_data import generate_lake
    from aims_nb_utils.settings import load_settings

    lake = args.lake or Path(f"/tmp/aims_bench_{args.scale:g}")
    home = args.home or Path(f"/tmp/aims_bench_ingest_{args.scale:g}")
    bronze = lake / "data" / "bronze"
    overrides: dict[str, Any] = {"bronze": bronze}
    if args.max_workers:
        overrides["max_workers"] = args.max_workers
    settings = load_settings(env={}, home=home, **overrides)
    if not any(bronze.glob("*.parquet")):
        _, seconds, _ = _timed(
            f"generate lake (scale {args.scale:g})",
            lambda: generate_lake(bronze, scale=args.scale, seed=args.seed),
        )
    if not any(settings.paths.rules.glob("*_validation.yml")):
        _timed("profile (rule files)", lambda: profile_tables(settings))
    for folder in (
        settings.paths.silver,
        settings.paths.quarantine,
        settings.paths.state,
        home / "plain",
    ):
        shutil.rmtree(folder, ignore_errors=True)

    size = sum(p.stat().st_size for p in bronze.glob("*.parquet"))
    print(f"lake {bronze}: {size / 1e6:,.0f} MB; home {home}; max_workers {settings.max_workers}")
    rows, plain_s, plain_peak = _timed(
        "plain pyarrow read + write", lambda: plain_read_write(bronze, home / "plain")
    )
    from aims_nb_utils.state import new_run_id
    from aims_nb_utils.validation import validate_tables

    run_id = new_run_id()
    validation, validate_s, validate_peak = _timed(
        "ingest-all: validation (GX)", lambda: validate_tables(settings, run_id=run_id)
    )
    run, load_s, load_peak = _timed(
        "ingest-all: load (--force)",
        lambda: ingest_tables(settings, force=True, verdicts=validation.tables, run_id=run_id),
    )
    ingest_s, ingest_peak = validate_s + load_s, max(validate_peak, load_peak)
    again, again_s, again_peak = _timed("ingest-all (no change)", lambda: ingest_tables(settings))
    shutil.rmtree(home / "plain", ignore_errors=True)

    summary = run.summary
    assert (
        summary["rows_in"] == rows == summary["rows_silver"] + summary["rows_quarantined"]
    ), summary
    slowest = sorted(run.tables.values(), key=lambda r: -r.seconds)[:5]
    print(
        f"\n{rows:,} rows: {summary['rows_silver']:,} to Silver, {summary['rows_quarantined']:,} "
        f"quarantined; {summary['loaded']} loaded, {summary['not_promoted']} not promoted, "
        f"{summary['errors']} errors; second run: {again.summary['unchanged']} unchanged"
    )
    print(
        f"ingest-all {ingest_s:.1f} s = validation {validate_s:.1f} s (peak "
        f"{validate_peak / GIB:.2f} GiB) + load {load_s:.1f} s (peak {load_peak / GIB:.2f} GiB); "
        f"ratio to plain read+write: {ingest_s / plain_s:.1f}x (load alone {load_s / plain_s:.1f}x)"
    )
    print(
        "slowest tables (load, in a worker): "
        + ", ".join(f"{r.table} {r.seconds:.1f}s" for r in slowest)
    )
    ok = ingest_s <= TARGET_SECONDS and ingest_peak <= TARGET_PEAK_GIB * GIB
    print(
        f"target <= {TARGET_SECONDS:.0f} s and <= {TARGET_PEAK_GIB:.0f} GiB: "
        f"{'met' if ok else 'MISSED'} ({ingest_s:.1f} s, {ingest_peak / GIB:.2f} GiB)"
    )
    figures = {
        "scale": args.scale,
        "rows": rows,
        "bronze_bytes": size,
        "max_workers": settings.max_workers,
        "plain_seconds": round(plain_s, 2),
        "plain_peak_gib": round(plain_peak / GIB, 3),
        "ingest_seconds": round(ingest_s, 2),
        "validation_seconds": round(validate_s, 2),
        "validation_peak_gib": round(validate_peak / GIB, 3),
        "load_seconds": round(load_s, 2),
        "load_peak_gib": round(load_peak / GIB, 3),
        "ingest_peak_gib": round(ingest_peak / GIB, 3),
        "ratio": round(ingest_s / plain_s, 2),
        "unchanged_seconds": round(again_s, 2),
        "unchanged_peak_gib": round(again_peak / GIB, 3),
        "summary": summary,
        "tables": {t: {"seconds": r.seconds, "rows_in": r.rows_in} for t, r in run.tables.items()},
        "target_met": ok,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
