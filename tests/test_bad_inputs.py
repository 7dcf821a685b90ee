"""Bad input fails fast and clearly (issue 7): every parameter set below is rejected before any
data is loaded or model trained, with one line that names the parameter and what is allowed.

Findings are called as the notebooks call them (`config(profile, **params)`); the CLI runs in
subprocesses, as users run it: nonzero exit, one line on stderr, no traceback, an empty cache.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from transferlab.config import ParameterError

# (finding, profile, parameters, a fragment the message must contain)
CONFIG_CASES = [
    # wrong types
    ("fe_vs_ft", "ci", {"seeds": "3"}, "The 'seeds' parameter must be an int"),
    ("fe_vs_ft", "ci", {"seeds": 2.5}, "The 'seeds' parameter must be an int"),
    ("fe_vs_ft", "ci", {"width": True}, "The 'pretrain.model.width' parameter must be an int"),
    ("fe_vs_ft", "ci", {"ft_lrs": "0.1"}, "The 'ft_lrs' parameter must be a non-empty list of floats"),
    ("fe_vs_ft", "ci", {"pretrain.train.augment": "yes"}, "The 'pretrain.train.augment' parameter must be one of"),
    ("fe_vs_ft", "ci", {"pretrain.train.augment": 1}, "The 'pretrain.train.augment' parameter must be one of"),
    ("lpft_ood", "ci", {"shifts": 3}, "The 'shifts' parameter must be"),
    # out-of-range values
    ("fe_vs_ft", "ci", {"seeds": 0}, "The 'seeds' parameter must be an int in the range [1, 100]"),
    ("fe_vs_ft", "ci", {"pretrain_epochs": -3}, "The 'pretrain.train.epochs' parameter must be an int"),
    ("fe_vs_ft", "ci", {"ft_lrs": (0.1, -1.0)}, "The 'ft_lrs' parameter must be a float in the range (0.0, 10.0]"),
    ("fe_vs_ft", "ci", {"ft_lrs": ()}, "The 'ft_lrs' parameter must be a non-empty list"),
    ("fe_vs_ft", "ci", {"finetune.lr": float("nan")}, "The 'finetune.lr' parameter must be a float"),
    ("fe_vs_ft", "ci", {"spectral_energy": 1.5}, "The 'spectral_energy' parameter must be a float"),
    ("fe_vs_ft", "ci", {"target_train": 5}, "The 'target.train' parameter must be an int in the range [10,"),
    ("fe_vs_ft", "ci", {"pretrain.early_checkpoints": (1.5,)}, "The 'pretrain.early_checkpoints' parameter"),
    # checkpoints inside epoch 1 that would share a step, or be its last (ci zoo: 600 images of 64, 9 steps)
    ("fe_vs_ft", "ci", {"pretrain.early_checkpoints": (0.45, 0.5)},
     "The 'pretrain.early_checkpoints' parameter must put each checkpoint on its own step"),
    ("fe_vs_ft", "ci", {"pretrain.early_checkpoints": (0.98,)}, "which has 9 step(s) here (0.98 of it rounds to step 9)"),
    ("feature_reuse", "ci", {"speed_fractions": (0.25, 0.3)}, "The 'speed_fractions' parameter must put each"),
    ("lpft_ood", "ci", {"severity": 6}, "The 'severity' parameter must be an int in the range [1, 5]"),
    ("lpft_ood", "ci", {"target.name": "sklearn-digits", "target.train": 600, "target.val": 200, "target.test": 900},
     "The 'shifts' parameter 'sklearn-digits' is the ID target's own data set"),
    ("lpft_ood", "ci", {"ood_size": 10_000}, "The 'ood_size' parameter must be at most 'target.test'"),
    ("feature_reuse", "ci", {"eval_images": 100_000}, "The 'eval_images' parameter must be at most"),
    ("feature_reuse", "ci", {"checkpoint_epochs": (100.0,)}, "The 'checkpoint_epochs' parameter must name"),
    ("feature_reuse", "ci", {"speed_epoch": 7.0}, "The 'speed_epoch' parameter must be a recorded point"),
    ("invariance", "ci", {"images": 10_000}, "The 'images' parameter must be at most 'target.test'"),
    ("invariance", "ci", {"seeds": 1}, "The 'seeds' parameter must be an int in the range [2, 100]"),
    # unknown names
    ("fe_vs_ft", "ci", {"sedds": 2}, "Unknown parameter 'sedds'. Did you mean 'seeds'?"),
    ("fe_vs_ft", "ci", {"pretrain.model": "x"}, "Unknown parameter 'pretrain.model'"),
    ("fe_vs_ft", "ci", {"arch": "cnn"}, "The 'pretrain.model.arch' parameter must be one of ['resnet', 'vit']"),
    ("fe_vs_ft", "ci", {"device": "tpu"}, "The 'device' parameter must be one of ['auto', 'cpu', 'cuda']"),
    ("fe_vs_ft", "ci", {"source": "imagenet21k"}, "The 'pretrain.source' parameter must be one of"),
    ("lpft_ood", "ci", {"shifts": ("snow",)}, "The 'shifts' parameter must be one of"),
    ("invariance", "ci", {"representation": "gap"}, "The 'representation' parameter must be one of"),
    # unknown profiles; the paper profile offline, and where it is not defined
    ("fe_vs_ft", "fast", {}, "The 'profile' parameter must be one of ['ci', 'cpu', 'gpu', 'paper']"),
    ("feature_reuse", None, {}, "The 'profile' parameter must be one of"),
    ("lpft_ood", "paper", {}, "The 'profile' parameter 'paper' needs resnet50.tv_in1k weights in"),
    ("fe_vs_ft", "paper", {}, "The 'profile' parameter 'paper' (real data sets and hub weights) is not defined"),
    # architecture constraints
    ("fe_vs_ft", "ci", {"depth": 9}, "The 'model.depth' parameter must be 6n+2"),
    ("feature_reuse", "ci", {"arch": "vit", "width": 30, "pretrain.model.heads": 4},
     "The 'model.width' parameter must be divisible by 'model.heads'"),
    ("invariance", "ci", {"arch": "resnet"}, "The 'pretrain.model.arch' parameter must be 'vit'"),
    # block sizes that do not divide the image
    ("feature_reuse", "ci", {"blocks": (32, 5)}, "The 'blocks' parameter must be a positive divisor of the image"),
    ("feature_reuse", "ci", {"blocks": 64}, "The 'blocks' parameter must be an int in the range [1, 32]"),
    ("feature_reuse", "ci", {"blocks": (16, 8)}, "The 'blocks' parameter must include the whole image (32)"),
    ("feature_reuse", "ci", {"analysis_blocks": (2,)}, "The 'analysis_blocks' parameter must be a subset"),
    # layer indices past the depth
    ("invariance", "ci", {"layers": (0, 9)}, "The 'layers' parameter must hold block indices in [0,"),
    ("invariance", "ci", {"layers": (-1,)}, "The 'layers' parameter must"),
    ("invariance", "ci", {"layers": (1,)}, "The 'layers' parameter must give at least 2 blocks"),
    # more target images than a bundled data set holds
    ("fe_vs_ft", "ci", {"target.train": 70_000},
     "The 'target.train', 'target.val' and 'target.test' parameters must ask for at most 5000 images together"),
    ("lpft_ood", "ci", {"target.name": "sklearn-digits", "target.test": 1_700}, "(the 'sklearn-digits' target has 1797)"),
    # sources that need files or the network (TRANSFERLAB_ONLINE=1) that this machine lacks
    ("fe_vs_ft", "ci", {"source": "timm:resnet18"}, "The 'pretrain.source' parameter 'timm:resnet18' needs timm hub"),
    ("lpft_ood", "cpu", {"source": "timm:vit_small_patch16_224.augreg_in21k"}, "needs timm hub weights"),
    ("fe_vs_ft", "ci", {"target.name": "cifar10"}, "The 'target.name' parameter 'cifar10' needs the CIFAR-10"),
    ("feature_reuse", "ci", {"target.name": "stl10"}, "The 'target.name' parameter 'stl10' needs the STL-10"),
    ("fe_vs_ft", "ci", {"source": "cifar10"}, "The 'pretrain.source' parameter 'cifar10' needs the CIFAR-10"),
    ("lpft_ood", "ci", {"source": "timm:resnet_18"}, "The 'pretrain.source' parameter 'timm:resnet_18' names no timm"),
    ("lpft_ood", "ci", {"target.name": "cifar10", "shifts": ("contrast",)}, "'cifar10' needs the CIFAR-10 files"),
    # a shift of another target's classes
    ("lpft_ood", "ci", {"shifts": ("stl10",)}, "The 'shifts' parameter 'stl10' is a shift of target.name in"),
]


@pytest.fixture(autouse=True)
def no_local_data(tmp_path, monkeypatch):
    """No real data set files, whatever this machine has."""
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "no-data"))


def _case_id(case: tuple) -> str:
    finding, profile, params, _ = case
    return f"{finding}-{profile}-{'-'.join(map(str, params)) or 'noparams'}"


@pytest.mark.parametrize("finding, profile, params, fragment", CONFIG_CASES, ids=map(_case_id, CONFIG_CASES))
def test_finding_config_rejects(finding, profile, params, fragment, isolated_cache):
    module = importlib.import_module(f"transferlab.findings.{finding}")
    with pytest.raises(ParameterError) as err:
        module.config(profile, **params)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir()), "computed before failing"


@pytest.mark.skipif(torch.cuda.is_available(), reason="asking for CUDA is valid where there is a GPU")
def test_cuda_without_a_gpu():
    from transferlab.findings import lpft_ood

    with pytest.raises(ParameterError, match="The 'device' parameter is 'cuda' but no CUDA device"):
        lpft_ood.config("ci", device="cuda")


# (command line arguments, environment overrides, a fragment stderr must contain)
CLI_CASES = [
    (["run", "nope", "--profile", "ci"], {}, "The 'finding' parameter must be one of"),
    (["run", "fe_vs_ft", "--profile", "huge"], {}, "The 'profile' parameter must be one of"),
    (["run", "lpft_ood", "--profile", "paper"], {}, "The 'profile' parameter 'paper' needs resnet50.tv_in1k weights"),
    (["run", "fe_vs_ft", "--profile", "ci", "-p", "seeds"], {}, "Parameters are given as key=value"),
    (["run", "fe_vs_ft", "--profile", "ci", "-p", "seeds=abc"], {}, "The 'seeds' parameter must be an int"),
    (["run", "feature_reuse", "--profile", "ci", "-p", "blocks=(32,3)"], {}, "positive divisor of the image size"),
    (["run", "invariance", "--profile", "ci", "-p", "layers=(12,)"], {}, "The 'layers' parameter must hold"),
    (["run", "lpft_ood", "--profile", "ci", "-p", "source=timm:resnet18"], {}, "needs timm hub weights"),
    (["run", "fe_vs_ft", "--profile", "ci"], {"TRANSFERLAB_CACHE": "/dev/null/cache"},
     "The 'TRANSFERLAB_CACHE' environment variable must name a folder"),
    (["run", "fe_vs_ft", "--profile", "ci", "-p", "target.test=100000"], {},
     "The 'target.train', 'target.val' and 'target.test' parameters must ask for at most 5000 images"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds=2,0"], {}, "The 'seeds' parameter must be an int"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds="], {}, "The '--grid' option must be key=v1,v2"),
    (["sweep", "fe_vs_ft", "--profile", "ci"], {}, "The '--grid' option must be given"),
    # a parameter given twice, or as None (which would silently keep the profile's value)
    (["run", "fe_vs_ft", "--profile", "ci", "-p", "seeds=1", "-p", "seeds=2"], {},
     "The '-p' option must give each parameter once. Got 'seeds' 2 times"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds=1,2", "--grid", "seeds=3"], {},
     "The '--grid' option must give each parameter once"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "-p", "seeds=5", "--grid", "seeds=1"], {},
     "The 'seeds' parameter must be given by '-p' or by '--grid', not both"),
    (["run", "fe_vs_ft", "--profile", "ci", "-p", "seeds=None"], {}, "The 'seeds' parameter needs a value"),
    # engine options the backend cannot use
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds=1", "--backend", "ray", "--workers", "-3"], {},
     "The '--workers' option must be an int >= 1. Got -3"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds=1", "--workers", "2"], {},
     "The '--workers' option needs '--backend ray' or '--backend submitit'"),
    (["sweep", "fe_vs_ft", "--profile", "ci", "--grid", "seeds=1", "--backend", "submitit", "--address", "h:1"], {},
     "The '--address' option needs '--backend ray'"),
    (["summary", "--profile", "bogus"], {}, "The 'profile' parameter must be one of"),
    (["summary", "--output", "/"], {}, "The '--output' option must name a Markdown file, not a folder"),
    (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
    ([], {}, "the following arguments are required: command"),
    (["zoo", "delete"], {}, "invalid choice: 'delete'"),
]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Every CLI case run at once (subprocesses in parallel: each pays the interpreter start-up)."""

    def run(case: tuple) -> tuple[subprocess.CompletedProcess, list]:
        argv, env, _ = case
        cache = tmp_path_factory.mktemp("cache")
        env = {**{k: v for k, v in os.environ.items() if k != "TRANSFERLAB_ONLINE"}, "TRANSFERLAB_CACHE": str(cache),
               "TRANSFERLAB_DATA": str(cache / "no-data"), "TRANSFERLAB_WEIGHTS": str(cache / "no-weights"),
               "OMP_NUM_THREADS": "1", **env}
        proc = subprocess.run([sys.executable, "-m", "transferlab", *argv], capture_output=True, text=True,
                              env=env, timeout=300)
        return proc, list(cache.rglob("*"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(run, CLI_CASES))


@pytest.mark.parametrize("index", range(len(CLI_CASES)), ids=[" ".join(c[0]) or "no-args" for c in CLI_CASES])
def test_cli_rejects(index, cli_results):
    proc, written = cli_results[index]
    fragment = CLI_CASES[index][2]
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("error: ") and fragment in err, err
    assert proc.stdout == "" and written == [], "computed before failing"

