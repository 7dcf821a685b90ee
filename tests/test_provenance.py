"""Provenance: the commit a result names is dirty only when a run's inputs changed; a CPU's device
names what decides its arithmetic."""
import subprocess

import torch

from transferlab.provenance import device_name, git_commit


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_changes_in_book_do_not_make_the_commit_dirty_but_changes_elsewhere_do(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_chapter.ipynb").write_text("{}")
    (tmp_path / "lib.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("+dirty"), clean

    (tmp_path / "book" / "01_chapter.ipynb").write_text('{"executed": true}')   # a re-rendered chapter
    assert git_commit(tmp_path) == clean

    (tmp_path / "lib.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"


def test_results_provenance_names_where_the_units_were_computed(tmp_path):
    """Results computed on a GPU and rendered on a CPU name the GPU, its commit and versions; a unit
    without a record counts as computed here, and differing values are all listed."""
    from transferlab.cache import Ledger
    from transferlab.provenance import results_provenance

    gpu = {"device": "NVIDIA H200", "commit": "abc", "versions": {"torch": "2.11.0"}, "finished": "2026-11-27"}
    ledger = Ledger()
    ledger.update({"zoo/a": 60.0, "findings/b": 30.0})
    ledger.origins.update({"zoo/a": gpu, "findings/b": gpu})
    prov = results_provenance("cpu", ledger)
    assert (prov["device"], prov["commit"], prov["versions"]) == ("NVIDIA H200", "abc", {"torch": "2.11.0"})
    assert prov["wall_time_s"] == 90.0 and prov["finished"] == "2026-11-27"
    ledger["findings/old"] = 10.0   # no record: computed here, on this CPU
    prov = results_provenance("cpu", ledger)
    commits, torch_versions = prov["commit"].split(" and "), prov["versions"]["torch"].split(" and ")
    assert prov["device"].startswith("NVIDIA H200 and cpu (") and len(commits) == 2 and "abc" in commits
    assert len(torch_versions) == 2 and "2.11.0" in torch_versions


def test_a_cpu_device_names_what_decides_its_fp32_sums(monkeypatch):
    """Threads and instruction set each change the order of fp32 sums (README), so a CPU result's
    device names both: two machines that differ in either show as two devices."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert device_name("cpu").endswith(", AVX512, 3 threads)")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert device_name("cpu").endswith(", AVX2, 3 threads)")
