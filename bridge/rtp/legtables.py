"""The per-leg state of the batched RTP path (:mod:`bridge.rtp.shared`) as numpy columns, index = the leg's slot.

Theory of operation. The steady path touches every leg each tick with a few whole-batch numpy operations, so
its state is columns, not objects:

- **receive**: what a steady packet of the leg looks like (``expect_sig``: its first two header bytes as one
  little-endian ``uint16``, ``0x80 | pt << 8``; ``expect_ssrc``: its SSRC bytes read as a little-endian
  ``uint32``). A packet that matches both, is 172 bytes long and comes from the leg's latched address is
  steady audio; ``expect_sig`` is 0 (matches nothing) while the leg's packets must go to Python (no SSRC
  yet, RFC 4733 events pending). Then the RFC 3550 counters (A.1 sequence, A.8 jitter: ``transit`` is NaN
  until the first packet) and ``fast_in`` (steady packets, each :data:`PACKET` bytes; the Python path counts
  its own in ``packets_in``/``bytes_in``).
- **send**: each leg's next packet is kept whole in ``packets`` (version, payload type, SSRC written once);
  ``seq_out``, ``ts_out`` and ``ssrc_out`` are big-endian views into it, so a tick writes the payloads,
  stages a copy of the rows for the send thread and advances the two counters in place (``uint16``/``uint32``
  wrap-around is RTP's). ``fast_out`` counts those packets (the Python path: ``packets_out``/``bytes_out``).

:class:`LegTable` is the minimal demultiplexer of ``bench/media.py``: address -> leg -> ring, nothing else.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bridge.rtp.batch import I64, RTP_HEADER_SIZE, U8, U64, BatchSocket, BoolArray, FrameRing, header_dtype, parse_rtp

__all__ = ["DELAY_FRAMES", "FRAME", "PACKET", "LegTable", "LegTables", "swap32"]

FRAME = 160
PACKET = RTP_HEADER_SIZE + FRAME
#: Frames a leg's play-out starts behind its newest packet, and how far that adapts: the same depths as
#: bridge.rtp.jitterbuffer's (start 2, 1-4 frames queued counting the one played: 1 behind, 0-3).
DELAY_FRAMES = 1
ADAPT = (0, 3)
RING_DEPTH = 8
F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]
_HEADER = header_dtype(PACKET)


def swap32(value: int) -> int:
    """``value``'s four bytes in the other order (a big-endian field read as a little-endian word)."""
    return int.from_bytes((value & 0xFFFFFFFF).to_bytes(4, "big"), "little")


