"""Finding 01 (Merlin et al., CoLLAs 2023): fine-tuning a pretrained ViT compresses the
invariances of its deep layers into shallower layers; shallow-layer invariances transfer.

For every seed s: the zoo's ViT pt (final checkpoint of pretraining seed s), an independently
seeded pt' (pretraining seed s+1 mod seeds, the control) and pt fine-tuned on each target.
Each block of pt and of every fine-tuned model is inverted once on the same images X (the
first target's test images); maps of STIR (metrics/stir.py) follow by reading those
inversions out with other models:

- R[i, j] = STIR(ft_j | pt_i) (retained) and F[i, j] = STIR(pt_j | ft_i) (the reverse);
- S[i, j] = STIR(pt_j | pt_i), the sanity map, and C[i, j] = STIR(pt'_j | pt_i), the control.

Verdicts A1 (shallow retention) and A2 (compression) follow ../shared/CLAIMS.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..cache import cache_root, cached_arrays, cached_json, compute_ledger
from ..config import (TARGET_NAMES, Choice, Choices, Float, Int, Ints, ParameterError, PretrainConfig, TargetConfig,
                      TargetName, TrainConfig, apply_overrides, config_hash, param, resolve_config, to_dict)
from ..data.device import DeviceData
from ..data.store import load_target
from ..hub import refuse_hub_source
from ..metrics.stir import OPTIMIZERS, REPRESENTATIONS, STARTS, Inversions, invert, noise_baseline, stir_map
from ..models import create_model
from ..profiles import ZOO_VIT, pretrain_overrides
from ..provenance import compute_origin, results_provenance, stopwatch
from ..stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Estimate, mean_ci, verdict_above, verdict_row
from ..train import accuracy, train
from ..zoo import ZooRun, check_pretrain, pretrain
from . import seeds_to_compute

NAME = "invariance"
MIN_SOURCE_ACC = 0.5     # a pretrained model below this did not learn: no evidence either way
MAX_RESIDUAL = 0.1       # CLAIMS.md: an inversion with a larger final relative loss failed
A2_MIN_SHIFT = 1.0       # s >= 1 layer
A2_MAX_CONTROL = 0.5     # |s| of the control < 0.5
SANITY_MIN_GAP = 0.1     # deep rows of S: j >= i minus j < i, the readout must see an invariance
SANITY_MIN_MATCH = 0.9   # deep rows of S: j >= i (the inversion's own layer onwards) ~1
NOISE_MIN_MARGIN = 0.1   # a map's mean must exceed its noise baseline by this much


def _finetune() -> TrainConfig:
    return TrainConfig(epochs=10, batch_size=64, optimizer="adamw", lr=5e-4, weight_decay=0.05,
                       label_smoothing=0.1, warmup_frac=0.1)


@dataclass(frozen=True)
class InvarianceConfig:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    target: TargetConfig = field(default_factory=lambda: TargetConfig(name="mnist", train=1_000, val=100,
                                                                      test=1_000))
    targets: tuple = param(("mnist", "font-digits"), Choices(TargetName(TARGET_NAMES)))   # target.name ignored
    finetune: TrainConfig = field(default_factory=_finetune)
    images: int = param(64, Int(8, 100_000))           # |X|: images inverted per layer
    # Blocks to invert and read; () = every block.
    layers: tuple = param((), Ints(Int(0, 10_000), empty_ok=True, distinct=True))
    representation: str = param("cls", Choice(REPRESENTATIONS))
    steps: int = param(200, Int(1, 100_000))
    step_size: float = param(0.05, Float(0.0, 100.0, lo_open=True))
    optimizer: str = param("adam", Choice(OPTIMIZERS))
    start: str = param("image", Choice(STARTS))
    seeds: int = param(3, Int(2, 100))                  # >= 2: the control pairs seed s with s+1
    device: str = "auto"


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: a ViT that barely learns; exercises every code path; verdicts inconclusive.
    "ci": {**pretrain_overrides("ci", zoo=ZOO_VIT), "target.train": 120, "target.val": 20, "target.test": 64,
           "finetune.epochs": 2, "images": 16, "steps": 10, "seeds": 2},
    # 2 CPU cores: the zoo's 4-block ViT, 3 seeds, 64 images x 200 Adam steps per layer.
    "cpu": {**pretrain_overrides("cpu", zoo=ZOO_VIT)},
    # One GPU: 8 blocks, more images and steps, 5 seeds; inversions of all layers batched.
    "gpu": {**pretrain_overrides("gpu", zoo=ZOO_VIT), "images": 256, "steps": 400, "seeds": 5},
}


def config(profile: str = "cpu", **params: Any) -> InvarianceConfig:
    """The validated config of a profile with papermill/CLI parameters applied (None = profile value)."""
    cfg = resolve_config(InvarianceConfig(), PROFILES, profile, params, finding="finding 01")
    refuse_hub_source(cfg.pretrain.source, "finding 01", "it inverts the blocks of the study's own ViT and needs "
                      "a second pretraining seed as its control")
    if cfg.pretrain.model.arch != "vit":
        raise ParameterError(f"The 'pretrain.model.arch' parameter must be 'vit' for finding 01 (an invariance "
                             f"study of vision transformers). Got {cfg.pretrain.model.arch!r} instead.")
    check_pretrain(cfg.pretrain)
    depth = cfg.pretrain.model.depth
    if any(i >= depth for i in cfg.layers):
        raise ParameterError(f"The 'layers' parameter must hold block indices in [0, {depth - 1}] (the ViT has "
                             f"{depth} blocks). Got {list(cfg.layers)!r} instead.")
    if len(layers_of(cfg)) < 2:   # A1 compares the first third of the blocks with the last one
        name, got = ("layers", list(cfg.layers)) if cfg.layers else ("pretrain.model.depth", depth)
        raise ParameterError(f"The {name!r} parameter must give at least 2 blocks to invert (A1 compares the "
                             f"first third of them with the last). Got {got!r} instead.")
    if cfg.images > cfg.target.test:
        raise ParameterError(f"The 'images' parameter must be at most 'target.test' ({cfg.target.test}): the "
                             f"inverted images are test images. Got {cfg.images} instead.")
    return cfg


def layers_of(cfg: InvarianceConfig) -> list[int]:
    return sorted(cfg.layers) if cfg.layers else list(range(cfg.pretrain.model.depth))


def thirds(layers: list[int]) -> tuple[list[int], list[int]]:
    """Positions of the first and the last third of `layers` (at least one layer each)."""
    k = max(1, len(layers) // 3)
    return list(range(k)), list(range(len(layers) - k, len(layers)))


# ---------------------------------------------------------------- results
@dataclass
class Results:
    config: dict
    maps: dict              # seed -> {map name: (layers x layers) list}; names below
    noise: pd.DataFrame     # seed, model, layer, cka of X vs noise features
    residuals: pd.DataFrame  # seed, model, layer, residual, start_loss, failed
    models: pd.DataFrame    # one row per seed: source accuracy, fine-tuned accuracies
    statistics: pd.DataFrame  # seed, statistic, value (diagonal retention, s, sanity gap, ...)
    examples: dict          # originals and seed 0's pt inversions per layer (uint8 NHWC)
    verdicts: pd.DataFrame
    provenance: dict


def run(cfg: InvarianceConfig, progress: bool = True, only_seed: int | None = None) -> Results | None:
    """Compute (or load from the cache) every seed's maps, then the statistics and verdicts (with
    `only_seed`, that seed's maps only, and no results)."""
    seeds = seeds_to_compute(cfg.seeds, only_seed)
    layers = layers_of(cfg)
    with stopwatch() as timer, compute_ledger(compute_origin(cfg.device)) as ledger:   # each cached unit's compute, once
        targets = {name: load_target(dataclasses.replace(cfg.target, name=name)) for name in cfg.targets}
        data = {name: {split: DeviceData.from_arrays(ds, cfg.device) for split, ds in t.items()}
                for name, t in targets.items()}
        images = stir_images(cfg, data[cfg.targets[0]]["test"])
        units = []
        for seed in seeds:   # each seed's control is the next seed's pretrained model
            zoo_run, control = (pretrain(cfg.pretrain, s, cfg.device) for s in (seed, (seed + 1) % cfg.seeds))
            units.append(measure_seed(cfg, zoo_run, control, data, images, layers, progress))
    if only_seed is not None:
        return None
    maps = {u["seed"]: u["maps"] for u in units}
    noise = pd.DataFrame([{"seed": u["seed"], "model": m, "layer": layer, "cka": v}
                          for u in units for m, vals in u["noise"].items() for layer, v in zip(layers, vals)])
    residuals = pd.DataFrame([{"seed": u["seed"], "model": m, "layer": layer, "residual": r, "start_loss": s0,
                               "failed": r > MAX_RESIDUAL}
                              for u in units for m, (res, start) in u["residuals"].items()
                              for layer, r, s0 in zip(layers, res, start)])
    models = pd.DataFrame([{"seed": u["seed"], "source_acc": u["source_acc"], "control_seed": u["control_seed"],
                            **{f"ft_acc[{t}]": a for t, a in u["ft_acc"].items()}} for u in units])
    stats = statistics(maps, layers, cfg.targets)
    return Results(config=to_dict(cfg), maps=maps, noise=noise, residuals=residuals, models=models,
                   statistics=stats, examples=examples(cfg, images, layers),
                   verdicts=verdicts(stats, models, residuals, noise, maps, cfg.targets),
                   provenance=results_provenance(cfg.device, ledger) | {"this_call_s": round(timer["seconds"], 1)})


