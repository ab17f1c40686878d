"""PortAllocator: even RTP ports with RTCP inside the range, round-robin reuse, exhaustion."""

from __future__ import annotations

import pytest

from bridge.rtp.errors import EndpointError, PortsExhausted
from bridge.rtp.ports import PortAllocator


def test_even_ports_with_rtcp_inside_the_range() -> None:
    allocator = PortAllocator(10001, 10010)
    ports = [allocator.allocate() for _ in range(allocator.capacity)]
    assert ports == [10002, 10004, 10006, 10008]  # 10010 would need 10011 for RTCP
    assert all(p % 2 == 0 and 10001 <= p and p + 1 <= 10010 for p in ports)
    with pytest.raises(PortsExhausted):
        allocator.allocate()


def test_released_ports_are_reused_last() -> None:
    allocator = PortAllocator(20000, 20005)
    first = allocator.allocate()
    allocator.release(first)
    assert allocator.allocate() == 20002
    assert allocator.allocate() == 20004
    assert allocator.allocate() == first
    assert allocator.in_use == 3


def test_release_of_a_port_not_allocated_is_a_bug() -> None:
    allocator = PortAllocator(20000, 20003)
    port = allocator.allocate()
    allocator.release(port)
    with pytest.raises(EndpointError):
        allocator.release(port)
    with pytest.raises(EndpointError):
        allocator.release(12345)


@pytest.mark.parametrize(("low", "high"), [(0, 10), (10, 5), (20001, 20001), (65534, 65536)])
def test_bad_ranges(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high)
