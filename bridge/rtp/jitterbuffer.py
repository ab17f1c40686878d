"""Adaptive jitter buffer for 20 ms G.711 frames, keyed by RTP timestamp. Pure: no clock, no I/O.

Theory of operation. Frames are stored by timestamp (RFC 3550 §5.1: the timestamp, not the sequence number,
says where audio belongs, so reordered packets fall into place and duplicates collide). The mixer pulls one
frame per 20 ms tick with :meth:`JitterBuffer.get`:

* **Buffering**: after start-up (or an underrun) playout waits until ``target`` frames are queued, then starts
  at the earliest queued timestamp.
* **Playing**: each ``get`` returns the frame at the playout timestamp and advances it by 160 samples.
  A missing frame is *concealed* (RFC 3550 leaves this to the receiver): the last good frame is repeated,
  6 dB quieter each time, for at most ``MAX_CONCEALED`` frames; after that ``get`` returns None (silence).
  When the buffer runs dry the buffer goes back to buffering after the concealment.
* **Late and duplicate** packets (a timestamp already played or concealed, or already queued) are dropped
  and counted. A late packet means the buffer was too shallow: ``target`` grows by one frame (up to 80 ms).
  A long run without late packets shrinks it again (down to 20 ms), so delay follows the network.
* **Too deep** (clock drift, a burst after a stall): when more than ``target + DRAIN_SLACK`` frames are queued
  the oldest one is skipped per tick, bringing the delay back to the target.
* **Timestamp jumps** (a new talk spurt after silence suppression, a new stream after SSRC change) farther
  than ``JUMP_FRAMES`` away from the playout point re-synchronise the buffer instead of concealing for ever.
  A timestamp off the 20 ms grid of the playout point is snapped to the nearest frame (a shift under 10 ms).
* **Other packet sizes** (10, 30, 40 ms...) are cut into 20 ms frames; the remainder of a packet waits for
  the next one (``a=ptime:20`` in our SDP asks for 20 ms, but a gateway may insist on 30).

Timestamps are compared modulo 2**32, so wrap-around is seamless.
"""

from __future__ import annotations

import logging
from enum import Enum

import numpy as np

from bridge.mixer.g711 import DECODE_TABLES, ENCODE_TABLES

__all__ = ["JitterBuffer", "JitterState"]

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160
MIN_TARGET = 1  # 20 ms
MAX_TARGET = 4  # 80 ms
START_TARGET = 2
MAX_CONCEALED = 3
DRAIN_SLACK = 2
JUMP_FRAMES = 50  # 1 s
CALM_GETS = 500  # 10 s without a late packet -> shrink the target by one frame
_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def _attenuation_table(codec: str, gain: float) -> bytes:
    """``bytes.translate`` table mapping each code to the code of its sample times ``gain``."""
    decoded = DECODE_TABLES[codec].astype(np.float64) * gain
    samples = np.round(decoded).astype(np.int16)
    return ENCODE_TABLES[codec].take(samples.view(np.uint16)).tobytes()


_HALVE = {codec: _attenuation_table(codec, 0.5) for codec in DECODE_TABLES}


class JitterState(Enum):
    BUFFERING = "buffering"
    PLAYING = "playing"


# The two state changes and why they happen (see the module docstring).
TRANSITIONS: dict[tuple[JitterState, JitterState], str] = {
    (JitterState.BUFFERING, JitterState.PLAYING): "target depth reached",
    (JitterState.PLAYING, JitterState.BUFFERING): "underrun after concealment, timestamp jump or reset",
}


