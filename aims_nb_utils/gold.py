"""Silver -> Gold: the asset-inventory star schema that BI reads.

Why a star and why these rules:

* Gold is built only from Silver, and Silver holds only rows that passed the row-level DQ rules
  (ingestion quarantines the rest), so every figure a report shows is traceable to checked data.
  Every Silver row is used; nothing is sampled.
* ``FACT_Asset_Inventory`` has one row per asset and location (``aims_assets`` LEFT JOIN
  ``aims_assetlocations`` on ``ASSETID``): an asset without a location still counts as inventory,
  with ``HAS_LOCATION`` false and its location-derived keys on the Unknown member. Locations whose
  ``ASSETID`` has no Silver asset are not inventory; they are counted in :class:`GoldBuild`.
* Dimensions are keyed by the source IDs (never by names, which are edited and duplicated in
  AIMS) and carry an ``int64`` surrogate key numbered 1..n in natural-key order. Every dimension
  has an ``Unknown`` member with surrogate key ``-1``: a fact row whose natural key is null or
  finds no dimension row points at it, so joins in Power BI never drop rows and the integrity
  check can count exactly how many rows fell back.
* ``DIM_Status`` is a junk dimension over the asset's lifecycle columns (``STATUS``, ``PHASEID``,
  ``STAGEID``): three low-cardinality attributes behind one key instead of three tiny dimensions.
  Phase and stage IDs are checked against ``aims_phases`` / ``aims_stages``; an ID they do not
  know is an unmatched key and becomes an Unknown phase (stage) of that member.
* ``DIM_AssetClass`` resolves the class hierarchy (parent id/name, level from the root, a path of
  codes and names) by walking parent pointers in vectorised steps; a cycle is reported, not looped.
* ``DIM_Date`` is a contiguous calendar over the dates the fact uses (Power BI time intelligence
  needs contiguous dates); keys are ``yyyymmdd`` integers.
* Tables are written with :func:`aims_nb_utils.storage.write_table` in ``settings.storage_format``,
  dimensions first and the fact last. Surrogate keys are positional, so a build killed between
  those writes leaves dimensions that do not match the old fact: :func:`check_integrity` reads
  the written tables back and reports exactly that; rebuilding fixes it.
* Gold says when it does not apply, and never reports an empty build as a success
  (:func:`gold_readiness`). A lake without ``aims_assets`` (the fact's grain) in Bronze or Silver
  is not an AIMS lake: the build is *skipped* with the missing tables named, and nothing is
  written. A source whose Bronze has rows but whose Silver has none (never loaded, the load
  failed, or it was not promoted) is a *failure* naming the table and its last load: Gold would
  otherwise be silently partial. Sources absent from the lake altogether (a partial AIMS lake),
  and the two reference tables that only check IDs, give Unknown members and a note.
* Silver is typed (IDs int64, numbers float64, dates timestamps, flags bool) and Gold takes those
  columns as they are. A column Silver left as text (a rule file without a type rule, an
  'evolve' drift) is parsed by the one shared parser (:mod:`aims_nb_utils.checks`), never by a
  copy of it here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import checks
from .errors import AimsError
from .orchestration import SKIP_KEY
from .settings import Settings

UNKNOWN_KEY = -1
UNKNOWN_LABEL = "Unknown"
MAX_CALENDAR_DAYS = (
    60_000  # ~164 years; beyond that a sentinel date (e.g. 9999-12-31) is in the data
)

FACT = "FACT_Asset_Inventory"
DIM_ROUTE = "DIM_Route"
DIM_ASSETCLASS = "DIM_AssetClass"
DIM_ORGANISATION = "DIM_Organisation"
DIM_DATE = "DIM_Date"
DIM_STATUS = "DIM_Status"
DIMENSIONS = (DIM_ROUTE, DIM_ASSETCLASS, DIM_ORGANISATION, DIM_DATE, DIM_STATUS)
GOLD_TABLES = (*DIMENSIONS, FACT)

ASSETS = "aims_assets"
LOCATIONS = "aims_assetlocations"
ROUTES = "aims_routes"
CLASSES = "aims_assetclasses"
ORGANISATIONS = "aims_organisations"
OWNERS = "aims_owners"
PHASES = "aims_phases"
STAGES = "aims_stages"
SOURCE_TABLES = (ASSETS, LOCATIONS, ROUTES, CLASSES, ORGANISATIONS, OWNERS, PHASES, STAGES)
# Reference tables that only check IDs (no dimension of their own).
REFERENCE_SOURCES = {PHASES: "PHASEID", STAGES: "STAGEID"}

# Which fact column points at which dimension (and that dimension's surrogate key column).
FACT_KEYS: dict[str, tuple[str, str]] = {
    "ROUTE_KEY": (DIM_ROUTE, "ROUTE_KEY"),
    "ASSETCLASS_KEY": (DIM_ASSETCLASS, "ASSETCLASS_KEY"),
    "ORGANISATION_KEY": (DIM_ORGANISATION, "ORGANISATION_KEY"),
    "STATUS_KEY": (DIM_STATUS, "STATUS_KEY"),
    "CREATED_DATE_KEY": (DIM_DATE, "DATE_KEY"),
    "UPDATED_DATE_KEY": (DIM_DATE, "DATE_KEY"),
    "VALID_FROM_DATE_KEY": (DIM_DATE, "DATE_KEY"),
}

# Fact date key -> the aims_assets column it comes from.
FACT_DATES = {
    "CREATED_DATE_KEY": "WHENCREATED",
    "UPDATED_DATE_KEY": "LASTUPDATED",
    "VALID_FROM_DATE_KEY": "VALIDFROM",
}

_I64 = pa.int64()
_STR = pa.string()
_F64 = pa.float64()

SCHEMAS: dict[str, pa.Schema] = {
    DIM_ROUTE: pa.schema(
        [
            ("ROUTE_KEY", _I64),
            ("ROUTE_ID", _I64),
            ("ROUTE_CODE", _STR),
            ("ROUTE_NAME", _STR),
            ("LPO", _STR),
            ("CHAINAGE_UNITS", _STR),
            ("MIN_CHAINAGE", _F64),
            ("MAX_CHAINAGE", _F64),
        ]
    ),
    DIM_ASSETCLASS: pa.schema(
        [
            ("ASSETCLASS_KEY", _I64),
            ("ASSETCLASS_ID", _I64),
            ("ASSETCLASS_CODE", _STR),
            ("ASSETCLASS_NAME", _STR),
            ("PARENT_ASSETCLASS_KEY", _I64),
            ("PARENT_ASSETCLASS_ID", _I64),
            ("PARENT_ASSETCLASS_NAME", _STR),
            ("ROOT_ASSETCLASS_ID", _I64),
            ("ROOT_ASSETCLASS_NAME", _STR),
            ("HIERARCHY_LEVEL", pa.int32()),
            ("HIERARCHY_PATH", _STR),
            ("HIERARCHY_PATH_CODES", _STR),
            ("SOURCE_LEVEL_NUMBER", _F64),
            ("ASSET_LEVEL", _STR),
            ("CLASS_STATUS", _STR),
        ]
    ),
    DIM_ORGANISATION: pa.schema(
        [
            ("ORGANISATION_KEY", _I64),
            ("OWNER_ID", _I64),
            ("OWNER_NAME", _STR),
            ("OWNER_CODE", _STR),
            ("ORGANISATION_ID", _I64),
            ("ORGANISATION_NAME", _STR),
            ("PARENT_ORGANISATION_ID", _I64),
            ("PARENT_ORGANISATION_NAME", _STR),
            ("DEFAULT_ASSET_STATUS", _STR),
        ]
    ),
    DIM_DATE: pa.schema(
        [
            ("DATE_KEY", _I64),
            ("DATE", pa.date32()),
            ("YEAR", pa.int32()),
            ("QUARTER", pa.int32()),
            ("MONTH", pa.int32()),
            ("MONTH_NAME", _STR),
            ("YEAR_MONTH", _STR),
            ("DAY", pa.int32()),
            ("DAY_OF_WEEK", pa.int32()),
            ("DAY_NAME", _STR),
            ("ISO_WEEK", pa.int32()),
            ("IS_WEEKEND", pa.bool_()),
        ]
    ),
    DIM_STATUS: pa.schema(
        [
            ("STATUS_KEY", _I64),
            ("STATUS", _STR),
            ("PHASE_ID", _I64),
            ("PHASE", _STR),
            ("STAGE_ID", _I64),
            ("STAGE", _STR),
        ]
    ),
    FACT: pa.schema(
        [
            ("ASSET_ID", _I64),
            ("LOCATION_ID", _I64),
            ("UNIQUE_ASSET_ID", _STR),
            ("ROUTE_KEY", _I64),
            ("ASSETCLASS_KEY", _I64),
            ("ORGANISATION_KEY", _I64),
            ("STATUS_KEY", _I64),
            ("CREATED_DATE_KEY", _I64),
            ("UPDATED_DATE_KEY", _I64),
            ("VALID_FROM_DATE_KEY", _I64),
            ("HAS_LOCATION", pa.bool_()),
            ("IS_PRIMARY_ASSET", pa.bool_()),
            ("REFERENCE_CHAINAGE", _F64),
            ("OSGB_EASTING", _F64),
            ("OSGB_NORTHING", _F64),
        ]
    ),
}

# Columns read from each Silver source (only these; a missing one becomes null and is reported).
SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    ASSETS: (
        "ID",
        "UNIQUEASSETID",
        "OWNERID",
        "STATUS",
        "PHASEID",
        "PHASE",
        "STAGEID",
        "STAGE",
        "ISPRIMARYASSET",
        "REFERENCECHAINAGE",
        *FACT_DATES.values(),
    ),
    LOCATIONS: ("ID", "ASSETID", "ROUTEID", "ASSETCLASSID", "OSGBEASTING", "OSGBNORTHING"),
    ROUTES: ("ID", "CODE", "DESCRIPTION", "LPO", "CHAINAGEUNITS", "MINIMUM", "MAXIMUM"),
    CLASSES: ("ID", "CODE", "NAME", "PARENTID", "PARENT", "LEVELNUMBER", "ASSETLEVEL", "STATUS"),
    ORGANISATIONS: ("ID", "NAME", "PARENTID", "PARENT", "OWNERID", "OWNER", "DEFAULTASSETSTATUS"),
    OWNERS: ("ID", "NAME", "CODE"),
    PHASES: ("ID", "DESCRIPTION"),
    STAGES: ("ID", "DESCRIPTION"),
}


class GoldBuildError(AimsError):
    """Gold cannot be built from Silver as it is (e.g. a source column has an unusable type)."""

    def __init__(self, table: str, column: str, problem: str, hint: str | None = None) -> None:
        self.table = table
        self.column = column
        super().__init__(f"Gold from Silver table {table}, column {column}: {problem}", hint=hint)


class GoldSourceError(AimsError):
    """Gold applies to this lake but Silver lacks rows its Bronze sources have (loads failed)."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"Gold cannot be built: {problem}",
            hint="load those tables into Silver (notebook 02 or `python -m aims_nb_utils "
            "ingest-all`; `history` shows why a load failed), then rebuild Gold",
        )


