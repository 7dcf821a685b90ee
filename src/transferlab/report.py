"""What every chapter shows around its numbers: a provenance header and the verdict table."""
from __future__ import annotations

import pandas as pd

VERDICT_COLOURS = {"reproduced": "#c7e9c0", "not reproduced": "#fcbba1", "inconclusive": "#fdf0b5"}


def header_markdown(profile: str, provenance: dict) -> str:
    """One block naming the profile, device, commit, versions and compute time behind a chapter."""
    versions = ", ".join(f"{k} {v}" for k, v in provenance["versions"].items())
    minutes = provenance["wall_time_s"] / 60
    return (f"**Profile** `{profile}` · **device** {provenance['device']} · **commit** `{provenance['commit']}` · "
            f"**compute time** {minutes:.1f} min (sum over cached units) · **finished** {provenance['finished']}"
            f"\n\n<small>{versions}</small>")


def verdict_table(verdicts: pd.DataFrame):
    """The verdict table, with the verdict cell coloured (green / red / yellow)."""
    return (verdicts.style.hide(axis="index")
            .map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, 'white')}", subset=["verdict"]))


def grid_edges(chosen, grid, runs: str = "runs", subject: str = "The chosen learning rate") -> str:
    """One sentence: how often the value picked on validation sat at the low or high end of its grid,
    where a wider grid might have done better (LESSONS: extend grids until the winner is interior)."""
    chosen = pd.Series(chosen, dtype=float).dropna()
    grid = sorted(grid)
    low, high = int((chosen == grid[0]).sum()), int((chosen == grid[-1]).sum())
    if len(grid) == 1:
        return f"{subject} is fixed in all {len(chosen)} {runs}: its grid has one value, {grid[0]:g}."
    return (f"{subject} is at an edge of its grid [{', '.join(f'{v:g}' for v in grid)}] in {low + high} of "
            f"{len(chosen)} {runs} ({low} at the lowest, {high} at the highest).")


def one_line_parameter_errors() -> None:
    """In IPython/papermill, show a ParameterError as its one-line message instead of a traceback.

    The cell still fails (papermill stops at once), but the reader sees only which parameter
    was wrong and what is allowed.
    """
    from IPython import get_ipython

    from .config import ParameterError

    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])  # an 'error' output, one line

    shell.set_custom_exc((ParameterError,), handler)
