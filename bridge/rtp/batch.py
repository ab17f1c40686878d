"""Batched RTP for many legs on one UDP socket: ``recvmmsg``/``sendmmsg`` into numpy arrays, vectorised
header parsing, and a vectorised fixed-delay jitter buffer.

Why. With one socket per leg, every packet costs a system call and a few microseconds of Python: at 2,000
legs that is 200,000 calls a second, most of a core before any mixing (see ``bench/media.py``). Here all legs
share one socket and are told apart by their remote address (symmetric RTP, RFC 4961, as trunk gateways and
SBCs in a core network send), so one tick's packets arrive in a couple of ``recvmmsg`` calls straight into a
``(batch, datagram)`` array and leave in a couple of ``sendmmsg`` calls from a ``(legs, packet)`` array. No
Python code runs per packet:

- :class:`BatchSocket` -- the socket, its preallocated ``mmsghdr``/``iovec``/``sockaddr_in`` tables (numpy
  structured arrays handed to libc through ``ctypes``), ``recv()`` and ``send()``;
- :func:`parse_rtp` -- RFC 3550 headers of a whole batch at once (version, padding, CSRC, extension checked
  per packet as :meth:`bridge.rtp.packet.RtpPacket.parse` does; a bad packet is marked invalid, not raised);
- :class:`FrameRing` -- per-leg rings of 20 ms frames indexed by sequence number, played out ``delay`` frames
  behind the first packet; late, duplicate and far-off packets are handled per leg without a loop.

Addresses are IPv4 ``(host, port)`` packed as one integer key (:func:`address_key`). Linux, 64-bit only
(the ``mmsghdr`` layout below); :class:`BatchSocket` raises :class:`~bridge.rtp.errors.RtpError` elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.rtp.errors import RtpError

__all__ = [
    "BatchSocket",
    "FrameRing",
    "RtpHeaders",
    "address_key",
    "key_address",
    "parse_rtp",
    "size_buffers",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

RTP_HEADER_SIZE: Final = 12
MAX_BATCH: Final = 1024  # UIO_MAXIOV: the kernel's limit on messages per recvmmsg/sendmmsg call
MSG_DONTWAIT: Final = 0x40
MSG_TRUNC: Final = 0x20
SEQ_MOD: Final = 1 << 16
LATE_RESTART: Final = 3
CALM_POPS: Final = 500  # 10 s of frames without a late packet: an adaptive FrameRing's delay shrinks a frame
DRAIN_SLACK: Final = 2  # an adaptive FrameRing holding more than delay + this many frames skips one a packet
"""Consecutive late packets after which a :class:`FrameRing` leg restarts behind the latest one."""

# struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; } on x86-64 / aarch64 Linux: 64 bytes.
_MMSGHDR: Final = np.dtype(
    [
        ("name", np.uint64),
        ("namelen", np.uint32),
        ("_pad0", np.uint32),
        ("iov", np.uint64),
        ("iovlen", np.uint64),
        ("control", np.uint64),
        ("controllen", np.uint64),
        ("flags", np.int32),
        ("_pad1", np.int32),
        ("len", np.uint32),
        ("_pad2", np.uint32),
    ]
)
_IOVEC: Final = np.dtype([("base", np.uint64), ("len", np.uint64)])
_SOCKADDR_IN: Final = np.dtype(
    [("family", np.uint16), ("port", ">u2"), ("addr", ">u4"), ("zero", np.uint64)]
)  # family in host order, port and address in network order
# struct cmsghdr + struct in_pktinfo (IP_PKTINFO: the source address of one datagram), CMSG_SPACE = 32.
_PKTINFO_CMSG: Final = np.dtype(
    [("len", np.uint64), ("level", np.int32), ("type", np.int32), ("ifindex", np.int32),
     ("spec_dst", ">u4"), ("addr", ">u4"), ("_pad", np.uint32)]
)  # fmt: skip
IP_PKTINFO: Final = getattr(socket, "IP_PKTINFO", 8)
SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", 32)


def address_key(host: str, port: int) -> int:
    """``(host, port)`` (IPv4) as one integer: ``address << 16 | port``."""
    return int.from_bytes(socket.inet_aton(host), "big") << 16 | port


def key_address(key: int) -> tuple[str, int]:
    """The inverse of :func:`address_key`."""
    return socket.inet_ntoa((key >> 16).to_bytes(4, "big")), key & 0xFFFF


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8 or _MMSGHDR.itemsize != 64:
        raise RtpError("batched RTP needs 64-bit Linux (recvmmsg/sendmmsg)")
    libc = ctypes.CDLL(None, use_errno=True)
    for name in ("recvmmsg", "sendmmsg"):
        getattr(libc, name).restype = ctypes.c_int
    libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    return libc


def size_buffers(sock: socket.socket, size: int) -> int:
    """Give ``sock`` ``size`` bytes of receive and send buffer; returns the receive buffer obtained.

    One socket holds a whole tick of every leg's packets (2,000 legs: about 2 MB of kernel buffer, a small
    datagram costs ~1 KiB), far above the default ``net.core.rmem_max`` (208 KiB). With CAP_NET_ADMIN the
    limit is overridden (``SO_RCVBUFFORCE``); otherwise the host's ``net.core.rmem_max``/``wmem_max`` sysctls
    must allow it -- the socket gets what the limit allows.
    """
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class BatchSocket:
    """A non-blocking IPv4 UDP socket read and written a batch at a time (see the module docstring).

    After :meth:`recv` returned ``n``: ``data[:n]`` holds the datagrams (rows of ``datagram`` bytes),
    ``lengths[:n]`` their sizes (``datagram + 1`` for one that did not fit), ``sources[:n]`` the sender
    keys. Those arrays are reused by the next call.
    """

    def __init__(self, sock: socket.socket, *, batch: int = MAX_BATCH, datagram: int = 512) -> None:
        if sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
            raise RtpError("BatchSocket needs an IPv4 UDP socket")
        if not 1 <= batch <= MAX_BATCH:
            raise RtpError(f"batch must be 1..{MAX_BATCH}")
        self._libc = _libc()
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        self.batch = batch
        self.datagram = datagram
        self.data: U8 = np.zeros((batch, datagram), dtype=np.uint8)
        self.lengths: I64 = np.zeros(batch, dtype=np.int64)
        self.sources: U64 = np.zeros(batch, dtype=np.uint64)
        self._rnames = np.zeros(batch, dtype=_SOCKADDR_IN)
        self._riov = np.zeros(batch, dtype=_IOVEC)
        self._riov["base"] = self.data.ctypes.data + np.arange(batch, dtype=np.uint64) * datagram
        self._riov["len"] = datagram
        self._rmsg = np.zeros(batch, dtype=_MMSGHDR)
        self._rmsg["name"] = self._rnames.ctypes.data + np.arange(batch, dtype=np.uint64) * _SOCKADDR_IN.itemsize
        self._rmsg["iov"] = self._riov.ctypes.data + np.arange(batch, dtype=np.uint64) * _IOVEC.itemsize
        self._rmsg["iovlen"] = 1
        self._snames = np.zeros(0, dtype=_SOCKADDR_IN)
        self._siov = np.zeros(0, dtype=_IOVEC)
        self._smsg = np.zeros(0, dtype=_MMSGHDR)
        self._scmsg = np.zeros(0, dtype=_PKTINFO_CMSG)
        self._staged: U8 = np.zeros((0, 0), dtype=np.uint8)
        self.send_errors = 0
        self.send_dropped = 0

    @classmethod
    def bind(cls, host: str, port: int = 0, *, buffer: int = 16 << 20) -> BatchSocket:
        """A new socket bound to ``(host, port)``, see :func:`size_buffers`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            size_buffers(sock, buffer)
            sock.bind((host, port))
            return cls(sock)
        except BaseException:
            sock.close()
            raise

    @property
    def local_key(self) -> int:
        host, port = self.sock.getsockname()
        return address_key(host, port)

    def close(self) -> None:
        self.sock.close()

    def recv(self) -> int:
        """Read up to ``batch`` waiting datagrams without blocking; returns how many (0: none waiting)."""
        self._rmsg["namelen"] = _SOCKADDR_IN.itemsize
        got = self._libc.recvmmsg(self._fd, self._rmsg.ctypes.data, self.batch, MSG_DONTWAIT, None)
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")
        msgs = self._rmsg[:got]
        self.lengths[:got] = msgs["len"]
        truncated = (msgs["flags"] & MSG_TRUNC) != 0
        self.lengths[:got][truncated] = self.datagram + 1
        names = self._rnames[:got]
        self.sources[:got] = names["addr"].astype(np.uint64) << np.uint64(16) | names["port"].astype(np.uint64)
        return int(got)

    def send(
        self,
        packets: U8,
        destinations: U64 | I64,
        lengths: int | I64 | None = None,
        *,
        source_hosts: npt.NDArray[np.uint32] | None = None,
    ) -> int:
        """Send row ``i`` of ``packets`` (C-contiguous uint8, ``lengths[i]`` bytes, default the row) to
        ``destinations[i]`` (keys, unsigned or not); returns how many left. When the socket buffer is
        full the rest of the batch is dropped (counted in ``send_dropped``), as a congested network would; a
        datagram the kernel refuses is skipped and counted in ``send_errors``.

        ``source_hosts`` (IPv4 addresses as integers) picks each datagram's source address on a socket
        bound to the wildcard address (``IP_PKTINFO``), e.g. a load generator playing many callers."""
        return self.transmit(self._stage(packets, destinations, lengths, source_hosts))

    def prepare(self, packets: U8, destinations: U64 | I64, rows: I64) -> int:
        """:meth:`send` of rows ``rows`` of ``packets``, copied into this socket's own buffer, without sending:
        :meth:`transmit` sends them, e.g. in :class:`bridge.rtp.sender.SendThread` while the caller goes on
        changing ``packets``. Returns how many were staged."""
        n = len(rows)
        if len(self._staged) < n or self._staged.shape[1] != packets.shape[1]:
            self._staged = np.zeros((max(n, 2 * len(self._staged)), packets.shape[1]), dtype=np.uint8)
        np.take(packets, rows, axis=0, out=self._staged[:n])
        return self._stage(self._staged, destinations, None, None)

    def _stage(self, packets: U8, destinations: U64 | I64, lengths: int | I64 | None,
               source_hosts: npt.NDArray[np.uint32] | None) -> int:  # fmt: skip
        n = len(destinations)
        if packets.dtype != np.uint8 or packets.ndim != 2 or not packets.flags.c_contiguous:
            raise RtpError("send needs a C-contiguous uint8 (n, size) array")
        if len(packets) < n:
            raise RtpError("send: fewer packets than destinations")
        if n == 0:
            return 0
        if len(self._smsg) < n:
            self._grow_send(n)
        keys = np.asarray(destinations).astype(np.uint64, copy=False)
        names = self._snames[:n]
        names["addr"] = keys >> np.uint64(16)
        names["port"] = keys & np.uint64(0xFFFF)
        iov = self._siov[:n]
        iov["base"] = packets.ctypes.data + np.arange(n, dtype=np.uint64) * np.uint64(packets.strides[0])
        iov["len"] = packets.shape[1] if lengths is None else lengths
        msgs = self._smsg[:n]
        if source_hosts is None:
            msgs["control"], msgs["controllen"] = 0, 0
        else:
            cmsgs = self._scmsg[:n]
            cmsgs["spec_dst"] = source_hosts
            msgs["control"] = self._scmsg.ctypes.data + np.arange(n, dtype=np.uint64) * _PKTINFO_CMSG.itemsize
            msgs["controllen"] = _PKTINFO_CMSG.itemsize
        return n

    def transmit(self, n: int) -> int:
        """``sendmmsg`` the ``n`` datagrams staged last; touches no numpy array, only this socket's counters
        (it runs without the GIL but for a few lines, so it may run in another thread)."""
        sent = done = 0
        base = self._smsg.ctypes.data
        while done < n:
            count = min(n - done, MAX_BATCH)
            result = self._libc.sendmmsg(self._fd, base + done * _MMSGHDR.itemsize, count, 0)
            if result > 0:
                sent += result
                done += result
                continue
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                self.send_dropped += n - done
                break
            if err != errno.EINTR:
                self.send_errors += 1
                done += 1  # the kernel refused this one datagram: skip it, send the rest
        return sent

    def _grow_send(self, n: int) -> None:
        size = max(n, 2 * len(self._smsg))
        self._snames = np.zeros(size, dtype=_SOCKADDR_IN)
        self._snames["family"] = socket.AF_INET
        self._siov = np.zeros(size, dtype=_IOVEC)
        self._smsg = np.zeros(size, dtype=_MMSGHDR)
        self._scmsg = np.zeros(size, dtype=_PKTINFO_CMSG)
        self._scmsg["len"] = 28  # CMSG_LEN(sizeof(struct in_pktinfo))
        self._scmsg["level"], self._scmsg["type"] = socket.IPPROTO_IP, IP_PKTINFO
        index = np.arange(size, dtype=np.uint64)
        self._smsg["name"] = self._snames.ctypes.data + index * _SOCKADDR_IN.itemsize
        self._smsg["namelen"] = _SOCKADDR_IN.itemsize
        self._smsg["iov"] = self._siov.ctypes.data + index * _IOVEC.itemsize
        self._smsg["iovlen"] = 1


