"""`python -m aims_nb_utils <command>`: the seed's commands over the same functions notebooks use.

Each command resolves settings once (defaults <- pipeline.yaml <- AIMS_* <- --set/--home), calls
one library function and prints a readable summary. Errors of the platform (AimsError) print as one
sentence naming what to fix and exit 2; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from .errors import AimsError, SettingsError
from .settings import Settings, load_settings

_default_show_warning = warnings.showwarning
Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[str, Configure | None, Handler]] = {}


def command(
    name: str, help_text: str, configure: Configure | None = None
) -> Callable[[Handler], Handler]:
    """Register a subcommand; one section of this module per concern keeps the CLI in one place."""

    def decorate(handler: Handler) -> Handler:
        _COMMANDS[name] = (help_text, configure, handler)
        return handler

    return decorate


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SettingsError(
                item, item, "--set", "expected key=value", hint="e.g. --set dq_threshold=90"
            )
        key, raw = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
    return overrides


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = _parse_set(getattr(args, "set", None) or [])
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return load_settings(config_file=args.config, home=args.home, **overrides)


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Plain aligned text table (no extra dependency; readable in CI logs)."""
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


# --- settings / environment -------------------------------------------------------------------


@command("settings", "show resolved settings, paths and where each value came from")
def _cmd_settings(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(f"environment: {settings.environment.label}")
    rows = [
        {"key": k, "value": repr(v), "source": settings.sources.get(k, "")}
        for k, v in settings.values.items()
    ]
    rows += [
        {"key": f"paths.{k}", "value": v, "source": settings.sources.get(f"paths.{k}", "derived")}
        for k, v in settings.paths.as_dict().items()
    ]
    print_table(rows)
    return 0


# --- init (sample lake) -----------------------------------------------------------------------


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=float, default=None, help="fraction of published row counts")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--clean", action="store_true", help="inject no defects")
    p.add_argument("--corrupt", action="store_true", help="truncate one table's file on purpose")
    p.add_argument("--tables", nargs="+", default=None, help="only these tables")


@command("init", "generate the synthetic AIMS Bronze lake into the Bronze folder", _init_args)
def _cmd_init(args: argparse.Namespace) -> int:
    from .sample_data import DEFAULT_SCALE, generate_lake

    settings = settings_from_args(args)
    scale = DEFAULT_SCALE if args.scale is None else args.scale
    report = generate_lake(
        settings.paths.bronze,
        scale=scale,
        seed=args.seed,
        clean=args.clean,
        corrupt=args.corrupt,
        tables=args.tables,
        progress=sys.stderr.isatty(),
    )
    print(
        f"wrote {len(report.tables)} tables, {report.total_rows:,} rows to {report.bronze_dir} "
        f"in {report.seconds:.1f}s (scale {report.scale}, seed {report.seed})"
    )
    defects = sum(report.defects.values())
    print(
        f"defects injected: {defects:,} "
        + (str(dict(report.defects)) if defects else "(clean lake)")
    )
    if report.corrupted_table:
        print(f"corrupted on purpose: {report.corrupted_table} (repair it with `make repair`)")
    return 0


def _init_public_args(p: argparse.ArgumentParser) -> None:
    from .public_lakes import DATASETS

    p.add_argument("dataset", choices=DATASETS, help="tpch, tpcds or flights (nycflights13)")
    p.add_argument("--scale", type=float, default=0.01, help="TPC scale factor (default 0.01)")
    p.add_argument("--as-text", action="store_true", help="write every column as text")


@command(
    "init-public",
    "write a public data set (TPC-H, TPC-DS, nycflights13) into the Bronze folder, offline",
    _init_public_args,
)
def _cmd_init_public(args: argparse.Namespace) -> int:
    from .public_lakes import build_lake

    settings = settings_from_args(args)
    rows = build_lake(args.dataset, settings.paths.bronze, scale=args.scale, as_text=args.as_text)
    print(
        f"wrote {len(rows)} {args.dataset} tables, {sum(rows.values()):,} rows to "
        f"{settings.paths.bronze}" + (" (all columns as text)" if args.as_text else "")
    )
    return 0


