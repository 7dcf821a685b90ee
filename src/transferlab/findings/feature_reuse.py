"""Finding 03 (Neyshabur, Sedghi, Zhang, NeurIPS 2020): what is being transferred in transfer learning?

P-T (fine-tuned from a pretrained model of the shared zoo) against RI-T (the same architecture
trained from a random initialisation) on MNIST whose images are block-shuffled with one fixed
permutation, for block sizes b from the whole image down to one pixel: final accuracy, the
relative gap and training speed (C1, C2). At the analysis block sizes, pairs of runs are
compared: shared mistakes, per-layer CKA, weight distances, the error barrier on the straight
line between two solutions (C3) and module criticality (C4). Finally, P-T from earlier
pretraining checkpoints: which checkpoint is good enough. Verdicts follow ../shared/CLAIMS.md.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from scipy.stats import spearmanr

from ..cache import atomic_write, cache_root, cached_arrays, cached_json, compute_ledger, read_json
from ..config import (Float, Floats, Int, Ints, ParameterError, PretrainConfig, TargetConfig, TrainConfig,
                      config_hash, param, resolve_config, to_dict)
from ..data.device import DeviceData, standardize, steps_per_epoch
from ..data.shuffle import BlockShuffle, check_block
from ..data.store import load_target
from ..hub import refuse_hub_source
from ..metrics.agreement import independent_jaccard, mistake_jaccard
from ..metrics.cka import MinibatchCKA, gram_matrices
from ..metrics.landscape import criticality_map, error_at, error_along_path, loss_barrier, module_groups
from ..models import create_model
from ..profiles import pretrain_overrides
from ..provenance import compute_origin, results_provenance, stopwatch
from ..selection import best_on_validation
from ..stats import CORRELATION_RANGE, INCONCLUSIVE, mean_ci, verdict_above, verdict_below
from ..stats import verdict_row as _row
from ..train import accuracy, channels_last, early_checkpoint_steps, load_weights, predict, train
from ..zoo import ZooRun, check_pretrain, pretrain
from . import seeds_to_compute

NAME = "feature_reuse"
IMAGE_SIZE = 32


@dataclass(frozen=True)
class FeatureReuseConfig:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    # No augmentation: the block shuffle is the only transform (a translation of a shuffled image
    # is not a shuffled translated image).
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=5, batch_size=64, optimizer="sgd", lr=0.1, weight_decay=5e-4, label_smoothing=0.0,
        warmup_frac=0.1, augment=False))
    # Learning-rate grids: every run takes the lr of its grid that did best on validation data, separately
    # for each init, seed, block size and (P-T) pretraining checkpoint; the second run of a pair analysis
    # takes its first run's. Defaults: a pilot's grids (cpu profile, seed 0, b = 32 and b = 1), where P-T
    # won at 0.1 (0.03 as good at b = 32, worse at b = 1; 0.3 diverged) and RI-T at 0.3, both interior.
    pt_lrs: tuple = param((0.03, 0.1, 0.3), Floats(Float(0.0, 10.0, lo_open=True)))   # P-T fine-tuning
    rit_lrs: tuple = param((0.1, 0.3, 1.0), Floats(Float(0.0, 10.0, lo_open=True)))   # RI-T training
    blocks: tuple = param((32, 16, 8, 4, 2, 1), Ints(Int(1, IMAGE_SIZE)))
    shuffle_seed: int = param(0, Int(0, 2**31 - 1))
    seeds: int = param(3, Int(1, 100))
    # Training speed: validation accuracy at these fractions of epoch 1 and after every epoch;
    # `speed_epoch` is the fixed small budget whose accuracy is compared.
    speed_fractions: tuple = param((0.25, 0.5), Floats(Float(0.0, 1.0, lo_open=True)))
    speed_epoch: float = param(1.0, Float(0.0, 10_000.0, lo_open=True))
    speed_target: float = param(0.8, Float(0.0, 1.0, lo_open=True))
    # Pair analyses (mistakes, CKA, distances, barrier, criticality) at these block sizes.
    analysis_blocks: tuple = param((32, 1), Ints(Int(1, IMAGE_SIZE)))
    eval_images: int = param(1_000, Int(8, 1_000_000))   # test images for CKA, barrier, criticality
    cka_batch: int = param(250, Int(4, 100_000))
    bn_batches: int = param(2, Int(1, 1_000))             # batches of 256 to recompute BN statistics
    interp_points: int = param(25, Int(3, 1_000))
    crit_alphas: tuple = param((0.0, 0.25, 0.5, 0.75, 1.0), Floats(Float(0.0, 1.0)))
    crit_sigma: float = param(0.05, Float(0.0, 10.0))      # noise std relative to each tensor's RMS
    crit_draws: int = param(1, Int(1, 100))
    # Which checkpoint: P-T (unshuffled) from these pretraining epochs, plus the final one.
    checkpoint_epochs: tuple = param((0.5, 1.0, 2.0, 4.0), Floats(Float(0.0, 10_000.0, lo_open=True)))
    device: str = "auto"


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: exercises every code path; verdicts are expected to be inconclusive.
    "ci": {**pretrain_overrides("ci"), "target.train": 128, "target.val": 64, "target.test": 128,
           "finetune.epochs": 2, "finetune.batch_size": 32, "blocks": (32, 1), "seeds": 2, "speed_fractions": (0.5,),
           "pt_lrs": (0.1, 0.3), "rit_lrs": (0.1, 0.3),
           "analysis_blocks": (32,), "eval_images": 64, "cka_batch": 32, "bn_batches": 1, "interp_points": 5,
           "crit_alphas": (0.0, 1.0), "checkpoint_epochs": (1.0,)},
    # 2 CPU cores, about 15 min: 1,000 training images, 3 seeds, 3 epochs per run, 2,000 test images;
    # criticality on a coarse alpha grid.
    "cpu": {**pretrain_overrides("cpu"), "target.train": 1_000, "target.val": 500, "target.test": 2_000,
            "finetune.epochs": 3, "speed_fractions": (0.5,), "seeds": 3, "analysis_blocks": (32, 1),
            "eval_images": 500, "bn_batches": 1, "crit_alphas": (0.0, 0.5, 1.0), "checkpoint_epochs": (1.0, 2.0, 4.0)},
    # One GPU: the zoo's wider, deeper ResNet, pair analyses also at b = 1, finer paths and maps, more
    # test images. Sized for the study's 10-minute budget: 5 seeds, 10 epochs, 51 path points and 11 x 3
    # criticality draws per module were an estimated 9 min for this chapter alone. Its ResNet-20 wants
    # smaller learning rates than the pilot's ResNet-8: in the first gpu run RI-T at 0.3 (then fixed) stayed
    # at 0.27 test accuracy on unshuffled images, and chapter 02 (same zoo, target and schedule) picked 0.03,
    # the bottom of [0.03, 0.1, 0.3], in 45 of 45 runs, from random init too: grids centred on 0.03.
    "gpu": {**pretrain_overrides("gpu"), "target.train": 1_000, "target.val": 500, "target.test": 3_500,
            "finetune.epochs": 5, "seeds": 3, "pt_lrs": (0.01, 0.03, 0.1), "rit_lrs": (0.01, 0.03, 0.1),
            "eval_images": 2_000, "interp_points": 25, "bn_batches": 4,
            "crit_alphas": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "crit_draws": 2,
            "checkpoint_epochs": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)},
}

def config(profile: str = "cpu", **params: Any) -> FeatureReuseConfig:
    """The validated config of a profile with papermill/CLI parameters applied (None = profile value)."""
    cfg = resolve_config(FeatureReuseConfig(), PROFILES, profile, params, finding="finding 03")
    refuse_hub_source(cfg.pretrain.source, "finding 03", "it compares block outputs of the study's own "
                      "architectures and pretraining checkpoints across epochs")
    check_pretrain(cfg.pretrain)
    for b in cfg.blocks:
        check_block(b, IMAGE_SIZE, "blocks")
    if IMAGE_SIZE not in cfg.blocks:
        raise ParameterError(f"The 'blocks' parameter must include the whole image ({IMAGE_SIZE}), the unshuffled "
                             f"reference. Got {cfg.blocks!r} instead.")
    missing = [b for b in cfg.analysis_blocks if b not in cfg.blocks]
    if missing:
        raise ParameterError(f"The 'analysis_blocks' parameter must be a subset of 'blocks' {list(cfg.blocks)}. "
                             f"Got {cfg.analysis_blocks!r} instead.")
    final = float(cfg.pretrain.train.epochs)
    late = [e for e in cfg.checkpoint_epochs if e >= final or (e < 1 and e not in cfg.pretrain.early_checkpoints)
            or (e >= 1 and e != int(e))]
    if late:
        raise ParameterError(f"The 'checkpoint_epochs' parameter must name saved pretraining checkpoints before "
                             f"the final epoch {final:g} (whole epochs, or fractions in "
                             f"{list(cfg.pretrain.early_checkpoints)}). Got {cfg.checkpoint_epochs!r} instead.")
    early_checkpoint_steps(cfg.speed_fractions, steps_per_epoch(cfg.target.train, cfg.finetune.batch_size),
                           "speed_fractions")
    recorded = set(cfg.speed_fractions) | set(range(1, cfg.finetune.epochs + 1))
    if cfg.speed_epoch not in recorded:
        raise ParameterError(f"The 'speed_epoch' parameter must be a recorded point of training "
                             f"{sorted(recorded)}. Got {cfg.speed_epoch!r} instead.")
    if cfg.eval_images > cfg.target.test or cfg.cka_batch > cfg.eval_images:
        raise ParameterError(f"The 'eval_images' parameter must be at most target.test ({cfg.target.test}) and at "
                             f"least cka_batch ({cfg.cka_batch}). Got {cfg.eval_images} instead.")
    blocks = tuple(sorted(cfg.blocks, reverse=True))
    return dataclasses.replace(cfg, blocks=blocks)


# ---------------------------------------------------------------- results
@dataclass
class Results:
    config: dict
    source: pd.DataFrame        # per seed: the pretrained model's final source accuracy
    runs: pd.DataFrame          # one row per fine-tuning run
    curves: pd.DataFrame        # validation accuracy during training, per run and checkpoint
    gaps: pd.DataFrame          # per (seed, block): P-T vs RI-T
    gap_summary: pd.DataFrame   # per block: mean and CI over seeds
    mistakes: pd.DataFrame      # per (block, seed, pair): Jaccard overlap of test mistakes
    cka: pd.DataFrame           # per (block, seed, pair, layer): CKA of the same layer
    cka_maps: dict              # (block, pair) -> layer x layer CKA, mean over seeds
    distances: pd.DataFrame     # per (block, seed, pair): l2 distance of the weights (without the head)
    paths: pd.DataFrame         # per (block, seed, pair, lambda): error on the straight line
    barriers: pd.DataFrame      # per (block, seed, pair)
    criticality: pd.DataFrame   # per (block, seed, init, module, alpha): error
    checkpoints: pd.DataFrame   # per (seed, pretraining checkpoint): P-T accuracy on the unshuffled target
    lr_search: pd.DataFrame     # per (init, seed, block, lr): validation accuracy, and which lr was chosen
    verdicts: pd.DataFrame
    provenance: dict


def train_key(cfg: FeatureReuseConfig) -> str:
    """What a fine-tuning run depends on (not the analyses, seeds, block list, device, or the lr grids:
    a run's folder names its lr)."""
    d = to_dict(cfg)
    keep = ("pretrain", "target", "finetune", "shuffle_seed", "speed_fractions")
    return config_hash({k: d[k] for k in keep})


def analysis_key(cfg: FeatureReuseConfig) -> str:
    d = to_dict(cfg)
    drop = ("seeds", "device", "blocks", "analysis_blocks", "checkpoint_epochs", "speed_epoch", "speed_target")
    # The lr grids stay in: they decide which runs are analysed.
    return config_hash({k: v for k, v in d.items() if k not in drop})


def _root(cfg: FeatureReuseConfig):
    return cache_root() / "findings" / NAME


class TargetData:
    """The target splits on the device, block-shuffled once per block size (one gather per split)."""

    def __init__(self, cfg: FeatureReuseConfig) -> None:
        self.cfg = cfg
        self.plain = {split: DeviceData.from_arrays(ds, cfg.device) for split, ds in load_target(cfg.target).items()}
        self._shuffled: dict[int, dict[str, DeviceData]] = {}

    def __getitem__(self, block: int) -> dict[str, DeviceData]:
        if block not in self._shuffled:
            shuffle = BlockShuffle(IMAGE_SIZE, block, self.cfg.shuffle_seed)
            self._shuffled = {block: {split: DeviceData(shuffle(d.images), d.labels) for split, d in self.plain.items()}}
        return self._shuffled[block]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _save_state(path, state: dict) -> None:
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))


