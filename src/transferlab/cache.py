"""Content-addressed, atomically written cache: same config twice, no recompute.

Files are written to a temporary name and renamed into place, so a reader either sees
a complete file or none; a corrupt file (e.g. truncated by a crash) is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from filelock import FileLock

from .config import ParameterError


def cache_root() -> Path:
    """$TRANSFERLAB_CACHE, else ~/.cache/transferlab (also when it is set but empty: an empty
    value would otherwise make the current folder the cache)."""
    root = Path(os.environ.get("TRANSFERLAB_CACHE") or Path.home() / ".cache" / "transferlab")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ParameterError(f"The 'TRANSFERLAB_CACHE' environment variable must name a folder that can be "
                             f"created. Got {str(root)!r} instead ({err.strerror}).") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ParameterError(f"The 'TRANSFERLAB_CACHE' environment variable must name a folder this user can "
                             f"write to. Got {str(root)!r} instead.")
    return root


def _new_temp_file(path: Path) -> Path:
    """A new, empty file with a unique name beside `path`, created as open() creates one (0o666 less
    the umask): mkstemp's 0o600 would keep the other users of a shared cache (README: a cluster's
    workers) from reading what one of them computed."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and rename the result to `path` only if it succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    try:
        write(tmp)
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


def timestamp() -> str:
    """Now, as every provenance record writes it."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


@contextmanager
def computing(path: Path) -> Iterator[None]:
    """Hold the lock of the cached file at `path` while computing it. Processes that need the same
    result at once (a finding's seeds side by side in scripts/gpu_study.sh, sweep workers) take
    turns: one computes, the others then read what it wrote. A lock held by a process that dies is
    released with it."""
    lock = lock_file(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        yield


def lock_file(path: Path) -> Path:
    """The lock `computing(path)` takes: in the cache's locks/, named by the file and a hash of its full path."""
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]
    return cache_root() / "locks" / f"{Path(path).name}-{key}.lock"


def cached_json(path: Path, compute: Callable[[], Any]) -> Any:
    """The JSON at `path`, computed once; a unit that records its compute time ('seconds') is
    charged to the open compute ledgers, with where it was computed: a unit computed inside a ledger
    opened with an origin stores that origin (its 'origin' key, which the caller never sees)."""
    found = read_json(path)
    if found is None:
        with computing(path):
            found = read_json(path)   # another process may have computed it while this one waited
            if found is None:
                value = compute()
                if _is_unit(value) and (origin := _current_origin()) is not None:
                    value = {**value, "origin": {**origin, "finished": timestamp()}}
                write_json(path, value)
                found = json.loads(json.dumps(value, default=_jsonable))
    if _is_unit(found):
        charge(path, found["seconds"], found.pop("origin", None))
    return found


def _is_unit(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("seconds"), (int, float))


class Ledger(dict):
    """Compute seconds by cache path, and `origins`: where each unit that records it was computed
    (device, commit, versions, finished)."""

    def __init__(self, origin: dict | None = None) -> None:
        super().__init__()
        self.origin = origin
        self.origins: dict[str, dict] = {}


_LEDGERS: list[Ledger] = []


@contextmanager
def compute_ledger(origin: dict | None = None) -> Iterator[Ledger]:
    """Collect, by cache path, the compute seconds of every cached unit read or computed inside the
    block: what its results cost from an empty cache, a unit that several chapters share counted once
    (chapter headers sum per chapter, so shared pretraining appears in each). A unit computed inside
    the block records `origin` (provenance.compute_origin), the innermost ledger's that has one."""
    ledger = Ledger(origin)
    _LEDGERS.append(ledger)
    try:
        yield ledger
    finally:   # by identity: a nested ledger often holds the same entries as the one around it
        _LEDGERS[:] = [other for other in _LEDGERS if other is not ledger]


def _current_origin() -> dict | None:
    return next((ledger.origin for ledger in reversed(_LEDGERS) if ledger.origin is not None), None)


def charge(path: Path, seconds: float, origin: dict | None = None) -> None:
    """Enter a cached unit's compute seconds, and where it was computed if known, in every open
    compute ledger."""
    for ledger in _LEDGERS:
        ledger[str(path)] = float(seconds)
        if origin is not None:
            ledger.origins[str(path)] = origin


def cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """An .npz of named arrays, computed once."""
    path = Path(path)
    if (found := _read_arrays(path)) is not None:
        return found
    with computing(path):
        if (found := _read_arrays(path)) is not None:   # computed by another process meanwhile
            return found
        arrays = compute()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(path, write)
    return arrays


def _read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