class JitterBuffer:
    """See the module docstring. ``codec`` selects the concealment attenuation table."""

    def __init__(self, codec: str = "PCMU", *, min_target: int = MIN_TARGET, max_target: int = MAX_TARGET) -> None:
        if not 1 <= min_target <= max_target:
            raise ValueError("jitter buffer needs 1 <= min_target <= max_target")
        self._halve = _HALVE[codec]
        self.min_target, self.max_target = min_target, max_target
        self.target = max(min_target, min(START_TARGET, max_target))
        self.state = JitterState.BUFFERING
        self._frames: dict[int, bytes] = {}
        self._head = 0  # BUFFERING: earliest queued timestamp; PLAYING: next timestamp to play
        self._last: bytes | None = None
        self._carry = b""  # the tail of a packet that was not a whole number of 20 ms frames
        self._carry_ts = 0
        self._concealed_run = 0
        self._calm = 0
        self.received = 0
        self.played = 0
        self.concealed = 0
        self.late = 0
        self.duplicates = 0
        self.dropped = 0
        self.bad_size = 0

    def _set_state(self, state: JitterState) -> None:
        if state is not self.state:
            log.debug("jitter buffer %s -> %s: %s", self.state.value, state.value, TRANSITIONS[self.state, state])
            self.state = state

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def depth_ms(self) -> int:
        """Audio currently queued, in milliseconds."""
        return len(self._frames) * 20

    def reset(self) -> None:
        """Forget everything queued (new SSRC, re-INVITE); keep the counters and the learnt target."""
        self._frames.clear()
        self._set_state(JitterState.BUFFERING)
        self._last = None
        self._concealed_run = 0

    def _put_other_size(self, timestamp: int, payload: bytes) -> bool:
        """10, 30, 40 ms... packets: cut the contiguous stream into 20 ms frames, carrying the remainder over
        to the next packet (a gap or reordering discards the carried part)."""
        if not payload:
            self.bad_size += 1
            return False
        carry = self._carry
        if carry and timestamp == (self._carry_ts + len(carry)) & _MASK:
            data, start = carry + payload, self._carry_ts
        else:
            data, start = payload, timestamp
        whole = len(data) - len(data) % FRAME_SAMPLES
        ok = False
        for i in range(0, whole, FRAME_SAMPLES):
            ok = self.put((start + i) & _MASK, data[i : i + FRAME_SAMPLES]) or ok
        self._carry, self._carry_ts = data[whole:], (start + whole) & _MASK
        return ok or bool(self._carry)

    def put(self, timestamp: int, payload: bytes) -> bool:
        """Queue one packet's payload; False if it was dropped (late, duplicate, empty)."""
        if len(payload) != FRAME_SAMPLES:
            return self._put_other_size(timestamp, payload)
        frames = self._frames
        if not frames and self.state is JitterState.BUFFERING:
            self._head = timestamp
            frames[timestamp] = payload
            self.received += 1
            return True
        offset = (timestamp - self._head) & _MASK
        if offset >= _HALF:
            offset -= _MASK + 1  # signed: negative means behind the head
        original = timestamp
        rem = offset % FRAME_SAMPLES
        if rem:  # off the 20 ms grid (a sender's odd timestamp jump): snap to it, shifting by < 10 ms
            offset += FRAME_SAMPLES - rem if rem >= FRAME_SAMPLES // 2 else -rem
            timestamp = (self._head + offset) & _MASK
        if offset < 0:
            if -offset > JUMP_FRAMES * FRAME_SAMPLES:
                timestamp = original
                self._resync(timestamp)
            elif self.state is JitterState.BUFFERING:
                self._head = timestamp  # reordered before the first queued frame: still in time
            else:
                self.late += 1
                self._calm = 0
                if self.target < self.max_target:
                    self.target += 1
                return False
        elif offset > JUMP_FRAMES * FRAME_SAMPLES:
            timestamp = original
            self._resync(timestamp)
        elif timestamp in frames:
            self.duplicates += 1
            return False
        frames[timestamp] = payload
        self.received += 1
        return True

    def _resync(self, timestamp: int) -> None:
        self.dropped += len(self._frames)
        self._frames.clear()
        self._set_state(JitterState.BUFFERING)
        self._head = timestamp

    def get(self) -> bytes | None:
        """The next 20 ms frame (encoded), a concealment frame, or None (nothing to play: silence)."""
        frames = self._frames
        if self.state is JitterState.BUFFERING:
            if len(frames) < self.target:
                return None
            self._set_state(JitterState.PLAYING)
        head = self._head
        if len(frames) > self.target + DRAIN_SLACK:  # too much delay: skip one frame per tick
            if frames.pop(head, None) is not None:
                self.dropped += 1
            head = (head + FRAME_SAMPLES) & _MASK
        frame = frames.pop(head, None)
        self._head = (head + FRAME_SAMPLES) & _MASK
        if frame is not None:
            self.played += 1
            self._last = frame
            self._concealed_run = 0
            self._calm += 1
            if self._calm >= CALM_GETS:
                self._calm = 0
                if self.target > self.min_target:
                    self.target -= 1
            return frame
        if not frames:
            if self._concealed_run >= MAX_CONCEALED:
                self._set_state(JitterState.BUFFERING)
                self._last = None
                return None
        return self._conceal()

    def _conceal(self) -> bytes | None:
        if self._last is None or self._concealed_run >= MAX_CONCEALED:
            return None
        self._concealed_run += 1
        self.concealed += 1
        self._last = self._last.translate(self._halve)
        return self._last
