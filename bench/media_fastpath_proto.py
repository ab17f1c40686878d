"""Prototype for the RTP/engine owners (issue 9): what a tick-driven media path would save over today's.

Run by hand (no root needed; loopback only):

    .venv/bin/python bench/media_fastpath_proto.py --legs 200 --seconds 10

Both variants run in this process with the REAL bridge code -- ``RtpEndpoint``/``MediaSession`` (latching,
ReceptionStats, JitterBuffer), the batched ``Mixer`` -- for N legs in one conference (like the 1x200 load),
fed by a child process that plays N callers like SIPp does (distinct source ports, the SAME SSRC,
sequence numbers and timestamps for all, 50 packets/s each) and drains what the bridge sends back.

``baseline`` (measured in the same run) is today's engine path: one asyncio datagram protocol per socket
(``RtpEndpoint._on_rtp`` for each packet) and ``Engine._tick``'s per-leg loop
(``read_frame`` -> ``mixer.write`` -> ``mixer.tick`` -> ``write_frame`` through the asyncio transport).

``fastpath`` keeps the same sockets, sessions and mixer but takes the RTP sockets away from asyncio:

* receive: the 20 ms tick asks ONE ``epoll`` (all RTP sockets registered, level-triggered) which sockets have
  data, ``recvfrom`` once per ready socket, and repeats ``poll(0)`` until nothing is ready (no exception per
  packet, no asyncio handle per packet); then ``MediaSession.receive_rtp`` as today. Arrival time is the
  tick's ``now`` (RTCP jitter then has 20 ms granularity; ``SO_TIMESTAMPNS`` + ``recvmsg`` would restore it).
* mixer input: one ``Mixer.write_rows`` of all frames instead of N ``Mixer.write``;
* send: ``socket.sendto(session.audio_packet(...))`` on the raw socket (no transport layer), payloads sliced
  from one ``out.tobytes()``.

``rtppoller`` is the RTP owner's ``bridge.rtp.RtpPoller`` (``RtpEndpoint.open(..., poller=)``, kernel arrival
timestamps) with the engine's batched ``_mix`` (``write_rows``, output sliced from one ``bytes``), i.e. what the
engine gets once the SIP media factory passes the poller and the tick calls ``poller.poll(now)``.

``syscalls`` is the floor of any design that makes one system call per packet from Python: the same epoll
drain with ``recvfrom`` and one constant ``sendto`` per leg per tick, no RTP/jitter/mixer work at all.
``mmsg`` is the floor with batched system calls: ONE socket for all legs (callers told the same port, legs
told apart by their source address), ``recvmmsg`` until empty and one ``sendmmsg`` per tick
(``bridge.rtp.batch.BatchSocket``; ``bench/media.py --modes batched`` runs the whole batched media path).

Prints CPU % of one core (process CPU time over the window), the per-leg figure, tick lateness p99, packets
received/sent, and the fastpath/baseline ratio. The machine is shared: run it when it is quiet, twice.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.mixer.clock import LatenessStats, Tick, run_ticks  # noqa: E402
from bridge.mixer.mixer import Mixer  # noqa: E402
from bridge.rtp.batch import BatchSocket, address_key  # noqa: E402
from bridge.rtp.endpoint import RtpEndpoint  # noqa: E402
from bridge.rtp.poller import RtpPoller  # noqa: E402
from bridge.rtp.ports import PortAllocator  # noqa: E402
from bridge.rtp.sdp import MediaDescription  # noqa: E402

HOST = "127.0.0.1"

SENDER = r"""
import select, socket, struct, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
stop_at = time.monotonic() + float(sys.argv[2])
socks = []
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    socks.append((s, ("127.0.0.1", port)))
print(",".join(str(s.getsockname()[1]) for s, _ in socks), flush=True)
ep = select.epoll()
for s, _ in socks:
    ep.register(s.fileno(), select.EPOLLIN)
by_fd = {s.fileno(): s for s, _ in socks}
payload = bytes(range(160))
seq, ts, t = 1, 0, time.monotonic()
while t < stop_at:
    packet = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234ABCD) + payload  # same for all
    for s, dest in socks:
        s.sendto(packet, dest)
    seq, ts, t = seq + 1, ts + 160, t + 0.02
    while True:
        for fd, _ in ep.poll(max(0.0, t - time.monotonic())):
            try:
                by_fd[fd].recv(2048)
            except BlockingIOError:
                pass
        if time.monotonic() >= t:
            break