# --- orchestrate (run_all.py) ---------------------------------------------------------------


def _orchestrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--phases",
        help="comma-separated phases to run, others off (profiling,ingestion,monitoring,schema,"
        "gold,insights,modeling,bi or 01-08); default: the run_* settings",
    )
    p.add_argument(
        "--continue-on-error",
        action="store_true",
        help="run later phases after a failure (the run still fails)",
    )
    p.add_argument("--force", action="store_true", help="force_reprocess: ignore watermarks")
    p.add_argument(
        "--runner",
        choices=("auto", "papermill", "fabric"),
        default=None,
        help="phase runner; auto: papermill locally, notebookutils.runMultiple in Fabric",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "papermill", "fabric", "arrow", "spark"),
        default=None,
        help="deprecated for the runner (use --runner); arrow|spark is the data engine, the same"
        " as --set engine=...",
    )
    p.add_argument("--kernel", help="Jupyter kernel for the phase notebooks (default: python3)")
    p.add_argument("--notebooks-dir", help="folder holding 01-08 (default: ./notebooks)")
    p.add_argument("--run-id", help="run id to use (default: a new one)")
    p.add_argument(
        "--log-output", action="store_true", help="stream the notebooks' output to stderr"
    )
    p.add_argument("--plan", action="store_true", help="only show which phases would run and why")


@command(
    "orchestrate",
    "run the enabled phase notebooks in order (papermill/Fabric) and write the run log",
    _orchestrate_args,
)
def _cmd_orchestrate(args: argparse.Namespace) -> int:
    from .orchestration import describe_plan, make_runner, run_pipeline, selection_overrides

    overrides = _parse_set(args.set or [])
    runner_name = args.runner
    if args.engine in ("arrow", "spark"):
        overrides["engine"] = args.engine  # the data engine (settings.engine)
    elif args.engine is not None:
        print(
            f"--engine {args.engine} is deprecated for the phase runner: use --runner "
            f"{args.engine} (--engine / --set engine= now choose the data engine: arrow|spark|auto)",
            file=sys.stderr,
        )
        runner_name = runner_name or args.engine
    if args.phases:
        overrides.update(selection_overrides(p for p in args.phases.split(",") if p.strip()))
    if args.continue_on_error:
        overrides["continue_on_error"] = True
    if args.force:
        overrides["force_reprocess"] = True
    settings = load_settings(config_file=args.config, home=args.home, **overrides)
    if args.plan:
        print_table(describe_plan(settings), ["phase", "notebook", "runs", "setting", "source"])
        return 0
    runner = make_runner(
        settings, runner_name or "auto", args.notebooks_dir, args.kernel, args.log_output
    )
    run = run_pipeline(
        settings, run_id=args.run_id, overrides=overrides, runner=runner, config_file=args.config
    )
    return 0 if run.ok else 1


# --- monitoring, insights, DQ modeling (reports.py, insights.py, modeling.py) -----------------


def _monitor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-pass-rate", type=float, default=80.0, help="%% of tables PASSED")
    p.add_argument("--target-quality-score", type=float, default=85.0, help="average score, %%")
    p.add_argument("--target-completeness", type=float, default=95.0, help="non-null cells, %%")
    p.add_argument("--max-age-hours", type=float, default=24.0, help="stale after this long")
    p.add_argument("--no-html", action="store_true", help="do not write the HTML dashboard")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


