"""scripts/gpu_study.sh, the one command a lent GPU machine runs, on the ci profile as on a lent
machine ($OUT set, a fresh cache): it times every finding, returns their results without the
weights, and those results render on another machine without training anything again."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from transferlab.findings import FINDINGS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a top-level folder, not part of the package

from benchmarks.study_timeline import read_timings, read_usage, write_timeline  # noqa: E402

pytestmark = pytest.mark.slow  # the whole ci study, once: about 1.5 min on 2 cores


def _env(cache: Path, **extra: str) -> dict:
    return {**os.environ, "TRANSFERLAB_CACHE": str(cache), "PYTHON": sys.executable, "TQDM_DISABLE": "1", **extra}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:   # the process ended meanwhile
        return b""


def test_gpu_study_returns_results_that_render_elsewhere_without_retraining(tmp_path):
    out, bin_dir = tmp_path / "out", tmp_path / "bin"
    out.mkdir()
    bin_dir.mkdir()
    # A stand-in for the GPU machine's nvidia-smi: one reading a second until the script stops it.
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\nwhile true; do echo "$(date +"%Y/%m/%d %H:%M:%S.%3N"), 37 %, '
                                        '1234 MiB"; sleep 1; done\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    proc = subprocess.run(["bash", "scripts/gpu_study.sh", "ci"], cwd=ROOT, capture_output=True, text=True,
                          env=_env(tmp_path / "device-cache", OUT=str(out), PATH=f"{bin_dir}:{os.environ['PATH']}"),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    usage = (out / "gpu-usage.csv").read_text().splitlines()
    assert len(usage) >= 10 and {line[23:] for line in usage} == {", 37 %, 1234 MiB"}, "a reading every second"
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(bin_dir).encode() in _read(p)], "monitor stopped"

    started, steps = read_timings(out / "timings.txt")
    timed = {step.name for step in steps}
    assert {"info", "benchmarks", *FINDINGS} <= timed and all(step.ok for step in steps)
    assert {f"{name}-seed{seed}" for name in FINDINGS for seed in (0, 1)} <= timed   # each ci seed its own process
    seeds_end = max(s.start + s.seconds for s in steps if "-seed" in s.name)
    assert all(s.start >= seeds_end - 0.2 for s in steps if s.name in FINDINGS), "each finding's run after its seeds"
    # the readings on the steps' time axis: from when the findings start to when they end
    readings = read_usage(out / "gpu-usage.csv", started)
    assert len(readings) == len(usage) and (readings["utilisation"] == 37).all()
    assert seeds_end - 2 < readings["seconds"].max() and readings["seconds"].min() >= min(s.start for s in steps)
    assert write_timeline(out, tmp_path / "timeline.png").stat().st_size > 10_000
    assert not (out / "logs").exists() and (out / "logs.tgz").is_file(), "logs come back as one file"
    # after the study, the training loop's profile (on ci not the compiled benchmarks: minutes on a CPU)
    assert "profile-train" in timed and not [name for name in timed if name.startswith("train-compile")]
    with tarfile.open(out / "benchmarks-compile.tgz") as tar:
        assert any(name.endswith("/profile-train-quick.json") for name in tar.getnames())

    # A second call on the same machine (after one stopped at the device's time limit) resumes: the
    # benchmarks and the measurements after the study are not repeated, the findings load their units.
    again = subprocess.run(["bash", "scripts/gpu_study.sh", "ci"], cwd=ROOT, capture_output=True, text=True,
                           env=_env(tmp_path / "device-cache", OUT=str(out), PATH=f"{bin_dir}:{os.environ['PATH']}"),
                           timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "benchmarks: measured and returned by an earlier call" in again.stdout
    assert "profile-train: finished by an earlier call on this machine" in again.stdout
    assert {"benchmarks", "profile-train"}.isdisjoint(step.name for step in read_timings(out / "timings.txt")[1])

    returned = tmp_path / "returned-cache"
    returned.mkdir()
    for part in sorted(out.glob("results.tgz.part*")):
        assert part.stat().st_size <= 15 * 2**20
    archive = b"".join(part.read_bytes() for part in sorted(out.glob("results.tgz.part*")))
    (tmp_path / "results.tgz").write_bytes(archive)
    with tarfile.open(tmp_path / "results.tgz") as tar:
        names = tar.getnames()
        tar.extractall(returned, filter="data")
    assert names and not [n for n in names if n.endswith((".safetensors", ".pt", ".tmp"))], "no weights, no temp files"

    # Rendering needs only what came back: the cross-findings chapter reads the units of every other
    # finding; computing any of them again would write weights into the returned cache.
    proc = subprocess.run([sys.executable, "-m", "transferlab", "run", "cross", "--profile", "ci"], cwd=ROOT,
                          capture_output=True, text=True, env=_env(returned), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(returned.rglob("*.safetensors")), "a returned result was computed again"


@pytest.mark.parametrize("args, named", [(["ci", "nope"], "The 'finding' parameter must be one of"),
                                         (["gpuu"], "The 'profile' parameter must be one of"),
                                         (["ci", "--fast"], "the only option is --skip-benchmarks")])
def test_gpu_study_refuses_a_bad_name_before_running_anything(tmp_path, args, named):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["bash", "scripts/gpu_study.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env=_env(tmp_path / "cache", OUT=str(out)), timeout=120)
    assert proc.returncode == 2 and named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(out.iterdir()) and not (tmp_path / "cache").exists()


def test_gpu_study_runs_only_the_findings_named(tmp_path):
    """A device session that could not finish the study is followed by one that runs the rest."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["bash", "scripts/gpu_study.sh", "ci", "--skip-benchmarks", "lpft_ood"], cwd=ROOT,
                          capture_output=True, text=True, env=_env(tmp_path / "cache", OUT=str(out)), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = (out / "timings.txt").read_text().splitlines()
    timed = [line.split()[0] for line in lines[1:]]
    assert lines[0].startswith("# started ") and timed[0] == "info"
    assert timed[-3:] == ["lpft_ood", "study", "total"]   # its seeds side by side first
    assert sorted(timed[1:-3]) == ["lpft_ood-seed0", "lpft_ood-seed1"]
    assert not (out / "benchmarks.tgz").exists() and "benchmarks: skipped" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "cache" / "findings").iterdir()) == ["lpft_ood"]