class GoldIntegrityError(AimsError):
    """Fact rows do not all resolve their dimensions (or a dimension key is duplicated)."""

    def __init__(self, report: IntegrityReport) -> None:
        failed = [c for c in report.checks if not c.passed]
        self.checks = failed
        detail = "; ".join(
            f"{c.fact_column} -> {c.dimension}: {c.orphan_rows + c.null_keys} orphan rows, "
            f"{c.duplicate_keys} duplicate keys"
            + ("" if c.unknown_member else ", no Unknown member")
            for c in failed
        )
        super().__init__(
            f"Gold integrity check failed for {FACT}: {detail}",
            hint="rebuild Gold (`python -m aims_nb_utils build-gold`); dimensions and fact must "
            "come from the same build",
        )


@dataclass
class SourceInfo:
    """What Gold found in Silver for one source table."""

    table: str
    present: bool
    rows: int
    missing_columns: list[str]
    verdict: str | None  # latest validation verdict (PASSED|FAILED|SKIPPED|ERROR) if known


@dataclass
class DimensionIntegrity:
    """How the fact's rows resolve against one dimension key."""

    fact_column: str
    dimension: str
    fact_rows: int
    matched_rows: int  # rows on a real member (key > 0 and present)
    unknown_rows: int  # rows on the Unknown member (-1)
    orphan_rows: int  # rows whose key is in no dimension row (must be 0)
    null_keys: int  # rows with a null key (must be 0)
    dimension_rows: int
    duplicate_keys: int  # surrogate keys used more than once in the dimension (must be 0)
    unknown_member: bool  # the dimension has its -1 row

    @property
    def passed(self) -> bool:
        return (
            self.orphan_rows == 0
            and self.null_keys == 0
            and self.duplicate_keys == 0
            and self.unknown_member
        )


@dataclass
class IntegrityReport:
    fact_rows: int
    checks: list[DimensionIntegrity]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def orphan_rows(self) -> int:
        return sum(c.orphan_rows + c.null_keys for c in self.checks)

    def rows(self) -> list[dict[str, Any]]:
        return [{**c.__dict__, "passed": c.passed} for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact_rows": self.fact_rows,
            "passed": self.passed,
            "orphan_rows": self.orphan_rows,
            "checks": self.rows(),
        }


