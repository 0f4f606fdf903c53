"""Silver, Gold and quarantine tables on disk: the one place that decides path, format and atomicity.

Layout, by ``settings.storage_format``:

* ``parquet`` (the local default): one file per table, ``<layer root>/<table>.parquet``. Every
  write goes to a temporary file beside the target and replaces it with ``os.replace``, so a reader
  sees the previous file or the new one, never half a file. One file rather than a folder of parts
  because replacing a folder is not atomic on POSIX; ``mode="append"`` therefore rewrites the file.
  A run killed mid-write leaves a ``.<name>.tmp-*`` file that :func:`remove_stale_temp_files` (called
  by ingestion under the lake lock) deletes.
* ``delta``: a Delta table folder ``<layer root>/<table>/`` written with the ``deltalake`` package
  (0.18, Fabric's Python notebooks, to 1.x). A write is one transaction (a new commit file in
  ``_delta_log``): readers keep seeing the previous version until it commits, and a killed writer
  leaves only unreferenced data files, which ``DeltaTable.vacuum`` removes. Streams are staged in a
  parquet file under ``<state>/staging`` first so one pass over Bronze can feed Silver and
  quarantine at once. A table with a key (Silver's row identity) gets each new version as one
  MERGE on the key (changed rows updated, new ones inserted, gone ones deleted), so Delta history
  and time travel show row changes; a keyless table is overwritten. Silver and Gold are stored in
  the types Fabric's SQL analytics endpoint and Direct Lake read (:func:`delta_schema`: no
  ``timestamp_ntz``, naive timestamps tagged UTC, unsigned integers widened, ...; docs/fabric.md).

**One table, one unit.** Ingestion publishes a table's Silver, its quarantine and its state-DB record
together (:func:`publish_unit`): both writers are *staged* (closed and fsynced, nothing visible),
then a manifest ``<state>/publish/<table>.json`` naming the staged files, their targets and the SQL
of the state record is written atomically. That write is the commit point. Then each staged file
is installed (rename, or one Delta commit from the staged file, which is then deleted), the SQL runs
in one transaction and the manifest is deleted. Readers honour a pending manifest: while it exists,
:func:`read_table` and friends read a layer's *staged* file when it is still there (the new
version) and the target otherwise (already installed, also the new version), so from the commit
point on every reader sees the new Silver and quarantine, and before it the previous ones, never
one of each. A run killed after the commit point is finished by the next run, under the lake lock,
before anything else (:func:`recover_publishes`, called by :func:`clean_staging`): installing is
idempotent (a rename whose source is gone was done; a Delta overwrite from the same file gives the
same table, a MERGE of rows the table already holds changes nothing) and the SQL is
``INSERT OR REPLACE``/``UPDATE`` by key. Killed before it, the staged
files are leftovers that :func:`clean_staging` deletes and the previous version stands.

A Delta folder counts as a table only once it has a commit in ``_delta_log``: a first commit killed
half-way leaves a folder that is neither listed nor read (and the next write starts it afresh).
After every Delta write, files no longer referenced and older than ``delta_retention_hours`` are
vacuumed, so a reload does not double the table's size on disk, and every ``delta_optimize_every``
versions small files are compacted and a checkpoint written (the log a reader replays stays
short). Under Fabric's ``/lakehouse/`` mount every call passes the mount options delta-rs documents
(:func:`storage_options`). Writes that meet a full disk or a
read-only folder raise :class:`aims_nb_utils.errors.DiskFullError` / ``ReadOnlyError`` naming the
table and path; a Delta failure is reported as one line (deltalake's Rust panics included).

In Fabric the settings put silver and gold on the lakehouse ``Tables/`` root and default to delta, so
every Silver and Gold table is a managed table the lakehouse lists; quarantine stays under ``Files/``.
Silver and Gold then share one folder: Gold names (FACT_/DIM_) keep them apart.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import (
    AimsError,
    DiskFullError,
    OptionalDependencyError,
    ReadOnlyError,
    free_bytes,
    os_error_as_aims,
)
from .io import (
    TEMP_MARKER,
    atomic_path,
    atomic_write_text,
    remove_stale_temp_files,
    temp_prefix,
    validate_table_name,
)
from .lake_lock import check_run_lock, fault_point
from .settings import Settings

LAYERS = ("silver", "gold", "quarantine")
PARQUET_SUFFIX = ".parquet"
# Rows buffered before a row group is written: keeps quarantine files (a few rows per Bronze batch)
# from becoming thousands of tiny row groups, and memory bounded for Silver.
ROW_GROUP_ROWS = 262_144
STAGING_FOLDER = "staging"
PUBLISH_FOLDER = "publish"
_COMMIT_FILE = re.compile(r"^\d{20}\.(json|checkpoint\.parquet)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StorageError(AimsError):
    """A Silver/Gold/quarantine table cannot be read or written."""

    def __init__(
        self, layer: str, table: str, path: Path | str, problem: str, hint: str | None = None
    ):
        self.layer = layer
        self.table = table
        self.path = str(path)
        super().__init__(f"{layer} table {table} at {path}: {problem}", hint=hint)


def _check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise StorageError(
            layer, "-", "-", f"unknown layer {layer!r}", hint=f"use one of {', '.join(LAYERS)}"
        )
    return layer


def layer_root(settings: Settings, layer: str) -> Path:
    """The folder of a layer (settings decide it: Tables/ in Fabric for silver and gold)."""
    return Path(getattr(settings.paths, _check_layer(layer)))


def table_path(settings: Settings, layer: str, table: str) -> Path:
    """Where a table lives: ``<root>/<table>.parquet`` (parquet) or ``<root>/<table>/`` (delta)."""
    validate_table_name(table)
    root = layer_root(settings, layer)
    if settings.storage_format == "delta":
        return root / table
    return root / f"{table}{PARQUET_SUFFIX}"


def _deltalake():  # noqa: ANN202 - module object
    try:
        import deltalake
    except ImportError:  # pragma: no cover - deltalake is a dependency
        raise OptionalDependencyError("deltalake", "storage_format 'delta'") from None
    return deltalake


# --- Delta tables Fabric's SQL analytics endpoint and Direct Lake read ---------------------------

# Layers whose Delta tables Fabric's SQL analytics endpoint and Direct Lake read (Tables/); the
# quarantine lives under Files/ and keeps its Bronze types and its list of failed rules.
FABRIC_LAYERS = ("silver", "gold")
# A Delta column name without column mapping may not hold these (deltalake 0.18 cannot write
# column mapping, and the SQL endpoint reads it only in preview); T-SQL names are <= 128 chars.
DELTA_NAME_FORBIDDEN = " ,;{}()\n\t="
SQL_NAME_MAX = 128
_UNSIGNED_WIDER = {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}


def delta_type(arrow_type: pa.DataType, nested_as_text: bool = True) -> pa.DataType:
    """The Arrow type a Silver/Gold column is stored with in Delta, so that Fabric's SQL analytics
    endpoint and Direct Lake show it (their list: long, integer, short, byte, boolean, double,
    float, decimal, date, timestamp, string, binary; docs/fabric.md has the table).

    Every timestamp becomes timestamp[us, UTC]: Delta's TIMESTAMP (an instant), because the
    endpoint does not read TIMESTAMP_NTZ. A naive Silver timestamp is on the UTC clock already
    (typing converts offsets to UTC), so its values are unchanged, only tagged UTC. Unsigned
    integers widen to the next signed type (uint64 to decimal(20, 0)), time and types Delta or
    the endpoint lack (duration as its count, intervals, nested values as JSON) become text.
    ``nested_as_text=False`` (the quarantine, which the endpoint does not read) keeps lists,
    structs and maps: Delta stores them."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        return delta_type(t.value_type, nested_as_text)
    if pa.types.is_nested(t) and not nested_as_text:
        return t
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_unsigned_integer(t):
        return _UNSIGNED_WIDER.get(t.bit_width, pa.decimal128(20, 0))
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return t
    if pa.types.is_floating(t):
        return pa.float32() if t == pa.float16() else t
    if pa.types.is_decimal(t):
        return pa.decimal128(t.precision, t.scale) if t.precision <= 38 else pa.string()
    if pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    return pa.string()  # string, large_string, time, interval, null, nested


