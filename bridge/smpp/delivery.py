"""Matching delivery receipts to the MTs they report on (SMPP 3.4 §4.6.1, Appendix B).

Theory of operation: a receipt names the SMSC message id of one *part*; an MT of ``n`` parts is delivered
once ``n`` different parts were reported delivered, and undeliverable as soon as one part finally is not.
The link remembers the ids of the MTs this process submitted (:class:`MessageIds`, bounded) so the MT hot
path settles receipts in memory; a receipt for an MT it does not know is looked up in the database by the
glue, and if the MT is not there either (split binds: a receipt can beat the submit_sm_resp on the other
session) it is held in :class:`Orphans` for :data:`RECEIPT_RETRY_S` before it is given up.

Pure: no I/O, no clock (``now`` is passed in), no lock (the glue serialises :class:`MessageIds`, which the
transmitting and the receiving link share).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bridge.smpp.receipt import DeliveryReceipt

MT_ID_CACHE = 100_000
"""Message ids (and settled MT ids) kept in memory."""
RECEIPT_RETRY_S = 10.0
"""How long a receipt whose MT is not known yet (split binds: it can beat the submit_sm_resp) is kept."""
ORPHAN_POLL_S = 0.2
"""How often held receipts are looked for again."""


class MessageIds:
    """SMSC message id -> ``(MT id, number of parts)`` for the MTs submitted recently, oldest forgotten first."""

    def __init__(self, capacity: int = MT_ID_CACHE) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, mt_id: int, message_ids: tuple[str, ...]) -> None:
        for message_id in message_ids:
            self._ids[message_id] = (mt_id, len(message_ids))
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def get(self, message_id: str) -> tuple[int, int] | None:
        return self._ids.get(message_id)


@dataclass(frozen=True)
class Delivered:
    """Every part of the MT was reported delivered."""

    mt_id: int


@dataclass(frozen=True)
class Undeliverable:
    """A part of the MT reached a final state other than delivered."""

    mt_id: int
    error: str


Verdict = Delivered | Undeliverable | None
"""What a receipt settles about its MT (``None``: nothing yet)."""


class DeliveryTracker:
    """Which parts of each MT were reported delivered so far."""

    def __init__(self) -> None:
        self._delivered: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self._delivered)

    def on_receipt(self, receipt: DeliveryReceipt, mt_id: int, parts: int) -> Verdict:
        """A receipt for one of the ``parts`` of MT ``mt_id``."""
        if not receipt.final:
            return None
        if receipt.delivered:
            delivered = self._delivered.setdefault(mt_id, set())
            delivered.add(receipt.message_id)
            if len(delivered) < parts:
                return None
            self._delivered.pop(mt_id, None)
            return Delivered(mt_id)
        self._delivered.pop(mt_id, None)
        return Undeliverable(mt_id, f"{receipt.stat} err:{receipt.err}")

    def parts(self, mt_id: int) -> set[str]:
        """The set of delivered part ids of ``mt_id``, for the database's own count (updated in place)."""
        return self._delivered.setdefault(mt_id, set())

    def forget(self, mt_id: int) -> None:
        self._delivered.pop(mt_id, None)


class Orphans:
    """Receipts for MTs not known yet, each with the time it is given up."""

    def __init__(self, retry_s: float = RECEIPT_RETRY_S) -> None:
        self.retry_s = retry_s
        self._held: list[tuple[float, DeliveryReceipt]] = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, receipt: DeliveryReceipt, now: float) -> None:
        self._held.append((now + self.retry_s, receipt))

    def take(self) -> list[tuple[float, DeliveryReceipt]]:
        """Every held receipt with its deadline; those still unknown are given back with :meth:`keep`."""
        held, self._held = self._held, []
        return held

    def keep(self, deadline: float, receipt: DeliveryReceipt, now: float) -> bool:
        """Hold ``receipt`` again unless its deadline passed; returns whether it is still held."""
        if now < deadline:
            self._held.append((deadline, receipt))
            return True
        return False

    def next_check(self, now: float) -> float | None:
        return now + ORPHAN_POLL_S if self._held else None
