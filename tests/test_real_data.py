"""Real data sets (data/real.py) through torchvision's loaders, offline, on tiny files written in
the real on-disk formats: CIFAR-10's pickled python batches and STL-10's binary arrays.

torchvision checks each file against the published MD5; the tests replace only those checksums by
their tiny files' own, so the integrity check, the parsing and our conversion all run for real.
"""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torchvision.datasets

from test_offline import blocked_network
from transferlab.config import ParameterError
from transferlab.data.store import load_target
from transferlab.findings import fe_vs_ft

CLASSES = [f"class{i}" for i in range(10)]


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root, monkeypatch, per_batch: int = 20) -> np.ndarray:
    """Six batches of `per_batch` images (every class twice per batch); returns all images, NHWC."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng, names, images = np.random.default_rng(0), [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], []
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels, "batch_label": name}))
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES}))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [[names[5], _md5(folder / names[5])]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / "batches.meta")})
    return np.concatenate(images)


def write_stl10(root, monkeypatch, n: int = 20) -> None:
    """train, test and (empty) unlabeled parts of n 96 px images each, as STL-10's .bin files."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(folder / f"{part}_X.bin")
        (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{part}_y.bin")   # 1-based
    (folder / "unlabeled_X.bin").write_bytes(b"")
    (folder / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    cls = torchvision.datasets.STL10
    monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f in ("train_X.bin", "train_y.bin",
                                                                         "unlabeled_X.bin")])
    monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f in ("test_X.bin", "test_y.bin")])


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_cifar10_target_from_local_files(data_root, monkeypatch):
    pool = write_cifar10(data_root, monkeypatch)
    with blocked_network() as attempts:
        cfg = fe_vs_ft.config("ci", **{"target.name": "cifar10", "target.train": 40, "target.val": 20,
                                       "target.test": 40})
        splits = load_target(cfg.target)
    assert attempts == []
    assert [len(splits[s]) for s in ("train", "val", "test")] == [40, 20, 40]
    assert splits["train"].classes == tuple(CLASSES) and splits["train"].images.shape[1:] == (32, 32, 3)
    # every image is one of the files' images, unchanged
    pooled = {im.tobytes() for im in pool}
    assert all(im.tobytes() in pooled for s in splits.values() for im in s.images)
    assert np.bincount(splits["train"].labels, minlength=10).tolist() == [4] * 10


def test_stl10_target_is_resized_to_32(data_root, monkeypatch):
    write_stl10(data_root, monkeypatch)
    cfg = fe_vs_ft.config("ci", **{"target.name": "stl10", "target.train": 20, "target.val": 10, "target.test": 10})
    splits = load_target(cfg.target)
    assert splits["test"].images.shape == (10, 32, 32, 3) and splits["test"].images.dtype == np.uint8


def test_missing_files_are_a_one_line_error_before_compute(data_root):
    with pytest.raises(ParameterError, match=r"^The 'target.name' parameter 'cifar10' needs the CIFAR-10 files in "
                                             r".*cifar-10-batches-py \(the folder does not exist\); set "
                                             r"\$TRANSFERLAB_DATA") as err:
        fe_vs_ft.config("ci", **{"target.name": "cifar10"})
    assert "\n" not in str(err.value)


def test_corrupt_files_are_a_one_line_error(data_root, monkeypatch):
    write_cifar10(data_root, monkeypatch)
    batch = data_root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    cfg = fe_vs_ft.config("ci", **{"target.name": "cifar10"})   # the folder is there: config passes
    with pytest.raises(ParameterError, match=r"needs the CIFAR-10 files in .*\(unreadable: Dataset not found or corrupted"):
        load_target(cfg.target)
