"""The rule-file model: one shape for generated, hand-edited and legacy rule files.

A rule file is data (``config/data_quality/<table>_validation.yml``): Great Expectations'
vocabulary for the expectation types, plus ``meta`` that says how severe a broken rule is, which
DQ dimension it measures and whether rows breaking it are quarantined. The 68 legacy files load
unchanged; keys this model does not know are kept and written back as they were.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from .errors import RuleFileError
from .rule_kinds import COLUMN, KINDS, MULTICOLUMN, TABLE, bounds_problem, kinds_of_shape

SEVERITIES = ("critical", "high", "medium", "low")
SEVERITY_WEIGHTS = {"critical": 4.0, "high": 3.0, "medium": 2.0, "low": 1.0}
DEFAULT_QUALITY_THRESHOLDS = {"critical": 95.0, "high": 95.0, "medium": 80.0, "low": 50.0}
RULE_FILE_SUFFIX = "_validation.yml"

# Expectation types the platform understands, with the DQ dimension each one measures: derived
# from the one record per kind in rule_kinds.py (GX class, preparation, mask, reasons, gating).
TABLE_EXPECTATIONS = kinds_of_shape(TABLE)
COLUMN_MAP_EXPECTATIONS = kinds_of_shape(COLUMN)
# Rules over several columns of one row (a composite key): kwargs ``column_list``.
MULTICOLUMN_EXPECTATIONS = kinds_of_shape(MULTICOLUMN)
SUPPORTED_EXPECTATIONS = {k: r.dimension for k, r in KINDS.items()}
# Silver kinds a person may declare for a column (rule file ``types:``, see RuleFile.types).
TYPE_KINDS = ("integer", "decimal", "date", "boolean", "string")
DIMENSIONS = ("completeness", "uniqueness", "validity", "consistency", "integrity")

# libyaml's C loader/dumper when present (8x faster on 68 files), same safe schema either way.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# meta marker on rules the profiler wrote; rules without it were written or edited by a person.
GENERATED_MARKER = "generated_by"
GENERATOR_NAME = "aims_nb_utils.profiling"


@dataclass
class Expectation:
    """One rule: a GX expectation type, its kwargs, and the platform's meta."""

    expectation_type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    @property
    def columns(self) -> list[str]:
        """The columns the rule reads: ``column_list`` of a multicolumn rule, else [column]."""
        listed = self.kwargs.get("column_list")
        if isinstance(listed, (list, tuple)):
            return [str(c) for c in listed]
        return [self.column] if self.column else []

    @property
    def severity(self) -> str:
        return str(self.meta.get("severity", "medium")).lower()

    @property
    def reference(self) -> tuple[str, str] | None:
        """(parent table, parent column) for a cross-table rule, else None."""
        ref = self.meta.get("reference")
        if isinstance(ref, dict) and ref.get("table") and ref.get("column"):
            return str(ref["table"]), str(ref["column"])
        return None

    @property
    def dimension(self) -> str:
        if self.reference is not None:
            return "consistency"
        return str(
            self.meta.get("dimension")
            or SUPPORTED_EXPECTATIONS.get(self.expectation_type, "validity")
        )

    @property
    def is_row_level(self) -> bool:
        """A rule on one column whose unexpected rows can be listed (compound rules are row rules
        too, see :attr:`is_multicolumn`, but they have no single column)."""
        return self.expectation_type in COLUMN_MAP_EXPECTATIONS

    @property
    def is_multicolumn(self) -> bool:
        return self.expectation_type in MULTICOLUMN_EXPECTATIONS

    @property
    def quarantines_rows(self) -> bool:
        """Whether a row breaking this rule is quarantined (legacy rules: yes, they are strict)."""
        return (self.is_row_level or self.is_multicolumn) and bool(
            self.meta.get("quarantine", True)
        )

    @property
    def gate(self) -> bool:
        """A gating rule (``meta.gate: true``): when it fails, the table fails, whatever the
        shares of rules passed (see docs/architecture.md, "Verdicts")."""
        return self.meta.get("gate") is True

    @property
    def is_generated(self) -> bool:
        return self.meta.get(GENERATED_MARKER) == GENERATOR_NAME

    @property
    def rule_id(self) -> str:
        """Stable, human-readable id: '<expectation_type>(<column>)', or with every column of a
        multicolumn rule: 'expect_compound_columns_to_be_unique(a, b)'."""
        if self.is_multicolumn and self.columns:
            return f"{self.expectation_type}({', '.join(self.columns)})"
        return f"{self.expectation_type}({self.column})" if self.column else self.expectation_type

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expectation_type": self.expectation_type, "kwargs": self.kwargs}
        if self.meta:
            out["meta"] = self.meta
        return out


