"""Profiling under the spark engine: Spark reduces the data, the shared profiler decides.

The rule files must be the arrow engine's, byte for byte, so the statistics and the rules are
computed by the same code (``aims_nb_utils.profiling``), and Spark computes what that code reads:

* a table whose rows x columns is at most ``DRIVER_VALUES_MAX`` is counted by one Spark job:
  ``groupBy(column, value).count()`` over its columns stacked with ``explode``; a larger table
  by one ``groupBy(value).count()`` job per column, ``COLUMNS_AT_ONCE`` columns in flight.
  Values are kept as text, integers, booleans and floats; decimals of up to 18 digits as their
  exact unscaled int64 (rebuilt as the file's decimal128 on the driver, so Arrow converts them
  to numbers as the arrow engine does), dates as days and timestamps as microseconds (rebuilt
  in the file's own unit and time zone for the ISO text); wider decimals and unsigned 64-bit
  integers as their own values;
* the driver receives each column's distinct values with their row counts as Arrow and hands
  them to ``profiling._as_values``/``_profile_text`` and ``typed_figures``/
  ``temporal_figures``: nulls and placeholders, lengths, type inference and conformance,
  ranges and outliers, value sets, codes and integer keys are the arrow engine's functions on
  the same (value, count) pairs. Nothing reads a table's rows on the driver; the parquet
  footer is read for the column types (the arrow engine decides on those);
* a two-column key (``profiling._discover_keys`` when no column is a key) is checked by Spark:
  one aggregation for the candidates' distinct canonical keys (``masks.key_form``), then one
  ``distinct().count()`` per pair tried, in the arrow engine's order (``pair_order``);
* references (``profiling.discover_foreign_keys``) compare the reduced forms on the driver:
  each child column's distinct canonical values against each parent key's (integer IDs sorted,
  codes sorted) as in the arrow engine; the keys of a table not profiled in the run are
  profiled by Spark column by column (``profile_column``).

Driver memory: the distinct values (and counts) of the columns being finished: a small
table's columns (at most ``DRIVER_VALUES_MAX`` values), or ``COLUMNS_AT_ONCE`` columns of a
large one, per table in flight (``max_workers`` tables). An ID column unique on every row brings
all its values, and a key's values stay in its profile until references are found: the arrow
engine holds the same (reference discovery needs every key).

Not supported (a clear error; use ``engine: arrow``): ``sample_size`` (Spark has no "first
rows" of a file; every row is profiled), and Bronze types Spark 3.5 cannot read (TIME columns,
nanosecond timestamps). A high-cardinality text column always gets ``distinct_count`` and
``top_values`` here (the arrow engine counts a column only when its first rows repeat); no rule
reads them. One corner case could differ: a column whose first rows hold over 200 distinct
values, placeholders included, but at most 200 real ones is counted here (a value set may be
suggested) and not by the arrow engine.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ... import profiling as p
from ...errors import AimsError, BronzeReadError
from ...io import remove_stale_temp_files
from .. import EngineError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from ...profiling import ColumnProfile, ProfileRun, TableProfile
    from ...settings import Settings

# A table whose rows x columns is at most this is counted in one job (its columns' distinct
# values, at most this many, reach the driver together); a larger one column by column, with
# this many columns in flight.
DRIVER_VALUES_MAX = 2_000_000
COLUMNS_AT_ONCE = 2

# How a column is reduced: in the table's count job, in one of its value fields (decimals as
# their unscaled integer, dates as days, timestamps as microseconds), or counted alone (wide
# decimals, unsigned 64-bit integers: their exact values come back).
_STACKED = {"text": "s", "integer": "l", "boolean": "b", "float": "d", "decimal": "l", "date": "l"}
_UNSCALED_MAX_PRECISION = 18  # decimals up to this precision travel as an int64 unscaled value


def profile_tables(
    settings: Settings,
    tables: list[str] | None = None,
    sample_size: int | None = None,
    force: bool = False,
    max_workers: int | None = None,
    progress: bool = False,
    run_id: str | None = None,
    history: int = 1,
) -> ProfileRun:
    """``profiling.profile_tables`` with the statistics computed by Spark (module docstring).

    Spark parallelises inside a table; ``max_workers`` tables (default 2) are submitted side by
    side from driver threads.
    """
    from tqdm.auto import tqdm

    from .session import get_session

    sample_size = settings.sample_size if sample_size is None else sample_size
    if sample_size is not None:
        raise EngineError(
            f"engine spark profiles every row; sample_size={sample_size} is not supported",
            hint="unset sample_size, or profile with engine: arrow",
        )
    started = time.perf_counter()
    run_id = run_id or datetime.now(timezone.utc).strftime("profile-%Y%m%dT%H%M%S")
    tables = p.lake_tables(settings, tables)
    # A profile killed while writing a rule file leaves a temp file beside it; its writer is gone.
    remove_stale_temp_files(settings.paths.rules)
    profiler = SparkProfiler(settings, get_session())
    profiles: dict[str, TableProfile] = {}
    errors: dict[str, str] = {}

    def one(table: str) -> tuple[str, TableProfile | None, str | None]:
        try:
            return table, profiler.profile_table(table), None
        except AimsError as exc:
            return table, None, str(exc)

    # Spark's jobs are short on small tables and much of their time is scheduling: a few tables
    # submitted side by side (threads of the driver) keep the executors busy.
    workers = max(1, min(len(tables), int(max_workers or settings.max_workers or 2)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(one, tables)
        for table, profile, error in tqdm(
            done, total=len(tables), desc="profile", unit="table", disable=not progress
        ):
            if profile is not None:
                profiles[table] = profile
            else:
                errors[table] = error or "unknown error"
    return p.finish_run(
        settings, tables, profiles, errors, run_id, started, int(history), force,
        profiler.profile_column,
    )  # fmt: skip


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col(_quoted(name))


def _plan(arrow_type: pa.DataType) -> str:
    """How a column of this (footer) type is reduced; the arrow engine's decision
    (``profiling._is_text_column``, ``typed_kind``)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if p._is_text_column(arrow_type):
        return "text"
    kind = p.typed_kind(arrow_type)
    if kind is None:
        return "text"  # binary, nested: profiled through their text
    if kind == "integer" and pa.types.is_uint64(arrow_type):
        return "alone"  # Spark reads it as decimal(20,0): counted alone, cast back
    if kind == "decimal":
        if pa.types.is_floating(arrow_type):
            return "float"
        return "decimal" if arrow_type.precision <= _UNSCALED_MAX_PRECISION else "alone"
    if kind == "date" and not (pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type)):
        raise EngineError(
            f"engine spark cannot profile {arrow_type} columns (Spark reads no TIME type)",
            hint="profile this lake with engine: arrow",
        )
    return kind  # integer, boolean, date


