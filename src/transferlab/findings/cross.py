"""Cross-findings: every finding's headline statistic on one axis, the pretraining epoch.

None of the four papers could do this, since each used its own models. For every pretraining
run (seed) of the shared ResNet zoo and each of its checkpoints (chapter 03's which-checkpoint
epochs plus the final one), each statistic comes from its finding's own code and cache:

- 02: FE and FT accuracy (`fe_vs_ft.measure_checkpoint`, the units chapter 02 caches);
- 03: P-T minus RI-T accuracy on the unshuffled target (`feature_reuse.tuned_units`, the runs
  chapter 03 caches, each at the lr of its grid best on validation) and the P-T/P-T error barrier
  (chapter 03's analysis for the final checkpoint, a second P-T run and the same path for earlier ones);
- 04: LP - FT and LP-FT - FT accuracy averaged over the covered shifts
  (`lpft_ood.measure_seed` from that checkpoint of the shared zoo);
- 01: the compression statistic s and shallow retention of STIR(ft | pt), pt the checkpoint and
  ft its P-T run (finding 01's inversions and statistics helpers, on the ResNet's stem and blocks).

Then Spearman correlations between the statistics over all (seed, checkpoint) points, with
percentile-bootstrap CIs, and the relations pre-registered in RELATIONS.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..cache import cache_root, cached_json, compute_ledger
from ..config import Int, ParameterError, PretrainConfig, config_hash, field_paths, param, resolve_config, to_dict
from ..data.device import DeviceData
from ..data.shifts import COVERED, SHIFTS
from ..data.store import load_target
from ..metrics.landscape import error_along_path, loss_barrier
from ..metrics.stir import noise_baseline, num_layers, stir_map
from ..models import create_model
from ..provenance import compute_origin, results_provenance, stopwatch
from ..stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, mean_ci
from ..train import channels_last, load_weights
from ..zoo import ZooRun, pretrain
from . import fe_vs_ft, feature_reuse, invariance, lpft_ood, seeds_to_compute
from .feature_reuse import IMAGE_SIZE, FeatureReuseConfig, TargetData
from .fe_vs_ft import FeVsFtConfig
from .invariance import InvarianceConfig
from .lpft_ood import LpFtConfig

NAME = "cross"
COVERED_SHIFTS = tuple(s for s in lpft_ood.DEFAULT_SHIFTS if SHIFTS[s].kind == COVERED)

# Every statistic on the epoch axis: column -> label (finding in brackets).
STATISTICS = {"fe_acc": "FE accuracy [02]", "ft_acc": "FT accuracy [02]",
              "pt_gap": "P-T − RI-T accuracy [03]", "barrier": "P-T/P-T error barrier [03]",
              "lp_ood_gap": "LP − FT, OOD covered [04]", "lpft_ood_gain": "LP-FT − FT, OOD covered [04]",
              "s": "compression s, layers [01]", "retention": "shallow retention [01]"}
AXES = {"epoch": "pretraining epoch", **STATISTICS}


@dataclass(frozen=True)
class CrossConfig:
    """The four findings' configs on the shared zoo, plus what the cross analysis adds."""

    fe_vs_ft: FeVsFtConfig = field(default_factory=FeVsFtConfig)
    feature_reuse: FeatureReuseConfig = field(default_factory=FeatureReuseConfig)
    lpft_ood: LpFtConfig = field(default_factory=LpFtConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    seeds: int = param(3, Int(1, 100))
    bootstrap: int = param(2_000, Int(100, 1_000_000))   # resamples for the correlation CIs
    device: str = "auto"


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: exercises every code path; the relations are expected to be inconclusive.
    "ci": {"invariance.images": 16, "invariance.steps": 10, "bootstrap": 500},
    # 2 CPU cores: small grids for FT and LP-FT. Chapter 04's winners were FT 0.1 in 2 of 3 seeds and LP-FT
    # 3e-4 in all 3, chapter 02 found FT 0.3 best for early checkpoints, and a first cpu trial from epoch 1 with
    # LP-FT at 3e-4 alone fell far below its own LP start, so LP-FT also gets 1e-4. 64 images x 150 Adam steps
    # per inverted layer (chapter 01 uses 200; ResNet residuals were ~2e-4 in that trial and are reported).
    "cpu": {"lpft_ood.ft_lrs": (0.1, 0.3), "lpft_ood.lpft_lrs": (1e-4, 3e-4), "invariance.images": 64,
            "invariance.steps": 150},
    # One GPU: more images and steps for STIR; for FT and LP-FT from each of the 7 checkpoints, 3-point
    # grids and 5 epochs (chapter 04's 4-point grids and 10 epochs were an estimated 3.5 min of the study's
    # 10-minute budget), centred on what the first gpu run picked for the same ResNet-20: FT 0.03, the bottom
    # of chapter 02's [0.03, 0.1, 0.3] in 45 of 45 runs; LP-FT 1e-3, the top of chapter 04's grid in 5 of 5.
    "gpu": {"lpft_ood.ft_lrs": (0.01, 0.03, 0.1), "lpft_ood.lpft_lrs": (3e-4, 1e-3, 3e-3),
            "lpft_ood.finetune.epochs": 5, "invariance.images": 256, "invariance.steps": 400, "bootstrap": 5_000},
}
# Short papermill/CLI names of the cross analysis' own parameters.
ALIASES = {"stir_images": "invariance.images", "stir_steps": "invariance.steps"}
# config()'s own parameters, which reach every finding's config (listed when a name is unknown).
ZOO_PARAMETERS = ("pretrain_epochs", "source_size", "width", "depth", "checkpoint_epochs")


