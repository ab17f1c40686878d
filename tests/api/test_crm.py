"""The CRM XML API's documents and operations (the WSGI app; the mutual-TLS listener is in test_crm_server.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import func, select

import tests.api.crm_docs as docs
from bridge.db.models import Account, ApiTransaction, AuditEntry, Subscriber, SubscriberStatus
from tests.api.crm_fixtures import SUBJECT, CrmClient, FakeRole
from web import db
from web.crm import documents

NS = {"c": docs.NS}


def parsed(response: Any) -> Any:
    root = etree.fromstring(response.data)
    assert documents.schema().validate(root), documents.schema().error_log  # every answer matches crm.xsd
    return root


def nack_code(response: Any) -> str:
    return str(parsed(response).find("c:nack", NS).get("code"))


def _company_and_subscriber(crm: CrmClient) -> int:
    assert crm.post(docs.create_company("t-c1", "Acme")).status_code == 200
    response = crm.post(
        docs.create_subscriber(
            "t-s1", company="Acme", name="Ann", mobile="+15551230001", username="ann", password="secret-password",
            email="ann@example.com", prepaid=True, balance="12.50",
        )
    )  # fmt: skip
    assert response.status_code == 200, response.data
    return int(parsed(response).find("c:ack/c:subscriber", NS).get("id"))


def _count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session().scalar(select(func.count()).select_from(model)) or 0)


def test_create_subscriber_acknowledges_what_the_crm_tells_the_customer(crm: CrmClient) -> None:
    _company_and_subscriber(crm)
    ack = parsed(crm.post(docs.by_id("t-q1", "querySubscriber", 1))).find("c:ack/c:subscriber", NS)
    assert ack.get("status") == "active"
    assert ack.findtext("c:portalLogin", namespaces=NS) == "ann"
    assert ack.findtext("c:shortCode", namespaces=NS) == "2663"
    assert ack.findtext("c:balance", namespaces=NS) == "12.50"
    assert ack.findtext("c:email", namespaces=NS) == "ann@example.com"
    assert ack.findtext("c:dialIn/c:common", namespaces=NS) == "+15550100"
    pool = ack.findall("c:dialIn/c:dnis", NS)
    assert [p.get("slot") for p in pool][:2] == ["1", "2"] and pool[0].text == "+15550101"


def test_modify_suspend_resume_delete_and_company_operations(crm: CrmClient, crm_app: Flask) -> None:
    sid = _company_and_subscriber(crm)
    ack = parsed(crm.post(docs.modify_subscriber("t-m1", sid, name="Ann B", balance="3.00")))
    assert ack.findtext("c:ack/c:subscriber/c:name", namespaces=NS) == "Ann B"
    changes = (("t-p", "suspendSubscriber", "suspended"), ("t-r", "resumeSubscriber", "active"))
    for transaction, operation, status in changes:
        ack = parsed(crm.post(docs.by_id(transaction, operation, sid)))
        assert ack.find("c:ack/c:subscriber", NS).get("status") == status
        with crm_app.app_context():
            login = db.session().scalars(select(Account).where(Account.subscriber_id == sid)).one()
            assert login.active is (status == "active")
    ack = parsed(crm.post(docs.by_id("t-d", "deleteSubscriber", sid)))
    assert ack.find("c:ack/c:subscriber", NS).get("status") == "deleted"
    assert _count(crm_app, Subscriber) == 0
    assert nack_code(crm.post(docs.by_id("t-q2", "querySubscriber", sid))) == "UNKNOWN"
    ack = parsed(crm.post(docs.modify_company("t-mc", 1, "Acme Corp")))
    assert ack.findtext("c:ack/c:company/c:name", namespaces=NS) == "Acme Corp"
    assert ack.findtext("c:ack/c:company/c:timezone", namespaces=NS) == "Europe/Paris"


def test_rule_breaks_get_the_core_code_and_field(crm: CrmClient) -> None:
    _company_and_subscriber(crm)
    response = crm.post(docs.create_subscriber("t-x1", company="Acme", name="Bob", mobile="+15551230001"))
    assert (response.status_code, nack_code(response)) == (409, "EXISTS")
    assert parsed(response).findtext("c:nack/c:field", namespaces=NS) == "mobile"
    response = crm.post(docs.create_subscriber("t-x2", company="Nope", name="Bob", mobile="+15551230002"))
    assert (response.status_code, nack_code(response)) == (422, "UNKNOWN")
    response = crm.post(docs.create_company("t-x3", "Other", timezone="Mars/Olympus"))
    assert (response.status_code, nack_code(response)) == (422, "INVALID")


def test_a_repeated_transaction_returns_the_same_answer_and_changes_nothing(crm: CrmClient, crm_app: Flask) -> None:
    crm.post(docs.create_company("t-c1", "Acme"))
    document = docs.create_subscriber("t-s1", company="Acme", name="Ann", mobile="+15551230001")
    first, second = crm.post(document), crm.post(document)
    assert first.data == second.data and first.status_code == second.status_code == 200
    assert _count(crm_app, Subscriber) == 1
    other = crm.post(docs.create_subscriber("t-s1", company="Acme", name="Bob", mobile="+15551230002"))
    assert (other.status_code, nack_code(other)) == (409, "TRANSACTION_REUSED")
    assert _count(crm_app, Subscriber) == 1
    refused = docs.create_subscriber("t-s2", company="Acme", name="Cy", mobile="+15551230001")  # EXISTS, stored too
    assert crm.post(refused).data == crm.post(refused).data
    assert _count(crm_app, ApiTransaction) == 3


def test_every_change_is_audited_with_the_certificate_subject(crm: CrmClient, crm_app: Flask) -> None:
    sid = _company_and_subscriber(crm)
    crm.post(docs.by_id("t-p", "suspendSubscriber", sid))
    crm.post(docs.by_id("t-q", "querySubscriber", sid))  # a query changes nothing: no audit line
    with crm_app.app_context():
        entries = db.session().scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.action, e.object_type) for e in entries] == [
            ("create", "company"),
            ("create", "subscriber"),
            ("suspend", "subscriber"),
        ]
        assert {e.actor for e in entries} == {SUBJECT}
        assert json.loads(entries[2].before)["status"] == "active"
        assert json.loads(entries[2].after)["status"] == SubscriberStatus.SUSPENDED.value
        assert entries[2].transaction == "t-p"


@pytest.mark.parametrize(
    ("document", "code", "status"),
    [
        (docs.XXE, "DTD_FORBIDDEN", 400),
        (docs.BILLION_LAUGHS, "DTD_FORBIDDEN", 400),
        (docs.WRONG_NAMESPACE, "WRONG_NAMESPACE", 400),
        (docs.SCHEMA_VIOLATION, "SCHEMA", 400),
        (docs.MALFORMED, "MALFORMED", 400),
        (docs.oversized(10 * 1024 * 1024), "TOO_LARGE", 413),
        (b"", "MALFORMED", 400),
    ],
    ids=["xxe", "billion-laughs", "wrong-namespace", "schema", "malformed", "10MB", "empty"],
)
def test_malicious_documents_get_a_nack_with_the_right_code(
    crm: CrmClient, crm_app: Flask, document: bytes, code: str, status: int
) -> None:
    response = crm.post(document)
    assert (response.status_code, nack_code(response)) == (status, code)
    assert b"root:" not in response.data  # /etc/passwd never read
    assert _count(crm_app, ApiTransaction) == 0


def test_the_standby_refuses_naming_the_active_node(crm: CrmClient, role: FakeRole) -> None:
    role.active = False
    response = crm.post(docs.create_company("t-c1", "Acme"))
    assert (response.status_code, nack_code(response)) == (503, "NOT_ACTIVE")
    assert parsed(response).findtext("c:nack/c:activeNode", namespaces=NS) == "bridge-b.example:8444"


def test_the_schema_is_published(crm_app: Flask) -> None:
    response = crm_app.test_client().get("/crm.xsd")
    assert response.status_code == 200 and b"urn:bridge:crm:1" in response.data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_any_bytes_get_a_response_document_never_a_crash(crm: CrmClient, data: bytes) -> None:
    response = crm.post(data)
    assert response.status_code < 500
    assert parsed(response).find("c:nack", NS) is not None


def test_document_parser_property_whole_or_error() -> None:
    for data in (docs.XXE, docs.BILLION_LAUGHS, docs.MALFORMED, docs.WRONG_NAMESPACE):
        for cut in range(0, len(data), 7):
            with pytest.raises(documents.DocumentError):
                documents.parse_request(data[:cut])
