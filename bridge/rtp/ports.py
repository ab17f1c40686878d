"""RTP port allocation from ``[sip] rtp_ports``: even ports for RTP, the odd port above for RTCP (RFC 3550 §11).

Ports are handed out round-robin (a released port goes to the back of the queue) so a port is not reused at
once: late packets of the previous call then land on a closed socket instead of the next caller's leg.
Pure bookkeeping; the endpoint binds the sockets and gives back a port it could not bind.
"""

from __future__ import annotations

from collections import deque

from bridge.rtp.errors import EndpointError, PortsExhausted

__all__ = ["PortAllocator"]


class PortAllocator:
    """Even RTP ports ``p`` with ``low <= p`` and ``p + 1 <= high`` (the range is inclusive)."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 < low <= high < 65536:
            raise ValueError(f"bad RTP port range {low}-{high}")
        first = low + (low & 1)
        self.low, self.high = low, high
        self._free: deque[int] = deque(range(first, high, 2))
        self._used: set[int] = set()
        if not self._free:
            raise ValueError(f"RTP port range {low}-{high} holds no even/odd port pair")

    @property
    def capacity(self) -> int:
        """Number of RTP/RTCP port pairs in the range."""
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        """An even port not in use; RTCP uses the port + 1. Raises :class:`PortsExhausted`."""
        if not self._free:
            raise PortsExhausted(f"all {self.capacity} RTP ports of {self.low}-{self.high} are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give ``port`` back (it is reused last). Releasing a port that is not allocated is a bug: raises."""
        try:
            self._used.remove(port)
        except KeyError:
            raise EndpointError(f"RTP port {port} released but not allocated") from None
        self._free.append(port)
