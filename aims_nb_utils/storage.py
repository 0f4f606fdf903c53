"""Silver, Gold and quarantine tables on disk: the one place that decides path, format and atomicity.

Layout, by ``settings.storage_format``:

* ``parquet`` (the local default): one file per table, ``<layer root>/<table>.parquet``. Every
  write goes to a temporary file beside the target and replaces it with ``os.replace``, so a reader
  sees the previous file or the new one, never half a file. One file rather than a folder of parts
  because replacing a folder is not atomic on POSIX; ``mode="append"`` therefore rewrites the file.
  A run killed mid-write leaves a ``.<name>.tmp-*`` file that :func:`remove_stale_temp_files` (called
  by ingestion under the lake lock) deletes.
* ``delta``: a Delta table folder ``<layer root>/<table>/`` written with the ``deltalake`` package.
  A write is one transaction (a new commit file in ``_delta_log``): readers keep seeing the previous
  version until it commits, and a killed writer leaves only unreferenced data files, which
  ``DeltaTable.vacuum`` removes. Streams are staged in a parquet file under ``<state>/staging`` first
  so one pass over Bronze can feed Silver and quarantine at once.

In Fabric the settings put silver and gold on the lakehouse ``Tables/`` root and default to delta, so
every Silver and Gold table is a managed table the lakehouse lists; quarantine stays under ``Files/``.
Silver and Gold then share one folder: Gold names (FACT_/DIM_) keep them apart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import AimsError, OptionalDependencyError
from .io import TEMP_MARKER, atomic_path, remove_stale_temp_files, validate_table_name
from .settings import Settings

LAYERS = ("silver", "gold", "quarantine")
PARQUET_SUFFIX = ".parquet"
# Rows buffered before a row group is written: keeps quarantine files (a few rows per Bronze batch)
# from becoming thousands of tiny row groups, and memory bounded for Silver.
ROW_GROUP_ROWS = 262_144
STAGING_FOLDER = "staging"


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


def _is_delta(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def table_exists(settings: Settings, layer: str, table: str) -> bool:
    path = table_path(settings, layer, table)
    if settings.storage_format == "delta":
        return _is_delta(path)
    return path.is_file()


def list_tables(settings: Settings, layer: str) -> list[str]:
    """Tables of a layer in the current storage format, sorted (temporary files excluded)."""
    root = layer_root(settings, layer)
    if not root.is_dir():
        return []
    names = []
    for path in sorted(root.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if settings.storage_format == "delta":
            if path.is_dir() and _is_delta(path):
                names.append(path.name)
        elif path.is_file() and path.suffix == PARQUET_SUFFIX and TEMP_MARKER not in path.name:
            names.append(path.stem)
    return names


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
    path = table_path(settings, layer, table)
    if not table_exists(settings, layer, table):
        raise _missing(layer, table, path)
    try:
        if settings.storage_format == "delta":
            return _deltalake().DeltaTable(str(path)).to_pyarrow_dataset()
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet")
    except Exception as exc:  # noqa: BLE001 - pyarrow and deltalake raise their own types
        raise StorageError(layer, table, path, f"cannot be read: {exc}") from None


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
    """

    def __init__(self, settings: Settings, layer: str, table: str, schema: pa.Schema) -> None:
        self.settings = settings
        self.layer = _check_layer(layer)
        self.table = validate_table_name(table)
        self.schema = schema
        self.target = table_path(settings, layer, table)
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._done = False
        if settings.storage_format == "delta":
            staging = Path(settings.paths.state) / STAGING_FOLDER
            staging.mkdir(parents=True, exist_ok=True)
            prefix = f".{layer}.{table}{PARQUET_SUFFIX}{TEMP_MARKER}"
            fd, name = tempfile.mkstemp(prefix=prefix, dir=staging)
        else:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{self.target.name}{TEMP_MARKER}", dir=self.target.parent
            )
        os.close(fd)
        self._tmp = Path(name)
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows (cast to the writer's schema; a mismatch names the table)."""
        if self._done:
            raise StorageError(self.layer, self.table, self.target, "writer is already closed")
        if data.num_rows == 0:
            return
        if data.schema != self.schema:
            try:
                data = data.select(self.schema.names).cast(self.schema)
            except (KeyError, pa.ArrowException) as exc:
                raise StorageError(
                    self.layer, self.table, self.target, f"rows do not fit the table schema: {exc}"
                ) from None
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        self._buffer.extend(batches)
        self._buffered += data.num_rows
        self.rows += data.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_batches(self._buffer, schema=self.schema))
        self._buffer, self._buffered = [], 0

    def commit(self) -> Path:
        """Publish: rename over the parquet file, or commit one Delta transaction."""
        if self._done:
            raise StorageError(self.layer, self.table, self.target, "writer is already closed")
        try:
            self._flush()
            self._writer.close()
            with open(self._tmp, "rb") as handle:
                os.fsync(handle.fileno())
            if self.settings.storage_format == "delta":
                _write_delta(self.target, pq.ParquetFile(self._tmp).iter_batches(), self.schema)
                self._tmp.unlink()
            else:
                os.replace(self._tmp, self.target)
        except BaseException:
            self.abort()
            raise
        self._done = True
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


def _write_delta(path: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> None:
    deltalake = _deltalake()
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    deltalake.write_deltalake(str(path), reader, mode="overwrite", schema_mode="overwrite")


def write_table(
    settings: Settings, layer: str, table: str, data: pa.Table, mode: str = "overwrite"
) -> Path:
    """Write a whole table atomically; ``mode`` is 'overwrite' or 'append' (columns may differ:
    missing ones become null). Returns the table's path."""
    if mode not in ("overwrite", "append"):
        raise StorageError(
            layer, table, "-", f"unknown mode {mode!r}", hint="use overwrite or append"
        )
    target = table_path(settings, layer, table)
    if settings.storage_format == "delta":
        deltalake = _deltalake()
        target.parent.mkdir(parents=True, exist_ok=True)
        options = {"schema_mode": "overwrite"} if mode == "overwrite" else {"schema_mode": "merge"}
        deltalake.write_deltalake(str(target), data, mode=mode, **options)
        return target
    if mode == "append" and target.is_file():
        previous = pq.read_table(target)
        data = pa.concat_tables([previous, data], promote_options="permissive")
    with atomic_path(target) as tmp:
        pq.write_table(data, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS * 4)
    return target


def clean_staging(settings: Settings) -> list[Path]:
    """Remove files a killed run left: temp files beside parquet tables and staged Delta streams.

    Call it only while holding the lake lock (a running writer's temp file looks the same)."""
    removed: list[Path] = []
    for layer in LAYERS:
        root = layer_root(settings, layer)
        for path in root.glob(f".*{TEMP_MARKER}*") if root.is_dir() else []:
            if path.is_file():
                path.unlink()
                removed.append(path)
    removed += remove_stale_temp_files(Path(settings.paths.state) / STAGING_FOLDER)
    return removed
