"""Verdicts on Spark: every rule judged by Great Expectations on Spark DataFrames.

Discovery, rule-file loading, scoring and the results file are ``validation``'s own functions
(``_prepare_tables``, ``_assemble``, ``finish_run``), and the GX expectations are the ones the
arrow engine builds (``validation._gx_kwargs``, ``_run_gx``); only the batches differ: GX 1.x runs
each table's Checkpoint on Spark DataFrames (a Spark data source, :mod:`.gx`), so every metric is
computed on the executors. Per table:

1. table-level rules (row count, column count, columns exist, a rule naming a missing column) on
   the Bronze DataFrame as read: GX counts its rows and reads its schema;
2. row-level and compound rules on the prepared frame (:func:`.gx.prepared_frame`: each column in
   the form the rule reads, as ``checks`` prepares it for the arrow engine; referential rules as
   a join with the parent's distinct keys), counts only: GX resolves every count of a frame in
   one Spark aggregation (uniqueness adds a window job per rule), and the values no one asked
   for are not queried (``gx_compat.spark_values_on_demand``);
3. the rules that failed with unexpected values run again asking for GX's partial unexpected
   list (one ``limit`` job per such rule), so a failure in the results file carries its examples
   as on the arrow engine (a rule that passed by its ``mostly`` keeps an empty list).

The rows the verdict's ``max_quarantine_percent`` counts (rows breaking any quarantining rule)
and each column's share of nulls are not GX results: they are counted with the masks quarantine
uses (:mod:`.masks`) in one aggregation over the same prepared frame. That frame is computed once
per table and held by the executors while GX reads it (:func:`_materialize`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from ... import gx_compat, state
from ... import validation as v
from ...errors import AimsError
from . import gx

if TYPE_CHECKING:
    from ...settings import Settings


def _materialize(frame: Any) -> Any:
    """The prepared frame computed once (joins, windows, parsing) and held by the executors
    (memory, then disk) as a DataFrame whose plan is only that data.

    GX plans a query per metric (a ``limit`` per rule for its unexpected values, even of 0 rows):
    on a cached frame Spark matches each plan against the cache, on a checkpointed one there is
    nothing to analyse, a third of the time per query. :func:`_release` frees it."""
    return frame.localCheckpoint(eager=True)


def _release(frame: Any) -> None:
    """Drop a frame of :func:`_materialize` from the executors now (Spark's cleaner would do it
    only when the JVM collects the DataFrame)."""
    try:
        frame._jdf.queryExecution().logical().rdd().unpersist(False)
    except Exception:  # noqa: BLE001 - another Spark's plan shape: the cleaner frees it later
        pass


def _references(
    settings: Settings, rules: list[tuple[int, Any]], known: dict[tuple[str, str], Any]
) -> dict[int, Any]:
    """Rule index -> the parent's distinct keys (a lazy DataFrame), or the error reading it;
    ``known`` keeps each parent column's for the run (Spark reads a file's schema once)."""
    from . import SparkEngine

    out: dict[int, Any] = {}
    for index, rule in rules:
        if rule.is_row_level and rule.reference is not None and "value_set" not in rule.kwargs:
            if rule.reference not in known:
                try:
                    known[rule.reference] = SparkEngine().references(settings, [rule])[rule.rule_id]
                except AimsError as exc:
                    known[rule.reference] = exc
            out[index] = known[rule.reference]
    return out


def _row_results(
    settings: Settings,
    layout: Any,
    raw: Any,
    part: Any,
    items: list,
    file_name: str,
    parents: dict[tuple[str, str], Any],
) -> None:
    """GX on the prepared frame for the row-level and compound rules, and the one aggregation
    counting the rows quarantine would take and each column's present values."""
    if not items:
        return
    references = _references(settings, items, parents)
    prepared = gx.prepared_frame(settings, layout.table, raw, items, references)
    rules = dict(items)
    for index, error in prepared.failed.items():
        part.results[index] = v._failed(rules[index], index, error)
    frame = _materialize(prepared.frame)
    try:
        aggregates = [F.count(F.lit(1)).alias("rows")]
        for flag in prepared.present.values():
            aggregates.append(F.sum(F.col(flag).cast("long")).alias(flag))
        if prepared.quarantining:
            any_flag = F.greatest(*[F.col(f) for f in prepared.quarantining], F.lit(False))
            aggregates.append(F.sum(any_flag.cast("long")).alias("quarantined"))
        row = frame.agg(*aggregates).collect()[0]
        rows = int(row["rows"])
        part.quarantined_rows = int(row["quarantined"] or 0) if prepared.quarantining else 0
        for column, flag in prepared.present.items():
            part.null_percent[column] = 100.0 * (rows - int(row[flag] or 0)) / rows if rows else 0.0
        if prepared.items:
            with gx_compat.spark_values_on_demand():  # counts: no query for 0 values per rule
                v._run_gx(gx.runner(), layout.table, frame, prepared.items, file_name, part.results)
        failing = [
            item
            for item in prepared.items
            if not part.results[item[0]].success
            and (part.results[item[0]].unexpected_count or 0) > 0
            and not part.results[item[0]].error
        ]
        if failing:
            _add_samples(layout.table, frame, failing, file_name, part)
    finally:
        _release(frame)


