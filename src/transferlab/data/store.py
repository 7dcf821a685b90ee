"""Data sets as the study uses them: generated once, cached as uint8 .npz by their parameters."""
from __future__ import annotations

import numpy as np

from ..cache import cache_root, cached_arrays
from ..config import PretrainConfig, TargetConfig
from .arrays import ArrayDataset


def _pack(ds: ArrayDataset) -> dict[str, np.ndarray]:
    return {"images": ds.images, "labels": ds.labels, "classes": np.array(ds.classes)}


def _unpack(arrays: dict[str, np.ndarray], prefix: str = "") -> ArrayDataset:
    return ArrayDataset(arrays[prefix + "images"], arrays[prefix + "labels"].astype(np.int64),
                        tuple(str(c) for c in arrays[prefix + "classes"]))


def load_source(cfg: PretrainConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, held-out test) images of the pretraining source."""
    from . import source_dataset

    n = cfg.source_size + cfg.source_test
    path = cache_root() / "data" / f"{cfg.source}-n{n}-seed{cfg.data_seed}.npz"
    ds = _unpack(cached_arrays(path, lambda: _pack(source_dataset(cfg.source, n, cfg.data_seed))))
    index = np.arange(n)
    return ds.subset(index[:cfg.source_size]), ds.subset(index[cfg.source_size:])


def load_target(cfg: TargetConfig) -> dict[str, ArrayDataset]:
    """Disjoint, stratified train / val / test splits of a target data set."""
    from . import target_splits

    sizes = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    path = cache_root() / "data" / f"{cfg.name}-{cfg.train}-{cfg.val}-{cfg.test}-seed{cfg.split_seed}.npz"

    def build() -> dict[str, np.ndarray]:
        splits = target_splits(cfg.name, sizes, cfg.split_seed)
        return {f"{split}_{k}": v for split, ds in splits.items() for k, v in _pack(ds).items()}

    arrays = cached_arrays(path, build)
    return {split: _unpack(arrays, f"{split}_") for split in sizes}
