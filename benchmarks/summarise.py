"""Render every benchmark JSON under benchmarks/results/ as the table of the book's Performance page.

`python -m benchmarks.summarise` rewrites book/performance_table.md (the runner does it too
after a run into the default folder): the page's numbers come from the JSON, never by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from transferlab.cache import atomic_write

from .runner import RESULTS, check_record, compile_suffix

TABLE = Path(__file__).resolve().parents[1] / "book" / "performance_table.md"


def load_records(results: Path = RESULTS) -> list[dict]:
    """Every valid result, sorted by device, benchmark and mode."""
    records = []
    for path in sorted(results.glob("*/*.json")):
        record = json.loads(path.read_text())
        check_record(record)
        records.append(record)
    return sorted(records, key=lambda r: (r["provenance"]["device"], r["name"], compile_suffix(r["provenance"]["compile"]),
                                          r["provenance"]["quick"]))


def _mode(provenance: dict) -> str:
    """' (compile)', ' (compile, CUDA graphs)', ' (quick)', or none: how a run differs from the default one."""
    compiled = {"": "", "-compile": " (compile)",
                "-compile-reduce-overhead": " (compile, CUDA graphs)"}[compile_suffix(provenance["compile"])]
    return compiled + (" (quick)" if provenance["quick"] else "")


def _rate(side: dict) -> str:
    return f"{side['images_per_s']:,.0f}" if side["images_per_s"] else "–"


def _mfu(side: dict) -> str:
    return f"{side['mfu']:.1%}" if side["mfu"] is not None else "–"


def _speedup(c: dict) -> str:
    if c["target_speedup"] is None:
        return f"{c['speedup']:.2f}x"
    return f"{c['speedup']:.2f}x ({'meets' if c['meets_target'] else 'below'} {c['target_speedup']:g}x)"


def _best_ratio(c: dict) -> str:
    """Fastest baseline run over fastest run of ours: on a shared machine, the runs least slowed by others."""
    return f"{min(c['baseline']['seconds_all']) / min(c['ours']['seconds_all']):.2f}x"


def render(records: list[dict]) -> str:
    """Markdown, per device: a line naming it, one row per case, then where its numbers came from.

    One table per device rather than a device column keeps each table narrow enough for the page;
    the MFU column appears only for a device that reports one (CUDA).
    """
    if not records:
        return "No benchmark results yet: run `python -m benchmarks`.\n"
    lines: list[str] = []
    for device in dict.fromkeys(r["provenance"]["device"] for r in records):
        mine = [r for r in records if r["provenance"]["device"] == device]
        mfu = any(c["ours"]["mfu"] is not None for r in mine for c in r["cases"])
        lines += [f"**{device}**", "",
                  "| benchmark | case | speed-up, medians (target) | speed-up, fastest runs | ours / baseline s "
                  "| images/s ours / baseline | peak MB ours / baseline |" + (" MFU ours / baseline |" if mfu else ""),
                  "|---" * (7 + mfu) + "|"]
        for r in mine:
            mode = _mode(r["provenance"])
            for c in r["cases"]:
                o, b = c["ours"], c["baseline"]
                lines.append(f"| {r['name']}{mode} | {c['case']} | {_speedup(c)} | {_best_ratio(c)} "
                             f"| {o['seconds']:.3f} / {b['seconds']:.3f} | {_rate(o)} / {_rate(b)} "
                             f"| {o['peak_mem_mb']:.0f} / {b['peak_mem_mb']:.0f} |"
                             + (f" {_mfu(o)} / {_mfu(b)} |" if mfu else ""))
        lines += ["", "| benchmark | date | commit | load average (1 min) at start / end | torch threads |",
                  "|---|---|---|---|---|"]
        for r in mine:
            pr = r["provenance"]
            lines.append(f"| {r['name']}{_mode(pr)} | {pr['date']} | `{pr['commit']}` "
                         f"| {pr['loadavg_start'][0]:.2f} / {pr['loadavg_end'][0]:.2f} | {pr.get('torch_threads', '–')} |")
        lines.append("")
    return "\n".join(lines)


def write_table(results: Path = RESULTS, table: Path = TABLE) -> Path:
    text = render(load_records(results))
    atomic_write(table, lambda tmp: tmp.write_text(text))
    return table


if __name__ == "__main__":
    print(f"wrote {write_table()}")
