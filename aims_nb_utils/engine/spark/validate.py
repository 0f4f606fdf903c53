"""Verdicts on Spark: the arrow engine's validation flow with the row rules counted by Spark.

Discovery, rule-file loading, the table-level rules, scoring and the results file are
``validation``'s own functions. Table-level rules (row count, column count, columns exist) are
judged by Great Expectations exactly as the arrow engine does it, on a frame that holds the
table's columns as zero-byte null arrays (no row is read). Row-level and compound rules are
counted on the executors in one aggregation per table (:mod:`.masks`: the same masks as
``checks.unexpected_mask``, which are GX's unexpected rows), and GX's ``mostly`` rule turns a
count into success: ``(considered - unexpected) / considered >= mostly``, vacuously true when no
row is considered (a rule other than not-null considers the present values only).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from ... import checks, state
from ... import validation as v
from ...errors import AimsError
from . import masks

if TYPE_CHECKING:
    from ...settings import Settings


def _success(considered: int, unexpected: int, mostly: float) -> bool:
    if considered == 0:
        return True
    return (considered - unexpected) / considered >= mostly


def _row_results(settings: Settings, layout: Any, rule_file: Any, part: Any, items: list) -> None:
    """Count every row-level and compound rule of one table on Spark, in one aggregation."""
    from . import SparkEngine, read_bronze

    if not items:
        return
    placeholders = list(settings.null_placeholders)
    df = read_bronze(settings, layout.table)
    dtypes = {f.name: f.dataType for f in df.schema.fields}
    references = {}
    try:
        references = SparkEngine().references(settings, [rule for _, rule in items])
    except AimsError as exc:
        for index, rule in items:
            if rule.reference is not None:
                part.results[index] = v._failed(rule, index, str(exc))
        items = [(i, r) for i, r in items if i not in part.results]
    aggregates = [F.count(F.lit(1)).alias("rows")]
    counted = []
    columns = sorted({r.column for _, r in items if r.is_row_level})
    for c, column in enumerate(columns):
        dtype = dtypes[column]
        value = masks.normalized(F.col(f"`{column}`"), dtype, placeholders)
        aggregates.append(F.count(value).alias(f"p{c}"))
    for index, rule in items:
        kind = checks.column_kind(layout.table, rule.column, rule)
        try:
            df, mask = masks.expectation_mask(
                df, rule, placeholders, kind, references.get(rule.rule_id), str(index)
            )
        except AimsError as exc:
            part.results[index] = v._failed(rule, index, str(exc))
            continue
        df = df.withColumn(f"__m{index}", F.coalesce(mask, F.lit(False)))
        aggregates.append(F.sum(F.col(f"__m{index}").cast("long")).alias(f"u{index}"))
        counted.append((index, rule))
    # the rows ingestion's masks would quarantine (any quarantining rule), for the verdict's
    # max_quarantine_percent: counted in the same aggregation
    flags = [F.col(f"__m{index}") for index, rule in counted if rule.quarantines_rows]
    if flags:
        any_flag = flags[0]
        for flag in flags[1:]:
            any_flag = any_flag | flag
        aggregates.append(F.sum(any_flag.cast("long")).alias("quarantined"))
    row = df.agg(*aggregates).collect()[0]
    part.quarantined_rows = int(row["quarantined"] or 0) if flags else 0
    rows = int(row["rows"])
    present = {column: int(row[f"p{c}"]) for c, column in enumerate(columns)}
    for column, count in present.items():
        part.null_percent[column] = 100.0 * (rows - count) / rows if rows else 0.0
    for index, rule in counted:
        unexpected = int(row[f"u{index}"] or 0)
        if rule.expectation_type == "expect_column_values_to_not_be_null" or rule.is_multicolumn:
            considered = rows
        else:
            considered = present[rule.column]
        mostly = float(rule.kwargs.get("mostly", 1.0) or 1.0)
        part.results[index] = v._result(
            rule,
            index,
            _success(considered, unexpected, mostly),
            element_count=rows,
            unexpected_count=unexpected,
            unexpected_percent=(100.0 * unexpected / considered) if considered else None,
        )


def _validate_table(settings: Settings, layout: Any, rule_file: Any) -> Any:
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
                try:
                    gx_rule, kwargs = v._gx_kwargs(settings, rule, None)
                except AimsError as exc:
                    part.results[index] = v._failed(rule, index, str(exc))
                    continue
                table_items.append((index, rule, gx_rule, kwargs))
        if exists:
            table_items.append(v._exists_probe([str(rule.column) for _, rule in exists]))
        if table_items:
            frame = v._schema_frame(layout.columns, layout.rows)
            v._run_gx(v._gx(), layout.table, frame, table_items, file_name, part.results, exists)
        _row_results(settings, layout, rule_file, part, row_items)
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
    for layout, rule_file in jobs:
        results[layout.table] = _validate_table(settings, layout, rule_file)
    rule_files = {layout.table: rule_file for layout, rule_file in jobs}
    return v.finish_run(
        settings, run_id, timestamp, started, results, names, rule_files, write, data_docs
    )