@command(
    "monitor",
    "DQ figures of the latest validation run, targets, freshness; writes the HTML dashboard",
    _monitor_args,
)
def _cmd_monitor(args: argparse.Namespace) -> int:
    from .reports import Targets, build_monitoring_report, write_dashboard

    settings = settings_from_args(args)
    targets = Targets(
        pass_rate=args.target_pass_rate,
        quality_score=args.target_quality_score,
        completeness=args.target_completeness,
    )
    report = build_monitoring_report(settings, targets=targets, max_age_hours=args.max_age_hours)
    o = report.overall
    print(
        f"validation run {report.run.run_id}: {o['tables']} tables, {o['passed']} passed, "
        f"{o['failed']} failed, {o['errors']} error, {o['skipped']} skipped"
    )
    print(
        f"loads: {o['loads_ok']} loaded, {o['loads_failed']} failed, "
        f"{o['loads_not_promoted']} not promoted, {o['never_loaded']} never loaded; "
        f"pass rate counts {o['passing']} of {o['judged']} tables (PASSED and in Silver)"
    )
    rows = report.targets.assign(
        value=report.targets["value"].map(lambda v: "n/a" if v is None else f"{v:.2f}%"),
        target=report.targets["target"].map(lambda v: f">= {v:g}%"),
    )
    print_table(rows[["label", "value", "target", "verdict"]].to_dict("records"))
    counts = report.freshness["status"].value_counts().to_dict()
    print("freshness: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(report.history_status.message)
    for note in report.notes:
        print(f"note: {note}")
    if not args.no_html:
        print(f"dashboard: {write_dashboard(settings, report)}")
    missed = int(report.targets["met"].eq(False).sum())
    return 1 if args.strict and missed else 0


def _insights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=int, default=10, help="rows in the most-failing lists")
    p.add_argument("--window", type=int, default=5, help="runs used for the score slope")
    p.add_argument("--min-drop", type=float, default=0.0, help="points a score must fall")
    p.add_argument("--max-runs", type=int, default=None, help="only the last N runs")


@command(
    "insights",
    "trends across runs: new failures, most failing rules, tables getting worse",
    _insights_args,
)
def _cmd_insights(args: argparse.Namespace) -> int:
    from .insights import build_insights, load_history, save_insights

    settings = settings_from_args(args)
    history = load_history(settings, max_runs=args.max_runs)
    report = build_insights(history, top=args.top, window=args.window, min_drop=args.min_drop)
    for note in report.notes:
        print(note)
    if report.status.enough:
        print(f"\nfailures new since the previous run: {len(report.new_failures)}")
        print_table(
            report.new_failures[["table_name", "rule_id", "severity", "change"]].to_dict("records")
        )
        worse = report.worsening[report.worsening["worse"]]
        print(f"\ntables getting worse: {len(worse)}")
        print_table(
            worse[["table_name", "previous_score", "latest_score", "delta"]].to_dict("records")
        )
    print(f"\nmost failing rules ({report.status.runs} run(s)):")
    print_table(
        report.failing_rules[
            ["table_name", "rule_id", "runs_failed", "runs_evaluated", "last_unexpected_count"]
        ].to_dict("records")
    )
    print(f"\ninsights: {save_insights(report, settings)}")
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--z-threshold", type=float, default=3.5, help="|robust z| above is anomalous")
    p.add_argument("--min-history", type=int, default=3, help="earlier runs before a z-score")
    p.add_argument("--max-null-change", type=float, default=5.0, help="null rate change, points")
    p.add_argument(
        "--row-rate",
        type=float,
        nargs=2,
        default=(0.5, 2.0),
        metavar=("LOW", "HIGH"),
        help="allowed ratio of a row count to the previous run's",
    )
    p.add_argument("--horizon", type=int, default=3, help="runs to forecast")
    p.add_argument("--min-runs", type=int, default=4, help="runs needed for a forecast")
    p.add_argument("--level", type=float, default=0.95, help="prediction interval (0-1)")
    p.add_argument("--no-dashboard", action="store_true", help="do not refresh the dashboard")