def delta_schema(schema: pa.Schema, layer: str = "silver", table: str = "-") -> pa.Schema:
    """``schema`` as stored in Delta for ``layer`` (:func:`delta_type`); in Silver and Gold a
    column name the SQL endpoint cannot show is refused, naming it."""
    if layer not in FABRIC_LAYERS:  # quarantine: only what Delta itself cannot store changes
        return pa.schema([pa.field(f.name, delta_type(f.type, False)) for f in schema])
    for name in schema.names:
        bad = sorted({c for c in name if c in DELTA_NAME_FORBIDDEN})
        if bad or not name or len(name) > SQL_NAME_MAX:
            problem = (
                f"column {name!r} has {' '.join(repr(c) for c in bad)}"
                if bad
                else f"column {name!r} is empty or longer than {SQL_NAME_MAX} characters"
            )
            raise StorageError(
                layer,
                table,
                "-",
                f"{problem}: a Delta table Fabric's SQL endpoint reads cannot hold that name",
                hint="rename the column in the Bronze export (letters, digits and _ are safe)",
            )
    return pa.schema([pa.field(f.name, delta_type(f.type)) for f in schema])


def _json_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pa.array(
        [None if v is None else json.dumps(v, default=str) for v in values.to_pylist()],
        pa.string(),
    )


