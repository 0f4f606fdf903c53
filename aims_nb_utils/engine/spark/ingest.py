"""Bronze -> Silver and quarantine on Spark: the arrow engine's load, computed by Spark.

The same plan, verdict, drift policy, key, row rules (``quarantine.row_rules``), Silver types
(``typing_rules.silver_types``), row selection and state fields as ``ingestion._ingest_table``;
what differs is where the work runs. Every mask (:mod:`.masks`), cast and reason is a Spark
column expression; Silver and quarantine are written by Spark as one parquet file each
(``coalesce(1)``: one executor writes, nothing passes through the driver) into a staging folder,
then handed to ``storage.publish_unit`` exactly like the arrow engine's staged files, so the
publish stays one atomic unit with the state record (and a Delta target gets its one commit).

**Row fingerprints are the arrow engine's.** ``_dq_row_hash`` is ``ingestion.row_hashes`` (DuckDB
``hash`` over all values) run by the executors on each Arrow batch (``mapInArrow``), after the
batch is cast back to the Bronze file's own Arrow schema, the one the arrow engine hashes. So a
table can switch engines between runs: the stored hashes of either engine match the other's.

**Incremental loads** are ``ingestion.select_rows`` as joins on the hash column: the stored
hashes (Silver and quarantine, read by Spark from the stored files) are grouped per hash and
joined to the Bronze rows; a row is processed when its hash is new, occurs twice (keyed tables),
or a table-scope rule now flags it differently from its stored quarantine row; stored rows whose
hash stays are carried over by a semi join; a keyless table whose multiset of hashes and
table-scope verdicts are unchanged is ``unchanged``. Nothing of the table is collected to the
driver: one aggregation gives every figure of the selection.

**Few Spark jobs per table** (each costs scheduling whatever its size): the prepared frame
(hashes, masks, selection) is cached once and Silver and quarantine are written from it; row
counts come from the written files' parquet footers instead of ``count()`` jobs, and the
duplicate-key invariant reads the key columns of the staged Silver file, as the arrow engine
checks the keys it wrote. A full load runs one aggregation only when the table has a
``LASTUPDATED`` watermark.

``max_workers`` tables load side by side from driver threads (``tables_in_threads``): Spark
parallelises inside a table, and a second table's jobs use the cores while the first waits on job
scheduling or its one-task Silver write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
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
NTZ_CONF = "spark.sql.parquet.inferTimestampNTZ.enabled"


def spark_type(arrow_type: pa.DataType) -> T.DataType:
    """The Spark type that writes ``arrow_type`` to parquet (Silver's declared types): the type
    Spark reads it as, with a zone-less timestamp kept zone-less; text for any other."""
    return _read_type(arrow_type, ntz=True) or T.StringType()


def typed_column(
    col_type: typing_rules.ColumnType, dtype: T.DataType, placeholders: list[str]
) -> tuple[Column, Column | None]:
    """(Silver value, whether the Bronze value is present) of one column
    (``typing_rules.cast_column``); None for a column whose cast cannot fail. A present value
    whose Silver value is null failed its cast."""
    col = F.col(f"`{col_type.column}`")
    if col_type.from_source:
        return col, None
    text = text_form(normalized(col, dtype, placeholders), dtype)
    present = text.isNotNull()
    kind = col_type.kind
    if kind == "string":
        return text, None
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
    return value, present


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


# --- reading Bronze ---------------------------------------------------------------------------

_INTEGERS = {8: T.ByteType(), 16: T.ShortType(), 32: T.IntegerType(), 64: T.LongType()}


def _read_type(arrow_type: pa.DataType, ntz: bool) -> T.DataType | None:
    """The type Spark's parquet reader gives a column pyarrow reads as ``arrow_type``; None
    for a type this does not know (Spark then infers the schema itself)."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return T.StringType()
    if pa.types.is_signed_integer(arrow_type):
        return _INTEGERS[arrow_type.bit_width]
    if pa.types.is_boolean(arrow_type):
        return T.BooleanType()
    if pa.types.is_float32(arrow_type):
        return T.FloatType()
    if pa.types.is_float64(arrow_type):
        return T.DoubleType()
    if pa.types.is_decimal128(arrow_type):
        return T.DecimalType(arrow_type.precision, arrow_type.scale)
    if pa.types.is_date32(arrow_type):
        return T.DateType()
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit in ("s", "ms", "us"):
        return T.TimestampNTZType() if arrow_type.tz is None and ntz else T.TimestampType()
    return None


def _read_bronze(session: Any, path: Path, bronze_schema: pa.Schema) -> DataFrame:
    """The Bronze file as a DataFrame, with its schema given rather than inferred (inference
    is a Spark job of its own) when every column's type is one :func:`_read_type` knows."""
    ntz = str(session.conf.get(NTZ_CONF, "true")).lower() == "true"
    fields = []
    for field in bronze_schema:
        dtype = _read_type(field.type, ntz)
        if dtype is None:
            return session.read.parquet(str(path))
        fields.append(T.StructField(field.name, dtype, True))
    return session.read.schema(T.StructType(fields)).parquet(str(path))


# --- row fingerprints ------------------------------------------------------------------------


def _as_bronze_column(values: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """A column of a Spark Arrow batch in the Bronze file's type (what the arrow engine hashes);
    as it is when the cast cannot be done (the hash then differs from the arrow engine's only
    for that table, which an engine switch reloads)."""
    if values.type == arrow_type:
        return values
    try:
        return values.cast(arrow_type)
    except (pa.ArrowException, NotImplementedError):
        return values


def _hash_batches(bronze_schema: pa.Schema) -> Any:
    """The ``mapInArrow`` function appending ``ingestion.row_hashes`` of each row."""

    def hash_batches(batches: Any) -> Any:
        from aims_nb_utils.ingestion import row_hashes

        for batch in batches:
            columns = [
                (
                    _as_bronze_column(batch.column(f.name), f.type)
                    if f.name in batch.schema.names
                    else pa.nulls(batch.num_rows, f.type)
                )
                for f in bronze_schema
            ]
            hashes = row_hashes(pa.RecordBatch.from_arrays(columns, schema=bronze_schema))
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, pa.array(hashes, pa.int64())],
                names=[*batch.schema.names, ROW_HASH],
            )

    return hash_batches


