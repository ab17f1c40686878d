"""A small certificate authority for the CRM API, for a lab or a first deployment (``bridge api ca-init``).

``ca_init`` makes, under one directory (``<data_dir>/api-ca`` by default): ``ca.crt`` / ``ca.key`` (P-256,
10 years), and ``server.crt`` / ``server.key`` for the API listener, issued by that CA for ``localhost``,
``127.0.0.1`` and the listen host. ``issue_client_cert`` issues one CRM terminal's certificate
(``clientAuth`` only, ``CN=<name>``). Private keys are written 0600 and never overwritten.

A production deployment would rather use the operator's own PKI: set ``api.client_ca`` to its CA and
``api.tls_cert`` / ``api.tls_key`` to a certificate its CRM trusts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 825
ORGANISATION = "bridge CRM API"


class CaError(Exception):
    """The CA directory is missing, incomplete, or would be overwritten."""


@dataclass(frozen=True)
class CaFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _load_ca(files: CaFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CaError(f"{files.directory}: no usable CA (run `bridge api ca-init`): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{files.ca_key}: not an EC key")
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    subject: x509.Name,
    *,
    not_before: dt.datetime,
    days: int,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _host_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host:
                names.append(x509.DNSName(host))
    return names


def ca_init(directory: Path, now: dt.datetime, *, hosts: list[str] | None = None) -> CaFiles:
    """A new CA and a server certificate in ``directory``; refuses to overwrite an existing CA."""
    files = CaFiles(directory)
    if files.ca_key.exists():
        raise CaError(f"{files.ca_key} exists: keep it (its client certificates depend on it) or remove it first")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name("bridge CRM API CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(files.ca_key, key)
    files.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    server, server_key = _issue(
        (cert, key), _name("bridge CRM API server"), not_before=now - dt.timedelta(minutes=5), days=CERT_DAYS,
        usage=ExtendedKeyUsageOID.SERVER_AUTH, names=_host_names(hosts or []),
    )  # fmt: skip
    files.server_key.unlink(missing_ok=True)
    _write_key(files.server_key, server_key)
    files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return files


def issue_client_cert(
    directory: Path,
    name: str,
    out_dir: Path,
    now: dt.datetime,
    *,
    days: int = CERT_DAYS,
) -> tuple[Path, Path]:
    """``<out_dir>/<name>.crt`` and ``.key``: a client certificate ``CN=<name>`` valid from ``now`` for ``days``."""
    if not name or any(c in name for c in '/\\,=+<>#;"\0') or name.startswith("."):
        raise CaError(f"{name!r}: a client name is letters, digits, '-', '_', '.' and spaces")
    cert, key = _issue(
        _load_ca(CaFiles(directory)), _name(name), not_before=now - dt.timedelta(minutes=5), days=days,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    if key_path.exists():
        raise CaError(f"{key_path} exists")
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def subject_of(der: bytes) -> tuple[str, str]:
    """(RFC 4514 subject, common name) of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = common[0].value if common else ""
    return cert.subject.rfc4514_string(), cn if isinstance(cn, str) else cn.decode(errors="replace")
