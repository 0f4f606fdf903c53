"""Business KPIs over Gold (and two Silver tables), exported for Power BI.

Why this shape:

* One long KPI table (``kpi_group, kpi, dimension, member_id, member, value, unit, numerator,
  denominator``) instead of one file per chart: Power BI slices it with a single import, and a
  ratio always ships with its numerator and denominator so a reader can check it.
* Asset counts are *distinct assets*: the fact's grain is asset x location, so an asset with two
  locations must not count twice for its status or phase.
* Asset KPIs come from the Gold star schema (built by :mod:`aims_nb_utils.gold`); consent
  milestones and non-compliances are not in the star, so they come from Silver, which holds only
  DQ-passed rows as well.
* A ratio whose denominator is 0 is null, never 0 %: "no data" must not read as "all bad".
* BI says when it does not apply (:func:`bi_readiness`). A lake with none of its AIMS inputs
  (``aims_assets`` through Gold, ``aims_consentmilestones``, ``aims_noncompliances``) in Bronze
  or Silver is not an AIMS lake: the phase is *skipped* with the missing tables named and nothing
  is exported. An input whose Bronze has rows but whose Silver has none, or Gold not built (or
  empty) while Silver has assets, is a *failure* naming it: KPIs of nothing are not a result.
* An input absent from the lake altogether (a partial AIMS lake) gives fewer rows plus a note
  naming it; the exported files are then complete for what is there, and typed.
* Exports are atomic (temporary file, then rename) so Power BI never reads half a file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from . import gold
from .errors import AimsError
from .orchestration import SKIP_KEY
from .settings import Settings

if TYPE_CHECKING:  # pandas is imported only where a DataFrame is asked for
    import pandas as pd

CONSENT_MILESTONES = "aims_consentmilestones"
NONCOMPLIANCES = "aims_noncompliances"
KPI_FILE_STEM = "bi_kpis"
# The tables BI's KPIs come from (aims_assets through the Gold star schema).
BI_SOURCES = (gold.ASSETS, CONSENT_MILESTONES, NONCOMPLIANCES)


class BiSourceError(AimsError):
    """BI applies to this lake but an input it is computed from has no rows where it should."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"BI KPIs cannot be computed: {problem}",
            hint="load the tables into Silver (notebook 02 / `python -m aims_nb_utils ingest-all`) "
            "and build Gold (notebook 05 / `build-gold`), then run BI again",
        )


KPI_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
        ("kpi_group", pa.string()),
        ("kpi", pa.string()),
        ("dimension", pa.string()),
        ("member_id", pa.int64()),
        ("member", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("numerator", pa.float64()),
        ("denominator", pa.float64()),
        ("source", pa.string()),
    ]
)

# (kpi name, DIM table, fact key column, dimension label, member id column, member label column)
_ASSET_BREAKDOWNS = (
    ("assets_by_route", gold.DIM_ROUTE, "ROUTE_KEY", "route", "ROUTE_ID", "ROUTE_CODE"),
    (
        "assets_by_class",
        gold.DIM_ASSETCLASS,
        "ASSETCLASS_KEY",
        "asset class",
        "ASSETCLASS_ID",
        "ASSETCLASS_NAME",
    ),
    ("assets_by_status", gold.DIM_STATUS, "STATUS_KEY", "status", None, "STATUS"),
    ("assets_by_phase", gold.DIM_STATUS, "STATUS_KEY", "phase", "PHASE_ID", "PHASE"),
    ("assets_by_stage", gold.DIM_STATUS, "STATUS_KEY", "stage", "STAGE_ID", "STAGE"),
    (
        "assets_by_organisation",
        gold.DIM_ORGANISATION,
        "ORGANISATION_KEY",
        "organisation",
        "OWNER_ID",
        "OWNER_NAME",
    ),
)


