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


METHOD_COLOURS = {"LP": "C0", "FT": "C1", "LP-FT": "C2"}  # one colour per transfer method in every figure


def _set_labels(ax, x, labels) -> None:
    ax.set_xticks(x, labels, fontsize="small", rotation=25, ha="right", rotation_mode="anchor")


def shift_examples(examples: dict, kinds: dict | None = None, n: int = 8):
    """One row of example images per data set (uint8 NHWC), labelled with its name and kind."""
    names = list(examples)
    fig, axes = plt.subplots(len(names), n, figsize=(0.9 * n, 1.1 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        images = examples[name]
        for c in range(n):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
        label = name if not kinds or name not in kinds else f"{name} ({kinds[name]})"
        axes[r, 0].set_title(label, fontsize="small", loc="left")
    fig.tight_layout()
    return fig


def accuracy_by_set(summary: pd.DataFrame, sets: list[str], methods: tuple = ("LP", "FT", "LP-FT"),
                    kinds: dict | None = None, ax=None, ylabel: str = "test accuracy"):
    """Mean accuracy per method on every set with 95% CI error bars; expects method, set,
    accuracy, accuracy_lo, accuracy_hi columns (CIs clipped to [0, 1] for display)."""
    ax = ax or plt.subplots(figsize=(max(6, 1.3 * len(sets)), 4))[1]
    width = 0.8 / len(methods)
    x = np.arange(len(sets))
    for i, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("set").reindex(sets)
        mean = rows["accuracy"].to_numpy()
        lo = np.clip(rows["accuracy_lo"].to_numpy(), 0, 1)
        hi = np.clip(rows["accuracy_hi"].to_numpy(), 0, 1)
        err = np.where(np.isfinite(lo) & np.isfinite(hi), [mean - lo, hi - mean], 0.0)
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=err, capsize=2, label=method,
               color=METHOD_COLOURS.get(method))
    _set_labels(ax, x, [s if not kinds or s not in kinds else f"{s} ({kinds[s]})" for s in sets])
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.12)   # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(frameon=False, ncol=len(methods), loc="upper center")
    return ax


def distortion_by_set(distortion: pd.DataFrame, sets: list[str], methods: tuple = ("FT", "LP-FT"),
                      column: str = "distortion", ax=None):
    """Mean squared change of the penultimate features per set (log scale), one bar per method,
    seeds as dots."""
    ax = ax or plt.subplots(figsize=(max(6, 1.3 * len(sets)), 4))[1]
    width = 0.8 / len(methods)
    x = np.arange(len(sets))
    for i, method in enumerate(methods):
        rows = distortion[distortion["method"] == method]
        offset = (i - (len(methods) - 1) / 2) * width
        means = rows.groupby("set")[column].mean().reindex(sets)
        bars = ax.bar(x + offset, means, width, label=method, alpha=0.8, color=METHOD_COLOURS.get(method))
        for j, name in enumerate(sets):
            values = rows.loc[rows["set"] == name, column]
            ax.scatter(np.full(len(values), x[j] + offset), values, s=8, color="black", zorder=3)
        bars.set_label(method)
    ax.set_yscale("log")
    _set_labels(ax, x, sets)
    ax.set_ylabel("mean squared feature change" if column == "distortion" else "relative feature change")
    ax.legend(frameon=False)
    return ax


def linear_toy_errors(table: pd.DataFrame, axes=None):
    """The linear toy: OOD error of LP, FT and LP-FT against the pretraining error eps (log-log,
    eps > 0; median over problems), and how much of each fine-tuning step reached S⊥."""
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(12, 4))[1]
    pos = table[table["eps"] > 0]
    for method, group in pos.groupby("method", sort=False):
        med = group.groupby("eps")["ood_error"].median()
        axes[0].plot(med.index, med.to_numpy(), marker="o", label=method, color=METHOD_COLOURS.get(method))
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("pretraining error eps")
    axes[0].set_ylabel("OOD squared error (median over problems)")
    axes[0].set_title("OOD error vs feature quality")
    axes[0].legend(frameon=False)
    moved = table[table["method"] != "LP"]
    for method, group in moved.groupby("method", sort=False):
        axes[1].scatter(group["delta_B"].clip(lower=1e-18), group["delta_B_perp"].clip(lower=1e-18), label=method, s=14,
                        color=METHOD_COLOURS.get(method))
    lims = np.array(axes[1].get_xlim())
    axes[1].plot(lims, lims, color="grey", ls="--", lw=1, label="ΔB P_S⊥ as large as ΔB")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("||ΔB||_F (how far fine-tuning moved the features)")
    axes[1].set_ylabel("||ΔB P_S⊥||_F (the part acting on S⊥)")
    axes[1].set_title("feature change outside the ID span")
    axes[1].legend(frameon=False)
    return axes


