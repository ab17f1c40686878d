"""Name rules shared by every front door: what a nickname or group name may be, and when two are the same.

Names (nicknames, group names) start with a letter and hold letters, digits, ``_``, ``.`` and ``-`` (at
most :data:`NAME_MAX` characters), so the SMS language can never confuse one with a number, a slot or a
``-group`` removal. A letter is any Unicode letter (``équipe``, ``Ñandú``, ``İstanbul``), followed where a
script needs them by combining marks; digits are ``0-9``. Names are kept in NFC and compared by
:func:`name_key` (NFC + Unicode case folding), never by SQL ``lower()``, which folds ASCII only in SQLite.
"""

from __future__ import annotations

import unicodedata

from bridge.provisioning.errors import ProvisioningError

NAME_MAX = 40
PERSON_NAME_MAX = 60
"""Longest first or last name of a contact."""
_NAME_SYMBOLS = frozenset("0123456789_.-")
_NAME_RULE = f"a letter first, then letters, digits, _ . -; max {NAME_MAX}"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def is_name(token: str) -> bool:
    """True when ``token`` (in NFC) is a valid nickname or group name (see the module docstring)."""
    if not 0 < len(token) <= NAME_MAX or not token[0].isalpha():
        return False
    # Marks (category M*) after the first letter: Devanagari vowel signs, accents NFC cannot compose.
    return all(ch.isalpha() or ch in _NAME_SYMBOLS or unicodedata.category(ch)[0] == "M" for ch in token[1:])


def name_key(name: str) -> str:
    """What two names must share to be the same name: NFC, then Unicode case folding (``ß`` = ``ss``)."""
    return nfc(name).casefold()


def sort_key(name: str) -> tuple[str, str]:
    """Order names as a reader expects without a locale: accents ignored first ("équipe" among the e's),
    then by :func:`name_key` so the order is total."""
    base = "".join(ch for ch in unicodedata.normalize("NFKD", name) if unicodedata.category(ch)[0] != "M")
    return base.casefold(), name_key(name)


def shown(text: str, limit: int = 20) -> str:
    """``'text'`` for a message: control and other invisible characters as ``?``, cut to ``limit``.

    The SMS door renders the whole message in printable GSM-7 on top of this; a form shows it as it is.
    """
    visible = "".join("?" if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text)
    return "'" + (visible if len(visible) <= limit else visible[: limit - 3] + "...") + "'"


def check_name(token: str, what: str, *, field: str) -> str:
    """``token`` in NFC when it is a valid name; else :class:`ProvisioningError` naming ``what`` it is."""
    name = nfc(token)
    if not is_name(name):
        raise ProvisioningError(f"{shown(token)} is not a valid {what} ({_NAME_RULE})", field=field)
    return name


def check_person_name(first: str, last: str) -> tuple[str, str]:
    """A contact's first and last name, stripped; each at most :data:`PERSON_NAME_MAX` characters."""
    first, last = first.strip(), last.strip()
    if len(first) > PERSON_NAME_MAX or len(last) > PERSON_NAME_MAX:
        raise ProvisioningError(
            f"names are at most {PERSON_NAME_MAX} characters",
            field="first_name" if len(first) > PERSON_NAME_MAX else "last_name",
        )
    return first, last