def _add_samples(table: str, frame: Any, failing: list, file_name: str, part: Any) -> None:
    """GX's partial unexpected list of each failed rule (its counts stay those of the first run:
    the same data, the same GX)."""
    samples: dict[int, Any] = {}
    v._run_gx(gx.runner(samples=True), table, frame, failing, file_name, samples)
    for index, sample in samples.items():
        part.results[index].partial_unexpected_list = sample.partial_unexpected_list


def _validate_table(
    settings: Settings, layout: Any, rule_file: Any, parents: dict[tuple[str, str], Any]
) -> Any:
    from . import read_bronze

    started = time.perf_counter()
    part = v._Part(layout.table)
    try:
        present = set(layout.columns)
        file_name = layout.path.name if layout.path is not None else layout.table
        row_items, table_items, exists = [], [], []
        for index, rule in enumerate(rule_file.expectations):
            if rule.is_row_level and rule.column in present:
                row_items.append((index, rule))
            elif rule.expectation_type == "expect_column_to_exist" and set(rule.kwargs) == {
                "column"
            }:
                exists.append((index, rule))
            elif rule.is_multicolumn:
                missing = [c for c in rule.columns if c not in present]
                if missing:
                    part.results[index] = v._failed(
                        rule, index, f"column(s) {', '.join(missing)} not in {file_name}"
                    )
                else:
                    row_items.append((index, rule))
            else:
                try:  # a referential rule here names a missing column: its parent is not read
                    gx_rule, kwargs = v._gx_kwargs(settings, rule, None, None, "unread")
                except AimsError as exc:
                    part.results[index] = v._failed(rule, index, str(exc))
                    continue
                table_items.append((index, rule, gx_rule, kwargs))
        if exists:
            table_items.append(v._exists_probe([str(rule.column) for _, rule in exists]))
        raw = read_bronze(settings, layout.table)
        if table_items:
            v._run_gx(gx.runner(), layout.table, raw, table_items, file_name, part.results, exists)
        _row_results(settings, layout, raw, part, row_items, file_name, parents)
    except AimsError as exc:
        part.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one table's crash must not stop the others
        part.error = (
            f"table {layout.table}: validation failed with {type(exc).__name__}: {exc} -> "
            "report it with the rule file; the other tables were validated"
        )
    part.seconds = time.perf_counter() - started
    return v._assemble(settings, layout, rule_file, [part], float(settings.dq_threshold))


def validate_tables(
    settings: Settings,
    tables: list[str] | None = None,
    rules_dir: Path | None = None,
    sample_size: int | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    run_id: str | None = None,
    write: bool = True,
    data_docs: bool | None = None,
) -> Any:
    """``validation.validate_tables`` on Spark (same arguments, same ValidationRun)."""
    del max_workers, progress  # Spark schedules the work; tables run one after another
    started = time.perf_counter()
    run_id = run_id or state.new_run_id()
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rules_dir = Path(rules_dir) if rules_dir is not None else settings.paths.rules
    sample_size = settings.sample_size if sample_size is None else sample_size
    if sample_size is not None:
        raise v.ValidationError(
            f"engine spark validates every row; sample_size={sample_size} is not supported",
            hint="unset sample_size, or run this validation with engine: arrow",
        )
    names, rule_paths = v._discover(settings, rules_dir, tables)
    results, jobs = v._prepare_tables(settings, names, rule_paths, rules_dir, None)
    parents: dict[tuple[str, str], Any] = {}  # parent column -> its keys, for the run
    for layout, rule_file in jobs:
        results[layout.table] = _validate_table(settings, layout, rule_file, parents)
    rule_files = {layout.table: rule_file for layout, rule_file in jobs}
    return v.finish_run(
        settings, run_id, timestamp, started, results, names, rule_files, write, data_docs
    )