@dataclass
class GoldBuild:
    """Outcome of :func:`build_gold`: row counts, join figures, integrity, what was missing."""

    run_id: str | None
    row_counts: dict[str, int]
    sources: dict[str, SourceInfo]
    join: dict[str, int]
    unknown_rows: dict[str, int]
    integrity: IntegrityReport | None
    storage_format: str = "parquet"
    paths: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tables: dict[str, pa.Table] = field(default_factory=dict, repr=False)
    skip_reason: str | None = None  # Gold does not apply to this lake (nothing was written)
    failure: str | None = None  # Gold applies but Silver lacks its sources (nothing was written)

    @property
    def empty(self) -> bool:
        return self.row_counts.get(FACT, 0) == 0

    @property
    def applies(self) -> bool:
        return self.skip_reason is None

    @property
    def status(self) -> str:
        """skipped (does not apply), failed (sources unloaded, or a fact row resolving no
        dimension row), else success."""
        if self.skip_reason is not None:
            return "skipped"
        if self.failure is not None or self.integrity is None:
            return "failed"
        return "success" if self.integrity.passed else "failed"

    def raise_for_sources(self) -> None:
        """Raise GoldSourceError when Silver lacked the rows Gold is built from."""
        if self.failure is not None:
            raise GoldSourceError(self.failure)

    def raise_for_integrity(self) -> None:
        """Raise GoldIntegrityError unless every fact row resolves every dimension."""
        if self.integrity is not None and not self.integrity.passed:
            raise GoldIntegrityError(self.integrity)

    def source_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "table": s.table,
                "present": s.present,
                "rows": s.rows,
                "missing_columns": ", ".join(s.missing_columns),
                "validation_verdict": s.verdict,
            }
            for s in self.sources.values()
        ]

    def metrics(self) -> dict[str, Any]:
        """Key figures for the run log (phase metrics)."""
        return {
            "status": self.status,
            "fact_rows": self.row_counts.get(FACT, 0),
            "row_counts": dict(self.row_counts),
            "join": dict(self.join),
            "unknown_rows": dict(self.unknown_rows),
            "orphan_fact_rows": None if self.integrity is None else self.integrity.orphan_rows,
            "integrity_passed": None if self.integrity is None else self.integrity.passed,
            "missing_sources": [t for t, s in self.sources.items() if not s.present],
            "storage_format": self.storage_format,
            "seconds": round(self.seconds, 3),
            SKIP_KEY: self.skip_reason,
            "failure": self.failure,
            "notes": list(self.notes),
        }


# --- does Gold apply? ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceState:
    """Where one source table stands in the lake: Bronze file, Silver rows, last load attempt."""

    table: str
    in_bronze: bool
    bronze_rows: int | None  # None: no file, or its footer cannot be read
    in_silver: bool
    silver_rows: int
    last_load: str | None = None  # status of the latest load attempt (loaded|not_promoted|error)
    load_error: str = ""

    @property
    def present(self) -> bool:
        return self.in_bronze or self.in_silver

    @property
    def unloaded(self) -> bool:
        """Bronze has (or may have) rows that Silver does not: the load did not bring them."""
        return self.in_bronze and self.bronze_rows != 0 and self.silver_rows == 0

    def describe(self) -> str:
        bronze = "?" if self.bronze_rows is None else f"{self.bronze_rows:,}"
        silver = f"{self.silver_rows:,} rows" if self.in_silver else "no table"
        load = self.last_load or "never loaded"
        if self.load_error:
            load += f": {self.load_error}"
        return f"{self.table} (Bronze {bronze} rows, Silver {silver}, last load {load})"


def source_states(
    settings: Settings, tables: tuple[str, ...] | list[str]
) -> dict[str, SourceState]:
    """Bronze footer rows, Silver row counts and the latest load attempt of each table.

    Read from metadata and the state DB only (no data), so a phase can decide whether it
    applies before reading anything.
    """
    import pyarrow.parquet as pq

    from . import storage
    from .ingestion import history_rows

    states = {}
    for table in tables:
        path = settings.paths.bronze_file(table)
        bronze_rows: int | None = None
        if path.is_file():
            try:
                bronze_rows = pq.ParquetFile(path).metadata.num_rows
            except Exception:  # noqa: BLE001 - an unreadable file still counts as present
                bronze_rows = None
        in_silver = storage.table_exists(settings, "silver", table)
        silver_rows = storage.count_rows(settings, "silver", table) if in_silver else 0
        loads = history_rows(settings, limit=1, table=table)
        last = loads[0] if loads else {}
        states[table] = SourceState(
            table=table,
            in_bronze=path.is_file(),
            bronze_rows=bronze_rows,
            in_silver=in_silver,
            silver_rows=silver_rows,
            last_load=last.get("status"),
            load_error=str(last.get("error") or ""),
        )
    return states


@dataclass(frozen=True)
class Readiness:
    """Whether a phase built on AIMS tables applies to this lake, and if not why."""

    skip_reason: str | None = None  # the phase does not apply (not an AIMS lake, nothing to use)
    failure: str | None = None  # it applies, but Silver lacks what Bronze has
    notes: tuple[str, ...] = ()

    @property
    def applies(self) -> bool:
        return self.skip_reason is None and self.failure is None


def not_an_aims_lake(settings: Settings, missing: list[str], what: str) -> str:
    """The skip reason every AIMS-only phase gives, naming the tables and where they were sought."""
    return (
        f"not an AIMS lake: {', '.join(missing)} missing in Bronze ({settings.paths.bronze}) "
        f"and Silver; {what}"
    )


def gold_readiness(settings: Settings, states: dict[str, SourceState] | None = None) -> Readiness:
    """Skip, fail or build: decided from the lake before Gold reads a row (see module docstring)."""
    states = states or source_states(settings, SOURCE_TABLES)
    missing = [t for t in SOURCE_TABLES if not states[t].present]
    assets = states[ASSETS]
    if not assets.present:
        return Readiness(
            skip_reason=not_an_aims_lake(
                settings, missing, f"Gold's {FACT} has one row per {ASSETS} row"
            )
        )
    if assets.silver_rows == 0 and (not assets.in_bronze or assets.bronze_rows == 0):
        where = (
            "Bronze and Silver"
            if assets.in_bronze and assets.in_silver
            else ("Bronze" if assets.in_bronze else "Silver")
        )
        return Readiness(skip_reason=f"nothing to build from: {ASSETS} has 0 rows in {where}")
    notes: list[str] = []  # absent sources are noted by the build (their Unknown-only dimension)
    unloaded = [s for s in states.values() if s.unloaded]
    blocking = [s for s in unloaded if s.table not in REFERENCE_SOURCES]
    notes += [
        f"{s.describe()}: asset {REFERENCE_SOURCES[s.table]} values are not checked against it"
        for s in unloaded
        if s.table in REFERENCE_SOURCES
    ]
    for state in states.values():
        if state.silver_rows and state.last_load in ("error", "not_promoted"):
            notes.append(
                f"{state.table}'s latest load was {state.last_load}: Gold uses the Silver rows "
                "of an earlier load"
            )
    if blocking:
        failure = "Silver has no rows for " + "; ".join(s.describe() for s in blocking)
        return Readiness(failure=failure, notes=tuple(notes))
    return Readiness(notes=tuple(notes))


# --- reading Silver ------------------------------------------------------------------------------


def _latest_verdicts(settings: Settings) -> dict[str, str]:
    path = settings.paths.results / "validation_results.json"
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text()).get("files", {})
    except (OSError, ValueError):
        return {}
    return {t: str(v.get("status")) for t, v in files.items() if isinstance(v, dict)}


def read_source(
    settings: Settings,
    table: str,
    columns: tuple[str, ...] | list[str],
    verdicts: dict[str, str] | None = None,
) -> tuple[pa.Table, SourceInfo]:
    """Read the wanted columns of a Silver table; absent table/columns become typed nulls.

    The schema contract of Silver (IDs Int64, numbers float64, ...) is what Gold relies on, so a
    column that is absent (schema drift with policy 'evolve') is reported rather than guessed.
    ``verdicts`` (table -> latest validation status) is read from the results file when None.
    """
    from . import storage

    verdict = (_latest_verdicts(settings) if verdicts is None else verdicts).get(table)
    if not storage.table_exists(settings, "silver", table):
        empty = pa.table({c: pa.array([], type=_STR) for c in columns})
        return empty, SourceInfo(table, False, 0, list(columns), verdict)
    available = set(storage.table_schema(settings, "silver", table).names)
    present = [c for c in columns if c in available]
    missing = [c for c in columns if c not in available]
    data = storage.read_table(settings, "silver", table, columns=present)
    for name in missing:
        data = data.append_column(name, pa.nulls(data.num_rows, type=_STR))
    return data.select(list(columns)), SourceInfo(table, True, data.num_rows, missing, verdict)


