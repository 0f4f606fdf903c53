"""`python -m aims_nb_utils <command>`: the seed's commands over the same functions notebooks use.

Each command resolves settings once (defaults <- pipeline.yaml <- AIMS_* <- --set/--home), calls
one library function and prints a readable summary. Errors of the platform (AimsError) print as one
sentence naming what to fix and exit 2; a failed check exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from .errors import AimsError, SettingsError
from .settings import Settings, load_settings


Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[str, Configure | None, Handler]] = {}


def command(name: str, help_text: str, configure: Configure | None = None) -> Callable[[Handler], Handler]:
    """Register a subcommand; one section of this module per concern keeps the CLI in one place."""

    def decorate(handler: Handler) -> Handler:
        _COMMANDS[name] = (help_text, configure, handler)
        return handler

    return decorate


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SettingsError(item, item, "--set", "expected key=value", hint="e.g. --set dq_threshold=90")
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
    print(f"defects injected: {defects:,} " + (str(dict(report.defects)) if defects else "(clean lake)"))
    if report.corrupted_table:
        print(f"corrupted on purpose: {report.corrupted_table} (repair it with `make repair`)")
    return 0


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="AIMS_HOME for this call (default: env or repository root)")
    common.add_argument("--config", help="pipeline.yaml to read instead of <home>/config/pipeline.yaml")
    common.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)"
    )
    parser = argparse.ArgumentParser(prog="python -m aims_nb_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, handler) in _COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if configure is not None:
            configure(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except AimsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
