"""Reading and writing lake files safely.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``) so that a
run killed at any moment leaves the previous good file readable. Table names are validated before
they become paths so no file name can write outside the lake.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import BronzeReadError, TableNameError

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
TEMP_MARKER = ".tmp-"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def validate_table_name(name: str, origin: str = "table name") -> str:
    """Return ``name`` if it is a plain identifier, else raise (no '/', '..', spaces, ...)."""
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise TableNameError(str(name), origin)
    return name


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one step."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARKER}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; lake files must be readable like any other file the user writes.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_parquet_atomic(table: pa.Table, target: str | Path, **kwargs: object) -> Path:
    """Write a parquet file atomically (zstd by default)."""
    kwargs.setdefault("compression", "zstd")
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(target)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temporary files a killed run left behind; return what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(f"*{TEMP_MARKER}*"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def list_bronze_tables(bronze_dir: str | Path) -> list[str]:
    """Table names of the parquet files in the Bronze folder (files starting with '_' are metadata)."""
    bronze_dir = Path(bronze_dir)
    if not bronze_dir.is_dir():
        return []
    names = []
    for path in sorted(bronze_dir.glob("*.parquet")):
        if path.name.startswith(("_", ".")):
            continue
        names.append(validate_table_name(path.stem, origin=f"file name {path.name} gives table"))
    return names


def read_bronze(
    bronze_dir: str | Path,
    table: str,
    columns: list[str] | None = None,
    sample_size: int | None = None,
) -> pa.Table:
    """Read one Bronze table (all rows unless ``sample_size`` is given), naming the file on failure."""
    validate_table_name(table)
    path = Path(bronze_dir) / f"{table}.parquet"
    if not path.is_file():
        raise BronzeReadError(
            table, path, "file not found", hint="check AIMS_BRONZE_DIR or run `make init`"
        )
    try:
        if sample_size is not None:
            parquet = pq.ParquetFile(path)
            batches = []
            remaining = sample_size
            for batch in parquet.iter_batches(batch_size=min(remaining, 65536), columns=columns):
                batches.append(batch.slice(0, remaining))
                remaining -= min(remaining, batch.num_rows)
                if remaining <= 0:
                    break
            schema = (
                parquet.schema_arrow
                if columns is None
                else pa.schema([parquet.schema_arrow.field(c) for c in columns])
            )
            return pa.Table.from_batches(batches, schema=schema)
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(table, path, str(exc).splitlines()[0]) from None
