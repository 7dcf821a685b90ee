"""What ran when in one call of scripts/gpu_study.sh, and how busy the GPU was meanwhile.

The open question of the `gpu` study (Performance page) is whether one GPU keeps up with every
seed of every finding as its own process: one bar per step from its start to its end, above the
GPU's utilisation and memory each second, answers it at a glance.

    python -m benchmarks.study_timeline FOLDER [--out FILE]

reads FOLDER/timings.txt and, where the machine had nvidia-smi, FOLDER/gpu-usage.csv (what
gpu_study.sh returns under $OUT) and writes FILE (default FOLDER/timeline.svg).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from transferlab.findings import FINDINGS  # noqa: E402

from .summarise import save_figure  # noqa: E402

# nvidia-smi's timestamp, which timings.txt's first line repeats for the call's start
CLOCK = "%Y/%m/%d %H:%M:%S.%f"
STEP = re.compile(r"^(?P<name>.+?)\s+(?P<seconds>\d+(?:\.\d+)?) s\s+at\s+(?P<at>\d+(?:\.\d+)?) s\s*(?P<status>.*)$")
TOTALS = ("study (findings)", "total")   # lines that sum the steps rather than run one


@dataclass(frozen=True)
class Step:
    name: str
    start: float     # seconds into the call
    seconds: float
    ok: bool

    @property
    def group(self) -> str:
        """The finding a per-seed process belongs to ('invariance-seed3' -> 'invariance'), else the name."""
        return self.name.split("-seed")[0]


def read_timings(path: Path) -> tuple[datetime | None, list[Step]]:
    """(the call's start on the clock, its steps in the order they ended), without the total lines."""
    started, steps = None, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("# started "):
            started = datetime.strptime(line.removeprefix("# started ").strip(), CLOCK)
        elif (m := STEP.match(line)) and m["name"] not in TOTALS:
            steps.append(Step(m["name"], float(m["at"]), float(m["seconds"]), not m["status"].startswith("FAILED")))
    return started, steps


def read_usage(path: Path, started: datetime) -> pd.DataFrame:
    """nvidia-smi's readings (`timestamp, utilization.gpu, memory.used`) as seconds into the call,
    utilisation in % and memory in GiB; lines that are not readings (an error message) are skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            clock = datetime.strptime(parts[0], CLOCK)
            utilisation, memory = float(parts[1].removesuffix("%")), float(parts[2].removesuffix("MiB")) / 1024
        except (ValueError, IndexError):
            continue
        rows.append(((clock - started).total_seconds(), utilisation, memory))
    return pd.DataFrame(rows, columns=["seconds", "utilisation", "memory_gib"])


def plot(steps: list[Step], usage: pd.DataFrame | None = None):
    """One bar per step (start to end, coloured by finding, hatched where it failed), in the order
    the steps started (those starting together in book order); below, where there are readings,
    the GPU's utilisation and memory."""
    book = {name: rank for rank, name in enumerate(FINDINGS)}
    wave_start: dict[Step, float] = {}   # a wave's processes start within a fraction of a second
    first = -float("inf")
    for step in sorted(steps, key=lambda s: s.start):
        if step.start - first > 1.0:
            first = step.start
        wave_start[step] = first
    order = sorted(steps, key=lambda s: (wave_start[s], book.get(s.group, len(book)), s.name))
    panels = 2 if usage is not None and len(usage) else 1
    fig, axes = plt.subplots(panels, 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(8, 1.2 + 0.22 * len(order) + 1.8 * (panels - 1)),
                             gridspec_kw={"height_ratios": [max(3, 0.22 * len(order))] + [1.8] * (panels - 1)})
    ax = axes[0, 0]
    colours = {g: plt.cm.tab10(i % 10) for i, g in enumerate(dict.fromkeys(s.group for s in order))}
    ys = range(len(order))[::-1]   # the first to start on top
    ax.barh(list(ys), [s.seconds for s in order], left=[s.start for s in order],
            color=[colours[s.group] for s in order], hatch=[None if s.ok else "//" for s in order])
    ax.set_yticks(list(ys), [s.name for s in order], fontsize=7)
    ax.set_title("steps of scripts/gpu_study.sh (hatched: failed)", fontsize=9, loc="left")
    if panels == 2:
        gpu = axes[1, 0]
        gpu.plot(usage["seconds"], usage["utilisation"], color="tab:blue", lw=0.8)
        gpu.set_ylim(0, 105)
        gpu.set_ylabel("GPU busy %", color="tab:blue", fontsize=8)
        memory = gpu.twinx()
        memory.plot(usage["seconds"], usage["memory_gib"], color="tab:orange", lw=0.8)
        memory.set_ylabel("memory GiB", color="tab:orange", fontsize=8)
    axes[-1, 0].set_xlabel("seconds into the call")
    return fig


def write_timeline(folder: Path, out: Path | None = None) -> Path:
    """Draw FOLDER's timings (and GPU readings, where there are) into `out` (default FOLDER/timeline.svg)."""
    folder = Path(folder)
    started, steps = read_timings(folder / "timings.txt")
    if not steps:
        raise ValueError(f"{folder / 'timings.txt'} has no timed steps (written by scripts/gpu_study.sh)")
    readings = folder / "gpu-usage.csv"
    usage = read_usage(readings, started) if started is not None and readings.is_file() else None
    return save_figure(plot(steps, usage), Path(out) if out else folder / "timeline.svg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study_timeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="what scripts/gpu_study.sh returned: timings.txt, gpu-usage.csv")
    parser.add_argument("--out", type=Path, default=None, help="figure file (.svg or .png; default FOLDER/timeline.svg)")
    args = parser.parse_args(argv)
    if not (args.folder / "timings.txt").is_file():
        parser.error(f"The 'folder' argument must hold a timings.txt written by scripts/gpu_study.sh. "
                     f"Got {str(args.folder)!r}, which does not.")
    print(f"wrote {write_timeline(args.folder, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