# ---------------------------------------------------------------- fine-tuning runs
def unit_name(init: str, block: int, seed: int, replica: int, checkpoint: str | None, lr: float) -> str:
    """Folder name of one run."""
    return f"{init}-{checkpoint or 'scratch'}-b{block}-seed{seed}-r{replica}-lr{lr:g}"


def eval_batch(device: str) -> int:
    """Evaluation batch: on a CPU small batches stay in the cache (about 2x the images/s of 512 for
    ResNet-8); on a GPU a large one evaluates a path point or criticality draw in a few launches."""
    return 1024 if torch.device(device).type == "cuda" else 128


def initial_model(cfg: FeatureReuseConfig, zoo_run: ZooRun, init: str, checkpoint: str | None, ft_seed: int,
                  num_classes: int) -> torch.nn.Module:
    """P: a zoo checkpoint with a fresh head; RI: the same architecture, randomly initialised.

    RI seeds are offset so that no RI run starts from the initialisation its P was pretrained from.
    """
    if init == "pt":
        torch.manual_seed(ft_seed)
        model = zoo_run.load(checkpoint, cfg.device)
        model.reset_classifier(num_classes)
        return channels_last(model)
    torch.manual_seed(1_000_003 + ft_seed)
    return channels_last(create_model(cfg.pretrain.model, num_classes).to(cfg.device))