@command(
    "dq-model",
    "DQ matrix, anomalies in the metric history and score forecasts (saved for the dashboard)",
    _model_args,
)
def _cmd_dq_model(args: argparse.Namespace) -> int:
    from .modeling import AnomalyConfig, build_modeling, save_modeling
    from .reports import results_path, write_dashboard

    settings = settings_from_args(args)
    config = AnomalyConfig(
        z_threshold=args.z_threshold,
        min_history=args.min_history,
        max_null_change=args.max_null_change,
        row_rate_bounds=tuple(args.row_rate),
    )
    report = build_modeling(
        settings, config, horizon=args.horizon, min_runs=args.min_runs, level=args.level
    )
    for note in report.notes:
        print(note)
    latest = report.anomalies[report.anomalies["is_latest"]] if not report.anomalies.empty else None
    print(f"\nanomalies in the latest run: {0 if latest is None else len(latest)}")
    if latest is not None and len(latest):
        shown = latest[["table_name", "column_name", "metric", "reason"]].fillna(
            {"column_name": ""}
        )
        print_table(shown.to_dict("records"))
    forecast = report.forecast[report.forecast["enough"]] if not report.forecast.empty else None
    if forecast is not None and len(forecast):
        nxt = forecast[forecast["step"] == 1]
        print("\nnext-run score forecast:")
        print_table(
            [
                {
                    "table": r.table_name,
                    "forecast": f"{r.forecast:.1f}",
                    "interval": f"{r.lower:.1f}-{r.upper:.1f}",
                }
                for r in nxt.itertuples()
            ]
        )
    for name, path in save_modeling(report, settings).items():
        print(f"{name}: {path}")
    if not args.no_dashboard and results_path(settings).is_file():
        print(f"dashboard: {write_dashboard(settings)}")
    return 0


# --- profile, adjust-thresholds (profiling.py, rules.py) ----------------------------------------


def setting_type(key: str) -> Callable[[str], Any]:
    """An argparse ``type`` that checks a value as the setting ``key`` would (same message)."""
    from .settings import KEYS, _coerce

    def parse(raw: str) -> Any:
        try:
            value = int(raw) if KEYS[key].kind in ("int", "optional_int") else float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
        try:
            return _coerce(key, value, "the command line")
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = key  # argparse names the type in its messages
    return parse


def add_run_scope(p: argparse.ArgumentParser, verb: str) -> None:
    """--tables, --sample-size, --max-workers, --run-id: how much of the lake a run covers."""
    p.add_argument("--tables", nargs="+", default=None, help="only these tables (default: all)")
    p.add_argument(
        "--sample-size",
        type=setting_type("sample_size"),
        default=None,
        help=f"{verb} only the first N rows (default: all)",
    )
    p.add_argument(
        "--max-workers", type=setting_type("max_workers"), default=None, help="parallel processes"
    )
    p.add_argument("--run-id", default=None, help="run id to record (default: a new one)")


def _profile_args(p: argparse.ArgumentParser) -> None:
    add_run_scope(p, "profile")
    p.add_argument(
        "--force",
        action="store_true",
        help="also replace rule files a person edited (each is first copied to <file>.bak-<time>)",
    )
    p.add_argument(
        "--history",
        type=_drops,
        default=1,
        metavar="N",
        help="calibrate value sets, ranges and null rates from the last N Bronze drops profiled "
        "(their statistics are kept in the state database; default 1: this drop alone)",
    )


def _drops(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of drops") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} drops: give 1 or more")
    return value


@command(
    "profile",
    "profile Bronze tables on all rows and write config/data_quality/<table>_validation.yml; "
    "a file whose rules were edited by hand (a rule without meta.generated_by, or rules that no "
    "longer match generated_rules_sha256) is kept unless --force",
    _profile_args,
)
def _cmd_profile(args: argparse.Namespace) -> int:
    from .profiling import profile_tables, summary_rows

    settings = settings_from_args(args)
    run = profile_tables(
        settings,
        tables=args.tables,
        sample_size=args.sample_size,
        force=args.force,
        max_workers=args.max_workers,
        progress=sys.stderr.isatty(),
        run_id=args.run_id,
        history=args.history,
    )
    print_table(summary_rows(run), ["table", "rows", "columns", "rules", "outcome", "file"])
    print(
        f"\n{len(run.written)} written, {len(run.unchanged)} unchanged, {len(run.kept)} kept, "
        f"{len(run.errors)} error(s) "
        f"in {run.seconds:.1f}s; {len(run.foreign_keys)} references found; rules in "
        f"{settings.paths.rules}"
    )
    for table, reason in run.kept_reasons.items():
        print(f"kept {settings.paths.rule_file(table)}: {reason} (use --force to replace)")
    for backup in run.backups:
        print(f"backup: {backup}")
    for table, message in run.errors.items():
        print(f"error: {table}: {message}", file=sys.stderr)
    return 1 if run.errors else 0


