#!/usr/bin/env python
"""Run the AIMS pipeline headless: the same orchestration as notebook 00, without Jupyter UI.

    python run_all.py [--phases profiling,ingestion,...] [--set dq_threshold=90 ...]
                      [--continue-on-error] [--force] [--runner auto|papermill|fabric]
                      [--set engine=arrow|spark|auto]
                      [--home DIR] [--config pipeline.yaml] [--kernel aims] [--run-id ID]

It executes the phase notebooks 01-08 through papermill (one kernel per notebook, executed copies
under outputs/runs/<run_id>/) exactly as notebook 00 does: both call
aims_nb_utils.orchestration.run_pipeline. It prints progress and a summary, writes
config/validation_results/orchestration_log_YYYYMMDD_HHMMSS.json and exits 0 only if every enabled
phase succeeded (1 if a phase failed, 2 if the run could not start, e.g. a bad setting).

``--runner`` picks how phases run (papermill or Fabric runMultiple); ``--set engine=spark`` picks the
data engine every phase profiles, validates and ingests with (aims_nb_utils.engine). ``--engine
papermill|fabric|auto``, the runner's old name, still works with a deprecation message.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aims_nb_utils.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--notebooks-dir" or a.startswith("--notebooks-dir=") for a in argv):
        argv += ["--notebooks-dir", str(Path(__file__).resolve().parent / "notebooks")]
    sys.exit(main(["orchestrate", *argv]))
