"""The narrow interfaces the conference service drives, so it can be tested with fakes.

``SipPort`` is a subset of :class:`bridge.sip.service.SipService`; ``MediaPort`` is implemented by
:class:`bridge.conference.media.MixerMedia` over :class:`bridge.mixer.mixer.Mixer`.
"""

from __future__ import annotations

from typing import Any, Protocol


class SipPort(Protocol):
    def dial(self, *, called: str, calling: str, trunk_group: str | None = None, display_name: str = "") -> Any: ...

    def answer(self, leg: Any) -> None: ...

    def reject(self, leg: Any, status: int, reason: str) -> None: ...

    def hangup(self, leg: Any, cause: str = "normal") -> None: ...


class MediaPort(Protocol):
    def add(self, conference: int, *, codec: str = "PCMU", muted: bool = False) -> int: ...

    def remove(self, pid: int) -> None: ...

    def set_muted(self, pid: int, muted: bool) -> None: ...

    def play(self, prompts: tuple[str, ...], *, pid: int | None = None, conference: int | None = None) -> float:
        """Queue ``prompts``; returns their total duration in seconds."""
        ...

    def start_recording(self, conference: int, path: str) -> None: ...

    def stop_recording(self, conference: int) -> None: ...
