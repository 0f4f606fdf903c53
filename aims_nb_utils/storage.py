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
same table) and the SQL is ``INSERT OR REPLACE``/``UPDATE`` by key. Killed before it, the staged
files are leftovers that :func:`clean_staging` deletes and the previous version stands.

A Delta folder counts as a table only once it has a commit in ``_delta_log``: a first commit killed
half-way leaves a folder that is neither listed nor read (and the next write starts it afresh).
After every Delta write, files no longer referenced and older than ``delta_retention_hours`` are
vacuumed, so a reload does not double the table's size on disk. Writes that meet a full disk or a
read-only folder raise :class:`aims_nb_utils.errors.DiskFullError` / ``ReadOnlyError`` naming the
table and path; a Delta failure is reported as one line (deltalake's Rust panics included).

In Fabric the settings put silver and gold on the lakehouse ``Tables/`` root and default to delta, so
every Silver and Gold table is a managed table the lakehouse lists; quarantine stays under ``Files/``.
Silver and Gold then share one folder: Gold names (FACT_/DIM_) keep them apart.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
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


def _write_options(deltalake: Any, options: dict[str, Any], empty: bool) -> dict[str, Any]:
    """``options`` adapted to the installed deltalake's write_deltalake.

    Before 1.0 (Fabric Python notebooks ship 0.18) the default engine is pyarrow, which cannot
    merge schemas, so the Rust engine is asked for; but that one refuses to write no rows, which
    only the pyarrow engine does (it then cannot merge: an empty append keeps the table's schema).
    1.0 kept only the Rust engine, writes empty tables and dropped the ``engine`` argument."""
    major = str(getattr(deltalake, "__version__", "1")).split(".")[0]
    if not major.isdigit() or int(major) >= 1:
        return options
    if not empty:
        return {**options, "engine": "rust"}
    if options.get("schema_mode") == "merge":
        options = {k: v for k, v in options.items() if k != "schema_mode"}
    return {**options, "engine": "pyarrow"}


def _first_rows(batches: Iterable[pa.RecordBatch]) -> tuple[bool, Iterable[pa.RecordBatch]]:
    """Whether ``batches`` holds no row, and the batches to write (the iterator was advanced)."""
    iterator = iter(batches)
    first = next((batch for batch in iterator if batch.num_rows), None)
    if first is None:
        return True, []
    return False, itertools.chain([first], iterator)


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
                return _deltalake().DeltaTable(str(path)).to_pyarrow_dataset()
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
            self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
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
        return StagedTable(self.layer, self.table, str(self._tmp), str(self.target))

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


def _vacuum(settings: Settings, layer: str, table: str, path: Path) -> None:
    """Remove data files the current version no longer needs (see the module doc)."""
    hours = float(settings.values.get("delta_retention_hours", 168.0))
    deltalake = _deltalake()
    try:
        deltalake.DeltaTable(str(path)).vacuum(
            retention_hours=int(hours),
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
        )
    except Exception:  # noqa: BLE001 - vacuum is housekeeping: the write itself succeeded
        pass


def _fresh_delta_folder(path: Path) -> None:
    """A folder with a _delta_log but no commit is a first write that was killed: start afresh."""
    if path.is_dir() and not _is_delta(path):
        shutil.rmtree(path)


def _write_delta(
    path: Path,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    settings: Settings | None = None,
    layer: str = "silver",
    table: str = "-",
) -> None:
    deltalake = _deltalake()
    path.parent.mkdir(parents=True, exist_ok=True)
    _fresh_delta_folder(path)
    empty, batches = _first_rows(batches)
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    options = _write_options(deltalake, {"schema_mode": "overwrite"}, empty)
    _delta_call(
        settings,
        layer,
        table,
        path,
        lambda: deltalake.write_deltalake(str(path), reader, mode="overwrite", **options),
    )
    if settings is not None:
        _vacuum(settings, layer, table, path)


# --- publishing a table as one unit -------------------------------------------------------------


@dataclass(frozen=True)
class StagedTable:
    """A layer's new version of a table, written and fsynced but not visible yet."""

    layer: str
    table: str
    staged: str  # the staged parquet file
    target: str  # where it is installed


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
        _write_delta(
            target,
            pq.ParquetFile(source).iter_batches(),
            pq.read_schema(source),
            settings,
            staged.layer,
            staged.table,
        )
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
        _fresh_delta_folder(target)
        options = {"schema_mode": "overwrite"} if mode == "overwrite" else {"schema_mode": "merge"}
        options = _write_options(deltalake, options, data.num_rows == 0)
        _delta_call(
            settings,
            layer,
            table,
            target,
            lambda: deltalake.write_deltalake(str(target), data, mode=mode, **options),
        )
        _vacuum(settings, layer, table, target)
        return target
    if mode == "append" and target.is_file():
        previous = pq.read_table(target)
        data = pa.concat_tables([previous, data], promote_options="permissive")
    with atomic_path(target) as tmp:
        pq.write_table(data, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS * 4)
    return target


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
    staging = Path(settings.paths.state) / STAGING_FOLDER
    for path in staging.glob(f"*{TEMP_MARKER}*") if staging.is_dir() else []:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    for folder in (settings.paths.rules, settings.paths.results, _publish_dir(settings)):
        removed += remove_stale_temp_files(folder)
    return removed
