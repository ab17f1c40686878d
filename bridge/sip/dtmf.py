"""DTMF carried in SIP INFO bodies (pure parsing).

Two de-facto formats exist (no RFC): ``application/dtmf-relay`` (Cisco: ``Signal=5\\r\\nDuration=160``) and
``application/dtmf`` (the bare digit). ``Signal`` (dtmf-relay only) may also be the event number of
RFC 4733 §3.2 (10 = ``*``, 11 = ``#``, 12-15 = ``A-D``).
"""

from __future__ import annotations

DTMF_DIGITS = "0123456789*#ABCD"
DTMF_CONTENT_TYPES = frozenset({"application/dtmf-relay", "application/dtmf"})


def _digit(token: str, *, event_numbers: bool) -> str | None:
    token = token.strip().upper()
    if len(token) == 1 and token in DTMF_DIGITS:
        return token
    if event_numbers and token.isdigit() and 10 <= int(token) <= 15:
        return DTMF_DIGITS[int(token)]
    return None


def parse_info_dtmf(content_type: str, body: str) -> str | None:
    """The digit in a SIP INFO body, or ``None`` if the body is not DTMF (or is malformed)."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/dtmf":
        return _digit(body, event_numbers=False)
    if ctype == "application/dtmf-relay":
        for line in body.replace("\r", "\n").split("\n"):
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() == "signal":
                return _digit(value, event_numbers=True)
    return None
