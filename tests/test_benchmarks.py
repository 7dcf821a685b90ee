"""The benchmark runner in --quick mode: every benchmark runs and writes a well-formed JSON.

No speed ratio is asserted here: performance claims live in benchmarks/results/ (with the
device and load they were measured under), never in timed tests.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a top-level folder, not part of the package

from benchmarks.runner import check_record, discover, main  # noqa: E402
from benchmarks.summarise import (FIGURE, TABLE, figure_digest, load_profiles, load_records, plot,  # noqa: E402
                                  render, rows_digest, speedup_rows, write_figure, write_table)


def test_quick_run_writes_one_valid_json_per_benchmark(tmp_path, capsys):
    assert main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("*/*.json"))
    assert {f.name for f in files} == {f"{name}-quick.json" for name in discover()}
    assert len({f.parent for f in files}) == 1, "one folder per device"
    for f in files:
        record = json.loads(f.read_text())
        check_record(record)
        assert record["provenance"]["quick"] is True and record["device"] == "cpu"
        assert len(record["provenance"]["loadavg_start"]) == 3
        for c in record["cases"]:
            assert c["speedup"] > 0 and c["ours"]["peak_mem_mb"] is not None
            assert c["ours"]["mfu"] is None, "no MFU on a CPU"
    printed = capsys.readouterr().out
    assert all(f"{name}/" in printed for name in discover()), "each benchmark prints its ratio"
    assert "quick" in render(load_records(tmp_path))


def test_a_failing_benchmark_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    """A GPU run is rare: one benchmark that crashes there must not cost the rest of the run."""
    import benchmarks.runner as runner

    real, broken = runner.run_benchmark, discover()[0]

    def run_or_fail(name, *args):
        if name == broken:
            raise RuntimeError("expected scalar type BFloat16 but found Float")
        return real(name, *args)

    monkeypatch.setattr(runner, "run_benchmark", run_or_fail)
    assert main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 1
    assert {f.name for f in tmp_path.glob("*/*.json")} == {f"{n}-quick.json" for n in discover()[1:]}
    captured = capsys.readouterr()
    assert f"{broken}: FAILED" in captured.out and "BFloat16" in captured.err
    assert f"failed: {broken}" in captured.err


def test_a_failing_summary_refresh_does_not_fail_the_measurement(tmp_path, monkeypatch, capsys):
    """A run into the results folder refreshes the book's table and figure; on a rare GPU run a
    failure there must not mark the measurement, already written, as failed."""
    import benchmarks.runner as runner
    import benchmarks.summarise as summarise

    def broken(*args):
        raise ValueError("train: case lacks ['what']")

    monkeypatch.setattr(runner, "RESULTS", tmp_path.resolve())
    monkeypatch.setattr(summarise, "write_table", broken)
    assert main(["--quick", "--device", "cpu", "--only", "cka", "--out", str(tmp_path)]) == 0
    assert [f.name for f in tmp_path.glob("*/*.json")] == ["cka-quick.json"]
    err = capsys.readouterr().err
    assert "case lacks ['what']" in err and "run `python -m benchmarks.summarise`" in err


def _case(speedup: float, target: float | None, fastest: float | None = None, **extra) -> dict:
    """A case whose medians give `speedup` and whose fastest runs give `fastest` (default the same)."""
    fastest = speedup if fastest is None else fastest
    return {"speedup": speedup, "target_speedup": target, "ours": {"seconds_all": [1.0, 2.0], "mfu": extra.pop("mfu", None)},
            "baseline": {"seconds_all": [fastest, fastest + 9.0]}, **extra}


def test_assess_applies_the_page_rules_to_any_stored_case():
    from benchmarks.common import assess

    assert assess(_case(4.0, None)) == (None, "")
    assert assess(_case(4.0, 3.0)) == ("meets", "meets 3x")
    assert assess(_case(2.5, 3.0)) == ("below", "below 3x")
    # the medians meet 3x, the fastest runs (2.87 s / 1.0 s) do not: not settled, so not met
    assert assess(_case(3.17, 3.0, fastest=2.87)) == ("unsettled", "meets 3x by medians, fastest runs 2.87x")
    assert assess(_case(31.1, 1.0, acc_agrees=False, acc_diff_pp=1.29)) == ("below", "accuracy differs by 1.29 pp")
    assert assess(_case(1.6, 1.0, acc_agrees=True, acc_diff_pp=0.0))[1] == "meets 1x, test accuracy within 0.5 pp (+0.00)"
    assert assess(_case(12.0, 10.0, mfu=0.036, target_mfu=0.25)) == ("below", "MFU 3.6% below 25%")
    assert assess(_case(1.74, 10.0, mfu=0.036, target_mfu=0.25)) == ("below", "below 10x and MFU 3.6% below 25%")
    assert assess(_case(12.0, 10.0, mfu=0.3, target_mfu=0.25))[0] == "meets"


def test_a_benchmark_limited_to_some_devices_is_skipped_on_the_others(tmp_path, capsys):
    assert main(["--quick", "--device", "cuda:0", "--only", "probe", "--out", str(tmp_path)]) == 0
    assert "probe: skipped on cuda:0 (it measures cpu only)" in capsys.readouterr().out
    assert not list(tmp_path.rglob("*.json"))


def test_summarise_check_writes_nothing_and_says_whether_the_page_is_stale(tmp_path, monkeypatch, capsys):
    import benchmarks.summarise as summarise

    monkeypatch.setattr(summarise, "TABLE", tmp_path / "table.md")
    monkeypatch.setattr(summarise, "FIGURE", tmp_path / "figure.svg")
    assert summarise.main(["--check"]) == 1 and "stale" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
    write_table(table=tmp_path / "table.md")
    write_figure(figure=tmp_path / "figure.svg")
    assert summarise.main(["--check"]) == 0 and "up to date" in capsys.readouterr().out


def test_check_record_names_what_is_missing():
    with pytest.raises(ValueError, match="'provenance'"):
        check_record({"schema": 1, "name": "x", "device": "cpu", "cases": []})


def test_performance_table_is_generated_from_the_committed_results():
    """book/performance_table.md must be `python -m benchmarks.summarise` of benchmarks/results/."""
    assert TABLE.read_text() == render(load_records(), load_profiles()), \
        "book/performance_table.md is stale: run `python -m benchmarks.summarise`"


def summary_record(device: str, mfu: float | None = None, speedup: float = 2.0,
                   target: float | None = None) -> dict:
    """A benchmark result as the runner writes it, with one 'vit' training case."""
    side = {"seconds": 1.0, "seconds_all": [1.0], "images_per_s": 100.0, "peak_mem_mb": 1.0, "mfu": mfu,
            "mem_method": "m", "tflops": None}
    return {"schema": 1, "name": "train", "device": "cuda" if mfu is not None else "cpu",
            "provenance": {"device": device, "compile": False, "quick": False, "date": "d", "commit": "c",
                           "versions": {}, "wall_time_s": 1.0, "loadavg_start": [0.5], "loadavg_end": [0.5]},
            "cases": [{"case": "vit", "what": "one epoch of training", "ours": side,
                       "baseline": {**side, "seconds": speedup, "seconds_all": [speedup]}, "speedup": speedup,
                       "target_speedup": target, "meets_target": None if target is None else speedup >= target}]}


def test_performance_table_has_one_table_per_device_and_mfu_only_where_measured():
    record = summary_record
    text = render([record("NVIDIA H100 80GB HBM3", 0.3), record("cpu (x86_64, 2 threads)", None)])
    gpu, cpu = text.split("**cpu (x86_64, 2 threads)**")
    assert gpu.startswith("**NVIDIA H100 80GB HBM3**") and "| device |" not in text
    assert "MFU ours / baseline" in gpu and "30.0% / 30.0%" in gpu and "MFU" not in cpu
    assert "| train | vit | 2.00x | 2.00x | 1.000 / 2.000 | 100 / 100 | 1 / 1 |" in cpu


def test_performance_figure_is_generated_from_the_committed_results():
    """book/performance_speedups.svg must draw the committed results' speed-ups (the digest of the
    numbers it drew is stored in it)."""
    assert figure_digest(FIGURE) == rows_digest(speedup_rows(load_records())), \
        "book/performance_speedups.svg is stale: run `python -m benchmarks.summarise`"


def test_performance_figure_has_a_panel_per_device_and_a_bar_per_case_coloured_by_its_target(tmp_path):
    from matplotlib.colors import to_hex

    records = [summary_record("NVIDIA H100", speedup=12.0, target=10.0),
               summary_record("cpu (x86_64, 2 threads)", speedup=1.5, target=2.0),
               summary_record("cpu (x86_64, 2 threads)", speedup=0.5)]
    fig, digest = plot(records)
    gpu, cpu = fig.axes
    assert [gpu.get_title(loc="left"), cpu.get_title(loc="left")] == ["NVIDIA H100", "cpu (x86_64, 2 threads)"]
    bars = [(p.get_x(), p.get_x() + p.get_width(), to_hex(p.get_facecolor())) for p in cpu.patches]
    # first row on top; each bar runs from 1x to its speed-up, so the slower path's points left
    assert bars == [(1.0, 0.5, to_hex("tab:gray")), (1.0, 1.5, to_hex("tab:red"))]
    assert to_hex(gpu.patches[0].get_facecolor()) == to_hex("tab:green")
    assert [t.get_text() for t in cpu.texts] == ["0.50x", "1.50x"]
    # a changed number changes the digest, which the staleness test compares
    assert digest != plot([*records[:2], summary_record("cpu (x86_64, 2 threads)", speedup=0.6)])[1]

    results = tmp_path / "results"
    (results / "cpu").mkdir(parents=True)
    (results / "cpu" / "train.json").write_text(json.dumps(records[1]))
    figure = write_figure(results, tmp_path / "speedups.svg")
    assert figure_digest(figure) == rows_digest(speedup_rows(load_records(results)))


@pytest.mark.parametrize("flag, mode", [("", None), ("1", "default"), ("reduce-overhead", "reduce-overhead")])
def test_compile_switch_is_off_unless_asked(stripes, monkeypatch, flag, mode):
    """TRANSFERLAB_COMPILE=1 routes the training forward through torch.compile, =reduce-overhead
    through its CUDA-graph mode; unset, nothing is compiled."""
    import torch

    from transferlab.config import ModelConfig, TrainConfig
    from transferlab.data.device import DeviceData
    from transferlab.models import create_model
    from transferlab.train import train

    compiled = []
    monkeypatch.setenv("TRANSFERLAB_COMPILE", flag)
    monkeypatch.setattr(torch, "compile", lambda model, mode: compiled.append((model, mode)) or model)
    model = create_model(ModelConfig(arch="resnet", width=4, depth=8), 8)
    train(model, DeviceData.from_arrays(stripes, "cpu"), TrainConfig(epochs=1, batch_size=256), seed=0)
    assert compiled == ([(model, mode)] if mode else [])


def test_an_unknown_compile_mode_is_refused_before_training(stripes, monkeypatch):
    import torch

    from transferlab.config import ModelConfig, ParameterError, TrainConfig
    from transferlab.data.device import DeviceData
    from transferlab.models import create_model
    from transferlab.train import train

    monkeypatch.setenv("TRANSFERLAB_COMPILE", "yes")
    model = create_model(ModelConfig(arch="resnet", width=4, depth=8), 8)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ParameterError, match="'TRANSFERLAB_COMPILE' environment variable must be one of"):
        train(model, DeviceData.from_arrays(stripes, "cpu"), TrainConfig(epochs=1, batch_size=256), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_compiled_runs_get_their_own_result_file_and_row_label():
    from benchmarks.runner import compile_suffix
    from benchmarks.summarise import _mode

    assert [compile_suffix(c) for c in (False, True, "default", "reduce-overhead")] == \
        ["", "-compile", "-compile", "-compile-reduce-overhead"]
    assert _mode({"compile": "reduce-overhead", "quick": True}) == " (compile, CUDA graphs) (quick)"
    assert _mode({"compile": True, "quick": False}) == " (compile)"


def test_seeds_benchmark_falls_back_to_fp32_where_the_vmapped_step_fails_under_bf16():
    """On this CPU torch.func's batch-norm rule rejects bf16 (the GPU run may too): the row is
    measured in fp32 on both sides and says why, instead of the benchmark being lost."""
    from benchmarks.bench_seeds import seeds_case
    from transferlab.config import ModelConfig

    row = seeds_case("resnet", ModelConfig(arch="resnet", width=8, depth=8), batch=8, steps=2, seeds=2,
                     device="cpu", quick=True, bf16=True)
    assert row["precision"].startswith("fp32 (the vmapped step failed under bf16 autocast: "), row["precision"]
    assert row["speedup"] > 0
    plain = seeds_case("resnet", ModelConfig(arch="resnet", width=8, depth=8), batch=8, steps=2, seeds=2,
                       device="cpu", quick=True)
    assert plain["precision"] == "fp32"   # a CPU trains in fp32, as the library does


def test_seeds_benchmark_compares_the_same_training():
    """The vmapped and the one-after-another paths of bench_seeds update every seed's weights alike."""
    import torch

    from benchmarks.bench_seeds import build
    from transferlab.config import ModelConfig

    vmapped, one_after_another, models, stacked = build(ModelConfig(arch="vit", width=16, depth=2, heads=2),
                                                        batch=8, steps=2, seeds=2, device="cpu")
    vmapped()
    one_after_another()
    for s, model in enumerate(models):
        for key, p in model.named_parameters():
            assert torch.allclose(stacked[key][s], p, atol=1e-5), key


