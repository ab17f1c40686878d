"""Run inside a node's namespace: the portal of that node (its own config, its engine's control API) asked for a
page and a change. Prints ``GET <status> banner names <node>`` and ``POST <status> read-only|writable``."""

from __future__ import annotations

import re
import sys

from bridge import config as config_module
from web import create_app


def main(config_path: str) -> None:
    config = config_module.load(config_path)
    app = create_app({"BRIDGE": config, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "probe"})
    client = app.test_client()
    page = client.get("/login")
    named = re.search(r"The active node is <strong>([^<]+)</strong>", page.get_data(as_text=True))
    print(f"GET {page.status_code} banner names {named[1] if named else '-'}")
    change = client.post("/login", data={"username": "x", "password": "y"})
    text = change.get_data(as_text=True)
    print(f"POST {change.status_code} {'read-only' if 'read-only' in text else 'writable'}")


if __name__ == "__main__":
    main(sys.argv[1])
