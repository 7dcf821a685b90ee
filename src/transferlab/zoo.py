"""The pretraining zoo: each (config, seed) is trained once, checkpointed every epoch, reused.

A run lives in `<cache>/zoo/<config hash>-seed<seed>/`: one safetensors file and one JSON
file per checkpoint (source accuracy included), `config.json`, and `done.json` with
provenance once complete. An interrupted run resumes from its last checkpoint.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .cache import atomic_write, cache_root, charge, computing, read_json, write_json
from .config import ParameterError, PretrainConfig, config_hash, to_dict
from .data.device import DeviceData, steps_per_epoch
from .data.store import load_source
from .hub import HubRun, is_hub
from .models import check_model, create_model
from .provenance import provenance, stopwatch
from .train import accuracy, early_checkpoint_steps, load_weights, train


@dataclass(frozen=True)
class ZooRun:
    cfg: PretrainConfig
    seed: int
    path: Path

    def checkpoints(self) -> list[dict]:
        """Metadata of every checkpoint (name, epoch, source_acc, ...), by epoch; 'ep0' is the init."""
        done = read_json(self.path / "done.json")
        return sorted((read_json(self.path / f"{name}.json") for name in done["checkpoints"]),
                      key=lambda m: m["epoch"])

    @property
    def num_classes(self) -> int:
        return read_json(self.path / "done.json")["num_classes"]

    @property
    def computed(self) -> dict:
        """The provenance of the pretraining when it was computed (not when loaded from the cache):
        device, commit, versions, finished and its wall time."""
        return read_json(self.path / "done.json")["provenance"]

    def load(self, name: str, device: str | torch.device = "cpu") -> nn.Module:
        """The model at checkpoint `name`, with its source classifier."""
        path = self.path / f"{name}.safetensors"
        if not path.is_file() and weights_state(self.path) == STRIPPED:
            raise ParameterError(f"The zoo run {self.path.name} was copied without its weights (results only), "
                                 f"and a result not in the cache needs checkpoint {name!r}: copy the run's "
                                 f".safetensors files into {self.path}, or delete the folder to pretrain again.")
        model = create_model(self.cfg.model, self.num_classes)
        model.load_state_dict(load_weights(path))
        return model.to(device)


def run_dir(cfg: PretrainConfig, seed: int) -> Path:
    return cache_root() / "zoo" / f"{config_hash(cfg)}-seed{seed}"


def pretrain(cfg: PretrainConfig, seed: int, device: str) -> ZooRun | HubRun:
    """Train (or resume, or just load) the zoo run for `(cfg, seed)`; a `timm:` source is its
    pretrained weights instead (nothing to train).

    Processes that need the same run at once (sweep workers) take turns on a lock file: one
    trains, the others then find it finished.
    """
    if is_hub(cfg.source):
        return HubRun(cfg.source, seed)
    path = run_dir(cfg, seed)
    run = ZooRun(cfg, seed, path)
    if not _finished(path):
        with computing(path):
            if not _finished(path):
                _train_run(cfg, seed, device, path)
    computed = run.computed   # the open compute ledgers count the run once, where it was computed
    charge(path, computed["wall_time_s"], {k: v for k, v in computed.items() if k != "wall_time_s"})
    return run


def _finished(path: Path) -> bool:
    """Whether the run at `path` is complete: with all its weights, or deliberately without any
    (a results-only copy, e.g. from scripts/gpu_study.sh, renders from cached results). A damaged
    finished run is deleted (its optimizer states are gone, so it is trained again)."""
    if read_json(path / "done.json") is None:
        return False
    if weights_state(path) in (COMPLETE, STRIPPED):
        return True
    shutil.rmtree(path)
    return False


def check_pretrain(cfg: PretrainConfig) -> None:
    """Raise ParameterError, before any compute, for a run the zoo could not train as configured."""
    check_model(cfg.model)
    if not is_hub(cfg.source):
        early_checkpoint_steps(cfg.early_checkpoints, steps_per_epoch(cfg.source_size, cfg.train.batch_size),
                               "pretrain.early_checkpoints")


def _train_run(cfg: PretrainConfig, seed: int, device: str, path: Path) -> None:
    write_json(path / "config.json", {"config": to_dict(cfg), "seed": seed})
    train_ds, test_ds = load_source(cfg)
    train_data = DeviceData.from_arrays(train_ds, device)
    test_data = DeviceData.from_arrays(test_ds, device)
    torch.manual_seed(seed)
    model = create_model(cfg.model, train_ds.num_classes).to(device)  # train() picks the fast layout

    def source_accuracy(name: str, epoch: float) -> dict:
        return {"source_acc": accuracy(model, test_data)}

    with stopwatch() as timer:
        if read_json(path / "ep0.json") is None:  # the initialisation is checkpoint 'ep0'
            weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            atomic_write(path / "ep0.safetensors", lambda tmp: save_file(weights, str(tmp)))
            write_json(path / "ep0.json", {"name": "ep0", "epoch": 0.0, "step": 0, **source_accuracy("ep0", 0)})
        result = train(model, train_data, cfg.train, seed=seed, checkpoint_dir=path,
                       early_checkpoints=cfg.early_checkpoints, on_checkpoint=source_accuracy,
                       desc=f"pretrain seed {seed}")
    write_json(path / "done.json", {"checkpoints": ["ep0", *result.checkpoints],
                                    "num_classes": train_ds.num_classes, "losses": result.losses,
                                    # a resumed run's earlier processes count too: the ledger charges this
                                    "provenance": provenance(device, timer["seconds"] + result.seconds_before)})


COMPLETE, STRIPPED, DAMAGED = "complete", "stripped", "damaged"


def weights_state(path: Path) -> str:
    """COMPLETE when every checkpoint done.json names has readable metadata and complete weights;
    STRIPPED when the metadata is complete and no weights file is there at all (they were left
    out of a copy; writes are atomic, so a crash never removes one); DAMAGED otherwise.

    safetensors checks that its header covers the whole file, so a truncated file is DAMAGED.
    """
    try:
        names = read_json(path / "done.json")["checkpoints"]
        if any(read_json(path / f"{name}.json") is None for name in names):
            return DAMAGED
        if not any((path / f"{name}.safetensors").exists() for name in names):
            return STRIPPED
        for name in names:
            with safe_open(str(path / f"{name}.safetensors"), "pt"):
                pass
    except (OSError, SafetensorError, KeyError, TypeError):
        return DAMAGED
    return COMPLETE


def list_runs() -> list[dict]:
    """Every complete zoo run in the cache: its config, seed, size on disk and final accuracy."""
    runs = []
    for path in sorted((cache_root() / "zoo").glob("*-seed*")):
        done, config = read_json(path / "done.json"), read_json(path / "config.json")
        if done is None or config is None:
            continue
        last = read_json(path / f"{done['checkpoints'][-1]}.json") or {}
        size = sum(f.stat().st_size for f in path.iterdir())
        runs.append({"run": path.name, "seed": config["seed"], "source": config["config"]["source"],
                     "arch": config["config"]["model"]["arch"], "checkpoints": len(done["checkpoints"]),
                     "final_source_acc": last.get("source_acc"), "size_mb": round(size / 1e6, 2)})
    return runs
