"""``python -m bridge.ha``: the HA service standalone, plus a tiny UDP echo on the VIP (for tests and bench).

Settings come from ``--config FILE`` (TOML, the fields of :class:`~bridge.ha.settings.HaSettings` under
``[ha]``; ``key_file`` may replace ``key``) and/or command-line options, which win. The echo service is
bound to the VIP with ``IP_FREEBIND`` from the start and answers ``request + b"|" + node_id`` only while
this node is active. Signals: SIGTERM/SIGINT stop (resigning if active), SIGUSR1 asks for a graceful
switchover. ``--status-file`` gets a JSON line (role, term, pid) on every change of role or term.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

from bridge.ha.errors import HaError
from bridge.ha.role import HaStatus
from bridge.ha.service import HaService
from bridge.ha.settings import HaSettings
from bridge.ha.vip import freebind_socket

log = logging.getLogger("bridge.ha")


class EchoService(asyncio.DatagramProtocol):
    """Answers every datagram with itself plus ``|node_id``, only while ``active``."""

    def __init__(self, node_id: str) -> None:
        self.tag = b"|" + node_id.encode()
        self.active = False
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.active and self.transport is not None:
            self.transport.sendto(data[:512] + self.tag, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for a probe client that went away


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bridge.ha", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, help="TOML file with an [ha] table")
    ap.add_argument("--node-id")
    ap.add_argument("--peer-node-id")
    ap.add_argument("--local", action="append", dest="local_addresses", help="our address on a path (repeat)")
    ap.add_argument("--peer", action="append", dest="peer_addresses", help="the peer's address on a path (repeat)")
    ap.add_argument("--interface")
    ap.add_argument("--vip")
    ap.add_argument("--vip-prefix", type=int)
    ap.add_argument("--port", type=int)
    ap.add_argument("--key", help="shared HMAC key (prefer --key-file)")
    ap.add_argument("--key-file", type=Path)
    ap.add_argument("--interval-s", type=float)
    ap.add_argument("--miss-count", type=int)
    ap.add_argument("--witness")
    ap.add_argument("--realtime-priority", type=int, help="SCHED_RR priority, 0: normal scheduling")
    ap.add_argument("--echo-port", type=int, default=7000, help="UDP echo on the VIP (0: none)")
    ap.add_argument("--status-file", type=Path)
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


def settings_from(args: argparse.Namespace) -> HaSettings:
    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(tomllib.loads(args.config.read_text()).get("ha", {}))
    names = {f.name for f in fields(HaSettings)}
    for name in names | {"key_file"}:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    key_file = values.pop("key_file", None)
    if key_file is not None:
        values["key"] = Path(key_file).read_bytes().strip()
    if isinstance(values.get("key"), str):
        values["key"] = values["key"].encode()
    for name in ("local_addresses", "peer_addresses"):
        if name in values:
            values[name] = tuple(values[name])
    unknown = set(values) - names
    if unknown:
        raise HaError(f"unknown HA settings: {', '.join(sorted(unknown))}")
    try:
        return HaSettings(**values)
    except TypeError as exc:  # a required field is missing
        raise HaError(str(exc).replace("HaSettings.__init__()", "HA settings:")) from None


def write_status(path: Path, status: HaStatus) -> None:
    line = {"role": status.role.value, "term": status.term, "healthy": status.healthy, "pid": os.getpid()}
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(line) + "\n")
    os.replace(temporary, path)


def realtime(priority: int) -> None:
    """Real-time scheduling for this (single-threaded) process, so a saturated CPU cannot delay heartbeats."""
    if not priority:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
    except OSError as exc:
        log.warning("SCHED_RR %d refused (%s): heartbeats may be late on a busy machine", priority, exc)


async def run(settings: HaSettings, echo_port: int, status_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    realtime(settings.realtime_priority)
    echo = EchoService(settings.node_id)
    if echo_port:
        sock = freebind_socket(settings.vip, echo_port)
        await loop.create_datagram_endpoint(lambda: echo, sock=sock)

    def on_active(term: int) -> None:
        echo.active = True
        log.info("%s: services started (term %d)", settings.node_id, term)

    def on_standby() -> None:
        echo.active = False
        log.info("%s: services stopped", settings.node_id)

    service = HaService(
        settings,
        on_active=on_active,
        on_standby=on_standby,
        on_change=(lambda status: write_status(status_file, status)) if status_file else None,
    )
    stopping = asyncio.Event()

    def switchover() -> None:
        try:
            service.switchover()
        except HaError as exc:
            log.warning("%s: switchover refused: %s", settings.node_id, exc)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGUSR1, switchover)
    await service.start()
    await stopping.wait()
    silence_ms = service.status().max_silence_s * 1000
    await service.stop()
    log.info("%s: stopped; longest peer silence %.1f ms", settings.node_id, silence_ms)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(created).6f %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        settings = settings_from(args)
    except (HaError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"python -m bridge.ha: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run(settings, args.echo_port, args.status_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
