"""Client-side helpers of tests/integration/test_ha_pair.py and bench/ha_appliance.py, run inside a lab namespace
with ``ip netns exec`` (the root namespace cannot reach the lab; files are how they report back).

- ``relay HOST PORT TARGET_PORT``: TCP relay ``HOST:PORT`` -> ``127.0.0.1:TARGET_PORT`` (the SMSC simulator
  only listens on loopback);
- ``mo-writer CTRL_PORT OUT``: one MO after the other through the simulator (``POST /mo``), each with its own
  text; appends the number of every MO the bridge acknowledged (``deliver_sm_resp`` status 0) to ``OUT``;
- ``db-writer DSN OUT``: one committed row per transaction into ``ha_writer``, reconnecting on errors (as
  ``../shared/peers/ha/pg/writer.py``); appends every id whose COMMIT returned;
- ``options HOST [PORT]``: one SIP OPTIONS, prints the status line of the answer (or ``none``);
- ``sip-probe HOST OUT DURATION``: a SIP OPTIONS every 10 ms on one socket; logs ``wallclock seq`` per 200.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import sys
import time
import urllib.request
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def relay(host: str, port: int, target_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


def mo_writer(ctrl_port: int, out: Path) -> None:
    number = 0
    with out.open("a", buffering=1) as acked:
        while True:
            number += 1
            body = {"source_addr": f"1555{number % 10_000:07d}", "destination_addr": "2663", "text": f"ping {number}"}
            request = urllib.request.Request(
                f"http://127.0.0.1:{ctrl_port}/mo", data=json.dumps(body).encode(), method="POST",
                headers={"content-type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.load(response)
            except OSError:
                time.sleep(0.05)
                continue
            if answer.get("sent") and answer.get("status") == [0]:
                acked.write(f"{number}\n")
            else:
                time.sleep(0.01)  # nobody bound (the failover): try the next one


def db_writer(dsn: str, out: Path) -> None:
    import psycopg2  # type: ignore[import-untyped]

    number, connection = 0, None
    with out.open("a", buffering=1) as acked:
        while True:
            try:
                if connection is None:
                    connection = psycopg2.connect(dsn, connect_timeout=1)
                    connection.autocommit = True
                number += 1
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO ha_writer (id) VALUES (%s)", (number,))
                acked.write(f"{number}\n")
            except psycopg2.Error:
                connection = None
                time.sleep(0.02)


def _options(sock: socket.socket, host: str, port: int, seq: int) -> bytes:
    local, local_port = sock.getsockname()
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local}:{local_port};branch=z9hG4bK-{seq}-{time.time_ns()}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p{seq}\r\nTo: <sip:{host}>\r\n"
        f"Call-ID: probe-{seq}-{time.time_ns()}@{local}\r\nCSeq: {seq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def options(host: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 5060))
        sock.connect((host, port))
        sock.settimeout(1.0)
        try:
            sock.send(_options(sock, host, port, 1))
            return sock.recv(4096).split(b"\r\n", 1)[0].decode()
        except OSError:
            return "none"


def sip_probe(host: str, out: Path, duration_s: float, interval_s: float = 0.01) -> None:
    """OPTIONS every ``interval_s`` from the gateway's port 5060 (the bridge answers its trunks only)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 5060))
    sock.connect((host, 5060))
    sock.setblocking(False)
    end, seq, next_at = time.time() + duration_s, 0, time.time()
    with out.open("w", buffering=1) as log:
        while (now := time.time()) < end:
            if now >= next_at:
                seq += 1
                try:
                    sock.send(_options(sock, host, 5060, seq))
                except OSError:
                    pass
                next_at = max(next_at + interval_s, now)
            readable, _, _ = select.select([sock], [], [], max(0.0, next_at - time.time()))
            while readable:
                try:
                    data = sock.recv(4096)
                except OSError:
                    break
                if data.startswith(b"SIP/2.0 200"):
                    log.write(f"{time.time():.6f} ok\n")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "relay":
        asyncio.run(relay(args[0], int(args[1]), int(args[2])))
    elif command == "mo-writer":
        mo_writer(int(args[0]), Path(args[1]))
    elif command == "db-writer":
        db_writer(args[0], Path(args[1]))
    elif command == "options":
        print(options(args[0], int(args[1]) if len(args) > 1 else 5060))
    elif command == "sip-probe":
        sip_probe(args[0], Path(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
