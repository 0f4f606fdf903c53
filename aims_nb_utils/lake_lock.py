"""One run at a time per lake, no worker outliving its run, and named points to fault-test both.

**The lock** is ``<state>/lake.lock``. Who holds it is decided by the operating system, not by the
file's content: the holder keeps an exclusive ``fcntl.flock`` on the open file for the life of the
run, and the kernel drops that lock when the process ends, however it ends (SIGKILL, out of
memory, a full disk before anything was written). So there is no "stale" lock to judge by pid,
host or age: a lock file nobody holds is free, whether it is empty, half-written, names a dead pid
or a recycled one. ``flock`` is atomic, so of N processes that start at once exactly one wins. The
JSON body (pid, host, start time, purpose) is written after the lock is taken and is only there so
the refusal can name the holder. The file is removed on release; a starter that locked a file
which was unlinked meanwhile (its inode is no longer at the path) retries on the new file, which
closes the unlink/lock race.

**On a shared mount** (the Fabric lakehouse, or any network/FUSE filesystem:
:func:`aims_nb_utils.environment.on_shared_mount`) flock cannot decide: the kernel emulates it on
a FUSE filesystem, so it only excludes processes of the same machine, and create-exclusive is not
atomic between machines either. There the lock is a **lease**: the body carries a random token and
a heartbeat that a thread of the holder renews every ``HEARTBEAT_SECONDS``. A starter takes a lease
that is absent, not a lease (empty, half-written), held by a dead pid of its own machine, or not
renewed for ``LEASE_SECONDS`` (its holder died with its machine or session); it writes its token,
waits ``SETTLE_SECONDS`` for concurrent writers to land, and holds the lock only if its token is
still there. Processes of one machine (runMultiple children share one) are serialised first by an
flock on a file in the local temp folder, which the kernel drops when the holder dies. A holder
whose lease was taken over (it stalled longer than the lease) finds out at its next heartbeat;
its workers then refuse to publish (:func:`check_run_lock`). Where flock is not supported at all,
the lease is used as well.

A second holder is refused in the same process too (unless the caller asks for re-entry).

**Workers** of the process pools (ingestion, validation, profiling) start with
:func:`worker_init`: the kernel sends them SIGKILL when their parent dies (``PR_SET_PDEATHSIG``
on Linux) and a watchdog thread checks the parent twice a second elsewhere, so a killed run
leaves no process behind still holding memory or writing. Before it publishes anything a worker
calls :func:`check_run_lock`, which refuses (nothing published) unless the process that started
it is still alive and still holds the lake lock.

**Fault points**: ``fault_point(name)`` costs one environment lookup. With
``AIMS_FAULT_POINT=<name>[@<detail>][:kill|hang|enospc]`` a process reaching that point writes its
pid to ``AIMS_FAULT_MARKER`` (when set) and kills itself (default), sleeps, or raises ENOSPC. The
fault-matrix tests (tests/test_faults.py) use it to kill a run at a chosen moment.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import on_shared_mount
from .errors import AimsError, RunAbandonedError, os_error_as_aims
from .settings import Settings

try:  # pragma: no cover - Windows has no fcntl; the create-exclusive fallback is used there
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lake.lock"
FAULT_VARIABLE = "AIMS_FAULT_POINT"
FAULT_MARKER_VARIABLE = "AIMS_FAULT_MARKER"
PARENT_POLL_SECONDS = 0.5
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_PR_SET_PDEATHSIG = 1
# The lease (shared mounts): renewed every HEARTBEAT_SECONDS, taken over after LEASE_SECONDS
# without renewal, and a written lease counts after SETTLE_SECONDS (longer than a write takes to
# land on the mount). Module attributes so that tests can shorten them.
LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = 15.0
SETTLE_SECONDS = 2.0


class LakeLockedError(AimsError):
    """Another run holds the lake lock."""

    def __init__(self, path: Path, holder: Mapping[str, Any]) -> None:
        self.path = str(path)
        self.holder = dict(holder)
        if holder.get("pid") is not None:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} "
                f"({holder.get('purpose', 'a run')}, started {holder.get('started_at')})"
            )
        else:
            who = "a run that has not written its name into the lock yet (it is just starting)"
        if holder.get("token"):
            released = (
                f"a holder that dies stops renewing its lease, which is taken over "
                f"{holder.get('lease_seconds', LEASE_SECONDS):g} s after its last heartbeat"
            )
        else:
            released = "the lock is released by the system when that process ends"
        super().__init__(
            f"the lake is locked by {who}",
            hint=f"wait for that run to finish, or stop it; {released}, so there is no need to "
            f"delete {path}",
        )


# --- the lock -----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_path(settings: Settings) -> Path:
    return Path(settings.paths.state) / LOCK_NAME


def read_lock(settings: Settings) -> dict[str, Any] | None:
    """What the lock file says about its holder ({} when empty or unreadable), None if no file.

    Informative only: whether the lake is locked is :func:`lock_is_held`."""
    try:
        text = lock_path(settings).read_text()
    except FileNotFoundError:
        return None
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"pid": None, "host": "?", "purpose": "unreadable lock file"}
    return body if isinstance(body, dict) else {}


@dataclass
class _Held:
    fd: int | None
    pid: int
    depth: int = 1
    lease: _Lease | None = None


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def _try_flock(fd: int, shared: bool = False) -> bool | None:
    """True when locked, False when someone else holds it, None when flock is unsupported."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise
    return True


