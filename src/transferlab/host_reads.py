"""Count where code reads tensor values back to the host: on a GPU, each read is a sync.

`.item()`, `.tolist()`, `.cpu()`, `float(t)`, `if t:` and indexing with a boolean mask all wait
for every kernel queued before them. Inside a loop that stops the host from running ahead of
the GPU, and with several processes sharing one GPU (scripts/gpu_study.sh) each wait also queues
behind the others' work. The tests have no GPU, so this counts the reads on any device (a
TorchFunctionMode sees the Python-level calls): they check that the hot loops (training steps,
inversion steps, path points, precise BN) make none per iteration.
"""
from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

# Tensor methods that wait for a GPU tensor's value (`.numpy()` is not one: it refuses GPU tensors).
READS = frozenset({"item", "tolist", "cpu", "__bool__", "__float__", "__int__", "__index__", "nonzero", "unique",
                   "masked_select"})
PACKAGE = str(Path(__file__).resolve().parent)


def _bool_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class HostReads(TorchFunctionMode):
    """Inside `with HostReads() as reads:`, `reads.sites` counts reads by the innermost transferlab
    line that made them ('train.py:270'; '?' when no transferlab frame is on the stack)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name in ("__getitem__", "__setitem__") and len(args) > 1 and _bool_mask(args[1])):
            self.sites[self._site()] += 1
        return func(*args, **(kwargs or {}))

    @staticmethod
    def _site() -> str:
        for frame in reversed(traceback.extract_stack()[:-2]):
            if frame.filename.startswith(PACKAGE) and frame.filename != __file__:
                return f"{Path(frame.filename).relative_to(PACKAGE)}:{frame.lineno}"
        return "?"
