"""The published facts about the 68 AIMS Bronze tables, shipped inside the package.

The spec (``data/aims_bronze_tables.json``) is the reference for column order, row counts, value
sets, lengths and the inferred kind of every column. The generator uses it to build a realistic lake
and typing falls back to it when a rule file says nothing about a column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

COLUMN_KINDS = ("id", "fk", "date", "bool", "number", "category", "text", "unknown")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str
    nullable_percent: float | None
    unique: bool
    value_set: tuple[str, ...] | None
    length: tuple[int, int] | None


@dataclass(frozen=True)
class TableSpec:
    name: str
    rows: int
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


@lru_cache(maxsize=1)
def load_spec() -> dict[str, TableSpec]:
    """All tables of the published spec, keyed by table name, in the spec's order."""
    raw = json.loads(
        resources.files("aims_nb_utils").joinpath("data/aims_bronze_tables.json").read_text()
    )
    tables: dict[str, TableSpec] = {}
    for table in raw["tables"]:
        columns = tuple(
            ColumnSpec(
                name=c["name"],
                kind=c["kind"],
                nullable_percent=c["nullable_percent"],
                unique=bool(c["unique"]),
                value_set=tuple(c["value_set"]) if c["value_set"] is not None else None,
                length=tuple(c["length"]) if c["length"] is not None else None,
            )
            for c in table["columns"]
        )
        tables[table["name"]] = TableSpec(
            name=table["name"], rows=int(table["rows"]), columns=columns
        )
    return tables


def table_names() -> list[str]:
    """The 68 AIMS table names in the spec's order."""
    return list(load_spec())


def get_table(name: str) -> TableSpec | None:
    """The spec of one table, or None for a table the spec does not know (a new export)."""
    return load_spec().get(name)
