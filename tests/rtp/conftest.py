"""Fixtures for the RTP tests: a PortAllocator over a random high range (busy ports are skipped at bind)."""

from __future__ import annotations

import random

import pytest

from bridge.rtp.ports import PortAllocator


def random_range(size: int = 64) -> tuple[int, int]:
    """An even-aligned range of ``size`` ports somewhere in 20000-59999, chosen at run time."""
    low = random.randrange(20000, 60000 - size, 2)
    return low, low + size - 1


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(*random_range())