def _thresholds_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        required=True,
        help="percentage (0-100) for quality_thresholds.critical and .high",
    )
    p.add_argument("--medium", type=float, default=None, help="also set .medium (percentage)")
    p.add_argument("--low", type=float, default=None, help="also set .low (percentage)")
    p.add_argument("--dry-run", action="store_true", help="print a diff per file, write nothing")
    p.add_argument("--rules-dir", default=None, help="folder of rule files (default: paths.rules)")
    p.add_argument("--tables", nargs="+", default=None, help="only these tables' files")


@command(
    "adjust-thresholds",
    "set quality_thresholds.critical and .high of rule files to --threshold (and .medium/.low "
    "only when given); only those numbers change, files already there stay byte-identical",
    _thresholds_args,
)
def _cmd_adjust_thresholds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .rules import adjust_thresholds, threshold_values

    settings = settings_from_args(args)
    values = threshold_values(args.threshold, args.medium, args.low, source="command line")
    rules_dir = Path(args.rules_dir) if args.rules_dir else settings.paths.rules
    changes = adjust_thresholds(rules_dir, values, tables=args.tables, dry_run=args.dry_run)
    changed = [c for c in changes if c.changed]
    wanted = ", ".join(f"{k}={v:g}" for k, v in values.items())
    if args.dry_run:
        for change in changed:
            print(change.diff, end="")
        print(f"dry run ({wanted}): {len(changed)} of {len(changes)} files would change")
        return 0
    for change in changed:
        print(f"changed {change.path}")
    print(f"{wanted}: {len(changed)} of {len(changes)} files changed in {rules_dir}")
    return 0


# --- validate-dq (validation.py) ---------------------------------------------------------------


def _validate_dq_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules-dir", default=None, help="folder of rule files (default: paths.rules)")
    add_run_scope(p, "validate")
    p.add_argument(
        "--data-docs",
        action="store_true",
        default=None,
        help="also write GX Data Docs of the validated tables to outputs/data_docs/index.html "
        "(default: the data_docs setting)",
    )


