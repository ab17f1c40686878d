"""CDR delivery against real servers on loopback: OpenSSH sshd (rsync -e ssh, paramiko SFTP), pyftpdlib
(FTP) and aiosmtpd (the alert mail sink). Times are explicit (a fake clock); the servers are real.

sshd runs with its own config and host key, for a key-only local user (adapted from
``../shared/peers/ssh/sshd_fixture.py``); it needs root and /usr/sbin/sshd, and fails loudly without them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.delivery import CdrPusher
from bridge.cdr.health import AlertDown, AlertRecovered
from bridge.config import Config, from_dict
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Cdr, Company

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"
T0 = dt.datetime(2026, 3, 28, 0, 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, what: str, log: pathlib.Path | None = None) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    detail = log.read_text() if log and log.exists() else ""
    pytest.fail(f"{what} did not start on port {port}: {detail}")


# --- OpenSSH ------------------------------------------------------------------------------------------


class Sshd:
    """A throw-away sshd on 127.0.0.1:<free port>, key-only login for ``cdrpush``."""

    user = "cdrpush"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="cdr-sshd-"))
        self.client_key = self.dir / "client_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.wrong_known_hosts = self.dir / "wrong_known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sshd:
        if not os.path.exists(SSHD):
            pytest.fail(f"{SSHD} is missing: install openssh-server (make deps)")
        if os.geteuid() != 0:
            pytest.fail("the sshd peer needs root (it switches to the test user)")
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            # -p '*': no password but not locked ('!' makes sshd refuse the user with UsePAM no)
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-p", "*", self.user], check=True)
            pw = pwd.getpwnam(self.user)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for name in ("host_ed25519", "client_ed25519", "other_host_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / name)], check=True)
        keys = self.dir / "authorized_keys"
        keys.mkdir()
        shutil.copy(f"{self.client_key}.pub", keys / self.user)
        os.chmod(self.dir, 0o711)
        os.chmod(keys, 0o755)
        os.chmod(keys / self.user, 0o644)
        self.upload_dir = pathlib.Path(pw.pw_dir) / "incoming"
        self.upload_dir.mkdir(exist_ok=True)
        os.chown(self.upload_dir, pw.pw_uid, pw.pw_gid)
        for known, key in ((self.known_hosts, "host_ed25519"), (self.wrong_known_hosts, "other_host_ed25519")):
            public = (self.dir / f"{key}.pub").read_text().split()[:2]
            known.write_text(f"[127.0.0.1]:{self.port} {' '.join(public)}\n")
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.dir}/host_ed25519\n"
            f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {keys}/%u\nAllowUsers {self.user}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        )
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        log = self.dir / "sshd.log"
        with log.open("w") as err:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=err)
        wait_port(self.port, "sshd", log)
        return self

    def clear(self) -> None:
        for path in self.upload_dir.iterdir():
            path.unlink()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = Sshd().start()
    yield server
    server.stop()


# --- FTP ----------------------------------------------------------------------------------------------


class Ftpd:
    """pyftpdlib in a thread; can be stopped and started again on the same port (a server outage)."""

    def __init__(self, *, tls: bool = False) -> None:
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="cdr-ftp-"))
        (self.root / "incoming").mkdir()
        self.port = free_port()
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.tls = tls
        self.cert = self.root.parent / f"{self.root.name}-cert.pem"
        if tls:
            self.cert.write_bytes(self_signed_pem())

    def start(self) -> Ftpd:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user("cdr", "s3cret", str(self.root), perm="elradfmwMT")
        base: type[Any] = FTPHandler
        attributes: dict[str, Any] = {"authorizer": authorizer, "auth_failed_timeout": 0}
        if self.tls:
            from pyftpdlib.handlers import TLS_FTPHandler

            base = TLS_FTPHandler
            attributes.update(certfile=str(self.cert), tls_control_required=True, tls_data_required=True)
        handler = type("Handler", (base,), attributes)
        # its own IOLoop: the default is a process-wide singleton, and two servers in two threads on one
        # loop corrupt each other's sessions
        self.server = FTPServer(("127.0.0.1", self.port), handler, ioloop=IOLoop())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"timeout": 0.2, "blocking": True}, daemon=True
        )
        self.thread.start()
        wait_port(self.port, "ftpd")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close_all()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)


def self_signed_pem() -> bytes:
    """A key + self-signed certificate for 127.0.0.1 (the FTPS server's, and the client's trust anchor)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def ftpd() -> Iterator[Ftpd]:
    server = Ftpd().start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def ftpsd() -> Iterator[Ftpd]:
    server = Ftpd(tls=True).start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
    server.cert.unlink(missing_ok=True)


