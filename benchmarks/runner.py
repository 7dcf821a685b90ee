"""Run every `benchmarks/bench_<name>.py` and write one JSON per benchmark with provenance.

A benchmark module has `run(quick: bool, device: str) -> dict` returning
{"cases": [common.case(...), ...], "notes": str}; the runner adds the name, the device and
the provenance, checks the schema and writes `<out>/<device slug>/<name>[-compile][-quick].json`
(-compile: TRANSFERLAB_COMPILE=1; -compile-reduce-overhead: TRANSFERLAB_COMPILE=reduce-overhead).
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported by the library

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

from transferlab.cache import write_json  # noqa: E402
from transferlab.config import ParameterError  # noqa: E402
from transferlab.train import check_environment  # noqa: E402

from .common import device_slug, provenance_record, resolve_device  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCHEMA = 1
MEASURE_KEYS = {"seconds", "seconds_all", "peak_mem_mb", "mem_method", "images_per_s", "tflops", "mfu"}
CASE_KEYS = {"case", "what", "ours", "baseline", "speedup", "target_speedup", "meets_target"}
PROVENANCE_KEYS = {"commit", "versions", "device", "date", "quick", "loadavg_start", "loadavg_end", "wall_time_s"}


def discover() -> list[str]:
    """Names of the benchmarks: every bench_<name>.py beside this file."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def check_record(record: dict) -> None:
    """Raise ValueError naming the first field a result lacks (the test and the summary rely on these)."""
    for key in ("schema", "name", "device", "cases", "provenance"):
        if key not in record:
            raise ValueError(f"benchmark result lacks {key!r}")
    if missing := PROVENANCE_KEYS - record["provenance"].keys():
        raise ValueError(f"{record['name']}: provenance lacks {sorted(missing)}")
    if not record["cases"]:
        raise ValueError(f"{record['name']}: no cases")
    for c in record["cases"]:
        if missing := CASE_KEYS - c.keys():
            raise ValueError(f"{record['name']}: case lacks {sorted(missing)}")
        for side in ("ours", "baseline"):
            if missing := MEASURE_KEYS - c[side].keys():
                raise ValueError(f"{record['name']}/{c['case']}: {side} lacks {sorted(missing)}")
            if not c[side]["seconds"] > 0:
                raise ValueError(f"{record['name']}/{c['case']}: {side} seconds must be > 0")


def run_benchmark(name: str, quick: bool, device: str, out: Path) -> tuple[dict, Path]:
    """Run one benchmark, print its summary and write its JSON; returns (record, path)."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    record = timed_record(name, device, quick, lambda: module.run(quick=quick, device=device))
    check_record(record)
    path = write_record(record, out)
    for line in summary_lines(record):
        print(line, flush=True)
    return record, path


def timed_record(name: str, device: str, quick: bool, run: Callable[[], dict]) -> dict:
    """What `run()` returns ({"cases": ..., "notes": ...}), with the name, device and provenance
    (commit, versions, load average, the wall time of the call)."""
    load, start = os.getloadavg(), time.perf_counter()
    result = run()
    return {"schema": SCHEMA, "name": name, "device": device, **result,
            "provenance": provenance_record(device, load, time.perf_counter() - start, quick)}


def write_record(record: dict, out: Path) -> Path:
    """Write `record` to <out>/<device slug>/<name>[-compile...][-quick].json; returns the path."""
    provenance = record["provenance"]
    mode = compile_suffix(provenance["compile"]) + ("-quick" if provenance["quick"] else "")
    path = out / device_slug(record["device"]) / f"{record['name']}{mode}.json"
    write_json(path, record)
    return path


def compile_suffix(compile: bool | str) -> str:
    """'' (not compiled), '-compile' (TRANSFERLAB_COMPILE=1; older results say True) or '-compile-<mode>'."""
    if not compile:
        return ""
    return "-compile" if compile in (True, "default") else f"-compile-{compile}"


def summary_lines(record: dict) -> list[str]:
    lines = []
    for c in record["cases"]:
        ours, base = c["ours"], c["baseline"]
        rate = (f"  {ours['images_per_s']:.0f} vs {base['images_per_s']:.0f} img/s"
                if ours["images_per_s"] else "")
        mfu = f"  MFU {ours['mfu']:.1%} vs {base['mfu']:.1%}" if ours["mfu"] is not None else ""
        target = f" (target {c['target_speedup']:g}x)" if c["target_speedup"] else ""
        lines.append(f"{record['name']}/{c['case']}: {c['speedup']:.2f}x{target}  "
                     f"{ours['seconds']:.3f} s vs {base['seconds']:.3f} s{rate}{mfu}  "
                     f"peak mem {ours['peak_mem_mb']:.0f} vs {base['peak_mem_mb']:.0f} MB")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code, not the speed")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {discover()}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"The '--only' parameter must name benchmarks among {discover()}. Got {unknown} instead.")
    try:
        check_environment()
    except ParameterError as err:
        parser.error(str(err))
    device = resolve_device(args.device)
    print(f"benchmarks on {device} (load average {os.getloadavg()[0]:.2f}); quick={args.quick}", flush=True)
    failed = []
    for name in names:
        only_on = getattr(importlib.import_module(f"benchmarks.bench_{name}"), "DEVICES", None)
        if only_on and device.split(":")[0] not in only_on:
            print(f"  {name}: skipped on {device} (it measures {', '.join(only_on)} only)", flush=True)
            continue
        start = time.perf_counter()
        try:
            _, path = run_benchmark(name, args.quick, device, args.out)
        except Exception:   # one broken benchmark must not cost the others (a GPU run is rare here)
            traceback.print_exc()
            failed.append(name)
            print(f"  {name}: FAILED after {time.perf_counter() - start:.1f} s", flush=True)
            continue
        print(f"  {name}: {time.perf_counter() - start:.1f} s -> {path}", flush=True)
    if args.out.resolve() == RESULTS:  # keep the book's Performance table and figure in step with the results
        try:
            from .summarise import write_figure, write_table

            print(f"table: {write_table()}, figure: {write_figure()}")
        except Exception:   # the results are written, and the summary can be redone on any machine
            traceback.print_exc()
            print("table and figure not refreshed: run `python -m benchmarks.summarise`", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
