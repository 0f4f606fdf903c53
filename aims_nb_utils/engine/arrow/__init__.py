"""The arrow engine: pyarrow, pandas and DuckDB on one machine (the platform's original code).

Nothing is reimplemented here: each step delegates to the module that has always done it
(``profiling``, ``validation``, ``checks``/``quarantine``, ``ingestion``), so the arrow engine is
exactly today's behaviour and speed. The entry points dispatch to another engine only when the
settings resolve to one (see :func:`aims_nb_utils.engine.resolve_engine_name`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from ... import checks

if TYPE_CHECKING:
    from ...ingestion import TableIngest, TablePlan, Verdict
    from ...profiling import ProfileRun
    from ...rules import Expectation
    from ...settings import Settings
    from ...validation import ValidationRun


class ArrowEngine:
    """Single-machine engine (see the module docstring)."""

    name = "arrow"
    tables_in_threads = False

    def describe(self) -> dict[str, Any]:
        import pyarrow

        return {"engine": self.name, "pyarrow": pyarrow.__version__}

    def read_columns(self, settings: Settings, table: str) -> list[tuple[str, str]]:
        schema = pq.read_schema(settings.paths.bronze_file(table))
        return [(f.name, str(f.type)) for f in schema]

    def profile_tables(self, settings: Settings, **options: Any) -> ProfileRun:
        from ...profiling import profile_tables

        return profile_tables(settings, **options)

    def validate_tables(self, settings: Settings, **options: Any) -> ValidationRun:
        from ...validation import validate_tables

        return validate_tables(settings, **options)

    def unexpected_counts(
        self, settings: Settings, table: str, expectations: Sequence[Expectation]
    ) -> dict[str, int]:
        rows = [e for e in expectations if e.is_row_level or e.is_multicolumn]
        columns = sorted({c for e in rows for c in e.columns})
        data = pq.read_table(settings.paths.bronze_file(table), columns=columns)
        placeholders = list(settings.null_placeholders)
        counts: dict[str, int] = {}
        for exp in rows:
            reference = (
                checks.reference_values(settings, *exp.reference)
                if exp.reference is not None and "value_set" not in exp.kwargs
                else None
            )
            kind = checks.column_kind(table, exp.column, exp)
            mask = checks.unexpected_mask(data, exp, placeholders, reference, kind)
            counts[exp.rule_id] = int(mask.sum())
        return counts

    def ingest_table(
        self, settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
    ) -> TableIngest:
        from ...ingestion import _ingest_table

        return _ingest_table(settings, plan, verdict, run_id)

    def parallel_tables(self, settings: Settings, tables: int) -> int:
        return max(1, min(int(settings.max_workers), tables))
