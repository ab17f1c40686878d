"""``bridge doctor``: is this node ready to run? One line per check, ``OK``/``WARN``/``FAIL``, and an exit status
for scripts (0 all OK, 1 a warning, 2 a failure; the Nagios convention).

Checks: the config (loaded and valid), every port ``bridge run`` will bind is free, the database is at the head
migration, the SMSC accepts a TCP connection, every trunk gateway answers a SIP OPTIONS, every CDR target accepts
a TCP connection, the HA peer answers (when configured), the TLS files are readable and not expiring within 30
days, and the data directory's disk. Probes talk to the real peers with short timeouts; nothing is changed.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.config import Config, parse_host_port
from bridge.ops.readings import disk_usage

EXPIRY_WARNING = dt.timedelta(days=30)
DEFAULT_PORTS = {"sftp": 22, "rsync": 22, "ftp": 21, "ftps": 21}


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Check:
    level: Level
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.level.name:<4} {self.name}: {self.detail}"


def exit_status(checks: Iterable[Check]) -> int:
    return int(max((c.level for c in checks), default=Level.OK))


# --- ports ---------------------------------------------------------------------------------------------


def listeners(config: Config) -> list[tuple[str, str, str]]:
    """``(key, "tcp"|"udp", "host:port")`` of everything ``bridge run`` binds with this config."""
    out = [("control.listen", "tcp", config.control.listen)]
    if config.sip.enabled:
        out.insert(0, ("sip.listen", "udp", config.sip.listen))
    if config.cdr.feed_listen:
        out.append(("cdr.feed_listen", "tcp", config.cdr.feed_listen))
    if config.web.enabled:
        out.append(("web.listen", "tcp", config.web.listen))
    if config.metrics.listen:
        out.append(("metrics.listen", "tcp", config.metrics.listen))
    api = getattr(config, "api", None)
    if api is not None and getattr(api, "enabled", False):
        out.append(("api.listen", "tcp", api.listen))
    return out


def check_port(key: str, kind: str, address: str) -> Check:
    host, port = parse_host_port(address, key)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        sock.bind((host, port))
    except OSError as exc:
        return Check(Level.FAIL, f"port {key}", f"{kind} {address} cannot be bound: {exc.strerror or exc} "
                                                "(is the engine already running?)")  # fmt: skip
    finally:
        sock.close()
    return Check(Level.OK, f"port {key}", f"{kind} {address} free")


# --- database ------------------------------------------------------------------------------------------


def check_database(url: str) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from bridge.db.session import alembic_config, make_engine

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except Exception as exc:
        return Check(Level.FAIL, "database", f"cannot connect: {exc}")
    finally:
        engine.dispose()
    if not current:
        return Check(Level.FAIL, "database", "no schema: run `bridge db upgrade`")
    if current != heads:
        return Check(Level.FAIL, "database", f"at {', '.join(sorted(current))}, head is {', '.join(sorted(heads))}: "
                                             "run `bridge db upgrade`")  # fmt: skip
    return Check(Level.OK, "database", f"at the head migration ({', '.join(sorted(heads))})")


# --- peers ---------------------------------------------------------------------------------------------


def tcp_answers(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens, else the error."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def sip_options(host: str, port: int, timeout: float) -> str:
    """Send one OPTIONS over UDP; returns the status line of the response (raises TimeoutError / OSError)."""
    call_id = secrets.token_hex(8)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))  # the local address the route gives, and only the gateway's answers
        where, local_port = sock.getsockname()[:2]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {where}:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:doctor@{where}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: {call_id}@bridge-doctor\r\nCSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:doctor@{where}:{local_port}>\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
        )
        deadline = time.monotonic() + timeout
        sock.send(request.encode())
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65535)
            if call_id.encode() in data and data.startswith(b"SIP/2.0 "):
                return data.split(b"\r\n", 1)[0].decode(errors="replace")
        raise TimeoutError("no response")


def check_peers(config: Config, timeout: float) -> Iterator[Check]:
    if config.smpp.enabled:
        error = tcp_answers(config.smpp.host, config.smpp.port, timeout)
        where = f"{config.smpp.host}:{config.smpp.port}"
        yield Check(Level.FAIL, "smsc", f"{where}: {error}") if error else Check(Level.OK, "smsc", f"{where} answers")
    else:
        yield Check(Level.OK, "smsc", "SMPP disabled")
    for group in config.trunk_group:
        for gateway in group.gateways:
            host, port = parse_host_port(gateway, "gateway")
            name = f"trunk {group.name} {gateway}"
            try:
                yield Check(Level.OK, name, f"OPTIONS answered: {sip_options(host, port, timeout)}")
            except (TimeoutError, OSError) as exc:
                yield Check(Level.FAIL, name, f"no answer to OPTIONS ({exc})")
    for target in config.cdr.targets:
        port = target.port or DEFAULT_PORTS[target.kind]
        error = tcp_answers(target.host, port, timeout)
        name = f"cdr target {target.name}"
        where = f"{target.kind} {target.host}:{port}"
        yield Check(Level.FAIL, name, f"{where}: {error}") if error else Check(Level.OK, name, f"{where} answers")
    yield from _check_ha(config, timeout)


def _check_ha(config: Config, timeout: float) -> Iterator[Check]:
    ha = getattr(config, "ha", None)
    peer = getattr(ha, "peer", "") if ha is not None else ""
    if not peer:
        yield Check(Level.OK, "ha peer", "not configured (standalone node)")
        return
    host, port = parse_host_port(peer, "ha.peer")
    error = tcp_answers(host, port, timeout)
    yield Check(Level.FAIL, "ha peer", f"{peer}: {error}") if error else Check(Level.OK, "ha peer", f"{peer} answers")


# --- TLS -----------------------------------------------------------------------------------------------


def tls_files(config: Config) -> list[tuple[str, Path]]:
    """Certificates the node presents or trusts; the portal's generated one when no ``web.tls_cert`` is set."""
    out: list[tuple[str, Path]] = []
    candidates = [("web.tls_cert", config.web.tls_cert), ("cdr.feed_tls_cert", config.cdr.feed_tls_cert),
                  ("cdr.feed_client_ca", config.cdr.feed_client_ca)]  # fmt: skip
    api = getattr(config, "api", None)
    if api is not None and getattr(api, "enabled", False):
        candidates += [("api.tls_cert", getattr(api, "tls_cert", "")), ("api.client_ca", getattr(api, "client_ca", ""))]
    for key, value in candidates:
        if value:
            out.append((key, config.resolve(value)))
    if not config.web.tls_cert:
        out += [("web (generated)", path) for path in sorted((config.data_path / "tls").glob("*.crt"))]
    return out


