"""Benchmark the synthetic Bronze generator: seconds, rows, rows/second and peak memory.

    python bench/bench_generate.py                 # scale 1.0 (10,359,945 rows) into a temp dir
    python bench/bench_generate.py --scale 0.1 --out data/bronze --keep

Peak memory is the process's ru_maxrss (the generator runs in this process only), cross-checked
by a sampling thread that sums the memory (PSS) of this process and its children.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # allow `python bench/bench_generate.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import PeakMemory  # noqa: E402

from aims_nb_utils.sample_data import DefectRates, generate_lake  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--clean", action="store_true", help="no defects")
    parser.add_argument("--corrupt", action="store_true", help="also truncate one table")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="aims_bench_"))
    started = time.perf_counter()
    try:
        with PeakMemory(interval=0.2) as memory:
            report = generate_lake(
                out,
                scale=args.scale,
                seed=args.seed,
                clean=args.clean,
                corrupt=args.corrupt,
                rates=DefectRates(),
                progress=args.progress,
            )
        seconds = time.perf_counter() - started
        sampled_peak = memory.peak
        maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        size = sum(p.stat().st_size for p in out.glob("*.parquet"))
        figures = {
            "scale": args.scale,
            "seconds": round(seconds, 2),
            "rows": report.total_rows,
            "rows_per_second": round(report.total_rows / seconds),
            "peak_mb_ru_maxrss": round(maxrss_kib / 1024, 1),
            "peak_mb_sampled_tree": round(sampled_peak / 2**20, 1),
            "defects": sum(report.defects.values()),
            "parquet_mb": round(size / 2**20, 1),
            "folder": str(out),
        }
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(
                f"{key:>22}: {value:,}"
                if isinstance(value, (int, float))
                else f"{key:>22}: {value}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
