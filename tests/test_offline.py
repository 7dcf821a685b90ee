"""Offline guard (issue 7): the default profiles never open a network connection.

`blocked_network` makes every internet socket connection and name lookup fail and records it;
a test fails on any attempt, even one the code catches and recovers from (a library that
silently falls back to its cache would otherwise pass). test_determinism runs the `ci`
profile of a finding under the same guard.
"""
from __future__ import annotations

import contextlib
import socket
import urllib.request
from typing import Iterator

import pytest

from transferlab.config import ParameterError


class NetworkBlocked(ConnectionError):
    """Raised by the guard; a ConnectionError, so code sees what it would see offline."""


@contextlib.contextmanager
def blocked_network() -> Iterator[list]:
    """Within it, internet connections and DNS lookups fail; yields the list of attempts."""
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address, *args):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise NetworkBlocked(f"network connection to {address!r} attempted")
        return real_connect(sock, address, *args)

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise NetworkBlocked(f"network lookup or connection {args[:2]!r} attempted")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield attempts


@pytest.fixture
def offline():
    with blocked_network() as attempts:
        yield attempts
    assert attempts == [], f"tried to reach the network: {attempts}"


def test_guard_catches_connections():
    with blocked_network() as attempts:
        with pytest.raises(OSError):
            urllib.request.urlopen("http://example.com", timeout=1)
        with pytest.raises(OSError):
            socket.socket().connect(("127.0.0.1", 9))
    assert len(attempts) == 2


def test_every_data_set_loads_offline(offline):
    """Every pretraining source, target and shift in the registries, as the ci profile uses them
    (real data sets from local files are test_real_data's and test_hub's)."""
    import torch

    from transferlab.data import SOURCES, TARGETS, source_dataset, target_splits
    from transferlab.data.device import DeviceData
    from transferlab.data.real import REAL
    from transferlab.data.shifts import SHIFTS, shift_data

    for name in SOURCES:
        assert len(source_dataset(name, 60, 0)) == 60
    on_files = set(REAL) | {s.dataset for s in SHIFTS.values() if s.files}
    for name in set(TARGETS) - on_files:
        assert len(target_splits(name, {"train": 20, "test": 20}, 0)["test"]) == 20
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clean = DeviceData(images, torch.arange(20) % 10)
    for name in (name for name, shift in SHIFTS.items() if not shift.files):
        assert len(shift_data(name, clean, 3, 0, 20).labels) == 20


def test_timm_source_says_what_it_needs_offline(offline):
    """A hub source is refused at config time, before timm could try to download anything."""
    from transferlab.findings import fe_vs_ft

    with pytest.raises(ParameterError, match="needs timm hub weights"):
        fe_vs_ft.config("ci", source="timm:resnet18")
