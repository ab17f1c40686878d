"""Shared values of the machine API tests (importable: ``conftest`` modules of several packages collide)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.testing import FlaskClient

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)
SUBJECT = "CN=crm-1,O=bridge CRM API"


class FakeRole:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def active_node(self) -> str:
        return "bridge-b.example:8444"


class CrmClient:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def post(self, document: bytes) -> Any:
        return self.client.post(
            "/crm", data=document, content_type="application/xml", environ_base={"bridge.client_subject": SUBJECT}
        )