@command(
    "validate-dq",
    "validate Bronze tables against their rule files with Great Expectations; writes "
    "config/validation_results/validation_results.json and appends metrics to the state DB. "
    "Exit codes: 0 the run completed (tables may have FAILED), 1 a table is ERROR (unreadable "
    "file, missing rule file), 2 a configuration error",
    _validate_dq_args,
)
def _cmd_validate_dq(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .validation import validate_tables

    settings = settings_from_args(args)
    run = validate_tables(
        settings,
        tables=args.tables,
        rules_dir=Path(args.rules_dir) if args.rules_dir else None,
        sample_size=args.sample_size,
        max_workers=args.max_workers,
        progress=sys.stderr.isatty(),
        run_id=args.run_id,
        data_docs=args.data_docs,
    )

    def pct(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    rows = [
        {
            "table": table,
            "status": result.status,
            "score": pct(result.success_percentage),
            "weighted": pct(result.weighted_score),
            "failed rules": (
                result.statistics.get("unsuccessful_expectations", "") if result.statistics else ""
            ),
            "rows": result.row_count,
            "seconds": f"{result.seconds:.2f}",
            "why": _clip("; ".join(result.threshold_failures) or (result.reason or ""), 90),
        }
        for table, result in run.tables.items()
    ]
    print_table(rows)
    s = run.summary
    print(
        f"\n{s['total']} tables: {s['passed']} passed, {s['failed']} failed, {s['skipped']} "
        f"skipped, {s['errors']} error(s); pass rate {pct(s['pass_rate']) or '-'}%, average "
        f"score {pct(s['avg_quality_score']) or '-'}% (threshold {run.threshold:g}%) in "
        f"{run.seconds:.1f}s; run {run.run_id}"
    )
    print(f"results: {run.results_path}")
    if run.data_docs is not None:
        print(f"data docs: {run.data_docs}")
    for result in run.tables.values():
        if result.status == "ERROR":
            print(f"error: {result.error}", file=sys.stderr)
    return 1 if run.has_errors else 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# --- GX Expectation Suites (gx_suites.py) --------------------------------------------------------


def _export_suites_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", default=None, help="folder for <table>.json (default: outputs/gx_suites)"
    )
    p.add_argument("--rules-dir", default=None, help="folder of rule files (default: paths.rules)")
    p.add_argument("--tables", nargs="+", default=None, help="only these tables' rule files")


@command(
    "export-gx-suites",
    "write every rule file as a Great Expectations 1.x Expectation Suite JSON "
    "(gx.ExpectationSuite(**json) loads it); severity, references and table fields kept in meta",
    _export_suites_args,
)
def _cmd_export_gx_suites(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .gx_suites import export_suites

    settings = settings_from_args(args)
    rules_dir = Path(args.rules_dir) if args.rules_dir else settings.paths.rules
    out = Path(args.out) if args.out else settings.paths.outputs / "gx_suites"
    written = export_suites(rules_dir, out, tables=args.tables)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} suite(s) from {rules_dir} in {out}")
    return 0


def _import_suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a GX 1.x Expectation Suite JSON file")
    p.add_argument("--table", default=None, help="table name (default: the suite's name)")
    p.add_argument("--rules-dir", default=None, help="where to write (default: paths.rules)")
    p.add_argument("--force", action="store_true", help="replace an existing rule file")


@command(
    "import-gx-suite",
    "turn a GX 1.x Expectation Suite JSON into config/data_quality/<table>_validation.yml "
    "(checked like any rule file; an existing file is kept unless --force)",
    _import_suite_args,
)
def _cmd_import_gx_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .gx_suites import import_suite

    settings = settings_from_args(args)
    rules_dir = Path(args.rules_dir) if args.rules_dir else settings.paths.rules
    target = import_suite(Path(args.file), rules_dir, table=args.table, force=args.force)
    print(f"wrote {target}")
    return 0


# --- schema drift, Gold star schema, BI KPIs (drift.py, gold.py, bi.py) -----------------------


def _drift_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", default=None, help="only these tables (default: all)")
    p.add_argument("--sample-size", type=int, default=None, help="rows per table (default: all)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="row-count swing to flag, %% (default: settings)",
    )
    p.add_argument("--run-id", default=None, help="run id to store the snapshots under")
    p.add_argument("--no-record", action="store_true", help="compare only; do not store a snapshot")
    p.add_argument("--strict", action="store_true", help="exit 1 when any table drifted")


@command(
    "drift",
    "schema drift: Bronze against the rule files and the previous run; JSON + HTML report",
    _drift_args,
)
def _cmd_drift(args: argparse.Namespace) -> int:
    from .drift import reconcile

    settings = settings_from_args(args)
    report = reconcile(
        settings,
        run_id=args.run_id,
        tables=args.tables,
        sample_size=args.sample_size,
        row_count_threshold=args.threshold,
        record=not args.no_record,
    )
    print(f"run {report.run_id}: {report.comparison_note}")
    shown = [r for r in report.rows() if r["status"] not in ("ok", "baseline")]
    if not shown:
        print("no table drifted, disappeared or became unreadable")
    else:
        print_table(
            shown,
            [
                "table",
                "status",
                "added",
                "removed",
                "renamed",
                "type_changed",
                "row_change_percent",
                "policy",
                "ingestion_action",
            ],
        )
    s = report.summary()
    print(
        f"{s['tables']} tables: {s['tables_with_drift']} with drift, {s['tables_unreadable']} "
        f"unreadable, {s['tables_drifting_from_rules']} differ from their rule file"
    )
    for name, path in report.paths.items():
        print(f"{name}: {path}")
    drifted = s["tables_with_drift"] + s["tables_unreadable"] + s["tables_removed"]
    return 1 if args.strict and drifted else 0


@command("build-gold", "Silver -> Gold star schema (FACT_Asset_Inventory + 5 dimensions)")
def _cmd_build_gold(args: argparse.Namespace) -> int:
    from .gold import build_gold

    settings = settings_from_args(args)
    build = build_gold(settings)
    if build.skip_reason is not None or build.failure is not None:
        for note in build.notes:  # the build's notes are printed after its tables otherwise
            print(f"note: {note}")
    if build.skip_reason is not None:
        print(f"gold skipped: {build.skip_reason}")
        return 0
    build.raise_for_sources()  # Bronze rows that Silver lacks: an error naming the tables
    print_table(
        [
            {"table": t, "rows": f"{n:,}", "path": build.paths.get(t, "")}
            for t, n in build.row_counts.items()
        ]
    )
    print("join: " + ", ".join(f"{k} {v:,}" for k, v in build.join.items()))
    assert build.integrity is not None
    print_table(
        build.integrity.rows(),
        [
            "fact_column",
            "dimension",
            "matched_rows",
            "unknown_rows",
            "orphan_rows",
            "duplicate_keys",
            "passed",
        ],
    )
    for note in build.notes:
        print(f"note: {note}")
    print(f"gold {build.status} in {build.seconds:.1f}s ({settings.storage_format})")
    return 0 if build.status == "success" else 1


@command("bi-kpis", "KPIs over Gold (+ consents, non-compliances) exported as CSV and parquet")
def _cmd_bi_kpis(args: argparse.Namespace) -> int:
    from .bi import run_bi

    settings = settings_from_args(args)
    result = run_bi(settings)
    if result.skip_reason is not None:
        print(f"bi skipped: {result.skip_reason}")
        return 0
    result.raise_for_sources()  # an input lacking its rows: an error naming it
    for key, value in result.headline().items():
        if key not in ("notes", "skip_reason", "failure"):
            print(f"{key}: {value}")
    for note in result.notes:
        print(f"note: {note}")
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


# --- repair, validate-source, ingest, watermarks, history (repair/schema/ingestion.py) ---------


def _repair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", default=None, help="only these tables")
    p.add_argument(
        "--dry-run", action="store_true", help="report what would be recovered, change nothing"
    )


@command(
    "repair", "salvage unreadable Bronze parquet files (original kept in _backup/)", _repair_args
)
def _cmd_repair(args: argparse.Namespace) -> int:
    from .repair import repair_bronze

    settings = settings_from_args(args)
    run = repair_bronze(settings, tables=args.tables, dry_run=args.dry_run)
    damaged = [f for f in run.files if f.status != "ok"]
    print(f"checked {len(run.files)} Bronze file(s): {len(damaged)} unreadable")
    if damaged:
        print_table([f.as_row() for f in damaged])
        for f in damaged:
            print(f"  {f.table}: {f.detail}")
    if run.backup_dir:
        print(f"originals kept in {run.backup_dir} (repair_report.json beside them)")
    return 1 if any(f.status == "unrecoverable" for f in run.files) else 0


def _validate_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", default=None, help="only these tables")
    p.add_argument("--quick", action="store_true", help="read footers only (no row group decoded)")


@command(
    "validate-source",
    "check Bronze files: readable, rows, size, columns against the rule files (exit 1 if any "
    "table cannot be ingested)",
    _validate_source_args,
)
def _cmd_validate_source(args: argparse.Namespace) -> int:
    from .schema import validate_source

    settings = settings_from_args(args)
    checks = validate_source(settings, tables=args.tables, deep=not args.quick)
    print_table([c.as_row() for c in checks])
    blocked = [c.table for c in checks if not c.ingestible]
    drifted = [c.table for c in checks if c.comparison is not None and c.comparison.has_drift]
    print(
        f"{len(checks)} table(s): {len(checks) - len(blocked)} ingestible, {len(blocked)} blocked, "
        f"{len(drifted)} with schema drift"
    )
    if blocked:
        print(f"cannot be ingested: {', '.join(blocked)}", file=sys.stderr)
    return 1 if blocked else 0


def _ingest_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="ignore watermarks: reload every row")
    p.add_argument("--run-id", help="run id (default: a new one)")
    p.add_argument("--json", help="also write the run's results to this JSON file")


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="+", help="table names, e.g. aims_assets")
    _ingest_common(p)


