"""State and lock on the Fabric lakehouse mount, with Fabric simulated.

OneLake's ``/lakehouse/default`` is a FUSE (blobfuse) mount shared by every session: SQLite's WAL
needs shared memory that such a mount cannot give, and flock() there is emulated by each machine's
kernel, so it excludes nothing across machines. These tests force the Fabric environment
(``AIMS_ENVIRONMENT=fabric`` over a folder standing in for the lakehouse) and check that the state
database keeps a rollback journal there, that the lake lock is a lease which another machine's live
holder blocks and a dead holder's does not, and that the local paths keep WAL and flock.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aims_nb_utils import lake_lock, state
from aims_nb_utils.environment import filesystem_type, on_shared_mount
from aims_nb_utils.lake_lock import LakeLockedError
from aims_nb_utils.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lakehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A simulated Fabric session: the lakehouse root and the variables detection reads."""
    root = tmp_path / "lakehouse" / "default"
    (root / "Files").mkdir(parents=True)
    (root / "Tables").mkdir()
    monkeypatch.setenv("AIMS_ENVIRONMENT", "fabric")
    monkeypatch.setenv("AIMS_LAKEHOUSE_ROOT", str(root))
    monkeypatch.delenv("AIMS_HOME", raising=False)
    monkeypatch.setattr(lake_lock, "SETTLE_SECONDS", 0.2)
    return root


def _fabric_settings(lakehouse: Path):
    settings = load_settings()
    assert settings.environment.is_fabric
    assert settings.paths.state == lakehouse / "Files" / "state"
    return settings


def _other_host_lease(settings, age_seconds: float, host: str = "another-session-vm") -> Path:
    """A lease written by a run on another machine, last renewed ``age_seconds`` ago."""
    path = lake_lock.lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    renewed = time.time() - age_seconds
    body = {
        "pid": 4242,
        "host": host,
        "started_at": "2026-01-01T00:00:00+00:00",
        "purpose": "ingest run elsewhere",
        "token": "f" * 32,
        "heartbeat_at": renewed,
        "lease_seconds": 120.0,
    }
    path.write_text(json.dumps(body))
    os.utime(path, (renewed, renewed))
    return path


# --- where the state lives ----------------------------------------------------------------------


def test_the_mount_table_names_the_filesystem_of_a_path(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 27 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "90 22 0:50 / /lakehouse/default rw,nosuid - fuse.blobfuse2 blobfuse2 rw\n"
        "91 22 0:51 / /mnt/with\\040space rw - nfs4 server:/x rw\n"
    )
    assert filesystem_type("/lakehouse/default/Files/state", mountinfo) == "fuse"
    assert filesystem_type("/mnt/with space/a", mountinfo) == "nfs4"
    assert filesystem_type("/lakehouse", mountinfo) == "ext4"
    assert filesystem_type("/x", tmp_path / "missing") is None


def test_the_simulated_lakehouse_is_a_shared_mount_and_a_local_folder_is_not(
    lakehouse: Path, tmp_path: Path
) -> None:
    assert on_shared_mount(lakehouse / "Files" / "state")
    assert not on_shared_mount(tmp_path / "elsewhere")
    assert not on_shared_mount(lakehouse / "Files", env={})  # local run: the same folder is a disk


def test_the_state_database_keeps_a_rollback_journal_on_the_lakehouse(lakehouse: Path) -> None:
    settings = _fabric_settings(lakehouse)
    db = settings.paths.state / "aims_state.db"
    state.set_watermark(
        db, table_name="t", fingerprint="a", rows=1, run_id="r1", updated_at=state.utc_now()
    )
    with state.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "delete"
    assert not db.with_name(db.name + "-wal").exists()
    assert state.get_watermark(db, "t")["fingerprint"] == "a"