def _collect(frame: DataFrame) -> pa.Table | None:
    """A (small, reduced) DataFrame as one Arrow table, or None when it has no rows."""
    to_arrow = getattr(frame, "toArrow", None)  # Spark 4.0 and Spark Connect
    if to_arrow is not None:
        table = to_arrow()
        return table if table.num_rows else None
    batches = frame._collect_as_arrow()  # noqa: SLF001 - Spark 3.5's way to collect as Arrow
    return pa.Table.from_batches(batches) if batches else None


def _column_array(table: pa.Table | None, name: str, arrow_type: pa.DataType) -> pa.Array:
    if table is None:
        return pa.array([], arrow_type)
    return table.column(name).combine_chunks()


def _counts(table: pa.Table | None) -> np.ndarray:
    if table is None:
        return np.zeros(0, dtype=np.int64)
    counts = table.column("count").combine_chunks()
    return np.asarray(counts.to_numpy(zero_copy_only=False), dtype=np.int64)


def _spark_failure(table: str, path: Any, exc: Exception) -> BronzeReadError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BronzeReadError(table, path, f"Spark could not profile it: {first}")


class SparkProfiler:
    """Profiles Bronze tables with Spark reductions and the shared profiler's statistics."""

    def __init__(self, settings: Settings, session: Any) -> None:
        self.settings = settings
        self.session = session
        self.placeholders = pa.array(list(settings.null_placeholders), type=pa.string())

    # --- one table ---------------------------------------------------------------------------

    def profile_table(self, table: str) -> TableProfile:
        """Profile one Bronze table on all rows; BronzeReadError (naming the file) when Spark
        cannot read it."""
        started = time.perf_counter()
        path, names, total_rows, typed_kinds = p._bronze_layout(self.settings, table)
        try:
            frame = self.session.read.parquet(str(path))
            columns = self._profile_columns(frame, path, names, total_rows, typed_kinds)
        except AimsError:
            raise
        except Exception as exc:  # noqa: BLE001 - Py4J/Spark errors carry the cause in text
            raise _spark_failure(table, path, exc) from None
        profile = p.TableProfile(
            table=table,
            rows=total_rows,
            columns=columns,
            seconds=0.0,
            empty=total_rows == 0,
            path=str(path),
            total_rows=total_rows,
            sampled=False,
        )
        if total_rows:
            try:
                p._discover_keys(self.settings, profile, None, partial(_pair_key, frame))
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, AimsError):
                    raise
                raise _spark_failure(table, path, exc) from None
        profile.seconds = round(time.perf_counter() - started, 3)
        return profile

    def profile_column(
        self, settings: Settings, table: str, name: str, typed_kinds: dict[str, str] | None
    ) -> ColumnProfile:
        """One column of a table profiled by Spark (``profiling.ColumnProfiler``: the keys of
        tables not profiled in this run, for reference discovery)."""
        path, names, total_rows, kinds = p._bronze_layout(settings, table)
        try:
            frame = self.session.read.parquet(str(path))
            return self._profile_columns(frame, path, [name], total_rows, typed_kinds or kinds)[0]
        except AimsError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _spark_failure(table, path, exc) from None

    def _profile_columns(
        self,
        frame: DataFrame,
        path: Any,
        names: list[str],
        rows: int,
        typed_kinds: dict[str, str],
    ) -> list[ColumnProfile]:
        """Profiles of ``names``: a small table's columns from one Spark job (stacked), a large
        table's from one job per column, COLUMNS_AT_ONCE of them in flight, each column
        finished as its counts arrive."""
        schema = pq.read_schema(path)  # the footer: the types the arrow engine decides on
        types = {name: schema.field(name).type for name in names}
        types = {n: t.value_type if pa.types.is_dictionary(t) else t for n, t in types.items()}
        plans = {name: _plan(types[name]) for name in names}

        def finish(name: str, counted: pa.Table | None) -> ColumnProfile:
            values = _column_array(counted, "v", pa.null())
            return self._from_counts(
                name, rows, plans[name], types[name], values, _counts(counted), typed_kinds
            )

        stacked = [n for n in names if plans[n] != "alone"]
        alone = [n for n in names if plans[n] == "alone"]
        done: dict[str, ColumnProfile] = {}
        if rows * len(stacked) <= DRIVER_VALUES_MAX:
            for name, counted in self._stacked_counts(frame, stacked, plans, types):
                done[name] = finish(name, counted)
        else:
            alone = stacked + alone

        def one(name: str) -> ColumnProfile:
            value = _value(name, plans[name], types[name])
            return finish(name, _collect(frame.selectExpr(f"{value} AS v").groupBy("v").count()))

        if alone:
            with ThreadPoolExecutor(max_workers=min(len(alone), COLUMNS_AT_ONCE)) as pool:
                done.update(zip(alone, pool.map(one, alone), strict=True))
        return [done[name] for name in names]

    # --- reductions --------------------------------------------------------------------------

    def _stacked_counts(
        self,
        frame: DataFrame,
        names: list[str],
        plans: dict[str, str],
        types: dict[str, pa.DataType],
    ) -> Any:
        """(column, its (v, count) pairs) for the columns of a small table, from one Spark job
        over the columns stacked with ``explode`` (one value field per Spark type)."""
        if not names:
            return
        counted = _collect(
            frame.selectExpr(_stack(names, plans, types)).groupBy("i", "s", "l", "d", "b").count()
        )
        ids = None if counted is None else np.asarray(counted.column("i").to_numpy(), np.int64)
        for index, name in enumerate(names):
            if counted is None or ids is None:
                yield name, None
                continue
            part = counted.take(pa.array(np.flatnonzero(ids == index)))
            field = _STACKED[plans[name]]
            yield name, pa.table({"v": part.column(field), "count": part.column("count")})

    def _from_counts(
        self,
        name: str,
        rows: int,
        plan: str,
        arrow_type: pa.DataType,
        values: pa.Array,
        counts: np.ndarray,
        typed_kinds: dict[str, str],
    ) -> ColumnProfile:
        """A column's profile from its distinct values (a null among them) and row counts."""
        if plan == "text":
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                values = values.cast(pa.string())
            kept = p._as_values(values, counts, self.placeholders)
            return p._profile_text(name, rows, kept, True, typed_kinds)
        present = values.is_valid()
        weights = counts[np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)]
        distinct = values.filter(present)
        if plan == "alone" and pa.types.is_integer(arrow_type):
            distinct = distinct.cast(arrow_type)  # uint64 read by Spark as decimal(20,0)
        elif plan == "decimal":
            distinct = _decimals(distinct, arrow_type)
        nonnull = int(weights.sum())
        kind = p.typed_kind(arrow_type)
        assert kind is not None
        profile = p.typed_profile(name, rows, rows - nonnull, kind, arrow_type)
        if nonnull == 0:
            return profile
        if plan == "date":
            numbers = np.asarray(distinct.to_numpy(zero_copy_only=False), dtype=np.int64)
            low = _temporal_scalar(int(numbers.min()), arrow_type)
            high = _temporal_scalar(int(numbers.max()), arrow_type)
            p.temporal_figures(profile, int(numbers.size), low, high)
            return profile
        if not p.typed_figures(profile, distinct, weights):
            # an unsigned 64-bit column past int64: the arrow engine profiles its text
            texts = values.cast(pa.large_string())
            kept = p._as_values(texts, counts, self.placeholders)
            return p._profile_text(name, rows, kept, True, typed_kinds)
        return profile


