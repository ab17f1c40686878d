"""DTMF as RFC 4733 telephone events: receiver and sender. Pure: payloads and timestamps in, digits/packets out.

Receiver (RFC 4733 §2.5.2). One key press is one *event*, identified by its RTP timestamp (and SSRC): all
its packets carry the same timestamp and a growing duration, and the last one has the E (end) bit, usually
sent three times. We report a digit once, when its first end packet arrives; repeated end packets and
updates of an event already reported are retransmits and are dropped. If every end packet is lost the
event is still reported, once, when a packet of a newer event arrives or when audio resumes past the
event's end (§2.5.2.2 "the receiver ... SHOULD consider the event ended").

Sender (§2.5.1). The sender is driven by the 20 ms media clock: while an event is in progress, each tick
produces one packet (the first with the marker bit, then updates with the duration so far) instead of an
audio packet, and the final tick produces three end packets. The event timestamp is the audio timestamp
of its first tick; audio resumes with the timestamp just past the event. A 40 ms pause separates queued
digits so a repeated digit is seen as two presses.
"""

from __future__ import annotations

import struct
from collections import deque

__all__ = ["DTMF_EVENTS", "DtmfReceiver", "DtmfSender"]

DTMF_EVENTS = "0123456789*#ABCD"
"""RFC 4733 §3.2 event codes 0-15, in order."""
_EVENT_CODES = {digit: code for code, digit in enumerate(DTMF_EVENTS)}
_EVENT = struct.Struct("!BBH")
_MASK = 0xFFFFFFFF
_HALF = 0x80000000
FRAME_SAMPLES = 160
END_REPEATS = 3
GAP_TICKS = 2
VOLUME = 10  # -10 dBm0
MIN_DURATION_MS = 40
MAX_DURATION_MS = 8000  # the 16-bit duration field holds at most 8.19 s at 8 kHz


class DtmfReceiver:
    """De-duplicating RFC 4733 receiver (see the module docstring)."""

    def __init__(self) -> None:
        self._current: tuple[int, int] | None = None  # (ssrc, timestamp) of an event not yet reported
        self.pending = False
        """An event has started but has not been reported yet (an attribute: read per audio packet)."""
        self._current_event = 0
        self._current_end = 0  # timestamp just past the current event's latest duration
        self._recent: deque[tuple[int, int]] = deque(maxlen=16)  # events already reported
        self.reported = 0
        self.retransmits = 0
        self.malformed = 0

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str:
        """One telephone-event packet; returns the digits completed by it ("" almost always, at most two)."""
        if len(payload) < 4:
            self.malformed += 1
            return ""
        event, flags, duration = _EVENT.unpack_from(payload)
        key = (ssrc, timestamp)
        if key in self._recent:
            self.retransmits += 1
            return ""
        digits = ""
        if self._current is not None and self._current != key:
            digits = self._report()  # the previous event lost all its end packets
        if event >= len(DTMF_EVENTS):
            return digits  # flash hook, tones... (RFC 4733 §3.2 events above 15): not digits
        self._current, self._current_event = key, event
        self.pending = True
        self._current_end = (timestamp + duration) & _MASK
        if flags & 0x80:
            digits += self._report()
        return digits

    def audio(self, timestamp: int) -> str:
        """An audio packet arrived: if it lies past a pending event, that event ended (its end packets lost)."""
        if self._current is None:
            return ""
        if (timestamp - self._current_end) & _MASK < _HALF:
            return self._report()
        return ""

    def flush(self) -> str:
        """Report a pending event now (the stream stopped or changed)."""
        return self._report() if self._current is not None else ""

    def _report(self) -> str:
        assert self._current is not None
        self._recent.append(self._current)
        self._current = None
        self.pending = False
        self.reported += 1
        return DTMF_EVENTS[self._current_event]


class DtmfSender:
    """Queues digits and turns them into RFC 4733 payloads, one tick at a time (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, int]] = deque()  # (event code, duration in samples)
        self._event = -1
        self._duration = 0
        self._elapsed = 0
        self._timestamp = 0
        self._gap = 0
        self.sent = 0

    def add(self, digit: str, duration_ms: int = 160) -> None:
        """Queue one digit (``0-9 * # A-D``); raises ValueError for anything else (a bug of the caller)."""
        code = _EVENT_CODES.get(digit.upper()) if isinstance(digit, str) and len(digit) == 1 else None
        if code is None:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        duration_ms = max(MIN_DURATION_MS, min(MAX_DURATION_MS, duration_ms))
        self._queue.append((code, duration_ms * 8))

    @property
    def idle(self) -> bool:
        """No event in progress, no pause running and nothing queued: every tick is audio."""
        return self._event < 0 and self._gap == 0 and not self._queue

    def tick(self, timestamp: int) -> list[tuple[bool, int, bytes]]:
        """Packets for the tick whose audio timestamp is ``timestamp``: ``[(marker, rtp timestamp, payload)]``.

        Returns [] when the tick carries audio (no event in progress, or the pause between digits).
        """
        if self._event < 0:
            if self._gap > 0:
                self._gap -= 1
                return []
            if not self._queue:
                return []
            self._event, self._duration = self._queue.popleft()
            self._timestamp, self._elapsed = timestamp, FRAME_SAMPLES
            return [(True, self._timestamp, _EVENT.pack(self._event, VOLUME, self._elapsed))]
        self._elapsed += FRAME_SAMPLES
        if self._elapsed < self._duration:
            return [(False, self._timestamp, _EVENT.pack(self._event, VOLUME, self._elapsed))]
        end = _EVENT.pack(self._event, 0x80 | VOLUME, self._elapsed)
        self._event = -1
        self._gap = GAP_TICKS
        self.sent += 1
        return [(False, self._timestamp, end)] * END_REPEATS
