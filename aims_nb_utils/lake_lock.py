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
closes the unlink/lock race. Where ``flock`` is not supported (some network mounts) the lock falls
back to create-exclusive plus the holder's pid and host, as before.

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
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        super().__init__(
            f"the lake is locked by {who}",
            hint="wait for that run to finish, or stop it; the lock is released by the system "
            f"when that process ends, so there is no need to delete {path}",
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


def _acquire_exclusive(path: Path, settings: Settings, me: Mapping[str, Any]) -> None:
    """Fallback without flock: create-exclusive; a lock whose pid is dead on this host, or that
    stayed empty for a minute, is taken over."""
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(settings) or {}
            pid = holder.get("pid")
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            dead = holder.get("host") == me["host"] and isinstance(pid, int) and not _pid_alive(pid)
            if dead or (pid is None and age > 60):
                path.unlink(missing_ok=True)
                continue
            raise LakeLockedError(path, holder) from None
        try:
            _write_body(path, fd, me)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return
    raise LakeLockedError(path, read_lock(settings) or {})


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
    fd = _acquire_flock(path, settings, me)
    if fd is None:
        _acquire_exclusive(path, settings, me)
    with _HELD_GUARD:
        _HELD[key] = held = _Held(fd, os.getpid())
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
        else:
            current = read_lock(settings)
            if current and current.get("pid") == me["pid"] and current.get("host") == me["host"]:
                path.unlink(missing_ok=True)


def lock_is_held(settings: Settings) -> bool:
    """Whether some live process holds the lake lock now (by this process too)."""
    path = lock_path(settings)
    with _HELD_GUARD:
        held = _HELD.get(str(path.resolve()))
        if held is not None and held.pid == os.getpid():  # a forked child inherits the dict
            return True
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        got = _try_flock(fd, shared=True)
        if got is None:  # no flock here: trust the body
            holder = read_lock(settings) or {}
            pid = holder.get("pid")
            return isinstance(pid, int) and (
                holder.get("host") != socket.gethostname() or _pid_alive(pid)
            )
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