def _write_body(path: Path, fd: int, me: Mapping[str, Any]) -> None:
    data = json.dumps(dict(me)).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError as exc:
        raise _os_failure(exc, path, "write the lake lock") from None


def _os_failure(exc: OSError, path: Path, doing: str) -> AimsError:
    return os_error_as_aims(exc, path, doing)


def _acquire_flock(path: Path, settings: Settings, me: Mapping[str, Any]) -> int | None:
    """An fd holding the lock, or None when this filesystem has no flock. Raises when held."""
    for _attempt in range(50):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _os_failure(exc, path, "open the lake lock") from None
        try:
            got = _try_flock(fd)
        except OSError:
            os.close(fd)
            raise
        if got is None:
            os.close(fd)
            return None
        if not got:
            os.close(fd)
            raise LakeLockedError(path, read_lock(settings) or {})
        try:  # the file we locked must still be the one at the path (see the module doc)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        try:
            _write_body(path, fd, me)
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            raise
        return fd
    raise LakeLockedError(path, read_lock(settings) or {})  # pragma: no cover - endless churn


def _lease_age(path: Path, body: Mapping[str, Any]) -> float:
    """Seconds since the lease was last renewed, by the youngest of the file's time and the
    heartbeat it states (another machine's clock may run behind ours)."""
    now = time.time()
    try:
        ages = [now - path.stat().st_mtime]
    except FileNotFoundError:
        return float("inf")
    heartbeat = body.get("heartbeat_at")
    if isinstance(heartbeat, (int, float)):
        ages.append(now - heartbeat)
    return max(min(ages), 0.0)


def _lease_alive(path: Path, body: Mapping[str, Any] | None) -> bool:
    """Whether ``body`` is a lease whose holder may still be running."""
    if not body or not body.get("token"):
        return False  # no file, an empty or half-written one: nobody holds it
    pid = body.get("pid")
    if body.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        return False  # its holder died on this machine
    limit = body.get("lease_seconds", LEASE_SECONDS)
    limit = limit if isinstance(limit, (int, float)) else LEASE_SECONDS
    return _lease_age(path, body) < limit


def _write_lease(path: Path, body: Mapping[str, Any], exclusive: bool = False) -> None:
    """Write the whole lease at once: a reader sees the previous one or this one, never half."""
    data = json.dumps(dict(body)).encode()
    if exclusive:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _local_guard(path: Path, settings: Settings) -> int:
    """An flock on a file of the local temp folder: one starter per machine at a time (a FUSE
    mount's flock is local anyway, and a temp folder is a local disk). Raises when held."""
    digest = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:16]
    guard = Path(tempfile.gettempdir()) / f"aims-lake-{digest}.lock"
    try:
        fd = os.open(guard, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise _os_failure(exc, guard, "open the local guard of the lake lock") from None
    got = _try_flock(fd)
    if got is False:
        os.close(fd)
        raise LakeLockedError(path, read_lock(settings) or {})
    return fd  # flock unsupported even here (no fcntl): the lease alone decides


class _Lease:
    """A held lease and the thread renewing it (see the module doc)."""

    def __init__(self, path: Path, body: dict[str, Any], guard_fd: int) -> None:
        self.path = path
        self.body = body
        self.guard_fd = guard_fd
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="aims-lake-lease", daemon=True)
        self._thread.start()

    def _still_ours(self) -> bool:
        try:
            current = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(current, dict) and current.get("token") == self.body["token"]

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                current = json.loads(self.path.read_text())
            except FileNotFoundError:
                current = {}
            except (OSError, ValueError):
                continue  # the mount hiccuped (or a write is landing): try at the next beat
            if not isinstance(current, dict) or current.get("token") != self.body["token"]:
                self.lost = True  # taken over while this process stalled: workers see it
                return
            self.body["heartbeat_at"] = time.time()
            try:
                _write_lease(self.path, self.body)
            except OSError:
                pass  # a missed heartbeat; the lease lasts several of them

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS + 5)
        try:
            if self._still_ours():
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.guard_fd)