def with_row_hashes(df: DataFrame, bronze_schema: pa.Schema) -> DataFrame:
    """``df`` (a Bronze file read by Spark) with ``_dq_row_hash``: the arrow engine's hash."""
    schema = T.StructType([*df.schema.fields, T.StructField(ROW_HASH, T.LongType(), False)])
    return df.mapInArrow(_hash_batches(bronze_schema), schema)


# --- stored tables and the incremental selection --------------------------------------------


def _stored_files(settings: Settings, layer: str, table: str) -> list[str]:
    """The parquet files holding a stored table's current rows (a pending publish's file, the
    parquet table, or the files of the Delta table's current version)."""
    pending = storage._pending_file(settings, layer, table)  # noqa: SLF001 - same package
    if pending is not None:
        return [str(pending)]
    path = storage.table_path(settings, layer, table)
    if settings.storage_format == "delta":
        return [str(uri) for uri in storage._delta_table(path).file_uris()]  # noqa: SLF001
    return [str(path)]


def _stored_frame(
    session: Any, settings: Settings, layer: str, table: str, like: DataFrame
) -> DataFrame | None:
    """A stored table as Spark reads it, in the columns and types of ``like`` (what this run
    writes); None when it lacks one of them (the caller reloads in full)."""
    files = _stored_files(settings, layer, table)
    if not files:
        return session.createDataFrame([], like.schema)
    frame = session.read.parquet(*files)
    if not set(like.columns) <= set(frame.columns):
        return None
    return frame.select(*[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in like.schema])


