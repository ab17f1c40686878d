"""In-band DTMF (Goertzel): every key, through G.711, once per press; speech-like signals and bad twist refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bridge.mixer.g711 import decode, encode
from bridge.rtp.inband import COLUMNS, KEYS, ROWS, InbandDtmfDetector

RATE = 8000
FRAME = 160


def two_tones(f1: float, f2: float, ms: int, amp1: float = 4000, amp2: float = 4000, phase: float = 0.3) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    x = amp1 * np.sin(2 * np.pi * f1 * t + phase) + amp2 * np.sin(2 * np.pi * f2 * t)
    return np.round(x).astype(np.int16)


def key_tone(digit: str, ms: int = 100, **kwargs: float) -> np.ndarray:
    row = next(i for i, keys in enumerate(KEYS) if digit in keys)
    return two_tones(ROWS[row], COLUMNS[KEYS[row].index(digit)], ms, **kwargs)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def detect(signal: np.ndarray, detector: InbandDtmfDetector | None = None) -> str:
    detector = detector or InbandDtmfDetector()
    frames = signal[: len(signal) // FRAME * FRAME].reshape(-1, FRAME)
    return "".join(detector.feed(f) for f in frames)


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_key_is_detected_once_through_pcmu_and_pcma(digit: str) -> None:
    tone = np.concatenate([silence(30), key_tone(digit, 120), silence(60)])  # not aligned to frames
    assert detect(tone) == digit
    for codec in ("PCMU", "PCMA"):
        assert detect(decode(encode(tone, codec), codec)) == digit


def test_a_sequence_of_presses_and_a_long_press() -> None:
    parts = []
    for digit in "1234#":
        parts += [key_tone(digit, 80), silence(60)]
    parts += [key_tone("9", 2000), silence(40), key_tone("9", 80)]
    assert detect(np.concatenate(parts)) == "1234#99"


def test_a_40_ms_tone_aligned_to_frames_is_enough() -> None:
    assert detect(np.concatenate([key_tone("5", 40), silence(40)])) == "5"


def test_a_20_ms_blip_is_not_a_digit() -> None:
    assert detect(np.concatenate([key_tone("5", 20), silence(40)])) == ""


@pytest.mark.parametrize(
    "signal",
    [
        two_tones(350, 440, 1000),  # dial tone
        two_tones(440, 480, 1000),  # ringback
        two_tones(440, 440, 1000),  # a single tone
        two_tones(697, 770, 1000),  # two row tones
        two_tones(1209, 1336, 1000),  # two column tones
        key_tone("5", 1000, amp1=4000, amp2=800),  # high group 14 dB weaker: twist too large
        key_tone("5", 1000, amp1=1000, amp2=4000),  # high group 12 dB stronger: reverse twist too large
        key_tone("5", 1000, amp1=60, amp2=60),  # too quiet
    ],
    ids=["dial", "ringback", "single", "rows", "columns", "twist", "reverse-twist", "quiet"],
)
def test_non_dtmf_signals_are_refused(signal: np.ndarray) -> None:
    assert detect(signal) == ""


def test_a_key_under_loud_noise_is_refused_but_under_mild_noise_is_found() -> None:
    rng = np.random.default_rng(1)
    tone = key_tone("3", 200).astype(float)
    mild = np.clip(tone + rng.normal(0, 300, tone.size), -32768, 32767).astype(np.int16)
    loud = np.clip(tone + rng.normal(0, 6000, tone.size), -32768, 32767).astype(np.int16)
    assert detect(mild) == "3"
    assert detect(loud) == ""


def test_silence_rearms_the_detector() -> None:
    detector = InbandDtmfDetector()
    assert detect(key_tone("7", 60), detector) == "7"
    detector.silence()
    assert detect(key_tone("7", 60), detector) == "7"


def test_frames_of_the_wrong_size_are_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        InbandDtmfDetector().feed(np.zeros(80, dtype=np.int16))


@settings(max_examples=200)
@given(hnp.arrays(np.int16, FRAME * 3))
def test_arbitrary_audio_never_raises(audio: np.ndarray) -> None:
    result = detect(audio)
    assert result == "" or set(result) <= set("0123456789*#ABCD")


@given(st.sampled_from(list("0123456789*#ABCD")), st.floats(-0.015, 0.015), st.floats(0, 6.28))
def test_frequency_deviation_within_q24_is_accepted(digit: str, deviation: float, phase: float) -> None:
    row = next(i for i, keys in enumerate(KEYS) if digit in keys)
    f1, f2 = ROWS[row] * (1 + deviation), COLUMNS[KEYS[row].index(digit)] * (1 + deviation)
    assert detect(np.concatenate([two_tones(f1, f2, 100, phase=phase), silence(40)])) == digit
