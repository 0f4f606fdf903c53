"""Bronze lakes of public data nobody on the team wrote: TPC-H, TPC-DS and nycflights13.

The platform must be right on any folder of ``<table>.parquet`` files, not only on the lake its
own generator writes. These builders write such folders from public data sets that PyPI packages
ship, offline: TPC-H and TPC-DS from DuckDB's ``tpch``/``tpcds`` extensions (the extension file
lies inside the ``duckdb-extension-*`` package and is loaded by path, so nothing is downloaded),
and the five nycflights13 tables from the ``nycflights13`` package's CSV files. Each table keeps
the types its source gives it (integers, decimals, dates, text, timestamps), and ``as_text``
writes every column as text instead, as a legacy export would.

Install the packages with the ``public-data`` extra (``pip install -e '.[public-data]'``); the
DuckDB extensions are built for one DuckDB release, which that extra pins.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from .errors import AimsError
from .io import validate_table_name, write_parquet_atomic

DATASETS = ("tpch", "tpcds", "flights")
FLIGHTS_TABLES = ("airlines", "airports", "flights", "planes", "weather")


class PublicDataError(AimsError):
    """A public data set cannot be built here (a package is missing or does not match)."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PublicDataError(
            f"the Python package '{package}' is not installed",
            hint="pip install -e '.[public-data]' (make setup installs it)",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _duckdb_with(extension: str):  # noqa: ANN202 - a duckdb connection
    import duckdb

    package = f"duckdb_extension_{extension}"
    files = sorted(_package_dir(package).rglob(f"{extension}.duckdb_extension"))
    if not files:
        raise PublicDataError(
            f"no {extension}.duckdb_extension file inside the package {package}",
            hint="reinstall it: pip install -e '.[public-data]'",
        )
    connection = duckdb.connect()
    try:
        connection.execute(f"LOAD '{files[-1].as_posix()}'")
    except duckdb.Error as exc:
        connection.close()
        raise PublicDataError(
            f"DuckDB {duckdb.__version__} cannot load {files[-1]}: {str(exc).splitlines()[0]}",
            hint="the extension is built for one DuckDB release: pip install -e '.[public-data]'",
        ) from None
    return connection


def _as_text(table: pa.Table) -> pa.Table:
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.timestamp("us", tz=field.type.tz))
        columns.append(column.cast(pa.string()))
    return pa.table(columns, names=table.column_names)


def _write(tables: dict[str, pa.Table], bronze: Path, as_text: bool) -> dict[str, int]:
    bronze.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, data in sorted(tables.items()):
        validate_table_name(name, "public data set table")
        write_parquet_atomic(_as_text(data) if as_text else data, bronze / f"{name}.parquet")
        rows[name] = data.num_rows
    return rows


def _dbgen_tables(extension: str, call: str) -> dict[str, pa.Table]:
    connection = _duckdb_with(extension)
    try:
        connection.execute(call)
        names = [r[0] for r in connection.execute("SHOW TABLES").fetchall()]
        return {
            name: connection.execute(f'SELECT * FROM "{name}"').to_arrow_table() for name in names
        }
    finally:
        connection.close()


def _flights_tables() -> dict[str, pa.Table]:
    import tempfile
    import zipfile

    import duckdb

    data = _package_dir("nycflights13") / "data"
    connection = duckdb.connect()
    try:
        with tempfile.TemporaryDirectory(prefix="aims-flights-") as scratch:
            tables = {}
            for name in FLIGHTS_TABLES:
                path = data / f"{name}.csv"
                if not path.is_file():  # flights ships zipped; DuckDB reads no zip archives
                    with zipfile.ZipFile(data / f"{name}.csv.zip") as archive:
                        path = Path(archive.extract(archive.namelist()[0], path=scratch))
                # the R export writes missing values as NA
                tables[name] = connection.execute(
                    "SELECT * FROM read_csv(?, header = true, nullstr = 'NA')", [path.as_posix()]
                ).to_arrow_table()
            return tables
    finally:
        connection.close()


def build_lake(
    dataset: str,
    bronze: str | Path,
    scale: float = 0.01,
    as_text: bool = False,
    tables: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write ``dataset`` (tpch, tpcds or flights) as ``<table>.parquet`` files into ``bronze``.

    ``scale`` is the TPC scale factor (ignored by flights, which has one size). Returns the rows
    written per table."""
    if dataset not in DATASETS:
        raise PublicDataError(
            f"unknown public data set '{dataset}'", hint=f"choose one of {', '.join(DATASETS)}"
        )
    if scale <= 0:
        raise PublicDataError(f"scale must be positive, got {scale}")
    if dataset == "tpch":
        built = _dbgen_tables("tpch", f"CALL dbgen(sf={float(scale)})")
    elif dataset == "tpcds":
        built = _dbgen_tables("tpcds", f"CALL dsdgen(sf={float(scale)})")
    else:
        built = _flights_tables()
    if tables is not None:
        built = {name: data for name, data in built.items() if name in set(tables)}
    return _write(built, Path(bronze), as_text)
