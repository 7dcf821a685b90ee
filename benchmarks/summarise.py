"""Render every benchmark JSON under benchmarks/results/ as the table and figure of the book's
Performance page.

`python -m benchmarks.summarise` rewrites book/performance_table.md and
book/performance_speedups.svg (the runner does it too after a run into the default folder): the
page's numbers come from the JSON, never by hand. The training profiles that
`python -m benchmarks.profile_train` writes beside them (no baseline, no ratio) get a table of
their own under their device's.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from transferlab.cache import atomic_write  # noqa: E402

from .common import assess, fastest_ratio  # noqa: E402
from .runner import RESULTS, check_record, compile_suffix  # noqa: E402

PROFILE_PREFIX = "profile-"   # benchmarks.profile_train's results, beside the benchmarks' own
BOOK = Path(__file__).resolve().parents[1] / "book"
TABLE = BOOK / "performance_table.md"
FIGURE = BOOK / "performance_speedups.svg"


def _sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["provenance"]["device"], r["name"], compile_suffix(r["provenance"]["compile"]),
                                          r["provenance"]["quick"]))


def _load_all(results: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(results.glob("*/*.json"))]


def _is_profile(record: dict) -> bool:
    return record.get("name", "").startswith(PROFILE_PREFIX)


def load_records(results: Path = RESULTS) -> list[dict]:
    """Every valid benchmark result (a bench_<name>.py's), sorted by device, benchmark and mode."""
    records = [r for r in _load_all(results) if not _is_profile(r)]
    for record in records:
        check_record(record)
    return _sorted(records)


def load_profiles(results: Path = RESULTS) -> list[dict]:
    """Every profile (benchmarks.profile_train's JSON, no baseline and no ratio), in the same order."""
    return _sorted([r for r in _load_all(results) if _is_profile(r)])


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
    """The median ratio and how it stands against the case's targets, by today's rules (`assess`),
    whatever the result file stored when it was measured."""
    state, why = assess(c)
    return f"{c['speedup']:.2f}x" + (f" ({why})" if state else "")


def _short(name: str, width: int = 48) -> str:
    """A kernel's name cut to fit a table cell (CUDA's templated names run to hundreds of characters)."""
    return name if len(name) <= width else name[:width - 1] + "…"


def _profile_rows(profiles: list[dict]) -> list[str]:
    """The training profiles' rows: one per model, with the device busy share and launches per step
    where the device reports them (CUDA), and the operator with the most self time."""
    lines = ["| training profile | case | steps x batch | profiled epoch s | device busy | launches per step "
             "| top operator (share of self time) |", "|---" * 7 + "|"]
    for r in profiles:
        for c in r["cases"]:
            busy = f"{c['device_busy']:.0%}" if "device_busy" in c else "–"
            launches = f"{c['launches_per_step']:,.0f}" if "launches_per_step" in c else "–"
            top = f"`{_short(c['top_ops'][0]['op'])}` ({c['top_ops'][0]['share']:.0%})" if c["top_ops"] else "–"
            lines.append(f"| {r['name']}{_mode(r['provenance'])} | {c['case']} | {c['steps']} x {c['batch_size']} "
                         f"| {c['wall_s']:.3f} | {busy} | {launches} | {top} |")
    return lines


def render(records: list[dict], profiles: list[dict] = ()) -> str:
    """Markdown, per device with benchmark results: a line naming it, one row per case, the training
    profile where there is one, then where its numbers came from.

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
                lines.append(f"| {r['name']}{mode} | {c['case']} | {_speedup(c)} | {fastest_ratio(c):.2f}x "
                             f"| {o['seconds']:.3f} / {b['seconds']:.3f} | {_rate(o)} / {_rate(b)} "
                             f"| {o['peak_mem_mb']:.0f} / {b['peak_mem_mb']:.0f} |"
                             + (f" {_mfu(o)} / {_mfu(b)} |" if mfu else ""))
        profiled = [p for p in profiles if p["provenance"]["device"] == device]
        if profiled:
            lines += ["", *_profile_rows(profiled)]
        lines += ["", "| benchmark | date | commit | load average (1 min) at start / end | torch threads |",
                  "|---|---|---|---|---|"]
        for r in mine + profiled:
            pr = r["provenance"]
            lines.append(f"| {r['name']}{_mode(pr)} | {pr['date']} | `{pr['commit']}` "
                         f"| {pr['loadavg_start'][0]:.2f} / {pr['loadavg_end'][0]:.2f} | {pr.get('torch_threads', '–')} |")
        lines.append("")
    return "\n".join(lines)


def speedup_rows(records: list[dict]) -> list[dict]:
    """One row per device and case, in the table's order: what the figure draws."""
    return [{"device": r["provenance"]["device"], "label": f"{r['name']}{_mode(r['provenance'])}: {c['case']}",
             "speedup": round(c["speedup"], 3), "target": c["target_speedup"], "state": assess(c)[0]}
            for r in records for c in r["cases"]]


def rows_digest(rows: list[dict]) -> str:
    """A digest of the drawn numbers, stored in the SVG: a test compares it with the results',
    which catches a stale figure without comparing matplotlib's bytes."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


COLOURS = {"meets": "tab:green", "below": "tab:red", "unsettled": "tab:orange", None: "tab:gray"}


def plot(records: list[dict]):
    """Speed-up over the baseline per case on a log axis, one panel per device: green where it
    meets its target (the black tick), red where it does not (or fails a required accuracy or MFU),
    orange where only the medians meet it (unsettled), grey where there is no target (the vmapped
    seeds, which decide a default rather than claim a speed-up). Bars start at 1x (as fast as the
    baseline), so a slower path's bar points left."""
    rows = speedup_rows(records)
    devices = list(dict.fromkeys(row["device"] for row in rows))
    counts = [sum(row["device"] == d for row in rows) for d in devices]
    fig, axes = plt.subplots(len(devices), 1, sharex=True, squeeze=False, figsize=(7.5, 0.9 + 0.3 * len(rows)),
                             gridspec_kw={"height_ratios": counts}, layout="constrained")
    for ax, device in zip(axes[:, 0], devices):
        mine = [row for row in rows if row["device"] == device][::-1]   # first row on top
        ys = range(len(mine))
        ax.barh(ys, [row["speedup"] - 1 for row in mine], left=1, color=[COLOURS[row["state"]] for row in mine])
        for y, row in zip(ys, mine):
            left = row["speedup"] < 1   # the label goes beyond the bar's end, on its side of 1x
            ax.annotate(f"{row['speedup']:.2f}x", (row["speedup"], y), xytext=(-3 if left else 3, 0),
                        textcoords="offset points", va="center", ha="right" if left else "left", fontsize=8)
            if row["target"] is not None:
                ax.plot([row["target"]] * 2, [y - 0.4, y + 0.4], color="black", lw=2)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_yticks(list(ys), [row["label"] for row in mine], fontsize=8)
        ax.set_title(device, fontsize=9, loc="left")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    values = [row["speedup"] for row in rows] + [row["target"] for row in rows if row["target"]]
    axes[-1, 0].set_xlim(min(min(values), 1.0) / 3, max(values) * 3)   # room for the labels
    axes[-1, 0].set_xlabel("speed-up over the naive baseline (medians; black tick: target)")
    return fig, rows_digest(rows)


def save_figure(fig, path: Path, description: str | None = None) -> Path:
    """Write `fig` to `path` (format from its suffix) without a half-written file, and close it; an
    SVG gets no date and fixed ids, so the same figure gives the same file, and `description` as
    its metadata."""
    path = Path(path)
    svg = path.suffix == ".svg"
    metadata = {"Date": None, **({"Description": description} if description else {})} if svg else None
    with matplotlib.rc_context({"svg.hashsalt": "transferlab"}):
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip("."), metadata=metadata))
    plt.close(fig)
    return path


def write_figure(results: Path = RESULTS, figure: Path = FIGURE) -> Path:
    """The SVG with its numbers' digest as its description: the same results give the same file."""
    fig, digest = plot(load_records(results))
    return save_figure(fig, figure, description=f"rows {digest}")


def figure_digest(figure: Path = FIGURE) -> str | None:
    """The digest `write_figure` stored in the SVG, or None."""
    match = re.search(r"rows ([0-9a-f]{16})", figure.read_text()) if figure.exists() else None
    return match.group(1) if match else None


def write_table(results: Path = RESULTS, table: Path = TABLE) -> Path:
    text = render(load_records(results), load_profiles(results))
    atomic_write(table, lambda tmp: tmp.write_text(text))
    return table


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.summarise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the table or the figure is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = [str(p) for p, ok in ((TABLE, TABLE.exists() and TABLE.read_text() == render(load_records(), load_profiles())),
                                      (FIGURE, figure_digest(FIGURE) == rows_digest(speedup_rows(load_records()))))
                 if not ok]
        print(f"stale: {', '.join(stale)} (run `python -m benchmarks.summarise`)" if stale else "up to date")
        return 1 if stale else 0
    print(f"wrote {write_table()} and {write_figure()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
