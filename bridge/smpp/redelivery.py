"""Telling an SMSC's redelivery of an MO from a person who sent the same text again (issue 13 item 5).

Theory of operation (SMPP 3.4 §4.6.2 deliver_sm_resp, §2.7 session timers): an SMSC sends a deliver_sm
again only when it did not get our deliver_sm_resp: we did not send one, sent it after the SMSC gave up
waiting, or it was lost with the link. SMPP gives an MO no identity that survives a rebind, so a *repeat*
(same source, destination and text within ``dedup_window_s``, found by the store) is judged here from what
we know about our response to the previous one:

- we answered it (ROK) within :data:`LATE_RESPONSE_S` of reading it, and
- the repeat comes over the same session (the link that carried our response never dropped in between),
  or the SMSC has since answered a request we wrote after that response (TCP keeps order, so the SMSC
  had read our response before it answered).

Then the repeat is a person's new message and is answered. Anything else, including a repeat of an MO
this process never answered (it came before a restart), is a redelivery: acknowledged, not run again.
Pure: the glue reports sessions, acknowledgements and confirmations with positions in its output stream
(``ordinal``: the count of PDUs written on the session) and the time ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MoKey = tuple[str, str, str]  # (source, destination, identity: the text, or the raw bytes when undecodable)

LATE_RESPONSE_S = 5.0
"""A deliver_sm_resp written later than this after the deliver_sm arrived may have come after the SMSC's
response timeout (SMPP 3.4 leaves it to the SMSC; common values are 10 to 60 s)."""


@dataclass(frozen=True)
class _Ack:
    session: int
    ordinal: int
    received_at: float
    answered_at: float


class AckLedger:
    """The last acknowledgement of each recent MO identity, and how far each session is confirmed."""

    def __init__(self, *, window_s: float) -> None:
        self.window_s = window_s
        self._acks: OrderedDict[MoKey, _Ack] = OrderedDict()
        self._confirmed: dict[int, int] = {}
        self._sessions = 0

    def __len__(self) -> int:
        return len(self._acks)

    def new_session(self) -> int:
        """A bind succeeded: a new session, whose output positions start again."""
        self._sessions += 1
        self._confirmed = {s: n for s, n in self._confirmed.items() if any(a.session == s for a in self._acks.values())}
        return self._sessions

    def acknowledged(self, key: MoKey, session: int, *, received_at: float, ordinal: int, now: float) -> None:
        """Our ROK deliver_sm_resp for an MO (new or a redelivery) was written at ``ordinal`` of ``session``."""
        self._acks.pop(key, None)
        self._acks[key] = _Ack(session, ordinal, received_at, now)
        self._forget(now)

    def confirmed(self, session: int, ordinal: int) -> None:
        """The SMSC answered a request we wrote at ``ordinal``: it has read everything we wrote before."""
        if ordinal > self._confirmed.get(session, 0):
            self._confirmed[session] = ordinal

    def is_redelivery(self, key: MoKey, session: int, now: float) -> bool:
        """Whether a repeat of ``key`` arriving now on ``session`` is the SMSC sending the last one again."""
        ack = self._acks.get(key)
        if ack is None or ack.answered_at - ack.received_at > LATE_RESPONSE_S:
            return True
        read = ack.session == session or self._confirmed.get(ack.session, 0) > ack.ordinal
        return not read

    def _forget(self, now: float) -> None:
        while self._acks:
            key, ack = next(iter(self._acks.items()))
            if now - ack.received_at <= self.window_s:
                break
            del self._acks[key]
