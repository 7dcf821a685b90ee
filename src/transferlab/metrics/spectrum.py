"""Spectral view of features (Deng et al. 2023): main components vs the residual.

Features F (N x d) are centred and decomposed F = U S V^T. The main part is the fewest
top components holding `energy` of the singular-value mass; the rest is the residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrum:
    mean: np.ndarray        # (d,) feature mean used for centring
    U: np.ndarray           # (N, r) left singular vectors: directions in sample space
    S: np.ndarray           # (r,) singular values, descending
    Vt: np.ndarray          # (r, d) right singular vectors: directions in feature space
    k: int                  # size of the main part

    @property
    def rank(self) -> int:
        """Numerical rank: components with singular value above 1e-6 of the largest."""
        return int((self.S > 1e-6 * self.S[0]).sum()) if self.S.size and self.S[0] > 0 else 0


def main_part_size(singular_values: np.ndarray, energy: float) -> int:
    """Smallest k with sum(s[:k]) / sum(s) >= energy."""
    s = np.asarray(singular_values, dtype=float)
    cumulative = np.cumsum(s) / s.sum()
    return int(np.searchsorted(cumulative, energy - 1e-12) + 1)


def spectrum(features: np.ndarray, energy: float = 0.8) -> Spectrum:
    f = np.asarray(features, dtype=np.float64)
    mean = f.mean(0)
    U, S, Vt = np.linalg.svd(f - mean, full_matrices=False)
    return Spectrum(mean, U, S, Vt, main_part_size(S, energy))


def project(features: np.ndarray, spec: Spectrum, part: str) -> np.ndarray:
    """Centred features restricted to the main (top-k) or residual feature-space directions."""
    centred = np.asarray(features, dtype=np.float64) - spec.mean
    V = spec.Vt[:spec.k].T
    main = centred @ V @ V.T
    if part == "main":
        return main
    if part == "residual":
        return centred - main
    raise ValueError(f"The 'part' parameter must be one of ['main', 'residual']. Got {part!r} instead.")


def subspace_similarity(A: np.ndarray, B: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between the column spaces of orthonormal A, B.

    1 for the same subspace, 0 for orthogonal ones.
    """
    if A.shape[1] == 0 or B.shape[1] == 0:
        return float("nan")
    return float(np.linalg.norm(A.T @ B) ** 2 / min(A.shape[1], B.shape[1]))


def normalised_similarity(A: np.ndarray, B: np.ndarray) -> float:
    """Subspace similarity rescaled so that random subspaces score 0 and identical ones 1.

    Random subspaces of dimensions a, b in R^N have expected similarity max(a, b) / N, which
    is large for big residual subspaces; without this, residuals would look stable by size alone.
    """
    chance = max(A.shape[1], B.shape[1]) / A.shape[0]
    return (subspace_similarity(A, B) - chance) / (1.0 - chance)