@dataclass(frozen=True)
class RtpHeaders:
    """The RTP headers of a batch, one entry per datagram; fields of invalid packets are meaningless."""

    valid: BoolArray
    payload_type: I64
    marker: BoolArray
    seq: I64
    timestamp: I64
    ssrc: I64
    payload_offset: I64
    payload_length: I64


def header_dtype(itemsize: int = RTP_HEADER_SIZE) -> np.dtype[np.void]:
    """The fixed RTP header's fields (big-endian, as on the wire) over a record of ``itemsize`` bytes: a
    ``(n, itemsize)`` uint8 array viewed with it gives each row's ``first``/``second``/``seq``/``ts``/``ssrc``."""
    fields = [("first", "u1"), ("second", "u1"), ("seq", ">u2"), ("ts", ">u4"), ("ssrc", ">u4")]
    rest = [("rest", f"V{itemsize - RTP_HEADER_SIZE}")] if itemsize > RTP_HEADER_SIZE else []
    return np.dtype([*fields, *rest])


_FIXED_HEADER: Final = header_dtype()


def parse_rtp(data: U8, lengths: I64) -> RtpHeaders:
    """Parse the headers of ``data[i, :lengths[i]]`` for every row, with the checks of ``RtpPacket.parse``.

    A row is valid when it is a version-2 RTP packet whose CSRC list, extension and padding fit in its
    length; ``payload_offset``/``payload_length`` then give the payload without padding.
    """
    n, width = data.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    fixed = np.ascontiguousarray(data[:, :RTP_HEADER_SIZE]).view(_FIXED_HEADER)[:, 0]
    first = fixed["first"].astype(np.int64)
    valid = (lengths >= RTP_HEADER_SIZE) & (lengths <= width) & (first >> 6 == 2)
    offset = np.full(n, RTP_HEADER_SIZE, dtype=np.int64)
    end = lengths.copy()
    plain = first == 0x80  # no padding, extension or CSRC: the usual packet, nothing more to check
    if not plain.all():
        offset, end, valid = _variable_parts(data, lengths, first, offset, end, valid & ~plain)
        valid |= plain & (lengths >= RTP_HEADER_SIZE) & (lengths <= width)
    second = fixed["second"].astype(np.int64)
    return RtpHeaders(
        valid=valid,
        payload_type=second & 0x7F,
        marker=(second & 0x80) != 0,
        seq=fixed["seq"].astype(np.int64),
        timestamp=fixed["ts"].astype(np.int64),
        ssrc=fixed["ssrc"].astype(np.int64),
        payload_offset=offset,
        payload_length=np.where(valid, end - offset, 0),
    )


