"""Acceptance: the whole pipeline on public data nobody here wrote (TPC-H, TPC-DS, nycflights13).

The platform has to be right on any folder of ``<table>.parquet`` files, not only on the lake its
own generator writes. Every expectation below comes from the data sets' published schemas (TPC-H
and TPC-DS specifications, the nycflights13 documentation) or from invariants a user relies on
(rows conserved, types kept, reasons given): none is copied from what the code produced.

Each lake is built once (``public_lakes.build_lake``) and ``run_all.py`` runs on it once, headless,
through papermill with the ``aims`` kernel, as a user would; the lakes a selected test needs run
two at a time (the runs are mostly single-core notebook kernels). TPC-DS (24 tables) runs only the
profiling and validation_ingestion phases to keep the module within a few minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from published_schemas import (
    FLIGHTS_KEYS,
    FLIGHTS_REFERENCES,
    TPCDS_DATE_VALUED,
    TPCDS_DIMENSION_KEYS,
    TPCDS_KEYS,
    TPCDS_REFERENCES,
    TPCH_COMPOSITE_REFERENCE,
    TPCH_DATES,
    TPCH_DECIMALS,
    TPCH_KEYS,
    TPCH_REFERENCES,
)

from aims_nb_utils import storage
from aims_nb_utils.quarantine import FAILED_RULES, REASON, SILVER_FIELDS
from aims_nb_utils.rules import load_rules_dir
from aims_nb_utils.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_SECONDS = 900
PARALLEL_RUNS = 2


PHASES = (
    "profiling",
    "validation_ingestion",
    "monitoring",
    "schema_reconciliation",
    "silver_enhancement",
    "quality_insights",
    "dq_modeling",
    "bi_analytics",
)
GOLD_PHASES = ("silver_enhancement", "bi_analytics")  # need the AIMS tables, absent here


@dataclass(frozen=True)
class LakeSpec:
    dataset: str
    as_text: bool = False
    phases: tuple[str, ...] = ()  # empty: every phase
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    references: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    @property
    def typed(self) -> bool:
        return not self.as_text

    @property
    def full_pipeline(self) -> bool:
        return not self.phases


LAKES: dict[str, LakeSpec] = {
    "tpch": LakeSpec("tpch", keys=TPCH_KEYS, references=TPCH_REFERENCES),
    "tpch_text": LakeSpec("tpch", as_text=True, keys=TPCH_KEYS, references=TPCH_REFERENCES),
    "flights": LakeSpec("flights", keys=FLIGHTS_KEYS, references=FLIGHTS_REFERENCES),
    "tpcds": LakeSpec(
        "tpcds",
        phases=("profiling", "validation_ingestion"),
        keys=TPCDS_KEYS,
        references=TPCDS_REFERENCES,
    ),
}
ALL = list(LAKES)
TYPED = [n for n, s in LAKES.items() if s.typed]
FULL = [n for n, s in LAKES.items() if s.full_pipeline]
TPCH = [n for n, s in LAKES.items() if s.dataset == "tpch"]


@dataclass
class LakeRun:
    """A built lake and the outcome of run_all.py on it."""

    name: str
    spec: LakeSpec
    home: Path
    returncode: int
    output: str
    seconds: float

    @property
    def settings(self) -> Settings:
        return load_settings(env={}, home=self.home)

    @property
    def bronze(self) -> Path:
        return self.home / "data" / "bronze"

    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.bronze.glob("*.parquet"))

    def bronze_rows(self, table: str) -> int:
        return pq.ParquetFile(self.bronze / f"{table}.parquet").metadata.num_rows

    def bronze_schema(self, table: str) -> pa.Schema:
        return pq.read_schema(self.bronze / f"{table}.parquet")

    def run_log(self) -> dict[str, Any]:
        logs = sorted(
            (self.home / "config" / "validation_results").glob("orchestration_log_*.json")
        )
        assert logs, f"{self.name}: run_all.py wrote no run log\n{self.output[-3000:]}"
        return json.loads(logs[-1].read_text())

    def phases(self) -> dict[str, dict[str, Any]]:
        return {p["phase"]: p for p in self.run_log()["phases"]}

    def rule_files(self) -> dict:
        rules = self.settings.paths.rules
        assert any(rules.glob("*_validation.yml")), f"{self.name}: no rule file in {rules}"
        return load_rules_dir(rules)


def _build_and_run(name: str, home: Path) -> LakeRun:
    from aims_nb_utils.public_lakes import build_lake

    spec = LAKES[name]
    started = time.perf_counter()
    build_lake(spec.dataset, home / "data" / "bronze", scale=0.01, as_text=spec.as_text)
    command = [sys.executable, str(REPO / "run_all.py"), "--home", str(home), "--kernel", "aims"]
    command.append("--continue-on-error")  # a failed phase must not hide what the others do
    if spec.phases:
        command += ["--phases", ",".join(spec.phases)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMS_")}
    env["GX_ANALYTICS_ENABLED"] = "False"
    done = subprocess.run(
        command,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    return LakeRun(
        name, spec, home, done.returncode, done.stdout + done.stderr, time.perf_counter() - started
    )


def _lakes_needed(session: pytest.Session) -> list[str]:
    """The lakes the selected tests of this module use, largest first (they run in parallel)."""
    needed = {
        item.callspec.params["lake"]
        for item in session.items
        if getattr(getattr(item, "module", None), "__name__", None) == __name__
        and hasattr(item, "callspec")
        and "lake" in item.callspec.params
    }
    order = ["flights", "tpch_text", "tpch", "tpcds"]
    return [n for n in order if n in needed] + sorted(needed - set(order))


@pytest.fixture(scope="module")
def public_lakes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """name -> LakeRun; every needed lake is started at once, each test waits for its own."""
    pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS, thread_name_prefix="public-lake")
    futures: dict[str, Future[LakeRun]] = {
        name: pool.submit(_build_and_run, name, tmp_path_factory.mktemp(name))
        for name in _lakes_needed(request.session)
    }

    def get(name: str) -> LakeRun:
        if name not in futures:
            futures[name] = pool.submit(_build_and_run, name, tmp_path_factory.mktemp(name))
        return futures[name].result()

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def lake(request: pytest.FixtureRequest, public_lakes) -> LakeRun:
    return public_lakes(request.param)


def _lakes(names: list[str]):
    return pytest.mark.parametrize("lake", names, indirect=True)


def _problems(title: str, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:40])
    more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
    return f"{title} ({len(problems)}):\n  {shown}{more}"


# --- the run as a whole -------------------------------------------------------------------------


@_lakes(ALL)
def test_every_phase_succeeds_or_is_skipped_with_a_reason(lake: LakeRun) -> None:
    phases = lake.phases()
    assert set(phases) == set(PHASES), f"{lake.name}: run log phases {sorted(phases)}"
    problems = []
    for name in PHASES:
        phase = phases[name]
        status, reason = phase["status"], (phase.get("reason") or "").strip()
        if status == "skipped" and not reason:
            problems.append(f"{name}: skipped without a reason")
        elif status not in ("success", "skipped"):
            error = (phase.get("error") or {}).get("evalue") or reason or "no error recorded"
            problems.append(f"{name}: {status}: {error[:400]}")
    for name in PHASES:
        if name not in lake.spec.phases and lake.spec.phases:
            assert phases[name]["status"] == "skipped", f"{lake.name}: {name} ran, not selected"
    assert not problems, _problems(f"{lake.name}: phases that did not end well", problems)
    assert lake.run_log()["status"] != "failed"
    assert lake.returncode == 0, f"{lake.name}: run_all.py exit {lake.returncode}"


@_lakes(FULL)
def test_gold_and_bi_are_skipped_naming_the_missing_aims_tables(lake: LakeRun) -> None:
    phases = lake.phases()
    for name in GOLD_PHASES:
        phase = phases[name]
        assert phase["status"] == "skipped", (
            f"{lake.name}: {name} ended {phase['status']} on a lake without AIMS tables "
            f"(metrics {json.dumps(phase.get('metrics'))[:300]})"
        )
        reason = phase.get("reason") or ""
        assert re.search(r"\baims_[a-z_]+", reason), f"{lake.name}: {name} reason {reason!r}"


# --- Bronze -> Silver -----------------------------------------------------------------------------


@_lakes(ALL)
def test_every_bronze_row_is_in_silver_or_quarantine(lake: LakeRun) -> None:
    settings = lake.settings
    problems = []
    for table in lake.tables():
        bronze = lake.bronze_rows(table)
        silver = (
            storage.count_rows(settings, "silver", table)
            if storage.table_exists(settings, "silver", table)
            else None
        )
        quarantined = (
            storage.count_rows(settings, "quarantine", table)
            if storage.table_exists(settings, "quarantine", table)
            else 0
        )
        if silver is None:
            problems.append(f"{table}: no Silver table ({bronze} Bronze rows)")
        elif bronze != silver + quarantined:
            problems.append(
                f"{table}: Bronze {bronze} != Silver {silver} + quarantine {quarantined}"
            )
    assert not problems, _problems(f"{lake.name}: rows not conserved", problems)


@_lakes(TPCH)
def test_no_tpch_row_is_quarantined(lake: LakeRun) -> None:
    """dbgen data meets every constraint of its schema: a quarantined row is a false positive."""
    settings = lake.settings
    quarantined = {
        t: storage.count_rows(settings, "quarantine", t)
        for t in lake.tables()
        if storage.table_exists(settings, "quarantine", t)
    }
    problems = []
    for table, rows in sorted(quarantined.items()):
        if rows:
            reasons = storage.read_table(settings, "quarantine", table, columns=[REASON])
            top = pc.value_counts(reasons.column(REASON)).to_pylist()[:3]
            problems.append(f"{table}: {rows} rows, e.g. {top}")
    assert not problems, _problems(f"{lake.name}: quarantined rows of clean data", problems)


@_lakes(ALL)
def test_every_quarantined_row_says_why(lake: LakeRun) -> None:
    settings = lake.settings
    problems = []
    for table in lake.tables():
        if not storage.table_exists(settings, "quarantine", table):
            continue
        data = storage.read_table(settings, "quarantine", table, columns=[FAILED_RULES, REASON])
        no_rule = pc.sum(pc.fill_null(pc.equal(pc.list_value_length(data[FAILED_RULES]), 0), True))
        no_reason = pc.sum(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(data[REASON]), ""), True))
        if (no_rule.as_py() or 0) or (no_reason.as_py() or 0):
            problems.append(f"{table}: {no_rule} rows without rule ids, {no_reason} without reason")
    assert not problems, _problems(f"{lake.name}: quarantine rows without a reason", problems)


def _is_bookkeeping(name: str) -> bool:
    return name in {f.name for f in SILVER_FIELDS} or name.startswith("_dq")


@_lakes(TYPED)
def test_silver_keeps_the_source_types(lake: LakeRun) -> None:
    settings = lake.settings
    problems = []
    for table in lake.tables():
        if not storage.table_exists(settings, "silver", table):
            problems.append(f"{table}: no Silver table")
            continue
        source = lake.bronze_schema(table)
        silver = storage.table_schema(settings, "silver", table)
        data_columns = [n for n in silver.names if not _is_bookkeeping(n)]
        if data_columns != source.names:
            problems.append(f"{table}: Silver columns {data_columns} != Bronze {source.names}")
            continue
        for f in source:
            kept = silver.field(f.name).type
            if kept != f.type:
                problems.append(f"{table}.{f.name}: Bronze {f.type} -> Silver {kept}")
    assert not problems, _problems(f"{lake.name}: Silver types differ from the source", problems)


@pytest.mark.parametrize("lake", ["tpch_text"], indirect=True)
def test_text_tpch_gets_the_published_kinds_in_silver(lake: LakeRun) -> None:
    """All-text Bronze (the AIMS case): keys and references integers, money numbers, dates dates."""
    settings = lake.settings
    expected: dict[tuple[str, str], tuple[str, Any]] = {}
    for table, key in TPCH_KEYS.items():
        for column in key:
            expected[(table, column)] = ("integer", pa.types.is_integer)
    for table, column in TPCH_REFERENCES:
        expected[(table, column)] = ("integer", pa.types.is_integer)
    for table, columns in TPCH_DECIMALS.items():
        for column in columns:
            expected[(table, column)] = (
                "number",
                lambda t: pa.types.is_decimal(t) or pa.types.is_floating(t),
            )
    for table, columns in TPCH_DATES.items():
        for column in columns:
            expected[(table, column)] = (
                "date",
                lambda t: pa.types.is_date(t) or pa.types.is_timestamp(t),
            )
    problems = []
    for (table, column), (kind, check) in sorted(expected.items()):
        if not storage.table_exists(settings, "silver", table):
            problems.append(f"{table}: no Silver table")
            continue
        got = storage.table_schema(settings, "silver", table).field(column).type
        if not check(got):
            problems.append(f"{table}.{column}: expected {kind}, Silver has {got}")
    assert not problems, _problems("tpch_text: Silver kinds", sorted(set(problems)))


# --- discovery: keys and references ----------------------------------------------------------------


@_lakes(ALL)
def test_published_keys_are_discovered(lake: LakeRun) -> None:
    rule_files = lake.rule_files()
    problems = []
    for table, key in sorted(lake.spec.keys.items()):
        rule_file = rule_files.get(table)
        found = [list(k) for k in rule_file.keys] if rule_file else None
        if not found or set(key) not in [set(k) for k in found]:
            problems.append(f"{table}: key {list(key)} not among discovered keys {found}")
    assert not problems, _problems(f"{lake.name}: published keys not discovered", problems)


@_lakes(ALL)
def test_discovered_keys_are_unique_and_complete_in_bronze(lake: LakeRun) -> None:
    """A key the rule file claims must identify every Bronze row: it is the row identity."""
    problems = []
    for table, rule_file in sorted(lake.rule_files().items()):
        for key in rule_file.keys:
            data = pq.read_table(lake.bronze / f"{table}.parquet", columns=list(key))
            nulls = {c: data.column(c).null_count for c in key if data.column(c).null_count}
            distinct = data.group_by(list(key)).aggregate([]).num_rows
            if nulls or distinct != data.num_rows:
                problems.append(
                    f"{table} key {list(key)}: {data.num_rows - distinct} duplicate rows, "
                    f"nulls {nulls}"
                )
    assert not problems, _problems(f"{lake.name}: claimed keys that are not keys", problems)


def _references(rule_files: dict) -> set[tuple[str, tuple[str, ...], str, tuple[str, ...]]]:
    """(table, child columns, parent table, parent columns) of every cross-table rule."""

    def columns(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        return tuple(value) if isinstance(value, (list, tuple)) else ()

    found = set()
    for table, rule_file in rule_files.items():
        for rule in rule_file.expectations:
            reference = rule.meta.get("reference")
            if not isinstance(reference, dict):
                continue
            child = columns(rule.kwargs.get("column") or rule.kwargs.get("columns"))
            parent = columns(reference.get("column") or reference.get("columns"))
            found.add((table, child, str(reference.get("table")), parent))
    return found


def _published(spec: LakeSpec) -> set[tuple[str, tuple[str, ...], str, tuple[str, ...]]]:
    return {(t, (c,), pt, (pc_,)) for (t, c), (pt, pc_) in spec.references.items()}


def _fmt(ref: tuple[str, tuple[str, ...], str, tuple[str, ...]]) -> str:
    return f"{ref[0]}.{','.join(ref[1])} -> {ref[2]}.{','.join(ref[3])}"


@_lakes(ALL)
def test_published_references_are_discovered(lake: LakeRun) -> None:
    found = _references(lake.rule_files())
    missing = sorted(_fmt(r) for r in _published(lake.spec) - found)
    assert not missing, _problems(f"{lake.name}: published foreign keys not discovered", missing)


@_lakes(["tpch", "tpch_text", "flights"])
def test_no_reference_outside_the_published_schema(lake: LakeRun) -> None:
    """TPC-H's and nycflights13's published foreign keys are all their single-column inclusions
    into a key; anything else (r_regionkey -> n_nationkey: 0-4 lie in 0-24) is a coincidence."""
    allowed = _published(lake.spec)
    if lake.spec.dataset == "tpch":
        (child, child_cols), (parent, parent_cols) = TPCH_COMPOSITE_REFERENCE
        allowed.add((child, child_cols, parent, parent_cols))
    bogus = sorted(_fmt(r) for r in _references(lake.rule_files()) - allowed)
    assert not bogus, _problems(f"{lake.name}: references not in the published schema", bogus)


@pytest.mark.parametrize("lake", ["tpcds"], indirect=True)
def test_tpcds_references_go_from_surrogate_keys_to_dimension_keys(lake: LakeRun) -> None:
    """TPC-DS references are ``*_sk`` columns pointing at a dimension's own surrogate key; a
    reference from a measure (ss_quantity in 1-100 lies inside many key ranges) is bogus."""
    dimension_keys = {(t, (k,)) for t, k in TPCDS_DIMENSION_KEYS.items()}
    date_valued = {(t, (c,), "date_dim", ("d_date_sk",)) for t, c in TPCDS_DATE_VALUED}
    bogus = sorted(
        _fmt(r)
        for r in _references(lake.rule_files())
        if r not in date_valued
        and (not all(c.endswith("_sk") for c in r[1]) or (r[2], r[3]) not in dimension_keys)
    )
    assert not bogus, _problems("tpcds: references that are not surrogate-key joins", bogus)
