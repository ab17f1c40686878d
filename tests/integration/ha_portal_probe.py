"""Run inside a node's namespace: the portal of that node (its own config, its engine's control API) asked for a
page and a change. Prints ``GET <status> banner names <node>`` and ``POST <status> read-only|writable``; with a
REST token (made on the active node, replicated here) also ``REST GET <status>`` and ``REST POST <status>
active_node <node>``; and the CRM XML API app of that node: ``CRM <status> <code> activeNode <node>``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lxml import etree

from bridge import config as config_module
from web import create_app
from web.crm import create_crm_app

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.api.crm_docs
import tests.api.crm_docs as docs  # noqa: E402


def main(config_path: str, token: str = "") -> None:
    config = config_module.load(config_path)
    app = create_app({"BRIDGE": config, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "probe"})
    client = app.test_client()
    page = client.get("/login")
    named = re.search(r"The active node is <strong>([^<]+)</strong>", page.get_data(as_text=True))
    print(f"GET {page.status_code} banner names {named[1] if named else '-'}")
    change = client.post("/login", data={"username": "x", "password": "y"})
    text = change.get_data(as_text=True)
    print(f"POST {change.status_code} {'read-only' if 'read-only' in text else 'writable'}")
    if token:
        headers = {"Authorization": f"Bearer {token}"}
        print(f"REST GET {client.get('/api/v1/companies', headers=headers).status_code}")
        refused = client.post("/api/v1/companies", json={"name": "Probe"}, headers=headers)
        body = refused.get_json(silent=True) or {}
        print(f"REST POST {refused.status_code} {refused.mimetype} active_node {body.get('active_node', '-')}")
    crm = create_crm_app({"BRIDGE": config}).test_client().post("/crm", data=docs.create_company("probe-1", "Probe"))
    nack = etree.fromstring(crm.data).find("c:nack", {"c": docs.NS})
    code = nack.get("code") if nack is not None else "ack"
    active = nack.findtext("c:activeNode", namespaces={"c": docs.NS}) if nack is not None else "-"
    print(f"CRM {crm.status_code} {code} activeNode {active}")


if __name__ == "__main__":
    main(*sys.argv[1:])
