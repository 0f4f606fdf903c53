"""What every benchmark shares: the memory of the whole process tree, sampled while work runs.

PSS is summed rather than RSS so that pages forked workers share with their parent count once;
that is the figure the 4 GiB targets are about.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil  # installed with ipykernel (a dependency of the package)

GIB = 2**30


def _pss_rollup(pid: int) -> int | None:
    """PSS from Linux's /proc/<pid>/smaps_rollup (one summed record), or None where absent.

    psutil's memory_full_info() parses the full smaps (one record per mapping): 5-30 ms per
    process here, which every 50 ms on two cores took ~2.5 s of wall time from the validation
    being measured. The rollup is the kernel's own sum, a fraction of that."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def tree_memory(root: psutil.Process) -> int:
    """Bytes used by ``root`` and all its descendants (PSS where the OS reports it, else RSS)."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        pss = _pss_rollup(process.pid)
        if pss is not None:
            total += pss
            continue
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakMemory:
    """Peak memory of a process tree (default: this process), sampled in a background thread.

    Every 0.25 s by default: even the rollup walks every page of every process, and at 50 ms the
    sampler cost a validation at scale 1.0 ~2.5 s of its 21 s on two cores (at 0.25 s: 0.2 s).
    Memory here moves by one column at a time, so a coarser sample misses little of the peak."""

    def __init__(self, root: psutil.Process | None = None, interval: float = 0.25) -> None:
        self.interval = interval
        self.root = root or psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        current = tree_memory(self.root)
        self.peak = max(self.peak, current)
        return current

    def reset(self) -> None:
        self.peak = tree_memory(self.root)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def timed(
    label: str, action: Callable[[], Any], width: int = 32, digits: int = 1, indent: str = ""
) -> tuple[Any, float, int]:
    """Run ``action`` and print its wall seconds and the process tree's peak PSS on one line;
    returns (value, seconds, peak bytes)."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        value = action()
        seconds = time.perf_counter() - started
    print(
        f"{indent}{label:<{width}} {seconds:8.{digits}f} s   peak {memory.peak / GIB:5.2f} GiB",
        flush=True,
    )
    return value, seconds, memory.peak
