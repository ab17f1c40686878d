"""Delivery receipts (SMPP 3.4 Appendix B and §5.2.12): a deliver_sm with esm_class bit 2 set.

The short message is the de-facto ``id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text:...`` format; the ``receipted_message_id`` / ``message_state`` TLVs, when present,
win over the text. Some SMSCs report the id in decimal when submit_sm_resp gave it in hex (or the other
way round), so :func:`id_candidates` lists the forms to look up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.smpp.errors import DecodeError

MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
FINAL_STATES = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"})

_FIELD = re.compile(r"(?i)\b(id|sub|dlvrd|submit date|done date|stat|err|text):")


@dataclass(frozen=True)
class DeliveryReceipt:
    message_id: str
    stat: str
    err: str = ""
    text: str = ""

    @property
    def delivered(self) -> bool:
        return self.stat == "DELIVRD"

    @property
    def final(self) -> bool:
        """``ENROUTE``/``ACCEPTD`` are intermediate; everything else settles the message."""
        return self.stat in FINAL_STATES

    @classmethod
    def parse(
        cls, text: str, *, receipted_message_id: str | None = None, message_state: int | None = None
    ) -> DeliveryReceipt:
        if receipted_message_id and message_state == 2:  # the TLVs say it all: skip the text
            return cls(message_id=receipted_message_id.strip(), stat="DELIVRD")
        fields: dict[str, str] = {}
        matches = list(_FIELD.finditer(text))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            fields.setdefault(match.group(1).lower(), text[match.end() : end].strip())
        message_id = (receipted_message_id or "").strip() or fields.get("id", "")
        if not message_id:
            raise DecodeError(f"delivery receipt without a message id: {text[:80]!r}")
        stat = fields.get("stat", "").upper()
        if message_state is not None and message_state in MESSAGE_STATES:
            stat = MESSAGE_STATES[message_state]
        if not stat:
            raise DecodeError(f"delivery receipt for {message_id} without a state: {text[:80]!r}")
        return cls(message_id=message_id, stat=stat, err=fields.get("err", ""), text=fields.get("text", ""))


def id_candidates(message_id: str) -> tuple[str, ...]:
    """The forms an SMSC may use for the same message id: as given, decimal <-> hexadecimal."""
    forms = [message_id]
    if message_id.isdigit() and len(message_id) < 20:
        forms += [format(int(message_id), "x"), format(int(message_id), "X")]
    elif re.fullmatch(r"[0-9A-Fa-f]{1,16}", message_id):
        forms.append(str(int(message_id, 16)))
    return tuple(dict.fromkeys(forms))
