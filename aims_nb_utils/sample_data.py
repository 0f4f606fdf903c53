"""A deterministic synthetic AIMS Bronze lake, and the ground truth of what it broke on purpose.

``generate_lake`` writes one ``<table>.parquet`` per table of the published spec (68 tables, the
same columns in the same order, every column a pyarrow ``string``), plus

* ``_defects.parquet`` (:data:`MANIFEST_NAME`): one row per injected defect with the exact
  ``row_index`` (0-based position in the file), ``row_id`` (the row's ``ID`` as written, or null),
  ``column``, ``defect_kind`` and ``value`` (the value written, null for a real null);
* ``_generation.json``: the parameters and counts of the run (:class:`GenerationReport`).

Realism follows the spec (``aims_nb_utils.spec``): published value sets are sampled, published
length ranges are respected, ``nullable_percent`` drives real nulls (``None`` = ">=10 %" gives
10-40 % missing, mixed real nulls and the strings ``'None'``/``' '``/``'NaT'``), ID-like values are
integers from about 13,000,000 (small published ID families such as stages, option values or
people keep their published small values), formatted ``'13000015'`` or ``'13000015.0'`` as the
real export does (float style exactly where the column holds nulls, or as its value set shows),
and foreign keys point at real parent IDs (see :func:`relations`). ID ranges of different
tables are disjoint, so an FK value is contained only in its real parent's ``ID`` column.
Columns whose published value set holds only placeholders (e.g. ``('None',)``) or whose published
length is exactly (4, 4) are the string ``'None'`` throughout, as in the export.

Row counts (:func:`rows_for_scale`): 0 for the 13 empty tables, the published count for tables
under 1,000 published rows, otherwise ``max(1, round(rows * scale))``; ``scale=1.0`` reproduces
the published 10,359,945 rows.

Defects (none when ``clean=True`` or every rate is 0). For each table and kind the number injected
is exactly (:func:`defect_counts`)::

    n = 0                               if rows < 200 or the table has no eligible column,
    n = max(1, round(rate * rows))      otherwise when rate > 0 (Python round: half to even)

Defect rows are distinct within a table (a row carries at most one defect) and row 0 is never
touched. The forms, chosen so a data-driven profiler still learns the right rule from the dirty
data and then catches them:

* ``null_required``: a column with ``nullable_percent == 0.0`` whose clean values are never null
  nor a placeholder (never ``ID``) gets ``'None'``, ``' '`` or a real null (cycled in that order).
* ``out_of_value_set``: a category column (value set with >= 2 real values) gets ``'INVALID'``,
  ``'UNKNOWN_CODE'`` or ``'??'``.
* ``too_long``: a text column with a published length range ``[lo, hi]`` gets a string of length
  ``max(2 * hi, hi + 40)``.
* ``duplicate_id``: the ``ID`` of row ``r`` is replaced by the ``ID`` of an earlier, untouched
  row, so ``DataFrame.duplicated('ID')`` flags exactly the recorded rows (children that pointed
  at row ``r`` carry the copied ID, so a duplicate never creates an unrecorded orphan).
* ``orphan_fk``: a foreign-key column of :func:`relations` gets ``99900000 + k`` (k = 1, 2, ...
  per table), in the column's number style (``'99900001'`` or ``'99900001.0'``).
* ``bad_date``: a date column whose clean values are all real dates gets ``'31/12/2021'``,
  ``'2021-13-45'``, ``'not a date'`` or ``'0000-00-00'``.
* ``bad_number``: a number column gets ``'12,5'``, ``'n/a'``, ``'1.2.3'`` or ``'abc'``.

``corrupt=True`` additionally writes one mid-sized table (:data:`CORRUPT_CANDIDATES`) with small
row groups and truncates the file so its footer is lost; ``GenerationReport.corruption`` says
which table and how many leading row groups/rows are intact (salvageable).

Everything is vectorised with numpy/pyarrow and generated in chunks of :data:`CHUNK_ROWS` rows
with a numpy Generator seeded from ``(seed, table, column, chunk)``, so the same seed gives the
same data whether all tables or a subset are generated.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import AimsError, BronzeReadError
from .spec import ColumnSpec, TableSpec, load_spec

DEFAULT_SCALE: float = 0.01
DEFECT_KINDS = (
    "null_required",
    "out_of_value_set",
    "too_long",
    "duplicate_id",
    "orphan_fk",
    "bad_date",
    "bad_number",
)
MANIFEST_NAME = "_defects.parquet"
GENERATION_NAME = "_generation.json"

SMALL_TABLE_ROWS = 1_000  # tables under this many published rows keep their count at any scale
MIN_DEFECT_ROWS = 200  # tables with fewer rows never receive defects
CHUNK_ROWS = 250_000  # generation chunk (and row group) size; part of the determinism contract
CORRUPT_ROW_GROUP_ROWS = 5_000
CORRUPT_CANDIDATES = (
    "aims_assetclassattributes",
    "aims_links",
    "aims_assetclassrelationships",
    "aims_assetclasschangelogs",
)
ORPHAN_BASE = 99_900_000
COMPRESSION = "zstd"

NULL_PLACEHOLDERS = ("None", "NaT", " ")
# Labels of a null lookup in the export ("<number> - <name>" with both empty, "<name> (<code>)").
_LABEL_PLACEHOLDERS = frozenset(NULL_PLACEHOLDERS + ("", " - ", " ()", " -  - "))

NULL_REQUIRED_VALUES = ("None", " ", None)
OUT_OF_SET_VALUES = ("INVALID", "UNKNOWN_CODE", "??")
BAD_DATE_VALUES = ("31/12/2021", "2021-13-45", "not a date", "0000-00-00")
BAD_NUMBER_VALUES = ("12,5", "n/a", "1.2.3", "abc")
_TOO_LONG_FILLER = "Duplicate record pasted from the legacy asset register; please review. "

MANIFEST_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("row_index", pa.int64()),
        ("row_id", pa.string()),
        ("column", pa.string()),
        ("defect_kind", pa.string()),
        ("value", pa.string()),
    ]
)


# --------------------------------------------------------------------------------------------
# Public parameter and result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefectRates:
    """Fraction (0-1, not percent) of an eligible table's rows that receive each defect kind."""

    null_required: float = 0.004
    out_of_value_set: float = 0.003
    too_long: float = 0.002
    duplicate_id: float = 0.002
    orphan_fk: float = 0.003
    bad_date: float = 0.003
    bad_number: float = 0.003

    @classmethod
    def none(cls) -> DefectRates:
        """Rates for a clean lake (no defect of any kind)."""
        return cls(**{kind: 0.0 for kind in DEFECT_KINDS})

    def as_dict(self) -> dict[str, float]:
        return {kind: float(getattr(self, kind)) for kind in DEFECT_KINDS}

    def is_zero(self) -> bool:
        return all(v == 0 for v in self.as_dict().values())

    def validate(self) -> None:
        for kind, value in self.as_dict().items():
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0) or math.isnan(value):
                raise AimsError(
                    f"defect rate {kind}={value!r} is not a fraction between 0 and 1",
                    hint="rates are fractions of rows, e.g. 0.003 for 0.3 %",
                )
        if sum(self.as_dict().values()) > 0.5:
            raise AimsError(
                f"defect rates add up to {sum(self.as_dict().values()):.3f} of each table's rows",
                hint="keep the total under 0.5 (each defect needs its own row)",
            )


