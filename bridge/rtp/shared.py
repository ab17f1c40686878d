"""The engine's batched RTP path: many legs on a few shared UDP sockets, one ``recvmmsg``/``sendmmsg`` per tick.

Theory of operation. :class:`BatchedMedia` owns *socket groups* (:class:`SocketGroup`: an RTP
:class:`~bridge.rtp.batch.BatchSocket` on an even port of ``[sip] rtp_ports`` and a plain RTCP socket on the
odd port above it). Every leg on a *shared* group advertises that group's port in its SDP; legs are told apart
by the remote address their packets come from (symmetric RTP, RFC 4961). Per tick:

1. :meth:`BatchedMedia.receive` reads each group with ``recvmmsg`` into numpy and looks every source up in
   the group's table of *latched* addresses. A packet from a latched address whose first header word and
   SSRC match the leg's signature (:mod:`bridge.rtp.legtables`: version 2, no padding/extension/CSRC, the
   leg's audio payload type and current SSRC) and that carries 160 bytes is the steady path: it is
   accounted (RFC 3550 A.1/A.8 counters, vectorised) and stored in the :class:`~bridge.rtp.batch.FrameRing`
   by timestamp (adaptive depth) -- no Python per packet.
2. Everything else that *may* belong to a leg (a known address with another payload type: RFC 4733 events,
   RTCP multiplexed on the RTP port; a new SSRC; padding/CSRC/extension; a leg's SDP address; the first
   packets of a leg not yet latched) goes to that leg's Python handler
   (:meth:`bridge.rtp.sharedleg.BatchedLeg.side_rtp`). The rest is counted (``foreign``) and dropped.
3. :meth:`BatchedMedia.pop` plays out one frame per leg (concealment of up to three lost frames, 6 dB
   quieter each, as :mod:`bridge.rtp.jitterbuffer` does) and :meth:`BatchedMedia.send` writes the payloads
   into each leg's kept packet and stages those rows; a thread of its own sends them with ``sendmmsg``
   (:mod:`bridge.rtp.sender`) while the loop goes on.

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

from bridge.mixer.g711 import DECODE_TABLES, ENCODE_TABLES
from bridge.rtp.batch import I64, U8, U64, BatchSocket, BoolArray, address_key, header_dtype, rounds, size_buffers
from bridge.rtp.errors import PortsExhausted
from bridge.rtp.legtables import FRAME, PACKET, LegTables
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sender import SendThread
from bridge.rtp.session import MediaSession

__all__ = ["BatchedMedia", "SocketGroup"]

log = logging.getLogger(__name__)

MAX_CONCEALED = 3
LEGS_PER_SOCKET = 500
RTCP_EVERY_TICKS = 10  # RTCP (every ~5 s per leg) is read every 200 ms, not every tick
HOUSEKEEPING_S = 1.0
HOUSEKEEPING_TICKS = 25  # a second's sweep is spread over this many ticks (2,000 legs at once stalled a tick)


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
        self.words = rtp.data.view("<u4")  # each received datagram as 32-bit words: the steady-path check
        self.heads = rtp.data.view(header_dtype(rtp.datagram))[:, 0]  # ... and its RTP header fields
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


class BatchedMedia:
    """Legs on shared sockets; :class:`~bridge.conference.media.MixerMedia` drives :meth:`receive`,
    :meth:`pop` and :meth:`send` each tick. Create legs with :meth:`open_leg` (:mod:`bridge.rtp.sharedleg`)."""

    def __init__(
        self, allocator: PortAllocator, *, host: str, legs_per_socket: int = LEGS_PER_SOCKET, priority: int = 0
    ) -> None:
        self.allocator = allocator
        self.host = host
        self.legs_per_socket = legs_per_socket
        self.groups: list[SocketGroup] = []
        self.sender = SendThread(priority=priority)  # priority: sip.media_priority
        self.tables = LegTables(64)
        self._free: list[int] = list(range(63, -1, -1))
        self._legs: dict[int, BatchedLeg] = {}
        self._pid_slot: I64 = np.full(0, -1, dtype=np.int64)
        self._inband: list[BatchedLeg] = []
        self._next_housekeeping = 0.0
        self._ticks = 0
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
        self.sender.wait()  # not while its packets are being sent (the descriptor could be reused)
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
            self._grow_pids(pid + 1)
        self._pid_slot[pid] = leg.slot
        self.tables.pid[leg.slot] = pid

    def _grow_pids(self, size: int) -> None:
        bigger = np.full(max(size, 2 * len(self._pid_slot), 64), -1, dtype=np.int64)
        bigger[: len(self._pid_slot)] = self._pid_slot
        self._pid_slot = bigger

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
        self._ticks += 1
        rtcp_due = self._ticks % RTCP_EVERY_TICKS == 1
        for group in self.groups:
            try:
                taken += self._receive_group(group, now)
            except OSError as exc:
                self.receive_errors += 1
                log.debug("RTP receive on port %d: %s", group.port, exc)
            if rtcp_due:
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
            sources = io.sources[:n]
            keys = group.fast_keys
            if len(keys):
                pos = np.minimum(np.searchsorted(keys, sources), len(keys) - 1)
                slots = group.fast_slots[pos]
                known = keys[pos] == sources
                fast = known & (io.lengths[:n] == PACKET)
                fast &= (group.words[:n, 0] & 0xFFFF) == tables.expect_sig[slots]  # version 2, plain, audio type
                fast &= group.words[:n, 2] == tables.expect_ssrc[slots]
                rows = np.nonzero(fast)[0]
            else:
                known = fast = np.zeros(n, dtype=np.bool_)
                rows = np.zeros(0, dtype=np.int64)
            if len(rows):
                self._take(group, slots[rows], rows, now)
                taken += len(rows)
            if len(rows) < n:
                self._side(group, ~fast & ~known, ~fast & known, sources, io, now)
            if n < io.batch:
                break
        return taken

    def _take(self, group: SocketGroup, slots: I64, rows: I64, now: float) -> None:
        """The steady packets ``rows`` of the group's last batch, of the legs ``slots``."""
        tables = self.tables
        seq, ts = group.heads["seq"][rows].astype(np.int64), group.heads["ts"][rows].astype(np.int64)
        for pick in rounds(slots):  # a leg's k-th packet of the batch in round k (a += per slot counts once)
            tables.account(slots[pick], seq[pick], ts[pick], now)
            tables.fast_in[slots[pick]] += 1
        tables.ring.push(slots, (ts // FRAME) & 0xFFFF, group.rtp.data[rows, PACKET - FRAME : PACKET])

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
        ring = tables.ring
        out, hit = ring.pop()
        started = ring.next_seq >= 0
        miss = started & ~hit & (tables.run < MAX_CONCEALED) & tables.active
        tables.run[hit] = 0
        if miss.any():
            self._conceal(np.nonzero(miss)[0], out)
        produced = hit | miss
        tables.active[hit] = True
        tables.active[started & ~produced] = False  # concealment ran out: silence until audio resumes
        if self._inband:
            for leg in self._inband:
                leg.inband_frame(out[leg.slot] if produced[leg.slot] else None)
        self.last_out, self.last_produced = out, produced
        rows = np.nonzero(produced & (tables.pid >= 0))[0]
        return tables.pid[rows], out[rows]

    def _conceal(self, legs: I64, out: U8) -> None:
        """The frame before, 6 dB quieter, for ``legs`` that missed this tick's frame. The frame before is
        still in its ring slot; the concealed one is written into the missed slot for the next miss."""
        tables = self.tables
        ring = tables.ring
        played = ring.played[legs]
        before = played - played % ring.depth + (played - 1) % ring.depth
        frames = ring.frames.reshape(-1, FRAME)
        concealed = _HALVE[tables.codec[legs, None], frames[before]]
        out[legs] = concealed
        frames[played] = concealed
        tables.run[legs] += 1
        tables.concealed[legs] += 1

    def send(self, pids: I64, frames: U8, now: float) -> None:
        """Send ``frames[i]`` to the leg bound to ``pids[i]`` (pids of other endpoints are skipped)."""
        if not len(pids) or not self._legs:
            return
        pids = np.asarray(pids, dtype=np.int64)
        if pids.max() >= len(self._pid_slot):
            self._grow_pids(int(pids.max()) + 1)
        slots = self._pid_slot[pids]
        tables = self.tables
        ok = (slots >= 0) & tables.sending[slots]
        slow = ok & tables.slow_tx[slots]
        if slow.any():
            for slot, row in zip(slots[slow].tolist(), np.nonzero(slow)[0].tolist(), strict=True):
                self._legs[slot].python_send(frames[row].tobytes(), now)
            ok &= ~slow
        rows = np.nonzero(ok)[0]
        if len(rows):
            self._send_audio(slots[rows], frames[rows], now)

    def _send_audio(self, slots: I64, payloads: U8, now: float) -> None:
        """Steady audio: the payloads into each leg's packet, the packets staged and sent by the send thread
        (:mod:`bridge.rtp.sender`), the sequence number and timestamp advanced in place at once (see
        :mod:`bridge.rtp.legtables`)."""
        tables = self.tables
        packets = tables.packets
        packets[slots, PACKET - FRAME :] = payloads
        marked = tables.marker[slots]
        marked_slots = slots[marked] if marked.any() else None
        if marked_slots is not None:
            packets[marked_slots, 1] |= 0x80
        destinations = tables.remote_key[slots]
        self.sender.wait()  # the last tick's packets are out: their staging buffers may be reused
        if len(self.groups) == 1:
            job = [(self.groups[0].rtp, self.groups[0].rtp.prepare(packets, destinations, slots))]
        else:
            groups = tables.group[slots]
            job = []
            for index in np.unique(groups).tolist():
                pick = groups == index
                rtp = self.groups[index].rtp
                job.append((rtp, rtp.prepare(packets, destinations[pick], slots[pick])))
        self.sender.submit(job)
        if marked_slots is not None:
            packets[marked_slots, 1] &= 0x7F
            tables.marker[marked_slots] = False
        tables.seq_out[slots] += 1  # uint16 and uint32 in the packets: RTP's wrap-around
        tables.ts_out[slots] += FRAME
        tables.fast_out[slots] += 1
        tables.last_send_time[slots] = now

    def close(self) -> None:
        for leg in list(self._legs.values()):
            leg.close()
        for group in list(self.groups):
            self._close_group(group)
        self.sender.close()

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
