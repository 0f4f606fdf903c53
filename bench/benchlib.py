"""What every benchmark shares: the memory of the whole process tree, sampled while work runs.

PSS is summed rather than RSS so that pages forked workers share with their parent count once;
that is the figure the 4 GiB targets are about.
"""

from __future__ import annotations

import threading

import psutil  # installed with ipykernel (a dependency of the package)

GIB = 2**30


def tree_memory(root: psutil.Process) -> int:
    """Bytes used by ``root`` and all its descendants (PSS where the OS reports it, else RSS)."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakMemory:
    """Peak memory of a process tree (default: this process), sampled in a background thread."""

    def __init__(self, root: psutil.Process | None = None, interval: float = 0.05) -> None:
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
