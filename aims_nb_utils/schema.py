"""Bronze files against their rule files: is each file readable, and are its columns the expected ones?

:func:`compare_schema` is the one column comparison of the platform: ingestion applies its drift
policy to it and ``drift.py`` reports it. It finds missing and extra columns, renames (a missing
and an extra column whose names are similar, by ``difflib`` ratio >= ``RENAME_SIMILARITY``, paired
greedily best-first; a rename is reported instead of the missing/extra pair) and reordering (the
shared columns in a different order; harmless for ingestion, which selects by name).

:func:`validate_source` is ``python -m aims_nb_utils validate-source``: per Bronze file, readable or
not (every row group is decoded unless ``quick``), rows, size, and the comparison with its rule
file. A table *cannot be ingested* when its file is unreadable or missing, when it lacks a
required column (the columns of its key, as ingestion resolves it: ``table_keys`` in the
settings, else the rule file's ``keys:``; and any column with a critical not-null rule), or when
it drifted and its drift policy is ``fail``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import AimsError
from .io import list_bronze_tables, validate_table_name
from .rules import RULE_FILE_SUFFIX, RuleFile, load_rule_file
from .settings import Settings

RENAME_SIMILARITY = 0.8


@dataclass(frozen=True)
class Rename:
    expected: str
    actual: str
    similarity: float


@dataclass(frozen=True)
class SchemaComparison:
    """Actual columns (Bronze) against expected ones (the rule file)."""

    actual: tuple[str, ...]
    expected: tuple[str, ...]
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    renamed: tuple[Rename, ...] = ()
    moved: tuple[str, ...] = ()

    @property
    def reordered(self) -> bool:
        return bool(self.moved)

    @property
    def has_drift(self) -> bool:
        """Column-set drift (what drift policies act on); reordering alone is not drift."""
        return bool(self.missing or self.extra or self.renamed)

    @property
    def missing_all(self) -> tuple[str, ...]:
        """Expected columns absent from the data, renamed ones included."""
        return self.missing + tuple(r.expected for r in self.renamed)

    @property
    def extra_all(self) -> tuple[str, ...]:
        return self.extra + tuple(r.actual for r in self.renamed)

    def describe(self) -> str:
        """One readable sentence (load history, quarantine reasons, errors)."""
        parts = []
        if self.missing:
            parts.append(f"missing {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"extra {', '.join(self.extra)}")
        if self.renamed:
            parts.append(
                "renamed "
                + ", ".join(
                    f"{r.expected} -> {r.actual} ({r.similarity:.0%})" for r in self.renamed
                )
            )
        if self.moved:
            parts.append(f"reordered ({', '.join(self.moved)} moved)")
        return "; ".join(parts) if parts else "columns match"


def compare_schema(
    actual: Sequence[str], expected: Sequence[str], similarity: float = RENAME_SIMILARITY
) -> SchemaComparison:
    """Compare the columns a file has (``actual``) with the ones its rule file expects."""
    actual_set, expected_set = set(actual), set(expected)
    missing = [c for c in expected if c not in actual_set]
    extra = [c for c in actual if c not in expected_set]
    pairs = sorted(
        (
            (difflib.SequenceMatcher(None, m.upper(), e.upper()).ratio(), i, j)
            for i, m in enumerate(missing)
            for j, e in enumerate(extra)
        ),
        reverse=True,
    )
    renamed: list[Rename] = []
    used_m: set[int] = set()
    used_e: set[int] = set()
    for ratio, i, j in pairs:
        if ratio < similarity:
            break
        if i in used_m or j in used_e:
            continue
        used_m.add(i)
        used_e.add(j)
        renamed.append(Rename(missing[i], extra[j], round(ratio, 3)))
    shared_expected = [c for c in expected if c in actual_set]
    shared_actual = [c for c in actual if c in expected_set]
    matcher = difflib.SequenceMatcher(None, shared_expected, shared_actual, autojunk=False)
    in_order = {
        c
        for block in matcher.get_matching_blocks()
        for c in shared_actual[block.b : block.b + block.size]
    }
    moved = tuple(c for c in shared_actual if c not in in_order)
    return SchemaComparison(
        actual=tuple(actual),
        expected=tuple(expected),
        missing=tuple(m for i, m in enumerate(missing) if i not in used_m),
        extra=tuple(e for j, e in enumerate(extra) if j not in used_e),
        renamed=tuple(sorted(renamed, key=lambda r: list(expected).index(r.expected))),
        moved=moved,
    )


@dataclass(frozen=True)
class ResolvedKey:
    """A table's row identity: its columns ([] = no key), where it was declared, and the key
    columns the Bronze file lacks."""

    columns: tuple[str, ...]
    source: str
    missing: tuple[str, ...] = ()


def resolve_key(
    settings: Settings, table: str, rule_file: RuleFile | None, columns: Sequence[str]
) -> ResolvedKey:
    """The row identity of a table: ``table_keys`` in the settings, else the rule file's first
    ``keys:`` entry (a person's or the profiler's), else the published spec's one id column (the
    AIMS tables; a declaration, not a guess from a name), else none (the table is a snapshot)."""
    from . import spec

    declared = settings.keys_for(table)
    if declared:
        key, source = declared[0], f"table_keys.{table} in the settings"
    elif rule_file is not None and rule_file.keys:
        key, source = rule_file.keys[0], "keys: in the rule file"
    else:
        table_spec = spec.get_table(table)
        ids = [c.name for c in table_spec.columns if c.kind == "id"] if table_spec else []
        if len(ids) == 1 and ids[0] in set(columns):
            return ResolvedKey(tuple(ids), "the published spec's id column")
        return ResolvedKey((), "none: Silver is a snapshot of Bronze, rows matched by content")
    present = set(columns)
    return ResolvedKey(tuple(key), source, tuple(c for c in key if c not in present))


def required_columns(rule_file: RuleFile, key: Sequence[str] | None = None) -> list[str]:
    """Columns a drop cannot be ingested without: the key (``key``, else the rule file's first
    ``keys:`` entry) and critical not-null columns."""
    if key is None:
        key = rule_file.keys[0] if rule_file.keys else []
    required = list(dict.fromkeys(key))
    for exp in rule_file.expectations:
        if (
            exp.expectation_type == "expect_column_values_to_not_be_null"
            and exp.severity == "critical"
            and exp.column not in required
        ):
            required.append(str(exp.column))
    return required


@dataclass
class SourceCheck:
    """One Bronze file as ``validate-source`` sees it."""

    table: str
    path: str
    readable: bool
    size_bytes: int | None = None
    rows: int | None = None
    columns: int | None = None
    row_groups: int | None = None
    problem: str | None = None
    rule_file: str | None = None
    comparison: SchemaComparison | None = None
    required_missing: tuple[str, ...] = ()
    drift_policy: str = "evolve"
    notes: list[str] = field(default_factory=list)

    @property
    def ingestible(self) -> bool:
        if not self.readable or self.required_missing:
            return False
        return not (
            self.comparison is not None
            and self.comparison.has_drift
            and self.drift_policy == "fail"
        )

    @property
    def verdict(self) -> str:
        if not self.readable:
            return "unreadable"
        if not self.ingestible:
            return "blocked"
        if self.rule_file is None:
            return "no rule file"
        if self.comparison is not None and self.comparison.has_drift:
            return f"drift ({self.drift_policy})"
        return "ok"

    def why(self) -> str:
        if not self.readable:
            return f"{self.problem} -> run `python -m aims_nb_utils repair` or re-export the file"
        reasons = []
        if self.required_missing:
            reasons.append(f"required column(s) missing: {', '.join(self.required_missing)}")
        if self.comparison is not None and self.comparison.has_drift:
            reasons.append(self.comparison.describe())
            if self.drift_policy == "fail":
                reasons.append("drift policy 'fail' stops ingestion")
        elif self.comparison is not None and self.comparison.reordered:
            reasons.append(self.comparison.describe() + " (harmless)")
        reasons += self.notes
        return "; ".join(reasons)

    def as_row(self) -> dict[str, Any]:
        size = "" if self.size_bytes is None else f"{self.size_bytes / 1e6:,.1f} MB"
        return {
            "table": self.table,
            "verdict": self.verdict,
            "rows": "" if self.rows is None else f"{self.rows:,}",
            "cols": "" if self.columns is None else self.columns,
            "size": size,
            "details": self.why(),
        }


def read_bronze_layout(path: Path, deep: bool = True) -> tuple[list[str], int, int]:
    """(columns, rows, row groups) of a Bronze file; with ``deep`` every row group is decoded so a
    corrupt page is found now, not halfway through ingestion. Raises OSError/ArrowException."""
    parquet = pq.ParquetFile(path)
    meta = parquet.metadata
    if deep:
        for i in range(meta.num_row_groups):
            parquet.read_row_group(i)
    return parquet.schema_arrow.names, int(meta.num_rows), int(meta.num_row_groups)


def check_source(settings: Settings, table: str, deep: bool = True) -> SourceCheck:
    validate_table_name(table)
    path = settings.paths.bronze_file(table)
    check = SourceCheck(
        table=table, path=str(path), readable=False, drift_policy=settings.drift_policy_for(table)
    )
    if not path.is_file():
        check.problem = "file not found"
        return check
    check.size_bytes = path.stat().st_size
    try:
        columns, rows, groups = read_bronze_layout(path, deep=deep)
    except (OSError, pa.ArrowException) as exc:
        check.problem = str(exc).splitlines()[0] or type(exc).__name__
        return check
    check.readable, check.rows, check.columns, check.row_groups = True, rows, len(columns), groups
    rule_path = settings.paths.rule_file(table)
    if not rule_path.is_file():
        check.notes.append("no rule file: run `python -m aims_nb_utils profile` before ingesting")
        return check
    try:
        rule_file = load_rule_file(rule_path)
    except AimsError as exc:
        check.notes.append(f"rule file unusable: {exc}")
        return check
    check.rule_file = str(rule_path)
    expected = rule_file.columns()
    if expected:
        check.comparison = compare_schema(columns, expected)
        key = resolve_key(settings, table, rule_file, columns)
        check.required_missing = tuple(
            c for c in required_columns(rule_file, key.columns) if c not in columns
        )
    return check


def validate_source(
    settings: Settings, tables: Sequence[str] | None = None, deep: bool = True
) -> list[SourceCheck]:
    """Check every Bronze file (and every rule file whose Bronze file is missing)."""
    if tables:
        names = [validate_table_name(t) for t in tables]
    else:
        names = list_bronze_tables(settings.paths.bronze)
        rules_dir = Path(settings.paths.rules)
        if rules_dir.is_dir():
            for path in sorted(rules_dir.glob(f"*{RULE_FILE_SUFFIX}")):
                table = path.name[: -len(RULE_FILE_SUFFIX)]
                if table not in names:
                    names.append(
                        validate_table_name(table, origin=f"rule file {path.name} names table")
                    )
    return [check_source(settings, t, deep=deep) for t in sorted(names)]
