"""HostReads: the counter of reads from the device that the hot-loop tests rely on."""
import torch

from transferlab.host_reads import HostReads


def read_twice(x: torch.Tensor) -> float:
    return x.sum().item() + float(x[0])


def test_counts_each_kind_of_read_at_its_transferlab_line_and_nothing_else():
    x = torch.arange(4.0)
    with HostReads() as reads:
        y = (x * 2 + 1).exp().mean(0)       # device-side arithmetic: no read
        x.tolist(), x.cpu(), bool(x[1] > 0), int(x[2]), x[x > 1]   # five reads
    assert reads.sites == {"?": 5} and y.ndim == 0


def test_attributes_reads_to_the_innermost_transferlab_line(monkeypatch):
    import transferlab.host_reads as module

    monkeypatch.setattr(module, "PACKAGE", __file__.rsplit("/", 1)[0])   # this folder stands in for the package
    with HostReads() as reads:
        read_twice(torch.ones(3))
    line = read_twice.__code__.co_firstlineno + 1   # its return line
    assert reads.total == 2 and list(reads.sites) == [f"test_host_reads.py:{line}"]