# --- SMTP ---------------------------------------------------------------------------------------------


class MailSink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[MailSink, int]]:
    from aiosmtpd.controller import Controller

    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


# --- the appliance side ---------------------------------------------------------------------------------


def make_config(tmp_path: pathlib.Path, targets: list[dict[str, Any]], smtp_port: int) -> Config:
    return from_dict(
        {
            "node": {"name": "nodeA", "data_dir": str(tmp_path / "data")},
            "cdr": {"alert_after_s": 7200, "retry_min_s": 60, "timeout_s": 5, "targets": targets},
            "alerts": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "recipients": ["noc@example.net"]},
        }
    )


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        s.add(Company(id=1, name="Acme", timezone="Europe/Paris"))
    yield factory
    engine.dispose()


def add_call(factory: sessionmaker[Session], hour: int, minute: int = 20) -> int:
    gone = T0.replace(hour=hour, minute=minute)
    with factory() as s, s.begin():
        cdr = Cdr(company_id=1, company_name="Acme", service_type="IC", direction="out", destination="+14445550001",
                  called_at=gone - dt.timedelta(minutes=5), joined_at=gone - dt.timedelta(minutes=4),
                  disconnected_at=gone, created_at=gone)  # fmt: skip
        s.add(cdr)
        s.flush()
        return cdr.id


def at(hour: int) -> dt.datetime:
    return T0.replace(hour=hour, minute=5)


def ssh_target(sshd: Sshd, kind: str, *, wrong_key: bool = False) -> dict[str, Any]:
    return {
        "name": kind,
        "kind": kind,
        "port": sshd.port,
        "user": sshd.user,
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.wrong_known_hosts if wrong_key else sshd.known_hosts),
        "path": "incoming",
    }


def wait_mail(sink: MailSink, count: int) -> list[str]:
    for _ in range(100):
        if len(sink.subjects()) >= count:
            break
        time.sleep(0.05)
    return sink.subjects()


@pytest.mark.parametrize("kind", ["rsync", "sftp", "ftp", "ftps"])
def test_file_arrives_with_exact_content_and_is_not_sent_again(
    kind: str,
    tmp_path: pathlib.Path,
    sshd: Sshd,
    ftpd: Ftpd,
    ftpsd: Ftpd,
    smtp: tuple[MailSink, int],
    factory: sessionmaker[Session],
) -> None:
    sshd.clear()
    if kind in ("ftp", "ftps"):
        server = ftpd if kind == "ftp" else ftpsd
        target = {"name": kind, "kind": kind, "port": server.port, "user": "cdr", "password": "s3cret",
                  "path": "incoming", "ca_file": str(server.cert) if kind == "ftps" else ""}  # fmt: skip
        remote = server.root / "incoming"
    else:
        target = ssh_target(sshd, kind)
        remote = sshd.upload_dir
    config = make_config(tmp_path, [target], smtp[1])
    call = add_call(factory, 10)
    pusher = CdrPusher(config, factory)
    report = pusher.run_hourly(at(11))
    assert report.delivered == [("nodeA_2026032810.csv", kind)], report.failures
    local = (config.data_path / "spool" / "cdr" / "nodeA_2026032810.csv").read_bytes()
    assert sorted(p.name for p in remote.iterdir()) == ["nodeA_2026032810.csv"]  # no temporary left behind
    assert (remote / "nodeA_2026032810.csv").read_bytes() == local
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(local.decode()))] == [call]

    (remote / "nodeA_2026032810.csv").unlink()  # a re-send would put it back
    again = CdrPusher(config, factory).run_hourly(at(11).replace(minute=40))  # a fresh process: ledger only
    assert again.delivered == [] and again.pending == 0
    assert list(remote.iterdir()) == []
    assert smtp[0].subjects() == []