def _as_delta_column(values: pa.Array | pa.ChunkedArray, target: pa.DataType) -> Any:
    source = values.type
    if source == target:
        return values
    if pa.types.is_dictionary(source):
        values = pc.cast(values, source.value_type)
        source = values.type
    if target == pa.string() and (
        pa.types.is_nested(source) or pa.types.is_interval(source) or pa.types.is_decimal(source)
    ):
        if pa.types.is_decimal(source):  # decimal256 beyond 38 digits: its exact text
            return pc.cast(values, pa.string())
        return _json_text(values)
    if source == pa.float16():  # pyarrow < 16 has no cast kernel from half floats
        numbers = values.to_numpy(zero_copy_only=False).astype("float32")
        nulls = pc.is_null(values).to_numpy(zero_copy_only=False)
        return pa.array(numbers, target, mask=nulls)
    return pc.cast(values, target, safe=not pa.types.is_timestamp(source))  # ns -> us truncates


def to_delta(
    data: pa.Table | pa.RecordBatch, layer: str = "silver", table: str = "-"
) -> pa.Table | pa.RecordBatch:
    """Rows in the types :func:`delta_schema` gives (identity when nothing changes)."""
    target = delta_schema(data.schema, layer, table)
    if target.equals(data.schema):
        return data
    columns = [_as_delta_column(data.column(i), f.type) for i, f in enumerate(target)]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=target)
    return pa.Table.from_arrays(columns, schema=target)


def stored_form(
    settings: Settings, layer: str, data: pa.Table | pa.RecordBatch, table: str = "-"
) -> pa.Table | pa.RecordBatch:
    """Rows as a table of this layer stores and reads them back in the current format."""
    if settings.storage_format != "delta":
        return data
    return to_delta(data, layer, table)


def _is_delta(path: Path) -> bool:
    """A Delta table with at least one commit (see the module doc)."""
    log = path / "_delta_log"
    try:
        return any(_COMMIT_FILE.match(entry.name) for entry in os.scandir(log))
    except (FileNotFoundError, NotADirectoryError):
        return False


def table_exists(settings: Settings, layer: str, table: str) -> bool:
    if _pending_file(settings, layer, table) is not None:
        return True
    path = table_path(settings, layer, table)
    if settings.storage_format == "delta":
        return _is_delta(path)
    return path.is_file()