def _run_ingest(args: argparse.Namespace, tables: list[str] | None) -> int:
    import json

    from .ingestion import IngestInvariantError, ingest_tables
    from .io import atomic_write_text

    settings = settings_from_args(args)
    try:
        run = ingest_tables(
            settings,
            tables=tables,
            force=True if args.force else None,
            run_id=args.run_id,
            progress=sys.stderr.isatty(),
        )
    except IngestInvariantError as exc:
        if exc.run is not None:
            print_table([r.as_row() for r in exc.run.tables.values()])
        raise
    print_table([r.as_row() for r in run.tables.values()])
    summary = run.summary
    print(
        f"run {run.run_id}: {summary['loaded']} loaded, {summary['unchanged']} unchanged, "
        f"{summary['not_promoted']} not promoted, {summary['errors']} error(s); "
        f"{summary['rows_in']:,} rows in = {summary['rows_silver']:,} to Silver + "
        f"{summary['rows_quarantined']:,} quarantined; {run.seconds:.1f}s "
        f"(validation {run.validation_seconds:.1f}s)"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(run.to_dict(), indent=2, default=str) + "\n")
    return 0 if run.ok else 1


@command("ingest", "validate and load some tables Bronze -> Silver + quarantine", _ingest_args)
def _cmd_ingest(args: argparse.Namespace) -> int:
    return _run_ingest(args, args.tables)


