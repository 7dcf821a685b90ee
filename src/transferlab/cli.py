"""Command line: `python -m transferlab run|sweep|zoo|info|summary` (computes into the same cache as the notebooks)."""
from __future__ import annotations

import argparse
import ast
import importlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from .config import ParameterError, check_profile
from .findings import FINDINGS, check_finding


def _parse_param(text: str) -> tuple[str, object]:
    """'key=value' with value parsed as a Python literal when it is one (5, 0.1, (0.1, 0.3)), else a string."""
    if "=" not in text:
        raise ParameterError(f"Parameters are given as key=value. Got {text!r} instead.")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value
    if parsed is None:   # None means "keep the profile's value" to the configs (papermill's unset parameter)
        raise ParameterError(f"The '{key}' parameter needs a value; leave it out to keep the profile's. "
                             f"Got {text!r} instead.")
    return key, parsed


def _unique(pairs: list[tuple[str, Any]], option: str) -> dict[str, Any]:
    """The pairs as a dict; a key given twice is an error (the later value would silently win)."""
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ParameterError(f"The '{option}' option must give each parameter once. Got {twice[0]!r} "
                             f"{keys.count(twice[0])} times instead.")
    return dict(pairs)


def _finding(name: str):
    return importlib.import_module(FINDINGS[check_finding(name)])


def _user_params(args: argparse.Namespace) -> dict[str, Any]:
    """The -p parameters, after the finding and profile names (checked first: no heavy imports yet)."""
    check_finding(args.finding)
    check_profile(args.profile)
    return _unique([_parse_param(p) for p in args.param], "-p")


def cmd_run(args: argparse.Namespace) -> int:
    params = _user_params(args)
    finding = _finding(args.finding)
    cfg = finding.config(args.profile, **params)
    if args.seed is not None:
        finding.run(cfg, only_seed=args.seed)
        print(f"{args.finding}: seed {args.seed} computed into the cache (the verdicts need every seed: "
              "run it again without --seed)")
        return 0
    results = finding.run(cfg)
    print(results.verdicts.to_string(index=False))
    print(json.dumps(results.provenance, indent=1))
    return 0


# ---------------------------------------------------------------- sweep
def _parse_grid(text: str) -> tuple[str, list]:
    """'key=v1,v2,...' -> (key, [v1, v2, ...]); values are Python literals when they are ((0.1, 0.3),(0.03,))."""
    key, _ = _parse_param(text)
    raw = text.split("=", 1)[1]
    try:
        values = ast.literal_eval(f"[{raw}]")
    except (ValueError, SyntaxError):
        values = [v.strip() for v in raw.split(",")]
    if not key or not values or "" in values:
        raise ParameterError(f"The '--grid' option must be key=v1,v2,... with at least one value. Got {text!r} instead.")
    return key, values


