"""Repair unreadable Bronze parquet files: salvage every readable row group, keep the original.

Three kinds of damage are handled:

* a corrupt row group behind an intact footer: each row group is decoded on its own and the ones
  that decode are kept;
* a lost footer (the file was truncated, or its last bytes are garbage): parquet writes, after the
  ``PAR1`` magic, every column chunk of every row group as a run of pages, and each page starts
  with a self-describing Thrift header (type, sizes, number of values). The pages are walked from
  the start of the file; with the table's column names (from its rule file, else the published
  spec) the pages are grouped into column chunks (a chunk starts with its dictionary page and all
  chunks of a row group hold the same number of values) and row groups; a new footer describing
  the complete row groups is written after them, and pyarrow decodes the result. The row group the
  cut went through is lost (its rows are reported as lost when its first column chunk survived);
* both at once (a row group of a rebuilt file that does not decode is dropped).

The original file is moved, untouched, to ``<bronze>/_backup/<timestamp>/`` before the repaired
file replaces it (atomically), with a ``repair_report.json`` beside it. Rows lost are counted
against the best known total: the original footer when it is readable, else the Bronze row count
recorded by the last ingestion of that table, else the rule file's ``data_source.profiled_rows``;
when none exists the report says so. A repaired file is readable, so running again changes nothing.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import spec, state
from .errors import AimsError, os_error_message
from .io import atomic_write_text, list_bronze_tables, validate_table_name, write_parquet_atomic
from .rules import load_rule_file
from .settings import Settings

MAGIC = b"PAR1"
BACKUP_FOLDER = "_backup"
REPORT_NAME = "repair_report.json"

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(
    13
)
# Parquet enums used below.
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
_BYTE_ARRAY, _OPTIONAL, _UTF8 = 6, 1, 0
_CODECS = {"ZSTD": 6, "SNAPPY": 1, "GZIP": 2, "LZ4_RAW": 7, "BROTLI": 4, "UNCOMPRESSED": 0}


class RepairError(AimsError):
    """A Bronze file cannot be repaired as asked."""

    def __init__(self, table: str, path: Path | str, problem: str, hint: str | None = None) -> None:
        self.table = table
        self.path = str(path)
        super().__init__(f"table {table}: {path}: {problem}", hint=hint)


# --- Thrift compact protocol (only what page headers and a footer need) ----------------------


class _Reader:
    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, ftype: int) -> None:
        if ftype in (_TRUE, _FALSE):
            return
        if ftype == _BYTE:
            self.byte()
        elif ftype in (_I16, _I32, _I64):
            self.varint()
        elif ftype == _DOUBLE:
            self.pos += 8
        elif ftype == _BINARY:
            length = self.varint()  # read first: `self.pos += self.varint()` would lose the advance
            self.pos += length
        elif ftype in (_LIST, _SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self.skip(head & 0x0F if head & 0x0F not in (_TRUE, _FALSE) else _BYTE)
        elif ftype == _MAP:
            size = self.varint()
            if size:
                kv = self.byte()
                for _ in range(size):
                    self.skip(kv >> 4)
                    self.skip(kv & 0x0F)
        elif ftype == _STRUCT:
            self.struct(lambda fid, t: False)
        else:
            raise ValueError(f"unknown thrift type {ftype}")
        if self.pos > len(self.data):
            raise EOFError

    def struct(self, visit) -> None:  # noqa: ANN001 - visit(field_id, type) -> handled?
        last = 0
        while True:
            head = self.byte()
            ftype = head & 0x0F
            if ftype == _STOP:
                return
            delta = head >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            if not visit(fid, ftype):
                self.skip(ftype)


@dataclass
class _Page:
    offset: int
    header_size: int
    kind: int
    compressed: int
    uncompressed: int
    num_values: int
    encodings: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.offset + self.header_size + self.compressed


def _read_page_header(data: bytes, pos: int) -> _Page:
    reader = _Reader(data, pos)
    fields: dict[str, Any] = {"encodings": []}

    def sub(names: dict[int, str]):  # noqa: ANN202
        def visit(fid: int, ftype: int) -> bool:
            if fid in names and ftype == _I32:
                value = reader.zigzag()
                if names[fid] == "encoding":
                    fields["encodings"].append(value)
                else:
                    fields.setdefault(names[fid], value)
                return True
            return False

        return visit

    def top(fid: int, ftype: int) -> bool:
        if fid in (1, 2, 3) and ftype == _I32:
            fields[{1: "type", 2: "uncompressed", 3: "compressed"}[fid]] = reader.zigzag()
            return True
        if fid == 5 and ftype == _STRUCT:  # DataPageHeader
            reader.struct(sub({1: "num_values", 2: "encoding", 3: "encoding", 4: "encoding"}))
            return True
        if fid == 7 and ftype == _STRUCT:  # DictionaryPageHeader
            reader.struct(sub({1: "num_values", 2: "encoding"}))
            return True
        if fid == 8 and ftype == _STRUCT:  # DataPageHeaderV2
            reader.struct(sub({1: "num_values", 3: "num_rows", 4: "encoding"}))
            return True
        return False

    reader.struct(top)
    kind = fields.get("type")
    if kind not in (_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2):
        raise ValueError(f"not a data or dictionary page (type {kind})")
    for key in ("uncompressed", "compressed", "num_values"):
        if fields.get(key) is None or fields[key] < 0:
            raise ValueError(f"page header without a valid {key}")
    return _Page(
        offset=pos,
        header_size=reader.pos - pos,
        kind=kind,
        compressed=fields["compressed"],
        uncompressed=fields["uncompressed"],
        num_values=fields.get("num_rows", fields["num_values"]),
        encodings=tuple(fields["encodings"]),
    )


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self._last: list[int] = [0]

    def _varint(self, n: int) -> None:
        while True:
            if n < 0x80:
                self.out.append(n)
                return
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7

    def _zigzag(self, n: int) -> None:
        self._varint((n << 1) ^ (n >> 63))

    def _field(self, fid: int, ftype: int) -> None:
        delta = fid - self._last[-1]
        if 0 < delta <= 15:
            self.out.append((delta << 4) | ftype)
        else:
            self.out.append(ftype)
            self._zigzag(fid)
        self._last[-1] = fid

    def i32(self, fid: int, value: int) -> None:
        self._field(fid, _I32)
        self._zigzag(value)

    def i64(self, fid: int, value: int) -> None:
        self._field(fid, _I64)
        self._zigzag(value)

    def string(self, fid: int, value: str) -> None:
        self._field(fid, _BINARY)
        raw = value.encode("utf-8")
        self._varint(len(raw))
        self.out += raw

    def begin_struct(self, fid: int | None = None) -> None:
        if fid is not None:
            self._field(fid, _STRUCT)
        self._last.append(0)

    def end_struct(self) -> None:
        self.out.append(_STOP)
        self._last.pop()

    def begin_list(self, fid: int, elem_type: int, size: int) -> None:
        self._field(fid, _LIST)
        if size < 15:
            self.out.append((size << 4) | elem_type)
        else:
            self.out.append(0xF0 | elem_type)
            self._varint(size)

    def list_i32(self, fid: int, values: Sequence[int]) -> None:
        self.begin_list(fid, _I32, len(values))
        for v in values:
            self._zigzag(v)

    def list_string(self, fid: int, values: Sequence[str]) -> None:
        self.begin_list(fid, _BINARY, len(values))
        for v in values:
            raw = v.encode("utf-8")
            self._varint(len(raw))
            self.out += raw


# --- footer reconstruction --------------------------------------------------------------------


@dataclass
class _Chunk:
    pages: list[_Page]

    @property
    def start(self) -> int:
        return self.pages[0].offset

    @property
    def end(self) -> int:
        return self.pages[-1].end

    @property
    def num_values(self) -> int:
        return sum(p.num_values for p in self.pages if p.kind != _DICTIONARY_PAGE)


@dataclass
class _RowGroup:
    chunks: list[_Chunk]

    @property
    def num_rows(self) -> int:
        return self.chunks[0].num_values


def _after_chunk_metadata(data: bytes, pos: int, limit: int) -> int | None:
    """Where the next page starts when a copy of the chunk's ColumnMetaData sits at ``pos``.

    pyarrow before 15 (the Fabric Spark runtime ships 14) writes that Thrift struct after every
    column chunk; later writers do not. None when what follows is not a page either."""
    reader = _Reader(data, pos)
    try:
        reader.struct(lambda fid, ftype: False)
        if reader.pos >= limit:
            return None
        _read_page_header(data, reader.pos)
    except (EOFError, ValueError, IndexError):
        return None
    return reader.pos


def _scan_pages(data: bytes, limit: int) -> tuple[list[_Page], str]:
    """Walk page headers from just after the magic; stop at the first incomplete or invalid one."""
    pages: list[_Page] = []
    pos = len(MAGIC)
    while pos < limit:
        try:
            page = _read_page_header(data, pos)
        except (EOFError, ValueError, IndexError) as exc:
            after = _after_chunk_metadata(data, pos, limit) if pages else None
            if after is None:
                return pages, f"no valid page header at byte {pos:,} ({exc or 'end of data'})"
            pos = after
            continue
        if page.end > limit:
            return pages, f"page at byte {pos:,} runs past the end of the data ({limit:,} bytes)"
        pages.append(page)
        pos = page.end
    return pages, "reached the end of the data"


def _take_chunk(pages: list[_Page], start: int, rows: int) -> int | None:
    """Index after a column chunk of exactly ``rows`` values starting at ``start``, else None."""
    i, total = start, 0
    if i < len(pages) and pages[i].kind == _DICTIONARY_PAGE:
        i += 1
    while i < len(pages) and total < rows:
        if pages[i].kind == _DICTIONARY_PAGE:
            return None
        total += pages[i].num_values
        i += 1
    return i if total == rows else None


def _group_row_groups(pages: list[_Page], n_columns: int) -> tuple[list[_RowGroup], int | None]:
    """Split pages into complete row groups of ``n_columns`` equal-length chunks.

    Returns the row groups and, when the next (incomplete) row group's first chunk survived, the
    number of rows it held (those rows are lost)."""
    groups: list[_RowGroup] = []
    pos = 0
    while pos < len(pages):
        # Candidate ends of the first chunk: prefer ends followed by a dictionary page.
        first = pos + 1 if pages[pos].kind == _DICTIONARY_PAGE else pos
        candidates = []
        total = 0
        for j in range(first, len(pages)):
            if pages[j].kind == _DICTIONARY_PAGE:
                break
            total += pages[j].num_values
            natural = j + 1 >= len(pages) or pages[j + 1].kind == _DICTIONARY_PAGE
            candidates.append((not natural, j + 1, total))
        found = None
        for _, end, rows in sorted(candidates):
            bounds = [(pos, end)]
            cursor = end
            for _ in range(n_columns - 1):
                nxt = _take_chunk(pages, cursor, rows)
                if nxt is None:
                    break
                bounds.append((cursor, nxt))
                cursor = nxt
            if len(bounds) == n_columns and rows > 0:
                found = (bounds, cursor)
                break
        if found is None:
            natural_rows = [rows for unnatural, _, rows in candidates if not unnatural]
            return groups, (natural_rows[0] if natural_rows else None)
        bounds, cursor = found
        groups.append(_RowGroup([_Chunk(pages[a:b]) for a, b in bounds]))
        pos = cursor
    return groups, None


def _footer(columns: Sequence[str], groups: Sequence[_RowGroup], codec: int) -> bytes:
    w = _Writer()
    w.begin_struct()  # FileMetaData
    w.i32(1, 1)
    w.begin_list(2, _STRUCT, len(columns) + 1)
    w.begin_struct()
    w.string(4, "schema")
    w.i32(5, len(columns))
    w.end_struct()
    for name in columns:
        w.begin_struct()
        w.i32(1, _BYTE_ARRAY)
        w.i32(3, _OPTIONAL)
        w.string(4, name)
        w.i32(6, _UTF8)
        w.begin_struct(10)  # LogicalType union: STRING
        w.begin_struct(1)
        w.end_struct()
        w.end_struct()
        w.end_struct()
    w.i64(3, sum(g.num_rows for g in groups))
    w.begin_list(4, _STRUCT, len(groups))
    for group in groups:
        w.begin_struct()  # RowGroup
        w.begin_list(1, _STRUCT, len(group.chunks))
        total_uncompressed = 0
        for name, chunk in zip(columns, group.chunks, strict=True):
            uncompressed = sum(p.header_size + p.uncompressed for p in chunk.pages)
            total_uncompressed += uncompressed
            data_pages = [p for p in chunk.pages if p.kind != _DICTIONARY_PAGE]
            encodings = sorted({e for p in chunk.pages for e in p.encodings}) or [0]
            w.begin_struct()  # ColumnChunk
            w.i64(2, chunk.start)
            w.begin_struct(3)  # ColumnMetaData
            w.i32(1, _BYTE_ARRAY)
            w.list_i32(2, encodings)
            w.list_string(3, [name])
            w.i32(4, codec)
            w.i64(5, chunk.num_values)
            w.i64(6, uncompressed)
            w.i64(7, chunk.end - chunk.start)
            w.i64(9, data_pages[0].offset)
            if chunk.pages[0].kind == _DICTIONARY_PAGE:
                w.i64(11, chunk.pages[0].offset)
            w.end_struct()
            w.end_struct()
        w.i64(2, total_uncompressed)
        w.i64(3, group.num_rows)
        w.end_struct()
    w.string(6, "aims_nb_utils.repair (footer rebuilt from page headers)")
    w.end_struct()
    return bytes(w.out)


def _guess_codecs(data: bytes, pages: Sequence[_Page]) -> list[int]:
    first = pages[0]
    body = data[first.offset + first.header_size : first.end]
    order = list(_CODECS.values())
    if body[:4] == b"\x28\xb5\x2f\xfd":
        order.remove(_CODECS["ZSTD"])
        order.insert(0, _CODECS["ZSTD"])
    elif body[:2] == b"\x1f\x8b":
        order.remove(_CODECS["GZIP"])
        order.insert(0, _CODECS["GZIP"])
    elif all(p.compressed == p.uncompressed for p in pages):
        order.remove(_CODECS["UNCOMPRESSED"])
        order.insert(0, _CODECS["UNCOMPRESSED"])
    return order


@dataclass
class Salvage:
    """What could be read back out of one damaged file."""

    table: pa.Table | None
    method: str
    row_groups_recovered: int
    row_groups_lost: int
    rows_lost_at_least: int
    detail: str
    original_rows: int | None = None


def _decode_groups(pf: pq.ParquetFile) -> tuple[list[pa.Table], int, list[str]]:
    good, bad, notes = [], 0, []
    for i in range(pf.metadata.num_row_groups):
        try:
            good.append(pf.read_row_group(i))
        except (OSError, pa.ArrowException) as exc:
            bad += 1
            notes.append(f"row group {i} ({pf.metadata.row_group(i).num_rows:,} rows): {exc}")
    return good, bad, notes


def salvage_file(path: Path, columns: Sequence[str] | None) -> Salvage:
    """Read every row group that can be read from ``path`` (see the module doc for how)."""
    return salvage_bytes(Path(path).read_bytes(), columns, name=Path(path).stem, origin=str(path))


def salvage_bytes(
    data: bytes, columns: Sequence[str] | None, name: str = "<bytes>", origin: str = "<bytes>"
) -> Salvage:
    """Salvage from the bytes of a parquet file (``columns`` names the chunks when the footer is
    gone)."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        footer_problem = str(exc).splitlines()[0]
    else:
        good, bad, notes = _decode_groups(pf)
        lost_rows = sum(
            pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)
        ) - sum(t.num_rows for t in good)
        return Salvage(
            table=pa.concat_tables(good) if good else pf.schema_arrow.empty_table(),
            method="footer readable; row groups decoded one by one",
            row_groups_recovered=len(good),
            row_groups_lost=bad,
            rows_lost_at_least=lost_rows,
            detail="; ".join(notes) or "every row group decodes",
            original_rows=pf.metadata.num_rows,
        )
    if data[:4] != MAGIC:
        return Salvage(
            None,
            "none",
            0,
            0,
            0,
            f"footer unreadable ({footer_problem}) and no PAR1 "
            "magic at the start: not a parquet file",
        )
    if not columns:
        raise RepairError(
            name,
            origin,
            f"footer unreadable ({footer_problem}) and no column list",
            hint="give the table a rule file (`python -m aims_nb_utils profile`) or use a table "
            "of the published spec, so the column chunks can be named",
        )
    limit = len(data)
    if data[-4:] == MAGIC and len(data) >= 12:
        footer_len = struct.unpack("<i", data[-8:-4])[0]
        if 0 < footer_len < len(data) - 12:
            limit = len(data) - 8 - footer_len
    pages, stop = _scan_pages(data, limit)
    groups, partial_rows = _group_row_groups(pages, len(columns)) if pages else ([], None)
    lost_partial = partial_rows or 0
    if not groups:
        return Salvage(
            None,
            "page scan",
            0,
            1 if pages else 0,
            lost_partial,
            f"footer unreadable ({footer_problem}); {len(pages)} page(s) found, no "
            f"complete row group of {len(columns)} columns ({stop})",
        )
    body = data[: groups[-1].chunks[-1].end]
    last_error = ""
    for codec in _guess_codecs(data, pages):
        footer = _footer(columns, groups, codec)
        rebuilt = body + footer + struct.pack("<i", len(footer)) + MAGIC
        try:
            pf = pq.ParquetFile(pa.BufferReader(rebuilt))
            pf.read_row_group(0)
        except (OSError, pa.ArrowException) as exc:
            last_error = str(exc).splitlines()[0]
            continue
        good, bad, notes = _decode_groups(pf)
        recovered = sum(t.num_rows for t in good)
        lost_groups = bad + (1 if partial_rows else 0)
        detail = (
            f"footer unreadable ({footer_problem}); rebuilt it from {len(pages):,} page headers: "
            f"{len(groups)} complete row group(s), {recovered:,} rows decoded; scan stopped: {stop}"
        )
        if partial_rows:
            detail += f"; the next row group ({partial_rows:,} rows) was cut and is lost"
        if notes:
            detail += "; undecodable: " + "; ".join(notes)
        return Salvage(
            table=pa.concat_tables(good) if good else None,
            method="footer rebuilt from page headers",
            row_groups_recovered=len(good),
            row_groups_lost=lost_groups,
            rows_lost_at_least=lost_partial + sum(g.num_rows for g in groups) - recovered,
            detail=detail,
        )
    return Salvage(
        None,
        "page scan",
        0,
        len(groups),
        lost_partial,
        f"footer unreadable ({footer_problem}); rebuilt footer does not decode with any "
        f"known codec ({last_error})",
    )


