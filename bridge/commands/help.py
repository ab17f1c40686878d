"""Help texts and the reply-size helpers.

Replies should fit one SMS: 160 GSM 03.38 septets (characters of the extension table such as ``[ ] | { }``
count twice). Lists that cannot fit are cut with a ``+N more`` tail; the SMPP layer splits anything longer.
"""

from __future__ import annotations

from collections.abc import Sequence

SMS_LIMIT = 160
"""Septets in one GSM-7 SMS."""
LIST_LIMIT = 306
"""Budget of list replies (two concatenated parts of 153 septets)."""

_GSM7_BASIC = set(
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8"
    "\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9 !\"#\u00a4%&'()*+,-./0123456789:;<=>?\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "\u00c4\u00d6\u00d1\u00dc\u00a7\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
_GSM7_EXTENSION = set("\f^{}\\[~]|\u20ac")

COMMANDS = ("UC", "UE", "UD", "UL", "GC", "GL", "GD", "IC", "CC", "LC", "SB", "?")


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7, or ``None`` when it needs UCS-2 (70 characters per SMS)."""
    length = 0
    for char in text:
        if char in _GSM7_BASIC:
            length += 1
        elif char in _GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def fits_one_sms(text: str) -> bool:
    """True when ``text`` is a single SMS (160 GSM-7 septets, or 70 UCS-2 characters)."""
    septets = gsm7_length(text)
    return len(text) <= 70 if septets is None else septets <= SMS_LIMIT


def fit_list(head: str, items: Sequence[str], *, limit: int = SMS_LIMIT, tail: str = "", sep: str = ", ") -> str:
    """``head`` + as many ``items`` as fit in ``limit`` characters (with ``tail``), then ``+N more``."""
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        more = f"{sep}+{rest} more" if rest else ""
        candidate = head + sep.join([*shown, item]) + more + tail
        if len(candidate) > limit and shown:
            return head + sep.join(shown) + f"{sep}+{len(items) - i} more" + tail
        shown.append(item)
    return head + sep.join(shown) + tail


def syntax(max_slot: int, max_adhoc: int) -> dict[str, str]:
    """One line per command: syntax, meaning and an example (each fits one SMS)."""
    return {
        "UC": "UC <nick> <phone> <first>.<last> <group> -<group> : add a user, put in (-: take out of) groups."
        " Ex: UC bob 5551230002 Bob.Smith Sales",
        "UE": "UE <nick> <phone> <first>.<last> <group> -<group> : edit a user, same syntax as UC."
        " Ex: UE bob 5551230009 Bob.Smith -Sales",
        "UD": "UD <nick> or UD <phone> : delete a user. Ex: UD bob",
        "UL": "UL <text> : find users by nickname, name or number; UL alone lists all. Ex: UL smi",
        "GC": "GC <group> <nick/phone/group> ... : create or replace a group. Ex: GC Team bob ann 5551230004",
        "GL": "GL <group> : list a group; GL alone lists your groups. Ex: GL Team",
        "GD": "GD <group> : delete a group (its users stay). Ex: GD Team",
        "IC": "IC <nick/phone/group> ... : call them now into a conference. ICx or IC x : launch your IC x."
        " Ex: IC Team 5551230005 or IC3",
        "CC": f"CCx <nick/phone/group> ... : create or redefine IC x (1-{max_slot}, up to {max_adhoc} numbers)."
        " Ex: CC3 Team 5551230005",
        "LC": "LCx : list IC x with its dial-in number and PINs; LC alone lists your ICs. Ex: LC3",
        "SB": "SB <nick/phone/group> ... : <text> : text them all, no call. Ex: SB Team : call at 3pm",
        "?": "? <cmd> : help on one command. ?? : all commands. HELP is the same as ?. Ex: ? CC",
    }


SHORT_HELP = (
    "Commands: UC UE UD UL (users), GC GL GD (groups), IC ICx CCx LCx (conferences), SB (text a group)."
    " Send ? <cmd> for one, ?? for all."
)


def help_text(topic: str | None, *, verbose: bool, max_slot: int, max_adhoc: int) -> str:
    """The reply to ``?``, ``??`` or ``HELP`` with an optional command word."""
    lines = syntax(max_slot, max_adhoc)
    if topic is None:
        return "\n".join(lines[c] for c in COMMANDS) if verbose else SHORT_HELP
    key = topic.lstrip("?") or "?"
    if key in ("HELP",):
        key = "?"
    if key in lines:
        return lines[key]
    return f"No command '{topic[:10]}'. " + SHORT_HELP
