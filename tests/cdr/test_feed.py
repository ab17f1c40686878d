"""The real-time TCP feed on loopback: live lines, RESUME after a disconnect, no gaps, no duplicates."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import HEADER
from bridge.cdr.feed import CdrFeed, parse_resume
from bridge.config import Config, ConfigError, from_dict
from tests.cdr.cdr_world import Tenant, add_cdr

TIMEOUT = 10.0


def test_parse_resume() -> None:
    assert parse_resume("RESUME 42\n") == 42
    assert parse_resume("resume 0") == 0
    for bad in ("RESUME", "RESUME -1", "HELLO 3", "RESUME 1 2", ""):
        with pytest.raises(ValueError):
            parse_resume(bad)


class Writer:
    """Writes CDRs from another thread, as the conference service does, and notifies the feed."""

    def __init__(self, factory: sessionmaker[Session], tenant: Tenant, feed: CdrFeed) -> None:
        self.factory, self.tenant, self.feed = factory, tenant, feed
        self.ids: list[int] = []

    def write(self, count: int) -> None:
        for _ in range(count):
            with self.factory() as s:
                cdr_id = add_cdr(s, company_id=self.tenant.company_id).id
                s.commit()
            self.ids.append(cdr_id)
            self.feed.notify(cdr_id)


async def read_ids(reader: asyncio.StreamReader, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert line.endswith(b"\n")
        prefix, _, rest = line.decode().partition(",")
        fields = rest.rstrip("\n").split(",")
        assert len(fields) == len(HEADER)
        assert fields[0] == prefix  # the line is "<id>," + the CDR file's columns
        ids.append(int(prefix))
    return ids


def test_feed_survives_reconnects_without_gaps_or_duplicates(factory: sessionmaker[Session], tenant: Tenant) -> None:
    async def scenario() -> None:
        feed = CdrFeed(factory, poll_s=0.2, resume_wait_s=0.3)
        await feed.start("127.0.0.1", 0)
        writer = Writer(factory, tenant, feed)
        try:
            await asyncio.to_thread(writer.write, 3)  # before anyone connects: not sent to a live-only client
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            await asyncio.sleep(0.5)  # no RESUME: live from now on
            thread = threading.Thread(target=writer.write, args=(20,))
            thread.start()
            received = await read_ids(reader, 8)
            conn.close()  # drop mid-stream while CDRs keep coming
            await asyncio.sleep(0.1)
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(f"RESUME {received[-1]}\n".encode())
            received += await read_ids(reader, 12)
            await asyncio.to_thread(thread.join, TIMEOUT)
            assert received == writer.ids[3:]  # exactly the CDRs after connecting, in order, once

            conn.close()
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"RESUME 0\n")  # a new consumer replays everything
            assert await read_ids(reader, 23) == writer.ids
            await asyncio.to_thread(writer.write, 1)
            assert await read_ids(reader, 1) == writer.ids[-1:]
            conn.close()

            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"GIMME\n")
            assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"ERR ")
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed
            conn.close()
        finally:
            await feed.stop()

    asyncio.run(scenario())


@given(st.text(max_size=40))
def test_parse_resume_accepts_only_resume_and_digits(text: str) -> None:
    try:
        value = parse_resume(text)
    except ValueError:
        return
    assert value >= 0 and text.strip().upper().startswith("RESUME")


def test_garbage_and_overlong_lines_get_an_error_and_the_server_lives_on(
    factory: sessionmaker[Session], tenant: Tenant
) -> None:
    async def scenario() -> None:
        feed = CdrFeed(factory, poll_s=0.2, resume_wait_s=2.0)
        await feed.start("127.0.0.1", 0)
        try:
            for junk in (b"\xff\xfe\x00RESUME\n", b"R" * 200_000 + b"\n", b"RESUME 99999999999999999999999\n"):
                reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
                conn.write(junk)
                reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
                conn.close()
                assert reply.startswith(b"ERR ")
            writer = Writer(factory, tenant, feed)
            await asyncio.to_thread(writer.write, 1)
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"RESUME 0\n")
            assert await read_ids(reader, 1) == writer.ids
            conn.close()
        finally:
            await feed.stop()

    asyncio.run(scenario())


# --- mutual TLS and the connection limit ------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA with a server certificate (IP 127.0.0.1) and a client certificate, plus a stranger CA's client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    **kw: Any,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if kw.get("ip"):
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(kw["ip"])]), critical=False)
    if kw.get("usage"):
        builder = builder.add_extension(x509.ExtendedKeyUsage([kw["usage"]]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = _key(), _key()
    ca = _cert("billing CA", ca_key, None)
    rogue_ca = _cert("billing CA", rogue_ca_key, None)  # same name, another key: must not pass
    server_key, client_key, rogue_key = _key(), _key(), _key()
    server = _cert(
        "bridge feed", server_key, (ca.subject, ca_key), ip=ipaddress.ip_address("127.0.0.1"),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )  # fmt: skip
    client = _cert("billing-1", client_key, (ca.subject, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue = _cert("billing-1", rogue_key, (rogue_ca.subject, rogue_ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca=_write(out / "ca.pem", ca),
        server_cert=_write(out / "server.pem", server, server_key),
        server_key=out / "server.key",
        client_cert=_write(out / "client.pem", client, client_key),
        client_key=out / "client.key",
        rogue_cert=_write(out / "rogue.pem", rogue, rogue_key),
        rogue_key=out / "rogue.key",
    )


def _tls_config(pki: Pki, **cdr: Any) -> Config:
    return from_dict(
        {
            "cdr": {
                "feed_listen": "0.0.0.0:8282",  # non-loopback is allowed with mutual TLS (the test binds loopback)
                "feed_tls_cert": str(pki.server_cert),
                "feed_tls_key": str(pki.server_key),
                "feed_client_ca": str(pki.ca),
                **cdr,
            }
        }
    )


def _client_context(pki: Pki, cert: Path | None, key: Path | None, **kw: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    if kw.get("tls12"):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def _refused(port: int, context: ssl.SSLContext) -> BaseException | bytes:
    """Connect, ask for everything; returns the exception that stopped us, or what the server sent."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"RESUME 0\n")
                received = b""
                while chunk := tls.recv(4096):  # TLS 1.3: the server's verdict on our cert comes after the handshake
                    received += chunk
                return received
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return exc


