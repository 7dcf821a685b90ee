"""The front page's verdict summary: which rows count as claims, and the Markdown it writes."""
from __future__ import annotations

import pandas as pd

from transferlab.summary import claim_rows, to_markdown


def test_claim_rows_keep_claims_and_headlines_only():
    table = pd.DataFrame({"claim": ["sanity", "A1", "control", "A2"], "statistic": list("wxyz"),
                          "value (95% CI over seeds)": ["1"] * 4, "threshold": ["t"] * 4,
                          "verdict": ["reproduced"] * 4})
    assert list(claim_rows(table)["claim"]) == ["A1", "A2"]
    table["role"] = ["headline", "headline", "detail", "per shift"]
    assert list(claim_rows(table)["claim"]) == ["A1"]


def test_markdown_links_each_chapter_and_escapes_pipes():
    summary = pd.DataFrame([{"chapter": "02_fe_vs_ft_epochs", "claim": "B1", "statistic": "|FE| gap",
                             "value": "0.1 [0.0, 0.2]", "threshold": "> 0", "verdict": "not reproduced",
                             "profile": "cpu", "device": "cpu (x86_64, 2 threads)"}])
    text = to_markdown(summary)
    lines = text.strip().splitlines()
    assert len(lines) == 3 and lines[0].count("|") == lines[2].count("|") - 2   # two escaped pipes in a cell
    assert "{doc}`02 <02_fe_vs_ft_epochs>`" in text and "\\|FE\\| gap" in text and "not reproduced" in text


def test_compute_note_sums_the_ledger():
    """90 minutes over two units on one device, hand-checked; no units, no sentence."""
    from transferlab.summary import compute_note

    note = compute_note({"zoo/a": 3600.0, "findings/b": 1800.0}, ["cpu (x86_64, 2 threads)"])
    assert "**90 min** (1.5 h) on cpu (x86_64, 2 threads)" in note and "each of the 2 cached units" in note
    assert compute_note({}, []) == ""
