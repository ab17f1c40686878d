"""The numbers the bridge answers: the common DNIS, the IC pool and the rooms, from the config and the database.

One place computes them for the SIP listener's acceptor (a set lookup on the SIP thread, with or without a
leading ``+``) and the engine's periodic refresh, so a number added in the portal is answered like one in
``[dnis]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Config, expand_numbers
from bridge.db.models import DnisNumber, Room


class ServedNumbers:
    """An immutable set of served numbers; ``number in served`` ignores a leading ``+``."""

    def __init__(self, numbers: Iterable[str] = ()) -> None:
        self.numbers = frozenset(numbers)
        self._bare = frozenset(n.lstrip("+") for n in self.numbers)

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and (number in self.numbers or number.lstrip("+") in self._bare)

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def from_config(cls, config: Config, extra: Iterable[str] = ()) -> ServedNumbers:
        numbers = set(expand_numbers(config.dnis.pool, "dnis.pool"))
        if config.dnis.common:
            numbers.add(config.dnis.common)
        numbers.update(room.number for room in config.room)
        numbers.update(extra)
        return cls(numbers)

    @classmethod
    def load(cls, config: Config, session: Session) -> ServedNumbers:
        """The config's numbers plus every DNIS number and room in the database."""
        stored = [*session.scalars(select(DnisNumber.number)), *session.scalars(select(Room.number))]
        return cls.from_config(config, stored)