# ---------------------------------------------------------------- finding 03 (feature reuse under shuffling)
def image_row(images, titles, axes=None, cmap: str = "gray"):
    """A row of uint8 HWC images with titles (e.g. one digit at every block size)."""
    if axes is None:
        axes = plt.subplots(1, len(images), figsize=(1.6 * len(images), 1.9))[1]
    for ax, image, title in zip(np.atleast_1d(axes), images, titles):
        image = np.asarray(image)
        ax.imshow(image[..., 0] if image.ndim == 3 and image.shape[-1] in (1, 3) and cmap else image, cmap=cmap)
        ax.set_title(title, fontsize="small")
        ax.axis("off")
    return axes


def block_axis(ax, blocks) -> None:
    """Log-2 block-size axis, from the whole image (left) to single pixels (right)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(blocks), [str(b) for b in blocks])
    ax.minorticks_off()
    ax.set_xlim(max(blocks) * 1.3, min(blocks) / 1.3)
    ax.set_xlabel("block size b (pixels)")


def mean_curves(long: pd.DataFrame, x: str, y: str, hue: str, ax=None, ylabel: str | None = None,
                title: str | None = None, palette=None):
    """Mean over seeds of `y` against `x`, one line per `hue` value, with a 95% CI band (seaborn)."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    sns.lineplot(data=long, x=x, y=y, hue=hue, marker="o", ms=4, errorbar=("ci", 95), ax=ax, palette=palette)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
    return ax


def pair_bars(table: pd.DataFrame, y: str, x: str = "pair", baseline: str | None = None, ax=None,
              ylabel: str | None = None, title: str | None = None, baseline_label: str = "baseline"):
    """Bars of the mean of `y` per `x` (95% CI over seeds); `baseline` draws the mean of that column
    as a black tick across each bar."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    order = list(dict.fromkeys(table[x]))
    sns.barplot(data=table, x=x, y=y, order=order, errorbar=("ci", 95), ax=ax, alpha=0.85)
    if baseline is not None:
        means = table.groupby(x)[baseline].mean()
        for i, name in enumerate(order):
            ax.hlines(means[name], i - 0.4, i + 0.4, color="black", lw=2, label=baseline_label if i == 0 else None)
        ax.legend(frameon=False, fontsize="small")
    ax.set_ylabel(ylabel or y)
    ax.set_xlabel("")
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def matrix_heatmap(matrix: pd.DataFrame, ax=None, title: str | None = None, vmin: float | None = 0.0,
                   vmax: float | None = 1.0, cmap: str = "magma", fmt: str = ".2f", xlabel: str | None = None,
                   ylabel: str | None = None):
    """An annotated heatmap of a labelled matrix (layer x layer CKA, module x alpha error, ...)."""
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    sns.heatmap(matrix, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, annot=True, fmt=fmt, annot_kws={"size": 7},
                cbar=False, square=False)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    return ax


# ---------------------------------------------------------------- finding 01 (invariance, STIR)
def stir_heatmap(matrix: np.ndarray, layers, ax=None, title: str | None = None, reference: str = "reference",
                 readout: str = "readout", noise=None):
    """A STIR map M[i, j] = STIR(readout_j | reference_i) with each row's argmax boxed; `noise`
    (per readout layer) is printed under the column labels."""
    labels = [str(layer) for layer in layers]
    columns = labels if noise is None else [f"{c}\nnoise {v:.2f}" for c, v in zip(labels, noise)]
    ax = matrix_heatmap(pd.DataFrame(matrix, index=labels, columns=columns), ax=ax, title=title, vmin=0.0,
                        vmax=1.0, xlabel=f"{readout} block j", ylabel=f"{reference} block i")
    for i, j in enumerate(np.argmax(matrix, axis=1)):
        ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="cyan", lw=2))
    ax.tick_params(axis="x", rotation=0)
    return ax


# ---------------------------------------------------------------- cross-findings
def aligned_panels(summary: pd.DataFrame, columns: dict[str, str], x: str = "epoch", ncols: int = 4,
                   zero: tuple = (), points: pd.DataFrame | None = None):
    """One panel per statistic on a shared x axis (mean with its 95% CI band, as `curves_with_ci`);
    `points` (one row per seed and x) adds the seeds as grey dots, and the columns in `zero`
    (differences) get a dashed line at 0."""
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.1 * nrows), sharex=True, squeeze=False)
    for ax, (col, label) in zip(axes.flat, columns.items()):
        curves_with_ci(summary, {col: label}, x=x, ax=ax, ylabel="", title=label)
        ax.get_legend().remove()
        if points is not None:
            ax.scatter(points[x], points[col], s=10, color="grey", alpha=0.7, zorder=3)
        if col in zero:
            ax.axhline(0.0, color="grey", ls="--", lw=1)
    for ax in axes.flat[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