@dataclass
class KpiResult:
    """The KPI table plus what was missing and where it was exported."""

    run_id: str | None
    kpis: pa.Table
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    skip_reason: str | None = None  # BI does not apply to this lake (nothing computed or exported)
    failure: str | None = None  # BI applies but an input is missing its rows (nothing exported)

    @property
    def empty(self) -> bool:
        return self.kpis.num_rows == 0

    @property
    def applies(self) -> bool:
        return self.skip_reason is None and self.failure is None

    def raise_for_sources(self) -> None:
        """Raise BiSourceError when an input BI is computed from lacked its rows."""
        if self.failure is not None:
            raise BiSourceError(self.failure)

    def frame(self) -> pd.DataFrame:
        """The KPI table as a DataFrame (for notebooks and charts)."""
        return self.kpis.to_pandas()

    def value(self, kpi: str, member: str | None = None) -> float | None:
        """One KPI value (the overall row when ``member`` is None); None when absent."""
        frame = self.kpis.filter(pc.equal(self.kpis.column("kpi"), kpi))
        members = frame.column("member")
        mask = pc.is_null(members) if member is None else pc.equal(members, member)
        frame = frame.filter(pc.fill_null(mask, False))
        return frame.column("value")[0].as_py() if frame.num_rows else None

    def headline(self) -> dict[str, Any]:
        """Key figures for the run log."""
        return {
            "kpi_rows": self.kpis.num_rows,
            "assets_total": self.value("assets_total"),
            "location_coverage_percent": self.value("location_coverage"),
            "milestones_completed_percent": self.value("milestones_completed"),
            "milestones_overdue": self.value("milestones_overdue"),
            "noncompliances_total": self.value("noncompliances_total"),
            "noncompliances_open": self.value("noncompliances_open"),
            "notes": list(self.notes),
            SKIP_KEY: self.skip_reason,
            "failure": self.failure,
        }


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if not denominator else 100.0 * numerator / denominator


