"""The engine's batched RTP path: many legs on a few shared UDP sockets, one ``recvmmsg``/``sendmmsg`` per tick.

Theory of operation. :class:`BatchedMedia` owns *socket groups* (:class:`SocketGroup`: an RTP
:class:`~bridge.rtp.batch.BatchSocket` on an even port of ``[sip] rtp_ports`` and a plain RTCP socket on the
odd port above it). Every leg on a *shared* group advertises that group's port in its SDP; legs are told apart
by the remote address their packets come from (symmetric RTP, RFC 4961). Per tick:

1. :meth:`BatchedMedia.receive` reads each group with ``recvmmsg`` into numpy, parses the batch
   (:func:`~bridge.rtp.batch.parse_rtp`) and looks every source up in the group's table of *latched*
   addresses. A packet from a latched address, of the leg's audio payload type, with its current SSRC and a
   plain 160-byte payload is the steady path: it is accounted (RFC 3550 A.1/A.8 counters, vectorised) and
   stored in the :class:`~bridge.rtp.batch.FrameRing` by timestamp -- no Python per packet.
2. Everything else that *may* belong to a leg (a known address with another payload type: RFC 4733 events,
   RTCP multiplexed on the RTP port; a new SSRC; padding/CSRC/extension; a leg's SDP address; the first
   packets of a leg not yet latched) goes to that leg's Python handler
   (:meth:`bridge.rtp.sharedleg.BatchedLeg.side_rtp`). The rest is counted (``foreign``) and dropped.
3. :meth:`BatchedMedia.pop` plays out one frame per leg (concealment of up to three lost frames, 6 dB
   quieter each, as :mod:`bridge.rtp.jitterbuffer` does) and :meth:`BatchedMedia.send` builds all packets
   in one array and sends them with ``sendmmsg``.

Latching on a shared socket (the per-leg rule of :mod:`bridge.rtp.session`, made safe for a shared port):
a leg first accepts its SDP address; before it latched it also accepts another port of its SDP *host* when
it is the only unlatched leg of the group with that host (a gateway that sends from another port than it
advertises); once latched, only the latched address, and the SDP address, which takes the stream back.
Nothing from another host is ever attributed on a shared socket (a phone behind a NAT that advertises a
private address needs a private group). Two unlatched legs of one host both waiting for their first packet
from a port neither advertised are ambiguous: such packets are counted (``ambiguous``) and dropped until a
leg latches by its SDP address. A leg that could not be told apart at all -- the same SDP address as another
leg of the group -- gets a *private* group (its own port, any first sender latches, as on the per-socket
path), chosen when we answer an offer. A leg we
offer first (outbound) is placed before its remote address is known; if the answer collides, exact-address
packets still go to the first leg of that address and the newer one is counted as ``ambiguous``.

Arrival times are the tick's ``now`` (the jitter figure has tick resolution, as the poller without kernel
timestamps). Linux, IPv4 only (:mod:`bridge.rtp.batch`).
"""

from __future__ import annotations

import logging
import socket
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bridge.mixer.g711 import DECODE_TABLES, ENCODE_TABLES
from bridge.rtp.batch import (
    I64,
    RTP_HEADER_SIZE,
    U8,
    U64,
    BatchSocket,
    BoolArray,
    FrameRing,
    address_key,
    parse_rtp,
    size_buffers,
)
from bridge.rtp.errors import PortsExhausted
from bridge.rtp.ports import PortAllocator
from bridge.rtp.session import MediaSession

__all__ = ["BatchedMedia", "SocketGroup"]

log = logging.getLogger(__name__)

