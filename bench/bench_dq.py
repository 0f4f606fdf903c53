"""Benchmark profiling + validation against a plain one-pass scan of the same Bronze files.

    python bench/bench_dq.py --scale 1.0                # full-size lake (10.4M rows)
    python bench/bench_dq.py --scale 0.05 --legacy      # also validate the 68 legacy rule files

The lake is generated once into ``--lake DIR/data/bronze`` (default ``/tmp/aims_bench_<scale>``,
shared with bench_pipeline.py and only read here) and reused. Rule files, results and state go
to ``--home`` (default ``/tmp/aims_bench_dq_<scale>``), cleared first so every run does the full
work. In one process it then times:

1. scan: DuckDB, one query per table computing per column what profiling and validation need
   (nulls counting the placeholders, distinct values, min/max length, values matching the
   integer pattern) - the floor any DQ engine has to pay to read the data once;
2. profile: ``profiling.profile_tables`` (all tables, all rows, rule files written);
3. validate: ``validation.validate_tables`` (all rules, Great Expectations, results + state);
4. with ``--legacy``: ``validate_tables`` over the legacy rule files.

Peak memory is the proportional set size (PSS: a page shared by forked workers counts once)
summed over this process and every child (worker pools), sampled every 0.25 s in a thread. CPU
seconds (this process + reaped children) are printed beside wall seconds: on a shared machine
wall time depends on the neighbours, CPU time much less. Targets at scale 1.0: profile + validate <= 30 s,
<= 3x the scan, peak <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # installed with ipykernel (a dependency of the package)
from benchlib import PeakMemory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 30.0
TARGET_RATIO = 3.0
TARGET_PEAK_GIB = 4.0


def cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (worker pools)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ensure_lake(bronze: Path, scale: float, seed: int) -> float | None:
    if bronze.is_dir() and any(bronze.glob("aims_*.parquet")):
        return None
    from aims_nb_utils.sample_data import generate_lake

    started = time.perf_counter()
    report = generate_lake(bronze, scale=scale, seed=seed, progress=True)
    print(f"generated {report.total_rows:,} rows in {len(report.tables)} tables")
    return time.perf_counter() - started


def readable_files(bronze: Path) -> list[Path]:
    """Bronze files whose footer reads (a deliberately truncated file is left out of the scan)."""
    import pyarrow.parquet as pq

    files = []
    for path in sorted(bronze.glob("aims_*.parquet")):
        try:
            pq.read_metadata(path)
        except Exception:  # noqa: BLE001 - reported, and profile/validate report it as an error
            print(f"scan: skipping unreadable {path.name}")
            continue
        files.append(path)
    return files


def duckdb_scan(files: list[Path], placeholders: list[str]) -> dict[str, Any]:
    """One query per table: per column nulls (with placeholders), distinct, lengths, regex hits."""
    import duckdb
    import pyarrow.parquet as pq

    con = duckdb.connect()
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in placeholders)
    cells = 0
    for path in files:
        names = pq.read_schema(path).names
        if not names:
            continue
        parts = ["count(*)"]
        for name in names:
            c = '"' + name.replace('"', '""') + '"'
            v = f"(CASE WHEN {c} IN ({quoted}) THEN NULL ELSE {c} END)"
            parts += [
                f"count(*) - count({v})",
                f"count(DISTINCT {v})",
                f"min(length({v}))",
                f"max(length({v}))",
                f"count(*) FILTER (WHERE regexp_full_match({v}, '-?[0-9]+(\\.0+)?'))",
            ]
        row = con.execute(f"SELECT {', '.join(parts)} FROM read_parquet(?)", [str(path)]).fetchone()
        cells += int(row[0]) * len(names)
    return {"tables": len(files), "cells": cells}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake", type=Path, default=None, help="home of the Bronze lake to reuse")
    parser.add_argument("--home", type=Path, default=None, help="home for rule files/results/state")
    parser.add_argument("--max-workers", type=int, default=None)
    parser.add_argument("--legacy", action="store_true", help="also validate the legacy rule files")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    lake = args.lake or Path(f"/tmp/aims_bench_{args.scale:g}")
    home = args.home or Path(f"/tmp/aims_bench_dq_{args.scale:g}")
    bronze = lake / "data" / "bronze"
    generated = ensure_lake(bronze, args.scale, args.seed)
    for sub in ("config", "data/state"):
        shutil.rmtree(home / sub, ignore_errors=True)

    from aims_nb_utils.settings import load_settings

    overrides: dict[str, Any] = {"home": home, "bronze": bronze}
    if args.max_workers:
        overrides["max_workers"] = args.max_workers
    settings = load_settings(env={}, **overrides)
    figures: dict[str, Any] = {
        "scale": args.scale,
        "bronze": str(bronze),
        "max_workers": settings.max_workers,
        "generate_seconds": generated,
    }

    with PeakMemory() as memory:
        started, cpu = time.perf_counter(), cpu_seconds()
        scan = duckdb_scan(readable_files(bronze), list(settings.null_placeholders))
        figures["scan_seconds"] = time.perf_counter() - started
        figures["scan_cpu_seconds"] = cpu_seconds() - cpu
        figures["scan_peak_gib"] = memory.peak / 2**30
        figures["cells"] = scan["cells"]

        memory.reset()
        from aims_nb_utils.profiling import profile_tables

        started, cpu = time.perf_counter(), cpu_seconds()
        profiled = profile_tables(settings)
        figures["profile_seconds"] = time.perf_counter() - started
        figures["profile_cpu_seconds"] = cpu_seconds() - cpu
        figures["profile_errors"] = len(profiled.errors)
        figures["profile_peak_gib"] = memory.peak / 2**30

        memory.reset()
        from aims_nb_utils.validation import validate_tables

        started, cpu = time.perf_counter(), cpu_seconds()
        run = validate_tables(settings, progress=sys.stderr.isatty())
        figures["validate_seconds"] = time.perf_counter() - started
        figures["validate_cpu_seconds"] = cpu_seconds() - cpu
        figures["validate_peak_gib"] = memory.peak / 2**30
        figures["validate_summary"] = run.summary
        figures["rules"] = sum(len(t.rule_results) for t in run.tables.values())
        slowest = sorted(run.tables.values(), key=lambda t: -t.seconds)[:5]
        figures["slowest_tables"] = {t.table: t.seconds for t in slowest}

        if args.legacy:
            memory.reset()
            started = time.perf_counter()
            legacy = validate_tables(
                settings,
                rules_dir=REPO.parent / "shared" / "reference" / "legacy_configs",
                write=False,
            )
            figures["legacy_seconds"] = time.perf_counter() - started
            figures["legacy_summary"] = legacy.summary
        figures["peak_gib"] = max(
            figures["scan_peak_gib"], figures["profile_peak_gib"], figures["validate_peak_gib"]
        )

    total = figures["profile_seconds"] + figures["validate_seconds"]
    figures["profile_plus_validate_seconds"] = total
    figures["ratio_to_scan"] = total / figures["scan_seconds"]
    figures["cpu_ratio_to_scan"] = (
        figures["profile_cpu_seconds"] + figures["validate_cpu_seconds"]
    ) / figures["scan_cpu_seconds"]
    figures["load_average"] = psutil.getloadavg()
    print(
        f"scan      {figures['scan_seconds']:7.1f} s wall {figures['scan_cpu_seconds']:7.1f} s cpu "
        f"({figures['cells']:,} cells, DuckDB one pass)\n"
        f"profile   {figures['profile_seconds']:7.1f} s wall {figures['profile_cpu_seconds']:7.1f} s cpu "
        f"({figures['profile_errors']} error(s))\n"
        f"validate  {figures['validate_seconds']:7.1f} s wall {figures['validate_cpu_seconds']:7.1f} s cpu "
        f"({figures['rules']:,} rules; "
        f"{json.dumps(figures['validate_summary'])})\n"
        + (
            f"legacy    {figures['legacy_seconds']:7.1f} s  {json.dumps(figures['legacy_summary'])}\n"
            if args.legacy
            else ""
        )
        + f"profile+validate {total:.1f} s (target <= {TARGET_SECONDS:g}); "
        f"ratio to scan {figures['ratio_to_scan']:.2f}x (target <= {TARGET_RATIO:g}); "
        f"cpu ratio {figures['cpu_ratio_to_scan']:.2f}x; "
        f"peak {figures['peak_gib']:.2f} GiB (target <= {TARGET_PEAK_GIB:g}); "
        f"load average {figures['load_average'][0]:.1f}\n"
        f"slowest validated tables: {figures['slowest_tables']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
