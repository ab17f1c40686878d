"""``bridge doctor`` against real listeners on loopback: an SMSC (TCP), a trunk gateway answering SIP OPTIONS
(a UDP responder) and one that never answers, a CDR target (TCP), a port already taken, TLS files valid and
expiring soon; one line per check and the exit status."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.cli import main
from bridge.db.session import upgrade


def _tcp_listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


class SipResponder:
    """Answers every OPTIONS with 200 OK, echoing Via/From/To/Call-ID/CSeq (RFC 3261 §11.2)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            text = data.decode()
            self.requests.append(text)
            echoed = ("Via", "From", "To", "Call-ID", "CSeq")
            headers = [line for line in text.split("\r\n") if line.split(":")[0] in echoed]
            reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(headers) + "\r\nContent-Length: 0\r\n\r\n"
            self.sock.sendto(reply.encode(), peer)

    def close(self) -> None:
        self.sock.close()


def _certificate(path: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def peers() -> Iterator[dict[str, Any]]:
    smsc, target, busy = _tcp_listener(), _tcp_listener(), _tcp_listener()
    gateway = SipResponder()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    yield {"smsc": smsc.getsockname()[1], "target": target.getsockname()[1], "busy": busy.getsockname()[1],
           "gateway": gateway, "silent": silent.getsockname()[1]}  # fmt: skip
    for sock in (smsc, target, busy, silent):
        sock.close()
    gateway.close()


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(tmp_path: Path, peers: dict[str, Any], *, control: int, extra: str = "") -> Path:
    config = tmp_path / "etc" / "bridge.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"""
[node]
data_dir = "{tmp_path / 'var'}"
[smpp]
port = {peers['smsc']}
[sip]
listen = "127.0.0.1:{_free()}"
[[trunk_group]]
name = "main"
gateways = ["127.0.0.1:{peers['gateway'].port}"]
[web]
listen = "127.0.0.1:{_free()}"
tls_cert = "{tmp_path / 'web.crt'}"
tls_key = "{tmp_path / 'web.key'}"
[control]
listen = "127.0.0.1:{control}"
[cdr]
feed_listen = ""
[[cdr.targets]]
name = "billing"
kind = "ftp"
port = {peers['target']}
{extra}""")
    return config


def test_a_ready_node_is_all_ok(tmp_path: Path, peers: dict[str, Any]) -> None:
    _certificate(tmp_path / "web.crt", days=365)
    config = _write_config(tmp_path, peers, control=_free())
    upgrade(f"sqlite:///{tmp_path / 'var' / 'bridge.db'}")
    result = CliRunner().invoke(main, ["--config", str(config), "doctor", "--timeout", "2"])
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert all(line.startswith("OK ") for line in lines), result.output
    names = [line[5:].split(": ", 1)[0] for line in lines]
    assert names[:5] == ["config", "port sip.listen", "port control.listen", "port web.listen", "database"]
    assert "smsc" in names and f"trunk main 127.0.0.1:{peers['gateway'].port}" in names
    assert "cdr target billing" in names and "tls web.tls_cert" in names and "ha peer" in names
    assert any("OPTIONS answered: SIP/2.0 200 OK" in line for line in lines)
    assert peers["gateway"].requests[0].startswith(f"OPTIONS sip:127.0.0.1:{peers['gateway'].port} SIP/2.0\r\n")


def test_failures_and_warnings_each_on_their_line_and_the_exit_status(tmp_path: Path, peers: dict[str, Any]) -> None:
    _certificate(tmp_path / "web.crt", days=10)
    extra = f'[[trunk_group]]\nname = "dead"\ngateways = ["127.0.0.1:{peers["silent"]}"]\n'
    config = _write_config(tmp_path, peers, control=peers["busy"], extra=extra)  # the control port is taken
    result = CliRunner().invoke(main, ["--config", str(config), "doctor", "--timeout", "0.5"])
    assert result.exit_code == 2, result.output
    by_name = {line[5:].split(": ", 1)[0]: line for line in result.output.splitlines()}
    assert by_name["port control.listen"].startswith("FAIL") and "already running" in by_name["port control.listen"]
    assert by_name["database"].startswith("FAIL") and "bridge db upgrade" in by_name["database"]
    assert by_name[f"trunk dead 127.0.0.1:{peers['silent']}"].startswith("FAIL")
    assert by_name[f"trunk main 127.0.0.1:{peers['gateway'].port}"].startswith("OK")
    assert by_name["tls web.tls_cert"].startswith("WARN") and "in 9 days" in by_name["tls web.tls_cert"]


def test_only_warnings_exit_1_and_a_bad_config_is_one_fail_line(tmp_path: Path, peers: dict[str, Any]) -> None:
    _certificate(tmp_path / "web.crt", days=20)
    config = _write_config(tmp_path, peers, control=_free())
    upgrade(f"sqlite:///{tmp_path / 'var' / 'bridge.db'}")
    result = CliRunner().invoke(main, ["--config", str(config), "doctor"])
    assert result.exit_code == 1, result.output
    config.write_text("[sip]\nrtp_ports = 'x'\n")
    result = CliRunner().invoke(main, ["--config", str(config), "doctor"])
    assert result.exit_code == 2 and result.output == "FAIL config: sip.rtp_ports: expected 'low-high', got 'x'\n"
