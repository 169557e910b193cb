"""The soak's memory accounting: what it reads from /proc and what it calls flat."""

from __future__ import annotations

import os

import pytest

from bench.load import GROWTH_LIMIT, MemorySeries, memory_bytes, print_soak


def test_memory_bytes_reads_the_resident_set_and_its_private_part():
    ballast = bytearray(64 << 20)  # touched: 64 MiB of private pages
    rss, private = memory_bytes(os.getpid())
    assert rss >= private >= len(ballast)
    assert memory_bytes(2**22 + 12345) is None  # no such process
    del ballast


def test_a_process_is_flat_by_its_private_memory_not_by_file_pages_it_maps(capsys):
    mib = 1 << 20
    warming = MemorySeries("library pages mapped in", [100 * mib, 100 * mib, 160 * mib, 160 * mib], [50 * mib] * 4)
    warming.private[2:] = [51 * mib, 51 * mib]
    leaking = MemorySeries("leak", [v * mib for v in (100, 100, 110, 110)], [v * mib for v in (50, 50, 60, 60)])
    tiny = MemorySeries("a 4 MiB process a page heavier", [4 * mib] * 4, [4 * mib, 4 * mib, 5 * mib, 5 * mib])
    assert warming.rss_growth() == pytest.approx(0.6) and warming.growth() == pytest.approx(0.02)
    assert warming.growth() <= GROWTH_LIMIT < leaking.growth() == pytest.approx(0.2)
    assert tiny.growth() == pytest.approx(0.25) and tiny.flat()  # under the 8 MiB floor
    assert print_soak([warming, tiny]) is True
    assert print_soak([warming, leaking]) is False
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("| leak | 4 |") and lines[-2].endswith("| +20.0 % | NO |")
    assert lines[-1] == "leak: private MiB once a minute: 50"
