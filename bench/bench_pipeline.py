"""Benchmark the whole pipeline: run_all.py with every phase, seconds and peak memory per phase.

    python bench/bench_pipeline.py --scale 1.0            # full-size lake (10.4M rows) under /tmp
    python bench/bench_pipeline.py --scale 0.05 --set max_workers=2 --json bench.json

The lake is generated once into ``<home>/data/bronze`` (default ``/tmp/aims_pipeline_bench_<scale>``) and
reused. Each benchmark starts from Bronze only (rule files, Silver, quarantine, state and outputs
are removed first, and only in a home this script created) so runs are comparable;
``--keep-state`` measures an incremental re-run instead.

Memory is the resident set size summed over run_all.py and every process it starts (papermill
kernels, worker pools), sampled every ``--interval`` seconds and attributed to the phase that was
running, as announced by run_all.py's progress lines. Per-phase seconds come from the run log.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # installed with ipykernel (a dependency of the package)
from benchlib import tree_memory

REPO = Path(__file__).resolve().parents[1]
STARTED = re.compile(r"^\[(\d+)/(\d+)\] (\w+) \(.*\) started")
FINISHED = re.compile(r"^\[(\d+)/(\d+)\] (\w+) (SUCCESS|FAILED)")
LOG_LINE = re.compile(r"^run log: (.+)$")


MARKER = ".aims_pipeline_bench"  # this home was made by this script: resetting it is safe


def ensure_lake(home: Path, scale: float, seed: int) -> float | None:
    """Generate the Bronze lake unless it is there; return the seconds it took (None if reused)."""
    bronze = home / "data" / "bronze"
    if bronze.is_dir() and any(bronze.glob("*.parquet")):
        return None
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text(f"scale={scale} seed={seed}\n")
    sys.path.insert(0, str(REPO))
    from aims_nb_utils.sample_data import generate_lake

    started = time.perf_counter()
    report = generate_lake(bronze, scale=scale, seed=seed, progress=True)
    seconds = time.perf_counter() - started
    print(f"generated {report.total_rows:,} rows in {len(report.tables)} tables in {seconds:.1f}s")
    return seconds


def reset_state(home: Path) -> None:
    """Leave only Bronze so that every phase does its full work (only in a home this script made)."""
    if not (home / MARKER).is_file():
        raise SystemExit(
            f"{home} was not created by bench_pipeline.py (no {MARKER} file): refusing to delete its "
            "rule files, Silver and state. Use another --home, or --keep-state to run on it as is."
        )
    for relative in (
        "config",
        "outputs",
        "data/silver",
        "data/gold",
        "data/quarantine",
        "data/state",
    ):
        shutil.rmtree(home / relative, ignore_errors=True)


def run_benchmark(home: Path, extra: list[str], interval: float) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "run_all.py"), "--home", str(home), *extra]
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    watched = psutil.Process(proc.pid)
    current = {"phase": "start-up"}
    peaks: dict[str, int] = {}
    log_path: list[str] = []

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            text = line.strip()
            if match := STARTED.match(text):
                current["phase"] = match.group(3)
            elif FINISHED.match(text):
                current["phase"] = "between phases"
            elif match := LOG_LINE.match(text):
                log_path.append(match.group(1))

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    while proc.poll() is None:
        rss = tree_memory(watched)
        phase = current["phase"]
        peaks[phase] = max(peaks.get(phase, 0), rss)
        time.sleep(interval)
    reader.join(timeout=10)
    wall = time.perf_counter() - started
    log = json.loads(Path(log_path[-1]).read_text()) if log_path else None
    return {
        "command": command,
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(max(peaks.values(), default=0) / 2**20),
        "peak_rss_mb_by_phase": {k: round(v / 2**20) for k, v in peaks.items()},
        "log_path": log_path[-1] if log_path else None,
        "log": log,
    }


def print_report(result: dict[str, Any]) -> None:
    log = result["log"] or {"phases": []}
    peaks = result["peak_rss_mb_by_phase"]
    print()
    print(f"{'phase':<24}{'status':<9}{'seconds':>9}{'peak MB':>9}  key metrics")
    for phase in log["phases"]:
        if phase["status"] == "skipped" and phase.get("reason", "").startswith("disabled"):
            continue
        seconds = phase["duration_seconds"]
        metrics = phase.get("metrics") or {}
        keys = (
            "files_profiled",
            "configs_generated",
            "rows_in",
            "rows_silver",
            "rows_quarantined",
            "tables_monitored",
        )
        digest = ", ".join(f"{k}={metrics[k]:,}" for k in keys if isinstance(metrics.get(k), int))
        summary = metrics.get("validation_summary")
        if isinstance(summary, dict) and "passed" in summary:
            digest += f" passed={summary['passed']}/{summary.get('total')}"
        print(
            f"{phase['phase']:<24}{phase['status']:<9}"
            f"{'' if seconds is None else f'{seconds:.1f}':>9}{peaks.get(phase['phase'], 0):>9}  "
            f"{digest or (phase.get('error') or {}).get('evalue', '')[:80]}"
        )
    print(
        f"total: {result['wall_seconds']}s wall, run status {log.get('status')}, exit code "
        f"{result['exit_code']}, peak memory {result['peak_rss_mb']} MB (process tree)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the published rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--home", type=Path, help="AIMS_HOME (default /tmp/aims_pipeline_bench_<scale>)"
    )
    parser.add_argument("--keep-state", action="store_true", help="do not reset before the run")
    parser.add_argument("--interval", type=float, default=0.25, help="memory sampling period (s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args, extra = parser.parse_known_args(argv)
    home = args.home or Path(f"/tmp/aims_pipeline_bench_{args.scale:g}")
    generation = ensure_lake(home, args.scale, args.seed)
    if not args.keep_state:
        reset_state(home)
    result = run_benchmark(home, extra, args.interval)
    result.update(scale=args.scale, home=str(home), generation_seconds=generation)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