def stir_images(cfg: InvarianceConfig, test: DeviceData) -> torch.Tensor:
    """X: the first `cfg.images` test images of the first target, float in [0, 1]."""
    return test.images[:cfg.images].float() / 255.0


def unit_dir(cfg: InvarianceConfig):
    """Cache folder of the per-seed results; independent of how many seeds are asked for
    (the control's seed is part of each file name instead)."""
    key = config_hash({k: v for k, v in to_dict(cfg).items() if k not in ("seeds", "device")})
    return cache_root() / "findings" / NAME / key


# ---------------------------------------------------------------- one seed
def finetune(cfg: InvarianceConfig, zoo_run: ZooRun, data: dict[str, DeviceData]) -> tuple[torch.nn.Module, float]:
    """All weights of the final checkpoint, from a fresh head, on one target; test accuracy."""
    torch.manual_seed(zoo_run.seed)
    model = zoo_run.load(zoo_run.checkpoints()[-1]["name"], cfg.device)
    model.reset_classifier(int(data["train"].labels.max().item()) + 1)
    train(model, data["train"], cfg.finetune, seed=zoo_run.seed, desc=f"fine-tune seed {zoo_run.seed}")
    return model, accuracy(model, data["test"])


def cached_inversions(cfg: InvarianceConfig, path, model: torch.nn.Module, images: torch.Tensor,
                      layers: list[int], seed: int, progress: bool) -> Inversions:
    """Inversions of every layer of `model` (the costly part: cached on its own, so an
    interrupted seed resumes at the next model)."""
    def compute() -> dict[str, np.ndarray]:
        quiet = {} if progress else {"disable": True}   # progress=True still honours TQDM_DISABLE
        with tqdm(total=len(layers) * cfg.steps, desc=f"invert {path.stem}", leave=False, mininterval=1.0,
                  **quiet) as bar:
            inv = invert(model, images, layers, representation=cfg.representation, steps=cfg.steps,
                         step_size=cfg.step_size, optimizer=cfg.optimizer, start=cfg.start, seed=seed, progress=bar)
        return {"images": inv.images.cpu().numpy(), "residuals": inv.residuals.numpy(),
                "start_loss": inv.start_loss.numpy()}

    arrays = cached_arrays(path, compute)
    return Inversions(layers, cfg.representation, torch.from_numpy(arrays["images"]).to(images.device),
                      torch.from_numpy(arrays["residuals"]), torch.from_numpy(arrays["start_loss"]))