@command(
    "ingest-all",
    "validate and load every Bronze table (incremental; --force reloads all)",
    _ingest_common,
)
def _cmd_ingest_all(args: argparse.Namespace) -> int:
    return _run_ingest(args, None)


@command(
    "watermarks", "per table: latest LASTUPDATED, Bronze fingerprint, rows in Silver/quarantine"
)
def _cmd_watermarks(args: argparse.Namespace) -> int:
    from .ingestion import watermark_rows

    rows = watermark_rows(settings_from_args(args))
    print_table(rows)
    return 0


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=20, help="how many loads (newest first)")
    p.add_argument("--table", help="only this table")
    p.add_argument(
        "--all", action="store_true", help="include 'unchanged' rows (runs that found no work)"
    )


@command(
    "history", "the last loads: rows in / to Silver / quarantined, status, error", _history_args
)
def _cmd_history(args: argparse.Namespace) -> int:
    from .ingestion import history_rows

    settings = settings_from_args(args)
    print_table(history_rows(settings, args.limit, args.table, include_unchanged=args.all))
    return 0


def _silver_schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="table name, e.g. aims_assets")


@command(
    "silver-schema",
    "the typed Silver schema of a table and where each type comes from",
    _silver_schema_args,
)
def _cmd_silver_schema(args: argparse.Namespace) -> int:
    """origin: source (the Bronze column is typed and keeps its type), inferred (the profiler's
    rule or the spec), rule file (a rule a person wrote), override (``types:`` in the rule
    file), default (text)."""
    from .ingestion import silver_key, silver_type_rows

    settings = settings_from_args(args)
    print_table(silver_type_rows(settings, args.table))
    print(silver_key(settings, args.table))
    return 0


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="AIMS_HOME for this call (default: env or repository root)")
    common.add_argument(
        "--config", help="pipeline.yaml to read instead of <home>/config/pipeline.yaml"
    )
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting (repeatable)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m aims_nb_utils", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, handler) in _COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if configure is not None:
            configure(p)
        p.set_defaults(handler=handler)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """The platform's own warnings (skipped files, unknown variables) as one line each."""
    from .errors import BronzeNameWarning, SettingsWarning

    if issubclass(category, (BronzeNameWarning, SettingsWarning)):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Platform errors, and a disk or folder the OS refuses, print as one
    sentence and exit 2; a command run on a lake that another run holds says who holds it."""
    from .errors import os_error_as_aims

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores the caller's warning display afterwards
            warnings.showwarning = _show_warning
            return int(args.handler(args))
    except AimsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write the library did not wrap: still a sentence, not a traceback
        print(f"error: {os_error_as_aims(exc, exc.filename, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