def _acquire_lease(path: Path, settings: Settings, me: Mapping[str, Any]) -> _Lease:
    """Take the lease (see the module doc) or raise LakeLockedError naming its holder."""
    guard_fd = _local_guard(path, settings)
    try:
        body = {
            **me,
            "token": secrets.token_hex(16),
            "heartbeat_at": time.time(),
            "lease_seconds": LEASE_SECONDS,
        }
        current = read_lock(settings)
        if _lease_alive(path, current):
            raise LakeLockedError(path, current or {})
        try:
            _write_lease(path, body, exclusive=current is None)
        except FileExistsError:  # another starter created it since we looked
            raise LakeLockedError(path, read_lock(settings) or {}) from None
        except OSError as exc:
            raise _os_failure(exc, path, "write the lake lock") from None
        time.sleep(SETTLE_SECONDS)  # let a concurrent starter's write land, then see who won
        winner = read_lock(settings) or {}
        if winner.get("token") != body["token"]:
            raise LakeLockedError(path, winner)
        return _Lease(path, body, guard_fd)
    except BaseException:
        os.close(guard_fd)
        raise


@contextmanager
def lake_lock(settings: Settings, purpose: str, reentrant: bool = False) -> Iterator[Path]:
    """Hold the lake lock for the duration of the block (see the module doc).

    A second holder is refused, in this process too, unless ``reentrant`` (a step that needs the
    lock and may be called by a run already holding it)."""
    path = lock_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_failure(exc, path.parent, "create the state folder") from None
    key = str(path.resolve())
    with _HELD_GUARD:
        held = _HELD.get(key)
        if reentrant and held is not None and held.pid == os.getpid():
            held.depth += 1
        else:
            held = None
    if held is not None:
        try:
            yield path
        finally:
            held.depth -= 1
        return
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": _utc_now(),
        "purpose": purpose,
    }
    lease: _Lease | None = None
    fd = None if on_shared_mount(path.parent) else _acquire_flock(path, settings, me)
    if fd is None:
        lease = _acquire_lease(path, settings, me)
    with _HELD_GUARD:
        _HELD[key] = held = _Held(fd, os.getpid(), lease=lease)
    try:
        yield path
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        if fd is not None:
            try:  # unlink while still holding it: a starter that locked this inode retries
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    path.unlink()
            except FileNotFoundError:
                pass
            os.close(fd)
        elif lease is not None:
            lease.release()


def lock_is_held(settings: Settings) -> bool:
    """Whether some live process holds the lake lock now (by this process too)."""
    path = lock_path(settings)
    with _HELD_GUARD:
        held = _HELD.get(str(path.resolve()))
        if held is not None and held.pid == os.getpid():  # a forked child inherits the dict
            return held.lease is None or not held.lease.lost
    if on_shared_mount(path.parent):
        return _lease_alive(path, read_lock(settings))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        got = _try_flock(fd, shared=True)
        if got is None:  # no flock here: the lease decides
            return _lease_alive(path, read_lock(settings))
        return not got
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken


def _utc_now() -> str:
    from .state import utc_now

    return utc_now()


# --- workers ------------------------------------------------------------------------------------

_PARENT_PID: int | None = None


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - the watchdog still covers it
        pass


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def worker_init(parent_pid: int) -> None:
    """Initializer of every pool worker: die with the parent (see the module doc)."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def pool_options() -> dict[str, Any]:
    """``initializer``/``initargs`` for a ProcessPoolExecutor whose workers die with this process."""
    return {"initializer": worker_init, "initargs": (os.getpid(),)}


def check_run_lock(settings: Settings, table: str) -> None:
    """Refuse to publish from a worker whose run is gone or no longer holds the lake lock."""
    parent = _PARENT_PID
    if parent is None:  # the run's own process: it holds the lock for the whole block
        return
    holder = read_lock(settings) or {}
    if os.getppid() != parent or not lock_is_held(settings) or holder.get("pid") != parent:
        raise RunAbandonedError(table, parent)


# --- fault points -------------------------------------------------------------------------------


def fault_point(name: str, detail: str = "") -> None:
    """Kill, hang or fail here when ``AIMS_FAULT_POINT`` names this point (tests only)."""
    spec = os.environ.get(FAULT_VARIABLE)
    if not spec:
        return
    _fault(spec, name, detail)


def _fault(spec: str, name: str, detail: str) -> None:
    point, _, action = spec.partition(":")
    point, _, wanted = point.partition("@")
    if point != name or (wanted and wanted not in detail):
        return
    marker = os.environ.get(FAULT_MARKER_VARIABLE)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    action = action or "kill"
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "hang":
        time.sleep(600)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), detail or name)


__all__ = [
    "LOCK_NAME",
    "LakeLockedError",
    "check_run_lock",
    "fault_point",
    "lake_lock",
    "lock_is_held",
    "lock_path",
    "pool_options",
    "read_lock",
    "worker_init",
]