def test_target_down_for_hours_gets_every_missing_hour_once_and_alerts(
    tmp_path: pathlib.Path, ftpd: Ftpd, smtp: tuple[MailSink, int], factory: sessionmaker[Session]
) -> None:
    sink, smtp_port = smtp
    target = {"name": "provider", "kind": "ftp", "port": ftpd.port, "user": "cdr", "password": "s3cret",
              "path": "incoming"}  # fmt: skip
    config = make_config(tmp_path, [target], smtp_port)
    pusher = CdrPusher(config, factory)
    assert pusher.run_hourly(at(8)).delivered == [("nodeA_2026032807.csv", "provider")]
    ftpd.stop()
    calls = {}
    for hour in range(9, 14):  # 09:05 ... 13:05, the server is down
        calls[hour - 1] = add_call(factory, hour - 1)
        report = pusher.run_hourly(at(hour))
        assert report.delivered == [] and report.failures
    assert report.pending == 5
    assert wait_mail(sink, 1) == ["[bridge nodeA] CDR target provider DOWN"]  # once, past alert_after_s

    ftpd.start()
    back = pusher.run_hourly(at(14))
    assert [name for name, _ in back.delivered] == [f"nodeA_20260328{h:02d}.csv" for h in range(8, 14)]
    assert any(isinstance(a, AlertRecovered) for a in back.alerts)
    assert wait_mail(sink, 2)[1] == "[bridge nodeA] CDR target provider recovered"
    incoming = ftpd.root / "incoming"
    for hour in range(8, 13):
        rows = list(csv.DictReader((incoming / f"nodeA_20260328{hour:02d}.csv").open()))
        assert [int(r["id"]) for r in rows] == [calls[hour]]
    assert pusher.retry(at(14).replace(minute=30)).delivered == []  # nothing twice
    assert len(list(incoming.iterdir())) == 7  # 07 .. 13, no temporaries
    body = sink.messages[0].get_payload()
    assert "provider" in str(body) and "2026-03-28 09:05:00" in str(body)


@pytest.mark.parametrize("kind", ["rsync", "sftp"])
def test_wrong_host_key_is_refused_alerted_and_nothing_sent(
    kind: str, tmp_path: pathlib.Path, sshd: Sshd, smtp: tuple[MailSink, int], factory: sessionmaker[Session]
) -> None:
    sshd.clear()
    sink, smtp_port = smtp
    config = make_config(tmp_path, [ssh_target(sshd, kind, wrong_key=True)], smtp_port)
    add_call(factory, 10)
    report = CdrPusher(config, factory).run_hourly(at(11))
    assert report.delivered == [] and report.pending == 1
    assert [type(a) for a in report.alerts] == [AlertDown]
    assert "host key" in report.failures[0][1]
    assert wait_mail(sink, 1) == [f"[bridge nodeA] CDR target {kind} DOWN"]
    assert list(sshd.upload_dir.iterdir()) == []


def test_ftps_refuses_a_server_certificate_it_cannot_verify(
    tmp_path: pathlib.Path, ftpsd: Ftpd, smtp: tuple[MailSink, int], factory: sessionmaker[Session]
) -> None:
    target = {
        "name": "ftps",
        "kind": "ftps",
        "port": ftpsd.port,
        "user": "cdr",
        "password": "s3cret",
        "path": "incoming",
    }  # fmt: skip  (no ca_file: the system CAs do not know our self-signed cert)
    report = CdrPusher(make_config(tmp_path, [target], smtp[1]), factory).run_hourly(at(11))
    assert report.delivered == [] and "CERTIFICATE_VERIFY_FAILED" in report.failures[0][1]
    assert list((ftpsd.root / "incoming").iterdir()) == []


def test_cli_push_now(tmp_path: pathlib.Path, db_url: str, ftpd: Ftpd, factory: sessionmaker[Session]) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[node]\nname = "nodeA"\ndata_dir = "{tmp_path / "data"}"\n[database]\nurl = "{db_url}"\n'
        f'[[cdr.targets]]\nname = "provider"\nkind = "ftp"\nport = {ftpd.port}\nuser = "cdr"\n'
        'password = "s3cret"\npath = "incoming"\n'
    )
    result = CliRunner().invoke(main, ["--config", str(config), "cdr", "push", "--now"])
    assert result.exit_code == 0, result.output
    names = [line.split()[1] for line in result.output.splitlines() if line.startswith("delivered ")]
    assert len(names) == 1 and (ftpd.root / "incoming" / names[0]).exists()
    assert "0 file(s) pending" in result.output