# Silver column readers. Silver's typing is the contract (IDs int64, numbers float64, dates
# timestamps, flags bool) and a typed column is used as it is. A column Silver kept as text (no
# type rule for it, an 'evolve' drift) goes through the one shared parser in checks.py, so Gold
# reads '13000015.0', '-1' or '2024-01-05T10:00Z' exactly as validation and Silver typing do.
# A type that is neither (a date where an ID belongs) names the table and column.


def _text_or_nulls(values: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray | None:
    """All-null columns (a missing source column) as typed nulls; None for anything else."""
    if pa.types.is_null(values.type):
        return pa.chunked_array([pa.nulls(len(values), type=kind)])
    return None


def as_ids(data: pa.Table, table: str, column: str) -> pa.ChunkedArray:
    """An ID column as int64: typed integers as they are, whole floats/decimals and integer text
    ('13000015.0') through :func:`checks.parse_integers`."""
    values = data.column(column)
    kind = values.type
    nulls = _text_or_nulls(values, _I64)
    if nulls is not None:
        return nulls
    if pa.types.is_int64(kind):
        return values
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return checks.parse_integers(values)
    if checks.is_text_type(kind):
        return checks.parse_integers(values)
    raise GoldBuildError(
        table,
        column,
        f"has type {kind}, which is not an ID type",
        hint="Silver should type ID/FK columns as Int64; re-run ingestion for this table",
    )


def as_floats(data: pa.Table, table: str, column: str) -> pa.ChunkedArray:
    """A measure as float64: numbers cast, text through :func:`checks.parse_numbers`."""
    values = data.column(column)
    kind = values.type
    nulls = _text_or_nulls(values, _F64)
    if nulls is not None:
        return nulls
    if pa.types.is_float64(kind):
        return values
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or checks.is_text_type(kind)
    ):
        return checks.parse_numbers(values)
    raise GoldBuildError(table, column, f"has type {kind}, which is not a number type")


def as_text(data: pa.Table, column: str) -> pa.ChunkedArray:
    values = data.column(column)
    return values if values.type == _STR else values.cast(_STR)


def as_booleans(data: pa.Table, table: str, column: str) -> pa.ChunkedArray:
    """A flag as bool: bool as it is, numbers != 0, text through :func:`checks.parse_booleans`."""
    values = data.column(column)
    kind = values.type
    nulls = _text_or_nulls(values, pa.bool_())
    if nulls is not None:
        return nulls
    if (
        pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or checks.is_text_type(kind)
    ):
        return checks.parse_booleans(values)
    raise GoldBuildError(table, column, f"has type {kind}, which is not a boolean type")


def as_timestamps(data: pa.Table, table: str, column: str) -> pa.ChunkedArray:
    """A date as naive timestamp[us] on the UTC clock (one clock for keys and calendar):
    timestamps and dates cast, text through :func:`checks.parse_timestamps`."""
    values = data.column(column)
    kind = values.type
    nulls = _text_or_nulls(values, pa.timestamp("us"))
    if nulls is not None:
        return nulls
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or checks.is_text_type(kind):
        return checks.parse_timestamps(values)
    raise GoldBuildError(table, column, f"has type {kind}, which is not a date type")


# --- surrogate keys ------------------------------------------------------------------------------


def _lookup_keys(values: pa.ChunkedArray | pa.Array, natural: pa.Array, keys: pa.Array) -> pa.Array:
    """Map natural keys to surrogate keys; null or unmatched -> UNKNOWN_KEY (vectorised)."""
    if len(natural) == 0:
        return pa.array(np.full(len(values), UNKNOWN_KEY, dtype=np.int64))
    position = pc.index_in(values, value_set=natural)
    looked_up = pc.take(keys, position)
    return pc.fill_null(looked_up, UNKNOWN_KEY).combine_chunks().cast(_I64)


def _first_per_id(data: pa.Table, id_column: str) -> pa.Table:
    """Drop rows without an ID, keep the first row per ID, sort by ID (deterministic keys)."""
    data = data.filter(pc.is_valid(data.column(id_column)))
    if data.num_rows == 0:
        return data
    indexed = data.append_column("__row", pa.array(np.arange(data.num_rows, dtype=np.int64)))
    first = indexed.group_by(id_column, use_threads=False).aggregate([("__row", "min")])
    keep = pc.sort_indices(first.column("__row_min"))
    rows = pc.take(first.column("__row_min"), keep)
    picked = data.take(rows)
    return picked.take(pc.sort_indices(picked, sort_keys=[(id_column, "ascending")]))


def _with_unknown(dim: pa.Table, schema: pa.Schema, unknown: dict[str, Any]) -> pa.Table:
    """Prepend the Unknown member (key -1) and cast to the dimension's declared schema."""
    row = {f.name: [unknown.get(f.name)] for f in schema}
    head = pa.table(row, schema=schema)
    body = dim.select(schema.names).cast(schema)
    return pa.concat_tables([head, body]).combine_chunks()


def _surrogates(n: int) -> pa.Array:
    return pa.array(np.arange(1, n + 1, dtype=np.int64))


# --- dimensions ----------------------------------------------------------------------------------


def build_dim_route(routes: pa.Table) -> pa.Table:
    base = pa.table(
        {
            "ROUTE_ID": as_ids(routes, ROUTES, "ID"),
            "ROUTE_CODE": as_text(routes, "CODE"),
            "ROUTE_NAME": as_text(routes, "DESCRIPTION"),
            "LPO": as_text(routes, "LPO"),
            "CHAINAGE_UNITS": as_text(routes, "CHAINAGEUNITS"),
            "MIN_CHAINAGE": as_floats(routes, ROUTES, "MINIMUM"),
            "MAX_CHAINAGE": as_floats(routes, ROUTES, "MAXIMUM"),
        }
    )
    base = _first_per_id(base, "ROUTE_ID")
    base = base.append_column("ROUTE_KEY", _surrogates(base.num_rows))
    return _with_unknown(
        base,
        SCHEMAS[DIM_ROUTE],
        {"ROUTE_KEY": UNKNOWN_KEY, "ROUTE_CODE": UNKNOWN_LABEL, "ROUTE_NAME": UNKNOWN_LABEL},
    )


