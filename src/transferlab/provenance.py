"""Where a number came from: commit, package versions, device, wall time."""
from __future__ import annotations

import platform
import subprocess
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

import torch

PACKAGES = ("transferlab", "torch", "timm", "numpy", "scikit-learn", "pandas")


def git_commit(where: Path | None = None) -> str:
    """Commit of the checkout `where` (default: the one this package was imported from), with
    '+dirty' for local changes outside book/: the executed notebooks and tables written there are
    a run's outputs, so re-rendering the book does not mark its own provenance dirty."""
    here = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)book/"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(device: str, wall_time_s: float) -> dict:
    return {"commit": git_commit(), "versions": versions(), "device": device_name(device),
            "wall_time_s": round(wall_time_s, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


@contextmanager
def stopwatch() -> Iterator[dict]:
    """`with stopwatch() as t: ...` then t['seconds']."""
    timer = {"start": time.perf_counter()}
    yield timer
    timer["seconds"] = time.perf_counter() - timer["start"]
