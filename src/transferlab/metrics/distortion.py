"""Feature distortion (Kumar et al., ICLR 2022): how far fine-tuning moved the features of inputs.

Their argument: gradient steps move the features of the training (ID) inputs, while
features of inputs outside the span of the training data move less, so a head fit to the
moved ID features mismatches the OOD ones. LP-FT, starting from a good head, moves both less.
"""
from __future__ import annotations

import numpy as np


def feature_distortion(before: np.ndarray, after: np.ndarray, relative: bool = False) -> float:
    """Mean over inputs of ||after_i - before_i||^2 (rows are inputs, columns feature dimensions).

    With `relative`, divided by the mean ||before_i||^2, so that sets whose features differ
    in size compare on one scale.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"The 'after' parameter must have the shape of 'before' (inputs x features), "
                         f"{before.shape}. Got {after.shape} instead.")
    change = float(np.mean(np.sum((after - before) ** 2, axis=1)))
    return change / float(np.mean(np.sum(before ** 2, axis=1))) if relative else change