FRAME = 160
PACKET = RTP_HEADER_SIZE + FRAME
MAX_CONCEALED = 3
DELAY_FRAMES = 2  # 40 ms, the per-leg jitter buffer's start depth
LEGS_PER_SOCKET = 500
HOUSEKEEPING_S = 1.0
HOUSEKEEPING_TICKS = 25  # a second's sweep is spread over this many ticks (2,000 legs at once stalled a tick)
F64 = npt.NDArray[np.float64]
_HEADER = np.dtype([("first", np.uint8), ("second", np.uint8), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")])


def _halve(codec: str) -> U8:
    samples = np.round(DECODE_TABLES[codec].astype(np.float64) * 0.5).astype(np.int16)
    return ENCODE_TABLES[codec].take(samples.view(np.uint16)).astype(np.uint8)


_HALVE = np.stack([_halve("PCMU"), _halve("PCMA")])  # row 0: PCMU, row 1: PCMA
_SILENCE = np.array([0xFF, 0xD5], dtype=np.uint8)


class BatchedLeg(Protocol):
    """What the batch needs of a leg (:class:`bridge.rtp.sharedleg.BatchedLeg`)."""

    slot: int
    group: SocketGroup | None
    sdp_key: int
    remote_key: int
    latched: bool
    inband: bool
    session: MediaSession

    def side_rtp(self, data: bytes, key: int, now: float) -> None: ...

    def python_send(self, payload: bytes, now: float) -> None: ...

    def inband_frame(self, frame: U8 | None) -> None: ...

    def housekeeping(self, now: float) -> None: ...

    def close(self) -> None: ...


class SocketGroup:
    """One RTP port (+ RTCP on the next) and the legs on it; see the module docstring."""

    def __init__(self, rtp: BatchSocket, rtcp: socket.socket, port: int, *, shared: bool) -> None:
        self.rtp = rtp
        self.rtcp = rtcp
        self.port = port
        self.shared = shared
        self.legs: dict[int, BatchedLeg] = {}  # slot -> leg
        self.by_latched: dict[int, BatchedLeg] = {}  # remote key -> leg (steady path)
        self.by_sdp: dict[int, BatchedLeg] = {}  # SDP key -> leg (first leg of that key)
        self.fast_keys: U64 = np.zeros(0, dtype=np.uint64)
        self.fast_slots: I64 = np.zeros(0, dtype=np.int64)
        self.side_keys: U64 = np.zeros(0, dtype=np.uint64)
        self.side_hosts: U64 = np.zeros(0, dtype=np.uint64)
        self.dirty = True
        self.foreign = 0
        self.ambiguous = 0

    def rebuild(self) -> None:
        """The lookup tables, after a leg joined, left or latched (rare: not per packet)."""
        self.by_latched = {leg.remote_key: leg for leg in self.legs.values() if leg.latched}
        self.by_sdp = {}
        for leg in self.legs.values():
            if leg.sdp_key >= 0:
                self.by_sdp.setdefault(leg.sdp_key, leg)
        keys = np.fromiter(self.by_latched, dtype=np.uint64, count=len(self.by_latched))
        slots = np.fromiter((leg.slot for leg in self.by_latched.values()), dtype=np.int64, count=len(keys))
        order = np.argsort(keys)
        self.fast_keys, self.fast_slots = keys[order], slots[order]
        self.side_keys = np.unique(np.fromiter(self.by_sdp, dtype=np.uint64, count=len(self.by_sdp)))
        hosts = [leg.sdp_key >> 16 for leg in self.legs.values() if not leg.latched and leg.sdp_key >= 0]
        self.side_hosts = np.unique(np.array(hosts, dtype=np.uint64))
        self.dirty = False

    def unlatched_with_host(self, host: int) -> list[BatchedLeg]:
        return [leg for leg in self.legs.values() if not leg.latched and leg.sdp_key >= 0 and leg.sdp_key >> 16 == host]

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


class _Tables:
    """Per-slot numpy state of every leg (index = slot); grows by doubling."""

    audio_pt: I64
    ssrc_in: I64
    remote_key: I64
    seq_out: I64
    ts_out: I64
    ssrc_out: I64
    codec: I64
    pid: I64
    group: I64
    base_seq: I64
    max_seq: I64
    cycles: I64
    received: I64
    packets_in: I64
    bytes_in: I64
    packets_out: I64
    bytes_out: I64
    concealed: I64
    run: I64
    ts_last_sent: I64
    last_rx: F64
    jitter: F64
    transit: F64
    last_send_time: F64
    sending: BoolArray
    slow_rx: BoolArray
    slow_tx: BoolArray
    marker: BoolArray
    have_transit: BoolArray
    active: BoolArray

    INT_FIELDS = (
        "audio_pt", "ssrc_in", "remote_key", "seq_out", "ts_out", "ssrc_out", "codec", "pid", "group",
        "base_seq", "max_seq", "cycles", "received", "packets_in", "bytes_in", "packets_out", "bytes_out",
        "concealed", "run", "ts_last_sent",
    )  # fmt: skip
    FLOAT_FIELDS = ("last_rx", "jitter", "transit", "last_send_time")
    BOOL_FIELDS = ("sending", "slow_rx", "slow_tx", "marker", "have_transit", "active")

    def __init__(self, capacity: int) -> None:
        self.capacity = 0
        self.ring = FrameRing(0, depth=8, delay=DELAY_FRAMES, frame=FRAME)
        self.last: U8 = np.zeros((0, FRAME), dtype=np.uint8)
        for name in self.INT_FIELDS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        for name in self.FLOAT_FIELDS:
            setattr(self, name, np.zeros(0, dtype=np.float64))
        for name in self.BOOL_FIELDS:
            setattr(self, name, np.zeros(0, dtype=np.bool_))
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        old = self.capacity
        for name in (*self.INT_FIELDS, *self.FLOAT_FIELDS, *self.BOOL_FIELDS):
            array = getattr(self, name)
            bigger = np.zeros(capacity, dtype=array.dtype)
            bigger[:old] = array
            setattr(self, name, bigger)
        self.pid[old:] = -1
        self.ssrc_in[old:] = -1
        ring = FrameRing(capacity, depth=8, delay=DELAY_FRAMES, frame=FRAME)
        ring.frames[:old], ring.slot_seq[:old] = self.ring.frames, self.ring.slot_seq
        ring.next_seq[:old] = self.ring.next_seq
        ring.silence[:old], ring.late, ring.resyncs = self.ring.silence, self.ring.late, self.ring.resyncs
        ring.late_run[:old] = self.ring.late_run
        self.ring = ring
        last = np.full((capacity, FRAME), 0xFF, dtype=np.uint8)
        last[:old] = self.last
        self.last = last
        self.capacity = capacity

    def clear(self, slot: int) -> None:
        for name in (*self.INT_FIELDS, *self.FLOAT_FIELDS, *self.BOOL_FIELDS):
            getattr(self, name)[slot] = 0
        self.pid[slot] = -1
        self.ssrc_in[slot] = -1
        self.ring.reset(slot)

    def reset_source(self, slot: int, ssrc: int, seq: int) -> None:
        """A new remote SSRC: statistics and play-out start again (as MediaSession does)."""
        self.ssrc_in[slot] = ssrc
        self.base_seq[slot] = self.max_seq[slot] = seq
        self.cycles[slot] = self.received[slot] = 0
        self.jitter[slot] = 0.0
        self.have_transit[slot] = False
        self.ring.reset(slot)

    def account(self, slots: I64, seq: I64, ts: I64, sizes: I64, now: float) -> None:
        """RFC 3550 A.1 (extended highest sequence, without probation) and A.8 (jitter) for packets of
        distinct ``slots``, plus the packet and byte counters."""
        max_seq = self.max_seq[slots]
        udelta = (seq - max_seq) & 0xFFFF
        forward = udelta < 3000
        jump = ~forward & (udelta <= (1 << 16) - 100)
        self.cycles[slots] += np.where(forward & (seq < max_seq), 1 << 16, 0)
        self.max_seq[slots] = np.where(forward | jump, seq, max_seq)
        if jump.any():  # a restarted source (MediaSession waits for a second packet; we start at once)
            restarted = slots[jump]
            self.base_seq[restarted], self.cycles[restarted], self.received[restarted] = seq[jump], 0, 0
        self.received[slots] += 1
        transit = now * 8000.0 - ts
        d = np.abs(transit - self.transit[slots])
        update = self.have_transit[slots] & (d < 0x40000000)
        jitter = self.jitter[slots]
        self.jitter[slots] = np.where(update, jitter + (d - jitter) / 16.0, jitter)
        self.transit[slots] = transit
        self.have_transit[slots] = True
        self.packets_in[slots] += 1
        self.bytes_in[slots] += sizes
        self.last_rx[slots] = now


def _rounds(slots: I64) -> list[I64]:
    """Indexes of ``slots`` split into rounds of distinct slots, each in arrival order."""
    if len(slots) < 2 or np.bincount(slots).max() == 1:
        return [np.arange(len(slots))]
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    rank = np.empty(len(slots), dtype=np.int64)
    rank[order] = np.arange(len(slots)) - np.searchsorted(ordered, ordered)
    return [np.nonzero(rank == r)[0] for r in range(int(rank.max()) + 1)]


class BatchedMedia:
    """Legs on shared sockets; :class:`~bridge.conference.media.MixerMedia` drives :meth:`receive`,
    :meth:`pop` and :meth:`send` each tick. Create legs with :meth:`open_leg` (:mod:`bridge.rtp.sharedleg`)."""

    def __init__(self, allocator: PortAllocator, *, host: str, legs_per_socket: int = LEGS_PER_SOCKET) -> None:
        self.allocator = allocator
        self.host = host
        self.legs_per_socket = legs_per_socket
        self.groups: list[SocketGroup] = []
        self.tables = _Tables(64)
        self._free: list[int] = list(range(63, -1, -1))
        self._legs: dict[int, BatchedLeg] = {}
        self._pid_slot: I64 = np.full(0, -1, dtype=np.int64)
        self._inband: list[BatchedLeg] = []
        self._next_housekeeping = 0.0
        self._sweep: list[BatchedLeg] = []  # legs still due in this second's housekeeping sweep
        self._sweep_step = 1
        self.side_packets = 0
        self.receive_errors = 0
        self.last_out: U8 = np.zeros((0, FRAME), dtype=np.uint8)
        """The frames of the last :meth:`pop` (all slots; reused) and which of them were produced."""
        self.last_produced: BoolArray = np.zeros(0, dtype=np.bool_)

    def __len__(self) -> int:
        return len(self._legs)

    # --- legs and groups -------------------------------------------------------------------------

    def new_slot(self, leg: BatchedLeg) -> int:
        if not self._free:
            old = self.tables.capacity
            self.tables.grow(2 * old)
            self._free = list(range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        self.tables.clear(slot)
        self._legs[slot] = leg
        if leg.inband:
            self._inband.append(leg)
        return slot

    def free_slot(self, leg: BatchedLeg) -> None:
        if self._legs.pop(leg.slot, None) is None:
            return
        self.unbind(leg)
        if leg in self._inband:
            self._inband.remove(leg)
        group = leg.group
        if group is not None:
            group.legs.pop(leg.slot, None)
            group.dirty = True
            if not group.legs and not group.shared:
                self._close_group(group)
        self.tables.clear(leg.slot)
        self._free.append(leg.slot)

    def place(self, leg: BatchedLeg, sdp_key: int | None) -> SocketGroup:
        """Put ``leg`` on a shared group (``sdp_key``: the remote SDP address when known) or, when it could
        not be told apart from a leg already there, on a private group of its own."""
        room = [g for g in self.groups if g.shared and len(g.legs) < self.legs_per_socket]
        for group in room:
            if sdp_key is None or not self._conflict(group, sdp_key):
                return self._join(group, leg)
        return self._join(self._open_group(shared=not room), leg)

    def _conflict(self, group: SocketGroup, sdp_key: int) -> bool:
        """True when a leg of ``group`` has this SDP address (or is latched to it)."""
        if group.dirty:
            group.rebuild()
        return sdp_key in group.by_sdp or sdp_key in group.by_latched

    def _join(self, group: SocketGroup, leg: BatchedLeg) -> SocketGroup:
        group.legs[leg.slot] = leg
        group.dirty = True
        leg.group = group
        self.tables.group[leg.slot] = self.groups.index(group)
        return group

    def _open_group(self, *, shared: bool) -> SocketGroup:
        last: OSError | None = None
        for _ in range(max(1, self.allocator.capacity - self.allocator.in_use)):
            port = self.allocator.allocate()  # raises PortsExhausted
            rtp = rtcp = None
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rtp = BatchSocket(sock, batch=1024 if shared else 32, datagram=512)
                if shared:
                    size_buffers(sock, 4 << 20)
                sock.bind((self.host, port))
                rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rtcp.setblocking(False)
                rtcp.bind((self.host, port + 1))
            except OSError as exc:
                last = exc
                for s in (rtp.sock if rtp else None, rtcp):
                    if s is not None:
                        s.close()
                self.allocator.release(port)
                continue
            group = SocketGroup(rtp, rtcp, port, shared=shared)
            self.groups.append(group)
            return group
        raise PortsExhausted(f"could not bind an RTP/RTCP port pair on {self.host} ({last})")

    def _close_group(self, group: SocketGroup) -> None:
        index = self.groups.index(group)
        self.groups.remove(group)
        group.close()
        self.allocator.release(group.port)
        for other in self.groups[index:]:
            for slot in other.legs:
                self.tables.group[slot] -= 1

    def bind(self, leg: BatchedLeg, pid: int) -> None:
        """The mixer participant ``pid`` is fed by / feeds ``leg`` (MixerMedia.attach)."""
        if pid >= len(self._pid_slot):
            bigger = np.full(max(pid + 1, 2 * len(self._pid_slot), 64), -1, dtype=np.int64)
            bigger[: len(self._pid_slot)] = self._pid_slot
            self._pid_slot = bigger
        self._pid_slot[pid] = leg.slot
        self.tables.pid[leg.slot] = pid

    def unbind(self, leg: BatchedLeg, pid: int | None = None) -> None:
        """``pid`` (default: the leg's current one) no longer feeds the leg. The same endpoint may be bound
        to a new participant before the old one is detached (the lobby hands a call to its conference)."""
        bound = int(self.tables.pid[leg.slot])
        pid = bound if pid is None else pid
        if 0 <= pid < len(self._pid_slot) and self._pid_slot[pid] == leg.slot:
            self._pid_slot[pid] = -1
        if bound == pid:
            self.tables.pid[leg.slot] = -1

    # --- the tick --------------------------------------------------------------------------------

    def receive(self, now: float) -> int:
        """Read every group (RTP batches, then RTCP), then a share of the housekeeping. Returns packets taken."""
        taken = 0
        for group in self.groups:
            try:
                taken += self._receive_group(group, now)
            except OSError as exc:
                self.receive_errors += 1
                log.debug("RTP receive on port %d: %s", group.port, exc)
            self._receive_rtcp(group, now)
        self._housekeeping(now)
        return taken

    def _housekeeping(self, now: float) -> None:
        """Every leg's housekeeping (RTCP report when due, RTP timeout) once a second, a slice of the legs per
        tick over the first ``HOUSEKEEPING_TICKS`` ticks of the second, so no tick does all of it."""
        if not self._sweep:
            if now < self._next_housekeeping:
                return
            self._next_housekeeping = now + HOUSEKEEPING_S
            self._sweep = list(self._legs.values())
            self._sweep_step = max(1, -(-len(self._sweep) // HOUSEKEEPING_TICKS))
        due, self._sweep = self._sweep[-self._sweep_step :], self._sweep[: -self._sweep_step]
        for leg in due:
            leg.housekeeping(now)  # a leg closed since the sweep began returns at once

    def _receive_group(self, group: SocketGroup, now: float) -> int:
        io = group.rtp
        tables = self.tables
        taken = 0
        while (n := io.recv()) > 0:
            if group.dirty:
                group.rebuild()
            heads = parse_rtp(io.data[:n], io.lengths[:n])
            sources = io.sources[:n]
            keys = group.fast_keys
            if len(keys):
                pos = np.minimum(np.searchsorted(keys, sources), len(keys) - 1)
                known = keys[pos] == sources
                slots = group.fast_slots[pos]
            else:
                known = np.zeros(n, dtype=np.bool_)
                slots = np.zeros(n, dtype=np.int64)
            fast = known & heads.valid & (heads.payload_offset == RTP_HEADER_SIZE) & (heads.payload_length == FRAME)
            fast &= (heads.payload_type == tables.audio_pt[slots]) & (heads.ssrc == tables.ssrc_in[slots])
            fast &= ~tables.slow_rx[slots]
            rows = np.nonzero(fast)[0]
            if len(rows):
                self._take(slots[rows], heads.seq[rows], heads.timestamp[rows], io.lengths[rows],
                           io.data[rows, RTP_HEADER_SIZE:PACKET], now)  # fmt: skip
                taken += len(rows)
            if len(rows) < n:
                self._side(group, ~fast & ~known, ~fast & known, sources, io, now)
            if n < io.batch:
                break
        return taken

    def _take(self, slots: I64, seq: I64, ts: I64, sizes: I64, payloads: U8, now: float) -> None:
        for pick in _rounds(slots):
            self.tables.account(slots[pick], seq[pick], ts[pick], sizes[pick], now)
        self.tables.ring.push(slots, (ts // FRAME) % (1 << 16), payloads)

    def _side(self, group: SocketGroup, unknown: np.ndarray, known: np.ndarray, sources: U64,
              io: BatchSocket, now: float) -> None:  # fmt: skip
        """The Python path for packets that are not steady audio (see the module docstring)."""
        candidate = known | (unknown & np.isin(sources, group.side_keys))
        if group.shared:
            candidate |= unknown & np.isin(sources >> np.uint64(16), group.side_hosts)
        else:
            candidate |= unknown
        group.foreign += int(np.count_nonzero(unknown & ~candidate))
        for i in np.nonzero(candidate)[0].tolist():
            self.side_packets += 1
            key = int(sources[i])
            data = io.data[i, : min(int(io.lengths[i]), io.datagram)].tobytes()
            leg = group.by_latched.get(key) or group.by_sdp.get(key)
            if leg is None:
                leg = self._host_candidate(group, key)
                if leg is None:
                    continue
            leg.side_rtp(data, key, now)
            if group.dirty:
                group.rebuild()

    def _host_candidate(self, group: SocketGroup, key: int) -> BatchedLeg | None:
        if not group.shared:
            return next(iter(group.legs.values()), None)
        waiting = group.unlatched_with_host(key >> 16)
        if len(waiting) == 1:
            return waiting[0]
        group.ambiguous += 1 if waiting else 0
        group.foreign += 0 if waiting else 1
        return None

    def _receive_rtcp(self, group: SocketGroup, now: float) -> None:
        for _ in range(256):
            try:
                data, addr = group.rtcp.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.receive_errors += 1
                return
            key = address_key(addr[0], addr[1] - 1) if addr[1] > 0 else -1
            leg = group.by_latched.get(key) or group.by_sdp.get(key)
            if leg is None and not group.shared:
                leg = next(iter(group.legs.values()), None)
            if leg is None:
                group.foreign += 1
                continue
            leg.session.receive_rtcp(data, addr, now)

    def pop(self, now: float) -> tuple[I64, U8]:
        """This tick's frame of every bound leg that has one: (pids, rows); lost frames concealed."""
        tables = self.tables
        out, hit = tables.ring.pop()
        started = tables.ring.next_seq >= 0
        miss = started & ~hit & (tables.run < MAX_CONCEALED) & tables.active
        tables.run[hit] = 0
        if miss.any():
            out[miss] = _HALVE[tables.codec[miss, None], tables.last[miss]]
            tables.run[miss] += 1
            tables.concealed[miss] += 1
        produced = hit | miss
        tables.last[produced] = out[produced]
        tables.active[hit] = True
        tables.active[started & ~produced] = False  # concealment ran out: silence until audio resumes
        if self._inband:
            for leg in self._inband:
                leg.inband_frame(out[leg.slot] if produced[leg.slot] else None)
        self.last_out, self.last_produced = out, produced
        rows = np.nonzero(produced & (tables.pid >= 0))[0]
        return tables.pid[rows], out[rows]

    def send(self, pids: I64, frames: U8, now: float) -> None:
        """Send ``frames[i]`` to the leg bound to ``pids[i]`` (pids of other endpoints are skipped)."""
        if not len(pids) or not self._legs:
            return
        lookup = self._pid_slot
        pids = np.asarray(pids, dtype=np.int64)
        inside = pids < len(lookup)
        slots = np.where(inside, lookup[np.minimum(pids, len(lookup) - 1)], -1)
        tables = self.tables
        ok = slots >= 0
        ok[ok] &= tables.sending[slots[ok]]
        if not ok.any():
            return
        rows = np.nonzero(ok)[0]
        slots = slots[rows]
        slow = tables.slow_tx[slots]
        if slow.any():
            for slot, row in zip(slots[slow].tolist(), rows[slow].tolist(), strict=True):
                self._legs[slot].python_send(frames[row].tobytes(), now)
            rows, slots = rows[~slow], slots[~slow]
        if len(slots):
            self._send_audio(slots, frames[rows], now)

    def _send_audio(self, slots: I64, payloads: U8, now: float) -> None:
        tables = self.tables
        n = len(slots)
        packets = np.empty((n, PACKET), dtype=np.uint8)
        header = packets[:, :RTP_HEADER_SIZE].view(_HEADER)[:, 0]  # a view: writes land in packets
        header["first"] = 0x80
        header["second"] = tables.audio_pt[slots] | np.where(tables.marker[slots], 0x80, 0)
        header["seq"] = tables.seq_out[slots]
        header["ts"] = tables.ts_out[slots]
        header["ssrc"] = tables.ssrc_out[slots]
        packets[:, RTP_HEADER_SIZE:] = payloads
        destinations = tables.remote_key[slots].astype(np.uint64)
        groups = tables.group[slots]
        if len(self.groups) == 1:
            self.groups[0].rtp.send(packets, destinations)
        else:
            for index in np.unique(groups).tolist():
                pick = groups == index
                self.groups[index].rtp.send(np.ascontiguousarray(packets[pick]), destinations[pick])
        tables.ts_last_sent[slots] = tables.ts_out[slots]
        tables.seq_out[slots] = (tables.seq_out[slots] + 1) & 0xFFFF
        tables.ts_out[slots] = (tables.ts_out[slots] + FRAME) & 0xFFFFFFFF
        tables.marker[slots] = False
        tables.packets_out[slots] += 1
        tables.bytes_out[slots] += PACKET
        tables.last_send_time[slots] = now

    def close(self) -> None:
        for leg in list(self._legs.values()):
            leg.close()
        for group in list(self.groups):
            self._close_group(group)

    def stats(self) -> dict[str, int]:
        """Whole-path counters (``/status``, the bench)."""
        return {
            "legs": len(self._legs),
            "sockets": len(self.groups),
            "private_sockets": sum(not g.shared for g in self.groups),
            "foreign": sum(g.foreign for g in self.groups),
            "ambiguous": sum(g.ambiguous for g in self.groups),
            "side_packets": self.side_packets,
            "late": self.tables.ring.late,
        }
