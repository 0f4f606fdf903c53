"""Where are we running: a Microsoft Fabric notebook or a local machine?

Everything else asks this module for two roots only: the *Files* root (Bronze, quarantine, state,
config, outputs) and the *Tables* root (managed Delta tables in Fabric). Local runs put both under
``$AIMS_HOME/data`` so that the same relative layout works in both places.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvironmentDetectionError

FABRIC = "fabric"
LOCAL = "local"
DEFAULT_LAKEHOUSE_ROOT = Path("/lakehouse/default")


@dataclass(frozen=True)
class RuntimeEnvironment:
    """The resolved runtime and its storage roots."""

    name: str
    home: Path
    files_root: Path
    tables_root: Path

    @property
    def is_fabric(self) -> bool:
        return self.name == FABRIC

    @property
    def label(self) -> str:
        return "Fabric" if self.is_fabric else "Local"


def repository_root() -> Path:
    """The checkout this package lives in (the default AIMS_HOME for local runs)."""
    return Path(__file__).resolve().parent.parent


def _lakehouse_root(env: Mapping[str, str]) -> Path:
    # AIMS_LAKEHOUSE_ROOT exists for tests and for Fabric setups that mount elsewhere.
    return Path(env.get("AIMS_LAKEHOUSE_ROOT", str(DEFAULT_LAKEHOUSE_ROOT)))


def fabric_available(env: Mapping[str, str] | None = None) -> bool:
    """True when notebookutils imports and a default lakehouse is mounted."""
    env = os.environ if env is None else env
    if importlib.util.find_spec("notebookutils") is None:
        return False
    return _lakehouse_root(env).is_dir()


def detect_environment(env: Mapping[str, str] | None = None) -> RuntimeEnvironment:
    """Resolve the runtime; ``AIMS_ENVIRONMENT=local|fabric`` overrides detection."""
    env = os.environ if env is None else env
    forced = env.get("AIMS_ENVIRONMENT", "").strip().lower()
    if forced and forced not in (FABRIC, LOCAL):
        raise EnvironmentDetectionError(
            f"AIMS_ENVIRONMENT={forced!r} is not a known environment",
            hint="set AIMS_ENVIRONMENT to 'local' or 'fabric', or unset it to auto-detect",
        )
    name = forced or (FABRIC if fabric_available(env) else LOCAL)
    if name == FABRIC:
        lakehouse = _lakehouse_root(env)
        if not lakehouse.is_dir():
            raise EnvironmentDetectionError(
                f"Fabric was requested but no default lakehouse is mounted at {lakehouse}",
                hint="attach a default lakehouse to the notebook, or set AIMS_ENVIRONMENT=local",
            )
        files_root = lakehouse / "Files"
        home = Path(env["AIMS_HOME"]) if env.get("AIMS_HOME") else files_root
        return RuntimeEnvironment(FABRIC, home, files_root, lakehouse / "Tables")
    home = Path(env.get("AIMS_HOME") or repository_root()).expanduser().resolve()
    data = home / "data"
    return RuntimeEnvironment(LOCAL, home, data, data)


# --- shared (network / FUSE) mounts ---------------------------------------------------------------

# Filesystems on which SQLite's WAL mode "does not work" (it needs shared memory between the
# processes using the database) and on which flock() is at best local to one machine: the kernel
# emulates it for a FUSE filesystem that does not implement locks, and NFS/SMB forward it or not
# depending on the mount options. OneLake's /lakehouse/default is a blobfuse (FUSE) mount.
SHARED_FILESYSTEMS = frozenset(
    {
        "fuse",
        "fuseblk",
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "sshfs",
        "virtiofs",
    }
)
MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape_mount_path(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo octal
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def filesystem_type(path: str | Path, mountinfo: Path = MOUNTINFO) -> str | None:
    """The type of the filesystem holding ``path`` (``fuse`` for ``fuse.blobfuse2``), from the
    longest mount point containing it; None where the mount table cannot be read (not Linux)."""
    target = Path(path).resolve()  # symlinks of the existing part resolved; the rest may be new
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split(" ")
        try:
            mount_point = Path(_unescape_mount_path(fields[4]))
            fs_type = fields[fields.index("-") + 1]
        except (IndexError, ValueError):
            continue
        if target == mount_point or mount_point in target.parents:
            depth = len(mount_point.parts)
            if best is None or depth >= best[0]:
                best = (depth, fs_type)
    return best[1].split(".")[0] if best else None


def on_shared_mount(path: str | Path, env: Mapping[str, str] | None = None) -> bool:
    """True when ``path`` lives on a mount that other machines share or that emulates a local
    disk: the Fabric lakehouse (whatever the kernel reports, so that a simulated Fabric behaves the
    same) or a network/FUSE filesystem. The state database then avoids WAL and the lake lock uses
    a lease instead of flock (see :mod:`aims_nb_utils.lake_lock`)."""
    env = os.environ if env is None else env
    target = Path(path).absolute()
    try:
        runtime = detect_environment(env)
    except EnvironmentDetectionError:
        runtime = None
    if runtime is not None and runtime.is_fabric:
        lakehouse = _lakehouse_root(env).absolute()
        if target == lakehouse or lakehouse in target.parents:
            return True
    return filesystem_type(target) in SHARED_FILESYSTEMS