# --- the repair run ---------------------------------------------------------------------------


@dataclass
class FileRepair:
    """The outcome for one Bronze file."""

    table: str
    path: str
    status: str  # ok | repaired | unrecoverable
    problem: str | None = None
    method: str | None = None
    rows_recovered: int | None = None
    rows_lost: int | None = None
    rows_expected: int | None = None
    expected_source: str | None = None
    row_groups_recovered: int = 0
    row_groups_lost: int = 0
    backup: str | None = None
    detail: str = ""

    def as_row(self) -> dict[str, Any]:
        lost = (
            ""
            if self.status == "ok"
            else (f"{self.rows_lost:,}" if self.rows_lost is not None else "unknown")
        )
        return {
            "table": self.table,
            "status": self.status,
            "rows recovered": "" if self.rows_recovered is None else f"{self.rows_recovered:,}",
            "rows lost": lost,
            "expected from": self.expected_source or "",
            "backup": self.backup or "",
        }


@dataclass
class RepairRun:
    started_at: str
    backup_dir: str | None
    files: list[FileRepair] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "ok": sum(f.status == "ok" for f in self.files),
            "repaired": sum(f.status == "repaired" for f in self.files),
            "unrecoverable": sum(f.status == "unrecoverable" for f in self.files),
            "rows_recovered": sum(f.rows_recovered or 0 for f in self.files if f.status != "ok"),
            "rows_lost": sum(f.rows_lost or 0 for f in self.files if f.status != "ok"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "backup_dir": self.backup_dir,
            "summary": self.summary,
            "files": [asdict(f) for f in self.files],
        }


