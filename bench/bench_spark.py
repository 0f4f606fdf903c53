"""Benchmark the spark engine (local[2]) beside the arrow engine on the same synthetic lake.

    python bench/bench_spark.py --scale 0.1
    python bench/bench_spark.py --scale 0.1 --scale 1.0      # and how Spark's time grows

For each scale the Bronze lake is generated once into ``--lake-root/<scale>/data/bronze``
(default ``/tmp/aims_bench_spark``) and profiled once (rule files are the same for both engines).
Then, in this one process, each engine runs on its own home over the same Bronze files:

1. profile: ``profiling.profile_tables`` (under the spark engine this still runs the arrow
   profiler, see aims_nb_utils/engine/spark/profile.py: the figure shows what a Spark run pays);
2. validate: ``validation.validate_tables`` (all tables, all rules, results file and metrics);
3. ingest: ``ingestion.ingest_tables(force=True, verdicts=...)`` (Silver + quarantine + state).

Seconds are wall time; peak memory is the PSS of this process and its children (the JVM
included), sampled every 0.25 s. The SparkSession is started before the timings (its start-up
is printed apart): a Fabric notebook has one already.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import GIB, PeakMemory

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(label: str, action: Any) -> tuple[Any, float, int]:
    with PeakMemory() as memory:
        started = time.perf_counter()
        value = action()
        seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:8.1f} s   peak {memory.peak / GIB:5.2f} GiB", flush=True)
    return value, seconds, memory.peak


def run_scale(scale: float, root: Path, seed: int) -> dict[str, Any]:
    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.sample_data import generate_lake
    from aims_nb_utils.settings import load_settings
    from aims_nb_utils.validation import validate_tables

    lake = root / f"{scale:g}" / "data" / "bronze"
    if not any(lake.glob("*.parquet")):
        _timed(
            f"generate lake (scale {scale:g})", lambda: generate_lake(lake, scale=scale, seed=seed)
        )
    figures: dict[str, Any] = {"scale": scale}
    for engine in ("arrow", "spark"):
        home = root / f"{scale:g}" / f"home_{engine}"
        shutil.rmtree(home, ignore_errors=True)
        settings = load_settings(env={}, home=home, bronze=lake, engine=engine)
        _, profile_s, profile_peak = _timed(
            f"{engine}: profile", lambda s=settings: profile_tables(s)
        )
        validation, validate_s, validate_peak = _timed(
            f"{engine}: validate", lambda s=settings: validate_tables(s)
        )
        ingest, ingest_s, ingest_peak = _timed(
            f"{engine}: ingest",
            lambda s=settings, v=validation: ingest_tables(s, force=True, verdicts=v.tables),
        )
        figures[engine] = {
            "profile_s": round(profile_s, 1),
            "validate_s": round(validate_s, 1),
            "ingest_s": round(ingest_s, 1),
            "peak_gib": {
                "profile": round(profile_peak / GIB, 2),
                "validate": round(validate_peak / GIB, 2),
                "ingest": round(ingest_peak / GIB, 2),
            },
            "statuses": {k: validation.summary[k] for k in ("passed", "failed", "errors")},
            "rows_silver": ingest.summary["rows_silver"],
            "rows_quarantined": ingest.summary["rows_quarantined"],
        }
    same = all(
        figures["arrow"][k] == figures["spark"][k]
        for k in ("statuses", "rows_silver", "rows_quarantined")
    )
    figures["same_split"] = same
    print(
        f"scale {scale:g}: verdict counts and Silver/quarantine rows equal: {same}; spark/arrow "
        f"validate {figures['spark']['validate_s'] / max(figures['arrow']['validate_s'], 0.1):.1f}x,"
        f" ingest {figures['spark']['ingest_s'] / max(figures['arrow']['ingest_s'], 0.1):.1f}x",
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake-root", type=Path, default=Path("/tmp/aims_bench_spark"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()
    scales = args.scale or [0.1]

    from aims_nb_utils.engine.spark.session import describe, local_session

    session, start_s, _ = _timed("start SparkSession (local[2])", lambda: local_session())
    print(json.dumps(describe(session)), flush=True)
    results = [run_scale(scale, args.lake_root, args.seed) for scale in scales]
    if len(results) > 1:
        first, last = results[0], results[-1]
        for phase in ("validate_s", "ingest_s"):
            growth = last["spark"][phase] / max(first["spark"][phase], 0.1)
            print(
                f"spark {phase[:-2]}: x{growth:.1f} from scale {first['scale']:g} to "
                f"{last['scale']:g} (data x{last['scale'] / first['scale']:g})"
            )
    document = {"spark_start_s": round(start_s, 1), "scales": results}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