def _variable_parts(
    data: U8, lengths: I64, first: I64, offset: I64, end: I64, valid: BoolArray
) -> tuple[I64, I64, BoolArray]:
    """Padding, CSRC list and header extension of the rows marked ``valid`` (version 2, not plain)."""
    n, width = data.shape
    rows = np.arange(n)
    padded = valid & ((first & 0x20) != 0)
    pad = data[rows, np.clip(lengths - 1, 0, width - 1)].astype(np.int64)
    valid = valid & (~padded | ((pad > 0) & (pad <= lengths - RTP_HEADER_SIZE)))
    end = np.where(padded & valid, lengths - pad, end)
    offset = offset + 4 * (first & 0x0F)
    valid &= offset <= end
    extended = valid & ((first & 0x10) != 0)
    valid &= ~extended | (offset + 4 <= end)
    at = np.clip(offset + 2, 0, width - 2)
    ext_words = data[rows, at].astype(np.int64) << 8 | data[rows, at + 1]
    offset = np.where(extended, offset + 4 + 4 * ext_words, offset)
    valid &= offset <= end
    return offset, end, valid


def rounds(keys: I64) -> list[I64]:
    """Indexes of ``keys`` split into rounds of distinct keys, each in arrival order: a key's k-th
    occurrence is in round k (one round, ``arange``, when the keys are already distinct)."""
    if len(keys) < 2 or np.bincount(keys).max() == 1:
        return [np.arange(len(keys))]
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - np.searchsorted(ordered, ordered)  # position within its key's run
    return [np.nonzero(rank == r)[0] for r in range(int(rank.max()) + 1)]


