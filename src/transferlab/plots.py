"""Figures shared by the notebooks (matplotlib + seaborn), one function per kind of figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def curves_with_ci(summary: pd.DataFrame, columns: dict[str, str], x: str = "epoch", ax=None,
                   ylabel: str = "accuracy", title: str | None = None):
    """Mean curves with shaded 95% CI bands; `columns` maps a summary column to its legend label.

    Expects `<col>`, `<col>_lo`, `<col>_hi` columns as written by the findings' `summarise`.
    """
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for col, label in columns.items():
        line, = ax.plot(summary[x], summary[col], marker="o", ms=4, label=label)
        lo, hi = summary[f"{col}_lo"], summary[f"{col}_hi"]
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(summary[x], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("pretraining epoch" if x == "epoch" else x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def singular_value_profiles(spectra: dict, seed: int = 0, ax=None, energy: float | None = None):
    """Cumulative share of singular-value mass per checkpoint (one line each, light to dark)."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    names = list(spectra[seed])
    colours = sns.color_palette("viridis", len(names))
    for name, colour in zip(names, colours):
        s = np.asarray(spectra[seed][name])
        ax.plot(np.arange(1, len(s) + 1), np.cumsum(s) / s.sum(), color=colour, label=name)
    if energy is not None:
        ax.axhline(energy, color="grey", ls="--", lw=1)
    ax.set_xlabel("number of components")
    ax.set_ylabel("cumulative share of singular values")
    ax.set_title(f"feature spectrum of the target test set (seed {seed})")
    ax.legend(frameon=False, fontsize="small", ncol=2)
    return ax
