"""The fault matrix: every fault the platform is known to survive, and what "survive" means.

Each test names the fault and asserts, as applicable:
  * nothing lost, nothing duplicated (Silver + quarantine = Bronze, by row);
  * previous state readable (readers see the old version of a table, or the new one, never a mix);
  * rerun identical (a rerun converges to what an uninterrupted run gives);
  * clear message (an AimsError sentence naming the file/table and what to do, exit code 2).

The lake is TPC-H (published data nobody here wrote) at a small scale with hand-written rules:
key not null and unique, and a balance rule that sends some customers to quarantine. Kills at a
chosen moment use the ``AIMS_FAULT_POINT`` hook (aims_nb_utils.lake_lock.fault_point) in a child
process; docs/reliability.md has this list as a table.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from aims_nb_utils import ingestion, lake_lock, state, storage
from aims_nb_utils.cli import main
from aims_nb_utils.errors import (
    BronzeNameWarning,
    DiskFullError,
    RunAbandonedError,
    SettingsWarning,
)
from aims_nb_utils.ingestion import Verdict, ingest_tables
from aims_nb_utils.io import TEMP_MARKER, list_bronze_tables, temp_prefix
from aims_nb_utils.quarantine import ROW_HASH, RUN_ID
from aims_nb_utils.rules import Expectation, RuleFile, save_rule_file
from aims_nb_utils.settings import load_settings

KEYS = {
    "region": "r_regionkey",
    "nation": "n_nationkey",
    "supplier": "s_suppkey",
    "customer": "c_custkey",
    "orders": "o_orderkey",
}
TABLES = list(KEYS)
PASS = {t: Verdict("PASSED") for t in TABLES}
ROOT = Path(__file__).resolve().parents[1]


def _rules(table: str, key: str) -> RuleFile:
    expectations = [
        Expectation("expect_column_values_to_not_be_null", {"column": key}, {"severity": "high"}),
        Expectation("expect_column_values_to_be_unique", {"column": key}, {"severity": "high"}),
    ]
    if table == "customer":  # real TPC-H has negative balances: those rows go to quarantine
        expectations.append(
            Expectation(
                "expect_column_values_to_be_between",
                {"column": "c_acctbal", "min_value": 0, "max_value": 100000},
                {"severity": "low"},
            )
        )
    return RuleFile(table=table, expectations=expectations)


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aims_nb_utils.public_lakes import build_lake

    home = tmp_path_factory.mktemp("tpch") / "home"
    build_lake("tpch", home / "data" / "bronze", scale=0.01, tables=TABLES)
    settings = load_settings(env={}, home=home)
    for table, key in KEYS.items():
        save_rule_file(_rules(table, key), settings.paths.rule_file(table))
    return home


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source / "data" / "bronze", target / "data" / "bronze")
    shutil.copytree(source / "config", target / "config")
    return target


@pytest.fixture
def home(tpch: Path, tmp_path: Path) -> Path:
    return _copy(tpch, tmp_path / "home")


def _settings(home: Path, **overrides: object):
    overrides.setdefault("max_workers", 1)
    return load_settings(env={}, home=home, **overrides)


def _ingest(home: Path, force: bool | None = None, **overrides: object):
    return ingest_tables(_settings(home, **overrides), verdicts=PASS, force=force)


def _new_drop(home: Path) -> None:
    """A new Bronze drop: more customers in debt, and every order comment edited."""
    bronze = home / "data" / "bronze"
    customer = pq.read_table(bronze / "customer.parquet")
    i = customer.schema.get_field_index("c_acctbal")
    flipped = pc.multiply(customer.column(i), pa.scalar(-1, customer.schema.field(i).type))
    customer = customer.set_column(i, "c_acctbal", flipped)
    pq.write_table(customer, bronze / "customer.parquet")
    orders = pq.read_table(bronze / "orders.parquet")
    j = orders.schema.get_field_index("o_comment")
    edited = pc.binary_join_element_wise(orders.column(j), "v2", " ")
    pq.write_table(orders.set_column(j, "o_comment", edited), bronze / "orders.parquet")


def _view(home: Path, table: str, **overrides: object) -> dict[str, pa.Table]:
    """What a reader sees of a table: Silver and quarantine, run ids left out, in hash order."""
    settings = _settings(home, **overrides)
    out = {}
    for layer in ("silver", "quarantine"):
        data = storage.read_table(settings, layer, table).drop_columns([RUN_ID])
        out[layer] = data.sort_by(ROW_HASH)
    return out


def _state_rows(home: Path) -> dict[str, tuple]:
    rows = state.query(
        _settings(home).paths.state_db,
        "SELECT table_name, status, bronze_rows, silver_rows, quarantined_rows FROM ingest_state",
    )
    return {r["table_name"]: tuple(r.values()) for r in rows}


def _leftovers(home: Path) -> list[Path]:
    data = home / "data"
    temps = [p for p in data.rglob(f"*{TEMP_MARKER}*") if p.is_file()]
    return temps + list((data / "state" / storage.PUBLISH_FOLDER).glob("*.json"))


def _accounted(home: Path, table: str, **overrides: object) -> None:
    """Nothing lost, nothing duplicated: every Bronze row once in Silver or quarantine."""
    view = _view(home, table, **overrides)
    bronze = pq.read_table(home / "data" / "bronze" / f"{table}.parquet")
    hashes = pa.concat_arrays(
        [
            view["silver"].column(ROW_HASH).combine_chunks(),
            view["quarantine"].column(ROW_HASH).combine_chunks(),
        ]
    )
    assert len(hashes) == bronze.num_rows
    assert pc.count_distinct(hashes).as_py() == bronze.num_rows


RUN_SCRIPT = textwrap.dedent("""
    import sys
    from aims_nb_utils.ingestion import Verdict, ingest_tables
    from aims_nb_utils.settings import load_settings

    home, fmt, tables = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    settings = load_settings(env={}, home=home, max_workers=1, storage_format=fmt)
    ingest_tables(settings, verdicts={t: Verdict("PASSED") for t in tables})
    """)


def _run_child(home: Path, fmt: str, point: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMS_")}
    env.update({"AIMS_FAULT_POINT": point, "AIMS_FAULT_MARKER": str(tmp_path / "reached")})
    return subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, str(home), fmt, ",".join(TABLES)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- 1. the lake lock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["", '{"pid": 12', json.dumps({"pid": 1, "host": socket.gethostname()})],
    ids=["empty", "half-written", "pid-alive-but-not-holding"],
)
def test_a_lock_file_nobody_holds_never_blocks_the_lake(home: Path, body: str) -> None:
    """Fault: a run died before (or while) writing the lock: full disk, `: > lake.lock`, a
    recycled pid. Asserts: the next run takes the lock and loads; the lock is gone after."""
    lock = lake_lock.lock_path(_settings(home))
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(body)
    run = _ingest(home)
    assert run.summary["loaded"] == len(TABLES)
    assert not lock.exists()


STARTER = textwrap.dedent("""
    import sys, time
    from aims_nb_utils.lake_lock import LakeLockedError, lake_lock
    from aims_nb_utils.settings import load_settings

    settings = load_settings(env={}, home=sys.argv[1])
    while time.time() < float(sys.argv[2]):
        pass
    try:
        with lake_lock(settings, "starter"):
            print("won", flush=True)
            time.sleep(1.0)
    except LakeLockedError:
        print("refused", flush=True)
    """)


def test_exactly_one_of_many_simultaneous_starters_wins(home: Path) -> None:
    """Fault: N processes start at the same instant over a stale lock (the old code let two in
    5 times in 40). Asserts: in every round exactly one wins and the others are refused."""
    lock = lake_lock.lock_path(_settings(home))
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _round in range(3):
        lock.write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname()}))
        start = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(home), str(start)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(6)
        ]
        outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sorted(outcomes) == ["refused"] * 5 + ["won"], outcomes


def test_a_refused_run_names_the_holder_and_what_to_do(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: a second run while one is going. Asserts: exit 2, the holder's pid, host and
    purpose, and that there is nothing to delete."""
    settings = _settings(home)
    with lake_lock.lake_lock(settings, "a long ingest"):
        code = main(["ingest-all", "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"pid {os.getpid()} on {socket.gethostname()} (a long ingest" in err
    assert "wait for that run to finish" in err and "no need to delete" in err


def test_a_full_disk_while_taking_the_lock_leaves_no_lock_behind(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: the disk is full when a run starts. Asserts: a DiskFullError naming the lock, and
    the next run (disk freed) is not blocked."""

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    settings = _settings(home)
    monkeypatch.setattr(lake_lock.os, "pwrite", full)
    with pytest.raises(DiskFullError, match="no space left on the disk holding .*lake.lock"):
        _ingest(home)
    monkeypatch.undo()
    assert _ingest(home).summary["loaded"] == len(TABLES)
    assert not lake_lock.lock_path(settings).exists()


# --- 2. workers die with their run and never publish without its lock --------------------------

POOL_SCRIPT = textwrap.dedent("""
    import os, sys, time, pathlib
    from aims_nb_utils import ingestion, profiling, validation
    from aims_nb_utils.settings import load_settings

    home, kind, pids = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    settings = load_settings(env={}, home=home, max_workers=2)

    def stuck(*args, **kwargs):
        (pids / str(os.getpid())).touch()
        time.sleep(600)

    if kind == "validation":
        validation._run_task = stuck
        validation.validate_tables(settings, tables=["orders", "customer", "supplier"])
    elif kind == "profiling":
        profiling._profile_job = stuck
        profiling.profile_tables(settings, tables=["orders", "customer", "supplier"])
    else:  # ingestion workers are spawned: they hang at the publish point (AIMS_FAULT_POINT)
        ingestion.PARALLEL_MIN_BYTES = 0
        ingestion.ingest_tables(
            settings, verdicts={t: ingestion.Verdict("PASSED") for t in ["orders", "customer"]},
            tables=["orders", "customer"],
        )
    """)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead (only not reaped yet)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["validation", "profiling", "ingestion"])
def test_workers_die_with_their_parent(home: Path, tmp_path: Path, kind: str) -> None:
    """Fault: SIGKILL of a run while its pool works. Asserts: every worker is gone within
    seconds (they held 300-600 MB each for minutes) and an ingestion worker published nothing."""
    before = _ingest(home) if kind == "ingestion" else None
    previous = _view(home, "orders") if before else None
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMS_")}
    if kind == "ingestion":
        _new_drop(home)
        env.update(
            {
                "AIMS_FAULT_POINT": "publish.before_commit:hang",
                "AIMS_FAULT_MARKER": str(pids / "marker"),
            }
        )
    parent = subprocess.Popen(
        [sys.executable, "-c", POOL_SCRIPT, str(home), kind, str(pids)], env=env, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            found = [int(p.name) for p in pids.iterdir() if p.name.isdigit()]
            if kind == "ingestion" and (pids / "marker").exists():
                found = [int((pids / "marker").read_text())]
            if len(found) >= (1 if kind == "ingestion" else 2):
                break
            assert parent.poll() is None, "the run ended before its workers were busy"
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        os.kill(parent.pid, signal.SIGKILL)
    finally:
        parent.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in found) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in found if _alive(pid)], "orphaned workers outlived their run"
    if kind == "ingestion":
        assert _view(home, "orders") == previous  # nothing published by the orphan
        assert _ingest(home).summary["loaded"] == 2  # the rerun loads the new drop


def test_a_worker_whose_run_is_gone_publishes_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: a worker reaches the publish step after its run lost the lock (its parent died, a
    new run started). Asserts: RunAbandonedError naming the table, previous Silver kept."""
    _ingest(home)
    previous = _view(home, "orders")
    _new_drop(home)
    monkeypatch.setattr(lake_lock, "_PARENT_PID", os.getppid())  # as if a pool worker of pytest's
    # parent: that process does not hold the lake lock, so nothing may be published
    settings = _settings(home)
    plan = ingestion.plan_table(settings, "orders", False)
    load_id = ingestion._open_loads(settings, "r1", ["orders"])["orders"]
    result = ingestion._run_one(settings, plan, Verdict("PASSED"), "r1", load_id)
    assert result.status == "error"
    assert "no longer holds the lake lock; nothing of the table was published" in result.error
    monkeypatch.setattr(lake_lock, "_PARENT_PID", None)
    assert _view(home, "orders") == previous
    assert _leftovers(home) == []
    with pytest.raises(RunAbandonedError):
        monkeypatch.setattr(lake_lock, "_PARENT_PID", 999_999_999)
        lake_lock.check_run_lock(settings, "orders")


# --- 3. the results file keeps the lake's verdicts ---------------------------------------------


def test_a_partial_validation_merges_into_the_previous_verdicts(home: Path) -> None:
    """Fault: `validate-dq --tables X` (or an incremental ingest) rewrote the results file with
    X only, and monitoring reported "1 table" for the lake. Asserts: every table keeps a verdict
    with its own run id; the summary counts the lake; the run's own tables are listed, and
    monitoring says which tables this run validated and which verdicts are older."""
    from aims_nb_utils.validation import RESULTS_FILE, validate_tables

    settings = _settings(home)
    first = validate_tables(settings)
    second = validate_tables(settings, tables=["nation"])
    document = json.loads((settings.paths.results / RESULTS_FILE).read_text())
    assert set(document["files"]) == set(TABLES)
    assert document["validated_in_run"] == ["nation"]
    assert document["run_id"] == second.run_id and document["summary"]["total"] == len(TABLES)
    assert document["run_summary"]["total"] == 1
    runs = {t: e["run_id"] for t, e in document["files"].items()}
    assert runs == {t: (second.run_id if t == "nation" else first.run_id) for t in TABLES}
    from aims_nb_utils.reports import build_monitoring_report

    report = build_monitoring_report(settings)
    assert report.overall["tables"] == len(TABLES)
    said = [n for n in report.notes if n.startswith("validated in this run")]
    assert said == [
        f"validated in this run ({second.run_id}): 1 of {len(TABLES)} tables (nation); "
        f"{len(TABLES) - 1} keep their verdict from an earlier run: "
        + ", ".join(sorted(set(TABLES) - {"nation"}))
    ]
    (home / "data" / "bronze" / "region.parquet").unlink()  # a table that left the lake
    settings.paths.rule_file("region").unlink()
    validate_tables(settings, tables=["nation"])
    document = json.loads((settings.paths.results / RESULTS_FILE).read_text())
    assert "region" not in document["files"] and document["summary"]["total"] == len(TABLES) - 1


# --- 4. a badly named Bronze file is skipped, not fatal -----------------------------------------


@pytest.mark.parametrize("name", ["aims tracks copy.parquet", "a..b.parquet"])
def test_a_badly_named_bronze_file_is_skipped_with_a_warning(
    home: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: a file named with a space or '..' refused the whole lake (exit 2). Asserts: every
    command runs on the other tables and warns naming the file and a name to use."""
    bronze = home / "data" / "bronze"
    shutil.copy(bronze / "region.parquet", bronze / name)
    for command in (["validate-source"], ["repair", "--dry-run"], ["ingest-all"]):
        code = main([*command, "--home", str(home)])
        err = capsys.readouterr().err
        assert code != 2, (command, err)
        assert f"warning: skipped Bronze file {bronze / name}" in err
        assert "rename it to letters, digits and underscores" in err
    assert _state_rows(home).keys() == set(TABLES)  # ingest-all loaded every other table
    with pytest.warns(BronzeNameWarning, match="e.g. "):  # library callers get the warning too
        assert list_bronze_tables(bronze) == sorted(TABLES)


# --- 5. one table, one unit ---------------------------------------------------------------------

POINTS = [
    ("publish.before_commit@customer", "old"),
    ("publish.committed@customer", "new"),
    ("publish.installed@customer.silver", "new"),
    ("publish.recorded@customer", "new"),
]


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
@pytest.mark.parametrize("point,sees", POINTS, ids=[p for p, _ in POINTS])
def test_a_kill_while_publishing_shows_one_version_and_converges(
    tpch: Path, tmp_path: Path, fmt: str, point: str, sees: str
) -> None:
    """Fault: SIGKILL between the publish steps of one table (Silver installed, quarantine not;
    state not recorded). Asserts: readers see Silver and quarantine both old or both new; the
    rerun gives what an uninterrupted run gives, Silver, quarantine and state; nothing lost,
    duplicated or left behind."""
    home = _copy(tpch, tmp_path / "home")
    _ingest(home, storage_format=fmt)
    old = _view(home, "customer", storage_format=fmt)
    _new_drop(home)
    reference = tmp_path / "reference"
    shutil.copytree(home, reference)
    _ingest(reference, storage_format=fmt)
    new = _view(reference, "customer", storage_format=fmt)
    assert new != old  # the drop changes both layers of customer
    assert new["quarantine"].num_rows != old["quarantine"].num_rows

    child = _run_child(home, fmt, f"{point}:kill", tmp_path)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert _view(home, "customer", storage_format=fmt) == (new if sees == "new" else old)

    run = _ingest(home, storage_format=fmt)
    assert run.ok
    assert _view(home, "customer", storage_format=fmt) == new
    assert _state_rows(home) == _state_rows(reference)
    for table in TABLES:
        _accounted(home, table, storage_format=fmt)
    assert _leftovers(home) == []
    history = ingestion.history_rows(_settings(home), limit=50, table="customer")
    if sees == "old":
        assert any(h["error"].startswith("interrupted") for h in history)


def test_a_delta_table_killed_in_its_first_commit_is_neither_listed_nor_fatal(
    home: Path,
) -> None:
    """Fault: a Delta folder with a _delta_log but no commit ("No files in log segment").
    Asserts: not listed, does not exist for readers, and the next run writes it afresh."""
    settings = _settings(home, storage_format="delta")
    folder = storage.table_path(settings, "silver", "customer")
    (folder / "_delta_log").mkdir(parents=True)
    (folder / "_delta_log" / ".tmp_commit.json").write_text("{")
    (folder / "part-00000-orphan.parquet").write_bytes(b"PAR1")
    assert "customer" not in storage.list_tables(settings, "silver")
    assert not storage.table_exists(settings, "silver", "customer")
    assert _ingest(home, storage_format="delta").ok
    _accounted(home, "customer", storage_format="delta")


def test_delta_reloads_are_vacuumed(home: Path) -> None:
    """Fault: Delta tables were never vacuumed (Silver 19 -> 37 MB after one --force reload).
    Asserts: after two forced reloads the data files on disk are those of one version."""
    overrides = {"storage_format": "delta", "delta_retention_hours": 0}
    _ingest(home, **overrides)
    folder = storage.table_path(_settings(home, **overrides), "silver", "orders")
    once = sorted(p.stat().st_size for p in folder.glob("*.parquet"))
    _ingest(home, force=True, **overrides)
    _ingest(home, force=True, **overrides)
    assert len(list(folder.glob("*.parquet"))) == len(once)
    _accounted(home, "orders", **overrides)


# --- 6. errors that are words -------------------------------------------------------------------


def _tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return done.returncode == 0


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_a_full_disk_is_a_sentence_and_the_previous_load_stands(
    tpch: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: the disk fills during a load (a real full filesystem: a small tmpfs). Asserts:
    the message says "no space left" and names the disk (no errno, no sqlite traceback, no Rust
    panic), the previous Silver and quarantine are readable, and after freeing space the rerun
    converges."""
    mount = tmp_path / "disk"
    if not _tmpfs(mount, "12m"):
        pytest.skip("needs root to mount a small tmpfs (the injected variants still run)")
    try:
        home = _copy(tpch, mount / "home")
        _ingest(home, storage_format=fmt)
        old = _view(home, "customer", storage_format=fmt)
        _new_drop(home)
        filler = mount / "filler"
        with open(filler, "wb") as handle:  # fill the disk to the last block
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        code = main(
            ["ingest-all", "--home", str(home), "--force", "--set", f"storage_format={fmt}"]
        )
        out = capsys.readouterr()
        text = out.out + out.err
        assert code in (1, 2)
        assert "no space left on the disk holding" in text, text
        assert "Errno" not in text and "Traceback" not in text and "\x1b[" not in text
        assert "OperationalError" not in text and "panic" not in text.lower()
        assert _view(home, "customer", storage_format=fmt) == old
        filler.unlink()
        assert _ingest(home, storage_format=fmt).ok
        for table in TABLES:
            _accounted(home, table, storage_format=fmt)
        assert _leftovers(home) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def test_an_injected_full_disk_at_each_write_is_named(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: ENOSPC at the Silver write, at the publish and in SQLite. Asserts: the table's
    error says "no space left", previous Silver kept; the state DB error names the file."""
    _ingest(home)
    previous = _view(home, "orders")
    _new_drop(home)
    real = pq.ParquetWriter.write_table

    def full(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    run = _ingest(home)
    assert "no space left on the disk holding" in run.tables["orders"].error
    assert "Errno" not in run.tables["orders"].error
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real)
    assert _view(home, "orders") == previous
    monkeypatch.setenv("AIMS_FAULT_POINT", "atomic_replace@orders.json:enospc")
    run = _ingest(home)
    assert "no space left" in run.tables["orders"].error
    assert _view(home, "orders") == previous
    monkeypatch.delenv("AIMS_FAULT_POINT")

    def sqlite_full(*args, **kwargs):  # noqa: ANN002, ANN003
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(state.sqlite3, "connect", sqlite_full)
    with pytest.raises(DiskFullError, match="aims_state.db"):
        state.load_history(_settings(home).paths.state_db)


def test_a_delta_panic_is_one_clean_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: deltalake panics (Rust, ANSI colours, a BaseException). Asserts: the table's error
    is one line without escape codes, naming the table; Python's own errors still propagate."""
    import deltalake

    class PanicException(BaseException):
        pass

    def panic(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PanicException("\x1b[31mcalled `Result::unwrap()` on an `Err` value\x1b[0m\nat src/")

    monkeypatch.setattr(deltalake, "write_deltalake", panic)
    run = _ingest(home, storage_format="delta")
    error = run.tables["orders"].error
    assert "silver table orders" in error or "quarantine table orders" in error
    assert "Delta write failed: called `Result::unwrap()`" in error
    assert "\x1b[" not in error and "\n" not in error


def test_a_regex_that_does_not_compile_is_an_error_naming_the_rule(home: Path) -> None:
    """Fault: a rule whose regex does not compile made the table FAILED (a verdict on data) and
    ingestion said "unexpected ArrowInvalid: Invalid regular expression". Asserts: the table is
    ERROR, validation and ingestion both name the rule file, the rule and the column, and every
    other table is still validated and loaded."""
    from aims_nb_utils.validation import validate_tables

    settings = _settings(home)
    rules = _rules("nation", KEYS["nation"])
    rules.expectations.append(
        Expectation(
            "expect_column_values_to_match_regex",
            {"column": "n_name", "regex": "^[A-Z"},
            {"severity": "low"},
        )
    )
    save_rule_file(rules, settings.paths.rule_file("nation"))
    run = validate_tables(settings)
    nation = run.tables["nation"]
    assert nation.status == "ERROR"
    for words in ("nation_validation", "expectations[2]", "column n_name", "does not compile"):
        assert words in (nation.error or ""), nation.error
    others = {t: r.status for t, r in run.tables.items() if t != "nation"}
    assert set(others) == set(TABLES) - {"nation"}
    assert set(others.values()) <= {"PASSED", "FAILED"}  # judged on their data, not stopped
    result = _ingest(home)
    loaded = result.tables
    assert "does not compile" in (loaded["nation"].error or "")
    assert "unexpected" not in (loaded["nation"].error or "")
    assert all(loaded[t].error is None for t in TABLES if t != "nation")


def test_repair_on_a_read_only_bronze_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: repair of a damaged file when Bronze is read-only (traceback on _backup). Asserts:
    exit 2, a sentence naming the file and the backup folder; the file untouched."""
    from aims_nb_utils import repair

    path = home / "data" / "bronze" / "orders.parquet"
    pq.write_table(pq.read_table(path), path, row_group_size=1000, compression="none")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = b"\xff" * 4000  # one row group no longer decodes: repairable
    path.write_bytes(bytes(data))
    damaged = path.read_bytes()

    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.EROFS, "Read-only file system", str(path.parent / "_backup"))

    monkeypatch.setattr(repair.shutil, "copy2", read_only)
    code = main(["repair", "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert "table orders" in err and "cannot keep the original in" in err
    assert "Read-only file system" in err and "--dry-run" in err and "Traceback" not in err
    assert path.read_bytes() == damaged


# --- 7. smaller ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-workers", "0"],
        ["--max-workers", "-1"],
        ["--sample-size", "0"],
        ["--sample-size", "-5"],
    ],
)
def test_cli_run_scope_is_checked_like_the_settings(
    home: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: --max-workers 0 / --sample-size -5 bypassed the settings' checks (-5 ended in
    "batch_size must be greater than zero"). Asserts: exit 2 with the setting's message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["validate-dq", "--home", str(home), *argv])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_a_misspelt_aims_variable_is_named() -> None:
    """Fault: AIMS_MAX_WORKER=4 was silently ignored. Asserts: a warning naming it and the
    setting it resembles; known variables raise none."""
    with pytest.warns(SettingsWarning, match="AIMS_MAX_WORKER .*did you mean AIMS_MAX_WORKERS"):
        load_settings(env={"AIMS_MAX_WORKER": "4", "AIMS_HOME": "/tmp"})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SettingsWarning)
        load_settings(env={"AIMS_MAX_WORKERS": "4", "AIMS_BRONZE_DIR": "/tmp/b"})


def test_quarantine_columns_keep_the_bronze_types_whatever_the_run(home: Path) -> None:
    """Fault: an int64 Bronze column changed the type of the table's quarantine column between
    runs (a run with nothing quarantined and one with rows wrote different types). Asserts: the
    quarantine of every table has the Bronze schema plus the quarantine columns, on a run with no
    quarantined row and on a later one with some, for parquet and Delta."""
    from aims_nb_utils.quarantine import quarantine_schema

    bronze = home / "data" / "bronze"
    settings = _settings(home)
    strict = _rules("customer", KEYS["customer"])
    strict.expectations[-1].kwargs["min_value"] = -100000  # first drop: nothing quarantined
    save_rule_file(strict, settings.paths.rule_file("customer"))
    for fmt in ("parquet", "delta"):
        _ingest(home, storage_format=fmt, force=True)
        first = storage.read_table(_settings(home, storage_format=fmt), "quarantine", "customer")
        assert first.num_rows == 0
        expected = quarantine_schema(pq.read_schema(bronze / "customer.parquet"))
        assert first.schema.remove_metadata() == expected.remove_metadata()
    save_rule_file(_rules("customer", KEYS["customer"]), settings.paths.rule_file("customer"))
    for fmt in ("parquet", "delta"):
        _ingest(home, storage_format=fmt, force=True)
        later = storage.read_table(_settings(home, storage_format=fmt), "quarantine", "customer")
        assert later.num_rows > 0
        assert later.schema.remove_metadata() == expected.remove_metadata()
        assert later.schema.field(KEYS["customer"]).type == pa.int64()


def test_temp_files_of_dead_writers_are_cleaned_and_live_ones_kept(home: Path) -> None:
    """Fault: a profile killed while writing a rule file left a `.tmp-` file forever. Asserts:
    the next run removes it (its writer is dead) but not a temp file whose writer is alive."""
    rules = _settings(home).paths.rules
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = rules / temp_prefix("orders_validation.yml").replace(
        f"-{os.getpid()}-", f"-{dead_pid}-"
    )
    stale = stale.with_name(stale.name + "abc")
    live = rules / (temp_prefix("nation_validation.yml") + "xyz")
    stale.write_text("x")
    live.write_text("x")
    _ingest(home)
    assert not stale.exists() and live.exists()