def test_step_flops_counts_the_forward_and_the_weight_gradient():
    """A bias-free linear layer on 32x32x3 images: 2*B*3072*10 FLOPs forward, as many for the
    weight gradient, none for the input's (it needs none)."""
    import torch

    from benchmarks.bench_train import Spec, step_flops
    from transferlab.config import ModelConfig

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10, bias=False))
    spec = Spec("linear", ModelConfig(), images=8, batch_size=8)
    assert step_flops(model, spec, "cpu") == 2 * (2 * 8 * 3072 * 10)
    assert all(p.grad is None for p in model.parameters())   # the count leaves no gradient behind


def test_mfu_is_the_rows_flops_per_second_over_the_cards_bf16_peak(monkeypatch):
    import torch

    from benchmarks import common

    assert common.peak_tflops("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert common.peak_tflops("cuda") == 989.0
    row = common.case("x", "what", {"seconds": 2.0}, {"seconds": 8.0}, items=1000, flops=989e12, device="cuda")
    assert row["ours"]["mfu"] == 0.5 and row["baseline"]["mfu"] == 0.125 and row["speedup"] == 4.0
    assert row["ours"]["images_per_s"] == 500.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Other GPU")
    assert common.case("x", "w", {"seconds": 1.0}, {"seconds": 1.0}, flops=1e12, device="cuda")["ours"]["mfu"] is None


def test_profile_of_a_training_epoch(tmp_path, capsys):
    """benchmarks.profile_train (not a bench_ module: no ratio) writes the top operators per model."""
    from benchmarks.profile_train import main as profile_main

    assert profile_main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*/profile-train-quick.json")
    record = json.loads(path.read_text())
    assert record["provenance"]["quick"] is True
    for c in record["cases"]:
        assert c["time_basis"] == "self CPU time" and "device_busy" not in c, "no device time on a CPU"
        assert 0 < len(c["top_ops"]) <= 15 and sum(o["share"] for o in c["top_ops"]) <= 1.0 + 1e-6
        assert c["top_ops"][0]["ms"] >= c["top_ops"][-1]["ms"]
    assert "aten::" in capsys.readouterr().out

    # beside the benchmarks' results it is a row of its device's profile table, not a benchmark
    (tmp_path / path.parent.name / "train.json").write_text(json.dumps(summary_record(record["provenance"]["device"])))
    assert [r["name"] for r in load_records(tmp_path)] == ["train"]
    assert [r["name"] for r in load_profiles(tmp_path)] == ["profile-train"]
    table = write_table(tmp_path, tmp_path / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| profile-train")]
    assert len(rows) == 1 + len(record["cases"]), "one profile row per model, and its provenance row"
    assert "| – | – | `aten::" in rows[0], "no device busy share or launch count on a CPU"


def test_profile_summary_on_cuda_counts_busy_time_and_launches():
    """By hand: 30 ms of kernels in a 0.1 s epoch of 2 steps, 6 + 2 launches. The operators that
    launched the kernels carry the same 30 ms as their self device time, and a user annotation on the
    device spans 90 ms: neither may count again."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from benchmarks.profile_train import summarise_events

    def event(key, count, device_us, cpu_us, device_type=DeviceType.CPU, annotation=False):
        return SimpleNamespace(key=key, count=count, self_device_time_total=device_us, self_cpu_time_total=cpu_us,
                               device_type=device_type, is_user_annotation=annotation)

    events = [event("aten::mm", 4, 20_000.0, 500.0), event("aten::add", 8, 10_000.0, 300.0),
              event("sm90_xmma_gemm_bf16", 4, 20_000.0, 0.0, DeviceType.CUDA),
              event("vectorized_elementwise_kernel", 8, 10_000.0, 0.0, DeviceType.CUDA),
              event("ProfilerStep#1", 1, 90_000.0, 0.0, DeviceType.CUDA, annotation=True),
              event("cudaLaunchKernel", 6, 0.0, 90.0), event("cudaMemcpyAsync", 2, 0.0, 10.0)]
    s = summarise_events(events, wall=0.1, steps=2, on_cuda=True)
    assert s["device_busy"] == 0.3 and s["launches_per_step"] == 4.0 and s["profiled_s"] == 0.03
    assert [(o["op"], o["ms"], o["share"]) for o in s["top_ops"]] == [("sm90_xmma_gemm_bf16", 20.0, 0.6667),
                                                                    ("vectorized_elementwise_kernel", 10.0, 0.3333)]


def test_study_timeline_reads_the_steps_and_readings_of_one_call_on_one_time_axis(tmp_path):
    from benchmarks.study_timeline import main, read_timings, read_usage

    (tmp_path / "timings.txt").write_text(
        "# started 2026/11/28 01:00:00.000\n"
        "info                  6.9 s  at     0.1 s  ok\n"
        "lpft_ood-seed1       90.0 s  at    10.0 s  ok\n"
        "invariance-seed0    120.5 s  at    10.0 s  ok\n"
        "invariance           12.0 s  at   130.5 s  FAILED (rc 1, see logs/invariance.log)\n"
        "study (findings)    132.5 s  at    10.0 s\n"
        "total               143.0 s  at     0.0 s\n")
    (tmp_path / "gpu-usage.csv").write_text(
        "2026/11/28 01:00:10.500, 55 %, 2048 MiB\n"
        "Unable to determine the device handle for GPU0000:00:00.0: Unknown Error\n"
        "2026/11/28 01:00:11.500, 100 %, 3072 MiB\n")
    started, steps = read_timings(tmp_path / "timings.txt")
    assert [(s.name, s.start, s.seconds, s.ok) for s in steps] == [
        ("info", 0.1, 6.9, True), ("lpft_ood-seed1", 10.0, 90.0, True), ("invariance-seed0", 10.0, 120.5, True),
        ("invariance", 130.5, 12.0, False)]
    assert [s.group for s in steps[1:]] == ["lpft_ood", "invariance", "invariance"]
    usage = read_usage(tmp_path / "gpu-usage.csv", started)
    assert usage.values.tolist() == [[10.5, 55.0, 2.0], [11.5, 100.0, 3.0]]

    assert main([str(tmp_path), "--out", str(tmp_path / "t.svg")]) == 0
    assert (tmp_path / "t.svg").read_text().count("<svg") == 1


def test_study_timeline_draws_a_bar_per_step_by_wave_then_book_order():
    from benchmarks.study_timeline import Step, plot

    # a wave's processes start a fraction of a second apart (here 11.4 and 11.5 s): one wave, in book order
    steps = [Step("info", 0.0, 5.0, True), Step("lpft_ood-seed0", 11.4, 50.0, True),
             Step("invariance-seed0", 11.5, 80.0, True), Step("invariance", 91.5, 5.0, False)]
    fig = plot(steps)
    (ax,) = fig.axes   # no readings: no GPU panel
    top_down = [t.get_text() for t in sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])]
    assert top_down == ["info", "invariance-seed0", "lpft_ood-seed0", "invariance"]   # first to start on top
    bars = {(p.get_x(), p.get_width()): p.get_hatch() for p in ax.patches}
    assert bars == {(0.0, 5.0): None, (11.4, 50.0): None, (11.5, 80.0): None, (91.5, 5.0): "//"}


def test_study_timeline_refuses_a_folder_without_timings(tmp_path, capsys):
    from benchmarks.study_timeline import main

    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "The 'folder' argument must hold a timings.txt" in capsys.readouterr().err
