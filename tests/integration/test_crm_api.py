"""The CRM XML API against a real `bridge run`: a CRM client (requests, client certificate) runs every operation;
the subscriber it creates texts a command over the SMSC simulator and signs in to the portal; clients without a
certificate, with another CA's or an expired one fail the handshake; malicious documents get the right negative
acknowledgement while the API process's memory stays flat.

One `bridge run` serves the whole module (starting one takes most of a test's time): the tests share no
state that one could leave for another -- transaction ids and names are their own, the handshake and
malicious-document tests create nothing -- and each checks afterwards that the engine and its API child
are still the ones it started with (a test that crashed them fails itself, not the next one)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import select

import tests.api.crm_docs as docs  # noqa: E402
from bridge.api.ca import ca_init, issue_client_cert
from bridge.db import make_engine, make_session_factory, upgrade
from bridge.db.models import Contact
from tests.integration.smpp_harness import SHORT_CODE, Smsc, free_port, wait_for

pytestmark = pytest.mark.integration
NS = {"c": docs.NS}
MOBILE = "+15551230071"
RSS_GROWTH_MAX_KB = 30_000
"""Ten 10 MB documents held in memory would add 100 MB; dropped chunk by chunk they add nothing."""


@dataclass
class Crm:
    url: str
    ca: str
    cert: tuple[str, str]
    others: dict[str, tuple[str, str] | None]
    portal: str
    data: Path
    db_url: str

    def post(self, document: bytes, http: requests.Session | None = None) -> Any:
        sender = http or requests
        response = sender.post(self.url, data=document, verify=self.ca, cert=self.cert, timeout=60)
        return response.status_code, etree.fromstring(response.content)


def _pair(paths: tuple[Path, Path]) -> tuple[str, str]:
    return str(paths[0]), str(paths[1])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _config(tmp_path: Path, smsc: Smsc, api_port: int, web_port: int) -> Path:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(
        f"""
