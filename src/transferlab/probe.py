"""Linear probing: multinomial logistic regression on frozen, standardised features.

As in Kumar et al. (2022): L-BFGS, the inverse regularisation C picked from a log grid
on the validation split, features standardised with training statistics.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .selection import best_on_validation


@dataclass
class LinearProbe:
    C: float
    val_acc: float
    mean: np.ndarray
    std: np.ndarray
    classifier: LogisticRegression

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.classifier.predict((features - self.mean) / self.std)

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float((self.predict(features) == labels).mean())


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     Cs: tuple[float, ...], max_iter: int = 1000) -> LinearProbe:
    """Fit one probe per C (warm-started along the grid) and keep the best on validation."""
    train_x, val_x = np.asarray(train_x, np.float64), np.asarray(val_x, np.float64)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs, xv = (train_x - mean) / std, (val_x - mean) / std
    fits = []
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    for C in sorted(Cs):
        clf.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xs, train_y)
        fits.append((C, float((clf.predict(xv) == val_y).mean()), clf.coef_.copy(), clf.intercept_.copy()))
    C, acc, coef, intercept = best_on_validation(fits, itemgetter(1))
    final = LogisticRegression(C=C, max_iter=max_iter)
    final.classes_, final.coef_, final.intercept_ = np.unique(train_y), coef, intercept
    return LinearProbe(C, acc, mean, std, final)
