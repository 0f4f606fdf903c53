"""Bronze -> Silver and quarantine on Spark: the arrow engine's split, computed by Spark.

The same plan, verdict, drift policy, key, row rules (``quarantine.row_rules``), Silver types
(``typing_rules.silver_types``) and state fields as ``ingestion._ingest_table``; what differs is
where the work runs. Every mask (:mod:`.masks`), cast, reason and row fingerprint is a Spark
column expression; Silver and quarantine are written by Spark as one parquet file each
(``coalesce(1)``: one executor writes, nothing passes through the driver) into a staging folder,
then handed to ``storage.publish_unit`` exactly like the arrow engine's staged files, so the
publish stays one atomic unit with the state record (and a Delta target gets its one commit).

Differences from the arrow engine, by design:

* loads are full reloads: the incremental row selection compares DuckDB row hashes, which Spark
  cannot compute; the Spark fingerprint is ``xxhash64`` of the row (``_dq_row_hash``), so a
  table switched between engines reloads its changed rows as new on the next arrow run;
* tables load one at a time (``parallel_tables`` = 1): Spark parallelises inside the table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ... import storage, typing_rules
from ...errors import BronzeReadError
from ...io import temp_prefix
from ...quarantine import FAILED_RULES, REASON, ROW_HASH, RUN_ID, VALUE_CHARS, RowRule
from ...rules import load_rule_file
from . import masks
from .masks import (
    key_form,
    normalized,
    parse_booleans,
    parse_integers,
    parse_numbers,
    parse_timestamp_micros,
    rows_duplicated,
    text_form,
    unique_mask,
)

if TYPE_CHECKING:
    from ...ingestion import TableIngest, TablePlan, Verdict
    from ...settings import Settings

SPARK_STAGING = "spark-staging"


def spark_type(arrow_type: pa.DataType) -> T.DataType:
    """The Spark type that writes ``arrow_type`` to parquet (Silver's declared types)."""
    if pa.types.is_int64(arrow_type):
        return T.LongType()
    if pa.types.is_float64(arrow_type):
        return T.DoubleType()
    if pa.types.is_boolean(arrow_type):
        return T.BooleanType()
    if pa.types.is_timestamp(arrow_type):
        return T.TimestampType() if arrow_type.tz is not None else T.TimestampNTZType()
    return T.StringType()


def typed_column(
    col_type: typing_rules.ColumnType, dtype: T.DataType, placeholders: list[str]
) -> tuple[Column, Column]:
    """(Silver value, typing failure) of one column (``typing_rules.cast_column``)."""
    col = F.col(f"`{col_type.column}`")
    if col_type.from_source:
        return col, F.lit(False)
    text = text_form(normalized(col, dtype, placeholders), dtype)
    present = text.isNotNull()
    kind = col_type.kind
    if kind == "string":
        return text, F.lit(False)
    if kind == "boolean":
        value = parse_booleans(text)
    elif kind == "integer":
        value = parse_integers(text)
    elif kind == "decimal":
        value = parse_numbers(text, T.StringType())
    elif kind == "date":
        value = F.timestamp_micros(parse_timestamp_micros(text))
        if getattr(col_type.arrow_type, "tz", None) is None:
            value = value.cast("timestamp_ntz")  # the session time zone is UTC
    else:
        raise ValueError(f"unknown Silver kind {kind!r}; known: {', '.join(typing_rules.KINDS)}")
    return value, present & value.isNull()


def _quoted(text: Column) -> Column:
    short = F.substring(text, 1, VALUE_CHARS)
    short = F.when(F.length(text) > VALUE_CHARS, F.concat(short, F.lit("..."))).otherwise(short)
    return F.coalesce(F.concat(F.lit("'"), short, F.lit("'")), F.lit("null"))


def sentence(rule: RowRule, dtypes: dict[str, T.DataType]) -> Column:
    """The reason a rule gives for one row (``quarantine.quarantine_rows``' sentence)."""
    tail = f"{rule.after} [{rule.rule_id}]"
    if not rule.show_value:
        return F.lit(f"{rule.before.rstrip()}{tail}")
    quoted = [_quoted(text_form(F.col(f"`{c}`"), dtypes[c])) for c in rule.all_columns]
    if len(quoted) == 1:
        shown = quoted[0]
    else:
        parts: list[Column] = [F.lit("(")]
        for i, q in enumerate(quoted):
            parts += [F.lit(", "), q] if i else [q]
        shown = F.concat(*parts, F.lit(")"))
    return F.concat(F.lit(rule.before), shown, F.lit(tail))


def _micros_text(micros: int | None) -> str | None:
    if micros is None:
        return None
    moment = datetime(1970, 1, 1) + timedelta(microseconds=int(micros))
    return moment.isoformat(sep=" ")


def _write_one_file(df: DataFrame, folder: Path, target: Path, staged_dir: Path) -> Path:
    """Write ``df`` as one parquet file with Spark and move it next to ``target`` (not visible:
    a temp name, as ``storage.TableWriter`` stages)."""
    out = folder / uuid.uuid4().hex
    df.coalesce(1).write.mode("overwrite").parquet(out.as_uri())
    parts = sorted(out.glob("part-*.parquet"))
    if len(parts) != 1:
        raise storage.StorageError("spark", target.stem, target, f"{len(parts)} part files")
    staged_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(target.name), dir=staged_dir)
    os.close(fd)
    os.replace(parts[0], name)
    return Path(name)