def list_tables(settings: Settings, layer: str) -> list[str]:
    """Tables of a layer in the current storage format, sorted (temporary files excluded)."""
    root = layer_root(settings, layer)
    names = [t for t in _pending_tables(settings) if _pending_file(settings, layer, t)]
    if not root.is_dir():
        return sorted(set(names))
    for path in sorted(root.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if settings.storage_format == "delta":
            if path.is_dir() and _is_delta(path):
                names.append(path.name)
        elif path.is_file() and path.suffix == PARQUET_SUFFIX and TEMP_MARKER not in path.name:
            names.append(path.stem)
    return sorted(set(names))


def _missing(layer: str, table: str, path: Path) -> StorageError:
    return StorageError(
        layer,
        table,
        path,
        "does not exist",
        hint=(
            "run `python -m aims_nb_utils ingest-all` first"
            if layer != "gold"
            else "build Gold first"
        ),
    )


def _dataset(settings: Settings, layer: str, table: str):  # noqa: ANN202 - pyarrow dataset
    import pyarrow.dataset as ds

    path = table_path(settings, layer, table)
    for _attempt in range(3):  # a publish may install the staged file while we open it
        staged = _pending_file(settings, layer, table)
        try:
            if staged is not None:  # committed, not installed yet: the new version is here
                return ds.dataset(staged, format="parquet")
            if not table_exists(settings, layer, table):
                raise _missing(layer, table, path)
            if settings.storage_format == "delta":
                return _delta_table(path).to_pyarrow_dataset()
            return ds.dataset(path, format="parquet")
        except FileNotFoundError:
            continue
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow and deltalake raise their own types
            raise StorageError(layer, table, path, f"cannot be read: {_one_line(exc)}") from None
    raise StorageError(layer, table, path, "kept changing while being opened", hint="retry")


def read_table(
    settings: Settings, layer: str, table: str, columns: list[str] | None = None
) -> pa.Table:
    """Read a whole table (or some columns); errors name the layer, table and path."""
    dataset = _dataset(settings, layer, table)
    missing = [c for c in columns or [] if c not in dataset.schema.names]
    if missing:
        raise StorageError(
            layer,
            table,
            table_path(settings, layer, table),
            f"has no column(s) {', '.join(missing)}",
            hint=f"available: {', '.join(dataset.schema.names)}",
        )
    return dataset.to_table(columns=columns)


def table_schema(settings: Settings, layer: str, table: str) -> pa.Schema:
    return _dataset(settings, layer, table).schema


def count_rows(settings: Settings, layer: str, table: str) -> int:
    """Row count from metadata (no data read)."""
    return int(_dataset(settings, layer, table).count_rows())


def iter_batches(
    settings: Settings,
    layer: str,
    table: str,
    columns: list[str] | None = None,
    batch_size: int = 131_072,
) -> Iterator[pa.RecordBatch]:
    """Stream a table in record batches, so rewriting a big table never holds it all in memory."""
    dataset = _dataset(settings, layer, table)
    yield from dataset.to_batches(columns=columns, batch_size=batch_size)


def delete_table(settings: Settings, layer: str, table: str) -> bool:
    """Remove a table (used by tests and by a user resetting a layer); True when it existed."""
    path = table_path(settings, layer, table)
    if path.is_dir():
        shutil.rmtree(path)
        return True
    if path.is_file():
        path.unlink()
        return True
    return False


class TableWriter:
    """Stream record batches into one table and publish them in one atomic step.

    Nothing is visible until :meth:`commit`; :meth:`abort` (or leaving a ``with`` block with an
    exception, or without committing) discards everything written. Ingestion opens the Silver and
    the quarantine writer side by side, checks its invariants, then commits both.

    ``key`` is the table's row identity: a Delta table with one is updated by a MERGE on it (only
    changed rows rewritten, history and time travel show them); without one it is overwritten.
    In Delta, Silver and Gold rows are stored in the types :func:`delta_schema` gives.
    """

    def __init__(
        self,
        settings: Settings,
        layer: str,
        table: str,
        schema: pa.Schema,
        key: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.layer = _check_layer(layer)
        self.table = validate_table_name(table)
        self.key = tuple(key)
        self.schema = (
            delta_schema(schema, layer, table) if settings.storage_format == "delta" else schema
        )
        self.target = table_path(settings, layer, table)
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._done = False
        try:
            if settings.storage_format == "delta":
                staging = Path(settings.paths.state) / STAGING_FOLDER
                staging.mkdir(parents=True, exist_ok=True)
                prefix = temp_prefix(f"{layer}.{table}{PARQUET_SUFFIX}")
                fd, name = tempfile.mkstemp(prefix=prefix, dir=staging)
            else:
                self.target.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(
                    prefix=temp_prefix(self.target.name), dir=self.target.parent
                )
            os.close(fd)
            self._tmp = Path(name)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        except OSError as exc:
            raise self._os_error(exc) from None

    def _os_error(self, exc: OSError) -> AimsError:
        return os_error_as_aims(exc, self.target, f"write {self.layer} table {self.table}")

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows (cast to the writer's schema; a mismatch names the table)."""
        if self._done:
            raise StorageError(self.layer, self.table, self.target, "writer is already closed")
        if data.num_rows == 0:
            return
        if data.schema != self.schema:
            try:
                if isinstance(data, pa.RecordBatch):  # RecordBatch.cast needs pyarrow 16
                    data = pa.Table.from_batches([data])
                data = stored_form(self.settings, self.layer, data.select(self.schema.names))
                data = data.cast(self.schema)
            except (KeyError, pa.ArrowException) as exc:
                raise StorageError(
                    self.layer, self.table, self.target, f"rows do not fit the table schema: {exc}"
                ) from None
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        self._buffer.extend(batches)
        self._buffered += data.num_rows
        self.rows += data.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            try:
                self._flush()
            except OSError as exc:
                raise self._os_error(exc) from None

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_batches(self._buffer, schema=self.schema))
        self._buffer, self._buffered = [], 0

    def stage(self) -> StagedTable:
        """Close and fsync the rows written, publish nothing: :func:`publish_unit` installs them."""
        if self._done:
            raise StorageError(self.layer, self.table, self.target, "writer is already closed")
        try:
            self._flush()
            self._writer.close()
            with open(self._tmp, "rb") as handle:
                os.fsync(handle.fileno())
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self._os_error(exc) from None
            raise
        self._done = True
        return StagedTable(self.layer, self.table, str(self._tmp), str(self.target), list(self.key))

    def commit(self) -> Path:
        """Publish this table alone: rename over the parquet file, or one Delta transaction."""
        staged = self.stage()
        try:
            _install(self.settings, staged)
        except BaseException:
            Path(staged.staged).unlink(missing_ok=True)
            raise
        return self.target

    def abort(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - closing a half-written file may fail; we delete it
                pass
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()


def _one_line(exc: BaseException) -> str:
    """An exception as one readable line (deltalake's Rust panics carry ANSI codes and a trace)."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _delta_failure(
    exc: BaseException, settings: Settings, layer: str, table: str, path: Path
) -> AimsError:
    """The AimsError for a failed Delta write: a full disk named as such, else one clean line."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_error_as_aims(exc, path, f"write {layer} table {table}")
    message = _one_line(exc)
    lowered = message.lower()
    free = free_bytes(path)
    if (
        "no space left" in lowered
        or "os error 28" in lowered
        or (free is not None and free < 2**20)
    ):
        return DiskFullError(path, f"write {layer} table {table}")
    if "read-only" in lowered or "permission denied" in lowered or "os error 13" in lowered:
        return ReadOnlyError(path, f"write {layer} table {table}")
    return StorageError(
        layer, table, path, f"Delta write failed: {message}", hint="the previous version was kept"
    )


def _delta_call(settings: Settings, layer: str, table: str, path: Path, call: Any) -> Any:
    """Run a deltalake call, turning any failure (a Rust panic is a BaseException) into words."""
    try:
        return call()
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - pyo3 PanicException derives from BaseException
        raise _delta_failure(exc, settings, layer, table, path) from None


# Fabric mounts the default lakehouse at /lakehouse/default through a file system that cannot
# rename without replacing; delta-rs documents MOUNT_ALLOW_UNSAFE_RENAME for such mounts. It is
# safe here because one run at a time writes a lake (the lake lock).
FABRIC_MOUNT = "/lakehouse/"
MOUNT_OPTIONS = {"MOUNT_ALLOW_UNSAFE_RENAME": "true"}


@functools.cache
def _accepts(function: Any, name: str) -> bool:
    """Whether the installed deltalake's ``function`` takes ``name`` (0.18 in Fabric's Python
    notebooks, 1.x locally: ``engine`` and vacuum's ``full`` exist in only one of them)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False


def storage_options(path: Path | str) -> dict[str, str] | None:
    """The deltalake storage options for a table path: the mount options under Fabric's
    ``/lakehouse/`` mount (docs/fabric.md), none elsewhere."""
    return dict(MOUNT_OPTIONS) if str(path).startswith(FABRIC_MOUNT) else None


def _delta_table(path: Path, version: int | None = None) -> Any:
    deltalake = _deltalake()
    return deltalake.DeltaTable(str(path), version=version, storage_options=storage_options(path))


def _write_options(path: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"storage_options": storage_options(path)}
    if _accepts(_deltalake().write_deltalake, "engine"):  # 0.x: the Rust writer (mounts, schema)
        options["engine"] = "rust"
    return options


def _last_checkpoint(path: Path) -> int:
    """The version of the table's latest checkpoint (-1: none), from ``_last_checkpoint``."""
    try:
        return int(json.loads((path / "_delta_log" / "_last_checkpoint").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _maintain(settings: Settings, layer: str, table: str, path: Path) -> None:
    """Keep a table small after a write (docs/fabric.md, "Maintenance"): vacuum the data
    files no version within ``delta_retention_hours`` uses, and every ``delta_optimize_every``
    versions compact small files (merges add some), write a checkpoint and drop expired log files.
    """
    hours = float(settings.values.get("delta_retention_hours", 168.0))
    every = int(settings.values.get("delta_optimize_every", 0) or 0)
    try:
        delta = _delta_table(path)
        if every and delta.version() - _last_checkpoint(path) >= every:
            delta.optimize.compact()
            delta = _delta_table(path)
            delta.create_checkpoint()
            delta.cleanup_metadata()
        options: dict[str, Any] = {"dry_run": False, "enforce_retention_duration": False}
        if _accepts(type(delta).vacuum, "full"):  # also files no commit ever referenced
            options["full"] = True
        delta.vacuum(retention_hours=int(hours), **options)
    except Exception:  # noqa: BLE001 - housekeeping: the write itself succeeded
        pass


def _fresh_delta_folder(path: Path) -> None:
    """A folder with a _delta_log but no commit is a first write that was killed: start afresh."""
    if path.is_dir() and not _is_delta(path):
        shutil.rmtree(path)


def _keeps_ntz_protocol(path: Path, schema: pa.Schema) -> bool:
    """Whether the table is one an earlier version wrote with ``timestamp_ntz`` columns that
    ``schema`` no longer has: its protocol still lists the timestampNtz feature (a protocol is
    never downgraded), which the SQL endpoint does not support, so it is rewritten afresh."""
    if not _is_delta(path) or any(pa.types.is_timestamp(t) and t.tz is None for t in schema.types):
        return False
    try:
        protocol = _delta_table(path).protocol()
    except Exception:  # noqa: BLE001 - unreadable: the write reports it
        return False
    features = set(protocol.reader_features or []) | set(protocol.writer_features or [])
    return "timestampNtz" in features


def _write_delta(
    path: Path,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    settings: Settings | None = None,
    layer: str = "silver",
    table: str = "-",
) -> None:
    """Replace the table's rows (and schema) with ``batches``: one WRITE commit. A table whose
    protocol keeps a feature the endpoint lacks is written as a new table beside it and swapped
    in by two renames (a one-time migration of tables earlier versions wrote)."""
    deltalake = _deltalake()
    path.parent.mkdir(parents=True, exist_ok=True)
    _fresh_delta_folder(path)
    fresh = _keeps_ntz_protocol(path, schema)
    target = path.with_name(temp_prefix(path.name) + "fresh") if fresh else path
    batches = iter(batches)
    first = next((batch for batch in batches if batch.num_rows), None)
    if first is None and _accepts(deltalake.write_deltalake, "engine"):
        # deltalake 0.x's Rust writer refuses no rows: CREATE OR REPLACE the table, empty.
        def write() -> Any:
            return deltalake.DeltaTable.create(
                str(target),
                schema=schema,
                mode="overwrite",
                storage_options=storage_options(target),
            )

    else:
        reader = pa.RecordBatchReader.from_batches(
            schema, itertools.chain([first] if first is not None else [], batches)
        )

        def write() -> Any:
            return deltalake.write_deltalake(
                str(target),
                reader,
                mode="overwrite",
                schema_mode="overwrite",
                **_write_options(target),
            )

    _delta_call(settings, layer, table, path, write)
    if fresh:
        aside = path.with_name(temp_prefix(path.name) + "old")
        os.replace(path, aside)
        os.replace(target, path)
        shutil.rmtree(aside, ignore_errors=True)
    if settings is not None:
        _maintain(settings, layer, table, path)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _comparable(arrow_type: pa.DataType) -> str:
    """A type as Delta stores it (string and large_string alike, any timestamp an instant)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp" if arrow_type.tz else "timestamp_ntz"
    if pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_large_list(arrow_type):
        return f"list<{_comparable(arrow_type.value_type)}>"
    if pa.types.is_list(arrow_type):
        return f"list<{_comparable(arrow_type.value_type)}>"
    return str(arrow_type)


def _mergeable(path: Path, schema: pa.Schema, key: Sequence[str]) -> bool:
    """A MERGE on ``key`` can bring the table to ``schema``'s rows: the table exists with the
    same columns and types (a schema change is a WRITE with the new schema)."""
    if not key or not set(key) <= set(schema.names) or not _is_delta(path):
        return False
    try:
        current = _delta_table(path).to_pyarrow_dataset().schema
    except Exception:  # noqa: BLE001 - unreadable: the overwrite path reports it
        return False
    return {f.name: _comparable(f.type) for f in current} == {
        f.name: _comparable(f.type) for f in schema
    }


_DELETE = "__aims_merge_delete"  # marks a source row that deletes its key


def _source_rows(source: Path | pa.Table, rows: np.ndarray) -> pa.Table:
    """The rows at ``rows`` (sorted positions) of a staged file or table, read batch by batch."""
    if isinstance(source, pa.Table):
        return source.take(pa.array(rows, pa.int64()))
    parts, offset = [], 0
    parquet = pq.ParquetFile(source)
    for batch in parquet.iter_batches():
        lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(rows[lo:hi] - offset, pa.int64())))
        offset += batch.num_rows
    return pa.Table.from_batches(parts, schema=parquet.schema_arrow)


def _changes(
    path: Path, source: Path | pa.Table, schema: pa.Schema, key: Sequence[str]
) -> pa.Table:
    """The MERGE source that turns the table into ``source``: rows new or changed (compared by a
    hash of all their values, DuckDB's, computed while streaming both sides) and, flagged
    ``_DELETE``, the keys the table has and ``source`` has not. Empty when nothing changed."""
    import duckdb

    columns = ", ".join(_quoted(c) for c in schema.names)
    keys = ", ".join(_quoted(k) for k in key)
    same_key = " AND ".join(f"s.{_quoted(k)} IS NOT DISTINCT FROM t.{_quoted(k)}" for k in key)
    con = duckdb.connect()
    try:
        con.register("target_rows", _delta_table(path).to_pyarrow_dataset())
        if isinstance(source, pa.Table):
            positions = pa.array(np.arange(source.num_rows, dtype=np.int64))
            con.register("source_rows", source.append_column("__aims_pos", positions))
            position = '"__aims_pos"'
        else:
            con.read_parquet(str(source), file_row_number=True).create_view("source_rows")
            position = "file_row_number"
        changed = con.execute(
            f"SELECT s.__aims_pos FROM (SELECT {position} AS __aims_pos, {keys},"
            f" hash({columns}) AS __aims_h FROM source_rows) AS s ANTI JOIN"
            f" (SELECT {keys}, hash({columns}) AS __aims_h FROM target_rows) AS t"
            f" ON {same_key} AND s.__aims_h = t.__aims_h ORDER BY 1"
        ).fetchnumpy()["__aims_pos"]
        gone = con.execute(
            f"SELECT {keys} FROM (SELECT {keys} FROM target_rows) AS t ANTI JOIN"
            f" (SELECT {keys} FROM source_rows) AS s ON {same_key}"
        ).arrow()
    finally:
        con.close()
    if hasattr(gone, "read_all"):  # newer DuckDB returns a reader
        gone = gone.read_all()
    rows = _source_rows(source, np.asarray(changed, dtype=np.int64)).select(schema.names)
    rows = rows.cast(schema).append_column(_DELETE, pa.array([False] * rows.num_rows, pa.bool_()))
    deletions = pa.table(
        {
            f.name: (
                pc.cast(gone.column(f.name), f.type)
                if f.name in key
                else pa.nulls(gone.num_rows, f.type)
            )
            for f in schema
        }
    ).append_column(_DELETE, pa.array([True] * gone.num_rows, pa.bool_()))
    return pa.concat_tables([rows, deletions.cast(rows.schema)])


def _merge_delta(
    path: Path,
    source: Path | pa.Table,
    schema: pa.Schema,
    key: Sequence[str],
    settings: Settings,
    layer: str,
    table: str,
) -> None:
    """Make the table's rows ``source``'s with one MERGE on ``key``: only the rows that changed
    are the merge's source (see :func:`_changes`), so a load that changed a few rows rewrites
    only the files holding them. Nothing changed: no commit (recovery of a killed publish that
    installs the same rows again relies on it). ``key`` is unique in ``source`` (ingestion's
    invariant; :func:`write_table` checks it)."""
    on = " AND ".join(f"t.{_quoted(k)} = s.{_quoted(k)}" for k in key)
    values = {_quoted(c): f"s.{_quoted(c)}" for c in schema.names}

    def merge() -> Any:
        changes = _changes(path, source, schema, key)
        if not changes.num_rows:
            return None
        merger = _delta_table(path).merge(changes, predicate=on, source_alias="s", target_alias="t")
        merger = merger.when_matched_delete(predicate=f"s.{_DELETE}")
        merger = merger.when_matched_update(updates=values, predicate=f"NOT s.{_DELETE}")
        merger = merger.when_not_matched_insert(updates=values, predicate=f"NOT s.{_DELETE}")
        return merger.execute()

    if _delta_call(settings, layer, table, path, merge) is not None:
        _maintain(settings, layer, table, path)


def _publish_delta(
    settings: Settings,
    path: Path,
    source: Path | pa.Table,
    layer: str,
    table: str,
    key: Sequence[str] = (),
) -> str:
    """Install ``source`` (a staged parquet file or a table) as the Delta table's new version:
    a MERGE on its key, else a whole-table WRITE. Returns 'merge' or 'overwrite'."""
    if isinstance(source, pa.Table):
        schema, batches = source.schema, source.to_batches()
    else:
        schema, batches = pq.read_schema(source), pq.ParquetFile(source).iter_batches()
    if _mergeable(path, schema, key):
        _merge_delta(path, source, schema, key, settings, layer, table)
        return "merge"
    _write_delta(path, batches, schema, settings, layer, table)
    return "overwrite"


# --- publishing a table as one unit -------------------------------------------------------------


@dataclass(frozen=True)
class StagedTable:
    """A layer's new version of a table, written and fsynced but not visible yet."""

    layer: str
    table: str
    staged: str  # the staged parquet file
    target: str  # where it is installed
    key: list[str] = field(default_factory=list)  # Delta: MERGE on it (empty: overwrite)


def _publish_dir(settings: Settings) -> Path:
    return Path(settings.paths.state) / PUBLISH_FOLDER


def _manifest_path(settings: Settings, table: str) -> Path:
    return _publish_dir(settings) / f"{validate_table_name(table)}.json"


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _pending_tables(settings: Settings) -> list[str]:
    folder = _publish_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))


def _pending_file(settings: Settings, layer: str, table: str) -> Path | None:
    """The staged file a committed, not yet installed publish holds for this layer, if any."""
    path = _publish_dir(settings) / f"{table}.json"
    if not path.is_file():  # one stat per read when nothing is pending
        return None
    manifest = _read_manifest(path)
    for entry in (manifest or {}).get("tables", []):
        if entry.get("layer") == layer:
            staged = Path(entry["staged"])
            return staged if staged.is_file() else None
    return None


def _install(settings: Settings, staged: StagedTable) -> None:
    """Make a staged version the table's current one; a no-op when it was installed already."""
    source, target = Path(staged.staged), Path(staged.target)
    if not source.is_file():
        return
    if settings.storage_format == "delta":
        _publish_delta(settings, target, source, staged.layer, staged.table, staged.key or ())
        source.unlink(missing_ok=True)
        return
    try:
        os.replace(source, target)
    except FileNotFoundError:  # installed meanwhile
        return
    except OSError as exc:
        raise os_error_as_aims(
            exc, target, f"publish {staged.layer} table {staged.table}"
        ) from None


def _complete(settings: Settings, manifest: dict[str, Any], path: Path | None) -> None:
    from . import state

    table = manifest["table"]
    for entry in manifest.get("tables", []):
        _install(settings, StagedTable(**entry))
        fault_point("publish.installed", f"{table}.{entry['layer']}")
    statements = manifest.get("statements") or []
    if statements:
        with state.connect(settings.paths.state_db) as conn:  # one transaction
            for ddl in manifest.get("ddl") or []:
                conn.executescript(ddl)
            for sql, params in statements:
                conn.execute(sql, params)
    fault_point("publish.recorded", table)
    if path is not None:
        path.unlink(missing_ok=True)


def publish_unit(
    settings: Settings,
    table: str,
    staged: Sequence[StagedTable],
    statements: Sequence[tuple[str, Sequence[Any]]] = (),
    ddl: Sequence[str] = (),
) -> None:
    """Publish the staged layers of one table and its state record as one unit (module doc).

    ``statements`` are (sql, params) run in one transaction on the state DB after ``ddl``; they
    must be idempotent (they may run again when a killed publish is finished by the next run).
    Before the commit point a failure removes the staged files and the previous version stands.
    """
    path = _manifest_path(settings, table)
    if not staged:  # only the state record: its one transaction is the unit
        check_run_lock(settings, table)
        _complete(settings, {"table": table, "statements": statements, "ddl": ddl}, None)
        return
    manifest = {
        "table": table,
        "pid": os.getpid(),
        "tables": [asdict(s) for s in staged],
        "statements": [[sql, list(params)] for sql, params in statements],
        "ddl": list(ddl),
    }
    try:
        check_run_lock(settings, table)
        fault_point("publish.before_commit", table)
        atomic_write_text(path, json.dumps(manifest, default=str) + "\n")  # the commit point
    except BaseException:
        for entry in staged:
            Path(entry.staged).unlink(missing_ok=True)
        raise
    fault_point("publish.committed", table)
    _complete(settings, manifest, path)


def recover_publishes(settings: Settings) -> list[str]:
    """Finish the publishes a killed run committed but did not complete; return their tables.

    Call it only while holding the lake lock (as :func:`clean_staging` does)."""
    done = []
    for table in _pending_tables(settings):
        path = _publish_dir(settings) / f"{table}.json"
        manifest = _read_manifest(path)
        if manifest is None:  # the manifest write is atomic: an unreadable one is not ours
            path.unlink(missing_ok=True)
            continue
        _complete(settings, manifest, path)
        done.append(table)
    return done


def write_table(
    settings: Settings,
    layer: str,
    table: str,
    data: pa.Table,
    mode: str = "overwrite",
    key: Sequence[str] = (),
) -> Path:
    """Write a whole table atomically; ``mode`` is 'overwrite' or 'append' (columns may differ:
    missing ones become null). Returns the table's path.

    In Delta, an overwrite of a table with a ``key`` (unique in ``data``) is a MERGE on it, so
    the table's history shows which rows changed; Silver and Gold are stored in the types
    :func:`delta_schema` gives."""
    if mode not in ("overwrite", "append"):
        raise StorageError(
            layer, table, "-", f"unknown mode {mode!r}", hint="use overwrite or append"
        )
    target = table_path(settings, layer, table)
    if settings.storage_format == "delta":
        deltalake = _deltalake()
        data = to_delta(data, layer, table)
        target.parent.mkdir(parents=True, exist_ok=True)
        _fresh_delta_folder(target)
        if mode == "overwrite" or (data.num_rows == 0 and not _is_delta(target)):
            _check_unique(layer, table, target, data, key)
            _publish_delta(settings, target, data, layer, table, key)
            return target
        if data.num_rows == 0:  # nothing to append (deltalake 0.x's Rust writer refuses it)
            return target
        _delta_call(
            settings,
            layer,
            table,
            target,
            lambda: deltalake.write_deltalake(
                str(target), data, mode=mode, schema_mode="merge", **_write_options(target)
            ),
        )
        _maintain(settings, layer, table, target)
        return target
    if mode == "append" and target.is_file():
        previous = pq.read_table(target)
        data = pa.concat_tables([previous, data], promote_options="permissive")
    with atomic_path(target) as tmp:
        pq.write_table(data, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS * 4)
    return target


def _check_unique(layer: str, table: str, path: Path, data: pa.Table, key: Sequence[str]) -> None:
    if not key:
        return
    missing = [k for k in key if k not in data.column_names]
    if missing:
        raise StorageError(layer, table, path, f"key column(s) {', '.join(missing)} missing")
    groups = data.group_by(list(key)).aggregate([([], "count_all")])
    twins = pc.sum(pc.greater(groups.column("count_all"), 1)).as_py() or 0
    if twins:
        raise StorageError(
            layer,
            table,
            path,
            f"{twins:,} value(s) of the key ({', '.join(key)}) occur more than once",
            hint="a MERGE needs one row per key: fix the key or the rows",
        )


def clean_staging(settings: Settings) -> list[Path]:
    """Finish committed publishes of a killed run, then remove what killed runs left: temp files
    beside parquet tables, staged Delta streams, and temp files in the rule and results folders
    whose writer is gone.

    Call it only while holding the lake lock (a running writer's temp file looks the same)."""
    recover_publishes(settings)
    removed: list[Path] = []
    for layer in LAYERS:
        root = layer_root(settings, layer)
        for path in root.glob(f".*{TEMP_MARKER}*") if root.is_dir() else []:
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
            elif path.is_dir():  # a Delta table written beside its old version (_write_delta)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    staging = Path(settings.paths.state) / STAGING_FOLDER
    for path in staging.glob(f"*{TEMP_MARKER}*") if staging.is_dir() else []:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    for folder in (settings.paths.rules, settings.paths.results, _publish_dir(settings)):
        removed += remove_stale_temp_files(folder)
    return removed