@dataclass
class RuleFile:
    """A table's rule file; ``extra`` keeps unknown top-level keys so saving loses nothing."""

    table: str
    expectations: list[Expectation]
    validation_name: str = ""
    description: str = ""
    generated_at: str | None = None
    data_source: dict[str, Any] = field(default_factory=dict)
    quality_thresholds: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_QUALITY_THRESHOLDS)
    )
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # Candidate keys, each a list of column names (composite keys allowed); the first is the
    # table's row identity for incremental loads. Written by profiling or by a person; legacy
    # files have none (the entry is left out when empty, so they save back unchanged).
    keys: list[list[str]] = field(default_factory=list)
    # A person's explicit Silver type per column (top-level ``types: {column: kind}``, kinds in
    # TYPE_KINDS): wins over the source type and over inference (``silver-schema`` says
    # "override"). Left out when empty.
    types: dict[str, str] = field(default_factory=dict)

    @property
    def is_empty_table(self) -> bool:
        """True when the file was profiled from an empty table and holds no learned rules."""
        return bool(self.data_source.get("empty_table")) or (
            self.data_source.get("profiled_rows") == 0 and not self.column_rules()
        )

    def column_rules(self) -> list[Expectation]:
        return [e for e in self.expectations if e.is_row_level]

    def columns(self) -> list[str]:
        """Expected columns in file order (from expect_column_to_exist)."""
        return [
            e.column
            for e in self.expectations
            if e.expectation_type == "expect_column_to_exist" and e.column
        ]

    def threshold(self, severity: str) -> float:
        return float(
            self.quality_thresholds.get(severity, DEFAULT_QUALITY_THRESHOLDS.get(severity, 0.0))
        )

    def has_manual_edits(self) -> bool:
        """Any rule without the generator's marker means a person wrote or edited the file."""
        return any(not e.is_generated for e in self.expectations) or bool(
            self.extra.get("manually_edited")
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "validation_name": self.validation_name,
            "description": self.description,
            "generated_at": self.generated_at,
            "data_source": self.data_source,
            "quality_thresholds": self.quality_thresholds,
        }
        if self.keys:
            out["keys"] = [list(key) for key in self.keys]
        if self.types:
            out["types"] = dict(self.types)
        out.update(self.extra)
        out["expectations"] = [e.to_dict() for e in self.expectations]
        return out


def table_from_rule_path(path: Path) -> str:
    name = path.name
    if not name.endswith(RULE_FILE_SUFFIX):
        raise RuleFileError(path, f"file name must end with {RULE_FILE_SUFFIX}")
    return name[: -len(RULE_FILE_SUFFIX)]


