"""Template helpers: role-aware navigation, formatting."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from flask_login import current_user

from bridge.db.models import Role


def _fmt_time(value: dt.datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return value.strftime("%Y-%m-%d %H:%M:%S")


def init_app(app: Flask) -> None:
    app.jinja_env.filters["t"] = _fmt_time

    @app.context_processor
    def _globals() -> dict[str, Any]:
        role = getattr(current_user, "role", None) if current_user else None
        return {
            "Role": Role,
            "role": role,
        }
