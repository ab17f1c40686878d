"""A throw-away Kamailio for the integration tests and bench/sip_calls.py: the shipped etc/kamailio/ config,
run as a plain foreground process of the test on free loopback ports, with its own config and runtime dir.

The shipped kamailio.cfg imports an optional ``kamailio-local.cfg`` for site values; the test writes one with
its ports and paths (the template itself is copied unchanged), plus dispatcher.list (the bridge under test),
address.list (127.0.0.1 as a trunk, so SIPp is exempt from the flood guard) and a test CA and server
certificate made with ``cryptography``. A missing ``kamailio`` binary makes the caller fail, never skip.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.integration.rtp_peers import free_udp_port

HOST = "127.0.0.1"
ETC = Path(__file__).resolve().parents[2] / "etc" / "kamailio"


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on HOST (Kamailio's public side listens on both)."""
    for _ in range(200):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def make_test_ca(directory: Path) -> Path:
    """A test CA and a server certificate for 127.0.0.1 in ``directory``: ca.pem, server.pem, server.key.
    Returns the CA file (what a TLS client is told to trust)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        # the IP as an iPAddress and also as a dNSName: linphone's mbedTLS matches the host it dialled against
        # dNSName entries only (and ignores the CN once there is a SAN), so without it the check fails
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName(HOST)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


class Kamailio:
    """Kamailio in front of one bridge node at ``bridge_port`` (UDP on HOST). ``double_rr=False`` runs the
    rr module with ``enable_double_rr=0``: the bridge then sees a single Record-Route that names the caller's
    transport. ``registrar=True`` defines WITH_REGISTRAR: phones may REGISTER, and calls from the bridge go to
    the registered phone. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self, workdir: Path, *, bridge_port: int, double_rr: bool = True, children: int = 4, registrar: bool = False
    ) -> None:
        self.dir = workdir
        self.registrar = registrar
        self.bridge_port = bridge_port
        self.double_rr = double_rr
        self.children = children
        self.sip_port = free_udp_tcp_port()
        self.tls_port = free_tcp_port()
        self.internal_port = free_udp_port()
        self.ca: Path | None = None
        # a short path of its own (a unix socket path has at most 107 bytes; pytest's tmp dirs can be long)
        self.ctl_path = Path(f"/tmp/kamctl-{uuid.uuid4().hex[:12]}.sock")
        self.ctl_socket = f"unix:{self.ctl_path}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def internal(self) -> str:
        """The address the bridge sees the proxy at (its ``[[trunk_group]]`` gateway)."""
        return f"{HOST}:{self.internal_port}"

    def port_for(self, transport: str) -> int:
        return self.tls_port if transport == "tls" else self.sip_port

    def write_config(self) -> Path:
        cfg = self.dir / "etc"
        cfg.mkdir(parents=True, exist_ok=True)
        shutil.copy(ETC / "kamailio.cfg", cfg / "kamailio.cfg")
        # The shipped client profile trusts the system CAs (TLS trunks); the test's only trusts its own CA, which
        # is also much quicker to load than the whole system bundle.
        tls = (ETC / "tls.cfg").read_text().replace("/etc/ssl/certs/ca-certificates.crt", "tls/ca.pem")
        (cfg / "tls.cfg").write_text(tls)
        self.ca = make_test_ca(cfg / "tls")
        (cfg / "kamailio-local.cfg").write_text(
            "\n".join(
                [
                    f'#!substdef "!PUBLIC_IP!{HOST}!g"',
                    f'#!substdef "!SIP_PORT!{self.sip_port}!g"',
                    f'#!substdef "!TLS_PORT!{self.tls_port}!g"',
                    f'#!substdef "!INTERNAL_IP!{HOST}!g"',
                    f'#!substdef "!INTERNAL_PORT!{self.internal_port}!g"',
                    f'#!substdef "!CFG_DIR!{cfg}!g"',
                    f'#!substdef "!CTL_SOCKET!{self.ctl_socket}!g"',
                    f"#!define DOUBLE_RR {1 if self.double_rr else 0}",
                    f"#!define CHILDREN {self.children}",
                    *(["#!define WITH_REGISTRAR"] if self.registrar else []),
                    "",
                ]
            )
        )
        (cfg / "dispatcher.list").write_text(f"1 sip:{HOST}:{self.bridge_port} 0 0 duid=bridge-test\n")
        (cfg / "address.list").write_text(f"1 {HOST} 32 0 test-trunks\n")
        return cfg / "kamailio.cfg"

    def start(self, timeout: float = 30.0) -> Kamailio:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(binary).exists():
            raise FileNotFoundError("kamailio is not installed: run tests/peers/install.sh")
        cfg = self.write_config()
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        self.log_path = self.dir / "kamailio.log"
        self.proc = subprocess.Popen(
            [binary, "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-P", str(run / "kamailio.pid"),
             "-w", str(self.dir), "-m", "64", "-M", "8", "-a", "no"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log_path, "wb"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals only this Kamailio and its children
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers_options():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kamailio did not come up:\n{self.log()}")
            time.sleep(0.1)
        return self

    def answers_options(self) -> bool:
        """One OPTIONS to the public UDP side; True on 200."""
        branch = "z9hG4bK" + uuid.uuid4().hex
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            s.settimeout(0.3)
            port = s.getsockname()[1]
            msg = (
                f"OPTIONS sip:{HOST}:{self.sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{port};branch={branch}\r\n"
                f"From: <sip:probe@{HOST}>;tag=1\r\nTo: <sip:{HOST}:{self.sip_port}>\r\nCall-ID: {branch}\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                s.sendto(msg.encode(), (HOST, self.sip_port))
                return s.recv(4096).startswith(b"SIP/2.0 200 ")
            except OSError:
                return False

    def kamcmd(self, *command: str) -> str:
        """Run ``kamcmd`` against this Kamailio's ctl socket; its output. Raises on a failed command (kamcmd
        exits 0 on an RPC error and prints ``error: <code> - <reason>``)."""
        binary = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        done = subprocess.run([binary, "-s", self.ctl_socket, *command], capture_output=True, text=True, timeout=10)
        if done.returncode != 0 or done.stdout.startswith("error:"):
            raise RuntimeError(f"kamcmd {' '.join(command)}: {done.returncode} {done.stdout}{done.stderr}")
        return done.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if hasattr(self, "log_path") else ""

    def stop(self) -> None:
        import os
        import signal

        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this class created (start_new_session)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.ctl_path.unlink(missing_ok=True)

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
