"""Content-addressed, atomically written cache: same config twice, no recompute.

Files are written to a temporary name and renamed into place, so a reader either sees
a complete file or none; a corrupt file (e.g. truncated by a crash) is recomputed.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .config import ParameterError


def cache_root() -> Path:
    """$TRANSFERLAB_CACHE, else ~/.cache/transferlab."""
    root = Path(os.environ.get("TRANSFERLAB_CACHE", Path.home() / ".cache" / "transferlab"))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ParameterError(f"The 'TRANSFERLAB_CACHE' environment variable must name a folder that can be "
                             f"created. Got {str(root)!r} instead ({err.strerror}).") from None
    return root


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and rename the result to `path` only if it succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=_jsonable)))


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (then it is recomputed)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def cached_json(path: Path, compute: Callable[[], Any]) -> Any:
    """The JSON at `path`, computed once; a unit that records its compute time ('seconds') is
    charged to the open compute ledgers."""
    found = read_json(path)
    if found is None:
        value = compute()
        write_json(path, value)
        found = json.loads(json.dumps(value, default=_jsonable))
    if isinstance(found, dict) and isinstance(found.get("seconds"), (int, float)):
        charge(path, found["seconds"])
    return found


_LEDGERS: list[dict[str, float]] = []


@contextmanager
def compute_ledger() -> Iterator[dict[str, float]]:
    """Collect, by cache path, the compute seconds of every cached unit read or computed inside the
    block: what its results cost from an empty cache, a unit that several chapters share counted once
    (chapter headers sum per chapter, so shared pretraining appears in each)."""
    ledger: dict[str, float] = {}
    _LEDGERS.append(ledger)
    try:
        yield ledger
    finally:   # by identity: a nested ledger often holds the same entries as the one around it
        _LEDGERS[:] = [other for other in _LEDGERS if other is not ledger]


def charge(path: Path, seconds: float) -> None:
    """Enter a cached unit's compute seconds in every open compute ledger."""
    for ledger in _LEDGERS:
        ledger[str(path)] = float(seconds)


def cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """An .npz of named arrays, computed once."""
    path = Path(path)
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = compute()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)
    return arrays


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
