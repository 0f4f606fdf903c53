"""Benchmark the spark engine (local[2]) beside the arrow engine on the same synthetic lake.

    python bench/bench_spark.py --scale 0.1
    python bench/bench_spark.py --scale 0.1 --scale 1.0      # and how each phase grows

For each scale the Bronze lake is the one bench_dq.py and bench_pipeline.py use
(``--lake-root/aims_bench_<scale>/data/bronze``, default ``/tmp``), generated when absent. In this
one process, each engine runs on its own home (``/tmp/aims_bench_spark_<scale>/home_<engine>``)
over the same Bronze files:

1. profile: ``profiling.profile_tables`` (rule files written; the two engines' files are compared
   byte for byte, apart from their ``generated_at`` line);
2. validate: ``validation.validate_tables`` (all tables, all rules, results file and metrics);
3. ingest: ``ingestion.ingest_tables(force=True, verdicts=...)`` (Silver + quarantine + state).

Beside them, the plain work on the same files, so a figure reads as a ratio that carries from
one machine to another: a DuckDB scan computing per column what profiling needs (bench_dq's) and
a plain pyarrow read + write of every file for the arrow engine; a plain Spark one-pass
aggregation (rows and non-null values per column) and a plain Spark read + write of every file
for the spark engine.

Seconds are wall time; peak memory is the PSS of this process and its children (the JVM
included), sampled every 0.25 s. The SparkSession is started before the timings (its start-up
is printed apart): a Fabric notebook has one already.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench_dq import duckdb_scan, readable_files
from bench_ingest import plain_read_write
from benchlib import GIB, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PHASES = ("profile_s", "validate_s", "ingest_s")


def _timed(label: str, action: Any) -> tuple[Any, float, int]:
    return timed(label, action, width=36)


def spark_scan(files: list[Path]) -> int:
    """Plain Spark: one aggregation per table (rows, non-null values of every column)."""
    from pyspark.sql import functions as F

    from aims_nb_utils.engine.spark.session import get_session

    session = get_session()
    cells = 0
    for path in files:
        frame = session.read.parquet(str(path))
        if not frame.columns:
            continue
        row = frame.agg(
            F.count(F.lit(1)), *[F.count(F.col(f"`{c}`")) for c in frame.columns]
        ).collect()[0]
        cells += int(row[0]) * len(frame.columns)
    return cells


def spark_read_write(files: list[Path], out: Path) -> int:
    """Plain Spark: read every Bronze file and write it back as parquet."""
    from aims_nb_utils.engine.spark.session import get_session

    session = get_session()
    rows = 0
    for path in files:
        frame = session.read.parquet(str(path))
        frame.coalesce(1).write.mode("overwrite").parquet(str(out / path.stem))
        rows += frame.count()
    return rows


def _rule_texts(rules: Path) -> dict[str, list[str]]:
    return {
        path.name: [
            line for line in path.read_text().splitlines() if not line.startswith("generated_at:")
        ]
        for path in sorted(rules.glob("*_validation.yml"))
    }


def run_scale(scale: float, root: Path, seed: int) -> dict[str, Any]:
    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.sample_data import generate_lake
    from aims_nb_utils.settings import load_settings
    from aims_nb_utils.validation import validate_tables

    lake = root / f"aims_bench_{scale:g}" / "data" / "bronze"
    if not any(lake.glob("*.parquet")):
        _timed(
            f"generate lake (scale {scale:g})", lambda: generate_lake(lake, scale=scale, seed=seed)
        )
    files = readable_files(lake)
    work = Path(f"/tmp/aims_bench_spark_{scale:g}")
    shutil.rmtree(work / "plain", ignore_errors=True)
    figures: dict[str, Any] = {"scale": scale, "bronze": str(lake)}
    print(f"scale {scale:g}: {lake} ({sum(p.stat().st_size for p in files) / 1e6:,.0f} MB)")
    placeholders = list(load_settings(env={}).null_placeholders)
    _, figures["duckdb_scan_s"], _ = _timed(
        "plain DuckDB scan", lambda: duckdb_scan(files, placeholders)
    )
    _, figures["pyarrow_copy_s"], _ = _timed(
        "plain pyarrow read + write", lambda: plain_read_write(lake, work / "plain" / "arrow")
    )
    _, figures["spark_scan_s"], _ = _timed("plain Spark scan", lambda: spark_scan(files))
    _, figures["spark_copy_s"], _ = _timed(
        "plain Spark read + write", lambda: spark_read_write(files, work / "plain" / "spark")
    )
    shutil.rmtree(work / "plain", ignore_errors=True)
    homes = {}
    for engine in ("arrow", "spark"):
        home = homes[engine] = work / f"home_{engine}"
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
            "unexpected": {
                table: [r.unexpected_count for r in result.rule_results]
                for table, result in sorted(validation.tables.items())
            },
            "rows_silver": ingest.summary["rows_silver"],
            "rows_quarantined": ingest.summary["rows_quarantined"],
        }
    arrow, spark = figures["arrow"], figures["spark"]
    rules = {e: _rule_texts(load_settings(env={}, home=h).paths.rules) for e, h in homes.items()}
    differing = sorted(
        name for name in rules["arrow"] if rules["arrow"][name] != rules["spark"].get(name)
    )
    figures["rule_files_differing"] = differing
    for key in ("statuses", "unexpected", "rows_silver", "rows_quarantined"):
        figures[f"same_{key}"] = arrow[key] == spark[key]
    print(
        f"scale {scale:g}: rule files differing {len(differing)} of {len(rules['arrow'])}"
        f"{' ' + ', '.join(differing[:5]) if differing else ''}; same verdict counts "
        f"{figures['same_statuses']}, same per-rule unexpected counts {figures['same_unexpected']},"
        f" same Silver rows {figures['same_rows_silver']}, same quarantined rows "
        f"{figures['same_rows_quarantined']}",
        flush=True,
    )
    print(
        f"scale {scale:g}: arrow (profile + validate) / DuckDB scan "
        f"{(arrow['profile_s'] + arrow['validate_s']) / figures['duckdb_scan_s']:.1f}x, "
        f"spark (profile + validate) / Spark scan "
        f"{(spark['profile_s'] + spark['validate_s']) / figures['spark_scan_s']:.1f}x; "
        f"arrow ingest / pyarrow copy {arrow['ingest_s'] / figures['pyarrow_copy_s']:.1f}x, "
        f"spark ingest / Spark copy {spark['ingest_s'] / figures['spark_copy_s']:.1f}x; "
        + ", ".join(f"spark/arrow {p[:-2]} {spark[p] / max(arrow[p], 0.1):.1f}x" for p in PHASES),
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake-root", type=Path, default=Path("/tmp"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()
    scales = args.scale or [0.1]

    from aims_nb_utils.engine.spark.session import describe, local_session

    session, start_s, _ = _timed("start SparkSession (local[2])", lambda: local_session())
    print(json.dumps(describe(session)), flush=True)
    results = [run_scale(scale, args.lake_root, args.seed) for scale in scales]
    if len(results) > 1:
        first, last = results[0], results[-1]
        data = last["scale"] / first["scale"]
        for phase in PHASES:
            print(
                f"{phase[:-2]}: spark x{last['spark'][phase] / max(first['spark'][phase], 0.1):.1f},"
                f" arrow x{last['arrow'][phase] / max(first['arrow'][phase], 0.1):.1f} from scale "
                f"{first['scale']:g} to {last['scale']:g} (data x{data:g})"
            )
        for plain in ("spark_scan_s", "spark_copy_s", "duckdb_scan_s"):
            print(f"{plain[:-2]}: x{last[plain] / max(first[plain], 0.1):.1f} (data x{data:g})")
    document = {"spark_start_s": round(start_s, 1), "scales": results}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