def _check_threshold(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleFileError(path, f"quality_thresholds.{key} = {value!r} is not a number")
    if 0 < value < 1:  # a fraction where a percentage belongs: the 0-1 vs 0-100 mix-up
        raise RuleFileError(
            path,
            f"quality_thresholds.{key} = {value!r} looks like a fraction",
            f"thresholds are percentages: write {value * 100:g}, not {value!r}",
        )
    if not 0 <= value <= 100:
        raise RuleFileError(path, f"quality_thresholds.{key} = {value!r} is outside 0-100")
    return float(value)


def _check_regex(path: Path, where: str, kwargs: dict[str, Any]) -> None:
    """A pattern must compile in both dialects that run it: Python's ``re`` (GX's pandas
    expectation) and RE2 (Arrow's masks for quarantine). A pattern only one accepts would give a
    verdict and a quarantine that disagree, so the whole file is refused at load time instead."""
    regex = kwargs.get("regex")
    if not isinstance(regex, str) or not regex:
        raise RuleFileError(path, f"{where}: kwargs.regex is missing or not text")
    try:
        re.compile(regex)
        pc.match_substring_regex(pa.array([""]), regex)
    except (re.error, pa.ArrowInvalid) as exc:
        raise RuleFileError(
            path,
            f"{where}: regex {regex!r} does not compile ({str(exc).splitlines()[0]})",
            hint="fix the pattern (RE2 syntax: no look-arounds or back-references) or remove the rule",
        ) from None


def parse_keys(raw: Any, where: str) -> list[list[str]]:
    """``keys`` as a list of keys, each a list of column names; one column may be written alone.

    Accepts ``o_orderkey``, ``[o_orderkey]``, ``[[l_orderkey, l_linenumber]]`` and mixes of
    those; raises ValueError naming ``where`` for anything else."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a list of keys, each a column or a list of columns")
    keys: list[list[str]] = []
    for item in raw:
        key = [item] if isinstance(item, str) else item
        if (
            not isinstance(key, list)
            or not key
            or not all(isinstance(c, str) and c for c in key)
            or len(set(key)) != len(key)
        ):
            raise ValueError(
                f"{where}: {item!r} is not a column name or a list of distinct column names"
            )
        if key not in keys:
            keys.append(list(key))
    return keys


def parse_rule_file(raw: Any, path: Path, table: str | None = None) -> RuleFile:
    """Validate a loaded YAML document and build the model; errors name the file and the rule."""
    if not isinstance(raw, dict):
        raise RuleFileError(path, "top level must be a mapping with an 'expectations' list")
    raw = copy.deepcopy(raw)
    items = raw.pop("expectations", None)
    if not isinstance(items, list):
        raise RuleFileError(path, "'expectations' is missing or not a list")
    expectations: list[Expectation] = []
    for index, item in enumerate(items):
        where = f"expectations[{index}]"
        if not isinstance(item, dict) or "expectation_type" not in item:
            raise RuleFileError(path, f"{where} has no expectation_type")
        etype = item["expectation_type"]
        if etype not in SUPPORTED_EXPECTATIONS:
            raise RuleFileError(
                path,
                f"{where}: unsupported expectation_type {etype!r}",
                hint=f"supported: {', '.join(sorted(SUPPORTED_EXPECTATIONS))}",
            )
        kwargs = item.get("kwargs") or {}
        meta = item.get("meta") or {}
        if not isinstance(kwargs, dict) or not isinstance(meta, dict):
            raise RuleFileError(path, f"{where} ({etype}): kwargs and meta must be mappings")
        if etype in COLUMN_MAP_EXPECTATIONS or etype == "expect_column_to_exist":
            if not kwargs.get("column"):
                raise RuleFileError(path, f"{where} ({etype}) has no kwargs.column")
        if etype in MULTICOLUMN_EXPECTATIONS:
            listed = kwargs.get("column_list")
            if (
                not isinstance(listed, list)
                or not listed
                or not all(isinstance(c, str) and c for c in listed)
                or len(set(listed)) != len(listed)
            ):
                raise RuleFileError(
                    path,
                    f"{where} ({etype}): kwargs.column_list must be a list of distinct column names",
                    hint="e.g. column_list: [l_orderkey, l_linenumber]",
                )
        severity = str(meta.get("severity", "medium")).lower()
        if severity not in SEVERITIES:
            raise RuleFileError(
                path,
                f"{where} ({etype}, column {kwargs.get('column')}): unknown severity {severity!r}",
                hint=f"use one of {', '.join(SEVERITIES)}",
            )
        if "mostly" in kwargs:
            mostly = kwargs["mostly"]
            if (
                isinstance(mostly, bool)
                or not isinstance(mostly, (int, float))
                or not 0 <= mostly <= 1
            ):
                raise RuleFileError(
                    path,
                    f"{where} ({etype}, column {kwargs.get('column')}): mostly={mostly!r} must be a fraction 0-1",
                    hint="GX's mostly is a fraction (0.95); thresholds elsewhere are percentages",
                )
        if etype == "expect_column_values_to_match_regex":
            _check_regex(path, f"{where} ({etype}, column {kwargs.get('column')})", kwargs)
        rule = f"{where} ({etype}" + (
            f", column {kwargs['column']})" if kwargs.get("column") else ")"
        )
        if "gate" in meta and not isinstance(meta["gate"], bool):
            raise RuleFileError(
                path,
                f"{rule}: meta.gate={meta['gate']!r} is not true or false",
                hint="meta.gate: true makes the table fail whenever this rule fails",
            )
        problem = bounds_problem(kwargs) if KINDS[etype].has_bounds else None
        if problem:
            raise RuleFileError(
                path, f"{rule}: {problem}", hint="swap the bounds, or remove the rule"
            )
        expectations.append(Expectation(etype, kwargs, meta))
    thresholds_raw = raw.pop("quality_thresholds", None) or dict(DEFAULT_QUALITY_THRESHOLDS)
    if not isinstance(thresholds_raw, dict):
        raise RuleFileError(path, "quality_thresholds must be a mapping of severity -> percentage")
    thresholds = {str(k): _check_threshold(path, str(k), v) for k, v in thresholds_raw.items()}
    data_source = raw.pop("data_source", None) or {}
    try:
        keys = parse_keys(raw.pop("keys", None), "keys")
    except ValueError as exc:
        raise RuleFileError(
            path, str(exc), hint="write keys: [[col_a, col_b], [col_c]] (first = row identity)"
        ) from None
    types_raw = raw.pop("types", None) or {}
    if not isinstance(types_raw, dict) or not all(
        isinstance(c, str) and v in TYPE_KINDS for c, v in types_raw.items()
    ):
        raise RuleFileError(
            path,
            f"types must map column -> one of {', '.join(TYPE_KINDS)}, not {types_raw!r}",
            hint="e.g. types: {o_orderdate: date, o_comment: string}",
        )
    return RuleFile(
        table=table or table_from_rule_path(path),
        expectations=expectations,
        validation_name=str(raw.pop("validation_name", "") or ""),
        description=str(raw.pop("description", "") or ""),
        generated_at=raw.pop("generated_at", None),
        data_source=data_source if isinstance(data_source, dict) else {},
        quality_thresholds=thresholds,
        extra=raw,
        path=path,
        keys=keys,
        types={str(c): str(v) for c, v in types_raw.items()},
    )


def load_rule_file(path: str | Path) -> RuleFile:
    path = Path(path)
    if not path.is_file():
        raise RuleFileError(
            path, "does not exist", hint="run `python -m aims_nb_utils profile` to generate it"
        )
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise RuleFileError(path, f"is not valid YAML: {exc}") from None
    return parse_rule_file(raw, path)


def load_rules_dir(rules_dir: str | Path, tables: list[str] | None = None) -> dict[str, RuleFile]:
    """All rule files of a folder keyed by table (optionally only some tables)."""
    rules_dir = Path(rules_dir)
    found: dict[str, RuleFile] = {}
    for path in sorted(rules_dir.glob(f"*{RULE_FILE_SUFFIX}")):
        table = table_from_rule_path(path)
        if tables is None or table in tables:
            found[table] = load_rule_file(path)
    return found


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block-style YAML (the legacy files' layout) with the safe representer only (libyaml)."""


def dump_rule_file(rule_file: RuleFile) -> str:
    return yaml.dump(
        rule_file.to_dict(),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
    )


def save_rule_file(rule_file: RuleFile, path: str | Path | None = None) -> Path:
    """Write atomically (temp file then rename) so a crash never leaves half a rule file."""
    from .io import atomic_write_text

    target = Path(path or rule_file.path or "")
    if not str(target):
        raise RuleFileError("<unsaved>", "no path to save to")
    atomic_write_text(target, dump_rule_file(rule_file))
    rule_file.path = target
    return target


_THRESHOLD_LINE = re.compile(
    r"^(?P<indent>\s+)(?P<key>critical|high|medium|low):\s*(?P<value>[-+0-9.eE]+)\s*$"
)


def adjust_thresholds_text(text: str, new_values: dict[str, float]) -> str:
    """Rewrite only the numbers under ``quality_thresholds:``; every other byte stays as it was.

    Keys absent from the block are inserted right after its header (or a block is appended), so
    a file that already has the wanted values comes back byte-identical.
    """
    lines = text.splitlines(keepends=True)
    header_index: int | None = None
    indent = "  "
    seen: set[str] = set()
    for index, line in enumerate(lines):
        stripped = line.rstrip("\r\n")
        if header_index is None:
            if re.match(r"^quality_thresholds:\s*$", stripped):
                header_index = index
            continue
        match = _THRESHOLD_LINE.match(stripped)
        if match:
            key = match.group("key")
            seen.add(key)
            indent = match.group("indent")
            if key in new_values and float(match.group("value")) != float(new_values[key]):
                lines[index] = f"{indent}{key}: {float(new_values[key])!r}{line[len(stripped):]}"
            continue
        if stripped and not stripped.startswith((" ", "\t")):
            break
    missing = [k for k in new_values if k not in seen]
    if header_index is None:
        body = "".join(lines)
        if body and not body.endswith("\n"):
            body += "\n"
        return (
            body
            + "quality_thresholds:\n"
            + "".join(f"  {k}: {float(new_values[k])!r}\n" for k in missing)
        )
    insert = [f"{indent}{k}: {float(new_values[k])!r}\n" for k in missing]
    lines[header_index + 1 : header_index + 1] = insert
    return "".join(lines)


# Text patterns for type conformance of values stored as text (Bronze keeps every column as text).
# Profiling writes them as expect_column_values_to_match_regex with meta.value_type; typing into
# Silver accepts exactly what these accept, so a value that passes here never fails to cast.
# [0-9] rather than \d: the same in RE2 (Arrow), ASCII digits only in Python's re too, and pandas
# scans a whole column for non-ASCII text before every \d regex GX runs (pyarrow vs re fallback).
TYPE_PATTERNS: dict[str, str] = {
    "integer": r"^-?[0-9]+(\.0+)?$",
    "decimal": r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$",
    # a time may end in a UTC offset ('Z', '+02:00', '-0500', '+02'), optionally after a space
    "date": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?( ?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?))?)?$",
    "boolean": r"^(0|-1|1|0\.0|-1\.0|1\.0|Yes|No|YES|NO|yes|no|True|False|true|false)$",
}
TRUE_STRINGS = frozenset({"-1", "1", "-1.0", "1.0", "Yes", "YES", "yes", "True", "true"})
FALSE_STRINGS = frozenset({"0", "0.0", "No", "NO", "no", "False", "false"})


