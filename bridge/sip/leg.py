"""One call leg as the engine sees it, with its state machine.

Theory of operation (RFC 3261 §13 dialogs, seen from the application): an outbound leg goes DIALING -> RINGING
-> CONNECTED -> ENDED, or to FAILED before it connects; route advance (a 5xx or no answer from one gateway)
takes it back to DIALING on the next gateway. An inbound leg starts OFFERED (INVITE accepted, 180 sent) and
goes to CONNECTED when the engine answers, FAILED when it rejects or the caller cancels. ENDED and FAILED are
final. The table below is the only place transitions are allowed; anything else raises
:class:`~bridge.sip.LegStateError` (h11 ``_state.py`` style).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Literal

from bridge.sip import LegStateError

log = logging.getLogger(__name__)


class LegState(enum.Enum):
    DIALING = "dialing"
    RINGING = "ringing"
    OFFERED = "offered"
    CONNECTED = "connected"
    ENDED = "ended"
    FAILED = "failed"


TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.DIALING: frozenset({LegState.DIALING, LegState.RINGING, LegState.CONNECTED, LegState.FAILED}),
    LegState.RINGING: frozenset({LegState.DIALING, LegState.CONNECTED, LegState.FAILED}),
    LegState.OFFERED: frozenset({LegState.CONNECTED, LegState.FAILED}),
    LegState.CONNECTED: frozenset({LegState.ENDED}),
    LegState.ENDED: frozenset(),
    LegState.FAILED: frozenset(),
}

FINAL_STATES = frozenset({LegState.ENDED, LegState.FAILED})


@dataclass(eq=False)
class SipLeg:
    """A call leg. Identity is ``leg_id`` (unique per process); mutable fields change only on the loop thread.

    ``port_id`` is ``"span:channel"`` for legs on an E1 trunk group, else ``""``. ``call_id`` changes on route
    advance (each attempt is a new dialog). A leg is signalling only: its media endpoint stays with the SIP
    service, which hands it over explicitly (:meth:`bridge.sip.service.SipService.media_endpoint`).
    """

    leg_id: str
    direction: Literal["in", "out"]
    calling: str
    called: str
    state: LegState
    call_id: str = ""
    trunk_group: str = ""
    gateway: str = ""
    port_id: str = ""
    display_name: str = ""
    on_hold: bool = False
    cause: str = ""

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def set_state(self, new: LegState) -> None:
        """Move to ``new``; raises :class:`LegStateError` if the transition table does not allow it."""
        if new not in TRANSITIONS[self.state]:
            raise LegStateError(f"leg {self.leg_id}: {self.state.value} -> {new.value} is not allowed")
        if new is not self.state:
            log.debug("leg %s: %s -> %s", self.leg_id, self.state.value, new.value)
        self.state = new
