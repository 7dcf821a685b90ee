"""scripts/check_disk.sh, run by `make setup` before pip: a first install on a disk without room
for torch's CUDA build fails at once with a message that says how much is needed and free."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_disk.sh"


def _check(venv: Path, needed_gib: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(venv), str(needed_gib)], capture_output=True, text=True)


def test_a_disk_without_room_stops_setup_with_the_sizes(tmp_path):
    proc = _check(tmp_path / "venv", 10**9)   # a billion GiB: more than any disk
    assert proc.returncode == 1
    assert f"'{tmp_path / 'venv'}' needs about {10**9} GiB free" in proc.stderr
    assert "GiB is free" in proc.stderr


def test_a_disk_with_room_passes(tmp_path):
    assert _check(tmp_path / "venv", 0).returncode == 0


def test_an_installed_torch_needs_no_room_again(tmp_path):
    (tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "torch").mkdir(parents=True)
    assert _check(tmp_path / "venv", 10**9).returncode == 0
