"""The book's front-page table: every chapter's claim verdicts, read from the cached results.

`python -m transferlab summary --output book/verdict_summary.md` writes the Markdown table that
book/intro.md includes; nothing in it is typed by hand. A chapter whose notebook is not in the book
(no executed copy) is left out. Each chapter's rows come from the profile its executed notebook was
run with (papermill records it), so a book can show gpu chapters beside cpu ones.
"""
from __future__ import annotations

import importlib
import json
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


def executed_profile(notebook: Path) -> str | None:
    """The profile an executed notebook was run with (papermill's record of `-p profile`), if any."""
    parameters = json.loads(Path(notebook).read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    return parameters.get("profile")


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


def compute_note(groups: list[tuple[dict[str, float], list[str], str, list[str]]]) -> str:
    """One sentence under the table: what its numbers cost from an empty cache, each unit once; per
    profile where the book mixes them, since their units and devices differ.
    `groups`: (ledger, devices, profile, chapters) per profile."""
    groups = [group for group in groups if group[0]]
    if not groups:
        return ""

    def cost(ledger: dict[str, float], devices: list[str]) -> str:
        minutes = sum(ledger.values()) / 60
        took = f"**{minutes:.0f} min** ({minutes / 60:.1f} h)" if minutes >= 60 else f"**{minutes:.1f} min**"
        return f"{took} on {' and '.join(devices)} over {len(ledger)} cached unit{'s' if len(ledger) != 1 else ''}"

    if len(groups) == 1:
        what = f"every number above from an empty cache took {cost(*groups[0][:2])}"
    else:
        what = "from an empty cache, " + "; ".join(
            f"the `{profile}` profile's numbers (chapter{'s' if len(chapters) > 1 else ''} "
            f"{', '.join(c[:2] for c in chapters)}) took {cost(ledger, devices)}"
            for ledger, devices, profile, chapters in groups)
    return (f"\nComputing {what}: the sum of the compute time each unit (pretraining runs, fine-tuning runs, "
            "probes, inversions, analyses) recorded when it was computed, each counted once, though chapters "
            "share them; units computed side by side (as on a GPU) overlap, so the wall time can be shorter. "
            "A chapter's header counts every unit it reads, shared pretraining included.\n")


def write_summary(profile: str, output: Path, book: Path | None = None) -> pd.DataFrame:
    """Write the table of the chapters executed into `book` (default: output's folder) to `output`.

    Each chapter is read with the profile its executed notebook records; `profile` serves one
    that records none. One cost sentence per profile: their units and devices differ.
    """
    book = Path(book or Path(output).parent)
    by_profile: dict[str, list[str]] = {}
    for chapter in CHAPTERS.values():
        if (notebook := book / f"{chapter}.ipynb").exists():
            by_profile.setdefault(executed_profile(notebook) or profile, []).append(chapter)
    tables, costs = [], []
    for chapter_profile, chapters in by_profile.items():
        with compute_ledger() as ledger:
            table = verdict_summary(chapter_profile, chapters)
        tables.append(table)
        costs.append((ledger, sorted(set(table["device"])) if len(table) else [], chapter_profile, chapters))
    summary = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(summary):
        summary = summary.sort_values("chapter", kind="stable", ignore_index=True)
    text = to_markdown(summary) + compute_note(costs)
    atomic_write(Path(output), lambda tmp: Path(tmp).write_text(text))
    return summary