def _readable(path: Path) -> str | None:
    """None when every row group of the file decodes, else the first problem."""
    try:
        pf = pq.ParquetFile(path)
        for i in range(pf.metadata.num_row_groups):
            pf.read_row_group(i)
    except (OSError, pa.ArrowException) as exc:
        return str(exc).splitlines()[0] or type(exc).__name__
    return None


def _columns_for(settings: Settings, table: str) -> tuple[list[str] | None, str]:
    rule_path = settings.paths.rule_file(table)
    if rule_path.is_file():
        try:
            cols = load_rule_file(rule_path).columns()
        except AimsError:
            cols = []
        if cols:
            return cols, f"rule file {rule_path.name}"
    table_spec = spec.get_table(table)
    if table_spec is not None:
        return table_spec.column_names, "published spec"
    return None, "none"


def _expected_rows(
    settings: Settings, table: str, salvage: Salvage
) -> tuple[int | None, str | None]:
    if salvage.original_rows is not None:
        return salvage.original_rows, "original footer"
    if settings.paths.state_db.is_file():
        mark = state.get_watermark(settings.paths.state_db, table)
        if mark and mark.get("rows") is not None:
            return int(mark["rows"]), "last ingestion (watermark)"
    rule_path = settings.paths.rule_file(table)
    if rule_path.is_file():
        try:
            profiled = load_rule_file(rule_path).data_source.get("profiled_rows")
        except AimsError:
            profiled = None
        if isinstance(profiled, int):
            return profiled, "rule file profiled_rows"
    return None, None


