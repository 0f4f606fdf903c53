"""Reading and writing lake files safely.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``) so that a
run killed at any moment leaves the previous good file readable. A temporary file's name carries
its writer (a tag of the host and the pid: ``.<name>.tmp-<host>-<pid>-<random>``) so a leftover can
be told from a write in progress without any lock: :func:`remove_stale_temp_files` deletes only
those whose writer is gone. A full disk or a read-only folder is an :class:`AimsError` naming the
file, never a bare OSError. Table names are validated before they become paths so no file name can
write outside the lake; a Bronze file whose name is not a table name is skipped with a warning
(:class:`BronzeNameWarning`) rather than blocking the whole lake.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import BronzeNameWarning, BronzeReadError, TableNameError, os_error_as_aims

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
TEMP_MARKER = ".tmp-"
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_OWNER = re.compile(re.escape(TEMP_MARKER) + r"([0-9a-f]{6})-(\d+)-")
# A temp file of another host is only removed once this old (its writer cannot be checked).
FOREIGN_TEMP_MAX_AGE = 24 * 3600


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file for ``name`` naming its writer (see the module doc)."""
    return f".{name}{TEMP_MARKER}{_HOST_TAG}-{os.getpid()}-"


def _writer_gone(path: Path) -> bool:
    match = _OWNER.search(path.name)
    if match is None:
        return True  # an older naming: only ever written under the lake lock
    host, pid = match.group(1), int(match.group(2))
    if host != _HOST_TAG:
        try:
            return time.time() - path.stat().st_mtime > FOREIGN_TEMP_MAX_AGE
        except FileNotFoundError:
            return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
    from .lake_lock import fault_point

    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), dir=target.parent)
    except OSError as exc:
        raise os_error_as_aims(exc, target, f"write {target.name}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; lake files must be readable like any other file the user writes.
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            fault_point("atomic_replace", target.name)
            os.replace(tmp, target)
        except OSError as exc:
            raise os_error_as_aims(exc, target, f"write {target.name}") from None
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


def remove_stale_temp_files(folder: str | Path, keep: set[Path] | None = None) -> list[Path]:
    """Delete the temporary files under ``folder`` whose writer is gone; return them.

    Safe without any lock: a file whose writer (pid on this host) is alive is left alone, and so
    is anything in ``keep`` (files a pending publish still needs)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(f"*{TEMP_MARKER}*"):
        if path.is_file() and path not in (keep or set()) and _writer_gone(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def list_bronze_tables(bronze_dir: str | Path) -> list[str]:
    """Table names of the parquet files in the Bronze folder (files starting with '_' are metadata).

    A file whose name is not a table name (a space, '..', a leading digit) is skipped with a
    :class:`BronzeNameWarning` naming it and the fix, so one odd file does not stop the lake."""
    bronze_dir = Path(bronze_dir)
    if not bronze_dir.is_dir():
        return []
    names = []
    for path in sorted(bronze_dir.glob("*.parquet")):
        if path.name.startswith(("_", ".")):
            continue
        try:
            names.append(
                validate_table_name(path.stem, origin=f"file name {path.name} gives table")
            )
        except TableNameError as exc:
            fixed = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_") or "table"
            fixed = fixed if fixed[0].isalpha() else f"t_{fixed}"
            warnings.warn(
                f"skipped Bronze file {path}: {exc.message} -> rename it to letters, digits and "
                f"underscores (e.g. {fixed}.parquet) to load it",
                BronzeNameWarning,
                stacklevel=2,
            )
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