def finetune_unit(cfg: FeatureReuseConfig, zoo_run: ZooRun, data: TargetData, init: str, block: int,
                  replica: int, checkpoint: str | None, lr: float) -> dict:
    """Train one P-T or RI-T run on the block-shuffled target (cached with its init and final weights).

    `checkpoint` (P-T only) defaults to the final pretraining checkpoint.
    """
    seed = zoo_run.seed
    if init == "pt" and checkpoint is None:
        checkpoint = zoo_run.checkpoints()[-1]["name"]
    directory = unit_dir(cfg, {"init": init, "block": block, "seed": seed, "replica": replica,
                               "checkpoint": checkpoint, "lr": lr})

    def compute() -> dict:
        with stopwatch() as timer:
            d = data[block]
            ft_seed = seed + 1000 * replica
            num_classes = int(d["train"].labels.max().item()) + 1
            model = initial_model(cfg, zoo_run, init, checkpoint, ft_seed, num_classes)
            _save_state(directory / "init.safetensors", _state(model))
            ckpt_dir = directory / "train"
            result = train(model, d["train"], dataclasses.replace(cfg.finetune, lr=lr), seed=ft_seed,
                           checkpoint_dir=ckpt_dir, early_checkpoints=cfg.speed_fractions,
                           on_checkpoint=lambda n, e: {"val_acc": accuracy(model, d["val"], eval_batch(cfg.device))},
                           desc=f"{directory.name} lr {lr:g}")
            curve = [{k: m[k] for k in ("epoch", "step", "val_acc")}
                     for m in (read_json(ckpt_dir / f"{n}.json") for n in result.checkpoints)]
            _save_state(directory / "final.safetensors", _state(model))
            preds = predict(model, d["test"], eval_batch(cfg.device)).cpu().numpy()
            cached_arrays(directory / "test_predictions.npz", lambda: {"predictions": preds})
            test_acc = float((preds == d["test"].labels.cpu().numpy()).mean())
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # only the init and final weights are kept
        return {"init": init, "seed": seed, "replica": replica, "block": block, "checkpoint": checkpoint,
                "lr": lr, "test_acc": test_acc, "val_acc": curve[-1]["val_acc"], "curve": curve,
                "seconds": timer["seconds"]}

    return cached_json(directory / "result.json", compute)


