"""MixerMedia over the real mixer: the tick's read / mix / write over fake endpoints, talker events, prompt
sequences, the key-map help prompts, recording."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.conference.media import MixerMedia
from bridge.mixer.g711 import ULAW_DECODE, ULAW_SILENCE, ulaw_encode
from bridge.mixer.mixer import Mixer
from bridge.prompts import load_prompt


class FakeEndpoint:
    def __init__(self, frame: bytes | None, codec: str = "PCMU") -> None:
        self.frame = frame
        self.codec = codec
        self.sent: list[bytes] = []
        self.closed = False

    def read_frame(self, now: float) -> bytes | None:
        return self.frame

    def write_frame(self, payload: bytes) -> None:
        self.sent.append(payload)

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None: ...

    def stats(self) -> dict[str, Any]:
        return {"codec": self.codec, "loss_fraction": 0.5}

    def close(self) -> None:
        self.closed = True


def _energy(payload: bytes) -> float:
    return float(np.abs(ULAW_DECODE[np.frombuffer(payload, np.uint8)]).mean())


LOUD = ulaw_encode((8000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype(np.int16)).tobytes()


def test_tick_routes_n_minus_1_audio_in_the_same_tick() -> None:
    talking: list[tuple[int, bool]] = []
    media = MixerMedia(Mixer(), on_talking=lambda pid, on: talking.append((pid, on)))
    a, b, c = FakeEndpoint(LOUD), FakeEndpoint(None), FakeEndpoint(b"\xff" * 100)  # talking, silent, short frame
    d = FakeEndpoint(None)  # c's silent partner: a participant alone would hear the hold music
    pa, _, _, _ = media.attach(1, a), media.attach(1, b), media.attach(2, c), media.attach(2, d)
    media.tick(0.0)
    assert all(len(e.sent) == 1 for e in (a, b, c))  # mixed and sent in the tick that read the frames
    assert _energy(b.sent[0]) > 1000  # what b hears in tick 1 is a's frame of tick 1
    for _ in range(2):
        media.tick(0.0)
    assert all(len(e.sent) == 3 and len(e.sent[-1]) == 160 for e in (a, b, c))
    assert _energy(b.sent[-1]) > 1000  # b hears a
    assert _energy(a.sent[-1]) < 50 and _energy(c.sent[-1]) < 50  # a does not hear itself; c is elsewhere
    assert talking == [(pa, True)]  # one callback for talker changes
    media.detach(pa)
    media.tick(0.0)
    media.tick(0.0)
    assert len(a.sent) == 3 and len(media) == 3  # nothing more reaches a detached endpoint


def test_a_participant_without_endpoint_hears_prompts_and_sends_nothing() -> None:
    media = MixerMedia(Mixer())
    pid = media.attach(1, None)
    assert media.quality(pid).codec == "PCMU" and media.quality(pid).packet_loss is None and len(media) == 0
    other = media.attach(1, FakeEndpoint(None, codec="PCMA"))
    assert media.quality(other).codec == "PCMA" and media.quality(other).packet_loss == 0.5


def test_sequences_are_concatenated_and_heard_by_that_leg_only() -> None:
    media = MixerMedia(Mixer())
    a = media.attach(1, None)
    b = media.attach(1, None)
    seconds = media.play(("participant_count", "3"), pid=a)
    assert seconds == pytest.approx(load_prompt("participant_count").duration + load_prompt("3").duration)
    result = media.mixer.tick()
    assert set(result.frame(a)) != {ULAW_SILENCE}
    assert set(result.frame(b)) == {ULAW_SILENCE}


@pytest.mark.parametrize("name", ["help_participant", "help_moderator"])
def test_help_prompts_exist_and_play(name: str) -> None:
    media = MixerMedia(Mixer())
    pid = media.attach(1, None)
    assert media.play((name,), pid=pid) > 2.0


def test_unknown_prompt_is_skipped_not_raised() -> None:
    media = MixerMedia(Mixer())
    pid = media.attach(1, None)
    assert media.play(("no-such-prompt",), pid=pid) == 0.0
    media.warm()


def test_recording_writes_a_wav(tmp_path: Path) -> None:
    media = MixerMedia(Mixer())
    pid = media.attach(7, None)
    media.start_recording(7, str(tmp_path / "r.wav"))
    media.mixer.write(pid, bytes(160))
    for _ in range(10):
        media.mixer.tick()
    media.stop_recording(7)
    with wave.open(str(tmp_path / "r.wav")) as w:
        assert w.getnframes() >= 1600