def measure_seed(cfg: InvarianceConfig, zoo_run: ZooRun, control_run: ZooRun, data: dict, images: torch.Tensor,
                 layers: list[int], progress: bool) -> dict:
    """Every map of one seed (cached): S and C from pt's inversions, R and F per target."""
    seed, folder = zoo_run.seed, unit_dir(cfg)

    def compute() -> dict:
        with stopwatch() as timer:
            final = zoo_run.checkpoints()[-1]
            pt = zoo_run.load(final["name"], cfg.device)
            control = control_run.load(control_run.checkpoints()[-1]["name"], cfg.device)
            inv_pt = cached_inversions(cfg, folder / f"inv-pt-seed{seed}.npz", pt, images, layers, seed, progress)
            maps = {"S": stir_map(pt, images, inv_pt, layers), "C": stir_map(control, images, inv_pt, layers)}
            noise = {"pt": noise_baseline(pt, images, layers, cfg.representation),
                     "pt'": noise_baseline(control, images, layers, cfg.representation)}
            residuals = {"pt": (inv_pt.residual(), inv_pt.start_loss)}
            ft_acc = {}
            for name in cfg.targets:
                ft, ft_acc[name] = finetune(cfg, zoo_run, data[name])
                inv_ft = cached_inversions(cfg, folder / f"inv-ft-{name}-seed{seed}.npz", ft, images, layers, seed,
                                           progress)
                maps[f"R[{name}]"] = stir_map(ft, images, inv_pt, layers)
                maps[f"F[{name}]"] = stir_map(pt, images, inv_ft, layers)
                noise[f"ft[{name}]"] = noise_baseline(ft, images, layers, cfg.representation)
                residuals[f"ft[{name}]"] = (inv_ft.residual(), inv_ft.start_loss)
        return {"seed": seed, "control_seed": control_run.seed, "source_acc": final["source_acc"], "ft_acc": ft_acc,
                "maps": {k: v.tolist() for k, v in maps.items()},
                "noise": {k: v.tolist() for k, v in noise.items()},
                "residuals": {k: (r.tolist(), s.tolist()) for k, (r, s) in residuals.items()},
                "seconds": timer["seconds"]}

    return cached_json(folder / f"seed{seed}-control{control_run.seed}.json", compute)


