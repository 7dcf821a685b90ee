"""Finding 02 (Deng et al., ICCV 2023): feature extraction vs fine-tuning across pretraining epochs.

For every checkpoint of a pretraining run: source accuracy, FE accuracy (linear probe on
frozen penultimate features of the target) and FT accuracy (all weights trained on the
target, learning rate picked on validation), plus the spectral split of the features into
main components and residual. Verdicts B1-B3 follow ../shared/CLAIMS.md.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import ConstantInputWarning, spearmanr

from ..cache import cache_root, cached_arrays, cached_json, compute_ledger
from ..config import (Float, Floats, Int, PretrainConfig, TargetConfig, TrainConfig, config_hash, param,
                      resolve_config, to_dict)
from ..data.device import DeviceData
from ..data.store import load_target
from ..hub import refuse_hub_source
from ..metrics.spectrum import normalised_similarity, project, spectrum
from ..probe import fit_linear_probe
from ..profiles import pretrain_overrides
from ..provenance import compute_origin, results_provenance, stopwatch
from ..selection import best_on_validation, finetune_each_lr
from ..stats import CORRELATION_RANGE, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, mean_ci, verdict_above
from ..stats import verdict_row as _row
from ..train import accuracy, extract_features
from ..zoo import ZooRun, check_pretrain, pretrain
from . import seeds_to_compute

NAME = "fe_vs_ft"


@dataclass(frozen=True)
class FeVsFtConfig:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=8, batch_size=64, optimizer="sgd", lr=0.03, weight_decay=5e-4, label_smoothing=0.0,
        warmup_frac=0.1))
    ft_lrs: tuple = param((0.01, 0.03, 0.1), Floats(Float(0.0, 10.0, lo_open=True)))
    probe_cs: tuple = param((0.01, 0.1, 1.0, 10.0), Floats(Float(0.0, 1e6, lo_open=True)))
    seeds: int = param(3, Int(1, 100))
    spectral_energy: float = param(0.8, Float(0.0, 1.0, lo_open=True))
    device: str = "auto"


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: exercises every code path; verdicts are expected to be inconclusive.
    "ci": {**pretrain_overrides("ci"), "target.train": 120, "target.val": 60, "target.test": 200,
           "finetune.epochs": 2, "ft_lrs": (0.03,), "probe_cs": (0.1, 1.0), "seeds": 2},
    # 2 CPU cores.
    "cpu": {**pretrain_overrides("cpu"), "target.train": 1_000, "target.val": 500, "target.test": 3_500,
            "finetune.epochs": 5, "ft_lrs": (0.03, 0.1, 0.3), "seeds": 3},
    # One GPU: the gpu zoo's ResNet-20 (width 32, 25k glyphs, 15 checkpoints a seed) with the cpu
    # profile's fine-tuning recipe; 3 seeds keep its 3 x 15 x 3 fine-tuning runs within the study's
    # 10-minute budget (5 seeds, 10 epochs and 4 learning rates: 300 runs, about 4 min estimated).
    # The lr grid is centred on the first gpu run's winner: 0.03, the bottom of [0.03, 0.1, 0.3] in 45 of 45.
    "gpu": {**pretrain_overrides("gpu"), "target.train": 1_000, "target.val": 500, "target.test": 3_500,
            "finetune.epochs": 5, "ft_lrs": (0.01, 0.03, 0.1), "seeds": 3},
}


def config(profile: str = "cpu", **params: Any) -> FeVsFtConfig:
    """The validated config of a profile with papermill/CLI parameters applied (None = profile value)."""
    cfg = resolve_config(FeVsFtConfig(), PROFILES, profile, params, finding="finding 02")
    refuse_hub_source(cfg.pretrain.source, "finding 02", "it needs a checkpoint of every pretraining epoch, and a "
                      "hub model has only its final weights")
    check_pretrain(cfg.pretrain)
    return cfg


# ---------------------------------------------------------------- compute
@dataclass
class Results:
    config: dict
    checkpoints: pd.DataFrame     # one row per (seed, checkpoint)
    verdicts: pd.DataFrame
    summary: pd.DataFrame         # mean and CI per checkpoint
    spectra: dict                 # seed -> checkpoint -> singular values
    provenance: dict


def run(cfg: FeVsFtConfig, progress: bool = True, only_seed: int | None = None) -> Results | None:
    """Compute (or load from the cache) every checkpoint's measurements, then the verdicts (with
    `only_seed`, that seed's measurements only, and no results)."""
    seeds = seeds_to_compute(cfg.seeds, only_seed)
    with stopwatch() as timer, compute_ledger(compute_origin(cfg.device)) as ledger:   # each cached unit's compute, once
        target = load_target(cfg.target)
        data = {split: DeviceData.from_arrays(ds, cfg.device) for split, ds in target.items()}
        rows, spectra = [], {}
        for seed in seeds:
            zoo_run = pretrain(cfg.pretrain, seed, cfg.device)
            seed_rows = [measure_checkpoint(cfg, zoo_run, meta, data) for meta in zoo_run.checkpoints()]
            spectral_rows, spectra[seed] = spectral_analysis(cfg, zoo_run, [r["checkpoint"] for r in seed_rows])
            for row, extra in zip(seed_rows, spectral_rows):
                row.update(extra)
                del row["seconds"]
            rows += seed_rows
    if only_seed is not None:
        return None
    table = pd.DataFrame(rows)
    return Results(config=to_dict(cfg), checkpoints=table, verdicts=verdicts(table, cfg),
                   summary=summarise(table), spectra=spectra,
                   provenance=results_provenance(cfg.device, ledger) | {"this_call_s": round(timer["seconds"], 1)})


