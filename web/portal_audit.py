"""Portal changes in the provisioning audit log (:mod:`bridge.provisioning.audit`), beside the APIs' changes.

Who: the signed-in portal user (``portal <username> (account <id>, <role>)``); channel ``portal``; the same
snapshots as the APIs use, taken in the view's transaction so the change and its line commit together. The
operator's Audit page and its CSV show them with the CRM's and REST's.
"""

from __future__ import annotations

from flask_login import current_user

from bridge.provisioning.audit import Snapshot, record
from web import db
from web.clock import utc_now

CHANNEL = "portal"


def actor() -> str:
    user = current_user
    return f"portal {user.username} (account {user.id}, {user.role.value})"


def audit(action: str, kind: str, object_id: int | None, before: Snapshot | None, after: Snapshot | None) -> None:
    """One audit line for a change this request made (flushed; the view commits it with the change)."""
    record(
        db.session(), actor=actor(), channel=CHANNEL, action=action, object_type=kind, object_id=object_id,
        before=before, after=after, now=utc_now(),
    )  # fmt: skip
