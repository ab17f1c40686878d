"""What the SMPP link threads share (glue): settings, the database, the clock, the stop flag, the pure state
objects of the service, and the way to hand a persisted MO to the command worker.

The :class:`~bridge.smpp.service.SmppService` builds one; each :class:`~bridge.smpp.link.Link` and its
:class:`~bridge.smpp.intake.Intake` and :class:`~bridge.smpp.sender.Sender` read it. Only the message-id
cache is touched by two threads (the transmitting link remembers, the receiving link looks up), so only it
takes a lock.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.configschema import SmppConfig
from bridge.smpp.concat import Reassembler
from bridge.smpp.database import Database
from bridge.smpp.delivery import DeliveryTracker, MessageIds
from bridge.smpp.outbox import Outbox
from bridge.smpp.redelivery import AckLedger


@dataclass
class LinkContext:
    settings: SmppConfig
    db: Database
    clock: Callable[[], float]
    rng: random.Random
    outbox: Outbox
    reassembler: Reassembler
    """Replaced (rebuilt from the database) after a failed transaction: read it through the context."""
    acks: AckLedger
    """Used by the receiving link's thread only."""
    submit_mo: Callable[[int], None]
    stopping: threading.Event = field(default_factory=threading.Event)
    deliveries: DeliveryTracker = field(default_factory=DeliveryTracker)
    """Used by the receiving link's thread only."""
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    _message_ids: MessageIds = field(default_factory=MessageIds)
    _message_ids_lock: threading.Lock = field(default_factory=threading.Lock)

    def remember_ids(self, mt_id: int, message_ids: tuple[str, ...]) -> None:
        with self._message_ids_lock:
            self._message_ids.remember(mt_id, message_ids)

    def known_mt(self, message_id: str) -> tuple[int, int] | None:
        """``(MT id, number of parts)`` of a message id submitted by this process (recent ones)."""
        with self._message_ids_lock:
            return self._message_ids.get(message_id)
