"""The narrow interfaces the conference service and the dial-in lobby drive, so both run with fakes.

* :class:`SipPort` is what they need of :class:`bridge.sip.service.SipService`: dial / answer / reject /
  hang up a :class:`~bridge.sip.leg.SipLeg`, the media endpoint the SIP side opened for a leg (handed over
  explicitly: a signalling leg carries no media), and the trunk group a dial will leave on (dial pacing).
* :class:`MediaEndpoint` is one leg's media as the media owner uses it: a 20 ms frame in and out, DTMF out,
  statistics (codec, loss) and close. :class:`bridge.rtp.endpoint.RtpEndpoint` is one (a socket per leg);
  :class:`bridge.rtp.sharedleg.BatchedLeg` (legs on shared sockets, ``sip.media_path = "batched"``) is the
  other -- the media owner reads and writes those in one batch, and calls the rest of this interface.
* :class:`MediaPort` is :class:`bridge.conference.media.MixerMedia`: participants of the mixer, each bound
  to an endpoint, prompts, mute, recording, and a leg's media quality for its CDR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bridge.sip.leg import SipLeg


class MediaEndpoint(Protocol):
    def read_frame(self, now: float) -> bytes | None:
        """One 20 ms frame in the negotiated codec, or None (nothing: silence)."""
        ...

    def write_frame(self, payload: bytes) -> None: ...

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None: ...

    def stats(self) -> dict[str, Any]:
        """At least ``codec`` (``"PCMU"``/``"PCMA"``) and ``loss_fraction``; RTCP figures when known."""
        ...

    def close(self) -> None: ...


class SipPort(Protocol):
    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> SipLeg: ...

    def answer(self, leg: SipLeg) -> None: ...

    def reject(self, leg: SipLeg, status: int, reason: str) -> None: ...

    def hangup(self, leg: SipLeg, cause: str = "normal") -> None: ...

    def media_endpoint(self, leg: SipLeg) -> MediaEndpoint | None:
        """The leg's media, opened by the SIP side (None: none open, or the leg is gone)."""
        ...

    def first_group(self, number: str) -> str | None:
        """The trunk group a dial of ``number`` placed now would be sent on first (None: no route)."""
        ...


@dataclass(frozen=True)
class MediaQuality:
    """What a leg's CDR records of its media."""

    codec: str = "PCMU"
    packet_loss: float | None = None


class MediaPort(Protocol):
    def attach(self, conference: int, endpoint: MediaEndpoint | None, *, muted: bool = False) -> int:
        """Add a participant to ``conference`` (negative ids: lobby calls) bound to ``endpoint``; its pid."""
        ...

    def detach(self, pid: int) -> None: ...

    def quality(self, pid: int) -> MediaQuality: ...

    def set_muted(self, pid: int, muted: bool) -> None: ...

    def play(self, prompts: tuple[str, ...], *, pid: int | None = None, conference: int | None = None) -> float:
        """Queue ``prompts``; returns their total duration in seconds."""
        ...

    def start_recording(self, conference: int, path: str) -> None: ...

    def stop_recording(self, conference: int) -> None: ...