def check_certificate(key: str, path: Path, now: dt.datetime) -> Check:
    from cryptography import x509

    try:
        data = path.read_bytes()
        certs = x509.load_pem_x509_certificates(data)
    except (OSError, ValueError) as exc:
        return Check(Level.FAIL, f"tls {key}", f"{path}: {exc}")
    expiry = min(cert.not_valid_after_utc for cert in certs)
    left = expiry - now
    when = f"{path} expires {expiry:%Y-%m-%d}"
    if left <= dt.timedelta(0):
        return Check(Level.FAIL, f"tls {key}", f"{when}: expired")
    if left < EXPIRY_WARNING:
        return Check(Level.WARN, f"tls {key}", f"{when}: in {left.days} days")
    return Check(Level.OK, f"tls {key}", f"{when} ({left.days} days)")


# --- all -----------------------------------------------------------------------------------------------


def run_checks(config: Config, *, timeout: float = 2.0, now: Callable[[], dt.datetime] | None = None) -> list[Check]:
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    checks = [Check(Level.OK, "config", f"valid (node {config.node.name}, data_dir {config.data_path})")]
    checks += [check_port(key, kind, address) for key, kind, address in listeners(config)]
    checks.append(check_database(config.database_url))
    checks += list(check_peers(config, timeout))
    files = tls_files(config)
    checks += [check_certificate(key, path, clock()) for key, path in files]
    if not files:
        checks.append(Check(Level.OK, "tls", "no certificate yet (the portal generates one at first start)"))
    disk = disk_usage(config.data_path if config.data_path.exists() else Path(config.base_dir))
    if disk is not None:
        level = Level.WARN if disk.used_percent >= config.metrics.disk_alarm_percent else Level.OK
        checks.append(Check(level, "disk", f"{disk.path} {disk.used_percent:.1f}% used"))
    return checks