def _selection(
    df: DataFrame,
    silver: DataFrame,
    quarantine: DataFrame,
    table_masks: list[tuple[str, str]],
    watermark: Column | None,
) -> tuple[DataFrame, DataFrame, Any]:
    """``ingestion.select_rows`` on Spark: (Bronze rows with ``__process``, per-hash stored
    figures, and the one-row aggregation of ``select_rows``' figures: rows processed, dropped,
    deleted, carried, for the keyed and the keyless reading). ``table_masks`` is (mask column,
    rule id) of each table-scope rule."""
    h = F.col(ROW_HASH)
    stored = silver.select(
        h, F.lit(False).alias("__in_q"), F.lit(None).cast("array<string>").alias(FAILED_RULES)
    ).unionByName(quarantine.select(h, F.lit(True).alias("__in_q"), F.col(FAILED_RULES)))
    per_hash = stored.groupBy(h).agg(
        F.count(F.lit(1)).alias("__n_s"),
        F.sum((~F.col("__in_q")).cast("long")).alias("__n_silver"),
        F.max(F.col("__in_q")).alias("__in_q"),
        *[
            F.max(F.coalesce(F.array_contains(F.col(FAILED_RULES), rule_id), F.lit(False))).alias(
                f"__q{j}"
            )
            for j, (_, rule_id) in enumerate(table_masks)
        ],
    )
    per_hash = per_hash.persist(StorageLevel.MEMORY_AND_DISK)
    df = df.join(per_hash, ROW_HASH, "left")
    df = df.withColumn("__n_b", F.count(F.lit(1)).over(Window.partitionBy(h)))
    in_store = F.col("__n_s").isNotNull()

    def process(new: Column) -> Column:
        flagged = new
        for j, (mask, _) in enumerate(table_masks):
            before = F.coalesce(F.col("__in_q") & ~new & F.col(f"__q{j}"), F.lit(False))
            flagged = flagged | (F.col(mask) != before)
        return flagged

    # keyed: content seen twice (in Bronze or in store) is always looked at again
    df = df.withColumn(
        "__process", process(~in_store | (F.col("__n_b") > 1) | (F.col("__n_s") > 1))
    )
    df = df.withColumn("__process_l", process(~in_store))  # keyless: identical rows are fine
    bad = F.col("__bad")
    per_bronze = df.groupBy(h).agg(
        F.count(F.lit(1)).alias("__n_b"),
        F.sum(F.col("__process").cast("long")).alias("__proc"),
        F.sum((F.col("__process") & bad).cast("long")).alias("__bad_proc"),
        F.sum(F.col("__process_l").cast("long")).alias("__proc_l"),
        F.max(~F.col("__process")).alias("__keep"),
        F.max(~F.col("__process_l")).alias("__keep_l"),
        (F.max(watermark) if watermark is not None else F.lit(None).cast("long")).alias("__wm"),
    )
    both = per_bronze.join(per_hash.select(ROW_HASH, "__n_s", "__n_silver"), ROW_HASH, "full")
    n_s, n_silver = F.coalesce(F.col("__n_s"), F.lit(0)), F.coalesce(F.col("__n_silver"), F.lit(0))
    keep, keep_l = F.coalesce(F.col("__keep"), F.lit(False)), F.coalesce(
        F.col("__keep_l"), F.lit(False)
    )
    figures = both.agg(
        F.sum("__n_b").alias("rows"),
        F.sum("__proc").alias("processed"),
        F.sum("__bad_proc").alias("quarantined"),
        F.max("__wm").alias("watermark"),
        F.sum("__proc_l").alias("processed_lenient"),
        F.sum(F.when(~keep, n_s)).alias("dropped"),
        F.sum(F.when(~keep_l, n_s)).alias("dropped_lenient"),
        F.sum(F.when(F.col("__n_b").isNull(), n_s)).alias("deleted"),
        F.sum(F.when(~F.col("__n_b").eqNullSafe(F.col("__n_s")), 1)).alias("mismatched"),
        F.sum(n_silver).alias("silver_before"),
        F.sum(n_s - n_silver).alias("quarantine_before"),
        F.sum(F.when(keep, n_silver)).alias("silver_carried"),
        F.sum(F.when(keep, n_s - n_silver)).alias("quarantine_carried"),
    )
    return df, per_hash, figures


def _carried(stored: DataFrame, keep: DataFrame) -> DataFrame:
    """The stored rows whose hash stays, in the stored column order (a join on a named column
    puts that column first)."""
    return stored.join(keep, ROW_HASH, "left_semi").select(*[f"`{c}`" for c in stored.columns])


def _file_rows(staged: storage.StagedTable) -> int:
    return int(pq.read_metadata(staged.staged).num_rows)


def _silver_twins(staged: storage.StagedTable, key: Sequence[str]) -> int:
    """Rows of the staged Silver file whose (complete) key occurs before: the arrow engine's
    duplicate-key invariant, on the key columns only."""
    from ...ingestion import BATCH_ROWS, _keys_of

    keys = []
    for batch in pq.ParquetFile(staged.staged).iter_batches(
        batch_size=BATCH_ROWS, columns=list(key)
    ):
        complete = None
        for column in batch.columns:
            valid = pc.is_valid(column)
            complete = valid if complete is None else pc.and_(complete, valid)
        if complete is not None and not pc.all(complete).as_py():
            batch = batch.filter(complete)
        if batch.num_rows:
            keys.append(_keys_of(pa.Table.from_batches([batch]), key))
    if not keys:
        return 0
    ordered = np.sort(np.concatenate(keys))
    return int((ordered[1:] == ordered[:-1]).sum())