# --- threshold management -------------------------------------------------------------------------
# `adjust-thresholds` sets quality_thresholds.critical and .high to one percentage, and .medium /
# .low only when asked. Only those numbers change in each file (rules.adjust_thresholds_text), so
# comments, order and hand edits survive and a file already at the wanted values stays
# byte-identical. The profiler's generated_rules_sha256 covers the expectations only, so adjusted
# thresholds never make a generated file look hand-edited, and re-profiling carries them over.


@dataclass
class ThresholdChange:
    """One rule file's thresholds before and after; ``diff`` is empty when nothing changed."""

    table: str
    path: Path
    before: dict[str, float]
    after: dict[str, float]
    diff: str

    @property
    def changed(self) -> bool:
        return bool(self.diff)


def threshold_values(
    threshold: float,
    medium: float | None = None,
    low: float | None = None,
    source: str = "argument",
) -> dict[str, float]:
    """The quality_thresholds keys to set: critical and high = ``threshold``; medium/low if given.

    Values are percentages 0-100; a value between 0 and 1 is refused as a likely fraction.
    """
    from .errors import SettingsError

    wanted = {"critical": threshold, "high": threshold, "medium": medium, "low": low}
    values: dict[str, float] = {}
    for key, value in wanted.items():
        if value is None:
            continue
        name = "threshold" if key in ("critical", "high") else key
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise SettingsError(name, value, source, "expected a number (a percentage 0-100)")
        if 0 < value < 1:
            raise SettingsError(
                name,
                value,
                source,
                "looks like a fraction; thresholds are percentages 0-100",
                hint=f"write {value * 100:g}, not {value:g}",
            )
        if not 0 <= value <= 100:
            raise SettingsError(name, value, source, "must be a percentage between 0 and 100")
        values[key] = float(value)
    return values


