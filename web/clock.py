"""The portal's clock: the app's ``CLOCK`` setting (tests inject a fake), naive UTC like the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import current_app

from bridge.db.models import utcnow


def utc_now() -> dt.datetime:
    clock: Callable[[], dt.datetime] = current_app.config.get("CLOCK") or utcnow
    return clock()