def unit_dir(cfg: FeatureReuseConfig, row: dict):
    """Cache folder of one run, from its identifying fields (init, block, seed, replica, checkpoint, lr)."""
    name = unit_name(row["init"], row["block"], row["seed"], row["replica"],
                     row["checkpoint"] if row["init"] == "pt" else None, row["lr"])
    return _root(cfg) / train_key(cfg) / "units" / name


def lr_grid(cfg: FeatureReuseConfig, init: str) -> tuple:
    return cfg.pt_lrs if init == "pt" else cfg.rit_lrs


def tuned_units(cfg: FeatureReuseConfig, zoo_run: ZooRun, data: TargetData, init: str, block: int,
                replicas: int = 1, checkpoint: str | None = None) -> tuple[list[dict], list[dict]]:
    """The runs a comparison uses, the first at the lr of `init`'s grid that won on validation and any
    further replica at the same lr, and the search: one first run (replica 0) per lr, in grid order."""
    searched = [finetune_unit(cfg, zoo_run, data, init, block, 0, checkpoint, lr) for lr in lr_grid(cfg, init)]
    best = best_on_validation(searched, itemgetter("val_acc"))
    chosen = [best, *(finetune_unit(cfg, zoo_run, data, init, block, r, best["checkpoint"], best["lr"])
                      for r in range(1, replicas))]
    return chosen, searched


