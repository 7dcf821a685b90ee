"""Seed statistics and verdicts: mean with a 95% t-interval, and the three-way verdict."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as st

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
CORRELATION_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    sd: float
    n: int
    undefined: int = 0      # seeds whose value was NaN or infinite, left out of the rest

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.lo:.3g}, {self.hi:.3g}]"

    @property
    def decidable(self) -> bool:
        """Whether a verdict may rest on it: an interval from 2+ seeds, none of them undefined.
        A seed whose statistic is undefined (a Spearman over constant accuracies, a NaN map entry)
        is not evidence either way, and leaving it out silently would narrow the interval."""
        return self.n >= 2 and self.undefined == 0

    def formatted(self, spec: str = ".3f") -> str:
        """'mean [lo, hi]' in `spec`, saying how many seeds were undefined if any were."""
        text = f"{self.mean:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"
        if self.undefined:
            text += f" ({self.undefined} of {self.n + self.undefined} seeds undefined)"
        return text


def mean_ci(values, confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean and two-sided t confidence interval over seeds (degenerate with one seed); NaN or
    infinite values are left out and counted as `undefined`. `bounds`, the statistic's possible
    range (a Spearman's [-1, 1]), cuts the interval to it: a t-interval from three seeds can run
    past it, and the true value cannot."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    v, undefined = v[finite], int((~finite).sum())
    n = len(v)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0, undefined)
    mean = float(v.mean())
    if n == 1:
        return Estimate(mean, float("-inf"), float("inf"), float("nan"), 1, undefined)
    sd = float(v.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Estimate(mean, lo, hi, sd, n, undefined)


def verdict_above(estimate: Estimate, threshold: float) -> str:
    """'reproduced' if the whole CI lies above the threshold, 'not reproduced' if it lies
    at or below it, else 'inconclusive' (the interval is too wide to tell, or the estimate is not
    `decidable`)."""
    if not estimate.decidable:
        return INCONCLUSIVE
    if estimate.lo > threshold:
        return REPRODUCED
    if estimate.hi <= threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_below(estimate: Estimate, threshold: float) -> str:
    """'reproduced' if the whole CI lies at or below the threshold, 'not reproduced' if it lies
    above it, else 'inconclusive' (as `verdict_above`)."""
    if not estimate.decidable:
        return INCONCLUSIVE
    if estimate.hi <= threshold:
        return REPRODUCED
    if estimate.lo > threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_row(claim: str, statistic: str, estimate: Estimate | str, threshold: str, verdict: str) -> dict:
    """One row of a chapter's verdict table: the estimate as mean [95% CI] (or a ready string)."""
    value = estimate if isinstance(estimate, str) else estimate.formatted()
    return {"claim": claim, "statistic": statistic, "value (95% CI over seeds)": value,
            "threshold": threshold, "verdict": verdict}