@dataclass
class GenerationReport:
    """What one ``generate_lake`` run wrote (also saved as ``_generation.json``)."""

    bronze_dir: Path
    scale: float
    seed: int
    clean: bool
    corrupt: bool
    tables: dict[str, int]
    total_rows: int
    defects: dict[str, int]
    seconds: float
    corrupted_table: str | None
    rates: dict[str, float] = field(default_factory=dict)
    defects_by_table: dict[str, dict[str, int]] = field(default_factory=dict)
    corruption: dict | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["bronze_dir"] = str(self.bronze_dir)
        return out


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _h(*parts: object) -> int:
    """A stable 32-bit hash of the parts (crc32, independent of PYTHONHASHSEED)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def _rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *(_h(k) for k in keys)]))


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``values`` xor ``salt``: a vectorised, stable pseudo-random hash."""
    z = values.astype(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _real_values(values: Iterable[str] | None) -> list[str]:
    return [v for v in (values or ()) if v not in _LABEL_PLACEHOLDERS]


def _placeholder_values(values: Iterable[str] | None) -> list[str]:
    return [v for v in (values or ()) if v in _LABEL_PLACEHOLDERS]


def _intlike(value: str) -> bool:
    try:
        return float(value).is_integer()
    except ValueError:
        return False


def _geometric(k: int, ratio: float = 0.75) -> np.ndarray:
    w = ratio ** np.arange(k, dtype=np.float64)
    return w / w.sum()


def _sa(values: Iterable[str | None]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _join(*parts: object) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _fmt_int(values: np.ndarray, float_style: bool) -> pa.Array:
    s = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return _join(s, ".0") if float_style else s


def _fmt_float(values: np.ndarray, decimals: int) -> pa.Array:
    s = pc.cast(pa.array(np.round(np.asarray(values, dtype=np.float64), decimals)), pa.string())
    return pc.if_else(pc.match_substring(s, "."), s, _join(s, ".0"))


def _fit(arr: pa.Array, length: tuple[int, int] | None) -> pa.Array:
    """Fit values into the published length range [lo, hi].

    Longer values are clipped to ``hi``; shorter ones get a ' - <note>' suffix (then clipped),
    so the column's observed range matches the published one.
    """
    if not length or len(arr) == 0:
        return arr
    lo, hi = length
    lengths = pc.utf8_length(arr)
    stats = pc.min_max(lengths).as_py()
    if lo > 1 and stats["min"] is not None and stats["min"] < lo:
        short = pc.less(lengths, lo)
        which = pc.cast(pc.fill_null(lengths, 0), pa.int64()).to_numpy(zero_copy_only=False)
        filler = _take(_sa(_NOTE_SENTENCES), which % len(_NOTE_SENTENCES))
        arr = pc.if_else(short, _join(arr, " - ", filler), arr)
        stats = pc.min_max(pc.utf8_length(arr)).as_py()
    if stats["max"] is not None and stats["max"] > hi:
        arr = pc.utf8_slice_codeunits(arr, 0, hi)
        if hi > 1:
            arr = pc.utf8_rtrim_whitespace(arr)  # 'Cable Trough ' -> 'Cable Trough'
    stats = pc.min_max(pc.utf8_length(arr)).as_py()
    if lo > 1 and stats["min"] is not None and stats["min"] < lo:
        arr = pc.utf8_rpad(arr, width=lo, padding=".")
    return arr


def _take(pool: pa.Array, idx: np.ndarray) -> pa.Array:
    return pool.take(pa.array(np.asarray(idx, dtype=np.int64)))


# --------------------------------------------------------------------------------------------
# Word lists (small, realistic, anonymised like the published value sets)
# --------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(item.split(":", 1)) for item in text.split("|"))  # type: ignore[misc]


_FIRST = _words(
    "Alex|Amira|Ben|Chloe|Daniel|Deepa|Emma|Farid|Grace|Hannah|Harry|Imran|Jack|Jasmine|"
    "Kwame|Laura|Liam|Maya|Mohammed|Niamh|Oliver|Olivia|Priya|Rhys|Rosa|Sam|Sophie|Tom|"
    "Wei|Zara"
)
_LAST = _words(
    "Adams|Ahmed|Baker|Campbell|Chen|Clarke|Davies|Evans|Fletcher|Green|Hughes|Jones|Khan|"
    "Lewis|Martin|Morgan|Murphy|Nowak|Okafor|Patel|Roberts|Singh|Smith|Taylor|Thomas|"
    "Turner|Walker|Watson|Williams|Wright"
)
_ORGS = _words(
    "HS2|TPY|Network Rail|AlignJV-MWCC|SCSJV-MWCC|EKJV-MWCC|BBVJV-MWCC|"
    "Balfour Beatty VINCI|Skanska Costain STRABAG|EKFB|Align JV|Atkins|Arcadis|Jacobs|"
    "Mott MacDonald|WSP|Costain|Laing O'Rourke|Siemens Mobility|Alstom|Hitachi Rail|"
    "Buckinghamshire Council|Birmingham City Council|Environment Agency|Natural England|"
    "Canal & River Trust|National Highways|Transport for London|Solihull MBC|"
    "Warwickshire County Council"
)
_ASSET_TYPES = _pairs(
    "Culvert:C|Bridge:BR|Retaining Wall:RW|Signal:SIG|Cable Trough:CT|Drainage Pipe:DP|"
    "Manhole:MH|Boundary Fence:F|Gantry:G|Embankment:E|Cutting:CU|Viaduct:V|"
    "Tunnel Portal:TP|Track Bed:TB|Balise:BL|OLE Mast:OM|Access Road:AR|Noise Barrier:NB|"
    "Balancing Pond:BP|Catch Pit:CP|Headwall:HW|Ditch:D|Footbridge:FB|Lighting Column:LC|"
    "Switch:SW|Point Machine:PM|Equipment Cabinet:EC|Ecological Mitigation Area:EMA|"
    "Bat Box:BB|Attenuation Tank:AT"
)
_PLACES = _words(
    "Euston|Old Oak Common|Ruislip|Denham|Chalfont St Peter|Amersham|Great Missenden|"
    "Wendover|Stoke Mandeville|Calvert|Steeple Claydon|Turweston|Chipping Warden|Southam|"
    "Long Itchington|Burton Green|Berkswell|Hampton-in-Arden|Coleshill|Water Orton|"
    "Curdworth|Lichfield|Streethay|Handsacre|Crewe|Interchange|Curzon Street|"
    "Washwood Heath|Kenilworth|Offchurch"
)
_MATERIALS = _words(
    "Precast Concrete|In-situ Concrete|Steel|Timber|Masonry|HDPE|PVC-U|Ductile Iron|"
    "Composite|Galvanised Steel|Reinforced Earth|Geotextile"
)
_CLASS_NOUNS = _words(
    "Box Culvert|Pipe Culvert|Underbridge|Overbridge|Retaining Structure|Cable Route|"
    "Drainage Channel|Inspection Chamber|Signal Post|Fence Panel|Gantry Frame|"
    "Track Drainage|Noise Barrier Panel|Headwall|Outfall|Equipment Housing|Lighting Unit|"
    "Access Gate|Bat Roosting Structure|Pond Liner|Embankment Slope|Cutting Slope|"
    "Tunnel Lining|Walkway Element|Handrail"
)
_ATTR_QUALITIES = _words(
    "Height|Length|Width|Diameter|Depth|Material|Installation Date|Design Life|"
    "Condition Grade|Cover Material|Load Rating|Span|Gradient|Invert Level|Capacity|"
    "Manufacturer|Serial Number|Inspection Frequency|Environmental Score|Risk Score|"
    "Colour|Finish|Voltage|Asset Status"
)
_UNITS = _words("(m)|(mm)|(max) (m)|(kN)|(years)|(m3)|(%)||||")
_GROUP_WORDS = _words(
    "Geometry|Identification|Materials|Performance|Maintenance|Environmental|Electrical|"
    "Structural|Drainage|Location|Safety|Commissioning|Handback|Design|Construction|"
    "Operations"
)
_TITLE_WORDS = _words(
    "Asset|Survey|Inspection|Drainage|Structures|Ecology|Utilities|Design|Review|Handback|"
    "Record|Schedule|Register|Update|Phase|Route|Section|Works|Package|Approval|Consent|"
    "Milestone|Report|Model|Data|Change|Request|Civils|Systems|Track"
)
_NOTE_SENTENCES = _words(
    "Inspection completed with no defects found.|Asset installed as per approved design.|"
    "Awaiting as-built survey from the contractor.|"
    "Minor cracking observed on the north face; monitor at next inspection.|"
    "Vegetation clearance required before the next visit.|"
    "Drainage outfall partially blocked; cleared on site.|"
    "Data migrated from the legacy asset register.|Location confirmed by GNSS survey.|"
    "Attribute values updated following design change.|"
    "Handback documentation submitted for review.|"
    "Temporary works removed and area reinstated.|"
    "Condition grade revised after principal inspection.|"
    "Access restricted; inspection rescheduled.|"
    "Coordinates supplied in Snake Grid and converted to OSGB36.|"
    "Duplicate of an existing record; superseded.|Replaced under maintenance work order.|"
    "See attached photographs and survey report.|"
    "Installed within the ecological mitigation area.|"
    "Utility diversion completed by the statutory undertaker.|"
    "Record created from the BIM model export.|Design life assumed as 120 years.|"
    "Signage fitted and checked against the schedule.|"
    "Consent condition discharged by the local authority.|"
    "Commitment owner notified of the outcome.|"
    "Noise monitoring results within agreed limits.|"
    "Traffic management in place during the works.|Beneficiary informed by letter.|"
    "Awaiting approval from the Technical Authority.|Value derived from the parent asset.|"
    "Information requirement agreed with the operator."
)
_FILE_STEMS = _words(
    "IMG|Survey_Report|As_Built_Drawing|Inspection_Photo|O&M_Manual|Test_Certificate|"
    "Handback_Pack|Design_Statement|Schedule|Asset_Data_Sheet"
)
_FILE_TYPES = _words(".jpg|.png|.pdf|.xlsx|.zip|.docx")
_OPTION_WORDS = _words(
    "Low|Medium|High|Open|Closed|Yes|No|Not applicable|Pending|Approved|Rejected|"
    "Environmental|Legal|Cost|Programme|Reputational|Contractor|Beneficiary|"
    "Member of the Public|Helpdesk|Email correspondence|Traffic Management|Design|Noise|"
    "Ecology|Heritage"
)
_UNKNOWN_VALUES = _words(
    "Text|m|Civils|Systems|Rev A|P01|Approved|Draft|Design|S2|Information Management|"
    "Environment|Asset Management|1|2"
)
_LINK_TYPES = _words(
    "Photograph|As-built drawing|Inspection report|O&M manual|Test certificate|"
    "Design drawing|Data sheet|Model|Survey|Consent document|GIS layer"
)
_RELATIONSHIP_TYPES = _pairs(
    "Is part of:Has part|Connects to:Is connected to|Supports:Is supported by|"
    "Feeds:Is fed by|Drains to:Receives drainage from|Protects:Is protected by|"
    "Is located in:Contains|Replaces:Is replaced by|Monitors:Is monitored by|"
    "Powers:Is powered by"
)


# --------------------------------------------------------------------------------------------
# Spec-derived facts: row counts, relations, pinned IDs, ID ranges
# --------------------------------------------------------------------------------------------

_ASSET_FKS = _words("ASSETID|ANCESTORASSETID|DESCENDANTASSETID|SOURCEASSETID|TARGETASSETID")
_CLASS_FKS = _words(
    "ASSETCLASSID|SOURCEASSETCLASSID|TARGETASSETCLASSID|REPLACEDBYCLASSID|ASSUBCLASSOFID"
)
_PEOPLE_FKS = _words(
    "PERSONID|REVIEWEDBYID|IMPLEMENTEDBYID|CREATEDBYPERSONID|PERSONVALUEID|APPROVEDBYID|"
    "PROPOSEDBYID|DEPRECATEDBYID|ASSIGNEEID|DELIVERYASSIGNEEID|PERFORMEDBYID|ORIGINATORID|"
    "REASSIGNTOID|DELEGATETOID"
)
_FK_PARENT_BY_NAME: dict[str, str] = {
    **{c: "aims_assets" for c in _ASSET_FKS},
    **{c: "aims_assetclasses" for c in _CLASS_FKS},
    **{c: "aims_people" for c in _PEOPLE_FKS},
    "ATTRIBUTEID": "aims_attributes",
    "SOURCEATTRIBUTEID": "aims_attributes",
    "AGGREGATEATTRIBUTEID": "aims_attributes",
    "ATTRIBUTEDOMAINID": "aims_attributedomains",
    "ATTRIBUTEGROUPID": "aims_attributegroups",
    "SELECTIONVALUEID": "aims_attributedomainvalues",
    "DOMAINVALUEID": "aims_attributedomainvalues",
    "SINGLEATTRIBUTEDOMAINVALUEID": "aims_attributedomainvalues",
    "OWNERID": "aims_owners",
    "ORGANISATIONID": "aims_organisations",
    "DELIVERYORGANISATIONID": "aims_organisations",
    "PHASEID": "aims_phases",
    "STAGEID": "aims_stages",
    "PUBLISHEDATSTAGEID": "aims_stages",
    "AVAILABLEFROMSTAGEID": "aims_stages",
    "REQUIREDATSTAGEID": "aims_stages",
    "ROUTEID": "aims_routes",
    "TRACKID": "aims_tracks",
    "LINKTYPEID": "aims_linktypes",
    "RELATIONSHIPTYPEID": "aims_relationshiptypes",
    "CONSENTID": "aims_consents",
    "CONSENTTYPEID": "aims_consenttypes",
    "CONSENTMILESTONETYPEID": "aims_consentmilestonetypes",
    "INFORMATIONNEEDID": "aims_informationneeds",
    "INFORMATIONNEEDATTRIBUTEID": "aims_informationneedattributes",
    "INFORMATIONNEEDPROPOSEDCHANGID": "aims_informationneedpropchngs",
    "NONCOMPLIANCEID": "aims_noncompliances",
    "UNDERTAKINGASSURANCEID": "aims_undertakings_assurances",
    "TOUAID": "aims_undertakings_assurances",
    "MEETINGID": "aims_ua_meetings",
    "BENEFICIARYID": "aims_ua_entities",
    "COMMITMENTOWNERID": "aims_ua_entities",
    "OPTIONSETVALUEID": "aims_ua_optionvalues",
    "PARENTCATEGORYID": "aims_ua_optionvalues",
    "PROJECTITEMID": "aims_projectitems",
    "NEWPROJECTITEMID": "aims_projectitems",
    "EXISTINGPROJECTITEMID": "aims_projectitems",
    "INPUTITEMID": "aims_projectitems",
    "OUTPUTITEMID": "aims_projectitems",
    "TASKDEFINITIONID": "aims_taskdefinitions",
    "WORKORDERID": "aims_workorders",
    "WORKBANKID": "aims_workbanks",
    "PRODUCTID": "aims_products",
}

# Small published ID families keep small IDs (their FK lengths and value sets show 1-5 digit
# values); each window starts here and ends where the next one starts.
_SMALL_ID_WINDOWS: dict[str, int] = {
    "aims_projectitems": 7,
    "aims_tracks": 27,
    "aims_consentmilestonetypes": 190,
    "aims_ua_optionvalues": 330,
    "aims_ua_meetings": 430,
    "aims_consenttypes": 600,
    "aims_noncompliances": 1_500,
    "aims_ua_entities": 3_000,
    "aims_people": 3_832,
    "aims_informationneeds": 6_000,
    "aims_informationneedattributes": 7_000,
    "aims_informationneedpropchngs": 8_400,
    "aims_undertakings_assurances": 20_000,
}
_BLOCK_START = 13_001_000  # main AIMS IDs; published pinned values 13000000-13000200 sit below
_FREE_ID_BASE = 50_000_000  # IDs of FK columns with no parent table (not contained in any table)


def _spec_table(table: str | TableSpec) -> TableSpec:
    if isinstance(table, TableSpec):
        return table
    spec = load_spec()
    if table not in spec:
        raise AimsError(
            f"table {table!r} is not in the AIMS spec",
            hint=f"use one of the {len(spec)} published tables, e.g. aims_assets",
        )
    return spec[table]


def rows_for_scale(table: str | TableSpec, scale: float = DEFAULT_SCALE) -> int:
    """Rows generated for ``table`` at ``scale`` (the published count at scale 1.0)."""
    spec = _spec_table(table)
    if spec.rows == 0:
        return 0
    if spec.rows < SMALL_TABLE_ROWS:
        return spec.rows
    return max(1, round(spec.rows * scale))


def fk_parent(table: str, column: str) -> str | None:
    """The table whose ``ID`` the FK column ``table.column`` references, or None."""
    if column == "PARENTID":
        return table
    if table == "aims_consents" and column == "TYPEID":
        return "aims_consenttypes"
    if column in _FK_PARENT_BY_NAME:
        return _FK_PARENT_BY_NAME[column]
    if table == "aims_noncompliances" and column.endswith("ID") and column != "ID":
        return "aims_ua_optionvalues"  # the UA option-set lookups (category, source, ratings...)
    return None


def _fk_columns_with_parent(
    spec: dict[str, TableSpec],
) -> Iterator[tuple[TableSpec, ColumnSpec, str]]:
    """(table, fk column, parent table) for every FK column whose parent table has rows."""
    for t in spec.values():
        for c in t.columns:
            if c.kind != "fk":
                continue
            parent = fk_parent(t.name, c.name)
            if parent is not None and parent in spec and spec[parent].rows > 0:
                yield t, c, parent


@lru_cache(maxsize=1)
def relations() -> dict[tuple[str, str], str]:
    """Every FK column (of a non-empty table) whose parent table has rows: (table, column) -> parent.

    In a clean lake every non-null value of these columns that is not a placeholder is an ``ID``
    of the parent table (compared as integers: '13000015.0' matches '13000015').
    """
    out: dict[tuple[str, str], str] = {}
    for t, c, parent in _fk_columns_with_parent(load_spec()):
        if t.rows == 0:
            continue
        if c.value_set is not None and not _real_values(c.value_set):
            continue  # published as placeholders only ('None')
        out[(t.name, c.name)] = parent
    return out


@lru_cache(maxsize=1)
def _pinned() -> tuple[dict[str, list[int]], dict[str, dict[int, str]]]:
    """IDs (and labels) of parent rows that published FK value sets name explicitly."""
    ids: dict[str, list[int]] = {}
    labels: dict[str, dict[int, str]] = {}
    for t, c, parent in _fk_columns_with_parent(load_spec()):
        real = _real_values(c.value_set)
        vals = [int(float(v)) for v in real if _intlike(v)]
        if not vals:
            continue
        bucket = ids.setdefault(parent, [])
        bucket.extend(v for v in vals if v not in bucket)
        label_col = c.name[:-2]
        if label_col in t.column_names:
            label_real = _real_values(t.column(label_col).value_set)
            if len(label_real) == len(vals):
                for v, lab in zip(vals, label_real, strict=True):
                    labels.setdefault(parent, {}).setdefault(v, lab)
    return {k: sorted(v) for k, v in ids.items()}, labels


@lru_cache(maxsize=1)
def _all_pinned_ids() -> frozenset[int]:
    return frozenset(v for vals in _pinned()[0].values() for v in vals)


@lru_cache(maxsize=8)
def _block_bases(scale: float) -> dict[str, int]:
    """Disjoint ID blocks (from 13,001,000) for every non-empty table, sized at max(scale, 1)."""
    bases: dict[str, int] = {}
    base = _BLOCK_START
    for t in load_spec().values():
        if t.rows == 0:
            continue
        bases[t.name] = base
        capacity = (rows_for_scale(t, max(scale, 1.0)) * 3) // 2 + 1
        base += int(math.ceil(capacity / 1000.0) * 1000)
    return bases


def _window_end(table: str) -> int:
    start = _SMALL_ID_WINDOWS[table]
    later = [s for s in _SMALL_ID_WINDOWS.values() if s > start]
    return min(later) if later else _BLOCK_START


def table_ids(table: str, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """The clean ``ID`` values (int64, in file order) of ``table`` at ``scale``."""
    return _table_ids(table, scale).copy()


@lru_cache(maxsize=128)
def _table_ids(table: str, scale: float) -> np.ndarray:
    n = rows_for_scale(table, scale)
    pinned = _pinned()[0].get(table, [])[:n]
    rest = n - len(pinned)
    generated = None
    if table in _SMALL_ID_WINDOWS and rest > 0:
        start = _SMALL_ID_WINDOWS[table]
        cand = np.arange(start, start + rest + len(_all_pinned_ids()) + 1, dtype=np.int64)
        cand = cand[~np.isin(cand, np.fromiter(_all_pinned_ids(), dtype=np.int64))][:rest]
        if len(cand) == rest and cand[-1] < _window_end(table):
            generated = cand
    if generated is None:
        generated = _block_bases(scale)[table] + (np.arange(rest, dtype=np.int64) * 3) // 2
    out = np.concatenate([np.asarray(pinned, dtype=np.int64), generated.astype(np.int64)])
    out.setflags(write=False)
    return out


# --------------------------------------------------------------------------------------------
# Lookups: labels of parent rows, shared by the parent's own columns and its children's labels
# --------------------------------------------------------------------------------------------


def _initials(r: random.Random, segments: int) -> str:
    letters = "ABCDEFGHIJKLMNOPRSTUVW"
    return "-".join(r.choice(letters) + r.choice(letters) for _ in range(segments))


def _lookup_row(table: str, i: int, id_: int, r: random.Random, pinned: str | None):
    """Component columns and label of row ``i`` of a (small) parent table."""
    if table == "aims_assetclasses":
        name = f"{r.choice(_MATERIALS)} {r.choice(_CLASS_NOUNS)}"
        code = _initials(r, r.choice((2, 3, 3, 4)))
        return {"NAME": name, "CODE": code}, f"{name} ({code})"
    if table == "aims_attributes":
        name = f"{r.choice(_ATTR_QUALITIES)} {r.choice(_UNITS)}".strip()
        name = pinned or name
        code = f"{name.upper().replace(' ', '_')[:20]}_{i:04d}"
        return {"NAME": name, "CODE": code, "DISPLAYCODE": code[:34]}, name
    if table == "aims_attributedomains":
        name = f"{r.choice(_CLASS_NOUNS)} {r.choice(('Type', 'Material', 'Status', 'Category'))}"
        return {"NAME": name, "CODE": f"AD{id_ % 100000:05d}"}, name
    if table == "aims_attributedomainvalues":
        desc = f"{r.choice(_MATERIALS)}"
        return {"DESCRIPTION": desc, "CODE": f"{desc[:3].upper()}{i:04d}"}, desc
    if table == "aims_attributegroups":
        name = f"{_GROUP_WORDS[i % len(_GROUP_WORDS)]} {i // len(_GROUP_WORDS) + 1}"
        return {"NAME": name, "PREFIX": name[:3].upper()}, name
    if table in ("aims_owners", "aims_organisations"):
        name = pinned or _ORGS[(i + (0 if table == "aims_owners" else 3)) % len(_ORGS)]
        if i >= len(_ORGS):
            name = f"{name} {i // len(_ORGS) + 1}"
        code = "".join(w[0] for w in name.replace("-", " ").split())[:12].upper()
        code = code if len(code) >= 2 else name[:3].upper()
        return {"NAME": name, "CODE": code}, name
    if table == "aims_phases":
        name = pinned or f"Phase {i + 1}"
        return {"DESCRIPTION": name, "CODE": str(i + 1)}, name
    if table == "aims_stages":
        label = pinned or f"{i + 1} - Stage {i + 1}"
        number, _, desc = label.partition(" - ")
        return {"STAGENUMBER": number, "DESCRIPTION": desc or label}, label
    if table == "aims_routes":
        if pinned:
            code, _, desc = pinned.partition(" - ")
        else:
            code = "H2" + r.choice("ABCDEFGHJKLMNPRSTW") + r.choice("ABCDEFGHJKLMNPRSTW")
            desc = f"{r.choice(_PLACES)} – {r.choice(_PLACES)} ({r.choice(_TITLE_WORDS)} Line)"
        return {"CODE": code, "DESCRIPTION": desc}, f"{code} - {desc}"
    if table == "aims_tracks":
        code = pinned or f"H2{'ABCDEFGH'[i % 8]}{'LMNS'[i % 4]}-{i % 20 + 1:02d}"
        return {"CODE": code}, code
    if table == "aims_people":
        if pinned:
            first, _, last = pinned.partition(" ")
        else:
            first, last = r.choice(_FIRST), r.choice(_LAST)
        email = f"{first.lower()}.{last.lower()}@example.org"
        return {"FIRSTNAME": first, "LASTNAME": last, "EMAILADDRESS": email}, f"{first} {last}"
    if table == "aims_linktypes":
        desc = _LINK_TYPES[i % len(_LINK_TYPES)] + ("" if i < len(_LINK_TYPES) else f" {i}")
        return {"DESCRIPTION": desc, "CODE": desc.upper().replace(" ", "_")[:29]}, desc
    if table == "aims_relationshiptypes":
        fwd, rev = _RELATIONSHIP_TYPES[i % len(_RELATIONSHIP_TYPES)]
        if i >= len(_RELATIONSHIP_TYPES):
            fwd, rev = f"{fwd} ({i})", f"{rev} ({i})"
        code = fwd.upper().replace(" ", "_")[:21]
        return {"DESCRIPTION": fwd, "REVERSEDESCRIPTION": rev, "NAME": fwd, "CODE": code}, fwd
    if table == "aims_consents":
        number = f"HS2-CON-{id_ % 1_000_000:06d}"
        return {"CONSENTNUMBER": number}, number
    if table == "aims_consenttypes":
        desc = f"{r.choice(_TITLE_WORDS)} {r.choice(('Consent', 'Approval', 'Licence', 'Permit'))}"
        return {"CODE": f"CT{id_ % 10000:03d}", "DESCRIPTION": desc}, desc
    if table == "aims_consentmilestonetypes":
        code = f"M{i + 1:02d}"
        return {"CODE": code, "NAME": code}, code
    if table == "aims_informationneeds":
        ref = f"IN-{id_}"
        return {"REFERENCE": ref}, f"Info need {ref}"
    if table == "aims_noncompliances":
        ref = f"NC-{id_}"
        return {"REFERENCEID": ref}, ref
    if table == "aims_undertakings_assurances":
        ref = f"UA-{id_}"
        return {"REFERENCEID": ref, "DOORSID": f"DOORS-{id_}"}, ref
    if table == "aims_ua_entities":
        name = (_ORGS[i % len(_ORGS)] if i % 3 else f"{r.choice(_FIRST)} {r.choice(_LAST)}") + (
            "" if i < len(_ORGS) else f" ({i})"
        )
        return {"NAME": name}, name
    if table == "aims_ua_optionvalues":
        name = pinned or f"{_OPTION_WORDS[i % len(_OPTION_WORDS)]}"
        return {"NAME": name}, name
    if table in ("aims_projectitems", "aims_taskdefinitions"):
        title = f"{r.choice(_TITLE_WORDS)} {r.choice(_TITLE_WORDS)} item {i + 1}"
        return {"TITLE": title}, title
    stem = table.removeprefix("aims_").rstrip("s").replace("_", " ").title()
    return {}, f"{stem} {id_}"


class _Lookup:
    """Labels (and the columns they are built from) of one parent table."""

    def __init__(self, table: str, scale: float, seed: int) -> None:
        self.table = table
        self.n = rows_for_scale(table, scale)
        self.seed = seed
        self.ids = _table_ids(table, scale)
        self.components: dict[str, pa.Array] = {}
        self._labels: pa.Array | None = None
        if table == "aims_assets":
            return  # computed per chunk from positions (2.2M rows at scale 1)
        r = random.Random(_h(seed, table, "lookup"))
        pinned = _pinned()[1].get(table, {})
        comps: dict[str, list[str]] = {}
        labels: list[str] = []
        for i in range(self.n):
            id_ = int(self.ids[i])
            row, label = _lookup_row(table, i, id_, r, pinned.get(id_))
            for k, v in row.items():
                comps.setdefault(k, []).append(v)
            labels.append(label)
        self.components = {k: _sa(v) for k, v in comps.items()}
        self._labels = _sa(labels)

    def has_component(self, column: str) -> bool:
        if self.table == "aims_assets":
            return column == "NAME"
        return column in self.components

    def component(self, column: str, pos: np.ndarray) -> pa.Array:
        if self.table == "aims_assets":
            return _asset_names(pos, self.seed)
        return _take(self.components[column], pos)

    def labels(self, pos: np.ndarray) -> pa.Array:
        """Labels of parent positions ``pos`` (positions < 0 give null)."""
        safe = np.where(pos < 0, 0, pos)
        out = _asset_names(safe, self.seed) if self._labels is None else _take(self._labels, safe)
        if (pos < 0).any():
            out = pc.if_else(pa.array(pos < 0), pa.scalar(None, pa.string()), out)
        return out


def _asset_names(pos: np.ndarray, seed: int) -> pa.Array:
    """'Culvert C-1234 at Chainage 12+340' style names, a pure function of (position, seed)."""
    h = _mix(np.asarray(pos, dtype=np.int64), _h(seed, "asset-names"))
    t = (h % np.uint64(len(_ASSET_TYPES))).astype(np.int64)
    types = _take(_sa(a for a, _ in _ASSET_TYPES), t)
    prefixes = _take(_sa(p for _, p in _ASSET_TYPES), t)
    num = _fmt_int(((h >> np.uint64(8)) % np.uint64(9000)).astype(np.int64) + 1000, False)
    km = _fmt_int(((h >> np.uint64(24)) % np.uint64(230)).astype(np.int64), False)
    metres = pc.utf8_lpad(
        _fmt_int(((h >> np.uint64(32)) % np.uint64(1000)).astype(np.int64), False), 3, "0"
    )
    place = _take(_sa(_PLACES), ((h >> np.uint64(42)) % np.uint64(len(_PLACES))).astype(np.int64))
    head = _join(types, " ", prefixes, "-", num)
    with_chainage = _join(head, " at Chainage ", km, "+", metres)
    with_place = _join(head, " near ", place)
    use_chainage = pa.array(((h >> np.uint64(52)) % np.uint64(3)) != 0)
    return pc.if_else(use_chainage, with_chainage, with_place)


# --------------------------------------------------------------------------------------------
# Column plans: how each column is generated, and which defects it can carry
# --------------------------------------------------------------------------------------------

_EMAIL_COLUMNS = frozenset(_words("CREATEDBY|HS2CREATEDBY|HS2_CREATEDBY|MOVEDTOLIVEBY|UPDATEDBY"))
_PERSON_COLUMNS = frozenset(
    _words(
        "APPROVEDBY|ASSIGNEE|ATTENDEE|CREATEDBYPERSON|DELEGATETO|DELIVERYASSIGNEE|"
        "DEPRECATEDBY|IMPLEMENTEDBY|ORIGINATOR|PERFORMEDBY|PERSON|PERSONVALUE|PROPOSEDBY|"
        "REASSIGNTO|RECEIVERNAME|REMOVEDBY|REVIEWEDBY|WHO"
    )
)
_ORG_COLUMNS = frozenset(
    _words(
        "BENEFICIARY|COMMITMENTOWNER|CONTRACTORNAME|DELIVERYORGANISATION|IMPACTEDPARTY|"
        "MANUFACTURER|ORGANISATION|OWNER|PROVIDERNAME"
    )
)
_ASSET_LABEL_COLUMNS = frozenset(
    _words("ANCESTORASSET|ASSET|DESCENDANTASSET|SOURCEASSET|TARGETASSET")
)
_TITLE_COLUMNS = frozenset(
    _words(
        "ASSETCLASS|ATTRIBUTE|ATTRIBUTEDOMAIN|CHAINAGEUNITS|CLASSNAME|CONSENT|CONSENTTYPE|"
        "CONSTRAINTTYPE|CURRENTSTATUS|DEFAULTASSETSTATUS|DEFAULTCHAINAGEBASELINE|DOMAINVALUE|"
        "EXISTINGPROJECTITEM|FEATURETYPE|IMPLEMENTATIONSTATUS|IMPLIESDELIVERYOFFUNCTION|"
        "INFORMATIONNEED|INFORMATIONNEEDATTRIBUTE|INFORMATIONNEEDPROPOSEDCHANGE|"
        "INFORMATIONSPECIFIER|LINKTYPE|MILESTONE|NAME|NEWATTRIBUTENAME|NEWPROJECTITEM|"
        "NEWSTATE|NONCOMPLIANCE|OBJECTIVE|OPTIONSET|OPTIONSETVALUE|OVERRIDEMILESTONENAME|"
        "PARENT|PROJECTITEM|PROJECTITEMACTIONTYPE|PROJECTITEMROLE|RELATIONSHIPTYPE|"
        "REQUIRESATTACHMENTS|ROLESSET|ROUTE|SOURCE|SOURCEASSETCLASS|STATUS|SUBJECT|"
        "SYSTEMFIELD|TARGETASSETCLASS|TASKDEFINITIONCLASS|TITLE|TOUA|TYPE|"
        "UNDERTAKINGASSURANCE|WORKORDER"
    )
)


_DATETIME_NAMES = frozenset(
    _words(
        "VALIDFROM|VALIDTO|DATETIMEVALUE|TIMEVALUE|CHANGEDATE|MOVEDTOLIVEDATE|MOVETOLIVEDATE|"
        "LASTUPDATEDATE|LASTUPDATEDATETHISASSET|REVIEWEDON|FORECASTDATE|ACTUALDATE"
    )
)
_TEXT_CHOICES: dict[str, tuple[str, ...]] = {
    "CHAINAGEUNITS": ("Kilometres", "Miles / yards"),
    "DEFAULTASSETSTATUS": ("Published", "Work in progress", "Client-shared"),
    "DEFAULTCHAINAGEBASELINE": ("Hybrid Bill", "AP1", "AP2", "Design", "ERD 1 Snakegrid"),
    "LPO": ("HS2", "NR", "TfL", "CRT"),
    "SOURCE": ("AIMS", "Manual entry", "CSV data load", "Web service", "BIM model"),
    "IMPLEMENTATIONSTATUS": ("Open", "Closed", "In progress"),
    "CURRENTSTATUS": ("Under review", "Approved", "Rejected"),
    "RELATIONSHIPTYPE": ("Is part of", "Connects to", "Supports", "Drains to", "Is located in"),
    "CONSTRAINTTYPE": ("Source class must be a Group", "Target class must be a Group"),
}


def _is_datetime_name(name: str) -> bool:
    """Whether a date column (without published lengths) holds 'YYYY-MM-DD HH:MM:SS'."""
    return name in _DATETIME_NAMES or name.endswith(("CREATED", "UPDATED"))


def _text_family(name: str, length: tuple[int, int] | None) -> str:
    hi = length[1] if length else None
    if length in ((3, 10), (3, 19)):
        return "date"  # the signature of 'NaT' or 'YYYY-MM-DD[ HH:MM:SS]' held as text
    if name in _TEXT_CHOICES:
        return "choices"
    if "LOCATION" in name:
        return "location"
    if name in _EMAIL_COLUMNS:
        return "email"
    if name == "EMAILADDRESS":
        return "email_name"
    if name == "FIRSTNAME":
        return "first"
    if name == "LASTNAME":
        return "last"
    if name in _PERSON_COLUMNS:
        return "person"
    if name in _ORG_COLUMNS:
        return "org"
    if "URL" in name or name in ("ADDRESS", "LINKTOFILE"):
        return "url"
    if "FILENAME" in name:
        return "filename"
    if name in _ASSET_LABEL_COLUMNS:
        return "asset"
    if (
        name.endswith("CODE")
        or name.endswith("NUMBER")
        or "REFERENCE" in name
        or name in ("PREFIX", "DOORSID", "DESLINK", "LPO", "UNIQUEASSETID", "ACTIVITYID")
    ):
        return "code"
    if name in _TITLE_COLUMNS or (hi is not None and hi < 25):
        return "title"
    return "notes"


@dataclass
class _Plan:
    name: str
    kind: str
    mode: str  # id fk fkfree choice component label label_vs date number text unknown
    null_frac: float = 0.0  # real nulls
    ph_frac: float = 0.0  # placeholder strings ('None', ' ', 'NaT')
    ph_values: tuple[str, ...] = ("None",)
    float_style: bool = False
    values: tuple[str, ...] = ()  # choice values (verbatim value set)
    weights: np.ndarray | None = None
    parent: str | None = None
    restrict: tuple[int, ...] = ()  # allowed parent IDs (from the FK's value set)
    unique: bool = False
    length: tuple[int, int] | None = None
    family: str = "notes"
    datetime: bool = True
    sibling: str | None = None
    label_values: tuple[str, ...] = ()  # label_vs: labels aligned with the sibling's real values
    label_null: str = "None"
    has_placeholders: bool = False

    @property
    def nonnull_clean(self) -> bool:
        return self.null_frac == 0 and self.ph_frac == 0 and not self.has_placeholders


def _fk_with_label(table: TableSpec, col: ColumnSpec) -> bool:
    """A 4-digit FK whose label sibling has real text (so its (4, 4) length is not 'None')."""
    if col.kind != "fk" or fk_parent(table.name, col.name) is None:
        return False
    parent = load_spec().get(fk_parent(table.name, col.name))
    if parent is None or parent.rows == 0:
        return False
    label = col.name[:-2]
    if label not in table.column_names:
        return True
    return table.column(label).length not in ((1, 1), (4, 4))


def _null_fracs(table: str, col: ColumnSpec) -> tuple[float, float]:
    """(real-null fraction, placeholder fraction) for a column."""
    if col.nullable_percent is None:
        total = 0.15 + 0.25 * (_h(table, col.name, "nulls") % 1000) / 1000.0
        return total * 0.75, total * 0.25
    return col.nullable_percent / 100.0, 0.0


def _is_float_style(col: ColumnSpec) -> bool:
    real = _real_values(col.value_set)
    if real:
        return any(v.endswith(".0") for v in real)
    return col.nullable_percent is None or col.nullable_percent > 0


def _const(plan: _Plan, value: str) -> _Plan:
    plan.mode = "choice"
    plan.values = (value,)
    plan.weights = np.ones(1)
    plan.has_placeholders = value in _LABEL_PLACEHOLDERS
    return plan


def _choice(plan: _Plan, values: tuple[str, ...]) -> _Plan:
    plan.mode = "choice"
    plan.values = values
    plan.weights = _geometric(len(values))
    plan.has_placeholders = any(v in _LABEL_PLACEHOLDERS for v in values)
    return plan


def _build_plans(table: TableSpec) -> list[_Plan]:
    spec = load_spec()
    names = set(table.column_names)
    pinned_ids = _pinned()[0]
    plans: dict[str, _Plan] = {}
    for col in table.columns:
        null_frac, ph_frac = _null_fracs(table.name, col)
        plan = _Plan(
            name=col.name,
            kind=col.kind,
            mode="text",
            null_frac=null_frac,
            ph_frac=ph_frac,
            length=col.length,
            unique=col.unique,
            float_style=_is_float_style(col),
        )
        real = _real_values(col.value_set)
        length = col.length
        if col.kind == "id" and col.name == "ID":
            plan.mode, plan.null_frac, plan.ph_frac = "id", 0.0, 0.0
        elif col.kind == "unknown":
            plan.mode = "unknown"
            if col.nullable_percent == 0.0:
                plan.null_frac, plan.ph_frac = (
                    0.0,
                    0.85 + 0.1 * (_h(table.name, col.name) % 100) / 100,
                )
            else:
                plan.null_frac, plan.ph_frac = 0.8, 0.1
        elif col.value_set is not None and not real:
            _choice(plan, tuple(col.value_set))  # only placeholders were published
        elif length == (4, 4) and not _fk_with_label(table, col):
            _const(plan, "None")  # every value was the 4-character string 'None'
        elif length == (1, 1) and col.kind in ("text", "category"):
            _const(plan, " ")
        elif col.kind == "fk":
            parent = fk_parent(table.name, col.name)
            if parent is not None and parent in spec and spec[parent].rows > 0:
                plan.mode, plan.parent = "fk", parent
                if real:
                    allowed = set(pinned_ids.get(parent, []))
                    plan.restrict = tuple(int(float(v)) for v in real if _intlike(v))
                    plan.restrict = tuple(v for v in plan.restrict if v in allowed)
                    if not plan.restrict:
                        _choice(plan, tuple(col.value_set))
            elif parent is not None and parent in spec:
                _const(plan, "None")  # the parent table is empty in the export
            elif real:
                _choice(plan, tuple(col.value_set))
            else:
                plan.mode = "fkfree"
        elif col.kind == "date":
            if col.value_set is not None:
                _choice(plan, tuple(col.value_set))
            elif length is not None and length[1] < 10:
                _const(plan, "NaT" if length[1] == 3 else "None")
            else:
                plan.mode = "date"
                if length is not None:
                    plan.datetime = length[1] >= 19
                    if length[0] < 10:  # the export holds 'NaT'/'None' strings here
                        base = 0.55 if col.name == "VALIDTO" else 0.12
                        plan.ph_frac = max(plan.ph_frac, base)
                else:
                    plan.datetime = _is_datetime_name(col.name)
        elif col.kind == "bool":
            if col.value_set is not None:
                _choice(plan, tuple(col.value_set))
            elif length is not None:
                lo, hi = length
                if hi <= 2 and lo == 1:
                    _choice(plan, ("0", "-1") if hi == 2 else ("0",))
                elif lo == 2 and hi == 2:
                    _const(plan, "No")
                elif hi == 3:
                    _choice(plan, ("No", "Yes"))
                else:
                    _choice(plan, ("No", "Yes", "None"))
            else:
                _choice(plan, ("0.0", "-1.0") if plan.float_style else ("0", "-1"))
        elif col.kind == "number":
            if col.value_set is not None:
                _choice(plan, tuple(col.value_set))
            else:
                plan.mode = "number"
        elif col.kind == "category":
            if col.value_set is not None:
                _choice(plan, tuple(col.value_set))
            else:
                plan.mode, plan.family = "text", _text_family(col.name, length)
        else:  # text
            plan.mode, plan.family = "text", _text_family(col.name, length)
        if plan.mode == "date":
            plan.ph_values = ("None",) if length is not None and length[0] == 4 else ("NaT",)
        elif plan.ph_frac:
            plan.ph_values = ("None", " ") if plan.mode == "text" else ("None",)
        if plan.mode == "text" and plan.family == "date":
            plan.has_placeholders = True  # 'NaT' strings, as in the export
        if plan.mode == "fk" and plan.parent == table.name:
            plan.has_placeholders = True  # the root of a self reference has no parent
        plans[col.name] = plan

    # Parent-table components and labels of a sibling FK (second pass: siblings are known now).
    own = table.name
    for col in table.columns:
        plan = plans[col.name]
        if plan.mode in ("id", "fk", "fkfree", "unknown") or col.kind in ("fk", "id", "date"):
            continue
        if col.kind in ("text", "number") and plan.mode in ("text", "number"):
            if _lookup_has_component(own, col.name):
                plan.mode = "component"
                continue
        sib_name = col.name + "ID"
        if sib_name not in names or sib_name == col.name:
            continue
        sib = plans[sib_name]
        sib_spec = table.column(sib_name)
        if col.kind == "category" and plan.mode == "choice":
            label_real = _real_values(col.value_set)
            sib_real = _real_values(sib_spec.value_set)
            aligned = len(label_real) >= 1 and len(label_real) == len(sib_real)
            if aligned and sib.mode in ("fk", "choice"):
                plan.mode = "label_vs"
                plan.sibling = sib_name
                plan.label_values = tuple(label_real)
                ph = _placeholder_values(col.value_set)
                plan.label_null = ph[0] if ph else "None"
                plan.has_placeholders = bool(ph) or not sib.nonnull_clean
        elif col.kind == "text" and plan.mode == "text" and sib.mode == "fk":
            plan.mode = "label"
            plan.sibling = sib_name
            plan.parent = sib.parent
            plan.has_placeholders = not sib.nonnull_clean
    return [plans[c.name] for c in table.columns]


_COMPONENT_COLUMNS = {
    "aims_assets": {"NAME"},
    "aims_assetclasses": {"NAME", "CODE"},
    "aims_attributes": {"NAME", "CODE", "DISPLAYCODE"},
    "aims_attributedomains": {"NAME", "CODE"},
    "aims_attributedomainvalues": {"DESCRIPTION", "CODE"},
    "aims_attributegroups": {"NAME", "PREFIX"},
    "aims_owners": {"NAME", "CODE"},
    "aims_organisations": {"NAME"},
    "aims_phases": {"DESCRIPTION", "CODE"},
    "aims_stages": {"STAGENUMBER", "DESCRIPTION"},
    "aims_routes": {"CODE", "DESCRIPTION"},
    "aims_tracks": {"CODE"},
    "aims_people": {"FIRSTNAME", "LASTNAME", "EMAILADDRESS"},
    "aims_linktypes": {"DESCRIPTION", "CODE"},
    "aims_relationshiptypes": {"DESCRIPTION", "REVERSEDESCRIPTION", "NAME", "CODE"},
    "aims_consents": {"CONSENTNUMBER"},
    "aims_consenttypes": {"CODE", "DESCRIPTION"},
    "aims_consentmilestonetypes": {"CODE", "NAME"},
    "aims_informationneeds": {"REFERENCE"},
    "aims_noncompliances": {"REFERENCEID"},
    "aims_undertakings_assurances": {"REFERENCEID", "DOORSID"},
    "aims_ua_entities": {"NAME"},
    "aims_ua_optionvalues": {"NAME"},
    "aims_projectitems": {"TITLE"},
    "aims_taskdefinitions": {"TITLE"},
}


def _lookup_has_component(table: str, column: str) -> bool:
    return column in _COMPONENT_COLUMNS.get(table, ())


@lru_cache(maxsize=128)
def _plans(table: str) -> tuple[_Plan, ...]:
    return tuple(_build_plans(load_spec()[table]))


def _eligible_columns(table: str) -> dict[str, list[str]]:
    """Columns of ``table`` that can carry each defect kind (see the module docstring)."""
    spec = load_spec()[table]
    rels = relations()
    out: dict[str, list[str]] = {k: [] for k in DEFECT_KINDS}
    for col, plan in zip(spec.columns, _plans(table), strict=True):
        if plan.mode == "id":
            out["duplicate_id"].append(col.name)
            continue
        if (
            col.nullable_percent == 0.0
            and plan.nonnull_clean
            and plan.mode not in ("unknown",)
            and col.kind != "id"
        ):
            out["null_required"].append(col.name)
        if (
            col.kind == "category"
            and plan.mode in ("choice", "label_vs")
            and len(_real_values(col.value_set)) >= 2
        ):
            out["out_of_value_set"].append(col.name)
        if col.kind == "text" and col.length and plan.mode in ("text", "label", "component"):
            out["too_long"].append(col.name)
        if plan.mode == "fk" and (table, col.name) in rels:
            out["orphan_fk"].append(col.name)
        if col.kind == "date" and plan.mode == "date" and plan.nonnull_clean:
            out["bad_date"].append(col.name)
        if col.kind == "number" and (
            plan.mode in ("number", "component")
            or (plan.mode == "choice" and any(_intlike(v) or _is_number(v) for v in plan.values))
        ):
            out["bad_number"].append(col.name)
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def eligible_columns(table: str) -> dict[str, list[str]]:
    """Per defect kind, the columns of ``table`` that the generator may corrupt."""
    _spec_table(table)
    return {k: list(v) for k, v in _eligible_columns(table).items()}


def defect_count(rate: float, rows: int) -> int:
    """Defects of one kind in one eligible table: 0 under 200 rows, else max(1, round(rate*rows))."""
    if rate <= 0 or rows < MIN_DEFECT_ROWS:
        return 0
    return max(1, round(rate * rows))


def defect_counts(table: str, rows: int, rates: DefectRates | None = None) -> dict[str, int]:
    """Exact number of defects per kind that ``generate_lake`` injects into ``table``."""
    rates = DefectRates() if rates is None else rates
    eligible = _eligible_columns(_spec_table(table).name)
    return {
        kind: defect_count(getattr(rates, kind), rows) if eligible[kind] else 0
        for kind in DEFECT_KINDS
    }


# --------------------------------------------------------------------------------------------
# Value generators
# --------------------------------------------------------------------------------------------

_DAY0 = np.datetime64("2015-01-01", "D")
_T0_LO = int((np.datetime64("2019-01-01", "D") - _DAY0).astype(np.int64)) * 86400
_T0_HI = int((np.datetime64("2025-06-30", "D") - _DAY0).astype(np.int64)) * 86400
_T_MAX = int((np.datetime64("2025-12-31", "D") - _DAY0).astype(np.int64)) * 86400


@lru_cache(maxsize=1)
def _day_pool() -> pa.Array:
    days = np.arange(_DAY0, np.datetime64("2028-01-01", "D"))
    return pa.array(np.datetime_as_string(days, unit="D").tolist(), type=pa.string())


@lru_cache(maxsize=1)
def _time_pool() -> pa.Array:
    return _sa(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400))


def _dates(seconds: np.ndarray, with_time: bool) -> pa.Array:
    seconds = np.where(seconds > _T_MAX, 2 * _T_MAX - seconds, seconds)  # reflect, no pile-up
    seconds = np.clip(seconds, 0, _T_MAX)
    day = _take(_day_pool(), seconds // 86400)
    if not with_time:
        return day
    return pc.binary_join_element_wise(day, _take(_time_pool(), seconds % 86400), " ")


def _number_values(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Realistic magnitudes by column name; returns (values, decimals) (0 decimals = integer)."""
    if "EASTING" in name:
        return rng.uniform(400_000, 460_000, n), 3
    if "NORTHING" in name:
        return rng.uniform(200_000, 420_000, n), 3
    if name.endswith("OFFSET"):
        return rng.normal(0.0, 4.0, n), 2
    if "CHAINAGE" in name:
        return rng.uniform(0, 230_000, n), 3
    if name == "FILESIZE":
        return np.floor(np.exp(rng.uniform(np.log(800), np.log(5e7), n))), 0
    if name in ("DAYS", "CALENDARDAYS"):
        return rng.integers(0, 366, n), 0
    if name in ("MINIMUM", "MAXIMUM"):
        return rng.uniform(0, 250, n), 1
    if name == "VERSION":
        return rng.integers(1, 6, n), 0
    if "SCORE" in name:
        return rng.integers(0, 10, n), 0
    if name in ("LEVELS", "LEVELNUMBER", "STAGENUMBER"):
        return rng.integers(1, 7, n), 0
    if "2DP" in name:
        return rng.uniform(1, 99.99, n), 2
    if "3DP" in name:
        return rng.uniform(0.1, 999.0, n), 3
    if "4DP" in name or "DECIMAL" in name or "FLOAT" in name:
        return rng.uniform(0, 100, n), 4
    if "NUMERIC" in name or "INTEGER" in name:
        return rng.integers(0, 100_000, n), 0
    return rng.integers(0, 1_000, n), 0


def _codes(n: int, length: tuple[int, int] | None, rng, pos: np.ndarray, unique: bool, key: str):
    lo, hi = length if length else (6, 12)
    if hi <= 4:
        low = 10 ** (lo - 1) if lo > 1 else 0
        vals = (pos + low) if unique else rng.integers(low, 10**hi, n)
        return pc.utf8_lpad(_fmt_int(vals, False), lo, "0")
    r = random.Random(_h(key, "prefixes"))
    letters = "ABCDEFGHJKLMNPRSTUVW"
    plen = 2 if hi < 8 else 3
    prefixes = _sa("".join(r.choice(letters) for _ in range(plen)) for _ in range(6))
    target = max(lo, min(hi, (lo + hi) // 2, 16))
    width = max(1, target - plen - 1)
    vals = (pos + 1) if unique else rng.integers(0, 10**width, n)
    digits = pc.utf8_lpad(_fmt_int(vals, False), width, "0")
    which = np.zeros(n, dtype=np.int64) if unique else rng.integers(0, 6, n)
    return _join(_take(prefixes, which), "-", digits)


def _text_values(plan: _Plan, n: int, rng, pos: np.ndarray, key: str, seed: int) -> pa.Array:
    fam = plan.family
    if plan.unique and fam not in ("code",):
        fam = "code"
    if fam == "email":
        user = pc.utf8_lpad(_fmt_int(rng.integers(1, 25, n), False), 2, "0")
        if plan.length and plan.length[0] > 18:
            fam = "email_name"
        else:
            return _join("user", user, "@example.org")
    if fam in ("email_name", "first", "last", "person"):
        first = _take(_sa(_FIRST), rng.integers(0, len(_FIRST), n))
        last = _take(_sa(_LAST), rng.integers(0, len(_LAST), n))
        if fam == "first":
            return first
        if fam == "last":
            return last
        if fam == "person":
            return pc.binary_join_element_wise(first, last, " ")
        return _join(pc.utf8_lower(first), ".", pc.utf8_lower(last), "@example.org")
    if fam == "org":
        return _take(_sa(_ORGS), np.minimum(rng.geometric(0.15, n) - 1, len(_ORGS) - 1))
    if fam == "url":
        doc = pc.utf8_lpad(_fmt_int(rng.integers(0, 1_000_000, n), False), 6, "0")
        if plan.length is not None and plan.length[1] < 80:
            return _join("https://eb.hs2.org.uk/d/HS2-", doc)
        return _join("https://eb.hs2.org.uk/eB/Search/QuickLink.aspx?n=HS2-HS2-IM-REC-000-", doc)
    if fam == "filename":
        stem = _take(_sa(_FILE_STEMS), rng.integers(0, len(_FILE_STEMS), n))
        ext = _take(_sa(_FILE_TYPES), rng.integers(0, len(_FILE_TYPES), n))
        num = _fmt_int(rng.integers(10_000, 100_000_000, n), False)
        return _join(stem, "_", num, ext)
    if fam == "asset":
        return _asset_names(rng.integers(0, 10_000_000, n), seed)
    if fam == "date":
        secs = rng.integers(_T0_LO, _T0_HI, n)
        dates = _dates(secs, plan.length is not None and plan.length[1] >= 19)
        return pc.if_else(pa.array(rng.random(n) < 0.3), pa.scalar("NaT", pa.string()), dates)
    if fam == "choices":
        values = _TEXT_CHOICES[plan.name]
        return _take(_sa(values), rng.choice(len(values), n, p=_geometric(len(values))))
    if fam == "location":
        km = _fmt_int(rng.integers(0, 230, n), False)
        metres = pc.utf8_lpad(_fmt_int(rng.integers(0, 1000, n), False), 3, "0")
        place = _take(_sa(_PLACES), rng.integers(0, len(_PLACES), n))
        return _join("Chainage ", km, "+", metres, " near ", place)
    if fam == "code":
        return _codes(n, plan.length, rng, pos, plan.unique, key)
    if fam == "title":
        w = _sa(_TITLE_WORDS)
        a = _take(w, rng.integers(0, len(_TITLE_WORDS), n))
        b = _take(w, rng.integers(0, len(_TITLE_WORDS), n))
        num = _fmt_int(rng.integers(1, 100, n), False)
        short = plan.length is not None and plan.length[1] < 12
        return a if short else _join(a, " ", b, " ", num)
    # notes: one or two sentences
    s = _sa(_NOTE_SENTENCES)
    one = _take(s, rng.integers(0, len(_NOTE_SENTENCES), n))
    if plan.length is not None and plan.length[1] < 60:
        return one
    two = pc.binary_join_element_wise(one, _take(s, rng.integers(0, len(s), n)), " ")
    return pc.if_else(pa.array(rng.random(n) < 0.4), two, one)


# --------------------------------------------------------------------------------------------
# Table generation
# --------------------------------------------------------------------------------------------


@dataclass
class _Draw:
    """What an FK/choice column drew in a chunk, for its label sibling."""

    pos: np.ndarray | None = None  # parent positions, -1 where null/placeholder
    real_idx: np.ndarray | None = None  # index into the column's real value list, -1 otherwise


@dataclass
class _Defects:
    rows: np.ndarray  # row index
    kinds: list[str]
    columns: list[str]
    values: list[str | None]


class _TableGen:
    def __init__(self, lake: _Lake, table: TableSpec) -> None:
        self.lake = lake
        self.spec = table
        self.name = table.name
        self.rows = lake.rows(table.name)
        self.plans = _plans(table.name)
        self.seed = lake.seed
        self.has_id = any(p.mode == "id" for p in self.plans)

    # -- chunk --------------------------------------------------------------------------------
    def chunk(self, start: int, stop: int, defects: _Defects | None) -> pa.Table:
        n = stop - start
        pos = np.arange(start, stop, dtype=np.int64)
        chunk_no = start // CHUNK_ROWS
        draws: dict[str, _Draw] = {}
        arrays: dict[str, pa.Array] = {}
        t0 = _rng(self.seed, self.name, "__t0__", chunk_no).integers(_T0_LO, _T0_HI, n)
        ctx = {"t0": t0}
        ordered = sorted(
            self.plans, key=lambda p: 0 if p.mode in ("id", "fk", "fkfree", "choice") else 1
        )
        for plan in ordered:
            rng = _rng(self.seed, self.name, plan.name, chunk_no)
            arrays[plan.name] = self._column(plan, n, pos, rng, draws, ctx)
        if defects is not None and len(defects.rows):
            self._apply_defects(arrays, start, stop, defects)
        cols = [arrays[c.name] for c in self.spec.columns]
        return pa.Table.from_arrays(cols, schema=self.lake.schema(self.name))

    def _masks(self, plan: _Plan, n: int, rng) -> tuple[np.ndarray | None, np.ndarray | None]:
        if plan.null_frac <= 0 and plan.ph_frac <= 0:
            return None, None
        u = rng.random(n)
        nulls = u < plan.null_frac if plan.null_frac > 0 else None
        phs = (
            (u >= plan.null_frac) & (u < plan.null_frac + plan.ph_frac)
            if plan.ph_frac > 0
            else None
        )
        return nulls, phs

    def _finish(self, arr: pa.Array, plan: _Plan, nulls, phs, rng) -> pa.Array:
        if phs is not None and phs.any():
            if len(plan.ph_values) == 1:
                ph = pa.scalar(plan.ph_values[0], pa.string())
            else:
                ph = _take(
                    _sa(plan.ph_values), rng.choice(len(plan.ph_values), len(arr), p=[0.8, 0.2])
                )
            arr = pc.if_else(pa.array(phs), ph, arr)
        if nulls is not None and nulls.any():
            arr = pc.if_else(pa.array(nulls), pa.scalar(None, pa.string()), arr)
        return arr

    def _column(self, plan: _Plan, n, pos, rng, draws, ctx) -> pa.Array:
        mode = plan.mode
        if mode == "id":
            return _fmt_int(_table_ids(self.name, self.lake.scale)[pos], False)
        if mode == "fk":
            return self._fk(plan, n, pos, rng, draws)
        if mode == "fkfree":
            return self._fkfree(plan, n, pos, rng)
        if mode == "choice":
            k = len(plan.values)
            idx = rng.choice(k, n, p=plan.weights) if k > 1 else np.zeros(n, dtype=np.int64)
            cover = pos < k  # the first rows of a table show every published value once
            idx = np.where(cover, pos % max(k, 1), idx)
            nulls, phs = self._masks(plan, n, rng)
            arr = _take(_sa(plan.values), idx)
            real = _real_values(plan.values)
            real_map = np.array([real.index(v) if v in real else -1 for v in plan.values])
            real_idx = real_map[idx]
            for m in (nulls, phs):
                if m is not None:
                    real_idx = np.where(m, -1, real_idx)
            draws[plan.name] = _Draw(real_idx=real_idx)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "component":
            arr = _fit(self.lake.lookup(self.name).component(plan.name, pos), plan.length)
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "label":
            draw = draws[plan.sibling]
            arr = self.lake.lookup(plan.parent).labels(draw.pos)
            arr = _fit(arr, plan.length)
            arr = pc.fill_null(arr, "None")
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "label_vs":
            draw = draws[plan.sibling]
            idx = draw.real_idx
            arr = _take(_sa(plan.label_values), np.where(idx < 0, 0, idx))
            if (idx < 0).any():
                arr = pc.if_else(pa.array(idx < 0), pa.scalar(plan.label_null, pa.string()), arr)
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "date":
            secs = ctx["t0"].copy()
            name = plan.name
            if "CREATED" in name or name == "VALIDFROM":
                secs += rng.integers(0, 8 * 3600, n)
            elif name == "VALIDTO":
                secs += rng.integers(30 * 86400, 900 * 86400, n)
            elif "UPDATED" in name or name.startswith("LAST"):
                secs += rng.integers(0, 400 * 86400, n)
            else:
                secs += rng.integers(-200 * 86400, 600 * 86400, n)
            if name in ("VALIDFROM", "VALIDTO"):
                secs -= secs % 86400
            arr = _dates(secs, plan.datetime)
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "number":
            if self.name == "aims_assethierarchymap" and plan.name == "LEVELS":
                vals, dec = self._hierarchy(pos)[2], 0
            else:
                vals, dec = _number_values(plan.name, n, rng)
            arr = _fmt_int(vals, plan.float_style) if dec == 0 else _fmt_float(vals, dec)
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        if mode == "unknown":
            arr = _take(_sa(_UNKNOWN_VALUES), rng.integers(0, len(_UNKNOWN_VALUES), n))
            nulls, phs = self._masks(plan, n, rng)
            return self._finish(arr, plan, nulls, phs, rng)
        # text
        arr = _text_values(plan, n, rng, pos, f"{self.name}.{plan.name}", self.seed)
        arr = _fit(arr, plan.length)
        nulls, phs = self._masks(plan, n, rng)
        return self._finish(arr, plan, nulls, phs, rng)

    def _hierarchy(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closure rows of the asset tree: (ancestor pos, descendant pos, level)."""
        n_assets = self.lake.rows("aims_assets")
        if n_assets <= 1:
            zero = np.zeros(len(pos), dtype=np.int64)
            return zero, zero, zero + 1
        m = n_assets - 1
        desc = 1 + pos % m  # every asset but the root, then again one level up, ...
        level = 1 + pos // m
        anc = desc.copy()
        for step in range(1, int(level.max()) + 1 if len(level) else 1):
            anc = np.where(level >= step, (anc * 5) // 7, anc)  # parent(d) = 5d // 7 < d
        return anc, desc, level

    def _fk(self, plan: _Plan, n, pos, rng, draws) -> pa.Array:
        parent = plan.parent
        n_parent = self.lake.rows(parent)
        parent_ids = self.lake.ids(parent)
        real_idx = None
        if self.name == "aims_assethierarchymap" and plan.name in (
            "ANCESTORASSETID",
            "DESCENDANTASSETID",
        ):
            anc, desc, _ = self._hierarchy(pos)
            ppos = anc if plan.name == "ANCESTORASSETID" else desc
        elif plan.restrict:
            where = {
                int(v): i for i, v in enumerate(parent_ids[: len(_pinned()[0].get(parent, []))])
            }
            allowed = [v for v in plan.restrict if v in where]
            k = len(allowed)
            choice = rng.choice(k, n, p=_geometric(k)) if k > 1 else np.zeros(n, dtype=np.int64)
            choice = np.where(pos < k, pos % max(k, 1), choice)
            ppos = np.array([where[v] for v in allowed], dtype=np.int64)[choice]
            all_real = [int(float(v)) for v in _real_values(self.spec.column(plan.name).value_set)]
            real_idx = np.array([all_real.index(v) for v in allowed], dtype=np.int64)[choice]
        elif parent == self.name:  # self reference: an earlier row, none for the first row
            ppos = np.floor(rng.random(n) * pos).astype(np.int64)
            ppos = np.where(pos == 0, -1, ppos)
        elif plan.unique:
            a = _coprime(n_parent, _h(self.name, plan.name))
            b = _h(self.name, plan.name, "b") % max(n_parent, 1)
            ppos = np.where(pos < n_parent, (a * pos + b) % n_parent, rng.integers(0, n_parent, n))
        else:
            ppos = rng.integers(0, n_parent, n)
        nulls, phs = self._masks(plan, n, rng)
        for m in (nulls, phs):
            if m is not None:
                ppos = np.where(m, -1, ppos)
                if real_idx is not None:
                    real_idx = np.where(m, -1, real_idx)
        draws[plan.name] = _Draw(pos=ppos, real_idx=real_idx)
        root = ppos < 0  # self-reference roots (and masked rows, overwritten again below)
        arr = _fmt_int(parent_ids[np.where(root, 0, ppos)], plan.float_style)
        if root.any():
            arr = pc.if_else(pa.array(root), pa.scalar(None, pa.string()), arr)
        return self._finish(arr, plan, nulls, phs, rng)

    def _fkfree(self, plan: _Plan, n, pos, rng) -> pa.Array:
        if plan.length and plan.length[1] < 8:
            f = 2 if plan.float_style else 0
            lo = max(1, plan.length[0] - f)
            hi = max(lo, plan.length[1] - f)
            low = 10 ** (lo - 1) if lo > 1 else 1
            vals = (low + pos) if plan.unique else rng.integers(low, 10**hi, n)
        else:
            base = _FREE_ID_BASE + (_h(self.name, plan.name) % 400) * 100_000
            vals = base + pos if plan.unique else base + rng.integers(0, max(2 * self.rows, 100), n)
        nulls, phs = self._masks(plan, n, rng)
        return self._finish(_fmt_int(vals, plan.float_style), plan, nulls, phs, rng)

    # -- defects ------------------------------------------------------------------------------
    def plan_defects(self, rates: DefectRates) -> tuple[_Defects, dict[str, int]]:
        counts = defect_counts(self.name, self.rows, rates)
        total = sum(counts.values())
        empty = _Defects(np.zeros(0, dtype=np.int64), [], [], [])
        if total == 0:
            return empty, counts
        rng = _rng(self.seed, self.name, "__defects__")
        rows = rng.choice(np.arange(1, self.rows, dtype=np.int64), size=total, replace=False)
        eligible = _eligible_columns(self.name)
        kinds: list[str] = []
        columns: list[str] = []
        values: list[str | None] = []
        taken = set(rows.tolist())
        ids = _table_ids(self.name, self.lake.scale) if self.has_id else None
        plans = {p.name: p for p in self.plans}
        out_rows = rows.copy()
        i = 0
        for kind in DEFECT_KINDS:
            cols = eligible[kind]
            for j in range(counts[kind]):
                col = cols[int(rng.integers(0, len(cols)))]
                plan = plans[col]
                r = int(rows[i])
                if kind == "null_required":
                    value = NULL_REQUIRED_VALUES[j % 3]
                elif kind == "out_of_value_set":
                    value = OUT_OF_SET_VALUES[j % 3]
                elif kind == "too_long":
                    hi = self.spec.column(col).length[1]
                    target = max(2 * hi, hi + 40)
                    reps = target // len(_TOO_LONG_FILLER) + 1
                    value = (_TOO_LONG_FILLER * reps)[:target]
                elif kind == "duplicate_id":
                    src = int(rng.integers(0, r))  # an earlier row (row 0 is never a defect)
                    while src in taken:
                        src = int(rng.integers(0, r))
                    value = str(int(ids[src]))
                elif kind == "orphan_fk":
                    value = str(ORPHAN_BASE + j + 1) + (".0" if plan.float_style else "")
                elif kind == "bad_date":
                    value = BAD_DATE_VALUES[j % 4]
                else:
                    value = BAD_NUMBER_VALUES[j % 4]
                kinds.append(kind)
                columns.append(col)
                values.append(value)
                out_rows[i] = r
                i += 1
        order = np.argsort(out_rows, kind="stable")
        return (
            _Defects(
                out_rows[order],
                [kinds[k] for k in order],
                [columns[k] for k in order],
                [values[k] for k in order],
            ),
            counts,
        )

    def _apply_defects(self, arrays: dict[str, pa.Array], start: int, stop: int, d: _Defects):
        lo, hi = np.searchsorted(d.rows, [start, stop])
        if lo == hi:
            return
        by_col: dict[str, tuple[list[int], list[str | None]]] = {}
        for k in range(lo, hi):
            local, vals = by_col.setdefault(d.columns[k], ([], []))
            local.append(int(d.rows[k]) - start)
            vals.append(d.values[k])
        for col, (local, vals) in by_col.items():
            arr = arrays[col]
            mask = np.zeros(len(arr), dtype=bool)
            mask[local] = True
            order = np.argsort(local)
            arrays[col] = pc.replace_with_mask(arr, pa.array(mask), _sa([vals[o] for o in order]))


def _coprime(n: int, salt: int) -> int:
    if n <= 2:
        return 1
    a = (salt % (n - 1)) + 1
    while math.gcd(a, n) != 1:
        a = a % (n - 1) + 1
    return a


class _Lake:
    """Shared state of one generation run: lookups, defect plans and as-written IDs."""

    def __init__(self, scale: float, seed: int, rates: DefectRates | None) -> None:
        self.scale = scale
        self.seed = seed
        self.rates = rates  # None: no defects
        self._lookups: dict[str, _Lookup] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._defects: dict[str, tuple[_Defects, dict[str, int]]] = {}
        self._ids: dict[str, np.ndarray] = {}

    def defects(self, table: str) -> tuple[_Defects | None, dict[str, int]]:
        """The (deterministic) defect plan of ``table``; (None, {}) for a clean lake."""
        if self.rates is None:
            return None, {}
        if table not in self._defects:
            self._defects[table] = _TableGen(self, load_spec()[table]).plan_defects(self.rates)
        return self._defects[table]

    def ids(self, table: str) -> np.ndarray:
        """``ID`` values of ``table`` as written, i.e. with its duplicate_id defects applied.

        Children format FK values from these, so a child pointing at a row whose ID was
        overwritten by a duplicate carries the copied ID, which still exists in the parent.
        """
        if table not in self._ids:
            ids = _table_ids(table, self.scale)
            d, _ = self.defects(table)
            if d is not None and "duplicate_id" in d.kinds:
                ids = ids.copy()
                for r, k, v in zip(d.rows, d.kinds, d.values, strict=True):
                    if k == "duplicate_id":
                        ids[r] = int(v)
            self._ids[table] = ids
        return self._ids[table]

    def rows(self, table: str) -> int:
        return rows_for_scale(table, self.scale)

    def lookup(self, table: str) -> _Lookup:
        if table not in self._lookups:
            self._lookups[table] = _Lookup(table, self.scale, self.seed)
        return self._lookups[table]

    def schema(self, table: str) -> pa.Schema:
        if table not in self._schemas:
            cols = load_spec()[table].column_names
            self._schemas[table] = pa.schema([(c, pa.string()) for c in cols])
        return self._schemas[table]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def _write_atomic_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_table_file(
    path: Path, gen: _TableGen, defects: _Defects | None, row_group_rows: int | None = None
) -> None:
    tmp = _tmp_path(path)
    schema = gen.lake.schema(gen.name)
    try:
        with pq.ParquetWriter(tmp, schema, compression=COMPRESSION) as writer:
            if gen.rows == 0:
                writer.write_table(schema.empty_table())
            for start in range(0, gen.rows, CHUNK_ROWS):
                stop = min(gen.rows, start + CHUNK_ROWS)
                chunk = gen.chunk(start, stop, defects)
                writer.write_table(chunk, row_group_size=row_group_rows or CHUNK_ROWS)
                del chunk
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _truncate_parquet(path: Path) -> dict:
    """Cut ``path`` at ~60 % of its size so the footer is lost; report intact row groups."""
    meta = pq.ParquetFile(path).metadata
    size = path.stat().st_size
    ends = []
    rows = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        end = 0
        for c in range(rg.num_columns):
            col = rg.column(c)
            first = col.data_page_offset
            if col.has_dictionary_page and col.dictionary_page_offset:
                first = min(first, col.dictionary_page_offset)
            end = max(end, first + col.total_compressed_size)
        ends.append(end)
        rows.append(rg.num_rows)
    cut = int(size * 0.6)
    intact = 0
    for end in ends:
        if end <= cut:
            intact += 1
        else:
            break
    data = path.read_bytes()[:cut]
    _write_atomic_bytes(path, data)
    return {
        "original_bytes": size,
        "truncated_bytes": cut,
        "row_groups_total": meta.num_row_groups,
        "row_groups_intact": intact,
        "rows_total": int(meta.num_rows),
        "salvageable_rows": int(sum(rows[:intact])),
    }


def _clean_stale_temp_files(bronze_dir: Path) -> None:
    for p in bronze_dir.iterdir():
        if ".tmp-" in p.name and p.is_file():
            try:
                p.unlink()
            except OSError:
                pass


def _resolve_tables(tables: list[str] | None) -> list[str]:
    spec = load_spec()
    if tables is None:
        return list(spec)
    unknown = [t for t in tables if t not in spec]
    if unknown:
        raise AimsError(
            f"unknown table(s) {', '.join(map(repr, unknown))}",
            hint="table names are the 68 published ones, e.g. aims_assets, aims_links",
        )
    wanted = set(tables)
    return [t for t in spec if t in wanted]  # spec order: parents before children


def _choose_corrupt_table(names: list[str], scale: float) -> str | None:
    for cand in CORRUPT_CANDIDATES:
        if cand in names and rows_for_scale(cand, scale) >= 2:
            return cand
    sized = [(rows_for_scale(t, scale), t) for t in names if rows_for_scale(t, scale) >= 2]
    return max(sized)[1] if sized else None


def _corrupt_row_group_rows(rows: int) -> int:
    """5,000 rows per group, fewer for small tables so that there are always several groups."""
    return max(1, min(CORRUPT_ROW_GROUP_ROWS, math.ceil(rows / 8)))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def generate_lake(
    bronze_dir: Path,
    scale: float = DEFAULT_SCALE,
    seed: int = 42,
    clean: bool = False,
    corrupt: bool = False,
    rates: DefectRates | None = None,
    tables: list[str] | None = None,
    progress: bool = False,
) -> GenerationReport:
    """Write a synthetic AIMS Bronze lake into ``bronze_dir`` (see the module docstring).

    ``rates`` defaults to :class:`DefectRates` (ignored when ``clean``). ``tables`` limits the run
    to some tables (their data is identical to a full run); the manifest then keeps the entries of
    the other tables from an earlier run. ``corrupt`` truncates one table's file (also with
    ``clean``). Returns the :class:`GenerationReport`, also written to ``_generation.json``.
    """
    started = time.perf_counter()
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise AimsError(f"seed {seed!r} must be a non-negative integer")
    if not (isinstance(scale, (int, float)) and 0 < scale <= 2.0):
        raise AimsError(
            f"scale {scale!r} is out of range", hint="use 0 < scale <= 2 (1.0 = published size)"
        )
    scale = float(scale)
    seed = int(seed)
    rates = DefectRates() if rates is None else rates
    rates.validate()
    inject = not clean and not rates.is_zero()
    names = _resolve_tables(tables)
    bronze_dir = Path(bronze_dir)
    bronze_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_temp_files(bronze_dir)

    lake = _Lake(scale, seed, rates if inject else None)
    corrupt_table = _choose_corrupt_table(names, scale) if corrupt else None
    manifest_parts: list[pa.Table] = []
    report_tables: dict[str, int] = {}
    totals = {k: 0 for k in DEFECT_KINDS}
    by_table: dict[str, dict[str, int]] = {}
    for i, name in enumerate(names, 1):
        t_start = time.perf_counter()
        gen = _TableGen(lake, load_spec()[name])
        defects, counts = lake.defects(name)
        row_groups = _corrupt_row_group_rows(gen.rows) if name == corrupt_table else None
        _write_table_file(bronze_dir / f"{name}.parquet", gen, defects, row_groups)
        report_tables[name] = gen.rows
        if defects is not None and len(defects.rows):
            by_table[name] = {k: v for k, v in counts.items() if v}
            for k, v in counts.items():
                totals[k] += v
            manifest_parts.append(_manifest_part(gen, defects))
        if progress:
            print(
                f"[{i}/{len(names)}] {name}: {gen.rows:,} rows in "
                f"{time.perf_counter() - t_start:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    corruption = None
    if corrupt_table is not None:
        corruption = {
            "table": corrupt_table,
            "row_group_rows": _corrupt_row_group_rows(report_tables[corrupt_table]),
        }
        corruption.update(_truncate_parquet(bronze_dir / f"{corrupt_table}.parquet"))

    _write_manifest(bronze_dir, manifest_parts, names if tables is not None else None)
    report = GenerationReport(
        bronze_dir=bronze_dir,
        scale=scale,
        seed=seed,
        clean=bool(clean),
        corrupt=bool(corrupt),
        tables=report_tables,
        total_rows=int(sum(report_tables.values())),
        defects=totals,
        seconds=round(time.perf_counter() - started, 3),
        corrupted_table=corrupt_table,
        rates=rates.as_dict() if inject else DefectRates.none().as_dict(),
        defects_by_table=by_table,
        corruption=corruption,
    )
    payload = report.to_dict()
    payload["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    payload["manifest"] = MANIFEST_NAME
    _write_atomic_bytes(
        bronze_dir / GENERATION_NAME, (json.dumps(payload, indent=2) + "\n").encode("utf-8")
    )
    return report


def _manifest_part(gen: _TableGen, d: _Defects) -> pa.Table:
    if gen.has_id:
        ids = gen.lake.ids(gen.name)  # as written: a duplicate row shows the copied ID
        row_ids = [str(int(ids[r])) for r in d.rows]
    else:
        row_ids = [None] * len(d.rows)
    return pa.Table.from_arrays(
        [
            _sa([gen.name] * len(d.rows)),
            pa.array(d.rows, type=pa.int64()),
            _sa(row_ids),
            _sa(d.columns),
            _sa(d.kinds),
            _sa(d.values),
        ],
        schema=MANIFEST_SCHEMA,
    )


def _write_manifest(bronze_dir: Path, parts: list[pa.Table], subset: list[str] | None) -> None:
    path = bronze_dir / MANIFEST_NAME
    if subset is not None and path.exists():
        try:
            old = pq.read_table(path)
            keep = pc.invert(pc.is_in(old["table"], value_set=_sa(subset)))
            parts = [old.filter(keep).cast(MANIFEST_SCHEMA), *parts]
        except (OSError, pa.ArrowException):
            pass  # unreadable old manifest: this run's entries only
    table = pa.concat_tables(parts) if parts else MANIFEST_SCHEMA.empty_table()
    tmp = _tmp_path(path)
    try:
        pq.write_table(table, tmp, compression=COMPRESSION)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_manifest(bronze_dir: Path) -> pd.DataFrame:
    """The defect manifest of a generated lake (columns: table, row_index, row_id, column,
    defect_kind, value); an empty frame for a clean lake."""
    path = Path(bronze_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BronzeReadError(
            MANIFEST_NAME,
            path,
            "no defect manifest (this folder was not written by generate_lake)",
            hint="run `python -m aims_nb_utils generate` (aims_nb_utils.sample_data.generate_lake)",
        )
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise BronzeReadError(MANIFEST_NAME, path, str(exc)) from None


def read_generation(bronze_dir: Path) -> dict:
    """The ``_generation.json`` of a generated lake."""
    path = Path(bronze_dir) / GENERATION_NAME
    if not path.is_file():
        raise BronzeReadError(GENERATION_NAME, path, "no generation record")
    return json.loads(path.read_text())


__all__ = [
    "CHUNK_ROWS",
    "CORRUPT_CANDIDATES",
    "DEFAULT_SCALE",
    "DEFECT_KINDS",
    "DefectRates",
    "GENERATION_NAME",
    "GenerationReport",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "NULL_PLACEHOLDERS",
    "ORPHAN_BASE",
    "defect_count",
    "defect_counts",
    "eligible_columns",
    "fk_parent",
    "generate_lake",
    "read_generation",
    "read_manifest",
    "relations",
    "rows_for_scale",
    "table_ids",
]