class _Rows:
    """Accumulates KPI rows column-wise (cheap, typed once at the end)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {n: [] for n in KPI_SCHEMA.names}

    def add(
        self,
        group: str,
        kpi: str,
        value: float | None,
        unit: str,
        source: str,
        dimension: str | None = None,
        member_id: int | None = None,
        member: str | None = None,
        numerator: float | None = None,
        denominator: float | None = None,
    ) -> None:
        row = {
            "kpi_group": group,
            "kpi": kpi,
            "dimension": dimension,
            "member_id": member_id,
            "member": member,
            "value": None if value is None else float(value),
            "unit": unit,
            "numerator": None if numerator is None else float(numerator),
            "denominator": None if denominator is None else float(denominator),
            "source": source,
        }
        for name, item in row.items():
            self.columns[name].append(item)

    def table(self, run_id: str | None, computed_at: datetime) -> pa.Table:
        n = len(self.columns["kpi"])
        self.columns["run_id"] = [run_id] * n
        self.columns["computed_at"] = [computed_at] * n
        return pa.table(self.columns, schema=KPI_SCHEMA)


def _distinct_assets_by(fact: pa.Table, key_column: str) -> pa.Table:
    """(key, distinct assets) over the fact."""
    grouped = fact.select([key_column, "ASSET_ID"]).group_by(key_column, use_threads=False)
    return grouped.aggregate([("ASSET_ID", "count_distinct")])


def _asset_kpis(rows: _Rows, settings: Settings, notes: list[str]) -> None:
    fact_columns = ["ASSET_ID", "HAS_LOCATION", *{b[2] for b in _ASSET_BREAKDOWNS}]
    fact = gold.read_gold(settings, gold.FACT, columns=fact_columns)
    source = f"gold.{gold.FACT}"
    if fact.num_rows == 0:
        notes.append(
            f"no asset KPIs: {gold.ASSETS} is not in this lake or has no rows (Gold "
            f"{gold.FACT} is empty or not built)"
        )
        return
    total = int(pc.count_distinct(fact.column("ASSET_ID")).as_py())
    rows.add("asset_inventory", "assets_total", total, "count", source)
    for kpi, dim_name, key_column, dimension, id_column, label_column in _ASSET_BREAKDOWNS:
        dim_key = gold.SCHEMAS[dim_name].names[0]
        wanted = [dim_key, label_column] + ([id_column] if id_column else [])
        dim = gold.read_gold(settings, dim_name, columns=wanted)
        # Attach the member to every fact row, then count distinct assets per member.
        position = pc.index_in(fact.column(key_column), value_set=dim.column(dim_key))
        labels = pc.take(dim.column(label_column), position)
        ids = pc.take(dim.column(id_column), position) if id_column else None
        keyed = pa.table(
            {
                "member": pc.fill_null(labels, gold.UNKNOWN_LABEL),
                "member_id": ids if ids is not None else pa.nulls(fact.num_rows, pa.int64()),
                "ASSET_ID": fact.column("ASSET_ID"),
            }
        )
        for member_id, member, count in _ranked_members(keyed, distinct="ASSET_ID"):
            rows.add(
                "asset_inventory",
                kpi,
                count,
                "count",
                f"{source} x gold.{dim_name}",
                dimension,
                member_id,
                member,
                numerator=count,
                denominator=total,
            )
    located_assets = pc.filter(
        fact.column("ASSET_ID"), pc.fill_null(fact.column("HAS_LOCATION"), False)
    )
    located = int(pc.count_distinct(located_assets).as_py()) if len(located_assets) else 0
    rows.add(
        "location_coverage",
        "location_coverage",
        _ratio(located, total),
        "percent",
        source,
        numerator=located,
        denominator=total,
    )


def _silver(
    settings: Settings, table: str, columns: tuple[str, ...], notes: list[str]
) -> pa.Table | None:
    data, info = gold.read_source(settings, table, columns)
    if not info.present:
        notes.append(f"{table} is not in this lake (no Silver table): no KPIs from it")
        return None
    if info.missing_columns:
        notes.append(f"Silver table {table} lacks {', '.join(info.missing_columns)}")
    return data


def _milestone_kpis(rows: _Rows, settings: Settings, notes: list[str], now: datetime) -> None:
    columns = ("ID", "CONSENTMILESTONETYPEID", "CONSENTMILESTONETYPE", "FORECASTDATE", "ACTUALDATE")
    data = _silver(settings, CONSENT_MILESTONES, columns, notes)
    if data is None:
        return
    source = f"silver.{CONSENT_MILESTONES}"
    completed = pc.is_valid(gold.as_timestamps(data, CONSENT_MILESTONES, "ACTUALDATE"))
    forecast = gold.as_timestamps(data, CONSENT_MILESTONES, "FORECASTDATE")
    today = pa.scalar(now.replace(tzinfo=None), pa.timestamp("us"))
    overdue = pc.and_(pc.invert(completed), pc.fill_null(pc.less(forecast, today), False))
    total = data.num_rows
    done = int(pc.sum(completed.cast(pa.int64())).as_py() or 0)
    rows.add(
        "consent_milestones",
        "milestones_completed",
        _ratio(done, total),
        "percent",
        source,
        numerator=done,
        denominator=total,
    )
    late = int(pc.sum(overdue.cast(pa.int64())).as_py() or 0)
    rows.add(
        "consent_milestones",
        "milestones_overdue",
        late,
        "count",
        source,
        numerator=late,
        denominator=total,
    )
    type_ids = gold.as_ids(data, CONSENT_MILESTONES, "CONSENTMILESTONETYPEID")
    names = gold.names_by_id(type_ids, gold.as_text(data, "CONSENTMILESTONETYPE"))
    per_type = pa.table(
        {"type_id": type_ids, "done": completed.cast(pa.int64()), "late": overdue.cast(pa.int64())}
    )
    grouped = per_type.group_by("type_id", use_threads=False).aggregate(
        [("done", "sum"), ("done", "count"), ("late", "sum")]
    )
    label = pc.take(
        names.column("name"), pc.index_in(grouped.column("type_id"), value_set=names.column("id"))
    )
    order = pc.sort_indices(grouped, sort_keys=[("type_id", "ascending")])
    for type_id, name, n_done, n_all in zip(
        pc.take(grouped.column("type_id"), order).to_pylist(),
        pc.take(label, order).to_pylist(),
        pc.take(grouped.column("done_sum"), order).to_pylist(),
        pc.take(grouped.column("done_count"), order).to_pylist(),
        strict=True,
    ):
        rows.add(
            "consent_milestones",
            "milestones_completed",
            _ratio(n_done, n_all),
            "percent",
            source,
            "milestone type",
            type_id,
            name if name is not None else gold.UNKNOWN_LABEL,
            numerator=n_done,
            denominator=n_all,
        )


def _ranked_members(
    keyed: pa.Table, distinct: str | None = None
) -> list[tuple[int | None, str, int]]:
    """(member_id, member, count) per member, largest first: rows, or distinct ``distinct`` values."""
    aggregate = [(distinct, "count_distinct")] if distinct else [([], "count_all")]
    counted = keyed.group_by(["member_id", "member"], use_threads=False).aggregate(aggregate)
    count_column = f"{distinct}_count_distinct" if distinct else "count_all"
    counted = counted.take(
        pc.sort_indices(counted, sort_keys=[(count_column, "descending"), ("member", "ascending")])
    )
    return list(
        zip(
            counted.column("member_id").to_pylist(),
            counted.column("member").to_pylist(),
            counted.column(count_column).to_pylist(),
            strict=True,
        )
    )


def _count_by(
    rows: _Rows,
    data: pa.Table,
    kpi: str,
    dimension: str,
    label: pa.ChunkedArray,
    ids: pa.ChunkedArray | None,
    source: str,
    total: int,
) -> None:
    keyed = pa.table(
        {
            "member_id": ids if ids is not None else pa.nulls(data.num_rows, pa.int64()),
            "member": pc.fill_null(label, gold.UNKNOWN_LABEL),
        }
    )
    for member_id, member, count in _ranked_members(keyed):
        rows.add(
            "non_compliance",
            kpi,
            count,
            "count",
            source,
            dimension,
            member_id,
            member,
            count,
            total,
        )


def _noncompliance_kpis(rows: _Rows, settings: Settings, notes: list[str]) -> None:
    columns = ("ID", "STATUS", "CATEGORYTYPE", "DATECLOSED")
    data = _silver(settings, NONCOMPLIANCES, columns, notes)
    if data is None:
        return
    source = f"silver.{NONCOMPLIANCES}"
    total = data.num_rows
    rows.add("non_compliance", "noncompliances_total", total, "count", source)
    open_cases = int(pc.sum(pc.is_null(data.column("DATECLOSED")).cast(pa.int64())).as_py() or 0)
    rows.add(
        "non_compliance",
        "noncompliances_open",
        open_cases,
        "count",
        source,
        numerator=open_cases,
        denominator=total,
    )
    _count_by(
        rows,
        data,
        "noncompliances_by_status",
        "status",
        gold.as_text(data, "STATUS"),
        None,
        source,
        total,
    )
    # By the category text: CATEGORYTYPEID points at a generic option-value list, and the text is
    # the published category (validated against its value set) a reader filters on.
    _count_by(
        rows,
        data,
        "noncompliances_by_category",
        "category",
        gold.as_text(data, "CATEGORYTYPE"),
        None,
        source,
        total,
    )


def bi_readiness(settings: Settings) -> gold.Readiness:
    """Skip, fail or compute: decided from metadata and the state DB (see module docstring)."""
    from . import storage

    states = gold.source_states(settings, BI_SOURCES)
    missing = [t for t in BI_SOURCES if not states[t].present]
    if len(missing) == len(BI_SOURCES):
        return gold.Readiness(
            skip_reason=gold.not_an_aims_lake(
                settings, missing, f"BI's KPIs are computed from them ({gold.ASSETS} through Gold)"
            )
        )
    notes: list[str] = []  # absent inputs are noted by the KPI sections that need them
    problems = [s.describe() for s in states.values() if s.unloaded]
    assets = states[gold.ASSETS]
    if assets.silver_rows:
        built = storage.table_exists(settings, "gold", gold.FACT)
        fact_rows = storage.count_rows(settings, "gold", gold.FACT) if built else 0
        if not fact_rows:
            problems.append(
                f"Gold {gold.FACT} is {'empty' if built else 'not built'} while Silver "
                f"{gold.ASSETS} has {assets.silver_rows:,} rows (run phase 05 / "
                "`python -m aims_nb_utils build-gold`)"
            )
    if problems:
        return gold.Readiness(failure="; ".join(problems), notes=tuple(notes))
    return gold.Readiness(notes=tuple(notes))


def compute_kpis(
    settings: Settings, run_id: str | None = None, now: datetime | None = None
) -> KpiResult:
    """All KPIs from Gold and Silver as they are now (every row; nothing sampled).

    When BI does not apply, or an input lacks its rows, nothing is computed and the result says
    why (``skip_reason`` / ``failure``).
    """
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    rows = _Rows()
    readiness = bi_readiness(settings)
    if not readiness.applies:
        return KpiResult(
            run_id=run_id,
            kpis=rows.table(run_id, now),
            notes=list(readiness.notes),
            seconds=time.perf_counter() - started,
            skip_reason=readiness.skip_reason,
            failure=readiness.failure,
        )
    notes: list[str] = list(readiness.notes)
    _asset_kpis(rows, settings, notes)
    _milestone_kpis(rows, settings, notes, now)
    _noncompliance_kpis(rows, settings, notes)
    return KpiResult(
        run_id=run_id,
        kpis=rows.table(run_id, now),
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def export_kpis(settings: Settings, result: KpiResult) -> dict[str, Path]:
    """Write the KPI table as parquet and CSV under ``settings.paths.reports`` (atomically)."""
    import pyarrow.csv as pacsv

    from .io import atomic_path, write_parquet_atomic

    reports = settings.paths.reports
    reports.mkdir(parents=True, exist_ok=True)
    parquet_path = write_parquet_atomic(result.kpis, reports / f"{KPI_FILE_STEM}.parquet")
    csv_path = reports / f"{KPI_FILE_STEM}.csv"
    with atomic_path(csv_path) as tmp:
        pacsv.write_csv(result.kpis, tmp)
    result.paths = {"parquet": str(parquet_path), "csv": str(csv_path)}
    return {"parquet": parquet_path, "csv": csv_path}


def run_bi(settings: Settings, run_id: str | None = None, export: bool = True) -> KpiResult:
    """Compute the KPIs and (by default) export them: what notebook 08 and the CLI call."""
    result = compute_kpis(settings, run_id=run_id)
    if export and result.applies:
        export_kpis(settings, result)
    return result


# --- figures -------------------------------------------------------------------------------------


def _empty_figure(title: str, message: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(
        title=title,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 16}}],
    )
    return fig


def kpi_figures(result: KpiResult, top: int = 20) -> dict[str, Any]:
    """Plotly figures of the KPI table; a KPI with no data gets a figure that says so."""
    import plotly.express as px

    frame = result.frame()
    figures: dict[str, Any] = {}

    def bar(
        kpi: str,
        title: str,
        x_label: str,
        limit: int | None = None,
        percent: bool = False,
        counted: str = "assets",
    ) -> Any:
        part = frame[(frame["kpi"] == kpi) & frame["member"].notna()]
        if part.empty:
            return _empty_figure(title, "no data yet")
        part = part.sort_values("value", ascending=False)
        if limit is not None and len(part) > limit:
            title = f"{title} (top {limit} of {len(part)})"
            part = part.head(limit)
        fig = px.bar(
            part,
            x="member",
            y="value",
            title=title,
            labels={"member": x_label, "value": "%" if percent else counted},
            hover_data=["numerator", "denominator"],
        )
        if percent:
            fig.update_yaxes(range=[0, 100])
        return fig

    figures["assets_by_route"] = bar("assets_by_route", "Assets by route", "route")
    figures["assets_by_class"] = bar("assets_by_class", "Assets by asset class", "class", limit=top)
    figures["assets_by_status"] = bar("assets_by_status", "Assets by status", "status")
    figures["assets_by_phase"] = bar("assets_by_phase", "Assets by phase", "phase")
    figures["assets_by_stage"] = bar("assets_by_stage", "Assets by stage", "stage")
    coverage = result.value("location_coverage")
    if coverage is None:
        figures["location_coverage"] = _empty_figure("Location coverage", "no assets in Gold yet")
    else:
        import plotly.graph_objects as go

        figures["location_coverage"] = go.Figure(
            go.Indicator(
                mode="gauge+number",
                value=coverage,
                number={"suffix": " %"},
                gauge={"axis": {"range": [0, 100]}},
                title={"text": "Assets with a location"},
            )
        )
    figures["milestones_by_type"] = bar(
        "milestones_completed",
        "Consent milestones completed by type (%)",
        "milestone type",
        limit=top,
        percent=True,
    )
    figures["noncompliances_by_status"] = bar(
        "noncompliances_by_status", "Non-compliances by status", "status", counted="cases"
    )
    figures["noncompliances_by_category"] = bar(
        "noncompliances_by_category", "Non-compliances by category", "category", counted="cases"
    )
    return figures