# --- one table --------------------------------------------------------------------------------


def ingest_table(
    settings: Settings, plan: TablePlan, verdict: Verdict | None, run_id: str
) -> TableIngest:
    """Load one table on Spark (see the module doc); stages Silver and quarantine, publishes
    nothing; raises the arrow engine's errors for the same inputs."""
    from ... import ingestion as ing
    from . import SparkEngine
    from .session import get_session

    table = plan.table
    placeholders = list(settings.null_placeholders)
    result = ing.TableIngest(
        table=table, status="error", verdict=verdict.status if verdict else None
    )
    path = settings.paths.bronze_file(table)
    rule_file = plan.rule_file or load_rule_file(settings.paths.rule_file(table))
    try:
        parquet = pq.ParquetFile(path)
        bronze_schema = parquet.schema_arrow  # what the arrow engine hashes
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
    bronze_columns = bronze_schema.names
    n = parquet.metadata.num_rows
    result.bronze_rows = n
    # the verdict's and the drift policy's decisions: the arrow engine's own
    decision = ing.decide_load(settings, table, rule_file, bronze_schema, verdict, result)
    demote_reason, demote_id = decision.demote_reason, decision.demote_id
    keep_silver, drift_text = decision.keep_silver, decision.drift_text
    types, key, rules = decision.types, decision.key, decision.rules

    references = SparkEngine().references(
        settings, [r.expectation for r in rules if r.expectation is not None]
    )
    session = get_session()
    df = _read_bronze(session, path, bronze_schema)
    dtypes = {f.name: f.dataType for f in df.schema.fields}
    df = with_row_hashes(df, bronze_schema)

    # A parsed Silver value is a column of the cached frame: parsed once, by every core, and
    # read both by its cast rule's mask and by the Silver write (one task, see _write_one_file).
    typed: dict[str, Column] = {}
    failed: dict[str, Column] = {}
    for i, col_type in enumerate(types):
        if col_type.column not in dtypes:
            typed[col_type.column] = F.lit(None).cast(spark_type(col_type.arrow_type))
            failed[col_type.column] = F.lit(False)
            continue
        value, present = typed_column(col_type, dtypes[col_type.column], placeholders)
        if present is None:
            typed[col_type.column], failed[col_type.column] = value, F.lit(False)
            continue
        df = df.withColumn(f"__t{i}", value)
        typed[col_type.column] = F.col(f"__t{i}")
        failed[col_type.column] = present & F.col(f"__t{i}").isNull()

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
    df = df.withColumn("__bad", bad)
    watermark = None
    if ing.WATERMARK_COLUMN in dtypes:
        dtype = dtypes[ing.WATERMARK_COLUMN]
        text = text_form(normalized(F.col(f"`{ing.WATERMARK_COLUMN}`"), dtype, placeholders), dtype)
        watermark = parse_timestamp_micros(text)

    def silver_of(frame: DataFrame) -> DataFrame:
        return frame.select(
            *[typed[t.column].alias(t.column) for t in types],
            F.lit(run_id).alias(RUN_ID),
            F.col(ROW_HASH),
        )

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
        F.filter(F.array(*ids), lambda x: x.isNotNull()) if ids else F.array().cast("array<string>")
    )

    def quarantine_of(frame: DataFrame) -> DataFrame:
        return frame.select(
            *[F.col(f"`{c}`") for c in bronze_columns],
            F.lit(run_id).alias(RUN_ID),
            failed_rules.alias(FAILED_RULES),
            (F.concat_ws("; ", *reasons) if reasons else F.lit("")).alias(REASON),
            F.col(ROW_HASH),
        )

    incremental = plan.incremental and demote_reason is None
    stored: tuple[DataFrame, DataFrame] | None = None
    if incremental:
        stored_silver = _stored_frame(session, settings, "silver", table, silver_of(df))
        stored_quarantine = _stored_frame(session, settings, "quarantine", table, quarantine_of(df))
        if stored_silver is None or stored_quarantine is None:
            incremental = False
            result.notes.append(
                "stored Silver or quarantine lacks a column this load writes: full reload"
            )
        else:
            stored = (stored_silver, stored_quarantine)
    result.mode = "incremental" if incremental else "full"

    per_hash = None
    work = Path(settings.paths.state) / SPARK_STAGING / uuid.uuid4().hex
    try:
        if stored is not None:
            table_masks = [
                (name, rule.rule_id)
                for name, rule in zip(mask_names, rules, strict=True)
                if rule.scope == "table"
            ]
            df, per_hash, figures_frame = _selection(
                df, stored[0], stored[1], table_masks, watermark
            )
            df = df.persist(StorageLevel.MEMORY_AND_DISK)
            row = figures_frame.collect()[0].asDict()
            last_updated = _micros_text(row.pop("watermark"))
            figures = {name: int(value or 0) for name, value in row.items()}
            result.rows_deleted = figures["deleted"]
            unchanged = (figures["processed"] == 0 and figures["dropped"] == 0) or (
                not key
                and figures["processed_lenient"] == 0
                and figures["dropped_lenient"] == 0
                and figures["mismatched"] == 0
            )
            if figures["rows"] != n:
                result.invariant_ok = False
                raise ing.IngestInvariantError(
                    [f"{table}: Bronze has {n:,} rows but Spark read {figures['rows']:,}"]
                )
            if unchanged:
                result.status, result.mode = "unchanged", "none"
                result.silver_total = figures["silver_before"]
                result.quarantine_total = figures["quarantine_before"]
                result.state = ing._state_fields(
                    settings, plan, result, run_id, last_updated, drift_text, n
                )
                return result
            result.rows_in = figures["processed"]
            result.rows_quarantined = figures["quarantined"]
            result.rows_silver = result.rows_in - result.rows_quarantined
            keep = df.where(~F.col("__process")).select(ROW_HASH).distinct()
            silver = _carried(stored[0], keep).unionByName(
                silver_of(df.where(F.col("__process") & ~F.col("__bad")))
            )
            quarantine = _carried(stored[1], keep).unionByName(
                quarantine_of(df.where(F.col("__process") & F.col("__bad")))
            )
            carried = (figures["silver_carried"], figures["quarantine_carried"])
        else:
            df = df.persist(StorageLevel.MEMORY_AND_DISK)
            last_updated = None
            if watermark is not None:  # the one aggregation of a full load
                last_updated = _micros_text(df.agg(F.max(watermark)).collect()[0][0])
            silver = silver_of(df.where(~F.col("__bad")))
            quarantine = quarantine_of(df.where(F.col("__bad")))
            carried = (0, 0)

        staged = []
        if not keep_silver:
            staged.append(_stage(settings, "silver", table, silver, work))
        staged.append(_stage(settings, "quarantine", table, quarantine, work))
        result.staged = staged
        silver_rows = 0 if keep_silver else _file_rows(staged[0])
        quarantine_rows = _file_rows(staged[-1])
        if stored is None:
            result.rows_in = silver_rows + quarantine_rows
            result.rows_silver, result.rows_quarantined = silver_rows, quarantine_rows
        problems = []
        if (silver_rows, quarantine_rows) != (
            carried[0] + result.rows_silver,
            carried[1] + result.rows_quarantined,
        ):
            problems.append(
                f"{table}: {result.rows_in:,} rows processed but Silver got "
                f"{silver_rows - carried[0]:,} and quarantine {quarantine_rows - carried[1]:,}"
            )
        if (quarantine_rows if keep_silver else silver_rows + quarantine_rows) != n:
            problems.append(
                f"{table}: Bronze has {n:,} rows but Silver would hold {silver_rows:,} and "
                f"quarantine {quarantine_rows:,}"
            )
        twins = _silver_twins(staged[0], key) if key and not keep_silver else 0
        if twins:
            problems.append(f"{table}: {twins:,} duplicate key(s) ({', '.join(key)}) in Silver")
        if problems:
            result.invariant_ok = False
            for item in staged:
                Path(item.staged).unlink(missing_ok=True)
            result.staged = None
            raise ing.IngestInvariantError(problems)
    finally:
        df.unpersist()
        if per_hash is not None:
            per_hash.unpersist()
        shutil.rmtree(work, ignore_errors=True)
        del session
    result.silver_total = None if keep_silver else silver_rows
    result.quarantine_total = quarantine_rows
    result.status = "not_promoted" if demote_reason is not None else "loaded"
    result.state = ing._state_fields(settings, plan, result, run_id, last_updated, drift_text, n)
    return result