def config(profile: str = "cpu", seeds: int | None = None, pretrain_epochs: int | None = None,
           source_size: int | None = None, width: int | None = None, depth: int | None = None,
           checkpoint_epochs: tuple | None = None, device: str = "auto", **params: Any) -> CrossConfig:
    """The findings' configs of `profile` on the shared zoo, with the zoo parameters passed to each
    (so their cached units are found) and the cross analysis' own `params` applied. Any other
    pretraining setting is given as 'pretrain.<name>' and likewise reaches all four findings."""
    pretraining = {k: v for k, v in params.items() if k.startswith("pretrain.")}
    params = {k: v for k, v in params.items() if k not in pretraining}
    zoo = {"seeds": seeds, "pretrain_epochs": pretrain_epochs, "source_size": source_size, "width": width,
           "depth": depth, "device": device, **pretraining}
    fe = fe_vs_ft.config(profile, **zoo)
    reuse = feature_reuse.config(profile, checkpoint_epochs=checkpoint_epochs, **zoo)
    lpft = dataclasses.replace(lpft_ood.config(profile, seeds=seeds, shifts=COVERED_SHIFTS, device=device),
                               pretrain=fe.pretrain)
    inv = InvarianceConfig(pretrain=fe.pretrain, target=reuse.target, targets=(reuse.target.name,),
                           finetune=reuse.finetune, device=fe.device)
    default = CrossConfig(fe_vs_ft=fe, feature_reuse=reuse, lpft_ood=lpft, invariance=inv, seeds=fe.seeds,
                          device=device)
    cfg = resolve_config(default, PROFILES, profile, params, finding="the cross-findings chapter", aliases=ALIASES,
                         short_names=(*ZOO_PARAMETERS, "pretrain.<name>"), unlisted=".pretrain.")
    check_one_zoo(cfg, fe.pretrain)
    if cfg.invariance.images > reuse.target.test:
        raise ParameterError(f"The 'stir_images' parameter must be at most target.test ({reuse.target.test}): the "
                             f"inverted images are test images. Got {cfg.invariance.images} instead.")
    return cfg


def check_one_zoo(cfg: CrossConfig, zoo: PretrainConfig) -> None:
    """Refuse a pretraining setting given to one finding alone ('lpft_ood.pretrain.<name>'): `run`
    reads every finding on one zoo, so that finding's cached units would name a zoo they were not
    fine-tuned from."""
    for name in ("fe_vs_ft", "feature_reuse", "lpft_ood", "invariance"):
        own = getattr(cfg, name).pretrain
        for path in field_paths(own):
            value = functools.reduce(getattr, path.split("."), own)
            if value != functools.reduce(getattr, path.split("."), zoo):
                raise ParameterError(f"The '{name}.pretrain.{path}' parameter cannot be set for one finding: the "
                                     f"cross-findings chapter reads all four on one pretraining zoo; set "
                                     f"'pretrain.{path}' (all four). Got {value!r} instead.")


