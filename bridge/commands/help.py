"""Help texts and the reply-size helpers.

Replies should fit one SMS: 160 GSM 03.38 septets (characters of the extension table such as ``[ ] | { }``
count twice; one character outside it makes the whole SMS UCS-2, 70 characters). Lists that cannot fit
are cut with a ``+N more`` tail, counted in the encoding the SMS will use; the SMPP layer splits anything
longer. Tokens echoed from the sender are quoted in printable GSM-7 (:func:`quote`).
"""

from __future__ import annotations

import unicodedata
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

_PRINTABLE_GSM7 = frozenset((_GSM7_BASIC | _GSM7_EXTENSION) - set("\n\r\f"))
"""GSM 03.38 characters safe to echo: the alphabet without its control characters."""

UCS2_SINGLE = 70
"""UCS-2 characters in one SMS."""
UCS2_PART = 67
GSM7_PART = 153
"""Characters per part of a concatenated SMS (the UDH takes the rest)."""

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


def printable_gsm7(text: str) -> str:
    """``text`` rendered in printable GSM 03.38: a letter outside it becomes its base letter where it has
    one (``İ`` -> ``I``, ``ş`` -> ``s``), anything else (emoji, control characters) ``?``.

    For echoing a sender's token in a reply: one character outside GSM-7 would switch the whole reply to
    UCS-2 (70 characters a part), and a control character could garble the handset's display.
    """
    out: list[str] = []
    for char in text:
        if char in _PRINTABLE_GSM7:
            out.append(char)
            continue
        base = [c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c)[0] != "M"]
        out.append("".join(base) if base and all(c in _PRINTABLE_GSM7 for c in base) else "?")
    return "".join(out)


def quote(text: str, limit: int = 20) -> str:
    """``'text'`` for an error reply: printable GSM-7 (:func:`printable_gsm7`) and shortened, so the token
    the sender got wrong cannot make the reply UCS-2 or push it past one SMS."""
    shown = printable_gsm7(text)
    return "'" + (shown if len(shown) <= limit else shown[: limit - 3] + "...") + "'"


def fits(text: str, limit: int = SMS_LIMIT) -> bool:
    """True when ``text`` fits the parts a ``limit`` of GSM-7 septets stands for, in its real encoding.

    ``limit`` is a septet budget (``SMS_LIMIT`` one part, ``LIST_LIMIT`` two); a text that needs UCS-2
    gets as many UCS-2 parts instead, so a name outside GSM-7 cannot make a "one SMS" reply three.
    """
    septets = gsm7_length(text)
    if septets is not None:
        return septets <= limit
    if limit <= SMS_LIMIT:
        return len(text) <= limit * UCS2_SINGLE // SMS_LIMIT
    return len(text) <= max(1, limit // GSM7_PART) * UCS2_PART


def fits_one_sms(text: str) -> bool:
    """True when ``text`` is a single SMS (160 GSM-7 septets, or 70 UCS-2 characters)."""
    septets = gsm7_length(text)
    return len(text) <= 70 if septets is None else septets <= SMS_LIMIT


def fit_list(head: str, items: Sequence[str], *, limit: int = SMS_LIMIT, tail: str = "", sep: str = ", ") -> str:
    """``head`` + as many ``items`` as fit in ``limit`` septets (see :func:`fits`; ``tail`` included), then
    ``+N more``."""
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i - 1
        more = f"{sep}+{rest} more" if rest else ""
        candidate = head + sep.join([*shown, item]) + more + tail
        if not fits(candidate, limit):
            if shown:
                return head + sep.join(shown) + f"{sep}+{len(items) - i} more" + tail
            bare = head + f"+{len(items)} more" + tail
            if fits(bare, limit):  # not even one item fits beside the tail (a UCS-2 name): just the count
                return bare
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


def full_help(max_slot: int) -> str:
    """``??``: every command on one line, at most three SMS parts; details are one ``? <cmd>`` away."""
    return "\n".join(
        [
            "Commands (who: nick/phone/group):",
            "UC nick phone first.last group -group: add user",
            "UE: edit user, as UC",
            "UD nick/phone: delete user",
            "UL text: find users",
            "GC group who...: make/replace group",
            "GL group: list it, GL: all",
            "GD group: delete group",
            "IC who...: call now",
            "ICx: launch IC x",
            f"CCx who...: define IC x (x=1-{max_slot})",
            "LCx: list IC x, LC: all",
            "SB who... : text: text them",
            "? <cmd>: details and example. Full guide: Help page of the portal",
        ]
    )


SHORT_HELP = (
    "Commands: UC UE UD UL (users), GC GL GD (groups), IC ICx CCx LCx (conferences), SB (text a group)."
    " Send ? <cmd> for one, ?? for all."
)


def help_text(topic: str | None, *, verbose: bool, max_slot: int, max_adhoc: int) -> str:
    """The reply to ``?``, ``??`` or ``HELP`` with an optional command word."""
    lines = syntax(max_slot, max_adhoc)
    if topic is None:
        return full_help(max_slot) if verbose else SHORT_HELP
    key = topic.lstrip("?") or "?"
    if key in ("HELP",):
        key = "?"
    if key in lines:
        return lines[key]
    return f"No command {quote(topic, 10)}. " + SHORT_HELP