def _walk_hierarchy(
    parent_pos: np.ndarray, names: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Level, root position, name path and code path of every class, one vectorised step per level.

    ``parent_pos[i]`` is the row of i's parent or -1. Rows still climbing after n steps sit on a
    cycle: their level is 0 and their paths end in '(cycle)'; the count is returned.
    """
    n = len(parent_pos)
    level = np.ones(n, dtype=np.int32)
    root = np.arange(n, dtype=np.int64)
    name_path = names.astype(object)
    code_path = codes.astype(object)
    current = parent_pos.copy()
    steps = 0
    while (current >= 0).any() and steps <= n:
        climbing = current >= 0
        idx = np.nonzero(climbing)[0]
        up = current[idx]
        name_path[idx] = names[up].astype(object) + " > " + name_path[idx]
        code_path[idx] = codes[up].astype(object) + " > " + code_path[idx]
        level[idx] += 1
        root[idx] = up
        current[idx] = parent_pos[up]
        steps += 1
    cyclic = current >= 0
    if cyclic.any():
        level[cyclic] = 0
        name_path[cyclic] = "(cycle) " + names[cyclic].astype(object)
        code_path[cyclic] = "(cycle) " + codes[cyclic].astype(object)
    return level, root, name_path, code_path, int(cyclic.sum())


def build_dim_assetclass(classes: pa.Table) -> tuple[pa.Table, int]:
    """Asset classes with parent, root, level and path; returns (dimension, rows on a cycle)."""
    base = pa.table(
        {
            "ASSETCLASS_ID": as_ids(classes, CLASSES, "ID"),
            "ASSETCLASS_CODE": as_text(classes, "CODE"),
            "ASSETCLASS_NAME": as_text(classes, "NAME"),
            "PARENT_ASSETCLASS_ID": as_ids(classes, CLASSES, "PARENTID"),
            "PARENT_TEXT": as_text(classes, "PARENT"),
            "SOURCE_LEVEL_NUMBER": as_floats(classes, CLASSES, "LEVELNUMBER"),
            "ASSET_LEVEL": as_text(classes, "ASSETLEVEL"),
            "CLASS_STATUS": as_text(classes, "STATUS"),
        }
    )
    base = _first_per_id(base, "ASSETCLASS_ID")
    n = base.num_rows
    keys = _surrogates(n)
    ids = base.column("ASSETCLASS_ID").to_numpy()
    parent_pos_arr = pc.index_in(
        base.column("PARENT_ASSETCLASS_ID"), value_set=base.column("ASSETCLASS_ID")
    )
    parent_pos = np.asarray(
        pc.fill_null(parent_pos_arr, -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    parent_pos[parent_pos == np.arange(n)] = -1  # a class that names itself as parent is a root
    label = lambda col: np.asarray(  # noqa: E731 - tiny local adapter
        pc.fill_null(base.column(col), UNKNOWN_LABEL).to_numpy(zero_copy_only=False), dtype=object
    )
    names, codes = label("ASSETCLASS_NAME"), label("ASSETCLASS_CODE")
    level, root, name_path, code_path, cyclic = _walk_hierarchy(parent_pos, names, codes)
    has_parent = parent_pos >= 0
    parent_key = np.where(has_parent, parent_pos + 1, UNKNOWN_KEY).astype(np.int64)
    parent_name = np.where(
        has_parent,
        names[np.where(has_parent, parent_pos, 0)] if n else names,
        np.asarray(base.column("PARENT_TEXT").to_pylist(), dtype=object),
    )
    dim = base.append_column("ASSETCLASS_KEY", keys)
    dim = dim.append_column("PARENT_ASSETCLASS_KEY", pa.array(parent_key))
    dim = dim.append_column("PARENT_ASSETCLASS_NAME", pa.array(list(parent_name), type=_STR))
    dim = dim.append_column("ROOT_ASSETCLASS_ID", pa.array(ids[root] if n else ids, type=_I64))
    dim = dim.append_column(
        "ROOT_ASSETCLASS_NAME", pa.array(list(names[root]) if n else [], type=_STR)
    )
    dim = dim.append_column("HIERARCHY_LEVEL", pa.array(level, type=pa.int32()))
    dim = dim.append_column("HIERARCHY_PATH", pa.array(list(name_path), type=_STR))
    dim = dim.append_column("HIERARCHY_PATH_CODES", pa.array(list(code_path), type=_STR))
    unknown = {
        "ASSETCLASS_KEY": UNKNOWN_KEY,
        "ASSETCLASS_CODE": UNKNOWN_LABEL,
        "ASSETCLASS_NAME": UNKNOWN_LABEL,
        "PARENT_ASSETCLASS_KEY": UNKNOWN_KEY,
        "HIERARCHY_PATH": UNKNOWN_LABEL,
        "HIERARCHY_PATH_CODES": UNKNOWN_LABEL,
    }
    return _with_unknown(dim, SCHEMAS[DIM_ASSETCLASS], unknown), cyclic


def build_dim_organisation(owners: pa.Table, organisations: pa.Table) -> pa.Table:
    """One member per owner (what ``aims_assets.OWNERID`` points at), with its organisation.

    ``aims_organisations`` carries ``OWNERID``: the organisation record of an owner gives the
    parent organisation and the default asset status. Owners missing from ``aims_owners`` but
    named by an organisation are still members (named from the organisation's ``OWNER``).
    """
    own = pa.table(
        {
            "OWNER_ID": as_ids(owners, OWNERS, "ID"),
            "OWNER_NAME": as_text(owners, "NAME"),
            "OWNER_CODE": as_text(owners, "CODE"),
        }
    )
    own = _first_per_id(own, "OWNER_ID")
    org = pa.table(
        {
            "OWNER_ID": as_ids(organisations, ORGANISATIONS, "OWNERID"),
            "ORG_OWNER_NAME": as_text(organisations, "OWNER"),
            "ORGANISATION_ID": as_ids(organisations, ORGANISATIONS, "ID"),
            "ORGANISATION_NAME": as_text(organisations, "NAME"),
            "PARENT_ORGANISATION_ID": as_ids(organisations, ORGANISATIONS, "PARENTID"),
            "PARENT_ORGANISATION_NAME": as_text(organisations, "PARENT"),
            "DEFAULT_ASSET_STATUS": as_text(organisations, "DEFAULTASSETSTATUS"),
        }
    )
    org = _first_per_id(org, "OWNER_ID")
    joined = own.join(org, keys="OWNER_ID", join_type="full outer", use_threads=False)
    joined = joined.set_column(
        joined.schema.get_field_index("OWNER_NAME"),
        "OWNER_NAME",
        pc.coalesce(joined.column("OWNER_NAME"), joined.column("ORG_OWNER_NAME")),
    )
    joined = joined.take(pc.sort_indices(joined, sort_keys=[("OWNER_ID", "ascending")]))
    joined = joined.append_column("ORGANISATION_KEY", _surrogates(joined.num_rows))
    return _with_unknown(
        joined,
        SCHEMAS[DIM_ORGANISATION],
        {
            "ORGANISATION_KEY": UNKNOWN_KEY,
            "OWNER_NAME": UNKNOWN_LABEL,
            "ORGANISATION_NAME": UNKNOWN_LABEL,
        },
    )


def names_by_id(ids: pa.ChunkedArray, names: pa.ChunkedArray) -> pa.Table:
    """The most frequent name of each ID (denormalised names drift; the ID is the key)."""
    pairs = pa.table({"id": ids, "name": names}).filter(pc.is_valid(ids))
    if pairs.num_rows == 0:
        return pa.table({"id": pa.array([], _I64), "name": pa.array([], _STR)})
    counted = pairs.group_by(["id", "name"], use_threads=False).aggregate([([], "count_all")])
    ordered = counted.take(
        pc.sort_indices(
            counted,
            sort_keys=[("id", "ascending"), ("count_all", "descending"), ("name", "ascending")],
        )
    )
    return _first_per_id(ordered.select(["id", "name"]), "id")


def conform_lifecycle_ids(
    assets: pa.Table, references: dict[str, pa.Table]
) -> tuple[pa.Table, dict[str, int]]:
    """PHASEID / STAGEID as int64, set to null where the ID is not in aims_phases / aims_stages.

    A phase or stage the reference table does not know is an unmatched key: the asset keeps its
    status but its phase (or stage) is Unknown, exactly like an unmatched route. When the
    reference table is missing or empty the IDs cannot be checked and are kept as they are.
    Returns the conformed assets and, per column, how many IDs were unmatched.
    """
    unmatched: dict[str, int] = {}
    for table, column in REFERENCE_SOURCES.items():
        ids = as_ids(assets, ASSETS, column)
        reference = references.get(table)
        if reference is not None and reference.num_rows:
            known = pc.is_in(ids, value_set=as_ids(reference, table, "ID").combine_chunks())
            lost = pc.and_(pc.is_valid(ids), pc.invert(known))
            unmatched[column] = int(pc.sum(lost.cast(_I64)).as_py() or 0)
            ids = pc.if_else(known, ids, pa.scalar(None, _I64))
        assets = assets.set_column(assets.schema.get_field_index(column), column, ids)
    return assets, unmatched


def build_dim_status(assets: pa.Table) -> pa.Table:
    """Junk dimension: every (STATUS, PHASE_ID, STAGE_ID) combination the assets use."""
    phase_ids = as_ids(assets, ASSETS, "PHASEID")
    stage_ids = as_ids(assets, ASSETS, "STAGEID")
    combos = pa.table(
        {"STATUS": as_text(assets, "STATUS"), "PHASE_ID": phase_ids, "STAGE_ID": stage_ids}
    )
    all_null = pc.and_(
        pc.and_(pc.is_null(combos.column("STATUS")), pc.is_null(phase_ids)), pc.is_null(stage_ids)
    )
    combos = combos.filter(pc.invert(all_null))
    # A member whose status alone is missing reads "Unknown" (the fact looks it up the same way).
    combos = combos.set_column(0, "STATUS", pc.fill_null(combos.column("STATUS"), UNKNOWN_LABEL))
    combos = combos.group_by(["STATUS", "PHASE_ID", "STAGE_ID"], use_threads=False).aggregate([])
    combos = combos.take(
        pc.sort_indices(
            combos,
            sort_keys=[
                ("PHASE_ID", "ascending"),
                ("STAGE_ID", "ascending"),
                ("STATUS", "ascending"),
            ],
        )
    )
    phases = names_by_id(phase_ids, as_text(assets, "PHASE"))
    stages = names_by_id(stage_ids, as_text(assets, "STAGE"))
    phase_name = pc.take(
        phases.column("name"), pc.index_in(combos.column("PHASE_ID"), phases.column("id"))
    )
    stage_name = pc.take(
        stages.column("name"), pc.index_in(combos.column("STAGE_ID"), stages.column("id"))
    )
    dim = combos.append_column("PHASE", pc.fill_null(phase_name, UNKNOWN_LABEL))
    dim = dim.append_column("STAGE", pc.fill_null(stage_name, UNKNOWN_LABEL))
    dim = dim.append_column("STATUS_KEY", _surrogates(dim.num_rows))
    return _with_unknown(
        dim,
        SCHEMAS[DIM_STATUS],
        {
            "STATUS_KEY": UNKNOWN_KEY,
            "STATUS": UNKNOWN_LABEL,
            "PHASE": UNKNOWN_LABEL,
            "STAGE": UNKNOWN_LABEL,
        },
    )


def _date_keys(stamps: pa.ChunkedArray | pa.Array) -> pa.Array:
    """yyyymmdd integer per timestamp (null stays null)."""
    year = pc.multiply(pc.year(stamps).cast(_I64), 10000)
    month = pc.multiply(pc.month(stamps).cast(_I64), 100)
    return pc.add(pc.add(year, month), pc.day(stamps).cast(_I64))


def build_dim_date(stamp_columns: list[pa.ChunkedArray]) -> tuple[pa.Table, bool]:
    """Calendar over the dates the fact uses; returns (dimension, contiguous?).

    Contiguous from the first to the last date when that is at most MAX_CALENDAR_DAYS, otherwise
    (sentinel dates such as 9999-12-31 in the data) only the dates that occur, still complete for
    the fact.
    """
    import pandas as pd

    days: list[np.ndarray] = []
    for stamps in stamp_columns:
        valid = pc.drop_null(stamps)
        if len(valid):
            days.append(pc.unique(valid.cast(pa.date32())).to_numpy(zero_copy_only=False))
    used = np.unique(np.concatenate(days)) if days else np.array([], dtype="datetime64[D]")
    contiguous = True
    if len(used) == 0:
        dates = pd.DatetimeIndex([])
    else:
        first, last = used.min(), used.max()
        span = int((last - first).astype(np.int64)) + 1
        if span <= MAX_CALENDAR_DAYS:
            dates = pd.date_range(first, last, freq="D")
        else:
            contiguous = False
            dates = pd.DatetimeIndex(used)
    iso = dates.isocalendar()
    frame = pd.DataFrame(
        {
            "DATE_KEY": (dates.year * 10000 + dates.month * 100 + dates.day).astype("int64"),
            "DATE": dates.date,
            "YEAR": dates.year.astype("int32"),
            "QUARTER": dates.quarter.astype("int32"),
            "MONTH": dates.month.astype("int32"),
            "MONTH_NAME": dates.month_name().astype(object),
            "YEAR_MONTH": dates.strftime("%Y-%m").astype(object),
            "DAY": dates.day.astype("int32"),
            "DAY_OF_WEEK": (dates.day_of_week + 1).astype("int32"),
            "DAY_NAME": dates.day_name().astype(object),
            "ISO_WEEK": np.asarray(iso["week"], dtype="int32"),
            "IS_WEEKEND": np.asarray(dates.day_of_week >= 5, dtype=bool),
        }
    )
    dim = pa.Table.from_pandas(frame, schema=SCHEMAS[DIM_DATE], preserve_index=False)
    unknown = {
        "DATE_KEY": UNKNOWN_KEY,
        "MONTH_NAME": UNKNOWN_LABEL,
        "DAY_NAME": UNKNOWN_LABEL,
        "YEAR_MONTH": UNKNOWN_LABEL,
    }
    return _with_unknown(dim, SCHEMAS[DIM_DATE], unknown), contiguous


# --- fact ----------------------------------------------------------------------------------------


def build_fact(
    assets: pa.Table, locations: pa.Table, dims: dict[str, pa.Table]
) -> tuple[pa.Table, dict[str, int]]:
    """Assets LEFT JOIN locations on ASSETID, natural keys swapped for surrogate keys.

    Returns the fact and the join figures (assets, locations, assets with/without a location,
    locations without a Silver asset, fact rows).
    """
    asset_ids = as_ids(assets, ASSETS, "ID")
    left = pa.table(
        {
            "ASSET_ID": asset_ids,
            "UNIQUE_ASSET_ID": as_text(assets, "UNIQUEASSETID"),
            "OWNER_ID": as_ids(assets, ASSETS, "OWNERID"),
            "STATUS": pc.fill_null(as_text(assets, "STATUS"), UNKNOWN_LABEL),
            "PHASE_ID": as_ids(assets, ASSETS, "PHASEID"),
            "STAGE_ID": as_ids(assets, ASSETS, "STAGEID"),
            "IS_PRIMARY_ASSET": as_booleans(assets, ASSETS, "ISPRIMARYASSET"),
            "REFERENCE_CHAINAGE": as_floats(assets, ASSETS, "REFERENCECHAINAGE"),
            **{key: as_timestamps(assets, ASSETS, col) for key, col in FACT_DATES.items()},
        }
    ).filter(pc.is_valid(asset_ids))
    location_asset = as_ids(locations, LOCATIONS, "ASSETID")
    right = pa.table(
        {
            "LOC_ASSET_ID": location_asset,
            "LOCATION_ID": as_ids(locations, LOCATIONS, "ID"),
            "ROUTE_ID": as_ids(locations, LOCATIONS, "ROUTEID"),
            "ASSETCLASS_ID": as_ids(locations, LOCATIONS, "ASSETCLASSID"),
            "OSGB_EASTING": as_floats(locations, LOCATIONS, "OSGBEASTING"),
            "OSGB_NORTHING": as_floats(locations, LOCATIONS, "OSGBNORTHING"),
            "__has_location": pa.array(np.ones(locations.num_rows, dtype=bool)),
        }
    ).filter(pc.is_valid(location_asset))
    joined = left.join(
        right, keys="ASSET_ID", right_keys="LOC_ASSET_ID", join_type="left outer", use_threads=True
    )
    joined = joined.take(
        pc.sort_indices(joined, sort_keys=[("ASSET_ID", "ascending"), ("LOCATION_ID", "ascending")])
    )
    has_location = pc.fill_null(joined.column("__has_location"), False)

    def keys_of(dim_name: str, natural: str, values: pa.ChunkedArray) -> pa.Array:
        dim = dims[dim_name].slice(1)  # without the Unknown member
        key_col = SCHEMAS[dim_name].names[0]
        return _lookup_keys(
            values, dim.column(natural).combine_chunks(), dim.column(key_col).combine_chunks()
        )

    status_dim = dims[DIM_STATUS].slice(1)
    status_keys = _status_keys(joined, status_dim)
    date_dim = dims[DIM_DATE].slice(1)
    fact = pa.table(
        {
            "ASSET_ID": joined.column("ASSET_ID"),
            "LOCATION_ID": joined.column("LOCATION_ID"),
            "UNIQUE_ASSET_ID": joined.column("UNIQUE_ASSET_ID"),
            "ROUTE_KEY": keys_of(DIM_ROUTE, "ROUTE_ID", joined.column("ROUTE_ID")),
            "ASSETCLASS_KEY": keys_of(
                DIM_ASSETCLASS, "ASSETCLASS_ID", joined.column("ASSETCLASS_ID")
            ),
            "ORGANISATION_KEY": keys_of(DIM_ORGANISATION, "OWNER_ID", joined.column("OWNER_ID")),
            "STATUS_KEY": status_keys,
            **{
                key: _lookup_keys(
                    _date_keys(joined.column(key)),
                    date_dim.column("DATE_KEY").combine_chunks(),
                    date_dim.column("DATE_KEY").combine_chunks(),
                )
                for key in FACT_DATES
            },
            "HAS_LOCATION": has_location,
            "IS_PRIMARY_ASSET": joined.column("IS_PRIMARY_ASSET"),
            "REFERENCE_CHAINAGE": joined.column("REFERENCE_CHAINAGE"),
            "OSGB_EASTING": joined.column("OSGB_EASTING"),
            "OSGB_NORTHING": joined.column("OSGB_NORTHING"),
        }
    ).cast(SCHEMAS[FACT])
    located = pc.sum(has_location.cast(_I64)).as_py() or 0
    distinct_assets = pc.count_distinct(left.column("ASSET_ID")).as_py() or 0
    assets_located = (
        pc.count_distinct(pc.filter(joined.column("ASSET_ID"), has_location)).as_py() or 0
    )
    orphans = pc.invert(
        pc.is_in(right.column("LOC_ASSET_ID"), value_set=left.column("ASSET_ID").combine_chunks())
    )
    join = {
        "assets": left.num_rows,
        "distinct_assets": distinct_assets,
        "locations": right.num_rows,
        "assets_with_location": assets_located,
        "assets_without_location": distinct_assets - assets_located,
        "fact_rows_with_location": located,
        "locations_without_asset": pc.sum(orphans.cast(_I64)).as_py() or 0,
        "fact_rows": fact.num_rows,
    }
    return fact.combine_chunks(), join


def _status_keys(joined: pa.Table, status_dim: pa.Table) -> pa.Array:
    """Surrogate key of each row's (STATUS, PHASE_ID, STAGE_ID) combination; all-null -> -1."""
    if joined.num_rows == 0:
        return pa.array([], type=_I64)
    left = pa.table(
        {
            "STATUS": joined.column("STATUS"),
            "PHASE_ID": joined.column("PHASE_ID"),
            "STAGE_ID": joined.column("STAGE_ID"),
            "__row": pa.array(np.arange(joined.num_rows, dtype=np.int64)),
        }
    )
    # Arrow's hash join never matches null keys, so nulls get a sentinel on both sides.
    sentinel_text, sentinel_id = "\x00<null>", np.iinfo(np.int64).min

    def fill(table: pa.Table) -> pa.Table:
        return (
            table.set_column(0, "STATUS", pc.fill_null(table.column("STATUS"), sentinel_text))
            .set_column(1, "PHASE_ID", pc.fill_null(table.column("PHASE_ID"), sentinel_id))
            .set_column(2, "STAGE_ID", pc.fill_null(table.column("STAGE_ID"), sentinel_id))
        )

    right = fill(status_dim.select(["STATUS", "PHASE_ID", "STAGE_ID", "STATUS_KEY"]))
    matched = fill(left).join(
        right, keys=["STATUS", "PHASE_ID", "STAGE_ID"], join_type="left outer", use_threads=True
    )
    matched = matched.take(pc.sort_indices(matched.column("__row")))
    return pc.fill_null(matched.column("STATUS_KEY"), UNKNOWN_KEY).combine_chunks().cast(_I64)


# --- integrity -----------------------------------------------------------------------------------


def check_integrity(fact: pa.Table, dims: dict[str, pa.Table]) -> IntegrityReport:
    """Every fact row must find each of its dimensions; counted, not assumed."""
    checks = []
    for fact_column, (dim_name, key_column) in FACT_KEYS.items():
        dim = dims[dim_name]
        dim_keys = dim.column(key_column).combine_chunks()
        values = fact.column(fact_column)
        null_keys = values.null_count
        found = pc.is_in(values, value_set=dim_keys)
        orphan = int(pc.sum(pc.invert(pc.fill_null(found, True)).cast(_I64)).as_py() or 0)
        unknown = int(pc.sum(pc.equal(values, UNKNOWN_KEY).cast(_I64)).as_py() or 0)
        checks.append(
            DimensionIntegrity(
                fact_column=fact_column,
                dimension=dim_name,
                fact_rows=fact.num_rows,
                matched_rows=fact.num_rows - orphan - unknown - null_keys,
                unknown_rows=unknown,
                orphan_rows=orphan,
                null_keys=null_keys,
                dimension_rows=dim.num_rows,
                duplicate_keys=dim.num_rows - int(pc.count_distinct(dim_keys).as_py() or 0),
                unknown_member=bool(pc.any(pc.equal(dim_keys, UNKNOWN_KEY)).as_py()),
            )
        )
    return IntegrityReport(fact_rows=fact.num_rows, checks=checks)


def check_written_integrity(settings: Settings) -> IntegrityReport:
    """Integrity of what is in Gold storage now (reads keys back, so it checks the files)."""
    from . import storage

    fact = storage.read_table(settings, "gold", FACT, columns=list(FACT_KEYS))
    dims = {
        name: storage.read_table(settings, "gold", name, columns=[SCHEMAS[name].names[0]])
        for name in DIMENSIONS
    }
    return check_integrity(fact, dims)


# --- orchestration -------------------------------------------------------------------------------


def build_gold(
    settings: Settings, run_id: str | None = None, write: bool = True, keep_tables: bool = False
) -> GoldBuild:
    """Build the star schema from Silver (all rows), write it to Gold and check its integrity.

    ``keep_tables`` keeps the built Arrow tables on the result (for tests and small lakes only).
    """
    started = time.perf_counter()
    readiness = gold_readiness(settings)
    if not readiness.applies:
        return GoldBuild(
            run_id=run_id,
            row_counts={},
            sources={},
            join={},
            unknown_rows={},
            integrity=None,
            storage_format=settings.storage_format,
            notes=list(readiness.notes),
            seconds=time.perf_counter() - started,
            skip_reason=readiness.skip_reason,
            failure=readiness.failure,
        )
    sources: dict[str, SourceInfo] = {}
    data: dict[str, pa.Table] = {}
    verdicts = _latest_verdicts(settings)
    for table in SOURCE_TABLES:
        data[table], sources[table] = read_source(settings, table, SOURCE_COLUMNS[table], verdicts)
    notes = [*readiness.notes, *_source_notes(sources)]
    data[ASSETS], unmatched = conform_lifecycle_ids(
        data[ASSETS], {t: data[t] for t in REFERENCE_SOURCES}
    )
    for column, count in unmatched.items():
        if count:
            notes.append(f"{count} assets have a {column} not found in Silver: on an Unknown value")

    dim_assetclass, cyclic = build_dim_assetclass(data[CLASSES])
    if cyclic:
        notes.append(f"{cyclic} asset classes sit on a parent cycle (HIERARCHY_LEVEL 0)")
    dim_date, contiguous = build_dim_date(
        [as_timestamps(data[ASSETS], ASSETS, col) for col in FACT_DATES.values()]
    )
    if not contiguous:
        notes.append(
            f"dates span more than {MAX_CALENDAR_DAYS} days (a sentinel date?): DIM_Date holds "
            "only the dates that occur"
        )
    dims = {
        DIM_ROUTE: build_dim_route(data[ROUTES]),
        DIM_ASSETCLASS: dim_assetclass,
        DIM_ORGANISATION: build_dim_organisation(data[OWNERS], data[ORGANISATIONS]),
        DIM_DATE: dim_date,
        DIM_STATUS: build_dim_status(data[ASSETS]),
    }
    fact, join = build_fact(data[ASSETS], data[LOCATIONS], dims)
    del data
    if fact.num_rows == 0:
        notes.append(
            "FACT_Asset_Inventory is empty: Silver has no aims_assets rows yet "
            "(run ingestion first); every table is written empty but typed"
        )
    integrity = check_integrity(fact, dims)
    unknown_rows = {c.fact_column: c.unknown_rows for c in integrity.checks}
    tables = {**dims, FACT: fact}
    paths: dict[str, str] = {}
    if write:
        from . import storage

        for name in GOLD_TABLES:  # dimensions first, fact last
            paths[name] = str(storage.write_table(settings, "gold", name, tables[name]))
        integrity = check_written_integrity(settings)
    build = GoldBuild(
        run_id=run_id,
        row_counts={name: t.num_rows for name, t in tables.items()},
        sources=sources,
        join=join,
        unknown_rows=unknown_rows,
        integrity=integrity,
        storage_format=settings.storage_format,
        paths=paths,
        notes=notes,
        seconds=time.perf_counter() - started,
        tables=tables if keep_tables else {},
    )
    return build


def _source_notes(sources: dict[str, SourceInfo]) -> list[str]:
    notes = []
    for table, info in sources.items():
        if not info.present and table in REFERENCE_SOURCES:
            notes.append(
                f"Silver table {table} does not exist yet: asset {REFERENCE_SOURCES[table]} "
                "values cannot be checked against it"
            )
        elif not info.present:
            notes.append(
                f"Silver table {table} does not exist yet: its dimension holds only Unknown"
            )
        elif info.rows == 0:
            notes.append(f"Silver table {table} is empty")
        elif info.missing_columns:
            notes.append(
                f"Silver table {table} lacks column(s) {', '.join(info.missing_columns)}: "
                "they are null in Gold"
            )
        if info.verdict in ("FAILED", "ERROR"):
            notes.append(
                f"{table}'s latest validation verdict is {info.verdict}: Silver keeps only rows "
                "that passed, so Gold may be partial for it"
            )
    return notes


def read_gold(settings: Settings, name: str, columns: list[str] | None = None) -> pa.Table:
    """A Gold table, or an empty typed one when it has not been built yet."""
    from . import storage

    if name not in SCHEMAS:
        raise GoldBuildError(
            name, "-", "is not a Gold table", hint=f"use one of {', '.join(GOLD_TABLES)}"
        )
    if not storage.table_exists(settings, "gold", name):
        schema = SCHEMAS[name]
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        return schema.empty_table()
    return storage.read_table(settings, "gold", name, columns=columns)


# --- figures -------------------------------------------------------------------------------------


def gold_figures(build: GoldBuild) -> dict[str, Any]:
    """Row counts per Gold table and, per fact key, rows on a real member vs on Unknown."""
    import plotly.express as px

    figures: dict[str, Any] = {}
    figures["row_counts"] = px.bar(
        x=list(build.row_counts),
        y=list(build.row_counts.values()),
        log_y=True,
        labels={"x": "Gold table", "y": "rows (log scale)"},
        title="Rows per Gold table (dimensions include their Unknown member)",
    )
    if build.integrity is None or build.integrity.fact_rows == 0:
        figures["resolution"] = "Key resolution: the fact is empty, nothing to resolve."
        return figures
    rows = []
    for check in build.integrity.checks:
        rows.append({"fact key": check.fact_column, "rows": check.matched_rows, "on": "member"})
        rows.append({"fact key": check.fact_column, "rows": check.unknown_rows, "on": "Unknown"})
        if check.orphan_rows + check.null_keys:
            rows.append(
                {
                    "fact key": check.fact_column,
                    "rows": check.orphan_rows + check.null_keys,
                    "on": "orphan",
                }
            )
    figures["resolution"] = px.bar(
        rows,
        x="fact key",
        y="rows",
        color="on",
        title="Fact rows per dimension key: resolved to a member or to Unknown (-1)",
    )
    return figures