# ---------------------------------------------------------------- results
@dataclass
class Results:
    config: dict
    table: pd.DataFrame          # one row per (seed, checkpoint): every statistic and its details
    summary: pd.DataFrame        # per checkpoint: mean and 95% CI over seeds of every statistic
    correlations: pd.DataFrame   # per pair of axes: Spearman rho over (seed, checkpoint), bootstrap CI
    verdicts: pd.DataFrame       # the pre-registered relations
    provenance: dict


@dataclass
class Data:
    """The target sets of the three findings whose units are reused, on the device."""

    fe_vs_ft: dict[str, DeviceData]
    reuse: TargetData
    lpft: dict[str, DeviceData]
    ood: dict[str, DeviceData]


def load_data(cfg: CrossConfig) -> Data:
    """Each finding's target splits exactly as its own run loads them (so its units' keys match)."""
    fe = {split: DeviceData.from_arrays(ds, cfg.device) for split, ds in load_target(cfg.fe_vs_ft.target).items()}
    lpft, ood = lpft_ood.evaluation_sets(cfg.lpft_ood)
    return Data(fe, TargetData(cfg.feature_reuse), lpft, ood)


def run(cfg: CrossConfig, progress: bool = True, only_seed: int | None = None) -> Results | None:
    """Measure (or load) every statistic per seed and checkpoint, then correlations and verdicts (with
    `only_seed`, that seed's statistics only, and no results)."""
    seeds = seeds_to_compute(cfg.seeds, only_seed)
    with stopwatch() as timer, compute_ledger(compute_origin(cfg.device)) as ledger:   # each cached unit's compute, once
        data = load_data(cfg)
        rows = []
        for seed in seeds:
            zoo_run = pretrain(cfg.fe_vs_ft.pretrain, seed, cfg.device)
            for meta in checkpoints(cfg, zoo_run):
                rows.append(measure_checkpoint(cfg, zoo_run, meta, data, progress))
    if only_seed is not None:
        return None
    table = pd.DataFrame(rows)
    correlations = correlation_table(table, cfg.bootstrap)
    return Results(config=to_dict(cfg), table=table, summary=summarise(table), correlations=correlations,
                   verdicts=verdicts(table, correlations),
                   provenance=results_provenance(cfg.device, ledger) | {"this_call_s": round(timer["seconds"], 1)})


def checkpoints(cfg: CrossConfig, zoo_run: ZooRun) -> list[dict]:
    """Chapter 03's which-checkpoint epochs and the final checkpoint, by epoch."""
    metas = zoo_run.checkpoints()
    by_name = {m["name"]: m for m in metas}
    return [*(by_name[f"ep{e:g}"] for e in sorted(cfg.feature_reuse.checkpoint_epochs)), metas[-1]]


# ---------------------------------------------------------------- one (seed, checkpoint)
def measure_checkpoint(cfg: CrossConfig, zoo_run: ZooRun, meta: dict, data: Data, progress: bool) -> dict:
    """Every statistic of one checkpoint."""
    name, seed, reuse = meta["name"], zoo_run.seed, cfg.feature_reuse
    fe = fe_vs_ft.measure_checkpoint(cfg.fe_vs_ft, zoo_run, meta, data.fe_vs_ft)
    # two P-T runs at the lr best on validation: the first for the accuracy gap and STIR, both for the barrier
    pts, _ = feature_reuse.tuned_units(reuse, zoo_run, data.reuse, "pt", IMAGE_SIZE, replicas=2, checkpoint=name)
    best_pt = pts[0]
    (rit,), _ = feature_reuse.tuned_units(reuse, zoo_run, data.reuse, "ri", IMAGE_SIZE)
    barrier = barrier_unit(cfg, zoo_run, data.reuse, name, pts)
    lpft = lpft_ood.measure_seed(cfg.lpft_ood, zoo_run, data.lpft, data.ood, name)
    stir = stir_unit(cfg, zoo_run, data.reuse, name, best_pt, progress)
    acc = lpft["accuracy"]
    shifts = list(cfg.lpft_ood.shifts)
    row = {"seed": seed, "checkpoint": name, "epoch": float(meta["epoch"]), "source_acc": meta["source_acc"],
           "fe_acc": fe["fe_acc"], "ft_acc": fe["ft_acc"],
           "pt_acc": best_pt["test_acc"], "rit_acc": rit["test_acc"], "pt_gap": best_pt["test_acc"] - rit["test_acc"],
           "barrier": barrier["barrier"],
           "lp_ood_gap": float(np.mean([acc["LP"][s] - acc["FT"][s] for s in shifts])),
           "lpft_ood_gain": float(np.mean([acc["LP-FT"][s] - acc["FT"][s] for s in shifts])),
           "s": stir["s"], "retention": stir["retention"], "sanity_gap": stir["sanity_gap"],
           "stir_residual": stir["residual"], "stir_layers": len(stir["layers"])}
    return row


