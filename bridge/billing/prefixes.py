"""E.164 digits and a longest-prefix table.

The table is one dict from prefix to value plus the set of prefix lengths present; a lookup probes the
number's own prefixes from the longest present length down, so it costs at most one dict probe per distinct
prefix length (15 at most for E.164), whatever the size of the plan. A 50,000-prefix plan rates as fast as a
50-prefix one (``bench/rating.py`` measures it against a linear scan).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from bridge.billing import RatePlanError

#: E.164 allows 15 digits including the country code.
MAX_DIGITS = 15
_SEPARATORS = str.maketrans("", "", " -().")

V = TypeVar("V")


def digits(number: str) -> str:
    """The E.164 digits of ``number``: ``"+44 20 7946-0000"`` -> ``"442079460000"``.

    A leading ``+`` and the separators `` -().`` are dropped; anything else that is not a digit, an empty
    number or one longer than 15 digits raises :class:`RatePlanError`. National formats are not guessed
    here: the conference service hands us numbers already normalised to E.164.
    """
    text = number.strip().translate(_SEPARATORS)
    text = text.removeprefix("+")
    if not text or not text.isascii() or not text.isdigit():
        raise RatePlanError(f"not an E.164 number: {number!r}")
    if len(text) > MAX_DIGITS:
        raise RatePlanError(f"number longer than {MAX_DIGITS} digits: {number!r}")
    return text


class PrefixTable(Generic[V]):
    """Prefix -> value, looked up by longest match. Built once; read-only afterwards."""

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(self, items: Iterable[tuple[str, V]]) -> None:
        by_prefix: dict[str, V] = {}
        for prefix, value in items:
            if prefix in by_prefix:
                raise RatePlanError(f"prefix {prefix} appears twice")
            by_prefix[prefix] = value
        self._by_prefix = by_prefix
        #: Distinct prefix lengths, longest first: the probes a lookup makes.
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))

    def longest(self, number_digits: str) -> tuple[str, V] | None:
        """The longest prefix of ``number_digits`` in the table and its value, or ``None``."""
        size = len(number_digits)
        table = self._by_prefix
        for length in self._lengths:
            if length <= size:
                prefix = number_digits[:length]
                value = table.get(prefix)
                if value is not None:
                    return prefix, value
        return None

    def __len__(self) -> int:
        return len(self._by_prefix)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_prefix)