def unit_dir(cfg: FeVsFtConfig, seed: int):
    """Cache folder of one seed's measurements; independent of how many seeds are asked for."""
    key = config_hash({k: v for k, v in to_dict(cfg).items() if k not in ("seeds", "device")})
    return cache_root() / "findings" / NAME / key / f"seed{seed}"


def measure_checkpoint(cfg: FeVsFtConfig, zoo_run: ZooRun, meta: dict, data: dict[str, DeviceData]) -> dict:
    """Source, FE and FT accuracy of one checkpoint (cached; features saved for the spectra)."""
    name, seed = meta["name"], zoo_run.seed
    directory = unit_dir(cfg, seed)

    def compute() -> dict:
        with stopwatch() as timer:
            model = zoo_run.load(name, cfg.device)
            feats = cached_arrays(directory / f"{name}-features.npz", lambda: {
                split: extract_features(model, d).cpu().numpy() for split, d in data.items()})
            labels = {split: d.labels.cpu().numpy() for split, d in data.items()}
            probe = fit_linear_probe(feats["train"], labels["train"], feats["val"], labels["val"], cfg.probe_cs)
            fe = {"fe_acc": probe.accuracy(feats["test"], labels["test"]), "fe_val_acc": probe.val_acc,
                  "probe_C": probe.C}
            ft = finetune_best_lr(cfg, zoo_run, name, data)
        return {"seed": seed, "checkpoint": name, "epoch": meta["epoch"], "source_acc": meta["source_acc"],
                **fe, **ft, "seconds": timer["seconds"]}

    return cached_json(directory / f"{name}.json", compute)


def finetune_best_lr(cfg: FeVsFtConfig, zoo_run: ZooRun, name: str, data: dict[str, DeviceData]) -> dict:
    """Fine-tune all weights once per learning rate; report the test accuracy of the best on val."""
    num_classes = int(data["train"].labels.max().item()) + 1

    def start() -> torch.nn.Module:
        model = zoo_run.load(name, cfg.device)
        model.reset_classifier(num_classes)
        return model

    runs = [{"ft_acc": accuracy(model, data["test"]), "ft_val_acc": accuracy(model, data["val"]), "ft_lr": lr}
            for lr, model in finetune_each_lr(start, data["train"], cfg.finetune, cfg.ft_lrs, seed=zoo_run.seed,
                                              desc=f"fine-tune seed {zoo_run.seed} {name}")]
    return best_on_validation(runs, itemgetter("ft_val_acc"))


def spectral_analysis(cfg: FeVsFtConfig, zoo_run: ZooRun, names: list[str]) -> tuple[list[dict], dict]:
    """Per checkpoint: main-part size k, FE from main vs residual features, and how close the
    main and residual sample-space subspaces are to the final checkpoint's (chance = 0).

    Cached per seed, so a copy of the results without the feature files still renders."""
    directory = unit_dir(cfg, zoo_run.seed)

    def compute() -> dict:
        feats = {n: cached_arrays(directory / f"{n}-features.npz", lambda: {}) for n in names}
        target = load_target(cfg.target)
        labels = {split: ds.labels for split, ds in target.items()}
        final = spectrum(feats[names[-1]]["test"], cfg.spectral_energy)
        k = final.k
        rows, singular_values = [], {}
        for n in names:
            test_spec = spectrum(feats[n]["test"], cfg.spectral_energy)
            train_spec = spectrum(feats[n]["train"], cfg.spectral_energy)
            r = min(test_spec.rank, final.rank)
            row = {"k": test_spec.k,
                   "main_stability": normalised_similarity(test_spec.U[:, :k], final.U[:, :k]),
                   "residual_stability": normalised_similarity(test_spec.U[:, k:r], final.U[:, k:r])}
            for part in ("main", "residual"):
                split_feats = {s: project(feats[n][s], train_spec, part) for s in ("train", "val", "test")}
                probe = fit_linear_probe(split_feats["train"], labels["train"], split_feats["val"], labels["val"],
                                         cfg.probe_cs)
                row[f"fe_{part}_acc"] = probe.accuracy(split_feats["test"], labels["test"])
            rows.append(row)
            singular_values[n] = test_spec.S.tolist()
        return {"rows": rows, "singular_values": singular_values}

    found = cached_json(directory / "spectral.json", compute)   # names: every checkpoint of the run
    return found["rows"], found["singular_values"]