def examples(cfg: InvarianceConfig, images: torch.Tensor, layers: list[int], n: int = 6) -> dict:
    """A few originals and seed 0's pt inversions of each layer, as uint8 NHWC (for a figure)."""
    path = unit_dir(cfg) / "inv-pt-seed0.npz"
    with np.load(path) as f:
        inverted = f["images"][:, :n]

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)

    return {"original": to_uint8(images[:n].cpu().numpy()),
            **{f"block {layer}": to_uint8(inverted[k]) for k, layer in enumerate(layers)}}


# ---------------------------------------------------------------- statistics
def argmax_shift(matrix: np.ndarray, rows: list[int], layers: list[int]) -> float:
    """s = mean over `rows` i of (i - argmax_j M[i, j]), in blocks: map position k is block
    `layers[k]`, so a subset of blocks keeps CLAIMS.md's unit. NaN if a row holds a NaN (np.argmax
    would pick the NaN's position as the peak)."""
    if not np.isfinite(matrix[rows]).all():
        return float("nan")
    return float(np.mean([layers[i] - layers[int(np.argmax(matrix[i]))] for i in rows]))


def sanity_gap(matrix: np.ndarray, rows: list[int]) -> tuple[float, float]:
    """Over `rows` of S: mean of j >= i (the inversion's own layer onwards) and that minus mean of j < i."""
    upper = np.mean([matrix[i, i:].mean() for i in rows])
    lower = [matrix[i, :i].mean() for i in rows if i > 0]
    return float(upper), float(upper - np.mean(lower)) if lower else float("nan")


def statistics(maps: dict, layers: list[int], targets: tuple) -> pd.DataFrame:
    """Per seed: every statistic the verdicts use (diagonal retention, s, control s, sanity)."""
    first, last = thirds(layers)
    rows = []
    for seed, m in maps.items():
        m = {k: np.asarray(v) for k, v in m.items()}
        upper, gap = sanity_gap(m["S"], last)
        rows += [{"seed": seed, "statistic": "sanity: deep rows of S, j >= i", "value": upper},
                 {"seed": seed, "statistic": "sanity: deep rows of S, (j >= i) - (j < i)", "value": gap},
                 {"seed": seed, "statistic": "s control (pt vs pt')", "value": argmax_shift(m["C"], last, layers)}]
        for name in targets:
            diag = np.diag(m[f"R[{name}]"])
            rows += [{"seed": seed, "statistic": f"A1 retention, first - last third [{name}]",
                      "value": float(diag[first].mean() - diag[last].mean())},
                     {"seed": seed, "statistic": f"s [{name}]", "value": argmax_shift(m[f"R[{name}]"], last, layers)}]
    return pd.DataFrame(rows)


def mean_map(maps: dict, name: str) -> np.ndarray:
    """A map averaged over seeds."""
    return np.mean([np.asarray(m[name]) for m in maps.values()], axis=0)


# ---------------------------------------------------------------- verdicts
def _estimate(stats: pd.DataFrame, statistic: str) -> Estimate:
    return mean_ci(stats.loc[stats["statistic"] == statistic, "value"])


def control_quiet(control: Estimate) -> bool:
    """Whether the control's s lies inside (-0.5, 0.5), its whole CI (from every seed)."""
    return control.decidable and -A2_MAX_CONTROL < control.lo and control.hi < A2_MAX_CONTROL


def verdict_a2(s: Estimate, control: Estimate) -> str:
    """Reproduced: s >= 1 layer (whole CI) while the control's CI lies inside (-0.5, 0.5).
    Not reproduced: s's CI lies below 1. Otherwise (or a control that moves, or an s that is not
    decidable): inconclusive."""
    if not s.decidable:
        return INCONCLUSIVE
    if s.hi < A2_MIN_SHIFT:
        return NOT_REPRODUCED
    if s.lo >= A2_MIN_SHIFT and control_quiet(control):
        return REPRODUCED
    return INCONCLUSIVE


