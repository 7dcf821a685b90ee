"""Run a sweep's independent tasks on an existing engine: this process, Ray, or submitit.

Every task computes into the same content-addressed cache (`TRANSFERLAB_CACHE`, which must
be a path all workers see), so a finished task is never rerun and a killed sweep resumes
where it stopped. Tasks that share a pretraining run wait for each other on a file lock in
the cache (zoo.pretrain) instead of training it twice.

- `local`: one task after the other in this process.
- `ray`: `ray.init(address)`; no address starts a local Ray instance with `workers` CPUs,
  a `ray://` or `host:port` address joins a running cluster.
- `submitit`: one job per task through `submitit.AutoExecutor` (Slurm when `sbatch` is
  available, else local subprocesses); `slurm` options go to `update_parameters`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .cache import cache_root
from .config import ParameterError

BACKENDS = ("local", "ray", "submitit")
# Passed on to every worker, so a remote task reads and writes the same cache, quietly, and trains
# with the arithmetic the driver asked for (torch.compile, the CPU's fast path).
FORWARDED_ENV = ("TRANSFERLAB_CACHE", "OMP_NUM_THREADS", "TQDM_DISABLE", "TRANSFERLAB_COMPILE", "TRANSFERLAB_CPU_FAST")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ParameterError(f"The 'backend' parameter must be one of {list(BACKENDS)}. Got {backend!r} instead.")
    return backend


def worker_env() -> dict[str, str]:
    """Environment of remote workers: the cache path (always) and the settings above, where set."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env["TRANSFERLAB_CACHE"] = str(cache_root())
    return env


def map_tasks(fn: Callable[..., Any], tasks: list[tuple], backend: str = "local", *, address: str | None = None,
              workers: int | None = None, log_dir: Path | None = None, slurm: dict[str, Any] | None = None,
              progress: bool = True) -> list[Any]:
    """[fn(*task) for task in tasks] on `backend`, results in task order."""
    check_backend(backend)
    if backend == "local":
        return [fn(*task) for task in tqdm(tasks, desc="tasks", disable=not progress or None)]
    if backend == "ray":
        return _ray_map(fn, tasks, address, workers, progress)
    return _submitit_map(fn, tasks, log_dir or cache_root() / "submitit", slurm or {}, workers)


def _ray_map(fn, tasks, address, workers, progress) -> list:
    import ray

    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": workers or os.cpu_count(), "include_dashboard": False}
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=False,
                 configure_logging=False, **local)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        futures = [remote.remote(*task) for task in tasks]
        with tqdm(total=len(futures), desc="ray tasks", disable=not progress or None) as bar:
            pending = list(futures)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        return ray.get(futures)
    finally:
        if started:
            ray.shutdown()


def _submitit_map(fn, tasks, log_dir: Path, slurm: dict, workers: int | None) -> list:
    import submitit

    executor = submitit.AutoExecutor(folder=str(log_dir))
    executor.update_parameters(timeout_min=slurm.pop("timeout_min", 240), cpus_per_task=slurm.pop("cpus_per_task", 1),
                               **({"slurm_array_parallelism": workers} if workers else {}), **slurm)
    with executor.batch():
        jobs = [executor.submit(_with_env, worker_env(), fn, *task) for task in tasks]
    return [job.result() for job in jobs]


def _with_env(env: dict[str, str], fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` in a submitit job with the driver's cache settings."""
    os.environ.update(env)
    return fn(*args)
