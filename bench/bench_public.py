"""Benchmark the DQ platform on public data nobody here wrote: TPC-H, TPC-DS and nycflights13.

    python bench/bench_public.py                      # TPC-H and TPC-DS at sf 0.1, nycflights13
    python bench/bench_public.py --sf 1 --datasets tpch
    python bench/bench_public.py --text               # the same lakes written as all-text Bronze

Each lake is built once into ``--root DIR/<dataset>_sf<sf>[_text]/data/bronze`` (default root
``/tmp/aims_bench_public``) with ``aims_nb_utils.public_lakes.build_lake`` and reused; its rule
files, results, Silver, quarantine and state are cleared first so every run does the full work.
In one process, per data set, it then times:

1. scan: DuckDB, one query per table with ``count(*)`` and per column nulls, ``count(DISTINCT)``,
   min and max - the floor of any engine that reads every column once;
2. copy: pyarrow reads every Bronze file whole and writes it back (zstd) - the floor of any
   Bronze -> Silver step;
3. profile (``profiling.profile_tables``), validate-dq (``validation.validate_tables``, Great
   Expectations) and ingest-all (``ingestion.ingest_tables(force=True)`` with those verdicts).

And it prints what a user of such a lake cares about, against the published schemas (the same
ground truth as tests/test_public_lakes.py, in tests/published_schemas.py): keys and references
found / expected (plus references outside the published schema; for TPC-DS, of which only a
sample of foreign keys is listed: references that are no surrogate-key join), columns whose
Silver type is the source type, rows quarantined and the most frequent rules behind them. Rows conserved
(Bronze = Silver + quarantine) is checked; a violation exits 1. No target is set: the figures
are the ratios to the scan and the copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchlib import GIB, timed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # published_schemas: the ground truth the tests use

DATASETS = ("tpch", "tpcds", "flights")


def _timed(label: str, action: Any) -> tuple[Any, float, int]:
    return timed(label, action, width=28, digits=2, indent="  ")


def duckdb_scan(bronze: Path) -> int:
    """Every column read once: nulls, distinct values, min, max; returns the cells read."""
    import duckdb
    import pyarrow.parquet as pq

    con = duckdb.connect()
    cells = 0
    try:
        for path in sorted(bronze.glob("*.parquet")):
            names = pq.read_schema(path).names
            parts = ["count(*)"]
            for name in names:
                c = '"' + name.replace('"', '""') + '"'
                parts += [f"count({c})", f"count(DISTINCT {c})", f"min({c})", f"max({c})"]
            # to Arrow, not Python: a timezone-aware min/max would need pytz to become Python
            row = con.execute(
                f"SELECT {', '.join(parts)} FROM read_parquet(?)", [str(path)]
            ).to_arrow_table()
            cells += int(row.column(0)[0].as_py()) * len(names)
    finally:
        con.close()
    return cells


def pyarrow_copy(bronze: Path, out: Path) -> int:
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for path in sorted(bronze.glob("*.parquet")):
        data = pq.read_table(path)
        pq.write_table(data, out / path.name, compression="zstd")
        rows += data.num_rows
        del data
    return rows


def _published(dataset: str, bronze: Path) -> tuple[dict, dict]:
    """Published keys and single-column references; keys of one-row tables are left out (every
    column of a one-row table is unique, so no discovery can tell its key)."""
    import pyarrow.parquet as pq
    from published_schemas import KEYS, REFERENCES, TPCDS_DIMENSION_KEYS

    source = KEYS[dataset]
    if dataset == "tpcds":  # the tables of one row at sf 0.01 grow at larger scales
        source = {t: (k,) for t, k in TPCDS_DIMENSION_KEYS.items()}
    keys = {}
    for table, key in source.items():
        path = bronze / f"{table}.parquet"
        if path.is_file() and pq.ParquetFile(path).metadata.num_rows > 1:
            keys[table] = key
    return keys, REFERENCES[dataset]


def discovery_figures(settings: Any, dataset: str) -> dict[str, Any]:
    from aims_nb_utils.rules import load_rules_dir

    keys, references = _published(dataset, settings.paths.bronze)
    rule_files = load_rules_dir(settings.paths.rules)
    found_keys = {t: [set(k) for k in rf.keys] for t, rf in rule_files.items()}
    keys_found = sum(set(k) in found_keys.get(t, []) for t, k in keys.items())
    discovered = set()
    for table, rule_file in rule_files.items():
        for rule in rule_file.expectations:
            ref = rule.meta.get("reference")
            if isinstance(ref, dict) and rule.kwargs.get("column"):
                discovered.add(
                    ((table, rule.kwargs["column"]), (ref.get("table"), ref.get("column")))
                )
    published = set(references.items())
    other = discovered - published
    if dataset == "tpcds":  # only a sample of its foreign keys is listed: count the non-joins
        from published_schemas import TPCDS_DATE_VALUED, TPCDS_DIMENSION_KEYS

        dimension_keys = set(TPCDS_DIMENSION_KEYS.items())
        other = {
            (c, p)
            for c, p in other
            if c not in TPCDS_DATE_VALUED and not (c[1].endswith("_sk") and p in dimension_keys)
        }
    return {
        "keys_expected": len(keys),
        "keys_found": keys_found,
        "keys_missing": sorted(
            f"{t}({','.join(k)})" for t, k in keys.items() if set(k) not in found_keys.get(t, [])
        ),
        "refs_expected": len(published),
        "refs_found": len(published & discovered),
        "refs_other": sorted(f"{c[0]}.{c[1]}->{p[0]}.{p[1]}" for c, p in other),
        "keys_total_claimed": sum(len(rf.keys) for rf in rule_files.values()),
    }


def silver_figures(settings: Any) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from aims_nb_utils import storage
    from aims_nb_utils.quarantine import FAILED_RULES

    kept = columns = 0
    changed: list[str] = []
    bronze_rows = silver_rows = quarantined = 0
    reasons: Counter[str] = Counter()
    conserved: list[str] = []
    for path in sorted(settings.paths.bronze.glob("*.parquet")):
        table = path.stem
        source = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
        bronze_rows += rows
        columns += len(source)
        silver = quarantine = 0
        if storage.table_exists(settings, "silver", table):
            silver = storage.count_rows(settings, "silver", table)
            schema = storage.table_schema(settings, "silver", table)
            for f in source:
                if f.name in schema.names and schema.field(f.name).type == f.type:
                    kept += 1
                else:
                    got = schema.field(f.name).type if f.name in schema.names else "missing"
                    changed.append(f"{table}.{f.name}: {f.type}->{got}")
        if storage.table_exists(settings, "quarantine", table):
            quarantine = storage.count_rows(settings, "quarantine", table)
            rules = storage.read_table(settings, "quarantine", table, columns=[FAILED_RULES])
            flat = pc.list_flatten(rules.column(FAILED_RULES))
            for item in pc.value_counts(flat).to_pylist():
                reasons[f"{table}: {item['values']}"] += item["counts"]
        silver_rows += silver
        quarantined += quarantine
        if rows != silver + quarantine:
            conserved.append(f"{table}: {rows} != {silver} + {quarantine}")
    return {
        "columns": columns,
        "types_kept": kept,
        "types_changed": changed,
        "bronze_rows": bronze_rows,
        "silver_rows": silver_rows,
        "quarantined": quarantined,
        "top_reasons": reasons.most_common(3),
        "not_conserved": conserved,
    }


def bench_dataset(dataset: str, sf: float, root: Path, as_text: bool) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from aims_nb_utils.ingestion import ingest_tables
    from aims_nb_utils.profiling import profile_tables
    from aims_nb_utils.public_lakes import build_lake
    from aims_nb_utils.settings import load_settings
    from aims_nb_utils.state import new_run_id
    from aims_nb_utils.validation import validate_tables

    name = dataset if dataset == "flights" else f"{dataset}_sf{sf:g}"
    home = root / (name + ("_text" if as_text else ""))
    bronze = home / "data" / "bronze"
    print(f"\n== {name}{' (all text)' if as_text else ''}: {home}", flush=True)
    if not any(bronze.glob("*.parquet")):
        _timed("build lake", lambda: build_lake(dataset, bronze, scale=sf, as_text=as_text))
    settings = load_settings(env={}, home=home)
    for folder in (
        settings.paths.rules,
        settings.paths.results,
        settings.paths.silver,
        settings.paths.quarantine,
        settings.paths.state,
        home / "copy",
    ):
        shutil.rmtree(folder, ignore_errors=True)
    files = sorted(bronze.glob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    size = sum(p.stat().st_size for p in files)
    print(f"  {len(files)} tables, {rows:,} rows, {size / 1e6:,.1f} MB", flush=True)

    _, scan_s, _ = _timed("scan (DuckDB, every column)", lambda: duckdb_scan(bronze))
    _, copy_s, _ = _timed("copy (pyarrow read+write)", lambda: pyarrow_copy(bronze, home / "copy"))
    shutil.rmtree(home / "copy", ignore_errors=True)
    profiled, profile_s, profile_peak = _timed("profile", lambda: profile_tables(settings))
    run_id = new_run_id()
    validation, validate_s, validate_peak = _timed(
        "validate-dq (GX)", lambda: validate_tables(settings, run_id=run_id)
    )
    ingest, ingest_s, ingest_peak = _timed(
        "ingest-all (--force)",
        lambda: ingest_tables(settings, force=True, verdicts=validation.tables, run_id=run_id),
    )
    errors = {t: r.error for t, r in ingest.tables.items() if r.status == "error"}
    errors.update({t: r.error for t, r in validation.tables.items() if r.status == "ERROR"})
    errors.update({t: str(e) for t, e in getattr(profiled, "errors", {}).items()})
    total_s = profile_s + validate_s + ingest_s
    return {
        "dataset": name + ("_text" if as_text else ""),
        "tables": len(files),
        "rows": rows,
        "bronze_mb": round(size / 1e6, 1),
        "seconds": {
            "scan": round(scan_s, 2),
            "copy": round(copy_s, 2),
            "profile": round(profile_s, 2),
            "validate": round(validate_s, 2),
            "ingest": round(ingest_s, 2),
        },
        "peak_gib": round(max(profile_peak, validate_peak, ingest_peak) / GIB, 2),
        "ratio_to_scan": round(total_s / scan_s, 1) if scan_s else None,
        "ratio_to_copy": round(total_s / copy_s, 1) if copy_s else None,
        "verdicts": dict(Counter(r.status for r in validation.tables.values())),
        "errors": {t: (e or "")[:200] for t, e in errors.items()},
        **discovery_figures(settings, dataset),
        **silver_figures(settings),
    }


def print_summary(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'data set':<16} {'tables':>6} {'rows':>10} {'keys':>7} {'refs':>7} {'other':>5} "
        f"{'types kept':>11} {'quarant.':>9} {'profile':>8} {'validate':>8} {'ingest':>7} "
        f"{'scan':>6} {'copy':>6} {'x scan':>6} {'x copy':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        s = r["seconds"]
        print(
            f"{r['dataset']:<16} {r['tables']:>6} {r['rows']:>10,} "
            f"{r['keys_found']:>3}/{r['keys_expected']:<3} {r['refs_found']:>3}/{r['refs_expected']:<3} "
            f"{len(r['refs_other']):>5} {r['types_kept']:>5}/{r['columns']:<5} "
            f"{r['quarantined']:>9,} {s['profile']:>7.1f}s {s['validate']:>7.1f}s "
            f"{s['ingest']:>6.1f}s {s['scan']:>5.2f}s {s['copy']:>5.2f}s "
            f"{r['ratio_to_scan'] or 0:>5.1f}x {r['ratio_to_copy'] or 0:>5.1f}x"
        )
    for r in results:
        print(f"\n{r['dataset']}: verdicts {r['verdicts']}; peak {r['peak_gib']} GiB")
        if r["errors"]:
            print("  errors: " + "; ".join(f"{t}: {e}" for t, e in sorted(r["errors"].items())[:5]))
        if r["keys_missing"]:
            print("  keys missing: " + ", ".join(r["keys_missing"][:10]))
        if r["refs_other"]:
            print("  references outside the published schema: " + ", ".join(r["refs_other"][:8]))
        if r["types_changed"]:
            print(
                f"  types changed ({len(r['types_changed'])}): " + ", ".join(r["types_changed"][:6])
            )
        if r["top_reasons"]:
            print(
                "  top quarantine rules: " + "; ".join(f"{k} ({n:,})" for k, n in r["top_reasons"])
            )
        if r["not_conserved"]:
            print("  ROWS NOT CONSERVED: " + "; ".join(r["not_conserved"][:5]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.1, help="TPC scale factor (0.1, 1)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="tpch,tpcds,flights")
    parser.add_argument("--root", type=Path, default=Path("/tmp/aims_bench_public"))
    parser.add_argument("--text", action="store_true", help="write every column as text")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}: choose from {', '.join(DATASETS)}")
    results = [bench_dataset(d, args.sf, args.root, args.text) for d in chosen]
    print_summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 1 if any(r["not_conserved"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