@pytest.mark.parametrize("kind", ["sftp", "rsync", "ftp"])
def test_late_and_refreshed_cdrs_reach_the_target_once_in_a_correction_file(
    kind: str,
    tmp_path: pathlib.Path,
    sshd: Sshd,
    ftpd: Ftpd,
    smtp: tuple[MailSink, int],
    factory: sessionmaker[Session],
) -> None:
    sshd.clear()
    if kind == "ftp":
        target = {"name": kind, "kind": kind, "port": ftpd.port, "user": "cdr", "password": "s3cret",
                  "path": "incoming"}  # fmt: skip
        remote = ftpd.root / "incoming"
    else:
        target = ssh_target(sshd, kind)
        remote = sshd.upload_dir
    config = make_config(tmp_path, [target], smtp[1])
    pusher = CdrPusher(config, factory)
    call = add_call(factory, 10)
    assert pusher.run_hourly(at(11)).delivered == [("nodeA_2026032810.csv", kind)]
    with factory() as s, s.begin():  # after the 10:00 file: the call's record is refreshed, a late one arrives
        cdr = s.get(Cdr, call)
        assert cdr is not None
        cdr.cause, cdr.updated_at = "refreshed", T0.replace(hour=11, minute=20)
        gone, written = T0.replace(hour=10, minute=59), T0.replace(hour=11, minute=30)
        late = Cdr(company_id=1, company_name="Acme", service_type="IC", direction="in", cause="late",
                   disconnected_at=gone, created_at=written)  # fmt: skip
        s.add(late)
        s.flush()
        late_id = late.id
    report = pusher.run_hourly(at(12))
    assert report.written == ["nodeA_2026032811.csv", "nodeA_2026032810_corr1.csv"]
    assert sorted(report.delivered) == [("nodeA_2026032810_corr1.csv", kind), ("nodeA_2026032811.csv", kind)]
    spool = config.data_path / "spool" / "cdr"
    correction = (remote / "nodeA_2026032810_corr1.csv").read_bytes()
    assert correction == (spool / "nodeA_2026032810_corr1.csv").read_bytes()
    rows = list(csv.DictReader(io.StringIO(correction.decode())))
    assert sorted((int(r["id"]), r["cause"]) for r in rows) == [(call, "refreshed"), (late_id, "late")]
    assert sorted(p.name for p in remote.iterdir()) == [
        "nodeA_2026032810.csv", "nodeA_2026032810_corr1.csv", "nodeA_2026032811.csv"
    ]  # fmt: skip
    for path in remote.iterdir():
        path.unlink()  # a re-send would put them back
    again = CdrPusher(config, factory).run_hourly(at(12).replace(minute=40))
    assert again.written == [] and again.delivered == [] and again.pending == 0
    assert list(remote.iterdir()) == []


def test_a_restart_neither_re_alerts_nor_forgets_an_outage(
    tmp_path: pathlib.Path, ftpd: Ftpd, smtp: tuple[MailSink, int], factory: sessionmaker[Session]
) -> None:
    sink, smtp_port = smtp
    target = {"name": "provider", "kind": "ftp", "port": ftpd.port, "user": "cdr", "password": "s3cret",
              "path": "incoming"}  # fmt: skip
    config = make_config(tmp_path, [target], smtp_port)
    assert CdrPusher(config, factory).run_hourly(at(8)).delivered == [("nodeA_2026032807.csv", "provider")]
    ftpd.stop()
    for hour in range(9, 14):  # every run in a new process (CdrPusher): the engine restarts each hour
        report = CdrPusher(config, factory).run_hourly(at(hour))
        assert report.delivered == [] and report.failures
    assert wait_mail(sink, 1) == ["[bridge nodeA] CDR target provider DOWN"]
    time.sleep(0.3)
    assert len(sink.subjects()) == 1  # the 12:05 and 13:05 processes knew it was already alerted
    ftpd.start()
    back = CdrPusher(config, factory).run_hourly(at(14))
    assert [name for name, _ in back.delivered] == [f"nodeA_20260328{h:02d}.csv" for h in range(8, 14)]
    assert wait_mail(sink, 2)[1] == "[bridge nodeA] CDR target provider recovered"
    assert "2026-03-28 09:05:00" in str(sink.messages[1].get_payload())  # since the first failure, before restarts