[node]
name = "crm-test"
data_dir = "{tmp_path / "data"}"
[database]
url = "{url}"
[smpp]
port = {smsc.port}
password = "{smsc.password}"
short_codes = ["{SHORT_CODE}"]
reconnect_min_s = 0.2
[sip]
enabled = false
[dnis]
common = "+15550100"
pool = ["+15550101-+15550103"]
[web]
listen = "127.0.0.1:{web_port}"
[control]
listen = "127.0.0.1:{free_port()}"
[cdr]
push_enabled = false
feed_listen = ""
[api]
enabled = true
listen = "127.0.0.1:{api_port}"
allowed_subjects = ["crm-1", "crm-old"]
"""
    )
    return path


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crm]:
    tmp_path = tmp_path_factory.mktemp("crm")
    smsc = Smsc(tmp_path)
    smsc.start()
    now = _now()
    ca_dir = tmp_path / "data" / "api-ca"
    files = ca_init(ca_dir, now)
    clients = tmp_path / "clients"
    good = issue_client_cert(ca_dir, "crm-1", clients, now)
    expired = issue_client_cert(ca_dir, "crm-old", clients, now - dt.timedelta(days=10), days=1)
    ca_init(tmp_path / "rogue", now)
    rogue = issue_client_cert(tmp_path / "rogue", "crm-1", tmp_path / "rogue-clients", now)
    api_port, web_port = free_port(), free_port()
    config = _config(tmp_path, smsc, api_port, web_port)
    log = open(tmp_path / "bridge.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("bridge")), "--config", str(config), "run"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, BRIDGE_CONFIG=str(config)),
    )  # fmt: skip
    pair = _pair(good)
    state = Crm(
        url=f"https://127.0.0.1:{api_port}/crm", ca=str(files.ca_cert), cert=pair,
        others={"none": None, "other CA": _pair(rogue), "expired": _pair(expired)},
        portal=f"https://127.0.0.1:{web_port}", data=tmp_path / "data", db_url=f"sqlite:///{tmp_path / 'bridge.db'}",
    )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is None and smsc.bound() == 1, timeout=60, what="bridge run to bind SMPP")
        wait_for(lambda: _answers(state), timeout=60, what="the CRM API to answer")
        wait_for(lambda: _portal_answers(state), timeout=60, what="the portal to answer")  # a child of its own
        state.smsc = smsc  # type: ignore[attr-defined]
        state.proc = proc  # type: ignore[attr-defined]
        yield state
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        smsc.stop()
        print((tmp_path / "bridge.log").read_text()[-4000:])


@pytest.fixture(autouse=True)
def _same_bridge_after_each_test(crm: Crm) -> Iterator[None]:
    """The shared engine and API child survive every test (same pids): nothing restarted behind our back."""
    proc: subprocess.Popen[bytes] = crm.proc  # type: ignore[attr-defined]
    api_pid = (crm.data / "api.pid").read_text()
    yield
    assert proc.poll() is None, "bridge run died during the test"
    assert (crm.data / "api.pid").read_text() == api_pid and Path(f"/proc/{int(api_pid)}").exists()
    assert _answers(crm), "the CRM API stopped answering during the test"


def _answers(crm: Crm) -> bool:
    try:
        return requests.get(crm.url + ".xsd", verify=crm.ca, cert=crm.cert, timeout=5).status_code == 200
    except requests.exceptions.RequestException:
        return False


def _portal_answers(crm: Crm) -> bool:
    try:
        return requests.get(crm.portal + "/login", verify=False, timeout=5).status_code == 200
    except requests.exceptions.RequestException:
        return False


def _sign_in(crm: Crm, username: str, password: str) -> int:
    with requests.Session() as http:
        http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        http.verify = False  # the portal's self-signed certificate
        page = http.get(crm.portal + "/login", timeout=30).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', page
        )
        assert token is not None, page[:500]
        answer = http.post(
            crm.portal + "/login", data={"csrf_token": token.group(1), "username": username, "password": password},
            headers={"Referer": crm.portal + "/login"}, allow_redirects=False, timeout=30,  # Flask-WTF: same origin
        )  # fmt: skip
        return answer.status_code


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_every_operation_then_sms_and_portal(crm: Crm) -> None:
    with requests.Session() as http:  # keep-alive: the whole conversation on one TLS connection
        http.trust_env = False
        status, doc = crm.post(docs.create_company("it-1", "Acme"), http)
        assert status == 200, etree.tostring(doc)
        company_id = int(doc.find("c:ack/c:company", NS).get("id"))
        assert crm.post(docs.modify_company("it-2", company_id, "Acme Mobile"), http)[0] == 200
        create = docs.create_subscriber(
            "it-3", company="Acme Mobile", name="Ann", mobile=MOBILE, username="ann", password="secret-password",
            email="ann@example.com", prepaid=True, balance="10.00",
        )  # fmt: skip
        status, doc = crm.post(create, http)
        assert status == 200, etree.tostring(doc)
        assert crm.post(create, http)[1].findtext("c:ack/c:subscriber/c:name", namespaces=NS) == "Ann"  # repeat
        ack = doc.find("c:ack/c:subscriber", NS)
        sid = int(ack.get("id"))
        assert ack.findtext("c:portalLogin", namespaces=NS) == "ann"
        assert ack.findtext("c:shortCode", namespaces=NS) == SHORT_CODE
        assert [d.text for d in ack.findall("c:dialIn/c:dnis", NS)] == ["+15550101", "+15550102", "+15550103"]
        modified = crm.post(docs.modify_subscriber("it-4", sid, email="ann@acme.example"), http)[1]
        assert modified.findtext("c:ack/c:subscriber/c:email", namespaces=NS) == "ann@acme.example"
        for transaction, operation in (("it-5", "suspendSubscriber"), ("it-6", "resumeSubscriber")):
            assert crm.post(docs.by_id(transaction, operation, sid), http)[0] == 200
        assert (
            crm.post(docs.by_id("it-7", "querySubscriber", sid), http)[1].find("c:ack/c:subscriber", NS).get("status")
            == "active"
        )

    smsc: Smsc = crm.smsc  # type: ignore[attr-defined]
    assert smsc.mo("UC gus +15551230081 Gus.Grey", source=MOBILE)["status"] == [0]
    wait_for(lambda: smsc.messages(to=MOBILE), timeout=30, what="the bridge's reply to the new subscriber")
    engine = make_engine(crm.db_url)
    with make_session_factory(engine)() as session:
        assert session.scalar(select(Contact.phone).where(Contact.subscriber_id == sid)) == "+15551230081"
    engine.dispose()
    assert _sign_in(crm, "ann", "secret-password") == 302

    assert crm.post(docs.by_id("it-8", "deleteSubscriber", sid))[0] == 200
    status, doc = crm.post(docs.by_id("it-9", "querySubscriber", sid))
    assert (status, doc.find("c:nack", NS).get("code")) == (422, "UNKNOWN")
    assert _sign_in(crm, "ann", "secret-password") == 401


@pytest.mark.parametrize("who", ["none", "other CA", "expired"])
def test_clients_without_a_valid_certificate_fail_the_handshake(crm: Crm, who: str) -> None:
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.post(crm.url, data=docs.create_company("x-1", "Evil"), verify=crm.ca, cert=crm.others[who], timeout=30)


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def test_malicious_documents_get_nacks_and_memory_stays_flat(crm: Crm) -> None:
    cases = [
        (docs.XXE, "DTD_FORBIDDEN"),
        (docs.BILLION_LAUGHS, "DTD_FORBIDDEN"),
        (docs.oversized(10 * 1024 * 1024), "TOO_LARGE"),
        (docs.WRONG_NAMESPACE, "WRONG_NAMESPACE"),
        (docs.SCHEMA_VIOLATION, "SCHEMA"),
        (docs.MALFORMED, "MALFORMED"),
    ]
    pid = int((crm.data / "api.pid").read_text())
    for document, code in cases:  # once to warm up, then measure
        _status, doc = crm.post(document)
        assert doc.find("c:nack", NS).get("code") == code
        assert b"root:" not in etree.tostring(doc)
    before = _rss_kb(pid)
    for _ in range(10):
        for document, code in cases:
            assert crm.post(document)[1].find("c:nack", NS).get("code") == code
    assert _rss_kb(pid) - before < RSS_GROWTH_MAX_KB
