"""Where one epoch of our training loop spends its time, for the training benchmark's models.

The GPU training rows miss their targets (Performance page), and the page's reading of why, that
the steps are bound by the host launching kernels rather than by the GPU's arithmetic, came from
operator counts taken on a CPU. This profiles one `transferlab.train.train` epoch per model under
`torch.profiler` and reports what settles it: the share of the wall time the device was running
kernels (`device_busy`), kernel launches per step, and the operators with the most self time
(device time on CUDA, CPU time on a CPU). Profiling adds host overhead, so its wall times are
not benchmark numbers.

    python -m benchmarks.profile_train [--device auto|cpu|cuda] [--quick] [--out DIR]

writes `<out>/<device slug>/profile-train[-compile...][-quick].json` (default out: benchmarks/results;
TRANSFERLAB_COMPILE profiles the compiled loop, as in the training benchmark).
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from transferlab.train import train  # noqa: E402

from .bench_train import Spec, specs, training_inputs  # noqa: E402
from .common import resolve_device, sync  # noqa: E402
from .runner import RESULTS, timed_record, write_record  # noqa: E402

TOP = 15
# Runtime calls that start a kernel or a copy on the GPU: one each per launch.
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaMemcpyAsync",
                "cudaMemsetAsync", "cudaGraphLaunch")


def profile_case(spec: Spec, device: str) -> dict:
    """Profile one epoch of `train` after an unprofiled warm-up epoch (kernels, allocator)."""
    on_cuda = device.startswith("cuda")
    _, model, data, cfg = training_inputs(spec, device)
    model = model.to(device)
    train(copy.deepcopy(model), data, cfg, seed=0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        sync(device)
        start = time.perf_counter()
        train(model, data, cfg, seed=1)
        sync(device)
        wall = time.perf_counter() - start
    steps = spec.images // spec.batch_size
    return {"case": spec.name, "model": vars(spec.model), "batch_size": spec.batch_size, "steps": steps,
            "wall_s": round(wall, 4), **summarise_events(prof.key_averages(), wall, steps, on_cuda)}


def summarise_events(events, wall: float, steps: int, on_cuda: bool) -> dict:
    """Device busy share, launches per step and the top operators by self time, from key_averages().

    On CUDA the time is that of the events the device ran (kernels, copies), not of the operators
    that launched them: an operator's self device time repeats its kernels', so summing both would
    count every kernel twice (torch's own table sums the device events alone, as here), and user
    annotations span others.
    """
    if on_cuda:
        timed = [e for e in events if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False)]
    else:
        timed = list(events)

    def self_us(e) -> float:
        return e.self_device_time_total if on_cuda else e.self_cpu_time_total

    total_us = sum(self_us(e) for e in timed)
    top = sorted(timed, key=self_us, reverse=True)[:TOP]
    summary = {
        "time_basis": "self device time of kernels and copies" if on_cuda else "self CPU time",
        "profiled_s": round(total_us / 1e6, 4),
        "top_ops": [{"op": e.key, "calls": e.count, "ms": round(self_us(e) / 1e3, 3),
                     "share": round(self_us(e) / total_us, 4) if total_us else 0.0} for e in top],
    }
    if on_cuda:
        summary["device_busy"] = round(total_us / 1e6 / wall, 4)
        summary["launches_per_step"] = round(sum(e.count for e in events if e.key in LAUNCH_CALLS) / steps, 1)
    return summary


def render(record: dict) -> list[str]:
    lines = [f"profile of one training epoch on {record['provenance']['device']} ({record['device']})"]
    for c in record["cases"]:
        busy = (f", device busy {c['device_busy']:.0%} of it, {c['launches_per_step']:g} launches per step"
                if "device_busy" in c else "")
        lines.append(f"{c['case']}: {c['steps']} steps of {c['batch_size']} in {c['wall_s']:.3f} s{busy}")
        lines.append(f"  {'op':<56} {'calls':>7} {'ms':>10} {'share':>6}   ({c['time_basis']})")
        lines += [f"  {o['op'][:56]:<56} {o['calls']:>7} {o['ms']:>10.3f} {o['share']:>6.1%}" for o in c["top_ops"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code, not the profile")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"The '--device' parameter must be 'cpu' or 'auto' on a machine without a GPU. Got {args.device!r}.")
    record = timed_record("profile-train", device, args.quick, lambda: {
        "cases": [profile_case(spec, device) for spec in specs(device, args.quick)], "notes": __doc__.strip()})
    path = write_record(record, args.out)
    print("\n".join(render(record)), f"-> {path}", sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
