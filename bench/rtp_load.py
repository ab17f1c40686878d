"""Batched RTP for the large-conference load: every SIPp caller's media from ONE process and ONE socket.

    .venv/bin/python bench/rtp_load.py --legs 2000 --duration 90 --win-start 50 --win-len 15 --out gen.json

SIPp does the SIP (``bench/load/uac_pcmu_conf_extmedia.xml``: its SDP names the address read from the call
CSV); this process plays the media of every call. Why not SIPp's media: ``play_pcap_audio`` runs one thread
per call and collapsed at 1,000 calls on this 2-core machine (watchdog trips of 13-53 s), and with SIPp's
``rtp_stream`` the return stream lands on SIPp's own per-call socket, where nothing can score it per leg.

Leg ``i`` is the loopback address ``127.1.a.b`` (:func:`leg_host`) on the port this process binds (printed
as JSON on stdout before anything else: ``{"port": P}``; RTCP lands on P+1 and is drained). Each datagram's
source address is picked with ``IP_PKTINFO`` (``BatchSocket.send(..., source_hosts=...)``), so one
``sendmmsg`` call sends up to 1,024 legs' packets, and one ``recvmmsg`` reads as many replies with their
destination address (``IP_PKTINFO``, which tells the leg) and kernel arrival time (``SO_TIMESTAMPNS``).
A leg starts sending once the bridge has sent it something, to the address that came from (the bridge
sends to the SDP address first; symmetric RTP): no SDP answer parsing is needed. Every leg sends one
160-byte PCMU packet (a 440 Hz tone at -24 dBFS with a little noise: everyone "talking", as the pcap of
``bench/load``) per 20 ms tick on absolute time; a late generator tick is counted, and a tick it cannot
catch up is skipped (counted in ``ticks_skipped``: that is generator-side loss, not the bridge's).

What comes back is scored per leg over the window (:class:`ReturnScore`, pure): packets/s, RTP sequence
gaps, inter-arrival p50/p99/max from kernel timestamps, as ``bench/load/rtp_sink.py`` does per socket.
Output (stdout and ``--out``): one JSON object with the score and the generator's own figures.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import math
import resource
import select
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.mixer import g711  # noqa: E402
from bridge.rtp.batch import MAX_BATCH, MSG_DONTWAIT, BatchSocket, size_buffers  # noqa: E402

FRAME = 160
PACKET = 12 + FRAME
PTIME = 0.02
LEGS_PER_SUBNET = 250
HOST_BASE = 127 << 24 | 1 << 16  # 127.1.0.0
HISTOGRAM_STEP_MS = 0.1
HISTOGRAM_BINS = 20_000  # 0-2,000 ms
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
MSG_CTRUNC = 0x08

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def leg_host(index: npt.NDArray[np.integer] | int) -> npt.NDArray[np.uint32]:
    """Leg ``i``'s loopback address as an integer: 127.1.(i // 250).(1 + i % 250)."""
    i = np.asarray(index, dtype=np.int64)
    return (HOST_BASE + 256 * (i // LEGS_PER_SUBNET) + 1 + i % LEGS_PER_SUBNET).astype(np.uint32)


def host_leg(host: npt.NDArray[np.integer]) -> I64:
    """The inverse of :func:`leg_host`; -1 for an address that is no leg's."""
    h = np.asarray(host, dtype=np.int64) - HOST_BASE
    subnet, low = h // 256, h % 256
    leg = subnet * LEGS_PER_SUBNET + low - 1
    ok = (h >= 0) & (low >= 1) & (low <= LEGS_PER_SUBNET)
    return np.where(ok, leg, -1)


def host_text(host: int) -> str:
    return socket.inet_ntoa(int(host).to_bytes(4, "big"))


class ReturnScore:
    """Per-leg score of the packets a bridge sends back, fed a batch at a time (pure: no clock, no I/O).

    ``add(legs, seq, arrival)`` takes the packets of one read in any order (arrival in seconds). Only those
    with ``win_start <= arrival < win_end`` count; a leg's first packet in the window has no predecessor,
    as in ``bench/load/rtp_sink.py``. Sequence gaps (1 < delta < 1000, mod 2**16) count as lost packets;
    inter-arrival times go into a 0.1 ms histogram (percentiles) and a per-leg maximum.
    """

    def __init__(self, legs: int, win_start: float, win_end: float, *, ptime_ms: float = 20.0) -> None:
        self.legs, self.win_start, self.win_end, self.ptime_ms = legs, win_start, win_end, ptime_ms
        self.count = np.zeros(legs, dtype=np.int64)
        self.lost = np.zeros(legs, dtype=np.int64)
        self.late = np.zeros(legs, dtype=np.int64)  # gaps over 2 ptime
        self.max_gap_ms = np.zeros(legs)
        self.last_seq = np.zeros(legs, dtype=np.int64)
        self.last_arrival = np.full(legs, np.nan)
        self.histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    def add(self, legs: I64, seq: I64, arrival: F64) -> None:
        keep = (arrival >= self.win_start) & (arrival < self.win_end) & (legs >= 0) & (legs < self.legs)
        if not keep.any():
            return
        legs, seq, arrival = legs[keep], seq[keep], arrival[keep]
        order = np.lexsort((arrival, legs))
        legs, seq, arrival = legs[order], seq[order], arrival[order]
        first = np.ones(len(legs), dtype=bool)
        first[1:] = legs[1:] != legs[:-1]
        prev_seq, prev_arrival = np.empty_like(seq), np.empty_like(arrival)
        prev_seq[1:], prev_arrival[1:] = seq[:-1], arrival[:-1]
        prev_seq[first], prev_arrival[first] = self.last_seq[legs[first]], self.last_arrival[legs[first]]
        known = ~np.isnan(prev_arrival)
        delta = (seq - prev_seq) & 0xFFFF
        gaps = known & (delta > 1) & (delta < 1000)
        np.add.at(self.lost, legs[gaps], delta[gaps] - 1)
        gap_ms = (arrival[known] - prev_arrival[known]) * 1000.0
        np.add.at(self.late, legs[known], gap_ms > 2 * self.ptime_ms)
        np.maximum.at(self.max_gap_ms, legs[known], gap_ms)
        bins = np.clip((gap_ms / HISTOGRAM_STEP_MS).astype(np.int64), 0, HISTOGRAM_BINS - 1)
        self.histogram += np.bincount(bins, minlength=HISTOGRAM_BINS)
        np.add.at(self.count, legs, 1)
        last = np.ones(len(legs), dtype=bool)
        last[:-1] = legs[1:] != legs[:-1]
        self.last_seq[legs[last]], self.last_arrival[legs[last]] = seq[last], arrival[last]

    def percentile_ms(self, q: float) -> float | None:
        """Upper edge of the 0.1 ms bin holding the ``q``-th percentile (0-100) of the inter-arrival times."""
        total = int(self.histogram.sum())
        if total == 0:
            return None
        index = int(np.searchsorted(np.cumsum(self.histogram), math.ceil(q / 100 * total)))
        return round((index + 1) * HISTOGRAM_STEP_MS, 2)

    def summary(self) -> dict[str, object]:
        rates = self.count / (self.win_end - self.win_start)
        return {
            "streams_scored": self.legs,
            "streams_silent": int(np.count_nonzero(self.count == 0)),
            "pps_mean": round(float(rates.mean()), 2) if self.legs else None,
            "pps_min": round(float(rates.min()), 2) if self.legs else None,
            "pps_expected": round(1000.0 / self.ptime_ms, 2),
            "seq_lost_total": int(self.lost.sum()),
            "gaps_over_2ptime": int(self.late.sum()),
            "interarrival_ms_p50": self.percentile_ms(50),
            "interarrival_ms_p99": self.percentile_ms(99),
            "interarrival_ms_p999": self.percentile_ms(99.9),
            "interarrival_ms_max": round(float(self.max_gap_ms.max()), 2) if self.legs else None,
        }


def tone_frames(count: int = 50) -> U8:
    """``count`` consecutive 20 ms PCMU frames: 440 Hz at -24 dBFS plus a little noise (a looping second)."""
    t = np.arange(count * FRAME) / 8000.0
    level = 32768 * 10 ** (-24 / 20)
    noise = np.random.default_rng(1).standard_normal(len(t)) * level * 0.05
    samples = np.clip(level * np.sin(2 * np.pi * 440 * t) + noise, -32768, 32767).astype(np.int16)
    return g711.ulaw_encode(samples).reshape(count, FRAME)


# recvmmsg with control data: struct mmsghdr (64 bytes) + per message a 64-byte control buffer holding
# SO_TIMESTAMPNS (cmsghdr + timespec, 32) then IP_PKTINFO (cmsghdr + in_pktinfo, CMSG_SPACE 32): the order
# in which Linux's udp_recvmsg puts them (socket-level timestamps first, then the IP options).
_MMSGHDR = np.dtype(
    [("name", np.uint64), ("namelen", np.uint32), ("_p0", np.uint32), ("iov", np.uint64), ("iovlen", np.uint64),
     ("control", np.uint64), ("controllen", np.uint64), ("flags", np.int32), ("_p1", np.int32),
     ("len", np.uint32), ("_p2", np.uint32)]
)  # fmt: skip
_IOVEC = np.dtype([("base", np.uint64), ("len", np.uint64)])
_SOCKADDR_IN = np.dtype([("family", np.uint16), ("port", ">u2"), ("addr", ">u4"), ("zero", np.uint64)])
_CONTROL = np.dtype(
    [("ts_len", np.uint64), ("ts_level", np.int32), ("ts_type", np.int32), ("sec", np.int64), ("nsec", np.int64),
     ("pk_len", np.uint64), ("pk_level", np.int32), ("pk_type", np.int32), ("ifindex", np.int32),
     ("spec_dst", ">u4"), ("addr", ">u4"), ("_pad", np.uint32)]
)  # fmt: skip


class Receiver:
    """``recvmmsg`` into numpy with each datagram's source, destination address and kernel arrival time."""

    def __init__(self, sock: socket.socket, batch: int = MAX_BATCH, datagram: int = 256) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self._fd, self.batch, self.datagram = sock.fileno(), batch, datagram
        self.data = np.zeros((batch, datagram), dtype=np.uint8)
        self._names = np.zeros(batch, dtype=_SOCKADDR_IN)
        self._iov = np.zeros(batch, dtype=_IOVEC)
        self._iov["base"] = self.data.ctypes.data + np.arange(batch, dtype=np.uint64) * datagram
        self._iov["len"] = datagram
        self._control = np.zeros(batch, dtype=_CONTROL)
        self._msg = np.zeros(batch, dtype=_MMSGHDR)
        index = np.arange(batch, dtype=np.uint64)
        self._msg["name"] = self._names.ctypes.data + index * _SOCKADDR_IN.itemsize
        self._msg["iov"] = self._iov.ctypes.data + index * _IOVEC.itemsize
        self._msg["iovlen"] = 1
        self._msg["control"] = self._control.ctypes.data + index * _CONTROL.itemsize
        self.unparsed = 0

    def recv(self) -> tuple[int, npt.NDArray[np.uint64], npt.NDArray[np.uint32], F64, I64]:
        """(n, source keys, destination hosts, arrival s, lengths) of up to ``batch`` waiting datagrams."""
        self._msg["namelen"] = _SOCKADDR_IN.itemsize
        self._msg["controllen"] = _CONTROL.itemsize
        got = self._libc.recvmmsg(self._fd, self._msg.ctypes.data, self.batch, MSG_DONTWAIT, None)
        if got <= 0:
            err = ctypes.get_errno()
            if got < 0 and err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                raise OSError(err, "recvmmsg")
            return 0, np.zeros(0, np.uint64), np.zeros(0, np.uint32), np.zeros(0), np.zeros(0, np.int64)
        msgs, names, control = self._msg[:got], self._names[:got], self._control[:got]
        ok = (
            (control["ts_level"] == socket.SOL_SOCKET) & (control["ts_type"] == SO_TIMESTAMPNS)
            & (control["pk_level"] == socket.IPPROTO_IP) & (control["pk_type"] == IP_PKTINFO)
            & ((msgs["flags"] & MSG_CTRUNC) == 0)
        )  # fmt: skip
        self.unparsed += int(np.count_nonzero(~ok))
        sources = names["addr"].astype(np.uint64) << np.uint64(16) | names["port"].astype(np.uint64)
        hosts = np.where(ok, control["addr"], 0).astype(np.uint32)
        arrival = control["sec"] + control["nsec"] * 1e-9
        return int(got), sources, hosts, arrival, msgs["len"].astype(np.int64)


def open_pair() -> tuple[socket.socket, socket.socket]:
    """Wildcard-bound RTP socket on an even port P and RTCP on P+1, both on ``lo`` only."""
    for _ in range(50):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        rtp.bind(("0.0.0.0", 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
            try:
                rtcp.bind(("0.0.0.0", port + 1))
                return rtp, rtcp
            except OSError:
                rtcp.close()
        rtp.close()
    raise SystemExit("no free even/odd port pair")


def run(args: argparse.Namespace) -> dict[str, object]:
    rtp, rtcp = open_pair()
    buffer = size_buffers(rtp, 32 << 20)
    rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rtp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    rtcp.setblocking(False)
    io, rx = BatchSocket(rtp), Receiver(rtp)
    print(json.dumps({"port": rtp.getsockname()[1], "rcvbuf": buffer}), flush=True)

    n = args.legs
    hosts = leg_host(np.arange(n))
    remote = np.zeros(n, dtype=np.uint64)  # 0: the bridge has not sent this leg anything yet
    packets = np.zeros((n, PACKET), dtype=np.uint8)
    packets[:, 0] = 0x80
    ssrc = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)
    packets[:, 8:12] = ssrc.astype(">u4").view(np.uint8).reshape(n, 4)
    seq = np.random.default_rng(2).integers(0, 1 << 16, n)
    stamp = np.zeros(n, dtype=np.int64)
    frames = tone_frames()
    t0 = time.time()
    score = ReturnScore(n, t0 + args.win_start, t0 + args.win_start + args.win_len)
    window_at = math.inf if args.control else args.win_start  # s after start; --control: a "window" line
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    received = foreign = sent = late_ticks = skipped = tick = 0
    sent_in_window = 0
    lateness: list[float] = []
    mono0 = time.monotonic()
    end = mono0 + args.duration
    while not stop:
        deadline = mono0 + tick * PTIME
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
            now = time.monotonic()
        if now >= end:
            break
        if args.control and select.select([sys.stdin], [], [], 0)[0]:
            command = sys.stdin.readline().strip()
            if command in ("quit", ""):
                break
            if command == "window":  # score the next --win-len seconds
                window_at = now - mono0
                wall = time.time()
                score = ReturnScore(n, wall, wall + args.win_len)
                sent_in_window = late_ticks = 0
                lateness.clear()
        late = now - deadline
        if late > PTIME:  # a starved generator skips the ticks it missed instead of bursting them
            missed = int(late / PTIME)
            skipped += missed
            tick += missed
            late -= missed * PTIME
        in_window = window_at <= now - mono0 < window_at + args.win_len
        if in_window:
            lateness.append(late)
            late_ticks += late > 0.002
        while True:
            got, sources, dst, arrival, lengths = rx.recv()
            if got == 0:
                break
            received += got
            legs = host_leg(dst)
            rtp_ok = (legs >= 0) & (lengths >= 12) & ((rx.data[:got, 0] & 0xC0) == 0x80)
            rtp_ok &= (rx.data[:got, 1] & 0x7F) < 64  # RTCP multiplexed on the port is not audio
            foreign += int(np.count_nonzero(legs < 0))
            new = rtp_ok & (remote[np.maximum(legs, 0)] == 0)
            remote[legs[new]] = sources[new]
            seq_in = rx.data[:got, 2].astype(np.int64) << 8 | rx.data[:got, 3]
            score.add(np.where(rtp_ok, legs, -1), seq_in, arrival)
            if got < rx.batch:
                break
        while True:
            try:
                rtcp.recv(2048)
            except BlockingIOError:
                break
        live = np.flatnonzero(remote)
        if len(live):
            step = tick % len(frames)
            out = packets[live]
            out[:, 2:4] = (seq[live] & 0xFFFF).astype(">u2").view(np.uint8).reshape(-1, 2)
            out[:, 4:8] = (stamp[live] & 0xFFFFFFFF).astype(">u4").view(np.uint8).reshape(-1, 4)
            out[:, 12:] = frames[(step + live) % len(frames)]
            done = io.send(out, remote[live], source_hosts=hosts[live])
            sent += done
            sent_in_window += done if in_window else 0
            seq[live] += 1
            stamp[live] += FRAME
        tick += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - mono0
    lat = np.sort(np.array(lateness)) * 1000 if lateness else np.zeros(1)
    return {
        **score.summary(),
        "window_s": [round(window_at, 2), round(window_at + args.win_len, 2)],
        "legs_answered": int(np.count_nonzero(remote)),
        "gen_sent": sent,
        "gen_sent_pps_per_leg_window": round(sent_in_window / args.win_len / max(1, n), 2),
        "gen_received": received,
        "gen_foreign": foreign,
        "gen_unparsed": rx.unparsed,
        "gen_send_dropped": io.send_dropped,
        "gen_send_errors": io.send_errors,
        "gen_ticks_skipped": skipped,
        "gen_late_ticks_window": late_ticks,
        "gen_lateness_ms_p50": round(float(np.percentile(lat, 50)), 3),
        "gen_lateness_ms_p99": round(float(np.percentile(lat, 99)), 3),
        "gen_cpu_pct_whole_run": round(100 * (usage.ru_utime + usage.ru_stime) / wall, 2),
        "gen_rcvbuf": buffer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="total run time (s)")
    parser.add_argument("--win-start", type=float, required=True, help="scoring window start (s after start)")
    parser.add_argument("--win-len", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--control", action="store_true",
        help='read commands on stdin: "window" starts the --win-len s scoring window now, "quit" ends the run',
    )  # fmt: skip
    args = parser.parse_args()
    if args.legs > 255 * LEGS_PER_SUBNET:
        raise SystemExit(f"at most {255 * LEGS_PER_SUBNET} legs")
    summary = run(args)
    text = json.dumps(summary)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
