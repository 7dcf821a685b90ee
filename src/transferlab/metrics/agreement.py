"""Do two models make the same mistakes? (Neyshabur et al. 2020, Sec. 3.1)."""
from __future__ import annotations

import numpy as np


def mistakes(predictions, labels) -> np.ndarray:
    """Boolean mask of the misclassified examples."""
    return np.asarray(predictions) != np.asarray(labels)


def mistake_jaccard(pred_a, pred_b, labels) -> float:
    """|A & B| / |A | B| for the sets of test examples each model gets wrong (1 when both are perfect)."""
    a, b = mistakes(pred_a, labels), mistakes(pred_b, labels)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def independent_jaccard(error_a: float, error_b: float) -> float:
    """The Jaccard overlap expected if the two models erred independently at these error rates."""
    both = error_a * error_b
    either = error_a + error_b - both
    return float(both / either) if either > 0 else 1.0
