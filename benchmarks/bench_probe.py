"""Linear probe: `transferlab.probe.fit_linear_probe` vs scikit-learn's LogisticRegression
over the same C grid, picked on the same validation split, on the host CPU (the study's probe
never runs on a GPU, so a CUDA run skips it).

Two baselines, each C refit from scratch with lbfgs. "standardised": features standardised as
ours are, the same problem, which isolates the warm start; its target is the issue's, the same
test accuracy within 0.5 pp (and not slower). "raw": the scikit-learn default a user reaches
for, on unstandardised features, a different problem (C means a different amount of
regularisation, and lbfgs converges slowly on scales 100x apart), so no target: it shows what
standardising saves. The raw baseline takes minutes, so it is timed once, cold. Ours
standardises the features and warm-starts each C from the previous solution. The features
imitate pooled post-ReLU activations: non-negative, class-structured, with per-feature scales
spread over two orders of magnitude.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from transferlab.probe import fit_linear_probe

from .common import case, compare

DEVICES = ("cpu",)   # the runner skips this benchmark on other devices
CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)   # chapter 04's grid


def synthetic_features(n: int, dim: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ReLU(W z + b) * scale with z drawn around one centre per class (about 85-95% probe accuracy)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (classes, 16))
    y = rng.integers(0, classes, n)
    z = centres[y] + rng.normal(0, 0.9, (n, 16))
    w, b = rng.normal(0, 1, (16, dim)), rng.normal(0, 0.5, dim)
    scale = 10 ** rng.uniform(-1, 1, dim)
    return np.maximum(z @ w + b, 0) * scale, y


def naive_probe(xs: np.ndarray, ys: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                Cs: tuple[float, ...], max_iter: int = 1000, standardise: bool = False) -> LogisticRegression:
    """One default LogisticRegression per C (optionally on standardised features); the best on validation."""
    if standardise:
        mean, std = xs.mean(0), xs.std(0) + 1e-6
        xs, xv = (xs - mean) / std, (xv - mean) / std
    best, best_acc = None, -1.0
    for C in Cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C, max_iter=max_iter).fit(xs, ys)
        acc = float((clf.predict(xv) == yv).mean())
        if acc > best_acc:
            best, best_acc = clf, acc
    return best


def run(quick: bool, device: str) -> dict:
    dim, sizes, Cs = (16, (200, 100, 200), CS[2:4]) if quick else (128, (1000, 500, 3500), CS)
    max_iter = 100 if quick else 1000   # both probes: the library's default is 1000
    x, y = synthetic_features(sum(sizes), dim)
    cut = np.cumsum(sizes)
    (xs, xv, xt), (ys, yv, yt) = np.split(x, cut[:-1]), np.split(y, cut[:-1])
    cases = []
    for standardise in (False, True):
        found: dict = {}

        def ours() -> None:
            found["ours"] = fit_linear_probe(xs, ys, xv, yv, Cs, max_iter=max_iter)

        def baseline() -> None:
            found["baseline"] = naive_probe(xs, ys, xv, yv, Cs, max_iter, standardise)

        slow = not standardise   # the raw baseline takes minutes per run: timed once, cold
        ours_m, base_m = compare(ours, baseline, "cpu", repeats=1 if quick or slow else 3, warmup=not (quick or slow))
        acc_ours = found["ours"].accuracy(xt, yt)
        mean, std = (xs.mean(0), xs.std(0) + 1e-6) if standardise else (0.0, 1.0)
        acc_base = float((found["baseline"].predict((xt - mean) / std) == yt).mean())
        # images/s: train + val images fitted per second over the whole grid
        cases.append(case(f"{dim}d_{'standardised' if standardise else 'raw'}",
                          f"probe over {len(Cs)} values of C, {sizes[0]} train images",
                          ours_m, base_m, items=sizes[0] + sizes[1], device="cpu", target=1.0 if standardise else None,
                          test_acc_ours=round(acc_ours, 4), test_acc_baseline=round(acc_base, 4),
                          acc_diff_pp=round(100 * (acc_ours - acc_base), 2),
                          acc_agrees=abs(acc_ours - acc_base) <= 0.005, C_ours=found["ours"].C,
                          C_baseline=float(found["baseline"].C), feature_dim=dim, Cs=list(Cs)))
    return {"cases": cases, "notes": __doc__.strip()}
