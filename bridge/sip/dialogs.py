"""What the stack reads from a dialog and decides about it, kept apart from the sippy thread's plumbing:
who is calling, the text of a body, and when a failed hang-up is tried again.

The hang-up policy is pure (attempt in, delay out). A hang-up sippy fails to send is retried, never dropped:
the engine has already ended the leg in the API and the CDR when it asks for the BYE.
"""

from __future__ import annotations

from typing import Any

HANGUP_ATTEMPTS = 4
"""How many times :meth:`SipStack.hangup` tries to make sippy send the BYE/CANCEL before it gives up (with an
error in the log and ``counters["hangup_failed"]``)."""

HANGUP_RETRY_S = 0.5
"""The pause before the first retry of a failed hang-up; it doubles with each further try (0.5, 1, 2 s)."""


def hangup_retry_delay(attempt: int) -> float | None:
    """Seconds to wait before trying again after hang-up ``attempt`` (1-based) failed; ``None``: give up."""
    if attempt >= HANGUP_ATTEMPTS:
        return None
    return HANGUP_RETRY_S * 2.0 ** (attempt - 1)


def body_text(body: Any) -> str:
    """A sippy message body (or ``None``, or already text) as text."""
    if body is None:
        return ""
    try:
        return str(body.localStr()) if not isinstance(body, str) else body
    except Exception:
        return str(body)


def calling_number(req: Any) -> str:
    """Calling party: the user of P-Asserted-Identity (RFC 3325), else of From."""
    for name in ("p-asserted-identity", "from"):
        try:
            bodies = req.getHFBodys(name)
            if bodies:
                user = bodies[0].getUrl().username
                if user:
                    return str(user)
        except Exception:
            continue
    return ""
