"""Phone numbers: everything the bridge stores or dials is E.164 (``+15551234567``).

Numbers arrive in whatever form people and SMSCs use: E.164 with or without the ``+``, national
(``(555) 123-0001``), with an international prefix (``011 44 ...`` / ``00 44 ...`` for the region).
:func:`to_e164` reads them with the ``phonenumbers`` package, relative to ``numbering.default_country``.

It accepts *possible* numbers (right length for the country), not only *valid* ones (allocated
ranges): test and private numbers such as ``+1 555 123 0001`` must work. Numbers that are only
dialable locally (a 7-digit US number) are refused: they have no E.164 form. Letters are refused, so a
nickname can never be mistaken for a (vanity) number.
"""

from __future__ import annotations

import re

import phonenumbers

_PHONE_CHARS = re.compile(r"^\+?\(?[0-9][0-9 ().\-]*$")
_SEPARATORS = re.compile(r"[ ().\-]")


class PhoneError(ValueError):
    """The text is not a phone number; the message says why, in words fit for an SMS reply."""


def looks_like_phone(text: str) -> bool:
    """True when ``text`` is written like a number (digits, optional ``+`` and separators, no letters)."""
    return bool(_PHONE_CHARS.match(text.strip()))


def to_e164(text: str, default_country: str) -> str:
    """Normalise ``text`` to E.164; raises :class:`PhoneError` when it is not a possible number.

    A digits-only string that is not a possible national number is retried as international without
    the ``+`` (SMSCs often send ``15551230001`` or ``447700900123``).
    """
    raw = text.strip()
    if not raw or not looks_like_phone(raw):
        raise PhoneError(f"'{_short(raw)}' is not a phone number")
    digits = _SEPARATORS.sub("", raw)
    if len(digits.lstrip("+")) > 17:
        raise PhoneError(f"'{_short(raw)}' is too long for a phone number")
    candidates = [digits] if digits.startswith("+") else [digits, "+" + digits]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_country)
        except phonenumbers.NumberParseException:
            continue
        reason = phonenumbers.is_possible_number_with_reason(number)
        if reason == phonenumbers.ValidationResult.IS_POSSIBLE:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise PhoneError(f"'{_short(raw)}' is not a possible phone number")


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
