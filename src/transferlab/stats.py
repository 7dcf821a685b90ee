"""Seed statistics and verdicts: mean with a 95% t-interval, and the three-way verdict."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as st

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


def mean_ci(values, confidence: float = 0.95) -> Estimate:
    """Mean and two-sided t confidence interval over seeds (degenerate with one seed)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    mean = float(v.mean())
    if n == 1:
        return Estimate(mean, float("-inf"), float("inf"), float("nan"), 1)
    sd = float(v.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return Estimate(mean, mean - half, mean + half, sd, n)


def verdict_above(estimate: Estimate, threshold: float) -> str:
    """'reproduced' if the whole CI lies above the threshold, 'not reproduced' if it lies
    at or below it, else 'inconclusive' (the interval is too wide to tell)."""
    if estimate.lo > threshold:
        return REPRODUCED
    if estimate.hi <= threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_row(claim: str, statistic: str, estimate: Estimate | str, threshold: str, verdict: str) -> dict:
    """One row of a chapter's verdict table: the estimate as mean [95% CI] (or a ready string)."""
    value = estimate if isinstance(estimate, str) else f"{estimate.mean:.3f} [{estimate.lo:.3f}, {estimate.hi:.3f}]"
    return {"claim": claim, "statistic": statistic, "value (95% CI over seeds)": value,
            "threshold": threshold, "verdict": verdict}
