"""Media benchmark: the mixer behind real UDP sockets on loopback, fed by a load-generator subprocess.

    .venv/bin/python bench/media.py [--legs 500,1000,2000] [--seconds 8] [--size 5] [--modes mix,batched]

Every 20 ms tick, on absolute time (``bridge.mixer.clock.run_ticks``), the bridge side (this process)
reads each leg's RTP, batch-writes the payloads into the mixer, mixes, and sends each leg its own N-1
frame as an RTP packet. Legs are grouped in conferences of ``--size``. Modes:

- ``batched``: ``bridge.rtp.batch``: ONE socket for all legs, told apart by source address; ``recvmmsg``
  until empty, vectorised RTP parsing, demultiplexing and jitter ring (``FrameRing``, 40 ms), the mixer,
  one ``sendmmsg`` batch with a header per leg (own sequence number, timestamp, SSRC);
- ``mix``: one non-blocking socket per leg (one RTP port per leg), one ``recv`` and one ``sendto`` per
  leg per tick, no jitter buffer: the same-run baseline for ``batched``;
- ``echo``: ``mix`` without the mixer (each leg gets its own payload back): the sockets' cost alone;
- ``endpoint``: the engine's per-leg path, ``RtpEndpoint`` (asyncio, adaptive jitter buffer, RTCP) + mixer.

The load generator (a subprocess of this script, ``--generator``) sends one 160-byte PCMU RTP packet per
leg every 20 ms (speech-level noise) and counts what comes back: for the per-leg modes from a few sockets,
for ``batched`` from one socket where each leg has its own loopback source address (``IP_PKTINFO``) and
``sendmmsg``/``recvmmsg`` keep the generator light enough to share the 2 cores.

Reported per load level: CPU of the bridge process per 1,000 legs (% of one core), the share of
it spent in the mixer, tick lateness p50/p99/max (wake-up time after the deadline), tick duration
p99, packets lost in either direction. Baseline measured in the same run: the same loop with the
mixer replaced by an echo (each leg gets back its own payload): the cost of the sockets alone,
which the mixer's figure is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.mixer import Mixer, g711  # noqa: E402
from bridge.mixer.clock import LatenessStats, Tick, run_ticks  # noqa: E402
from bridge.rtp import MediaDescription, PortAllocator, RtpEndpoint  # noqa: E402
from bridge.rtp.batch import BatchSocket, FrameRing, address_key, size_buffers  # noqa: E402
from bridge.rtp.legtables import LegTable  # noqa: E402

RTP_HEADER = struct.Struct("!BBHII")
PT_PCMU = 0
FRAME = 160
PACKET = RTP_HEADER.size + FRAME
LEGS_PER_GENERATOR_SOCKET = 50
U8 = npt.NDArray[np.uint8]


# ----------------------------------------------------------------------------- load generator


def noise_frames() -> U8:
    """64 different 20 ms PCMU frames of speech-level noise (-20 dBov): what every generated leg says."""
    noise = np.random.default_rng(1).standard_normal((64, FRAME)) * 32768 * 10 ** (-20 / 20)
    return g711.ulaw_encode(np.clip(noise, -32768, 32767).astype(np.int16))


def paced(drains: dict[int, Callable[[], int]], send: Callable[[int], int], seconds: float) -> int:
    """The generator's loop: ``send(n)`` the packets of tick ``n`` every 20 ms (half a tick out of phase with
    the bridge; a starved generator skips ticks rather than bursting), drain replies with ``drains[fd]()``
    meanwhile, stop when the bridge writes to stdin; then print the counts and CPU as JSON."""
    poll = select.epoll()
    for fd in drains:
        poll.register(fd, select.EPOLLIN)
    poll.register(sys.stdin.fileno(), select.EPOLLIN)
    sent = received = n = 0
    start = time.monotonic() + 0.01
    end = start + seconds  # a safety net: the bridge normally says "stop" on stdin first
    stopping = False
    while not stopping:
        deadline = start + n * 0.02
        for fd, _ in poll.poll(max(0.0, deadline - time.monotonic())):  # at least once per tick, even late
            drain = drains.get(fd)
            if drain is not None:
                received += drain()
            else:
                stopping = True
                sys.stdin.readline()
        now = time.monotonic()
        if now > end or stopping:
            break
        if now < deadline:
            continue
        n = max(n, int((now - start) / 0.02))
        sent += send(n)
        n += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - start
    print(json.dumps({"sent": sent, "received": received, "cpu": usage.ru_utime + usage.ru_stime, "wall": wall}))
    return 0


def generator(legs: int, seconds: float) -> int:
    """Subprocess: send one RTP packet per leg per 20 ms to the ports read from stdin; count replies.

    Given one port per leg, it sends from a few sockets; given a single shared port (the ``batched``
    bridge, which tells legs apart by their source address) it plays the legs with :func:`batch_generator`.
    """
    ports = json.loads(sys.stdin.readline())["ports"]
    if len(ports) == 1 and legs > 1:
        return batch_generator(legs, seconds, ports[0])
    assert len(ports) == legs
    socks = []
    for _ in range(-(-legs // LEGS_PER_GENERATOR_SOCKET)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    payloads = [bytes(row) for row in noise_frames()]
    targets = [("127.0.0.1", p) for p in ports]
    buf = bytearray(2048)

    def drainer(sock: socket.socket) -> Callable[[], int]:
        def drain() -> int:
            count = 0
            while True:
                try:
                    sock.recv_into(buf)
                except BlockingIOError:
                    return count
                count += 1

        return drain

    def send(n: int) -> int:
        packet = RTP_HEADER.pack(0x80, PT_PCMU, n & 0xFFFF, (n * FRAME) & 0xFFFFFFFF, 0) + payloads[n % len(payloads)]
        sent = 0
        for i, target in enumerate(targets):
            try:
                socks[i % len(socks)].sendto(packet, target)  # replies come back spread over the sockets
                sent += 1
            except BlockingIOError:
                pass
        return sent

    return paced({s.fileno(): drainer(s) for s in socks}, send, seconds)


def batch_generator(legs: int, seconds: float, port: int) -> int:
    """Play ``legs`` callers from ONE socket: leg ``i`` sends from its own loopback address 127.1.x.y (chosen
    per datagram with ``IP_PKTINFO``) and its own sequence numbers and SSRC, with ``sendmmsg``; the replies
    (addressed to those 127.1.x.y) are read with ``recvmmsg``. The socket is bound to the wildcard address
    but to the ``lo`` device only (``SO_BINDTODEVICE``): it never sees another interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    size_buffers(sock, 16 << 20)
    sock.bind(("0.0.0.0", 0))
    io = BatchSocket(sock)
    hosts = ((127 << 24 | 1 << 16) + 256 * (np.arange(legs) // 250) + 1 + np.arange(legs) % 250).astype(np.uint32)
    local_port = sock.getsockname()[1]
    callers = [[socket.inet_ntoa(int(h).to_bytes(4, "big")), local_port] for h in hosts]
    print(json.dumps({"callers": callers}), flush=True)
    destinations = np.full(legs, address_key("127.0.0.1", port), dtype=np.uint64)
    payloads = noise_frames()
    packets = rtp_rows(legs, ssrc=np.arange(1, legs + 1))
    seq0 = np.random.default_rng(1).integers(0, 1 << 16, legs)

    def drain() -> int:
        count = 0
        while (got := io.recv()) > 0:
            count += got
        return count

    def send(n: int) -> int:
        stamp_rows(packets, seq0 + n, n * FRAME)
        packets[:, RTP_HEADER.size :] = payloads[(np.arange(legs) + n) % len(payloads)]
        return io.send(packets, destinations, source_hosts=hosts)

    return paced({sock.fileno(): drain}, send, seconds)


def rtp_rows(legs: int, *, ssrc: npt.NDArray[np.integer]) -> U8:
    """One PCMU RTP packet per leg, as rows: version 2, payload type 0, each leg's SSRC."""
    packets = np.zeros((legs, PACKET), dtype=np.uint8)
    packets[:, 0], packets[:, 1] = 0x80, PT_PCMU
    packets[:, 8:12] = np.asarray(ssrc, dtype=">u4").view(np.uint8).reshape(legs, 4)
    return packets


def stamp_rows(packets: U8, seq: npt.NDArray[np.integer], timestamp: int) -> None:
    """Write each row's sequence number (``seq``, mod 2**16) and the common ``timestamp`` into ``packets``."""
    legs = len(packets)
    packets[:, 2:4] = (np.asarray(seq) & 0xFFFF).astype(">u2").view(np.uint8).reshape(legs, 2)
    packets[:, 4:8] = np.full(legs, timestamp & 0xFFFFFFFF, dtype=">u4").view(np.uint8).reshape(legs, 4)


# ----------------------------------------------------------------------------- bridge side


class Bridge:
    def __init__(self, legs: int, size: int, *, mix: bool) -> None:
        self.legs = legs
        self.mix = mix
        self.socks = []
        for _ in range(legs):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.mixer = Mixer()
        self.pids = np.array([self.mixer.add(i // size) for i in range(legs)], dtype=np.int64)
        # Packets are received into, and sent from, rows of preallocated arrays: no per-leg numpy call.
        self.rx = np.zeros((legs, PACKET + 1), dtype=np.uint8)  # +1: a longer datagram shows as too long
        self.rx_views = [memoryview(row) for row in self.rx]
        self.tx = np.zeros((legs, PACKET), dtype=np.uint8)
        self.tx_views = [memoryview(row) for row in self.tx]
        self.frames = np.full((legs, FRAME), 0xFF, dtype=np.uint8)
        self.targets: list[tuple[str, int]] = []
        self.received = self.sent = self.empty = 0
        self.mix_cpu = 0.0
        self.durations: list[float] = []
        self.seq = 0

    def tick(self, tick: Tick) -> None:
        t0 = time.thread_time()
        sizes = [0] * self.legs
        for i, (s, view) in enumerate(zip(self.socks, self.rx_views, strict=True)):
            try:
                sizes[i] = s.recv_into(view)  # one packet per leg per tick; extras wait for the next tick
            except BlockingIOError:
                pass
        good = np.array(sizes) == PACKET
        frames = self.frames
        frames[:] = 0xFF  # nothing (or garbage) this tick: silence
        frames[good] = self.rx[good, RTP_HEADER.size : PACKET]
        recv = int(good.sum())
        self.received += recv
        self.empty += self.legs - recv
        m0 = time.thread_time()
        if self.mix:
            self.mixer.write_rows(self.pids, frames)
            result = self.mixer.tick()
            payloads = result.frames_for(self.pids)
        else:
            payloads = frames
        self.mix_cpu += time.thread_time() - m0
        if self.targets:
            header = RTP_HEADER.pack(0x80, PT_PCMU, self.seq & 0xFFFF, (tick.index * FRAME) & 0xFFFFFFFF, 1)
            self.seq += 1
            self.tx[:, : RTP_HEADER.size] = np.frombuffer(header, dtype=np.uint8)
            self.tx[:, RTP_HEADER.size :] = payloads
            targets = self.targets
            for i, (s, view) in enumerate(zip(self.socks, self.tx_views, strict=True)):
                try:
                    s.sendto(view, targets[i % len(targets)])
                    self.sent += 1
                except BlockingIOError:
                    pass
        self.durations.append(time.thread_time() - t0)

    def close(self) -> None:
        for s in self.socks:
            s.close()


class BatchBridge:
    """All legs on ONE socket (``bridge.rtp.batch``): ``recvmmsg`` until empty, vectorised RTP parsing and
    demultiplexing by source address, the vectorised jitter buffer, the mixer, one ``sendmmsg`` batch."""

    def __init__(self, legs: int, size: int) -> None:
        self.legs = legs
        self.io = BatchSocket.bind("127.0.0.1")
        self.ports = [self.io.sock.getsockname()[1]]
        self.mixer = Mixer()
        self.pids = np.array([self.mixer.add(i // size) for i in range(legs)], dtype=np.int64)
        self.ring = FrameRing(legs, depth=8, delay=2)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.table = LegTable(self.keys)
        # Outgoing packets: one row per leg, a header per leg (own sequence number, timestamp, SSRC).
        self.tx = rtp_rows(legs, ssrc=np.arange(1, legs + 1))
        self.seq0 = np.random.default_rng(3).integers(0, 1 << 16, legs)
        self.received = self.sent = self.empty = 0
        self.mix_cpu = 0.0
        self.durations: list[float] = []

    @property
    def targets(self) -> list[tuple[str, int]]:
        return []

    @targets.setter
    def targets(self, targets: list[tuple[str, int]]) -> None:
        self.keys = np.array([address_key(h, p) for h, p in targets], dtype=np.uint64)
        self.table = LegTable(self.keys, payload_type=PT_PCMU, frame=FRAME)

    def receive(self) -> None:
        self.table.receive(self.io, self.ring)

    def tick(self, tick: Tick) -> None:
        t0 = time.thread_time()
        self.receive()
        frames, hit = self.ring.pop()
        got = int(np.count_nonzero(hit))
        self.received += got
        self.empty += self.legs - got
        m0 = time.thread_time()
        self.mixer.write_rows(self.pids, frames)
        payloads = self.mixer.tick().frames_for(self.pids)
        self.mix_cpu += time.thread_time() - m0
        if len(self.keys):
            tx = self.tx
            stamp_rows(tx, self.seq0 + tick.index, tick.index * FRAME)
            tx[:, RTP_HEADER.size :] = payloads
            self.sent += self.io.send(tx, self.keys)
        self.durations.append(time.thread_time() - t0)

    def close(self) -> None:
        self.io.close()


class EndpointBridge:
    """The appliance's media path: ``RtpEndpoint`` per leg (asyncio protocol, jitter buffer, RTCP) + mixer."""

    def __init__(self, legs: int, size: int) -> None:
        self.legs = legs
        self.mixer = Mixer()
        self.pids = [self.mixer.add(i // size) for i in range(legs)]
        self.endpoints: list[RtpEndpoint] = []
        self.ports: list[int] = []
        self.received = self.sent = self.empty = 0
        self.mix_cpu = 0.0
        self.durations: list[float] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        base = 20000 + 2 * random.randrange(10000)
        allocator = PortAllocator(base, min(65534, base + 4 * self.legs + 400))
        for _ in range(self.legs):
            self.endpoints.append(await RtpEndpoint.open(loop, allocator, host="127.0.0.1"))
        self.ports = [e.local_port for e in self.endpoints]

    def start(self, targets: list[tuple[str, int]]) -> None:
        for i, endpoint in enumerate(self.endpoints):
            host, port = targets[i % len(targets)]
            endpoint.start(MediaDescription(host, port, "PCMU", PT_PCMU, None, "sendrecv"))

    def tick(self, tick: Tick) -> None:
        t0 = time.thread_time()
        now = asyncio.get_running_loop().time()
        mixer = self.mixer
        got = 0
        for pid, endpoint in zip(self.pids, self.endpoints, strict=True):
            frame = endpoint.read_frame(now)
            got += frame is not None
            mixer.write(pid, frame)
        self.received += got
        self.empty += self.legs - got
        m0 = time.thread_time()
        result = mixer.tick()
        rows = result.frames_for(self.pids)
        self.mix_cpu += time.thread_time() - m0
        for endpoint, row in zip(self.endpoints, rows, strict=True):
            endpoint.write_frame(row.tobytes())
        self.sent += self.legs
        self.durations.append(time.thread_time() - t0)

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()


async def run_level(legs: int, size: int, seconds: float, *, mode: str) -> dict[str, float]:
    bridge: Bridge | EndpointBridge | BatchBridge
    if mode == "endpoint":
        bridge = EndpointBridge(legs, size)
        await bridge.open()
    elif mode == "batched":
        bridge = BatchBridge(legs, size)
    else:
        bridge = Bridge(legs, size, mix=mode == "mix")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--generator", str(legs), "--seconds", str(seconds + 30.0)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"ports": bridge.ports}) + "\n")
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    targets = (
        [(host, port) for host, port in reply["callers"]]
        if "callers" in reply
        else [("127.0.0.1", port) for port in reply["ports"]]
    )
    if isinstance(bridge, EndpointBridge):
        bridge.start(targets)
    else:
        bridge.targets = targets
    stop = asyncio.Event()
    warm, measured = 50, round(seconds / 0.02)  # ticks on the absolute grid (skipped ones count as time)
    lateness: list[float] = []
    skipped = 0
    marks: dict[str, float] = {}

    def on_tick(tick: Tick) -> None:
        nonlocal skipped
        if tick.index >= warm + measured:
            stop.set()
            return
        if tick.index >= warm:
            if not marks:
                marks["cpu0"], marks["t0"] = time.process_time(), time.monotonic()
                bridge.durations.clear()
                bridge.mix_cpu = 0.0
                bridge.received = bridge.empty = 0  # loss in: over the measured ticks only
            lateness.append(tick.lateness)
            skipped += tick.skipped
        bridge.tick(tick)

    await run_ticks(on_tick, stats=LatenessStats(), stop=stop)
    cpu = time.process_time() - marks["cpu0"]
    wall = time.monotonic() - marks["t0"]
    ring = np.array(lateness or [0.0])
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    result_line = proc.stdout.readline()
    proc.wait(timeout=30)
    gen = json.loads(result_line)
    bridge.close()
    durations = np.array(bridge.durations or [0.0])
    return {
        "legs": legs,
        "cpu_pct": 100 * cpu / wall,
        "cpu_per_1000": 100 * cpu / wall * 1000 / legs,
        "mix_pct": 100 * bridge.mix_cpu / wall,
        "tick_ms": 1000 * float(durations.mean()),
        "mix_ms": 1000 * bridge.mix_cpu / max(1, len(bridge.durations)),
        "p50": 1000 * float(np.percentile(ring, 50)),
        "p99": 1000 * float(np.percentile(ring, 99)),
        "max": 1000 * float(ring.max()),
        "tick_p99": 1000 * float(np.percentile(durations, 99)),
        "skipped": skipped,
        "gen_cpu_pct": 100 * gen["cpu"] / gen["wall"],
        "loss_in": 100 * bridge.empty / max(1, bridge.empty + bridge.received),
        "loss_out": 100 * (1 - gen["received"] / max(1, bridge.sent)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default="500,1000,2000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=5, help="participants per conference")
    parser.add_argument("--modes", default="mix,batched", help="batched, mix (baseline), echo, endpoint")
    parser.add_argument("--generator", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        return generator(args.generator, args.seconds)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; conferences of {args.size}; "
          f"{args.seconds:.0f} s per level after 1 s warm-up")  # fmt: skip
    header = (
        f"{'legs':>5} {'mode':>8} {'CPU%':>6} {'%/1000 legs':>11} {'mixer%':>7} {'ms/tick all/mix':>15} "
        f"{'late p50':>9} {'p99':>6} {'max':>6} {'tick p99':>8} {'skip':>5} {'loss in/out %':>14} {'gen CPU%':>8}"
    )
    print(header)
    for legs in (int(v) for v in args.legs.split(",")):
        per_tick: dict[str, float] = {}
        for mode in args.modes.split(","):
            r = asyncio.run(run_level(legs, args.size, args.seconds, mode=mode))
            per_tick[mode] = r["tick_ms"]
            print(
                f"{legs:>5} {mode:>8} {r['cpu_pct']:>6.1f} {r['cpu_per_1000']:>11.1f} {r['mix_pct']:>7.1f} "
                f"{r['tick_ms']:>9.2f}/{r['mix_ms']:<5.2f} {r['p50']:>7.2f}ms {r['p99']:>6.2f} {r['max']:>6.1f} "
                f"{r['tick_p99']:>6.2f}ms {r['skipped']:>5} {r['loss_in']:>6.2f}/{r['loss_out']:<6.2f} "
                f"{r['gen_cpu_pct']:>8.1f}"
            )
        if "batched" in per_tick and "mix" in per_tick:
            print(f"{legs:>5} CPU per tick, batched / mix (same run): {per_tick['batched'] / per_tick['mix']:.2f}")
    print(
        "batched = one socket, recvmmsg/sendmmsg, vectorised parse + jitter ring + mixer (bridge.rtp.batch);\n"
        "mix = a plain socket per leg + mixer (baseline); echo = the same without the mixer;\n"
        "endpoint = RtpEndpoint per leg (asyncio, jitter buffer, RTCP) + mixer, as the engine does;\n"
        "mixer% = CPU in the mixer calls (write_rows+tick, or tick+frames_for); ms/tick: CPU per tick run\n"
        "(all work / mixer only); skipped ticks (a starved process) lower the % but not the ms/tick."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