class LegTables:
    """See the module docstring; grows by doubling (:meth:`grow`), a freed slot is :meth:`clear`-ed."""

    audio_pt: I64
    ssrc_in: I64
    remote_key: I64
    codec: I64
    pid: I64
    group: I64
    base_seq: I64
    max_seq: I64
    cycles: I64
    received: I64
    fast_in: I64
    packets_in: I64
    bytes_in: I64
    fast_out: I64
    packets_out: I64
    bytes_out: I64
    concealed: I64
    run: I64
    last_rx: F64
    jitter: F64
    transit: F64
    last_send_time: F64
    sending: BoolArray
    slow_rx: BoolArray
    slow_tx: BoolArray
    marker: BoolArray
    active: BoolArray
    expect_sig: U32
    expect_ssrc: U32

    INT_FIELDS = (
        "audio_pt", "ssrc_in", "remote_key", "codec", "pid", "group", "base_seq", "max_seq", "cycles", "received",
        "fast_in", "packets_in", "bytes_in", "fast_out", "packets_out", "bytes_out", "concealed", "run",
    )  # fmt: skip
    FLOAT_FIELDS = ("last_rx", "jitter", "transit", "last_send_time")
    BOOL_FIELDS = ("sending", "slow_rx", "slow_tx", "marker", "active")
    WORD_FIELDS = ("expect_sig", "expect_ssrc")

    def __init__(self, capacity: int) -> None:
        self.capacity = 0
        self.ring = FrameRing(0, depth=RING_DEPTH, delay=DELAY_FRAMES, frame=FRAME, adapt=ADAPT)
        self.packets: U8 = np.zeros((0, PACKET), dtype=np.uint8)
        self._views()
        for names, dtype in self._columns():
            for name in names:
                setattr(self, name, np.zeros(0, dtype=dtype))
        self.grow(capacity)

    def _columns(self) -> tuple[tuple[tuple[str, ...], type], ...]:
        return (
            (self.INT_FIELDS, np.int64), (self.FLOAT_FIELDS, np.float64), (self.BOOL_FIELDS, np.bool_),
            (self.WORD_FIELDS, np.uint32),
        )  # fmt: skip

    def _views(self) -> None:
        header = self.packets.view(_HEADER)[:, 0]
        self.seq_out = header["seq"]
        self.ts_out = header["ts"]
        self.ssrc_out = header["ssrc"]

    def grow(self, capacity: int) -> None:
        old = self.capacity
        for names, _ in self._columns():
            for name in names:
                array = getattr(self, name)
                bigger = np.zeros(capacity, dtype=array.dtype)
                bigger[:old] = array
                setattr(self, name, bigger)
        self.pid[old:] = -1
        self.ssrc_in[old:] = -1
        self.transit[old:] = np.nan
        packets = np.zeros((capacity, PACKET), dtype=np.uint8)
        packets[:old] = self.packets
        packets[old:, 0] = 0x80
        self.packets = packets
        self._views()
        self.ring = self.ring.resized(capacity)
        self.capacity = capacity

    def clear(self, slot: int) -> None:
        for names, _ in self._columns():
            for name in names:
                getattr(self, name)[slot] = 0
        self.pid[slot] = -1
        self.ssrc_in[slot] = -1
        self.transit[slot] = np.nan
        self.packets[slot] = 0
        self.packets[slot, 0] = 0x80
        self.ring.reset(slot)

    def set_audio_pt(self, slot: int, payload_type: int) -> None:
        self.audio_pt[slot] = payload_type
        self.packets[slot, 1] = payload_type & 0x7F
        self.refresh(slot)

    def refresh(self, slot: int) -> None:
        """Recompute what a steady packet of ``slot`` looks like (after its payload type, SSRC or
        ``slow_rx`` changed)."""
        steady = self.ssrc_in[slot] >= 0 and not self.slow_rx[slot]
        self.expect_sig[slot] = 0x80 | int(self.audio_pt[slot]) << 8 if steady else 0
        self.expect_ssrc[slot] = swap32(int(self.ssrc_in[slot])) if steady else 0

    def reset_source(self, slot: int, ssrc: int, seq: int) -> None:
        """A new remote SSRC: statistics and play-out start again (as MediaSession does)."""
        self.ssrc_in[slot] = ssrc
        self.base_seq[slot] = self.max_seq[slot] = seq
        self.cycles[slot] = self.received[slot] = 0
        self.jitter[slot] = 0.0
        self.transit[slot] = np.nan
        self.ring.reset(slot)
        self.refresh(slot)

    def account(self, slots: I64, seq: I64, ts: I64, now: float) -> None:
        """RFC 3550 A.1 (extended highest sequence, without probation) and A.8 (jitter) for packets of
        distinct ``slots``."""
        max_seq = self.max_seq[slots]
        udelta = (seq - max_seq) & 0xFFFF
        forward = udelta < 3000
        wrapped = forward & (seq < max_seq)
        if wrapped.any():
            self.cycles[slots[wrapped]] += 1 << 16
        jump = ~forward & (udelta <= (1 << 16) - 100)
        if jump.any():  # a restarted source (MediaSession waits for a second packet; we start at once)
            restarted = slots[jump]
            self.base_seq[restarted], self.cycles[restarted], self.received[restarted] = seq[jump], 0, 0
        self.max_seq[slots] = np.where(forward | jump, seq, max_seq)
        self.received[slots] += 1
        transit = now * 8000.0 - ts
        d = np.abs(transit - self.transit[slots])  # NaN before the first packet: no update
        self.transit[slots] = transit
        jitter = self.jitter[slots]
        self.jitter[slots] = jitter + np.where(d < 0x40000000, d - jitter, 0.0) / 16.0

    def stats_in(self, slot: int) -> tuple[int, int]:
        """(packets, bytes) received, both paths."""
        fast = int(self.fast_in[slot])
        return int(self.packets_in[slot]) + fast, int(self.bytes_in[slot]) + fast * PACKET

    def stats_out(self, slot: int) -> tuple[int, int]:
        """(packets, bytes) sent, both paths."""
        fast = int(self.fast_out[slot])
        return int(self.packets_out[slot]) + fast, int(self.bytes_out[slot]) + fast * PACKET


class LegTable:
    """Which leg each remote address is: routes the audio packets of received batches into a :class:`FrameRing`.

    ``keys[i]`` is leg ``i``'s remote RTP address (:func:`address_key`). A datagram is taken when it comes
    from a known address and is valid RTP of ``payload_type`` with a ``frame``-byte payload; anything else
    is counted (``foreign``: unknown source; ``rejected``: known source, not such a packet).
    """

    def __init__(self, keys: U64, *, payload_type: int = 0, frame: int = 160) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        order = np.argsort(keys)
        self._sorted, self._leg_of = keys[order], order.astype(np.int64)
        self.payload_type = payload_type
        self.frame = frame
        self.taken = self.foreign = self.rejected = 0

    def receive(self, io: BatchSocket, ring: FrameRing) -> int:
        """Read everything waiting on ``io`` into ``ring``; returns how many packets were taken."""
        taken = 0
        keys = self._sorted
        while len(keys) and (n := io.recv()) > 0:
            heads = parse_rtp(io.data[:n], io.lengths[:n])
            sources = io.sources[:n]
            pos = np.minimum(np.searchsorted(keys, sources), len(keys) - 1)
            known = keys[pos] == sources
            ok = known & heads.valid & (heads.payload_type == self.payload_type)
            ok &= heads.payload_length == self.frame
            rows = np.nonzero(ok)[0]
            offsets = heads.payload_offset[rows]
            if np.all(offsets == RTP_HEADER_SIZE):
                payloads = io.data[rows, RTP_HEADER_SIZE : RTP_HEADER_SIZE + self.frame]
            else:
                payloads = io.data[rows[:, None], offsets[:, None] + np.arange(self.frame)]
            ring.push(self._leg_of[pos[rows]], heads.seq[rows], payloads)
            foreign = int(np.count_nonzero(~known))
            self.foreign += foreign
            self.rejected += n - foreign - len(rows)
            taken += len(rows)
            if n < io.batch:
                break
        self.taken += taken
        return taken
