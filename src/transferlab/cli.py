"""Command line: `python -m transferlab run|zoo|info` (computes into the same cache as the notebooks)."""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys

from .config import ParameterError

FINDINGS = {"invariance": "transferlab.findings.invariance", "fe_vs_ft": "transferlab.findings.fe_vs_ft",
            "feature_reuse": "transferlab.findings.feature_reuse",
            "lpft_ood": "transferlab.findings.lpft_ood"}


def _parse_param(text: str) -> tuple[str, object]:
    """'key=value' with value parsed as a Python literal when it is one (5, 0.1, (0.1, 0.3)), else a string."""
    if "=" not in text:
        raise ParameterError(f"Parameters are given as key=value. Got {text!r} instead.")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def cmd_run(args: argparse.Namespace) -> int:
    if args.finding not in FINDINGS:
        raise ParameterError(f"The 'finding' parameter must be one of {list(FINDINGS)}. Got {args.finding!r} instead.")
    finding = importlib.import_module(FINDINGS[args.finding])
    cfg = finding.config(args.profile, **dict(_parse_param(p) for p in args.param))
    results = finding.run(cfg)
    print(results.verdicts.to_string(index=False))
    print(json.dumps(results.provenance, indent=1))
    return 0


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
    from .provenance import device_name, git_commit, versions

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(json.dumps({"versions": versions(), "commit": git_commit(), "device": device_name(device),
                      "cache": str(cache_root())}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute a finding's results into the cache and print its verdicts")
    run.add_argument("finding", help=f"one of {list(FINDINGS)}")
    run.add_argument("--profile", default="cpu", help="ci | cpu | gpu (default cpu)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter, e.g. -p seeds=5 -p pretrain.train.epochs=4")
    run.set_defaults(func=cmd_run)
    zoo = sub.add_parser("zoo", help="the cached pretraining runs")
    zoo.add_argument("action", choices=["list"])
    zoo.set_defaults(func=cmd_zoo)
    sub.add_parser("info", help="versions, device and cache folder").set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as err:  # a user error: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