def _cross_dir(kind: str, parts: dict) -> Any:
    return cache_root() / "findings" / NAME / kind / config_hash(parts)


def barrier_unit(cfg: CrossConfig, zoo_run: ZooRun, data: TargetData, name: str, pts: list[dict]) -> dict:
    """Error barrier on the straight line between two P-T runs `pts` (fine-tuning seeds) from checkpoint
    `name`, as in chapter 03: its cached analysis for the final checkpoint, the same path otherwise."""
    reuse = cfg.feature_reuse
    if name == zoo_run.checkpoints()[-1]["name"] and IMAGE_SIZE in reuse.analysis_blocks:
        rits, _ = feature_reuse.tuned_units(reuse, zoo_run, data, "ri", IMAGE_SIZE, replicas=2)
        units = {("pt", r): u for r, u in enumerate(pts)} | {("ri", r): u for r, u in enumerate(rits)}
        analysis = feature_reuse.analyse_block(reuse, zoo_run, data, IMAGE_SIZE, units)
        return {"barrier": analysis["paths"]["P-T/P-T"]["barrier"]}
    return path_barrier(cfg, zoo_run, data, name, pts)


def path_barrier(cfg: CrossConfig, zoo_run: ZooRun, data: TargetData, name: str, pts: list[dict]) -> dict:
    """Chapter 03's barrier measurement (same evaluation images, BN recompute and path points) for two
    P-T runs from checkpoint `name` (cached)."""
    reuse = cfg.feature_reuse
    parts = {"train": feature_reuse.train_key(reuse), "eval_images": reuse.eval_images,
             "bn_batches": reuse.bn_batches, "interp_points": reuse.interp_points}
    path = _cross_dir("barrier", parts) / f"{name}-seed{zoo_run.seed}-lr{pts[0]['lr']:g}.json"

    def compute() -> dict:
        with stopwatch() as timer:
            d = data[IMAGE_SIZE]
            states = [load_weights(feature_reuse.unit_dir(reuse, u) / "final.safetensors") for u in pts]
            model = create_model(reuse.pretrain.model, int(d["train"].labels.max().item()) + 1).to(reuse.device)
            model = channels_last(model)
            model.load_state_dict(states[0])
            eval_data = DeviceData(d["test"].images[:reuse.eval_images], d["test"].labels[:reuse.eval_images])
            _, errors = error_along_path(model, states[0], states[1], eval_data, d["train"], reuse.interp_points,
                                         bn_batches=reuse.bn_batches, batch_size=feature_reuse.eval_batch(reuse.device))
        return {"barrier": loss_barrier(errors), "error": errors.tolist(), "seconds": timer["seconds"]}

    return cached_json(path, compute)


STIR_FIELDS = ("images", "representation", "steps", "step_size", "optimizer", "start")


