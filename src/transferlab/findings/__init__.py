"""One module per finding: `config(profile, **params)` and `run(cfg) -> Results`.

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
