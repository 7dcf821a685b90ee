"""The two-layer linear model of Kumar et al. (ICLR 2022), Section 3: why fine-tuning distorts features.

Targets are y = v*ᵀ B* x. Pretraining gives features B0 = B* + (error of relative size eps).
The ID training inputs lie in a subspace S of the input space; OOD inputs are isotropic and
so have components in S⊥. Gradient descent on (v, B) moves B only along S, because
∂L/∂B = v (Xᵀ r)ᵀ / n and Xᵀ r lies in S: features of S⊥ never move (ΔB P_S⊥ = 0), the head
adapts to the moved ID features and then mismatches the unmoved OOD ones. A linear probe
(LP) keeps B0, so its OOD error vanishes with eps; LP-FT starts from the LP head, is
already near a minimum, and barely moves B.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ToyProblem:
    B_star: np.ndarray   # (k, d), orthonormal rows: the ideal features
    v_star: np.ndarray   # (k,), unit norm: the ideal head
    S: np.ndarray        # (d, m), orthonormal basis of the ID input subspace
    X: np.ndarray        # (n, d) ID training inputs, each in span(S)
    y: np.ndarray        # (n,) noiseless labels v*ᵀ B* x

    @property
    def P_perp(self) -> np.ndarray:
        """Projection onto S⊥, the input directions no ID training input has."""
        return np.eye(self.S.shape[0]) - self.S @ self.S.T


def make_problem(d: int = 20, k: int = 4, m: int = 8, n: int = 40, seed: int = 0) -> ToyProblem:
    """A random instance: k features of d inputs; n ID inputs spanning an m-dimensional S (k <= m < d)."""
    if not k <= m < d or n < m:
        raise ValueError(f"The sizes must satisfy k <= m < d and n >= m. Got d={d}, k={k}, m={m}, n={n} instead.")
    rng = np.random.default_rng(seed)
    B_star = np.linalg.qr(rng.normal(size=(d, k)))[0].T
    v_star = rng.normal(size=k)
    v_star /= np.linalg.norm(v_star)
    S = np.linalg.qr(rng.normal(size=(d, m)))[0]
    X = rng.normal(size=(n, m)) @ S.T
    return ToyProblem(B_star, v_star, S, X, X @ B_star.T @ v_star)


def pretrained_features(problem: ToyProblem, eps: float, seed: int = 0) -> np.ndarray:
    """B0 = B* + E with ||E||_F = eps ||B*||_F: features with pretraining error eps."""
    E = np.random.default_rng(10_000 + seed).normal(size=problem.B_star.shape)
    return problem.B_star + eps * np.linalg.norm(problem.B_star) * E / np.linalg.norm(E)


def linear_probe(problem: ToyProblem, B: np.ndarray) -> np.ndarray:
    """The head minimising the ID training loss with features B fixed (least squares)."""
    return np.linalg.lstsq(problem.X @ B.T, problem.y, rcond=None)[0]


def fine_tune(problem: ToyProblem, v: np.ndarray, B: np.ndarray, lr: float = 0.05,
              steps: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on L(v, B) = ||X Bᵀ v - y||² / (2n), both layers at once."""
    v, B = v.copy(), B.copy()
    X, y, n = problem.X, problem.y, len(problem.y)
    for _ in range(steps):
        r = X @ (B.T @ v) - y
        g = X.T @ r / n                       # in span(S): the only direction B can move along
        v, B = v - lr * (B @ g), B - lr * np.outer(v, g)
    return v, B


def errors(problem: ToyProblem, v: np.ndarray, B: np.ndarray) -> tuple[float, float]:
    """(ID, OOD) expected squared errors, exact: inputs N(0, P_S) for ID and N(0, I) for OOD."""
    w = B.T @ v - problem.B_star.T @ problem.v_star     # the net's error as a linear map
    return float(np.sum((problem.S.T @ w) ** 2)), float(np.sum(w ** 2))


def compare(problem: ToyProblem, eps: float, seed: int = 0, lr: float = 0.05, steps: int = 4000) -> list[dict]:
    """LP, FT (random head) and LP-FT from the same B0: ID/OOD error and how B moved."""
    B0 = pretrained_features(problem, eps, seed)
    v_lp = linear_probe(problem, B0)
    v_random = np.random.default_rng(20_000 + seed).normal(size=len(problem.v_star))
    v_random /= np.linalg.norm(v_random)
    runs = {"LP": (v_lp, B0), "FT": fine_tune(problem, v_random, B0, lr, steps),
            "LP-FT": fine_tune(problem, v_lp, B0, lr, steps)}
    rows = []
    for method, (v, B) in runs.items():
        dB = B - B0
        id_err, ood_err = errors(problem, v, B)
        rows.append({"eps": eps, "seed": seed, "method": method, "id_error": id_err, "ood_error": ood_err,
                     "delta_B": float(np.linalg.norm(dB)),
                     "delta_B_perp": float(np.linalg.norm(dB @ problem.P_perp))})
    return rows


def sweep(eps_values: tuple = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0), seeds: int = 5,
          **sizes) -> pd.DataFrame:
    """`compare` over pretraining errors eps and random problems (one per seed)."""
    rows = []
    for seed in range(seeds):
        problem = make_problem(seed=seed, **sizes)
        for eps in eps_values:
            rows += compare(problem, eps, seed)
    return pd.DataFrame(rows)


def ood_ratio(table: pd.DataFrame) -> pd.DataFrame:
    """Per eps > 0: median over seeds of OOD error FT / LP and LP-FT / LP."""
    wide = table[table["eps"] > 0].pivot_table(index=["eps", "seed"], columns="method", values="ood_error")
    ratios = pd.DataFrame({"FT / LP": wide["FT"] / wide["LP"], "LP-FT / LP": wide["LP-FT"] / wide["LP"]})
    return ratios.groupby("eps").median().sort_index(ascending=False)