def test_a_wal_database_moved_to_the_lakehouse_is_switched_to_the_rollback_journal(
    lakehouse: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local" / "aims_state.db"
    state.set_watermark(
        local, table_name="t", fingerprint="a", rows=1, run_id="r1", updated_at=state.utc_now()
    )
    with sqlite3.connect(local) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    settings = _fabric_settings(lakehouse)
    db = settings.paths.state / "aims_state.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(local.read_bytes())
    assert state.watermarks(db)[0]["table_name"] == "t"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_local_state_database_keeps_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMS_ENVIRONMENT", "local")
    db = tmp_path / "aims_state.db"
    state.load_history(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- the lock is a lease on the lakehouse -------------------------------------------------------


def test_on_the_lakehouse_the_lock_is_a_lease_released_at_the_end(lakehouse: Path) -> None:
    settings = _fabric_settings(lakehouse)
    with lake_lock.lake_lock(settings, "ingest run r1") as path:
        body = json.loads(path.read_text())
        assert body["pid"] == os.getpid() and body["purpose"] == "ingest run r1"
        assert len(body["token"]) == 32 and body["lease_seconds"] == lake_lock.LEASE_SECONDS
        assert lake_lock.lock_is_held(settings)
        with pytest.raises(LakeLockedError):  # a second run of this process
            with lake_lock.lake_lock(settings, "second"):
                pass
    assert not path.exists()
    assert not lake_lock.lock_is_held(settings)


def test_a_live_run_on_another_machine_blocks_the_lake_although_flock_would_not(
    lakehouse: Path,
) -> None:
    """flock on a FUSE mount is per machine: nothing holds it here, yet the other session's
    renewed lease must refuse this run, naming it and the lease."""
    settings = _fabric_settings(lakehouse)
    path = _other_host_lease(settings, age_seconds=5)
    with pytest.raises(LakeLockedError) as refused:
        with lake_lock.lake_lock(settings, "ingest"):
            pass
    message = str(refused.value)
    assert "pid 4242 on another-session-vm (ingest run elsewhere" in message
    assert "taken over 120 s after its last heartbeat" in message
    assert json.loads(path.read_text())["token"] == "f" * 32  # left as it was
    assert lake_lock.lock_is_held(settings)


def test_a_lease_not_renewed_for_its_duration_is_taken_over(lakehouse: Path) -> None:
    """Fault: the other session died with its machine (no process here to ask)."""
    settings = _fabric_settings(lakehouse)
    _other_host_lease(settings, age_seconds=lake_lock.LEASE_SECONDS + 5)
    assert not lake_lock.lock_is_held(settings)
    with lake_lock.lake_lock(settings, "recovering run") as path:
        body = json.loads(path.read_text())
        assert body["pid"] == os.getpid() and body["token"] != "f" * 32
    assert not path.exists()


@pytest.mark.parametrize("content", ["", '{"pid": 12', "{}"], ids=["empty", "half", "no-token"])
def test_a_lock_file_that_is_no_lease_never_blocks_the_lakehouse(
    lakehouse: Path, content: str
) -> None:
    settings = _fabric_settings(lakehouse)
    path = lake_lock.lock_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with lake_lock.lake_lock(settings, "run"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


HOLDER = textwrap.dedent("""
    import sys, time
    from aims_nb_utils import lake_lock
    from aims_nb_utils.settings import load_settings

    lake_lock.LEASE_SECONDS = float(sys.argv[1])
    lake_lock.HEARTBEAT_SECONDS = float(sys.argv[1]) / 4
    lake_lock.SETTLE_SECONDS = 0.2
    with lake_lock.lake_lock(load_settings(), "holder"):
        print("held", flush=True)
        time.sleep(600)
    """)


def _start_holder(lease_seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lease_seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_holder_killed_on_this_machine_frees_the_lake_at_once(lakehouse: Path) -> None:
    settings = _fabric_settings(lakehouse)
    holder = _start_holder(lease_seconds=60)
    try:
        with pytest.raises(LakeLockedError, match=f"pid {holder.pid} "):
            with lake_lock.lake_lock(settings, "second"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert lake_lock.lock_path(settings).exists()  # the dead holder could not remove it
    with lake_lock.lake_lock(settings, "after the kill") as path:
        assert json.loads(path.read_text())["purpose"] == "after the kill"


def test_a_live_holder_keeps_its_lease_past_its_duration_by_renewing_it(lakehouse: Path) -> None:
    settings = _fabric_settings(lakehouse)
    holder = _start_holder(lease_seconds=1.2)
    try:
        first = json.loads(lake_lock.lock_path(settings).read_text())["heartbeat_at"]
        time.sleep(2.5)  # two lease durations
        renewed = json.loads(lake_lock.lock_path(settings).read_text())["heartbeat_at"]
        assert renewed > first
        # as seen from another machine: the pid cannot be checked, the heartbeat is fresh
        body = json.loads(lake_lock.lock_path(settings).read_text())
        assert lake_lock._lease_alive(lake_lock.lock_path(settings), {**body, "host": "vm-2"})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    time.sleep(1.5)  # the killed holder's lease runs out for everyone
    body = json.loads(lake_lock.lock_path(settings).read_text())
    assert not lake_lock._lease_alive(lake_lock.lock_path(settings), {**body, "host": "vm-2"})


def test_a_holder_whose_lease_was_taken_over_knows_it_lost_the_lake(
    lakehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that stalled past its lease (another session took it) must not go on publishing:
    its next heartbeat finds another token and lock_is_held turns false for it."""
    monkeypatch.setattr(lake_lock, "HEARTBEAT_SECONDS", 0.2)
    settings = _fabric_settings(lakehouse)
    with lake_lock.lake_lock(settings, "stalled run") as path:
        assert lake_lock.lock_is_held(settings)
        _other_host_lease(settings, age_seconds=0)
        deadline = time.time() + 10
        while lake_lock.lock_is_held(settings) and time.time() < deadline:
            time.sleep(0.1)
        assert not lake_lock.lock_is_held(settings)
    assert json.loads(path.read_text())["host"] == "another-session-vm"  # its lease is left alone


STARTER = textwrap.dedent("""
    import sys, time
    from aims_nb_utils import lake_lock
    from aims_nb_utils.settings import load_settings

    lake_lock.SETTLE_SECONDS = 0.3
    settings = load_settings()
    while time.time() < float(sys.argv[1]):
        pass
    try:
        with lake_lock.lake_lock(settings, "starter"):
            print("won", flush=True)
            time.sleep(1.0)
    except lake_lock.LakeLockedError:
        print("refused", flush=True)
    """)


def test_exactly_one_of_simultaneous_starters_on_the_lakehouse_wins(lakehouse: Path) -> None:
    """Starters of one machine (runMultiple children share one) over a dead holder's lease."""
    settings = _fabric_settings(lakehouse)
    for _round in range(2):
        _other_host_lease(settings, age_seconds=lake_lock.LEASE_SECONDS + 1)
        start = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(start)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=os.environ.copy(),
            )
            for _ in range(4)
        ]
        outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sorted(outcomes) == ["refused"] * 3 + ["won"], outcomes