# ---------------------------------------------------------------- analysis
def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% CI over seeds of every accuracy, per checkpoint."""
    out = []
    for (name, epoch), group in table.groupby(["checkpoint", "epoch"], sort=False):
        row = {"checkpoint": name, "epoch": epoch}
        for col in ("source_acc", "fe_acc", "ft_acc", "fe_main_acc", "fe_residual_acc",
                    "main_stability", "residual_stability"):
            est = mean_ci(group[col])
            row |= {col: est.mean, f"{col}_lo": est.lo, f"{col}_hi": est.hi}
        out.append(row)
    return pd.DataFrame(out).sort_values("epoch").reset_index(drop=True)


def _trained(table: pd.DataFrame) -> pd.DataFrame:
    """Checkpoints after some pretraining (the initialisation 'ep0' is only a reference)."""
    return table[table["epoch"] > 0]


# Pre-registered: a pretrained model that did not learn its source is no evidence either way.
MIN_SOURCE_ACC = 0.5


def verdicts(table: pd.DataFrame, cfg: FeVsFtConfig) -> pd.DataFrame:
    """Verdicts B1-B3; all 'inconclusive' when any seed's final model stayed below MIN_SOURCE_ACC."""
    trained = _trained(table)
    rows = pd.DataFrame([*verdict_b1(trained), *verdict_b2(trained), *verdict_b3(trained)])
    final = trained[trained["epoch"] == trained["epoch"].max()]
    if (final["source_acc"] < MIN_SOURCE_ACC).any():
        rows["verdict"] = INCONCLUSIVE
        rows["note"] = f"a pretraining run ended below {MIN_SOURCE_ACC:.0%} source accuracy"
    return rows


def verdict_b1(trained: pd.DataFrame) -> list[dict]:
    """B1: a mid checkpoint is a better feature extractor than the final one.

    The best epoch is chosen on the probe's *validation* accuracy (mean over seeds) and the gap
    is measured on the *test* split, so choosing the maximum does not inflate the gap. As the
    chapter states for every claim: reproduced when the gap's whole CI clears the threshold, not
    reproduced when the whole CI falls short of it.
    """
    val = trained.pivot(index="seed", columns="epoch", values="fe_val_acc")
    test = trained.pivot(index="seed", columns="epoch", values="fe_acc")
    final_epoch = val.columns.max()
    best_epoch = val.mean().idxmax()
    gap = mean_ci(test[best_epoch] - test[final_epoch])
    threshold = max(0.01, 2 * gap.sd) if np.isfinite(gap.sd) else float("inf")
    if best_epoch == final_epoch:
        verdict = NOT_REPRODUCED
    elif not gap.decidable:
        verdict = INCONCLUSIVE
    elif gap.hi < threshold:
        verdict = NOT_REPRODUCED
    elif best_epoch < final_epoch and gap.lo >= threshold:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return [_row("B1", f"FE(best epoch {best_epoch:g}, picked on val) - FE(final epoch {final_epoch:g}), test acc",
                 gap, f">= max(1 pp, 2 SD) = {threshold:.3f}; best epoch < final", verdict)]


def _spearman_per_seed(trained: pd.DataFrame, column: str) -> list[float]:
    """One rho per seed; NaN where a column is constant (the verdict row then counts it as undefined,
    so scipy's warning about it would only repeat that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return [spearmanr(g["source_acc"], g[column]).statistic for _, g in trained.groupby("seed")]


def verdict_b2(trained: pd.DataFrame) -> list[dict]:
    """B2: FT accuracy rises with source accuracy (rho > 0.5), FE accuracy less so."""
    rho_ft = np.array(_spearman_per_seed(trained, "ft_acc"))
    rho_fe = np.array(_spearman_per_seed(trained, "fe_acc"))
    ft_est = mean_ci(rho_ft, bounds=CORRELATION_RANGE)
    diff_est = mean_ci(rho_ft - rho_fe, bounds=(-2.0, 2.0))   # a difference of two correlations
    v_ft, v_diff = verdict_above(ft_est, 0.5), verdict_above(diff_est, 0.0)
    return [_row("B2", "Spearman(source acc, FT acc) over checkpoints", ft_est, "> 0.5", v_ft),
            _row("B2", "Spearman(source, FT) - Spearman(source, FE)", diff_est, "> 0", v_diff)]


def verdict_b3(trained: pd.DataFrame) -> list[dict]:
    """B3: the main (top-k) feature subspace settles before the residual one.

    Statistic: over checkpoints before the final one, mean of (main - residual) similarity to the
    final checkpoint's subspaces, each rescaled so that chance is 0 and identity is 1.
    """
    not_final = trained[trained["epoch"] < trained["epoch"].max()]
    per_seed = (not_final["main_stability"] - not_final["residual_stability"]).groupby(not_final["seed"]).mean()
    est = mean_ci(per_seed)
    return [_row("B3", "main minus residual subspace similarity to final (mean over earlier checkpoints)",
                 est, "> 0", verdict_above(est, 0.0))]
