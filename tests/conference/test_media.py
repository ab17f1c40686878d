"""MixerMedia over the real mixer: prompt sequences, the key-map help prompts, recording."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from bridge.conference.media import MixerMedia
from bridge.mixer.g711 import ULAW_SILENCE
from bridge.mixer.mixer import Mixer
from bridge.prompts import load_prompt


def test_sequences_are_concatenated_and_heard_by_that_leg_only() -> None:
    media = MixerMedia(Mixer())
    a = media.add(1)
    b = media.add(1)
    seconds = media.play(("participant_count", "3"), pid=a)
    assert seconds == pytest.approx(load_prompt("participant_count").duration + load_prompt("3").duration)
    result = media.mixer.tick()
    assert set(result.frame(a)) != {ULAW_SILENCE}
    assert set(result.frame(b)) == {ULAW_SILENCE}


@pytest.mark.parametrize("name", ["help_participant", "help_moderator"])
def test_help_prompts_exist_and_play(name: str) -> None:
    media = MixerMedia(Mixer())
    pid = media.add(1)
    assert media.play((name,), pid=pid) > 2.0


def test_unknown_prompt_is_skipped_not_raised() -> None:
    media = MixerMedia(Mixer())
    pid = media.add(1)
    assert media.play(("no-such-prompt",), pid=pid) == 0.0
    media.warm()


def test_recording_writes_a_wav(tmp_path: Path) -> None:
    media = MixerMedia(Mixer())
    pid = media.add(7)
    media.start_recording(7, str(tmp_path / "r.wav"))
    media.mixer.write(pid, bytes(160))
    for _ in range(10):
        media.mixer.tick()
    media.stop_recording(7)
    with wave.open(str(tmp_path / "r.wav")) as w:
        assert w.getnframes() >= 1600
