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