def _stage(settings: Settings, layer: str, table: str, df: DataFrame, work: Path) -> Any:
    target = storage.table_path(settings, layer, table)
    if settings.storage_format == "delta":
        staged_dir = Path(settings.paths.state) / storage.STAGING_FOLDER
        name = f"{layer}.{table}{storage.PARQUET_SUFFIX}"
        path = _write_one_file(df, work, staged_dir / name, staged_dir)
    else:
        path = _write_one_file(df, work, target, target.parent)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return storage.StagedTable(layer, table, str(path), str(target))


def ingest_table(
    settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
) -> TableIngest:
    """Load one table on Spark (see the module doc); stages Silver and quarantine, publishes
    nothing; raises the arrow engine's errors for the same inputs."""
    from ... import ingestion as ing
    from . import read_bronze
    from .session import get_session

    table = plan.table
    placeholders = list(settings.null_placeholders)
    result = ing.TableIngest(
        table=table, status="error", verdict=verdict.status if verdict else None
    )
    path = settings.paths.bronze_file(table)
    rule_file = plan.rule_file or load_rule_file(settings.paths.rule_file(table))
    try:
        meta = pq.read_metadata(path)
        bronze_schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    bronze_columns = bronze_schema.names
    n = meta.num_rows
    result.bronze_rows = n
    # the verdict's and the drift policy's decisions: the arrow engine's own
    decision = ing.decide_load(settings, table, rule_file, bronze_schema, verdict, result)
    demote_reason, demote_id = decision.demote_reason, decision.demote_id
    keep_silver, drift_text = decision.keep_silver, decision.drift_text
    types, key, rules = decision.types, decision.key, decision.rules
    result.notes.append("spark engine: full reload")
    result.mode = "full"

    from . import SparkEngine

    references = SparkEngine().references(
        settings, [r.expectation for r in rules if r.expectation is not None]
    )
    session = get_session()
    df = read_bronze(settings, table)
    dtypes = {f.name: f.dataType for f in df.schema.fields}
    df = df.withColumn(ROW_HASH, F.xxhash64(*[F.col(f"`{c}`") for c in bronze_columns]))

    typed: dict[str, Column] = {}
    failed: dict[str, Column] = {}
    for col_type in types:
        if col_type.column not in dtypes:
            typed[col_type.column] = F.lit(None).cast(spark_type(col_type.arrow_type))
            failed[col_type.column] = F.lit(False)
            continue
        typed[col_type.column], failed[col_type.column] = typed_column(
            col_type, dtypes[col_type.column], placeholders
        )

    def key_of(column: str) -> Column:
        dtype = dtypes[column]
        return key_form(normalized(F.col(f"`{column}`"), dtype, placeholders), dtype)

    mask_names = []
    for j, rule in enumerate(rules):
        if rule.check == "cast":
            mask = failed[rule.column]
        elif rule.check == "expectation":
            assert rule.expectation is not None
            df, mask = masks.expectation_mask(
                df, rule.expectation, placeholders, rule.kind, references.get(rule.rule_id), str(j)
            )
        elif rule.check == "compound_unique":
            assert rule.expectation is not None
            df, mask = masks.expectation_mask(
                df, rule.expectation, placeholders, None, None, str(j)
            )
        elif rule.check == "key_not_null":
            mask = F.lit(False)
            for column in rule.all_columns:
                mask = mask | key_of(column).isNull()
        elif len(rule.all_columns) == 1:
            mask = unique_mask(key_of(rule.column))
        else:
            mask = rows_duplicated([key_of(c) for c in rule.all_columns], "any_value_is_missing")
        name = f"__m{j}"
        df = df.withColumn(name, F.coalesce(mask, F.lit(False)))
        mask_names.append(name)

    bad = F.lit(demote_reason is not None)
    for name in mask_names:
        bad = bad | F.col(name)
    df = df.withColumn("__bad", bad).persist(StorageLevel.MEMORY_AND_DISK)
    work = Path(settings.paths.state) / SPARK_STAGING / uuid.uuid4().hex
    silver = None
    try:
        aggregates = [
            F.count(F.lit(1)).alias("rows"),
            F.sum(F.col("__bad").cast("long")).alias("bad"),
        ]
        if ing.WATERMARK_COLUMN in dtypes:
            dtype = dtypes[ing.WATERMARK_COLUMN]
            text = text_form(
                normalized(F.col(f"`{ing.WATERMARK_COLUMN}`"), dtype, placeholders), dtype
            )
            aggregates.append(F.max(parse_timestamp_micros(text)).alias("watermark"))
        figures = df.agg(*aggregates).collect()[0]
        rows, quarantined = int(figures["rows"]), int(figures["bad"] or 0)
        last_updated = _micros_text(figures["watermark"]) if "watermark" in figures else None
        result.rows_in = rows
        result.rows_quarantined = quarantined
        result.rows_silver = 0 if keep_silver else rows - quarantined

        staged = []
        silver = df.where(~F.col("__bad")).select(
            *[typed[t.column].alias(t.column) for t in types],
            F.lit(run_id).alias(RUN_ID),
            F.col(ROW_HASH),
        )
        if not keep_silver:
            silver = silver.persist(StorageLevel.MEMORY_AND_DISK)
            problems = []
            if key:
                complete = F.lit(True)
                for column in key:
                    complete = complete & F.col(f"`{column}`").isNotNull()
                twins = (
                    silver.where(complete)
                    .groupBy(*[F.col(f"`{c}`") for c in key])
                    .count()
                    .where(F.col("count") > 1)
                    .agg(F.sum(F.col("count") - 1).alias("twins"))
                    .collect()[0]["twins"]
                )
                if twins:
                    problems.append(
                        f"{table}: {int(twins):,} duplicate key(s) ({', '.join(key)}) in Silver"
                    )
            if rows != n:
                problems.append(f"{table}: Bronze has {n:,} rows but Spark read {rows:,}")
            if problems:
                result.invariant_ok = False
                raise ing.IngestInvariantError(problems)
            staged.append(_stage(settings, "silver", table, silver, work))
        ids = [
            F.when(F.col(name), F.lit(rule.rule_id))
            for name, rule in zip(mask_names, rules, strict=True)
        ]
        reasons = [
            F.when(F.col(name), sentence(rule, dtypes))
            for name, rule in zip(mask_names, rules, strict=True)
        ]
        if demote_reason is not None:
            ids.insert(0, F.lit(demote_id))
            reasons.insert(0, F.lit(demote_reason))
        failed_rules = (
            F.filter(F.array(*ids), lambda x: x.isNotNull())
            if ids
            else F.array().cast("array<string>")
        )
        quarantine = df.where(F.col("__bad")).select(
            *[F.col(f"`{c}`") for c in bronze_columns],
            F.lit(run_id).alias(RUN_ID),
            failed_rules.alias(FAILED_RULES),
            (F.concat_ws("; ", *reasons) if reasons else F.lit("")).alias(REASON),
            F.col(ROW_HASH),
        )
        staged.append(_stage(settings, "quarantine", table, quarantine, work))
        result.staged = staged
    finally:
        df.unpersist()
        if silver is not None:
            silver.unpersist()
        shutil.rmtree(work, ignore_errors=True)
        del session
    result.silver_total = None if keep_silver else result.rows_silver
    result.quarantine_total = result.rows_quarantined
    result.status = "not_promoted" if demote_reason is not None else "loaded"
    result.state = ing._state_fields(settings, plan, result, run_id, last_updated, drift_text, n)
    return result