def test_tls_feed_streams_only_to_a_client_certificate_from_the_configured_ca(
    factory: sessionmaker[Session], tenant: Tenant, pki: Pki
) -> None:
    async def scenario() -> None:
        feed = CdrFeed.from_config(_tls_config(pki), factory, poll_s=0.2, resume_wait_s=0.3)
        await feed.start("127.0.0.1", 0)
        writer = Writer(factory, tenant, feed)
        await asyncio.to_thread(writer.write, 3)
        try:
            for context in (
                _client_context(pki, None, None),  # no certificate
                _client_context(pki, None, None, tls12=True),  # ... refused in the handshake itself on TLS 1.2
                _client_context(pki, pki.rogue_cert, pki.rogue_key),  # a certificate from another CA
                _client_context(pki, pki.rogue_cert, pki.rogue_key, tls12=True),
            ):
                result = await asyncio.to_thread(_refused, feed.port, context)
                assert isinstance(result, BaseException) or result == b"", result
            with socket.create_connection(("127.0.0.1", feed.port), timeout=TIMEOUT) as raw:
                with pytest.raises(ssl.SSLError):  # plain TCP to a TLS feed gets nothing
                    await asyncio.to_thread(_client_context(pki, None, None).wrap_socket, raw, server_hostname="x")

            good = _client_context(pki, pki.client_cert, pki.client_key)
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port, ssl=good, server_hostname="127.0.0.1")
            conn.write(b"RESUME 0\n")
            assert await read_ids(reader, 3) == writer.ids
            await asyncio.to_thread(writer.write, 1)  # and live ones after that
            assert await read_ids(reader, 1) == writer.ids[-1:]
            conn.close()
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_tls_feed_with_openssl_s_client(factory: sessionmaker[Session], tenant: Tenant, pki: Pki) -> None:
    """An independent TLS peer: OpenSSL's s_client with and without the billing system's certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing: apt-get install openssl")

    def s_client(port: int, *cert: Path) -> subprocess.Popen[bytes]:
        key = ["-cert", str(cert[0]), "-key", str(cert[1])] if cert else []
        command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca), "-quiet", *key]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def refused(port: int, *cert: Path) -> bytes:
        # -quiet implies -ign_eof: s_client reads on after stdin ends, until the feed closes the connection
        # (it sees the server's alert, or a reset when the alert races our RESUME: either way no data)
        out, _ = s_client(port, *cert).communicate(b"RESUME 0\n", timeout=TIMEOUT)
        return out

    def streamed(port: int, count: int) -> list[int]:
        proc = s_client(port, pki.client_cert, pki.client_key)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"RESUME 0\n")
        proc.stdin.flush()
        try:
            return [int(proc.stdout.readline().split(b",", 1)[0]) for _ in range(count)]
        finally:
            proc.kill()  # a good client is streamed to for ever
            proc.communicate(timeout=TIMEOUT)

    async def scenario() -> None:
        feed = CdrFeed.from_config(_tls_config(pki), factory, poll_s=0.2, resume_wait_s=0.3)
        await feed.start("127.0.0.1", 0)
        writer = Writer(factory, tenant, feed)
        await asyncio.to_thread(writer.write, 2)
        try:
            assert await asyncio.to_thread(refused, feed.port) == b""
            assert await asyncio.to_thread(refused, feed.port, pki.rogue_cert, pki.rogue_key) == b""
            assert await asyncio.to_thread(streamed, feed.port, 2) == writer.ids
        finally:
            await feed.stop()

    asyncio.run(scenario())


def test_unreadable_tls_files_are_a_config_error_naming_the_key(
    factory: sessionmaker[Session], pki: Pki, tmp_path: Path
) -> None:
    for key in ("feed_tls_cert", "feed_tls_key", "feed_client_ca"):
        with pytest.raises(ConfigError, match=f"^cdr.{key}: "):
            CdrFeed.from_config(_tls_config(pki, **{key: str(tmp_path / "missing.pem")}), factory)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="^cdr.feed_client_ca: "):
        CdrFeed.from_config(_tls_config(pki, feed_client_ca=str(garbage)), factory)
    with pytest.raises(ConfigError, match="^cdr.feed_tls_cert: .* not a usable pair"):
        CdrFeed.from_config(_tls_config(pki, feed_tls_key=str(pki.client_key)), factory)  # another cert's key


def test_connections_beyond_the_limit_get_one_error_line_and_are_closed(
    factory: sessionmaker[Session], tenant: Tenant
) -> None:
    async def admitted(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        reader, conn = await asyncio.open_connection("127.0.0.1", port)
        conn.write(b"RESUME 0\n")
        return reader, conn, await asyncio.wait_for(reader.readline(), TIMEOUT)

    async def scenario() -> None:
        config = from_dict({"cdr": {"feed_max_clients": 2}})
        feed = CdrFeed.from_config(config, factory, poll_s=0.05, resume_wait_s=0.3)
        await feed.start("127.0.0.1", 0)
        writer = Writer(factory, tenant, feed)
        await asyncio.to_thread(writer.write, 1)
        try:
            first = await admitted(feed.port)
            second = await admitted(feed.port)
            assert not first[2].startswith(b"ERR") and not second[2].startswith(b"ERR")
            reader, conn, line = await admitted(feed.port)
            assert line == b"ERR too many connections (limit 2)\n"
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # and closed
            conn.close()

            first[1].close()  # a slot frees up once the feed sees the client gone
            for _ in range(200):
                reader, conn, line = await admitted(feed.port)
                conn.close()
                if not line.startswith(b"ERR"):
                    break
                await asyncio.sleep(0.05)
            assert int(line.split(b",", 1)[0]) == writer.ids[0]
            second[1].close()
        finally:
            await feed.stop()

    asyncio.run(scenario())
