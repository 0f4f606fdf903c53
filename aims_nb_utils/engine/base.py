"""What a data engine does: the one contract the arrow and spark engines implement.

Rules, verdicts, the results file, state, reports, notebooks and orchestration never know which
engine ran: they call the entry points (``profiling.profile_tables``,
``validation.validate_tables``, ``ingestion.ingest_tables``), which ask
:func:`aims_nb_utils.engine.get_engine` for the engine the settings name and hand the work to it.
Each engine returns the platform's own result objects (``ProfileRun``, ``ValidationRun``,
``TableIngest``) so everything downstream is shared. Layout (after pandera's
``backends/<engine>/``): ``engine/base.py`` (this contract), ``engine/arrow/`` (pyarrow, pandas
and DuckDB on one machine: today's code, unchanged), ``engine/spark/`` (PySpark DataFrames).

The steps an engine owns, in the order a run needs them:

* ``read_columns``: a Bronze table's column names and types, without reading rows;
* ``profile_tables``: one-pass profile statistics and the rule files they give;
* ``rule_masks``: a rule's prepared column and row mask (the rows GX counts as unexpected);
* ``validate_tables``: GX verdicts per table, written to the results file and metric history;
* ``ingest_table``: cast to Silver types, row fingerprints, Silver and quarantine staged for the
  atomic publish (``storage.publish_unit``) with watermarks and history recorded as today;
* ``parallel_tables``: how many tables run side by side, in worker processes when
  ``tables_in_threads`` is false (the arrow engine: pyarrow and DuckDB work in the worker), in
  driver threads when it is true (Spark: a thread only submits jobs, the JVM runs them, and the
  next table's jobs fill the cores while one table waits on scheduling or a one-task write).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..ingestion import TableIngest, TablePlan, Verdict
    from ..profiling import ProfileRun
    from ..settings import Settings
    from ..validation import ValidationRun


@runtime_checkable
class Engine(Protocol):
    """A data engine (see the module docstring for what each step means)."""

    name: str
    tables_in_threads: bool

    def describe(self) -> dict[str, Any]:
        """What notebook 00's environment cell shows: the engine and, for Spark, master and
        executors."""
        ...

    def read_columns(self, settings: Settings, table: str) -> list[tuple[str, str]]:
        """(column, type as text) of a Bronze table, from its schema alone."""
        ...

    def profile_tables(self, settings: Settings, **options: Any) -> ProfileRun:
        """Profile Bronze tables and write their rule files (``profiling.profile_tables``)."""
        ...

    def validate_tables(self, settings: Settings, **options: Any) -> ValidationRun:
        """Verdicts for Bronze tables (``validation.validate_tables``' arguments)."""
        ...

    def unexpected_counts(
        self, settings: Settings, table: str, expectations: Sequence[Any]
    ) -> dict[str, int]:
        """rule id -> rows breaking it (row-level rules only), from the engine's own masks."""
        ...

    def ingest_table(
        self, settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
    ) -> TableIngest:
        """Load one table: Silver and quarantine staged, state fields filled, nothing published."""
        ...

    def parallel_tables(self, settings: Settings, tables: int) -> int:
        """Tables processed side by side."""
        ...