def adjust_thresholds(
    rules_dir: str | Path,
    values: dict[str, float],
    tables: list[str] | None = None,
    dry_run: bool = False,
) -> list[ThresholdChange]:
    """Set ``values`` in the quality_thresholds of every rule file (or of ``tables``).

    Every file is read and its new text checked as a rule file before any is written, so a bad
    file stops the run with nothing half-done. ``dry_run`` writes nothing; the returned changes
    carry a unified diff per file either way.
    """
    import difflib

    from .io import atomic_write_text

    rules_dir = Path(rules_dir)
    if tables:
        paths = [rules_dir / f"{table}{RULE_FILE_SUFFIX}" for table in tables]
        for path in paths:
            if not path.is_file():
                raise RuleFileError(
                    path,
                    "does not exist",
                    hint="run `python -m aims_nb_utils profile --tables ...` first",
                )
    else:
        paths = sorted(rules_dir.glob(f"*{RULE_FILE_SUFFIX}"))
        if not paths:
            raise RuleFileError(
                rules_dir,
                f"holds no *{RULE_FILE_SUFFIX} files",
                hint="run `python -m aims_nb_utils profile` first, or pass --rules-dir",
            )
    planned: list[tuple[ThresholdChange, str]] = []
    for path in paths:
        text = path.read_text()
        before = load_rule_file(path).quality_thresholds
        new_text = adjust_thresholds_text(text, values)
        after = parse_rule_file(yaml.load(new_text, Loader=_Loader), path).quality_thresholds
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (adjusted)",
            )
        )
        planned.append(
            (ThresholdChange(table_from_rule_path(path), path, before, after, diff), new_text)
        )
    if not dry_run:
        for change, new_text in planned:
            if change.changed:
                atomic_write_text(change.path, new_text)
    return [change for change, _ in planned]