def stir_unit(cfg: CrossConfig, zoo_run: ZooRun, data: TargetData, name: str, ft_run: dict,
              progress: bool) -> dict:
    """Finding 01's statistics between checkpoint `name` (pt) and its P-T run `ft_run` (ft), over the
    ResNet's stem and blocks: s and shallow retention of R = STIR(ft | pt), the sanity gap of
    S = STIR(pt | pt), the noise floor of ft's readout and the worst layer's inversion residual (cached)."""
    reuse, inv, seed = cfg.feature_reuse, cfg.invariance, zoo_run.seed
    folder = _cross_dir("stir", {"train": feature_reuse.train_key(reuse),
                                 **{k: to_dict(inv)[k] for k in STIR_FIELDS}})

    def compute() -> dict:
        with stopwatch() as timer:
            pt = zoo_run.load(name, inv.device)
            d = data.plain
            ft = create_model(reuse.pretrain.model, int(d["train"].labels.max().item()) + 1).to(inv.device)
            ft.load_state_dict(load_weights(feature_reuse.unit_dir(reuse, ft_run) / "final.safetensors"))
            images = invariance.stir_images(inv, d["test"])
            layers = list(range(num_layers(pt)))
            inverted = invariance.cached_inversions(inv, folder / f"inv-pt-{name}-seed{seed}.npz", pt, images,
                                                    layers, seed, progress)
            retained = stir_map(ft, images, inverted, layers).cpu().numpy()
            sanity = stir_map(pt, images, inverted, layers).cpu().numpy()
            noise = noise_baseline(ft, images, layers, inv.representation).cpu().numpy()
        first, last = invariance.thirds(layers)
        diagonal = np.diag(retained)
        return {"layers": layers, "R": retained.tolist(), "S": sanity.tolist(), "noise": noise.tolist(),
                "s": invariance.argmax_shift(retained, last, layers),
                "retention": float(diagonal[first].mean() - diagonal[last].mean()),
                "sanity_gap": invariance.sanity_gap(sanity, last)[1],
                "residual": float(inverted.residual().max()), "seconds": timer["seconds"]}

    return cached_json(folder / f"{name}-seed{seed}-lr{ft_run['lr']:g}.json", compute)


# ---------------------------------------------------------------- tables
def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint: mean and 95% CI over seeds of source accuracy and every statistic."""
    out = []
    for (name, epoch), group in table.groupby(["checkpoint", "epoch"], sort=False):
        row = {"checkpoint": name, "epoch": epoch}
        for col in ("source_acc", *STATISTICS, "sanity_gap", "stir_residual"):
            est = mean_ci(group[col])
            row |= {col: est.mean, f"{col}_lo": est.lo, f"{col}_hi": est.hi}
        out.append(row)
    return pd.DataFrame(out).sort_values("epoch").reset_index(drop=True)


def spearman_bootstrap(x, y, resamples: int, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho of paired points and its percentile-bootstrap CI (points resampled with
    replacement). NaN when x or y is constant; the CI is NaN when more resamples than one tail's
    share have a constant x or y (rho undefined there): dropping them would keep only the
    resamples that contain the few differing points and make the interval look decisive."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
        ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (ra * rb).sum(-1) / np.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))

    point = float(rho(x, y))
    if not np.isfinite(point):
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    boot = rho(x[idx], y[idx])
    tail = (1 - confidence) / 2
    if np.mean(~np.isfinite(boot)) > tail:
        return point, float("nan"), float("nan")
    boot = boot[np.isfinite(boot)]
    return point, float(np.percentile(boot, 100 * tail)), float(np.percentile(boot, 100 * (1 - tail)))


NO_CI = "no CI (a statistic is (nearly) constant)"


def reading(lo: float, hi: float) -> str:
    """What a correlation's CI says, without a threshold chosen after the fact."""
    if not np.isfinite(lo):
        return NO_CI
    return "positive" if lo > 0 else "negative" if hi < 0 else "CI includes 0"


# With two seeds a checkpoint's deviations from its mean are +d and -d: every pair would look perfectly
# (anti-)correlated. The within-checkpoint view needs at least this many seeds.
MIN_WITHIN_SEEDS = 3


def correlation_table(table: pd.DataFrame, resamples: int) -> pd.DataFrame:
    """Spearman rho with a 95% bootstrap CI for every pair of the epoch and the statistics, over all
    (seed, checkpoint) points; and 'within checkpoints', over the deviations of each point from its
    checkpoint's mean (seed-to-seed co-variation, with the shared trend over epochs removed)."""
    names = list(AXES)
    within = table[names] - table.groupby("checkpoint")[names].transform("mean")
    enough = table.groupby("checkpoint")["seed"].nunique().min() >= MIN_WITHIN_SEEDS
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rho, lo, hi = spearman_bootstrap(table[a], table[b], resamples)
            w_rho, w_lo, w_hi = (spearman_bootstrap(within[a], within[b], resamples) if enough
                                 else (float("nan"),) * 3)
            rows.append({"x": a, "y": b, "rho": rho, "lo": lo, "hi": hi, "n": len(table), "reading": reading(lo, hi),
                         "rho_within": w_rho, "lo_within": w_lo, "hi_within": w_hi,
                         "reading_within": reading(w_lo, w_hi) if enough else f"needs >= {MIN_WITHIN_SEEDS} seeds"})
    return pd.DataFrame(rows)


