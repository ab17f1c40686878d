"""Soft limiter folded into the G.711 encode tables.

A conference sum can exceed int16 by far (50 people shouting). Instead of clipping (which wraps
or clicks) and then encoding, the mixer indexes one 65,536-entry table per codec with
``(sum >> INDEX_SHIFT) + INDEX_OFFSET``: the table maps the wide sum through the limiter curve and
then through the bit-exact G.711 encoder in a single ``take``.

Why ``>> 2``: both G.711 encoders look only at ``sample >> 2`` (see ``g711``), so below the knee
the table is exactly the ITU encoding of the sum; the 2 bits saved buy a 4x (+12 dB) headroom
above full scale in 64K entries. Sums beyond that are clipped to the table's ends by
``take(mode="clip")``, which hold the curve's maximum: the output never wraps.

Curve: identity up to ``KNEE`` (-6 dBFS), then ``KNEE + (FS - KNEE) * tanh((x - KNEE) / (FS - KNEE))``,
continuous with slope 1 at the knee, odd-symmetric, strictly below full scale.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.mixer import g711

FULL_SCALE: Final = 32767
KNEE: Final = 16384
INDEX_SHIFT: Final = 2
INDEX_OFFSET: Final = 32768  # table index of a zero sum
TABLE_SIZE: Final = 65536
#: Sums whose magnitude exceeds this are clipped to the table ends (still limited, never wrapped).
MAX_SUM: Final = (TABLE_SIZE - INDEX_OFFSET) << INDEX_SHIFT


def limit(values: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Apply the limiter curve to wide integer sums (any magnitude); returns int16."""
    x = np.asarray(values, dtype=np.float64)
    mag = np.abs(x)
    span = FULL_SCALE - KNEE
    squashed = KNEE + span * np.tanh((mag - KNEE) / span)
    out = np.where(mag <= KNEE, mag, squashed)
    out = np.minimum(np.rint(out), FULL_SCALE)
    return (np.sign(x) * out).astype(np.int16)


def _build() -> tuple[npt.NDArray[np.int16], dict[str, npt.NDArray[np.uint8]]]:
    index = np.arange(TABLE_SIZE, dtype=np.int64)
    # Every sum in [4q, 4q + 3] shares index q; 4q is its representative (exact below the knee).
    representative = (index - INDEX_OFFSET) << INDEX_SHIFT
    linear = limit(representative)
    linear.setflags(write=False)
    tables = {codec: g711.encode(linear, codec) for codec in g711.CODECS}
    for table in tables.values():
        table.setflags(write=False)
    return linear, tables


_TABLES = _build()
#: Limited linear value per index (for recordings and the naive reference).
LIMIT_LINEAR: Final[npt.NDArray[np.int16]] = _TABLES[0]
#: Per codec: limited + encoded code byte per index.
LIMIT_ENCODE: Final[dict[str, npt.NDArray[np.uint8]]] = _TABLES[1]


#: Wide tables for the batched mixer: the 64K table with ``2 * MARGIN`` saturated entries on each side.
#: The mixer clamps each *conference* sum (cheap: one row per conference) into a range where
#: ``sum - own contribution`` always lands inside the wide table, so the per-sample ``take`` never
#: clips: clipping is a data-dependent branch, and with overloaded conferences (half the indexes out
#: of range) its mispredictions tripled the cost of the lookup. ``MARGIN`` bounds |own contribution|
#: in quarter steps (32124 / 4 at +12 dB input gain < 32768).
MARGIN: Final = 32768
WIDE_OFFSET: Final = INDEX_OFFSET + 2 * MARGIN
WIDE_SIZE: Final = TABLE_SIZE + 4 * MARGIN
_WIDE_INDEX = np.clip(np.arange(WIDE_SIZE) - 2 * MARGIN, 0, TABLE_SIZE - 1)
LIMIT_ENCODE_WIDE: Final[dict[str, npt.NDArray[np.uint8]]] = {
    codec: table.take(_WIDE_INDEX) for codec, table in LIMIT_ENCODE.items()
}
for _table in LIMIT_ENCODE_WIDE.values():
    _table.setflags(write=False)


def index_of(sums: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
    """Table index of wide integer sums (before clipping; ``take(mode="clip")`` clips)."""
    return (sums >> INDEX_SHIFT) + INDEX_OFFSET


def encode_sum(sums: npt.ArrayLike, codec: str) -> npt.NDArray[np.uint8]:
    """Limit and encode integer sums of any magnitude (the slow, obvious path of the mixer's tables)."""
    index = index_of(np.asarray(sums, dtype=np.int64))
    return LIMIT_ENCODE[codec].take(index, mode="clip")


def linear_sum(sums: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Limited int16 samples of integer sums of any magnitude (what a recording stores)."""
    index = index_of(np.asarray(sums, dtype=np.int64))
    return LIMIT_LINEAR.take(index, mode="clip")
