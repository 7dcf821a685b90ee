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
    row = {"chapter": "02_fe_vs_ft_epochs", "claim": "B1", "statistic": "|FE| gap", "value": "0.1 [0.0, 0.2]",
           "threshold": "> 0", "verdict": "not reproduced", "profile": "cpu", "device": "cpu (x86_64, 2 threads)"}
    text = to_markdown(pd.DataFrame([row]))
    lines = text.strip().splitlines()
    assert lines[0] == "Every row comes from the `cpu` profile on cpu (x86_64, 2 threads)."   # not a column
    assert len(lines) == 5 and lines[2].count("|") == 7 and lines[4].count("|") == 7 + 2   # two escaped pipes
    assert "{doc}`02 <02_fe_vs_ft_epochs>`" in text and "\\|FE\\| gap" in text and "✗ not reproduced" in text


def test_markdown_keeps_a_source_column_when_rows_differ():
    """A book mixing profiles or devices (e.g. gpu chapters beside cpu ones) names both per row."""
    rows = [{"chapter": "01_a", "claim": "A1", "statistic": "s", "value": "1", "threshold": "> 0",
             "verdict": "reproduced", "profile": profile, "device": device}
            for profile, device in [("gpu", "NVIDIA H100"), ("cpu", "cpu (x86_64, 2 threads)")]]
    lines = to_markdown(pd.DataFrame(rows)).strip().splitlines()
    assert lines[0].endswith("| profile · device |") and "`gpu` · NVIDIA H100" in lines[2]
    assert "`cpu` · cpu (x86_64, 2 threads)" in lines[3] and "✓ reproduced" in lines[3]


def test_compute_note_sums_the_ledger():
    """90 minutes over two units on one device, hand-checked; no units, no sentence."""
    from transferlab.summary import compute_note

    note = compute_note([({"zoo/a": 3600.0, "findings/b": 1800.0}, ["cpu (x86_64, 2 threads)"], "cpu", ["01_a"])])
    assert "every number above from an empty cache took **90 min** (1.5 h) on cpu (x86_64, 2 threads) " \
           "over 2 cached units" in note
    assert "took **1.5 min** on" in compute_note([({"findings/c": 90.0}, ["cpu"], "cpu", ["01_a"])])   # no hours
    assert compute_note([({}, [], "cpu", ["01_a"])]) == ""


def test_a_new_findings_claims_reach_the_front_page(monkeypatch):
    """A finding added to FINDINGS and CHAPTERS (claims E1, E12) shows on the front page with no
    other change; its sanity rows do not."""
    import sys
    import types

    from transferlab import summary

    verdicts = pd.DataFrame({"claim": ["E1", "sanity", "E12"], "statistic": ["gap", "fit", "slope"],
                             "value (95% CI over seeds)": ["0.2 [0.1, 0.3]", "1.0", "0.0 [-1, 1]"],
                             "threshold": ["> 0"] * 3, "verdict": ["reproduced", "reproduced", "inconclusive"]})
    module = types.SimpleNamespace(config=lambda profile: profile, run=lambda cfg: types.SimpleNamespace(
        verdicts=verdicts, provenance={"device": "cpu (x86_64, 2 threads)"}))
    monkeypatch.setitem(sys.modules, "new_finding", module)
    monkeypatch.setitem(summary.FINDINGS, "new", "new_finding")
    monkeypatch.setitem(summary.CHAPTERS, "new", "06_new")
    table = summary.verdict_summary("ci", chapters=["06_new"])
    assert list(table["claim"]) == ["E1", "E12"] and set(table["chapter"]) == {"06_new"}


def test_each_chapter_is_read_with_the_profile_its_notebook_records(monkeypatch, tmp_path):
    """A book of a gpu chapter beside a cpu one (and one that records no profile, read with the
    default): each chapter's rows come from its own profile, with one cost sentence per profile."""
    import json
    import sys
    import types

    from transferlab import summary
    from transferlab.cache import charge

    def finding(claim: str):
        def run(profile):
            charge(f"findings/{claim}/{profile}", {"gpu": 60.0, "cpu": 600.0}[profile])
            verdicts = pd.DataFrame({"claim": [claim], "statistic": ["gap"], "value (95% CI over seeds)": ["1"],
                                     "threshold": ["> 0"], "verdict": ["reproduced"]})
            return types.SimpleNamespace(verdicts=verdicts, provenance={"device": f"device of {profile}"})
        return types.SimpleNamespace(config=lambda profile: profile, run=run)

    monkeypatch.setattr(summary, "FINDINGS", {"a": "finding_a", "b": "finding_b", "c": "finding_c"})
    monkeypatch.setattr(summary, "CHAPTERS", {"a": "01_a", "b": "02_b", "c": "03_c"})
    for name, profile in [("a", "gpu"), ("b", "cpu"), ("c", None)]:
        monkeypatch.setitem(sys.modules, f"finding_{name}", finding(name.upper() + "1"))
        metadata = {"papermill": {"parameters": {"profile": profile}}} if profile else {}
        (tmp_path / f"0{'abc'.index(name) + 1}_{name}.ipynb").write_text(json.dumps({"metadata": metadata}))
    table = summary.write_summary("cpu", tmp_path / "verdict_summary.md")
    assert list(table["claim"]) == ["A1", "B1", "C1"] and list(table["profile"]) == ["gpu", "cpu", "cpu"]
    text = (tmp_path / "verdict_summary.md").read_text()
    assert "| `gpu` · device of gpu |" in text and "| `cpu` · device of cpu |" in text
    assert ("from an empty cache, the `gpu` profile's numbers (chapter 01) took **1.0 min** on device of gpu over "
            "1 cached unit; the `cpu` profile's numbers (chapters 02, 03) took **20.0 min** on device of cpu") in text