def correlation_matrix(correlations: pd.DataFrame) -> pd.DataFrame:
    """The correlations as a symmetric labelled matrix (1 on the diagonal), for a heatmap."""
    labels = list(AXES)
    m = pd.DataFrame(np.eye(len(labels)), index=labels, columns=labels)
    for r in correlations.itertuples():
        m.loc[r.x, r.y] = m.loc[r.y, r.x] = r.rho
    return m.rename(index=AXES, columns=AXES)


# ---------------------------------------------------------------- pre-registered relations
# Written down before any cpu result was seen (the chapter states them before its first compute
# cell). Each is a sign of Spearman's rho over all (seed, checkpoint) points: 'reproduced' when the
# whole 95% bootstrap CI is on the expected side of 0, 'not reproduced' when it is wholly on the
# other side (or at 0), 'inconclusive' otherwise.
RELATIONS = (
    ("X1", "fe_acc", "lp_ood_gap", +1,
     "02 x 04: better frozen features make LP more competitive with FT out of distribution"),
    ("X2", "fe_acc", "pt_gap", +1,
     "02 x 03: better frozen features give fine-tuning from them a larger lead over random init"),
    ("X3", "barrier", "pt_gap", -1,
     "03: checkpoints whose fine-tuned runs share a basin (low barrier) transfer better"),
    ("X4", "epoch", "s", +1,
     "01: longer pretraining builds deeper invariances for fine-tuning to compress (s grows)"),
)
MIN_SOURCE_ACC = 0.5   # as every chapter: a final model below this did not learn, no evidence either way


def relation_verdict(lo: float, hi: float, sign: int) -> str:
    if not np.isfinite(lo):
        return INCONCLUSIVE
    lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
    return REPRODUCED if lo > 0 else NOT_REPRODUCED if hi <= 0 else INCONCLUSIVE


def verdicts(table: pd.DataFrame, correlations: pd.DataFrame) -> pd.DataFrame:
    """X1-X4. All 'inconclusive' when a final pretrained model stayed below MIN_SOURCE_ACC; X4 also
    when the sanity map shows no invariance the readout can see (chapter 01's SANITY_MIN_GAP)."""
    pairs = {(r.x, r.y): r for r in correlations.itertuples()}
    rows = []
    for claim, x, y, sign, why in RELATIONS:
        r = pairs.get((x, y)) or pairs[(y, x)]   # rho is symmetric; the table holds each pair once
        rows.append({"claim": claim, "relation": why, "statistic": f"Spearman({AXES[x]}, {AXES[y]})",
                     "value (95% bootstrap CI)": format_rho(r.rho, r.lo, r.hi),
                     "threshold": "CI > 0" if sign > 0 else "CI < 0",
                     "verdict": relation_verdict(r.lo, r.hi, sign),
                     "note": "" if np.isfinite(r.lo) else "no CI: a statistic is (nearly) constant over the points"})
    out = pd.DataFrame(rows)
    if table["sanity_gap"].mean() <= invariance.SANITY_MIN_GAP:
        out.loc[out["claim"] == "X4", ["verdict", "note"]] = [
            INCONCLUSIVE, f"STIR sanity gap {table['sanity_gap'].mean():.2f} <= {invariance.SANITY_MIN_GAP}"]
    final = table[table["epoch"] == table.groupby("seed")["epoch"].transform("max")]
    if (final["source_acc"] < MIN_SOURCE_ACC).any():
        out["verdict"] = INCONCLUSIVE
        out["note"] = f"a pretraining run ended below {MIN_SOURCE_ACC:.0%} source accuracy"
    return out


# ---------------------------------------------------------------- text from the numbers
def format_rho(rho: float, lo: float, hi: float) -> str:
    """'+0.80 [+0.44, +0.95]', '-0.40 (no CI)' where the interval is undefined, or 'undefined' where
    rho is (the epoch within one checkpoint, say, is constant)."""
    if not np.isfinite(rho):
        return "undefined"
    return f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) else f"{rho:+.2f} (no CI)"