# ---------------------------------------------------------------- pair analyses
@torch.no_grad()
def layer_features(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output and the pooled penultimate features, for standardised images."""
    model.eval()
    x = standardize(images)
    return [*model.forward_intermediates(x), model.forward_features(x)]


def layer_names(model: torch.nn.Module) -> list[str]:
    names = [n for n in module_groups(model) if n != "head"]
    return [*names, "pool"]


def _body_distance(a: dict, b: dict) -> float:
    """l2 distance of all parameters except the classifier head (BN running statistics excluded)."""
    keys = [k for k in a if not k.startswith("head.") and "running_" not in k and "num_batches" not in k]
    return float(torch.sqrt(sum((a[k].double() - b[k].double()).square().sum() for k in keys)))


def analyse_block(cfg: FeatureReuseConfig, zoo_run: ZooRun, data: TargetData, block: int,
                  units: dict[tuple[str, int], dict]) -> dict:
    """Mistakes, CKA, distances, barriers and criticality for one seed at one block size (cached)."""
    seed = zoo_run.seed
    path = _root(cfg) / analysis_key(cfg) / f"analysis-b{block}-seed{seed}.json"

    def compute() -> dict:
        with stopwatch() as timer:
            d = data[block]
            dirs = {k: unit_dir(cfg, row) for k, row in units.items()}
            final = {k: load_weights(p / "final.safetensors") for k, p in dirs.items()}
            init = {k: load_weights(p / "init.safetensors") for k, p in dirs.items()}
            labels = d["test"].labels.cpu().numpy()
            preds = {k: cached_arrays(p / "test_predictions.npz", lambda: {})["predictions"] for k, p in dirs.items()}
            pt0, pt1, ri0, ri1 = ("pt", 0), ("pt", 1), ("ri", 0), ("ri", 1)
            pairs = {"P-T/P-T": [(pt0, pt1)], "RI-T/RI-T": [(ri0, ri1)], "P-T/RI-T": [(pt0, ri0), (pt1, ri1)]}

            mistakes = []
            for label, members in pairs.items():
                for a, b in members:
                    err_a, err_b = 1 - units[a]["test_acc"], 1 - units[b]["test_acc"]
                    mistakes.append({"pair": label, "jaccard": mistake_jaccard(preds[a], preds[b], labels),
                                     "independent": independent_jaccard(err_a, err_b)})

            p_state = _state(zoo_run.load(zoo_run.checkpoints()[-1]["name"]))
            distances = [{"pair": label, "l2": _body_distance(final[a], final[b])}
                         for label, members in pairs.items() for a, b in members]
            distances += [{"pair": "P-T/P", "l2": _body_distance(final[k], p_state)} for k in (pt0, pt1)]
            distances += [{"pair": "P-T/its init", "l2": _body_distance(final[k], init[k])} for k in (pt0, pt1)]
            distances += [{"pair": "RI-T/its init", "l2": _body_distance(final[k], init[k])} for k in (ri0, ri1)]

            num_classes = int(d["train"].labels.max().item()) + 1
            models = {}
            for k in final:
                models[k] = channels_last(create_model(cfg.pretrain.model, num_classes).to(cfg.device))
                models[k].load_state_dict(final[k])
            models["P"] = channels_last(zoo_run.load(zoo_run.checkpoints()[-1]["name"], cfg.device))
            cka_pairs = {**pairs, "P-T/P": [(pt0, "P"), (pt1, "P")], "RI-T/P": [(ri0, "P"), (ri1, "P")]}
            accumulators = {(label, i): MinibatchCKA() for label, members in cka_pairs.items()
                            for i in range(len(members))}
            images = d["test"].images[:cfg.eval_images]
            for start in range(0, len(images) - cfg.cka_batch + 1, cfg.cka_batch):
                grams = {k: gram_matrices(layer_features(m, images[start:start + cfg.cka_batch]))
                         for k, m in models.items()}  # one Gram matrix per model and layer, shared by all pairs
                for label, members in cka_pairs.items():
                    for i, (a, b) in enumerate(members):
                        accumulators[(label, i)].update_grams(grams[a], grams[b])
            cka_maps = {}
            for label, members in cka_pairs.items():
                cka_maps[label] = torch.stack([accumulators[(label, i)].value()
                                               for i in range(len(members))]).mean(0).tolist()

            eval_data = DeviceData(d["test"].images[:cfg.eval_images], d["test"].labels[:cfg.eval_images])
            probe = models[pt0]
            kwargs = {"bn_batches": cfg.bn_batches, "batch_size": eval_batch(cfg.device)}
            paths = {}
            for label, (a, b) in (("P-T/P-T", (pt0, pt1)), ("RI-T/RI-T", (ri0, ri1))):
                lams, errs = error_along_path(probe, final[a], final[b], eval_data, d["train"],
                                              cfg.interp_points, **kwargs)
                paths[label] = {"lambda": lams.tolist(), "error": errs.tolist(), "barrier": loss_barrier(errs)}

            criticality = {}
            for label, k in (("P-T", pt0), ("RI-T", ri0)):
                modules, errs = criticality_map(probe, final[k], init[k], eval_data, d["train"], cfg.crit_alphas,
                                                cfg.crit_sigma, cfg.crit_draws, seed=seed, **kwargs)
                criticality[label] = {"modules": modules, "error": errs.tolist(),
                                      "trained_error": error_at(probe, final[k], eval_data, None,
                                                                batch_size=eval_batch(cfg.device))}
        return {"block": block, "seed": seed, "mistakes": mistakes, "distances": distances,
                "layers": layer_names(probe), "cka": cka_maps, "paths": paths, "criticality": criticality,
                "alphas": list(cfg.crit_alphas), "seconds": timer["seconds"]}

    return cached_json(path, compute)


# ---------------------------------------------------------------- run
def run(cfg: FeatureReuseConfig, only_seed: int | None = None) -> Results | None:
    """Compute (or load from the cache) every run and analysis, then the verdicts (with `only_seed`,
    that seed's runs and analyses only, and no results)."""
    seeds = seeds_to_compute(cfg.seeds, only_seed)
    with stopwatch() as timer, compute_ledger(compute_origin(cfg.device)) as ledger:   # each cached unit's compute, once
        data = TargetData(cfg)
        rows, ckpt_rows, searched, analyses, source = [], [], [], [], []
        for seed in seeds:
            zoo_run = pretrain(cfg.pretrain, seed, cfg.device)
            metas = zoo_run.checkpoints()
            source.append({"seed": seed, "checkpoint": metas[-1]["name"], "source_acc": metas[-1]["source_acc"]})
            for block in cfg.blocks:
                units = {}
                for init in ("pt", "ri"):
                    chosen, search = tuned_units(cfg, zoo_run, data, init, block,
                                                 replicas=2 if block in cfg.analysis_blocks else 1)
                    units |= {(init, r): u for r, u in enumerate(chosen)}
                    searched += [u | {"chosen": u is chosen[0]} for u in search]
                rows += [u | {"pretrain_epoch": float(metas[-1]["epoch"])} for u in units.values()]
                if block in cfg.analysis_blocks:
                    analyses.append(analyse_block(cfg, zoo_run, data, block, units))
            by_name = {m["name"]: m for m in metas}
            for meta in [*(by_name[f"ep{e:g}"] for e in cfg.checkpoint_epochs), metas[-1]]:
                (unit,), _ = tuned_units(cfg, zoo_run, data, "pt", IMAGE_SIZE, checkpoint=meta["name"])
                ckpt_rows.append(unit | {"pretrain_epoch": float(meta["epoch"]), "source_acc": meta["source_acc"]})
    if only_seed is not None:
        return None
    runs = pd.DataFrame(rows).drop(columns=["curve"])
    curves = pd.DataFrame([{k: r[k] for k in ("init", "seed", "replica", "block", "checkpoint")} | point
                           for r in rows for point in r["curve"]])
    runs = runs.merge(speed_table(cfg, curves), on=["init", "seed", "replica", "block", "checkpoint"], how="left")
    gaps = gap_table(runs)
    tables = analysis_tables(analyses)
    source_df = pd.DataFrame(source)
    checkpoints = checkpoint_table(pd.DataFrame(ckpt_rows).drop(columns=["curve"]))
    lrs = pd.DataFrame(searched)[["init", "seed", "block", "lr", "val_acc", "test_acc", "chosen"]]
    results = Results(config=to_dict(cfg), source=source_df, runs=runs, curves=curves, gaps=gaps,
                      gap_summary=summarise_gaps(gaps), checkpoints=checkpoints, lr_search=lrs, verdicts=pd.DataFrame(),
                      provenance=results_provenance(cfg.device, ledger) | {"this_call_s": round(timer["seconds"], 1)},
                      **tables)
    results.verdicts = verdicts(results, cfg)
    return results


# ---------------------------------------------------------------- tables
def speed_table(cfg: FeatureReuseConfig, curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: validation accuracy after `speed_epoch` and the first step reaching `speed_target`."""
    out = []
    for key, g in curves.groupby(["init", "seed", "replica", "block", "checkpoint"], dropna=False):
        g = g.sort_values("step")
        early = g.loc[np.isclose(g["epoch"], cfg.speed_epoch), "val_acc"]
        reached = g.loc[g["val_acc"] >= cfg.speed_target, "step"]
        out.append(dict(zip(["init", "seed", "replica", "block", "checkpoint"], key))
                   | {"early_acc": float(early.iloc[0]) if len(early) else np.nan,
                      "early_step": int(g.loc[np.isclose(g["epoch"], cfg.speed_epoch), "step"].iloc[0])
                      if len(early) else np.nan,
                      "steps_to_target": float(reached.iloc[0]) if len(reached) else np.nan})
    return pd.DataFrame(out)


def _main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The first run of each (init, seed, block); the second ones exist only for the pair analyses."""
    return runs[runs["replica"] == 0]


def gap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, block): P-T and RI-T accuracies, the relative gap and the speed gap."""
    main = _main_runs(runs)
    cols = ["test_acc", "early_acc", "steps_to_target"]
    wide = main.pivot_table(index=["seed", "block"], columns="init", values=cols, dropna=False)
    out = pd.DataFrame({"acc_pt": wide[("test_acc", "pt")], "acc_rit": wide[("test_acc", "ri")],
                        "early_pt": wide[("early_acc", "pt")], "early_rit": wide[("early_acc", "ri")],
                        "steps_pt": wide[("steps_to_target", "pt")], "steps_rit": wide[("steps_to_target", "ri")]})
    out["gap"] = out["acc_pt"] - out["acc_rit"]
    out["rel_gap"] = out["gap"] / out["acc_pt"]
    out["early_gap"] = out["early_pt"] - out["early_rit"]
    return out.reset_index()


def summarise_gaps(gaps: pd.DataFrame) -> pd.DataFrame:
    out = []
    for block, g in gaps.groupby("block"):
        row = {"block": block}
        for col in ("acc_pt", "acc_rit", "gap", "rel_gap", "early_pt", "early_rit", "early_gap"):
            est = mean_ci(g[col])
            row |= {col: est.mean, f"{col}_lo": est.lo, f"{col}_hi": est.hi}
        out.append(row)
    return pd.DataFrame(out).sort_values("block", ascending=False).reset_index(drop=True)


def analysis_tables(analyses: list[dict]) -> dict:
    mistakes, cka, distances, paths, barriers, criticality, maps = [], [], [], [], [], [], {}
    for a in analyses:
        key = {"block": a["block"], "seed": a["seed"]}
        mistakes += [key | m for m in a["mistakes"]]
        distances += [key | m for m in a["distances"]]
        for pair, matrix in a["cka"].items():
            m = np.asarray(matrix)
            cka += [key | {"pair": pair, "layer": layer, "depth": i, "cka": float(m[i, i])}
                    for i, layer in enumerate(a["layers"])]
            maps.setdefault((a["block"], pair), []).append(m)
        for pair, p in a["paths"].items():
            paths += [key | {"pair": pair, "lambda": lam, "error": err} for lam, err in zip(p["lambda"], p["error"])]
            barriers.append(key | {"pair": pair, "barrier": p["barrier"], "end_error": 0.5 * (p["error"][0] + p["error"][-1])})
        for init, c in a["criticality"].items():
            for i, module in enumerate(c["modules"]):
                criticality += [key | {"init": init, "module": module, "depth": i, "alpha": alpha, "error": err,
                                       "trained_error": c["trained_error"]}
                                for alpha, err in zip(a["alphas"], c["error"][i])]
    layers = analyses[0]["layers"] if analyses else []
    return {"mistakes": pd.DataFrame(mistakes), "cka": pd.DataFrame(cka), "distances": pd.DataFrame(distances),
            "paths": pd.DataFrame(paths), "barriers": pd.DataFrame(barriers), "criticality": pd.DataFrame(criticality),
            "cka_maps": {k: pd.DataFrame(np.mean(v, axis=0), index=layers, columns=layers) for k, v in maps.items()}}


def checkpoint_table(ckpt_runs: pd.DataFrame) -> pd.DataFrame:
    """P-T on the unshuffled target per (seed, pretraining checkpoint, final included), each at the
    learning rate that did best on validation, with the checkpoint's source accuracy."""
    out = ckpt_runs[["seed", "checkpoint", "pretrain_epoch", "source_acc", "lr", "val_acc", "test_acc"]]
    return out.sort_values(["seed", "pretrain_epoch"]).reset_index(drop=True)


# Pre-registered: a flat stretch of the which-checkpoint curve starts at the first checkpoint
# whose mean accuracy is within this much of the final checkpoint's.
FLAT_TOLERANCE = 0.01


def flattening_epoch(checkpoints: pd.DataFrame) -> float:
    mean = checkpoints.groupby("pretrain_epoch")["test_acc"].mean().sort_index()
    within = mean[mean >= mean.iloc[-1] - FLAT_TOLERANCE]
    return float(within.index[0])


# ---------------------------------------------------------------- verdicts
# Pre-registered thresholds (../shared/CLAIMS.md), fixed before any result was seen.
MIN_SOURCE_ACC = 0.5          # a pretrained model below this did not learn: no evidence either way
C1_MIN_SPEARMAN = 0.6         # Spearman(b, relative gap), per seed, mean over seeds
C3_PT_MAX_BARRIER = 0.02      # P-T/P-T barrier (error rate) at most 2 pp
C3_RIT_MIN_BARRIER = 0.05     # RI-T/RI-T barrier at least 5 pp
# C4 statistic, fixed before any result was seen. Criticality of a module = mean over the
# alphas > 0 of (error with that module moved toward its initial value, noise sigma) minus the
# trained error. Body modules = every module but the head (P-T's head starts random, so
# rewinding it is destructive for trivial reasons). D = mean criticality of the upper half of
# the body modules minus that of the lower half (a middle module of an odd count is left out),
# per seed, at the unshuffled block size; C4 holds when the 95% CI of D lies above 0.
C4_MIN_DIFFERENCE = 0.0
# A precondition added after the first gpu run, where RI-T scored 0.27 [-0.11, 0.65] on unshuffled
# images (random init fine-tuned in chapter 02: 0.96): an RI-T run below this on unshuffled images
# did not train, and C1-C3, which compare P-T with RI-T, are then no evidence either way.
MIN_RIT_ACC = 0.5


def verdict_c1(gaps: pd.DataFrame) -> list[dict]:
    rho = [spearmanr(g["block"], g["rel_gap"]).statistic for _, g in gaps.groupby("seed")]
    est = mean_ci(rho, bounds=CORRELATION_RANGE)
    return [_row("C1", "Spearman(block size b, relative gap (A_PT - A_RIT) / A_PT) over b, per seed", est,
                 f">= {C1_MIN_SPEARMAN}", verdict_above(est, C1_MIN_SPEARMAN))]


def verdict_c2(gaps: pd.DataFrame, speed_step: int) -> list[dict]:
    small = gaps[gaps["block"] == gaps["block"].min()]
    b = int(small["block"].iloc[0])
    acc, early = mean_ci(small["gap"]), mean_ci(small["early_gap"])
    return [_row("C2", f"A_PT - A_RIT, test accuracy at the smallest block b = {b}", acc, "> 0",
                 verdict_above(acc, 0.0)),
            _row("C2", f"training speed: P-T - RI-T validation accuracy after {speed_step} steps, b = {b}", early,
                 "> 0", verdict_above(early, 0.0))]


def verdict_c3(barriers: pd.DataFrame) -> list[dict]:
    full = barriers[barriers["block"] == barriers["block"].max()]
    b = int(full["block"].iloc[0])
    pt = mean_ci(full.loc[full["pair"] == "P-T/P-T", "barrier"])
    ri = mean_ci(full.loc[full["pair"] == "RI-T/RI-T", "barrier"])
    return [_row("C3", f"P-T/P-T error barrier on the linear path, b = {b}", pt, f"<= {C3_PT_MAX_BARRIER}",
                 verdict_below(pt, C3_PT_MAX_BARRIER)),
            _row("C3", f"RI-T/RI-T error barrier on the linear path, b = {b}", ri, f">= {C3_RIT_MIN_BARRIER}",
                 verdict_above(ri, C3_RIT_MIN_BARRIER))]


def criticality_difference(criticality: pd.DataFrame, init: str) -> pd.Series:
    """Per (block, seed): the C4 statistic D (upper minus lower half of the body modules)."""
    c = criticality[(criticality["init"] == init) & (criticality["alpha"] > 0)]
    moved = c.groupby(["block", "seed", "module", "depth"])[["error", "trained_error"]].mean().reset_index()
    moved["crit"] = moved["error"] - moved["trained_error"]
    body = moved[moved["module"] != "head"]

    def d(g: pd.DataFrame) -> float:
        g = g.sort_values("depth")
        half = len(g) // 2
        return g["crit"].iloc[-half:].mean() - g["crit"].iloc[:half].mean()

    return body.groupby(["block", "seed"]).apply(d, include_groups=False)


def verdict_c4(criticality: pd.DataFrame) -> list[dict]:
    diff = criticality_difference(criticality, "P-T")
    b = max(diff.index.get_level_values("block"))
    est = mean_ci(diff.loc[b])
    return [_row("C4", f"P-T criticality, upper minus lower half of the body modules, b = {b}", est,
                 f"> {C4_MIN_DIFFERENCE}", verdict_above(est, C4_MIN_DIFFERENCE))]


def verdicts(results: Results, cfg: FeatureReuseConfig) -> pd.DataFrame:
    """Verdicts C1-C4; all 'inconclusive' when any seed's pretrained model stayed below MIN_SOURCE_ACC,
    C1-C3 when any RI-T run on unshuffled images stayed below MIN_RIT_ACC."""
    speed_step = int(results.runs["early_step"].dropna().iloc[0]) if results.runs["early_step"].notna().any() else 0
    rows = pd.DataFrame([*verdict_c1(results.gaps), *verdict_c2(results.gaps, speed_step),
                         *verdict_c3(results.barriers), *verdict_c4(results.criticality)])
    unshuffled = results.gaps[results.gaps["block"] == results.gaps["block"].max()]
    if (unshuffled["acc_rit"] < MIN_RIT_ACC).any():
        against_rit = rows["claim"].isin(["C1", "C2", "C3"])
        rows["note"] = ""
        rows.loc[against_rit, "verdict"] = INCONCLUSIVE
        rows.loc[against_rit, "note"] = (f"an RI-T run on unshuffled images ended below {MIN_RIT_ACC:.0%} test "
                                         "accuracy: the random-init baseline did not train")
    if (results.source["source_acc"] < MIN_SOURCE_ACC).any():
        rows["verdict"] = INCONCLUSIVE
        rows["note"] = f"a pretraining run ended below {MIN_SOURCE_ACC:.0%} source accuracy"
    return rows