def grid_tasks(base: dict[str, Any], grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every grid point as a full parameter dict (base, then the point), in row-major grid order.

    Pure: a backend (this process, Ray, ...) only needs this list and `run_task`.
    """
    keys = list(grid)
    return [{**base, **dict(zip(keys, point))} for point in itertools.product(*(grid[k] for k in keys))]


def run_task(finding_name: str, profile: str, params: dict[str, Any]):
    """One grid point: its finding's results (computed into, or loaded from, the shared cache)."""
    finding = _finding(finding_name)
    return finding.run(finding.config(profile, **params))


def task_verdicts(finding_name: str, profile: str, params: dict[str, Any]):
    """One grid point's verdict table (what a remote worker sends back)."""
    return run_task(finding_name, profile, params).verdicts


def sweep(finding_name: str, profile: str, tasks: list[dict[str, Any]], grid_keys: list[str],
          progress: bool = True, backend: str = "local", **engine: Any):
    """Run every task (on `backend`, see distributed.map_tasks) and stack their verdict tables,
    one row per grid point x verdict.

    Every task's config is validated before the first one computes: a bad grid value fails at once.
    """
    import pandas as pd

    from .distributed import check_backend, map_tasks

    check_backend(backend)
    finding = _finding(finding_name)
    for params in tasks:
        finding.config(profile, **params)
    results = map_tasks(task_verdicts, [(finding_name, profile, params) for params in tasks], backend,
                        progress=progress, **engine)
    tables = []
    for params, verdicts in zip(tasks, results):
        point = pd.DataFrame([{k: params[k] for k in grid_keys}] * len(verdicts), index=verdicts.index)
        tables.append(pd.concat([point, verdicts], axis=1))
    return pd.concat(tables, ignore_index=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    base = _user_params(args)
    grid = _unique([_parse_grid(g) for g in args.grid], "--grid")
    if not grid:
        raise ParameterError("The '--grid' option must be given at least once (key=v1,v2,...). Got none instead.")
    if both := sorted(set(base) & set(grid)):
        raise ParameterError(f"The '{both[0]}' parameter must be given by '-p' or by '--grid', not both. "
                             f"Got -p {both[0]}={base[both[0]]!r} and --grid {both[0]}={grid[both[0]]!r} instead.")
    if args.workers is not None and args.workers < 1:
        raise ParameterError(f"The '--workers' option must be an int >= 1. Got {args.workers} instead.")
    if args.workers is not None and args.backend == "local":
        raise ParameterError("The '--workers' option needs '--backend ray' or '--backend submitit' (the local "
                             "backend runs one task after another). Got '--backend local' instead.")
    if args.address is not None and args.backend != "ray":
        raise ParameterError(f"The '--address' option needs '--backend ray'. Got '--backend {args.backend}' instead.")
    engine = {"address": args.address, "workers": args.workers} if args.backend == "ray" else \
        {"workers": args.workers} if args.backend == "submitit" else {}
    table = sweep(args.finding, args.profile, grid_tasks(base, grid), list(grid), backend=args.backend, **engine)
    print(table.to_string(index=False))
    return 0


# ---------------------------------------------------------------- zoo, info
def cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import list_runs

    runs = list_runs()
    if not runs:
        print("the zoo is empty")
    for run in runs:
        print("  ".join(f"{k}={v}" for k, v in run.items()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .cache import cache_root
    from .config import online
    from .data.real import data_root
    from .hub import weights_root
    from .provenance import device_name, git_commit, versions

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(json.dumps({"versions": versions(), "commit": git_commit(), "device": device_name(device),
                      "cache": str(cache_root()), "real data": str(data_root()), "hub weights": str(weights_root()),
                      "downloads allowed": online()}, indent=1))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (the full usage is behind --help)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _finding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("finding", help=f"one of {list(FINDINGS)}")
    parser.add_argument("--profile", default="cpu", help="ci | cpu | gpu | paper (default cpu)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. -p seeds=5 -p pretrain.train.epochs=4")


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import write_summary

    check_profile(args.profile)
    if Path(args.output).is_dir():
        raise ParameterError(f"The '--output' option must name a Markdown file, not a folder. Got {args.output!r} "
                             "instead.")
    table = write_summary(args.profile, args.output)
    print(f"{len(table)} claim statistic(s) of {table['chapter'].nunique() if len(table) else 0} chapter(s) "
          f"-> {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="transferlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute a finding's results into the cache and print its verdicts")
    _finding_arguments(run)
    run.add_argument("--seed", type=int, default=None,
                     help="compute only this seed's units into the cache, no verdicts: processes with different "
                          "seeds run side by side, then a run without --seed reads them")
    run.set_defaults(func=cmd_run)
    sweep_parser = sub.add_parser("sweep", help="run a finding at every point of a parameter grid, one table")
    _finding_arguments(sweep_parser)
    sweep_parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                              help="values of one parameter, e.g. --grid ft_epochs=1,2 (repeat for a product)")
    sweep_parser.add_argument("--backend", default="local", choices=["local", "ray", "submitit"],
                              help="local: one task after another here; ray: a Ray instance (local, or "
                                   "--address); submitit: Slurm jobs (local subprocesses without Slurm)")
    sweep_parser.add_argument("--address", default=None, help="Ray cluster address (ray://host:10001 or host:port)")
    sweep_parser.add_argument("--workers", type=int, default=None,
                              help="parallel tasks: CPUs of a local Ray instance, or Slurm array parallelism")
    sweep_parser.set_defaults(func=cmd_sweep)
    zoo = sub.add_parser("zoo", help="the cached pretraining runs")
    zoo.add_argument("action", choices=["list"])
    zoo.set_defaults(func=cmd_zoo)
    sub.add_parser("info", help="versions, device and cache folder").set_defaults(func=cmd_info)
    summary = sub.add_parser("summary", help="the book's verdict table of the chapters executed into book/")
    summary.add_argument("--profile", default="cpu",
                         help="the profile of a chapter whose executed notebook records none (papermill records it)")
    summary.add_argument("--output", default="book/verdict_summary.md", help="Markdown file to write")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as err:  # a user error: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # finished units are cached and training resumes from its last checkpoint
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
