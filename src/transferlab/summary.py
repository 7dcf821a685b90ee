"""The book's front-page table: every chapter's claim verdicts, read from the cached results.

`python -m transferlab summary --profile cpu --output book/verdict_summary.md` writes the
Markdown table that book/intro.md includes; nothing in it is typed by hand. A chapter whose
notebook is not in the book (no executed copy) is left out.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pandas as pd

from .cache import atomic_write, compute_ledger
from .findings import CHAPTERS, FINDINGS

CLAIM = re.compile(r"^[A-Z]\d+$")   # claims (A1 ... D3, a new finding's E1), relations (X1 ...), not sanity rows
# Text symbols, not emoji: a system without an emoji font (headless Chromium here) drew ✅ and ❌ as boxes.
VERDICT_MARK = {"reproduced": "✓ reproduced", "not reproduced": "✗ not reproduced", "inconclusive": "⚠ inconclusive"}


def claim_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The rows of a verdict table that decide a claim (headline rows where a table marks them)."""
    rows = verdicts[verdicts["claim"].astype(str).str.match(CLAIM)]
    return rows[rows["role"] == "headline"] if "role" in rows else rows


def verdict_summary(profile: str, chapters: list[str] | None = None) -> pd.DataFrame:
    """One row per claim statistic of every finding (or of `chapters`), with profile and device."""
    rows = []
    for name, module in FINDINGS.items():
        if chapters is not None and CHAPTERS[name] not in chapters:
            continue
        finding = importlib.import_module(module)
        results = finding.run(finding.config(profile))
        table = claim_rows(results.verdicts)
        value = next(c for c in table.columns if c.startswith("value"))
        for row in table.to_dict("records"):
            rows.append({"chapter": CHAPTERS[name], "claim": row["claim"], "statistic": row["statistic"],
                         "value": row[value], "threshold": row["threshold"], "verdict": row["verdict"],
                         "profile": profile, "device": results.provenance["device"]})
    return pd.DataFrame(rows)


def to_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table; each chapter cell links to its page. Where every row shares one profile and
    device, a line above the table says so instead of a column (the table then fits the page)."""
    sources = [(r.profile, r.device) for r in summary.itertuples(index=False)]
    shared = len(set(sources)) == 1
    header = ["chapter", "claim", "our statistic", "value (95% CI)", "threshold", "verdict"]
    lines = [f"Every row comes from the `{sources[0][0]}` profile on {sources[0][1]}.", ""] if shared else []
    lines += ["| " + " | ".join(header + ([] if shared else ["profile · device"])) + " |",
              "|---" * (len(header) + (not shared)) + "|"]
    for r, source in zip(summary.itertuples(index=False), sources):
        cells = [f"{{doc}}`{r.chapter[:2]} <{r.chapter}>`", r.claim, r.statistic, r.value, r.threshold,
                 VERDICT_MARK.get(r.verdict, r.verdict), *([] if shared else [f"`{source[0]}` · {source[1]}"])]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def compute_note(ledger: dict[str, float], devices: list[str]) -> str:
    """One sentence under the table: what its numbers cost from an empty cache, each unit once."""
    if not ledger:
        return ""
    minutes = sum(ledger.values()) / 60
    took = f"**{minutes:.0f} min** ({minutes / 60:.1f} h)" if minutes >= 60 else f"**{minutes:.1f} min**"
    return (f"\nComputing every number above from an empty cache took {took} "
            f"on {' and '.join(devices)}: the sum of the compute time each of the {len(ledger)} cached units "
            "(pretraining runs, fine-tuning runs, probes, inversions, analyses) recorded when it was computed, "
            "each counted once, though chapters share them. A chapter's header counts every unit it reads, "
            "shared pretraining included.\n")


def write_summary(profile: str, output: Path, book: Path | None = None) -> pd.DataFrame:
    """Write the table of the chapters executed into `book` (default: output's folder) to `output`."""
    book = Path(book or Path(output).parent)
    chapters = [c for c in CHAPTERS.values() if (book / f"{c}.ipynb").exists()]
    with compute_ledger() as ledger:
        summary = verdict_summary(profile, chapters)
    text = to_markdown(summary) + compute_note(ledger, sorted(set(summary["device"])) if len(summary) else [])
    atomic_write(Path(output), lambda tmp: Path(tmp).write_text(text))
    return summary
