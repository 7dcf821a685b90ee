"""One module per finding: `config(profile, **params)` and `run(cfg, only_seed=None) -> Results`.

FINDINGS maps the CLI name of each finding to its module and CHAPTERS to its notebook,
in book order; everything that loops over the findings reads these two.
"""
from ..config import ParameterError

FINDINGS = {"invariance": "transferlab.findings.invariance", "fe_vs_ft": "transferlab.findings.fe_vs_ft",
            "feature_reuse": "transferlab.findings.feature_reuse", "lpft_ood": "transferlab.findings.lpft_ood",
            "cross": "transferlab.findings.cross"}
CHAPTERS = {"invariance": "01_invariance_compression", "fe_vs_ft": "02_fe_vs_ft_epochs",
            "feature_reuse": "03_feature_reuse_shuffling", "lpft_ood": "04_lpft_ood", "cross": "05_cross_findings"}


def check_finding(name: str) -> str:
    """A finding's CLI name, or a one-line error listing the names allowed."""
    if name not in FINDINGS:
        raise ParameterError(f"The 'finding' parameter must be one of {list(FINDINGS)}. Got {name!r} instead.")
    return name


def seeds_to_compute(seeds: int, only_seed: int | None) -> range:
    """The seeds a finding's run computes: all of them, or only `only_seed`, so that processes side
    by side can each compute one seed's units into the shared cache (`run --seed`); a run of all
    seeds then reads them. Checked before any compute."""
    if only_seed is None:
        return range(seeds)
    if isinstance(only_seed, bool) or not isinstance(only_seed, int) or not 0 <= only_seed < seeds:
        raise ParameterError(f"The 'seed' parameter must be an integer from 0 to {seeds - 1} (this config has "
                             f"{seeds} seed{'s' * (seeds != 1)}). Got {only_seed!r} instead.")
    return range(only_seed, only_seed + 1)
