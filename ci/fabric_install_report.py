"""What installing the wheel changes in a Fabric runtime: packages added, upgraded, downgraded.

A Fabric runtime is modelled by a fresh venv holding, at the runtime's versions, every package of
the runtime that the wheel's dependency tree touches (ci/fabric-*.txt list the runtime's
packages). ``pip install --dry-run --report`` of the wheel into that venv then says what pip
would add or replace, as it would on top of the runtime. Run it after changing dependencies and
copy its table into docs/fabric.md (it needs PyPI and a few minutes; it is not part of CI)::

    python ci/fabric_install_report.py dist/aims_nb_utils-*.whl ci/fabric-runtime-1.3.txt
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_runtime(path: Path) -> dict[str, str]:
    packages = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            packages[normalize(name)] = version
    return packages


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def dry_run(python: Path, wheel: Path, report: Path) -> list[tuple[str, str]]:
    done = pip(python, "install", "--dry-run", "--quiet", "--report", str(report), str(wheel))
    if done.returncode != 0:
        sys.exit(f"pip cannot install {wheel.name} here:\n{done.stderr}")
    entries = json.loads(report.read_text())["install"]
    return [(normalize(e["metadata"]["name"]), e["metadata"]["version"]) for e in entries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("runtime", type=Path, help="a ci/fabric-*.txt list of the runtime")
    args = parser.parse_args(argv)
    runtime = read_runtime(args.runtime)
    own = normalize(args.wheel.name.split("-")[0])
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "venv"
        venv.create(env, with_pip=True)
        python = env / "bin" / "python"
        pip(python, "install", "--quiet", "--upgrade", "pip")
        pinned: dict[str, str] = {}
        unavailable: set[str] = set()
        for _round in range(6):  # the tree under the runtime's versions may reach new packages
            wanted = dry_run(python, args.wheel, Path(tmp) / "report.json")
            missing = [
                n for n, _ in wanted if n in runtime and n not in pinned and n not in unavailable
            ]
            if not missing:
                break
            for name in missing:
                done = pip(python, "install", "--quiet", "--no-deps", f"{name}=={runtime[name]}")
                if done.returncode == 0:
                    pinned[name] = runtime[name]
                else:
                    unavailable.add(name)
        changes = [(n, v) for n, v in wanted if n != own]
    print(f"Installing {args.wheel.name} into {args.runtime.name}:")
    print("| package | runtime | after install |")
    print("|---|---|---|")
    for name, version in sorted(changes):
        before = runtime.get(name)
        if before is None:
            print(f"| {name} | - | {version} (added) |")
        else:
            note = " (runtime version not on PyPI)" if name in unavailable else ""
            print(f"| {name} | {before} | {version} (replaced){note} |")
    kept = sorted(n for n in pinned if n not in dict(changes))
    print(f"\nkept at the runtime's version ({len(kept)}): {', '.join(kept)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