def _fmt(r) -> str:
    return format_rho(r.rho, r.lo, r.hi)


def epoch_trends(correlations: pd.DataFrame) -> dict[str, list[str]]:
    """Each statistic's Spearman rho with the pretraining epoch, grouped by its reading."""
    out: dict[str, list[str]] = {}
    for r in correlations[correlations["x"] == "epoch"].itertuples():
        out.setdefault(r.reading, []).append(f"{STATISTICS[r.y]} ({_fmt(r)})")
    return out


def discussion(results: Results) -> str:
    """A few Markdown bullets on which relations hold, written from the numbers (nothing typed by hand)."""
    corr, table, verdicts_ = results.correlations, results.table, results.verdicts
    trends = epoch_trends(corr)
    trending = set(corr[(corr["x"] == "epoch") & (corr["reading"] != "CI includes 0")]["y"])
    pairs = corr[corr["x"] != "epoch"]
    clear = pairs[pairs["reading"].isin(["positive", "negative"])]
    shared = clear[clear["x"].isin(trending) & clear["y"].isin(trending)]
    within = pairs[pairs["reading_within"].isin(["positive", "negative"])]
    seeds, ckpts = table["seed"].nunique(), table["checkpoint"].nunique()
    lines = [f"- **Data.** {len(table)} points: {seeds} pretraining seeds x {ckpts} checkpoints "
             f"({', '.join(sorted(table['checkpoint'].unique(), key=lambda n: float(n[2:])))}). Spearman CIs resample "
             "points as if independent; checkpoints of one run share a seed, so the intervals are optimistic."]
    for label, key in (("Rise with pretraining", "positive"), ("Fall with pretraining", "negative"),
                       ("No clear trend with pretraining (CI includes 0)", "CI includes 0"),
                       ("No interval (the statistic takes almost one value)", NO_CI)):
        if trends.get(key):
            lines.append(f"- **{label}:** " + "; ".join(trends[key]) + ".")
    listed = "; ".join(f"{STATISTICS[r.x]} vs {STATISTICS[r.y]} {_fmt(r)}"
                       for r in clear.reindex(clear["rho"].abs().sort_values(ascending=False).index).itertuples())
    lines.append(f"- **Between statistics:** {len(clear)} of {len(pairs)} pairs have a CI that excludes 0"
                 + (f" ({listed})" if listed else "") + f". {len(shared)} of these pair two statistics that both "
                 "trend with the epoch, so they may only share that trend.")
    kept = "; ".join(f"{STATISTICS[r.x]} vs {STATISTICS[r.y]} {format_rho(r.rho_within, r.lo_within, r.hi_within)}"
                     for r in within.itertuples())
    if seeds < MIN_WITHIN_SEEDS:
        lines.append(f"- **Within checkpoints:** not computed; it needs at least {MIN_WITHIN_SEEDS} seeds.")
    else:
        lines.append(f"- **Within checkpoints** (seed-to-seed, the epoch trend removed): {len(within)} pair(s) with "
                     f"a CI that excludes 0{': ' + kept if kept else ''}. With {seeds} seeds per checkpoint this view "
                     "has little power; an empty list is no evidence of independence.")
    counts = verdicts_["verdict"].value_counts()
    lines.append("- **Pre-registered relations:** " + ", ".join(f"{n} {v}" for v, n in counts.items()) + " ("
                 + "; ".join(f"{r.claim} {r.verdict}" for r in verdicts_.itertuples()) + ").")
    failed = int((table["stir_residual"] > invariance.MAX_RESIDUAL).sum())
    lines.append(f"- **STIR caveats:** mean sanity gap of S over the deepest layers {table['sanity_gap'].mean():.2f} "
                 f"(chapter 01 needs > {invariance.SANITY_MIN_GAP}); the worst inversion residual exceeds "
                 f"{invariance.MAX_RESIDUAL} in {failed} of {len(table)} units. With {table['stir_layers'].iloc[0]} "
                 "STIR layers (stem and blocks) s is a mean over few deep layers of integer shifts: a coarse statistic.")
    return "\n".join(lines)
