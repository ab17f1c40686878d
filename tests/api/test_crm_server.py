"""The mutual-TLS listener on loopback with a real HTTPS client (requests): who gets in, who fails the handshake."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import tests.api.crm_docs as docs
from bridge.api.ca import CaError, ca_init, issue_client_cert
from bridge.api.server import make_server
from bridge.config import Config
from tests.api.crm_fixtures import NOW
from web.crm import create_crm_app


@dataclasses.dataclass
class Lab:
    url: str
    ca: Path
    good: tuple[str, str]
    other_ca: tuple[str, str]
    expired: tuple[str, str]
    not_allowed: tuple[str, str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pair(paths: tuple[Path, Path]) -> tuple[str, str]:
    return str(paths[0]), str(paths[1])


@pytest.fixture
def lab(tmp_path: Path, config: Config, db_url: str) -> Iterator[Lab]:
    ca_dir = config.data_path / "api-ca"
    files = ca_init(ca_dir, NOW)
    clients = tmp_path / "clients"
    good = issue_client_cert(ca_dir, "crm-1", clients, NOW)
    not_allowed = issue_client_cert(ca_dir, "crm-2", clients, NOW)
    expired = issue_client_cert(ca_dir, "crm-old", clients, NOW - dt.timedelta(days=30), days=1)
    ca_init(tmp_path / "other-ca", NOW)
    other = issue_client_cert(tmp_path / "other-ca", "crm-1", tmp_path / "other-clients", NOW)
    listen = f"127.0.0.1:{free_port()}"
    api = dataclasses.replace(config.api, listen=listen, allowed_subjects=["crm-1"], handshake_timeout_s=5.0)
    config = dataclasses.replace(config, api=api)
    server = make_server(config, create_crm_app({"BRIDGE": config, "DATABASE_URL": db_url}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Lab(
            url=f"https://127.0.0.1:{server.server_port}/crm", ca=files.ca_cert, good=pair(good),
            other_ca=pair(other), expired=pair(expired), not_allowed=pair(not_allowed),
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_client_with_a_certificate_from_the_ca_is_served_on_one_connection(lab: Lab) -> None:
    with requests.Session() as http:
        http.trust_env = False  # REQUESTS_CA_BUNDLE would override the session's verify
        http.verify, http.cert = str(lab.ca), lab.good
        first = http.post(lab.url, data=docs.create_company("tls-1", "Acme"), timeout=10)
        second = http.post(lab.url, data=docs.create_company("tls-1", "Acme"), timeout=10)  # keep-alive, repeat
    assert first.status_code == 200 and b"<ack" in first.content
    assert second.content == first.content


@pytest.mark.parametrize("who", ["none", "other_ca", "expired", "not_allowed"])
def test_other_clients_are_refused_before_any_http(lab: Lab, who: str) -> None:
    cert = None if who == "none" else getattr(lab, who)
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.post(lab.url, data=docs.create_company("tls-2", "Evil"), verify=str(lab.ca), cert=cert, timeout=10)


def test_the_ca_is_never_overwritten(tmp_path: Path) -> None:
    ca_init(tmp_path / "ca", NOW)
    with pytest.raises(CaError):
        ca_init(tmp_path / "ca", NOW)
    with pytest.raises(CaError):
        issue_client_cert(tmp_path / "ca", "../escape", tmp_path, NOW)
