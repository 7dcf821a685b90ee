"""Shared measuring tools of the benchmarks: timing, peak memory, FLOPs and MFU, provenance.

Every benchmark compares our path with a naive baseline *in the same process and run*, so
the ratio is meaningful even on a shared machine; the load average is recorded beside it.
"""
from __future__ import annotations

import os
import re
import resource
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from transferlab.cpu_memory import release_freed_memory
from transferlab.provenance import device_name, git_commit, versions
from transferlab.train import compile_mode

# Dense bf16 tensor-core peak (TFLOP/s) by a substring of the CUDA device name, the first that
# matches (so the PCIe and NVL cards before the SXM ones); MFU is reported only for cards listed here.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H200 NVL": 835.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_slug(device: str) -> str:
    """Folder name of a device's results, e.g. 'cpu-amd-epyc-2-threads' or 'cuda-nvidia-h100-80gb-hbm3'."""
    name = device_name(device)
    kind = "cuda" if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug if slug.startswith(kind) else f"{kind}-{slug}"


def peak_tflops(device: str) -> float | None:
    """The card's dense bf16 peak, or None (CPU, unknown card): then no MFU is reported."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (forward and backward if it does both), by torch's counter."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _vm_hwm_kb() -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


def _reset_cpu_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to clear_refs); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def peak_memory(device: str) -> Iterator[dict]:
    """`with peak_memory(dev) as mem: ...` then mem['mb']: peak memory the block used above its start.

    CUDA: torch.cuda.max_memory_allocated. CPU: peak resident set size (Linux VmHWM, reset
    before the block) minus the RSS at its start; where the reset is impossible, the growth of
    ru_maxrss, which undercounts a block that stays below an earlier peak.
    """
    mem: dict = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        yield mem
        torch.cuda.synchronize()
        mem["mb"] = (torch.cuda.max_memory_allocated() - start) / 2**20
        mem["method"] = "torch.cuda.max_memory_allocated"
        return
    release_freed_memory()   # memory kept from earlier calls would hide this one's use (cpu_memory)
    if _reset_cpu_peak() and _vm_hwm_kb() is not None:
        start = _vm_hwm_kb()
        yield mem
        mem["mb"] = (_vm_hwm_kb() - start) / 1024
        mem["method"] = "peak RSS (VmHWM, reset before the run) minus RSS at its start"
        return
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield mem
    mem["mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
    mem["method"] = "ru_maxrss growth (a lower bound)"


def measure(fn: Callable[[], object], device: str) -> dict:
    """Wall seconds and peak memory of one call of `fn`."""
    with peak_memory(device) as mem:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mem_mb": round(mem["mb"], 1), "mem_method": mem["method"]}


def compare(ours: Callable[[], object], baseline: Callable[[], object], device: str, repeats: int,
            warmup: bool = False) -> tuple[dict, dict]:
    """Alternate baseline and ours `repeats` times; each keeps its median time and largest peak memory.

    Alternating spreads a shared machine's load changes over both sides of the ratio. `warmup` runs
    each side once untimed first, so first-use costs (kernels, allocator, caches) fall on neither.
    """
    if warmup:
        baseline(), ours()
        sync(device)
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    for _ in range(repeats):
        runs["baseline"].append(measure(baseline, device))
        runs["ours"].append(measure(ours, device))
    out = []
    for key in ("ours", "baseline"):
        rs = runs[key]
        out.append({"seconds": statistics.median(r["seconds"] for r in rs),
                    "seconds_all": [round(r["seconds"], 4) for r in rs],
                    "peak_mem_mb": max(r["peak_mem_mb"] for r in rs), "mem_method": rs[0]["mem_method"]})
    return out[0], out[1]


def case(name: str, what: str, ours: dict, baseline: dict, *, items: int | None = None,
         flops: int | None = None, device: str = "cpu", target: float | None = None, **extra) -> dict:
    """One row of a benchmark: both measurements, images/s, MFU (CUDA) and the speed-up; `extra` may
    add `target_mfu` (ours must reach it too) and `acc_agrees` (a result both sides must share)."""
    peak = peak_tflops(device)
    for side in (ours, baseline):
        side["images_per_s"] = round(items / side["seconds"], 1) if items else None
        side["tflops"] = round(flops / side["seconds"] / 1e12, 3) if flops else None
        side["mfu"] = round(side["tflops"] / peak, 4) if flops and peak else None
    ratio = baseline["seconds"] / ours["seconds"]
    row = {"case": name, "what": what, "ours": ours, "baseline": baseline, "speedup": round(ratio, 3),
           "target_speedup": target, "items_per_run": items, "flops_per_run": flops, **extra}
    return row | {"meets_target": None if target is None else assess(row)[0] == "meets"}


def fastest_ratio(c: dict) -> float:
    """The baseline's fastest run over ours: on a shared machine, the runs least slowed by others."""
    return min(c["baseline"]["seconds_all"]) / min(c["ours"]["seconds_all"])


def assess(c: dict) -> tuple[str | None, str]:
    """A case against its targets: ('meets' | 'below' | 'unsettled' | None, why). Settled means the
    fastest runs' ratio agrees with the medians': on a shared machine a target met by the medians
    alone may come from the load, not the code. A required agreement (`acc_agrees`) or MFU
    (`target_mfu`, CUDA) that fails makes the case 'below' whatever its speed."""
    target = c["target_speedup"]
    if target is None:
        return None, ""
    if c.get("acc_agrees") is False:
        return "below", f"accuracy differs by {abs(c['acc_diff_pp']):.2f} pp"
    if c.get("target_mfu") is not None and c["ours"]["mfu"] is not None and c["ours"]["mfu"] < c["target_mfu"]:
        return "below", (f"below {target:g}x and " if c["speedup"] < target else "") + \
            f"MFU {c['ours']['mfu']:.1%} below {c['target_mfu']:.0%}"
    if c["speedup"] < target:
        return "below", f"below {target:g}x"
    agrees = f", test accuracy within 0.5 pp ({c['acc_diff_pp']:+.2f})" if c.get("acc_agrees") else ""
    if (fastest := fastest_ratio(c)) < target:
        return "unsettled", f"meets {target:g}x by medians, fastest runs {fastest:.2f}x{agrees}"
    return "meets", f"meets {target:g}x{agrees}"


def provenance_record(device: str, load_start: tuple[float, float, float], seconds: float, quick: bool) -> dict:
    """Where the numbers came from, including how busy the machine was when they were taken."""
    return {"commit": git_commit(), "versions": versions(), "device": device_name(device),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": quick,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "niceness": os.nice(0), "wall_time_s": round(seconds, 1),
            "compile": compile_mode() or False}