def verdicts(stats: pd.DataFrame, models: pd.DataFrame, residuals: pd.DataFrame, noise: pd.DataFrame, maps: dict,
             targets: tuple) -> pd.DataFrame:
    """A1 and A2 per target, with the sanity and control rows they rest on.

    Every verdict is 'inconclusive' when a pretrained model did not learn, when the sanity
    map shows no invariance the readout can see, when an inversion the verdict reads failed,
    or when a map does not sit clearly above its noise baseline.
    """
    upper = _estimate(stats, "sanity: deep rows of S, j >= i")
    gap = _estimate(stats, "sanity: deep rows of S, (j >= i) - (j < i)")
    control = _estimate(stats, "s control (pt vs pt')")
    matched, resolved = upper.lo >= SANITY_MIN_MATCH, gap.lo > SANITY_MIN_GAP

    def status(ok: bool) -> str:
        return REPRODUCED if ok else INCONCLUSIVE

    rows = [verdict_row("sanity", "deep rows of S = STIR(pt_j | pt_i): mean over j >= i", upper,
                        f">= {SANITY_MIN_MATCH}", status(matched)),
            verdict_row("sanity", "deep rows of S: (j >= i) minus (j < i)", gap, f"> {SANITY_MIN_GAP}",
                        status(resolved)),
            verdict_row("control", "s of C = STIR(pt'_j | pt_i), independently seeded pt'", control,
                        f"|s| < {A2_MAX_CONTROL}", status(control_quiet(control)))]
    for name in targets:
        a1 = _estimate(stats, f"A1 retention, first - last third [{name}]")
        threshold = 2 * a1.sd if np.isfinite(a1.sd) else float("inf")
        rows.append(verdict_row("A1", f"diagonal STIR(ft_i | pt_i), first minus last third of blocks, ft on {name}", a1,
                         f"> 2 SD over seeds ({threshold:.3f})", verdict_above(a1, threshold)))
        s = _estimate(stats, f"s [{name}]")
        rows.append(verdict_row("A2", f"s = mean over deep i of i - argmax_j STIR(ft_j | pt_i), ft on {name}", s,
                         f">= {A2_MIN_SHIFT:g} layer, control |s| < {A2_MAX_CONTROL}", verdict_a2(s, control)))
    table = pd.DataFrame(rows).assign(note="")
    findings_rows = table["claim"].isin(["A1", "A2"])
    reasons = caveats(models, residuals, noise, maps, matched and resolved)
    if reasons:
        table.loc[findings_rows, "verdict"] = INCONCLUSIVE
        table.loc[findings_rows, "note"] = "; ".join(reasons)
    if not control_quiet(control):   # A2 reads s against the control; A1 does not
        a2 = table["claim"] == "A2"
        table.loc[a2, "note"] = [f"{note}; " * bool(note) + "the control's s is not inside "
                                 f"(-{A2_MAX_CONTROL}, {A2_MAX_CONTROL})" for note in table.loc[a2, "note"]]
    return table


def caveats(models: pd.DataFrame, residuals: pd.DataFrame, noise: pd.DataFrame, maps: dict,
            sanity_ok: bool) -> list[str]:
    """Why A1/A2 cannot be read as evidence, if they cannot (empty when they can)."""
    reasons = []
    if (models["source_acc"] < MIN_SOURCE_ACC).any():
        reasons.append(f"a pretraining run ended below {MIN_SOURCE_ACC:.0%} source accuracy")
    if not sanity_ok:
        reasons.append("the sanity map shows no invariance the readout can see")
    failed = residuals[residuals["failed"]]
    if len(failed):
        where = ", ".join(sorted({f"{r.model} block {r.layer}" for r in failed.itertuples()}))
        reasons.append(f"inversions with residual > {MAX_RESIDUAL} ({where})")
    floor = noise.groupby("model")["cka"].max()
    for name in next(iter(maps.values())):
        readout_model = {"S": "pt", "C": "pt'"}.get(name, "pt" if name.startswith("F") else f"ft{name[1:]}")
        if mean_map(maps, name).mean() < floor.get(readout_model, -np.inf) + NOISE_MIN_MARGIN:
            reasons.append(f"map {name} is within {NOISE_MIN_MARGIN} of its noise baseline")
    return reasons
