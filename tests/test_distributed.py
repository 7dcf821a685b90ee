"""Sweeps on a distributed engine: a local Ray instance with 2 workers gives the same table as
the sequential sweep; submitit runs tasks as jobs; a bad backend is a one-line error."""
from __future__ import annotations

import operator
import os
import subprocess
import sys
import time

import pytest

from transferlab.cache import lock_file
from transferlab.config import ParameterError
from transferlab.distributed import check_backend, map_tasks, worker_env

SWEEP = ["-m", "transferlab", "sweep", "invariance", "--profile", "ci", "--grid", "steps=5,10"]


def _sweep(cache, *extra: str) -> tuple[list[str], float]:
    """The sweep's table lines (Ray's own notices dropped) and its wall time."""
    env = {**os.environ, "TRANSFERLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *SWEEP, *extra], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if line.strip()], time.perf_counter() - start


@pytest.mark.slow
def test_ray_sweep_with_two_workers_equals_the_sequential_sweep(tmp_path, capsys):
    sequential, seq_s = _sweep(tmp_path / "sequential")
    parallel, ray_s = _sweep(tmp_path / "ray", "--backend", "ray", "--workers", "2")
    assert parallel == sequential
    assert len(sequential) == 1 + 2 * 7   # header, then every verdict row of both grid points
    # Both grid points share the two ci pretraining runs: the lock made one task train each, once.
    zoo_runs = list((tmp_path / "ray" / "zoo").iterdir())
    assert len(zoo_runs) == 2 and {lock_file(p).name for p in zoo_runs} <= {
        p.name for p in (tmp_path / "ray" / "locks").iterdir()}
    with capsys.disabled():
        print(f"\nsweep of 2 ci tasks: sequential {seq_s:.1f} s, ray with 2 workers {ray_s:.1f} s (startup included)")
    rerun, _ = _sweep(tmp_path / "ray", "--backend", "ray", "--workers", "2")   # all cached: nothing recomputed
    assert rerun == sequential


def test_submitit_runs_each_task_as_a_job(tmp_path):
    assert map_tasks(operator.add, [(1, 2), (3, 4)], "submitit", log_dir=tmp_path, progress=False) == [3, 7]


def test_local_backend_keeps_task_order():
    assert map_tasks(operator.sub, [(5, 1), (1, 5)], "local", progress=False) == [4, -4]


def test_unknown_backend_is_one_line():
    with pytest.raises(ParameterError, match=r"The 'backend' parameter must be one of \['local', 'ray', 'submitit'\]"):
        check_backend("dask")


def test_workers_get_the_cache_and_the_training_arithmetic_the_driver_was_given(monkeypatch, isolated_cache):
    """A remote task must train as the driver was asked to: a TRANSFERLAB_CPU_FAST or
    TRANSFERLAB_COMPILE left behind would run it in fp32, uncompiled, without a word."""
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "1")
    monkeypatch.setenv("TRANSFERLAB_COMPILE", "reduce-overhead")
    env = worker_env()
    assert env["TRANSFERLAB_CACHE"] == str(isolated_cache)
    assert env["TRANSFERLAB_CPU_FAST"] == "1" and env["TRANSFERLAB_COMPILE"] == "reduce-overhead"
    monkeypatch.delenv("TRANSFERLAB_CPU_FAST")
    assert "TRANSFERLAB_CPU_FAST" not in worker_env()
