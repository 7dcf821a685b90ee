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

from . import __version__
from .cache import Ledger, timestamp
from .train import bf16_path, fast_path

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
    """The GPU's name, or the CPU's architecture, instruction set and threads, and whether it ran the
    opt-in fast path in bf16 or fp32 (TRANSFERLAB_CPU_FAST). Each of the last three changes the
    order of fp32 sums, so a CPU result is the same bit for bit only where all three are the same,
    and a mixed cache shows as several devices."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = torch.device("cpu")
    fast = f", {'bf16' if bf16_path(cpu) else 'fp32'} fast path" if fast_path(cpu) else ""
    return (f"cpu ({platform.processor() or platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads{fast})")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:   # this package run from src/ (scripts/gpu_study.sh on a lent GPU)
            found[name] = f"{__version__} (from src/)" if name == "transferlab" else "not installed"
    return found


def provenance(device: str, wall_time_s: float) -> dict:
    return {"commit": git_commit(), "versions": versions(), "device": device_name(device),
            "wall_time_s": round(wall_time_s, 1), "finished": timestamp()}


def compute_origin(device: str) -> dict:
    """What a cached unit computed now records about where it was computed (cache.compute_ledger)."""
    return {"device": device_name(device), "commit": git_commit(), "versions": versions()}


def results_provenance(device: str, ledger: Ledger) -> dict:
    """`provenance` of results read from cached units: device, commit and versions are those the
    units recorded when they were computed, so results computed on a GPU and rendered on a laptop
    name the GPU. A unit with no record (computed before units recorded one) counts as computed
    here; where units differ, each value is listed. The wall time is the units' compute time."""
    here = {**(ledger.origin or compute_origin(device)), "finished": timestamp()}   # the run's own origin
    origins = [ledger.origins.get(path, here) for path in ledger] or [here]

    def distinct(values: list[str]) -> str:
        return " and ".join(sorted(set(values)))

    names = dict.fromkeys(name for o in origins for name in o["versions"])   # in the order recorded
    return {"commit": distinct([o["commit"] for o in origins]),
            "versions": {name: distinct([o["versions"].get(name, "unknown") for o in origins]) for name in names},
            "device": distinct([o["device"] for o in origins]), "wall_time_s": round(sum(ledger.values()), 1),
            "finished": max(o.get("finished", here["finished"]) for o in origins)}


@contextmanager
def stopwatch() -> Iterator[dict]:
    """`with stopwatch() as t: ...` then t['seconds']."""
    timer = {"start": time.perf_counter()}
    yield timer
    timer["seconds"] = time.perf_counter() - timer["start"]
