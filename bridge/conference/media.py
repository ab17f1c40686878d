"""``MediaPort`` over the batched mixer: prompts by name (sequences concatenated), recordings."""

from __future__ import annotations

import logging

import numpy as np

from bridge.mixer.mixer import Mixer
from bridge.mixer.prompts import Prompt
from bridge.prompts import PROMPT_NAMES, load_prompt

log = logging.getLogger(__name__)


class MixerMedia:
    """Adapts :class:`bridge.mixer.mixer.Mixer` to :class:`bridge.conference.ports.MediaPort`."""

    def __init__(self, mixer: Mixer) -> None:
        self.mixer = mixer
        self._sequences: dict[tuple[str, ...], Prompt] = {}

    def warm(self) -> None:
        """Load every prompt and the recorder now, before the loop runs: the first recording imports
        scipy.signal (seconds on a busy machine) and the first prompt reads its WAV -- neither may stall
        the 20 ms tick or the SIP events later."""
        import bridge.mixer.recording  # noqa: F401 - imported for its side effect (scipy.signal loaded)

        for name in PROMPT_NAMES:
            try:
                load_prompt(name)
            except Exception as exc:
                log.warning("prompt %r unavailable: %s", name, exc)

    def add(self, conference: int, *, codec: str = "PCMU", muted: bool = False) -> int:
        return self.mixer.add(conference, codec=codec, muted=muted)

    def remove(self, pid: int) -> None:
        self.mixer.remove(pid)

    def set_muted(self, pid: int, muted: bool) -> None:
        self.mixer.set_muted(pid, muted)

    def play(self, prompts: tuple[str, ...], *, pid: int | None = None, conference: int | None = None) -> float:
        prompt = self._prompt(prompts)
        if prompt is None:
            return 0.0
        # A prompt to one caller is exclusive (they hear it clearly); a conference prompt mixes in.
        self.mixer.play(prompt, pid=pid, conference=conference, exclusive=pid is not None)
        return prompt.duration

    def start_recording(self, conference: int, path: str) -> None:
        self.mixer.start_recording(conference, path)

    def stop_recording(self, conference: int) -> None:
        self.mixer.stop_recording(conference)

    def _prompt(self, names: tuple[str, ...]) -> Prompt | None:
        cached = self._sequences.get(names)
        if cached is not None:
            return cached
        parts = []
        for name in names:
            try:
                parts.append(load_prompt(name).samples)
            except Exception as exc:  # a missing prompt must not break the call
                log.warning("prompt %r unavailable: %s", name, exc)
        if not parts:
            return None
        prompt = Prompt("+".join(names), np.concatenate(parts).astype(np.int16))
        if len(self._sequences) < 256:
            self._sequences[names] = prompt
        return prompt