def _temporal_number(name: str, arrow_type: pa.DataType) -> str:
    """SQL of days (dates) or microseconds since the epoch (timestamps, as stored: the session
    time zone is UTC), so no Python datetime conversion of the driver's time zone is involved."""
    if pa.types.is_date(arrow_type):
        return f"unix_date({_quoted(name)})"
    return f"unix_micros(CAST({_quoted(name)} AS TIMESTAMP))"


_SQL_TYPES = {"s": "STRING", "l": "BIGINT", "d": "DOUBLE", "b": "BOOLEAN"}


def _value(name: str, plan: str, arrow_type: pa.DataType) -> str:
    """SQL of the column as the value its counts are kept by (see ``_STACKED``): one string
    per column, so a table's plan costs the driver a few calls, not a few per column."""
    col = _quoted(name)
    if plan == "text":
        return f"CAST({col} AS STRING)"
    if plan == "decimal":  # the unscaled bigint, exact: 12.34 (scale 2) -> 1234
        scale = arrow_type.scale
        return f"CAST({col} * CAST(1{'0' * scale} AS DECIMAL({scale + 1},0)) AS BIGINT)"
    if plan == "date":
        return f"CAST({_temporal_number(name, arrow_type)} AS BIGINT)"
    if plan == "integer":
        return f"CAST({col} AS BIGINT)"
    if plan == "float":
        return f"CASE WHEN isnan({col}) THEN NULL ELSE CAST({col} AS DOUBLE) END"
    if plan == "boolean":
        return f"CAST({col} AS BOOLEAN)"
    return col  # alone: the column's own values