class FrameRing:
    """A fixed-delay jitter buffer for ``legs`` legs at once: per leg a ring of ``depth`` frames of
    ``frame`` bytes, indexed by RTP sequence number, played out ``delay`` frames after the first packet.

    :meth:`push` stores a batch of (leg, seq, payload); :meth:`pop` returns one frame per leg (its silence
    byte where nothing arrived in time) and advances every started leg by one. Per leg:

    - a packet up to ``depth - 1`` frames ahead of the play-out point waits in its slot;
    - a packet a few frames behind it (``<= depth``) is late: dropped and counted -- unless the leg's last
      ``LATE_RESTART`` packets were all late: the sender's clock is behind ours for good (a timestamp that
      did not advance in real time, e.g. across RFC 4733 events), so the leg restarts behind that packet;
    - anything further off either way (a sequence jump after a re-INVITE, a sender resuming after
      silence suppression, a clock running fast) restarts the leg ``delay`` frames behind that packet.

    With ``adapt=(low, high)`` each leg's delay (``delays``) follows its network, as
    :class:`~bridge.rtp.jitterbuffer.JitterBuffer` does: a late packet grows it by one frame (up to ``high``;
    the play-out point steps back one frame, so a packet one frame late is then played), ``CALM_POPS``
    frames played without a late packet shrink it by one (down to ``low``; one queued frame is skipped), and a
    leg holding more than ``DRAIN_SLACK`` frames beyond its delay (a burst after a stall) skips one per packet.
    """

    def __init__(
        self, legs: int, *, depth: int = 8, delay: int = 2, frame: int = 160, silence: int = 0xFF,
        adapt: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        low, high = adapt or (delay, delay)
        if not 0 <= low <= delay <= high < depth:
            raise RtpError("FrameRing needs 0 <= low <= delay <= high < depth")
        self.depth = depth
        self.delay = delay
        self.adapt = adapt
        self.low, self.high = low, high
        self.delays: I64 = np.full(legs, delay, dtype=np.int64)
        self.calm: I64 = np.zeros(legs, dtype=np.int64)
        self.frame = frame
        self.frames: U8 = np.zeros((legs, depth, frame), dtype=np.uint8)
        self.slot_seq: I64 = np.full((legs, depth), -1, dtype=np.int64)
        self.next_seq: I64 = np.full(legs, -1, dtype=np.int64)  # -1: nothing received yet
        self.silence: U8 = np.full(legs, silence, dtype=np.uint8)
        self.out: U8 = np.zeros((legs, frame), dtype=np.uint8)
        self.late_run: I64 = np.zeros(legs, dtype=np.int64)
        self._late_runs = 0  # legs whose late_run is not 0 (none: the steady push skips the late checks)
        self._starting: set[int] = set()  # adaptive: legs (re)started since the last pop (see _anchor)
        self._row_base: I64 = np.arange(legs, dtype=np.int64) * depth
        self.played: I64 = self._row_base.copy()
        self.late = 0
        self.resyncs = 0

    def __len__(self) -> int:
        return len(self.next_seq)

    def resized(self, legs: int) -> FrameRing:
        """A ring for ``legs`` legs (more than now) holding what this one holds."""
        ring = FrameRing(legs, depth=self.depth, delay=self.delay, frame=self.frame, adapt=self.adapt)
        old = len(self)
        ring.delays[:old], ring.calm[:old] = self.delays, self.calm
        ring.frames[:old], ring.slot_seq[:old], ring.next_seq[:old] = self.frames, self.slot_seq, self.next_seq
        ring.silence[:old], ring.late_run[:old], ring.out[:old] = self.silence, self.late_run, self.out
        ring.late, ring.resyncs, ring._late_runs = self.late, self.resyncs, self._late_runs
        return ring

    def reset(self, legs: I64 | int, *, silence: int | None = None) -> None:
        """Forget what ``legs`` had (a new call on a reused leg slot)."""
        self.slot_seq[legs] = -1
        self.next_seq[legs] = -1
        self.late_run[legs] = 0
        self._late_runs = int(np.count_nonzero(self.late_run))
        self.delays[legs], self.calm[legs] = self.delay, 0
        if silence is not None:
            self.silence[legs] = silence

    def push(self, legs: I64, seq: I64, payloads: U8) -> None:
        """Store ``payloads[i]`` (``frame`` bytes) of leg ``legs[i]`` with sequence number ``seq[i]``.

        Same result as pushing the packets one by one in batch order: a leg's k-th packet of the batch is
        handled in round k, where every leg has at most one packet (usually one round, two after a
        late tick).
        """
        if not len(legs):
            return
        legs = np.asarray(legs, dtype=np.int64)
        seq = np.asarray(seq, dtype=np.int64) % SEQ_MOD
        picks = rounds(legs)
        if len(picks) == 1:  # the usual batch: one packet per leg
            self._push_round(legs, seq, payloads)
            return
        for pick in picks:
            self._push_round(legs[pick], seq[pick], payloads[pick])

    def _push_round(self, legs: I64, seq: I64, payloads: U8) -> None:
        """:meth:`push` for packets of distinct legs."""
        next_seq = self.next_seq[legs]
        ahead = (seq - next_seq) % SEQ_MOD
        steady = self._late_runs == 0 and not self._starting
        if steady and ((ahead < self.depth) & (next_seq >= 0)).all():
            slots = seq % self.depth
            self.frames[legs, slots] = payloads[:, : self.frame]
            self.slot_seq[legs, slots] = seq
            if self.adapt is not None:
                deep = ahead > self.delays[legs] + DRAIN_SLACK
                if deep.any():  # a burst after a stall left frames queued beyond the delay: play one less
                    self._skip(legs[deep])
            return
        behind = (next_seq - seq) % SEQ_MOD
        late = (next_seq >= 0) & (behind > 0) & (behind <= self.depth)
        stuck = late & (self.late_run[legs] >= LATE_RESTART - 1)
        late &= ~stuck
        stepped_back = self._grow(legs, late, behind) if self.adapt is not None and late.any() else None
        if stepped_back is not None:
            late &= ~stepped_back
        self.late_run[legs] = np.where(late, self.late_run[legs] + 1, 0)
        self._late_runs = int(np.count_nonzero(self.late_run))
        restart = (next_seq < 0) | stuck | (~late & (ahead >= self.depth))
        if stepped_back is not None:
            restart &= ~stepped_back
        if restart.any():
            restarted = legs[restart]
            self.next_seq[restarted] = (seq[restart] - self.delays[restarted]) % SEQ_MOD
            self.slot_seq[restarted] = -1
            self.resyncs += len(restarted)
            if self.adapt is not None:
                self._starting.update(restarted.tolist())
        self.late += int(np.count_nonzero(late))
        keep = ~late
        legs, seq = legs[keep], seq[keep]
        slots = seq % self.depth
        self.frames[legs, slots] = payloads[keep, : self.frame]
        self.slot_seq[legs, slots] = seq
        if self._starting:
            self._anchor(legs, seq)

    def _anchor(self, legs: I64, seq: I64) -> None:
        """Legs (re)started since the last pop play ``delay`` frames behind their newest packet, not their
        first: two packets in the first batch must not leave a frame of delay for good."""
        starting = np.isin(legs, np.fromiter(self._starting, dtype=np.int64))
        legs, seq = legs[starting], seq[starting]
        ahead = (seq - self.next_seq[legs]) % SEQ_MOD
        early = (ahead > self.delays[legs]) & (ahead < self.depth)
        self.next_seq[legs[early]] = (seq[early] - self.delays[legs[early]]) % SEQ_MOD

    def pop(self) -> tuple[U8, BoolArray]:
        """This tick's frame for every leg (``out``, reused) and whether it is a received one. ``played``
        then holds, per leg, the index into ``frames.reshape(-1, frame)`` of the slot it played."""
        started = self.next_seq >= 0
        played = self._row_base + self.next_seq % self.depth
        slot_seq = self.slot_seq.reshape(-1)
        hit = started & (slot_seq[played] == self.next_seq)
        out = self.out
        np.take(self.frames.reshape(-1, self.frame), played, axis=0, out=out)
        slot_seq[played] = -1  # the slot to play holds this frame or nothing (a later one would have restarted)
        if not hit.all():
            np.copyto(out, self.silence[:, None], where=~hit[:, None])
        self.next_seq += started
        self.next_seq[self.next_seq == SEQ_MOD] = 0
        self.played = played
        self._starting.clear()
        if self.adapt is not None:
            self.calm += hit
            if (self.calm >= CALM_POPS).any():
                self._shrink(np.nonzero(self.calm >= CALM_POPS)[0])
        return out, hit

    def _grow(self, legs: I64, late: BoolArray, behind: I64) -> BoolArray:
        """Late packets of ``legs``: one frame more delay where allowed; returns which packets are now in
        time (one frame late: the frame the play-out point stepped back to)."""
        grow = late & (self.delays[legs] < self.high)
        self.calm[legs[late]] = 0
        grown = legs[grow]
        self.delays[grown] += 1
        self.next_seq[grown] = (self.next_seq[grown] - 1) % SEQ_MOD
        stepped_back: BoolArray = grow & (behind == 1)
        return stepped_back

    def _shrink(self, legs: I64) -> None:
        """``legs`` played ``CALM_POPS`` frames without a late packet: one frame less delay (the frame due
        next is skipped)."""
        self.calm[legs] = 0
        legs = legs[(self.delays[legs] > self.low) & (self.next_seq[legs] >= 0)]
        self.delays[legs] -= 1
        self._skip(legs)

    def _skip(self, legs: I64) -> None:
        """Drop the frame ``legs`` would play next (one frame less delay now)."""
        self.slot_seq[legs, self.next_seq[legs] % self.depth] = -1
        self.next_seq[legs] = (self.next_seq[legs] + 1) % SEQ_MOD
