"""The spark engine: profiling, validation and ingestion on Spark DataFrames.

Selected with ``engine: spark`` (or ``auto`` in a Spark notebook). Tables are read with
``spark.read.parquet`` from the same Bronze files. Profiling counts each column's distinct values
on Spark and hands the counts to the shared profiler (:mod:`.profile`), so the rule files are the
arrow engine's; verdicts are Great Expectations' run on Spark DataFrames (:mod:`.validate`,
:mod:`.gx`); the masks, casts and reasons are Spark column expressions (:mod:`.masks`); the row
fingerprint is the arrow engine's own, computed by the executors; Silver and quarantine are
written by Spark (:mod:`.ingest`) and published with the platform's atomic unit
(``storage.publish_unit``), so state, watermarks, history, results and reports are the arrow
engine's. What runs where is listed in docs/architecture.md ("Engines").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ... import checks
from ...errors import BronzeReadError
from ...io import validate_table_name

if TYPE_CHECKING:
    from ...ingestion import TableIngest, TablePlan, Verdict
    from ...profiling import ProfileRun
    from ...rules import Expectation
    from ...settings import Settings
    from ...validation import ValidationRun


def read_bronze(settings: Settings, table: str) -> Any:
    """A Bronze table as a Spark DataFrame (a clear error naming the file when it is missing)."""
    from .session import get_session

    validate_table_name(table)
    path = settings.paths.bronze_file(table)
    if not path.is_file():
        raise BronzeReadError(table, path, "file not found")
    return get_session().read.parquet(str(path))


class SparkEngine:
    """PySpark engine (see the module docstring)."""

    name = "spark"
    tables_in_threads = True

    def describe(self) -> dict[str, Any]:
        from .session import describe, get_session

        return describe(get_session())

    def read_columns(self, settings: Settings, table: str) -> list[tuple[str, str]]:
        df = read_bronze(settings, table)
        return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]

    def profile_tables(self, settings: Settings, **options: Any) -> ProfileRun:
        from .profile import profile_tables

        return profile_tables(settings, **options)

    def validate_tables(self, settings: Settings, **options: Any) -> ValidationRun:
        from .validate import validate_tables

        return validate_tables(settings, **options)

    def references(self, settings: Settings, expectations: Sequence[Expectation]) -> dict:
        """rule id -> the parent's distinct keys (a DataFrame) for each referential rule."""
        from .masks import reference_keys

        out = {}
        for exp in expectations:
            if exp.reference is not None and "value_set" not in exp.kwargs:
                parent, column = exp.reference
                frame = read_bronze(settings, parent)
                if column not in frame.columns:
                    raise BronzeReadError(
                        parent,
                        settings.paths.bronze_file(parent),
                        f"has no column {column!r} (parent column of a referential rule)",
                    )
                out[exp.rule_id] = reference_keys(frame, column, settings.null_placeholders)
        return out

    def unexpected_counts(
        self, settings: Settings, table: str, expectations: Sequence[Expectation]
    ) -> dict[str, int]:
        from .masks import unexpected_counts

        rows = [e for e in expectations if e.is_row_level or e.is_multicolumn]
        kinds = {e.rule_id: checks.column_kind(table, e.column, e) for e in rows}
        return unexpected_counts(
            read_bronze(settings, table),
            rows,
            list(settings.null_placeholders),
            kinds,
            self.references(settings, rows),
        )

    def ingest_table(
        self, settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
    ) -> TableIngest:
        from .ingest import ingest_table

        return ingest_table(settings, plan, verdict, run_id)

    def parallel_tables(self, settings: Settings, tables: int) -> int:
        return max(1, min(int(settings.max_workers), tables))