def _stack(names: list[str], plans: dict[str, str], types: dict[str, pa.DataType]) -> str:
    """``stack`` SQL giving one (i, s, l, d, b) row per column of each row, the column's value
    in its field and null in the others."""
    rows = []
    for index, name in enumerate(names):
        field = _STACKED[plans[name]]
        parts = [
            _value(name, plans[name], types[name]) if key == field else f"CAST(NULL AS {sql})"
            for key, sql in _SQL_TYPES.items()
        ]
        rows.append(", ".join([str(index), *parts]))
    return f"stack({len(names)}, {', '.join(rows)}) AS (i, s, l, d, b)"


def _decimals(unscaled: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """Unscaled int64 values back as the column's decimal128 (two's complement, 16 bytes each):
    the arrow engine's own values, which it converts to numbers itself."""
    low = np.asarray(unscaled.to_numpy(zero_copy_only=False), dtype="<i8")
    words = np.empty((low.size, 2), dtype="<i8")
    words[:, 0] = low
    words[:, 1] = np.where(low < 0, -1, 0)
    data = pa.py_buffer(words.tobytes())
    return pa.Array.from_buffers(pa.decimal128(arrow_type.precision, arrow_type.scale),
                                 low.size, [None, data])  # fmt: skip


def _temporal_scalar(number: int, arrow_type: pa.DataType) -> pa.Scalar:
    """A day or microsecond count as an Arrow scalar of the column's type (its unit and time
    zone), as the arrow engine's ``min_max`` returns it."""
    if pa.types.is_date(arrow_type):
        return pa.array([number], pa.date32()).cast(arrow_type)[0]
    micros = pa.array([number], pa.timestamp("us", tz=arrow_type.tz))
    return micros.cast(arrow_type)[0]


def _pair_key(
    frame: DataFrame, settings: Settings, profile: TableProfile, sample_size: int | None
) -> tuple[list[str], int] | None:
    """``profiling._pair_key`` on Spark: the candidates' distinct canonical keys in one
    aggregation, then each pair (the arrow engine's order) checked for a duplicate by Spark."""
    from pyspark.sql import functions as F

    from .masks import key_form

    names = p.pair_columns(profile)
    if names is None:
        return None
    dtypes = {f.name: f.dataType for f in frame.schema.fields}
    keys = {name: key_form(_col(name), dtypes[name]) for name in names}
    row = frame.agg(
        *(F.countDistinct(keys[name]).alias(f"k{i}") for i, name in enumerate(names))
    ).collect()[0]
    distinct = {name: int(row[f"k{i}"]) for i, name in enumerate(names)}
    for a, b in p.pair_order(profile, names, distinct, profile.rows):
        pairs = frame.select(keys[a].alias("a"), keys[b].alias("b")).distinct().count()
        if pairs == profile.rows:
            return [a, b], 0
    return None


__all__ = ["COLUMNS_AT_ONCE", "DRIVER_VALUES_MAX", "SparkProfiler", "profile_tables"]