def _repair_one(
    settings: Settings, table: str, path: Path, backup_dir: Path, dry_run: bool
) -> FileRepair:
    problem = _readable(path)
    if problem is None:
        return FileRepair(table, str(path), "ok")
    columns, _ = _columns_for(settings, table)
    salvage = salvage_file(path, columns)
    recovered = salvage.table.num_rows if salvage.table is not None else 0
    expected, source = _expected_rows(settings, table, salvage)
    if expected is not None and expected >= recovered:
        lost: int | None = expected - recovered
    else:
        lost = None
        if expected is not None:  # a stale count (the file grew since): do not report negatives
            source = f"{source} ({expected:,}, older than this file: ignored)"
    result = FileRepair(
        table=table,
        path=str(path),
        status="repaired" if recovered else "unrecoverable",
        problem=problem,
        method=salvage.method,
        rows_recovered=recovered,
        rows_lost=lost,
        rows_expected=expected,
        expected_source=source,
        row_groups_recovered=salvage.row_groups_recovered,
        row_groups_lost=salvage.row_groups_lost,
        detail=salvage.detail
        + (
            ""
            if lost is not None
            else f"; total unknown, at least {salvage.rows_lost_at_least:,} rows lost"
        ),
    )
    if not recovered or dry_run:
        return result
    backup = backup_dir / path.name
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, backup)  # the original stays byte-identical in the backup
    except OSError as exc:
        raise RepairError(
            table,
            path,
            f"cannot keep the original in {backup_dir}: {os_error_message(exc)}; nothing was "
            "changed",
            hint="repair needs write access to the Bronze folder (or free space); run "
            "`python -m aims_nb_utils repair --dry-run` to see what would be recovered",
        ) from None
    try:
        write_parquet_atomic(salvage.table, path)
    except AimsError as exc:
        raise RepairError(
            table, path, f"cannot write the repaired file: {exc.message}", hint=exc.hint
        ) from None
    result.backup = str(backup)
    return result


def repair_bronze(
    settings: Settings, tables: Sequence[str] | None = None, dry_run: bool = False
) -> RepairRun:
    """Check every Bronze file (or ``tables``) and repair the unreadable ones in place.

    Takes the lake lock so no ingestion reads a file while it is being replaced. A file that can
    be repaired but not written (read-only Bronze, full disk) is a :class:`RepairError` naming it;
    nothing of it was changed."""
    from .lake_lock import lake_lock

    bronze = Path(settings.paths.bronze)
    names = [validate_table_name(t) for t in tables] if tables else list_bronze_tables(bronze)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup_dir = bronze / BACKUP_FOLDER / stamp
    run = RepairRun(started_at=state.utc_now(), backup_dir=None)
    with lake_lock(settings, "repair"):
        for table in names:
            path = settings.paths.bronze_file(table)
            if not path.is_file():
                run.files.append(
                    FileRepair(table, str(path), "unrecoverable", problem="file not found")
                )
                continue
            run.files.append(_repair_one(settings, table, path, backup_dir, dry_run))
        if any(f.backup for f in run.files):
            run.backup_dir = str(backup_dir)
            atomic_write_text(backup_dir / REPORT_NAME, json.dumps(run.to_dict(), indent=2) + "\n")
    return run