"""


async def open_legs(n: int, port_low: int, poller: RtpPoller | None = None) -> list[RtpEndpoint]:
    loop = asyncio.get_running_loop()
    allocator = PortAllocator(port_low, port_low + 2 * n + 200)
    return [await RtpEndpoint.open(loop, allocator, host=HOST, rtp_timeout_s=600, poller=poller) for _ in range(n)]


def start_sender(ports: list[int], seconds: float) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, ",".join(map(str, ports)), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    remote = [int(p) for p in proc.stdout.readline().split(",")]
    return proc, remote


async def run_variant(name: str, n: int, seconds: float, warmup: float, port_low: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    poller = RtpPoller() if name == "rtppoller" else None
    endpoints = await open_legs(n, port_low, poller)
    shared = BatchSocket.bind(HOST) if name == "mmsg" else None
    targets_ports = [shared.sock.getsockname()[1]] * n if shared is not None else [e.local_port for e in endpoints]
    sender, remote_ports = start_sender(targets_ports, warmup + seconds + 2)
    mixer = Mixer()
    pids = [mixer.add(1) for _ in endpoints]
    for endpoint, port in zip(endpoints, remote_ports, strict=True):
        endpoint.start(MediaDescription(HOST, port, "PCMU", 0, 101, "sendrecv"))
    media = dict(zip(pids, endpoints, strict=True))
    silence = b"\xff" * 160
    counters = {"rx": 0, "tx": 0}

    if name == "rtppoller":  # the RTP owner's RtpPoller + the engine's batched _mix, as they will run once wired
        assert poller is not None

        def tick(t: Tick) -> None:
            now = loop.time()
            counters["rx"] += poller.poll(now)
            pids_in: list[int] = []
            frames: list[bytes] = []
            for pid, rtp in media.items():
                frame = rtp.read_frame(now)
                if frame is not None and len(frame) == 160:
                    pids_in.append(pid)
                    frames.append(frame)
            if pids_in:
                mixer.write_rows(pids_in, np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), 160))
            result = mixer.tick()
            blob = result.out.tobytes()
            for index, pid in enumerate(result.pids.tolist()):
                media[pid].write_frame(blob[index * 160 : index * 160 + 160])

    elif name == "mmsg":  # floor with ONE shared socket (bridge.rtp.batch): recvmmsg/sendmmsg, no RTP work
        assert shared is not None
        keys = np.array([address_key(HOST, port) for port in remote_ports], dtype=np.uint64)
        packet = np.zeros((n, 172), dtype=np.uint8)
        packet[:, 0] = 0x80

        def tick(t: Tick) -> None:
            while (got := shared.recv()) > 0:
                counters["rx"] += got
            counters["tx"] += shared.send(packet, keys)

    elif name == "syscalls":  # the floor of any one-syscall-per-packet Python design: recvfrom + sendto only
        ep = select.epoll()
        floor_fd: dict[int, socket.socket] = {}
        targets: list[tuple[socket.socket, Any]] = []
        for endpoint in media.values():
            sock = endpoint._rtp._sock  # type: ignore[union-attr]
            loop._remove_reader(sock.fileno())  # type: ignore[attr-defined]
            ep.register(sock.fileno(), select.EPOLLIN)
            floor_fd[sock.fileno()] = sock
            targets.append((sock, endpoint.session.remote))
        packet = b"\x80\x00" + bytes(170)

        def tick(t: Tick) -> None:
            rx = 0
            while True:
                ready = ep.poll(0)
                if not ready:
                    break
                for fd, _ in ready:
                    try:
                        floor_fd[fd].recvfrom(2048)
                    except BlockingIOError:
                        continue
                    rx += 1
            counters["rx"] += rx
            for sock, remote in targets:
                sock.sendto(packet, remote)
            counters["tx"] += len(targets)

    elif name == "fastpath":
        ep = select.epoll()
        by_fd: dict[int, tuple[socket.socket, Any]] = {}
        raw: dict[int, socket.socket] = {}
        for pid, endpoint in media.items():
            sock = endpoint._rtp._sock  # type: ignore[union-attr]  # prototype: take the socket from asyncio
            loop._remove_reader(sock.fileno())  # type: ignore[attr-defined]
            ep.register(sock.fileno(), select.EPOLLIN)
            by_fd[sock.fileno()] = (sock, endpoint.session)
            raw[pid] = sock
        pid_array = np.array(pids, dtype=np.int64)

        def tick(t: Tick) -> None:
            now = loop.time()
            rx = 0
            while True:
                ready = ep.poll(0)
                if not ready:
                    break
                for fd, _ in ready:
                    sock, session = by_fd[fd]
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        continue
                    session.receive_rtp(data, addr, now)
                    rx += 1
            counters["rx"] += rx
            frames = [media[pid].session.read_frame(now) or silence for pid in pids]
            mixer.write_rows(pid_array, np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(pids), 160))
            result = mixer.tick()
            buf = memoryview(result.out.tobytes())
            for index, pid in enumerate(result.pids.tolist()):
                session = media[pid].session
                raw[pid].sendto(session.audio_packet(buf[index * 160 : index * 160 + 160], now), session.remote)  # type: ignore[arg-type]

    else:
        for endpoint in endpoints:  # count packets without changing the path
            original = endpoint._on_rtp

            def counted(data: bytes, addr: Any, _orig: Any = original) -> None:
                counters["rx"] += 1
                _orig(data, addr)

            endpoint._rtp._protocol.datagram_received = counted  # type: ignore[union-attr]

        def tick(t: Tick) -> None:  # Engine._tick, minus the service
            now = loop.time()
            for pid, rtp in media.items():
                mixer.write(pid, rtp.read_frame(now))
            result = mixer.tick()
            out = result.out
            for index, pid in enumerate(result.pids.tolist()):
                media[pid].write_frame(out[index].tobytes())

    stats = LatenessStats()
    stop = asyncio.Event()
    durations: list[float] = []

    def timed(t: Tick) -> None:
        t0 = time.perf_counter()
        tick(t)
        durations.append(time.perf_counter() - t0)

    ticker = asyncio.create_task(run_ticks(timed, stats=stats, stop=stop))
    await asyncio.sleep(warmup)
    gc_state = {"t0": 0.0, "seconds": 0.0, "collections": 0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_state["t0"] = time.perf_counter()
        else:
            gc_state["seconds"] += time.perf_counter() - gc_state["t0"]
            gc_state["collections"] += 1

    gc.callbacks.append(on_gc)
    rx0, tx0 = counters["rx"], counters["tx"] + sum(e.session.packets_out for e in endpoints)
    ticks0 = stats.ticks
    cpu0, wall0 = time.process_time(), time.monotonic()
    durations.clear()
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    rx1, tx1 = counters["rx"], counters["tx"] + sum(e.session.packets_out for e in endpoints)
    gc.callbacks.remove(on_gc)
    window = wall1 - wall0
    lateness = sorted(stats._ring[: min(stats.ticks, stats.window)])  # noqa: SLF001
    stop.set()
    await ticker
    sender.kill()
    sender.wait()
    lost = sum(e.stats()["lost"] for e in endpoints)
    for endpoint in endpoints:
        endpoint.close()
    if shared is not None:
        shared.close()
    cpu = 100.0 * (cpu1 - cpu0) / window
    return {
        "variant": name,
        "cpu_pct": cpu,
        "cpu_pct_per_leg": cpu / n,
        "rx_pps": (rx1 - rx0) / window,
        "tx_pps": (tx1 - tx0) / window,
        "ticks": stats.ticks - ticks0,
        "lateness_p99_ms": 1000 * float(np.percentile(lateness, 99)) if lateness else 0.0,
        "lost": lost,
        "gc_pct": 100.0 * gc_state["seconds"] / window,
        "tick_ms_p50": 1000 * float(np.percentile(durations, 50)) if durations else 0.0,
        "tick_ms_p99": 1000 * float(np.percentile(durations, 99)) if durations else 0.0,
        "gc_collections": int(gc_state["collections"]),
        "us_per_packet_in_plus_out": 1e6 * (cpu1 - cpu0) / max(1, (rx1 - rx0) + (tx1 - tx0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--port-low", type=int, default=50000, help="start of the RTP port range to bind")
    args = parser.parse_args()
    print(f"{args.legs} legs, one conference, {args.seconds:.0f} s window; load average {os.getloadavg()[0]:.2f}")
    rows = []
    for name in ("baseline", "fastpath", "rtppoller", "syscalls", "mmsg"):
        row = asyncio.run(run_variant(name, args.legs, args.seconds, args.warmup, args.port_low))
        rows.append(row)
        print(
            f"{name:>9}: {row['cpu_pct']:6.2f} % of one core, {row['cpu_pct_per_leg']:.4f} %/leg, "
            f"rx {row['rx_pps']:.0f} pps, tx {row['tx_pps']:.0f} pps, "
            f"{row['us_per_packet_in_plus_out']:.2f} us/packet, "
            f"tick lateness p99 {row['lateness_p99_ms']:.2f} ms, lost {row['lost']}, "
            f"GC {row['gc_pct']:.2f} % ({row['gc_collections']} collections), "
            f"tick duration p50/p99 {row['tick_ms_p50']:.2f}/{row['tick_ms_p99']:.2f} ms",
            flush=True,
        )
    base = rows[0]
    for row in rows[1:]:
        print(
            f"{row['variant']}/baseline: CPU {row['cpu_pct'] / base['cpu_pct']:.2f}, "
            f"us/packet {row['us_per_packet_in_plus_out'] / base['us_per_packet_in_plus_out']:.2f}"
        )
    print(f"(load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
