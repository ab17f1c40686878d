"""Mixer behaviour: silence for a lone participant, prompts and music, limiter, talkers, recording, bad input."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.mixer import (
    Mixer,
    MixerError,
    PlayFinished,
    Prompt,
    RecordingFailed,
    TalkingStarted,
    TalkingStopped,
    UnknownParticipant,
    g711,
    limiter,
)
from bridge.prompts import load_prompt, tone

RATE = 8000
T = np.arange(160) / RATE


def sine(freq: float, level: float, tick: int = 0) -> npt.NDArray[np.int16]:
    t = T + tick * 160 / RATE
    return np.rint(level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    return bytes(g711.ulaw_encode(samples))


def noise(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, 160, dtype=np.uint8).tobytes()


def peak_frequencies(samples: npt.NDArray[np.int16], rate: int, count: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peaks: list[float] = []
    for i in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[i] - p) > 30 for p in peaks):
            peaks.append(float(freqs[i]))
        if len(peaks) == count:
            break
    return sorted(peaks)


# --------------------------------------------------------------------------- lone participant, music


@pytest.mark.parametrize("codec", g711.CODECS)
def test_lone_participant_hears_exact_silence(codec: str) -> None:
    mixer = Mixer()
    pid = mixer.add(7, codec=codec)
    other = mixer.add(8)  # another conference does not leak in
    for tick in range(20):
        mixer.write(pid, noise(tick))
        mixer.write(other, noise(100 + tick))
        result = mixer.tick()
        assert result.frame(pid) == bytes([g711.SILENCE_CODES[codec]]) * 160


def test_lone_participant_hears_hold_music_until_someone_joins() -> None:
    music = load_prompt("music")
    mixer = Mixer(hold_music=music)
    pid = mixer.add(1)
    for tick in range(5):
        mixer.write(pid, noise(tick))
        expected = limiter.encode_sum(music.frames[tick].astype(np.int64), g711.PCMU)
        assert mixer.tick().frame(pid) == bytes(expected)
    other = mixer.add(1)
    mixer.write(other, None)
    assert mixer.tick().frame(pid) == bytes([0xFF]) * 160  # the other one is silent: no music any more
    mixer.remove(other)
    mixer.write(pid, noise(9))
    expected = limiter.encode_sum(music.frames[0].astype(np.int64), g711.PCMU)
    assert mixer.tick().frame(pid) == bytes(expected)  # alone again: music restarts from the top


# --------------------------------------------------------------------------- prompts


def test_prompt_to_one_participant_is_heard_by_them_only_then_finishes() -> None:
    beep = Prompt("beep", tone((1000.0,), 0.1))  # 5 frames
    mixer = Mixer()
    a, b, c = (mixer.add(1) for _ in range(3))
    handle = mixer.play(beep, pid=a)
    finished = []
    for tick in range(7):
        result = mixer.tick()
        finished += [e for e in result.events if isinstance(e, PlayFinished)]
        heard = g711.ulaw_decode(result.frame(a))
        if tick < 5:
            np.testing.assert_array_equal(
                result.frame(a), bytes(limiter.encode_sum(beep.frames[tick].astype(np.int64), "PCMU"))
            )
        else:
            assert not heard.any()
        assert result.frame(b) == result.frame(c) == bytes([0xFF]) * 160
    assert finished == [PlayFinished(handle)]
    assert not mixer.playing(handle)


def test_exclusive_prompt_hides_the_conversation_mixed_prompt_does_not() -> None:
    beep = Prompt("beep", tone((1000.0,), 1.0, level_dbov=-20))
    mixer = Mixer()
    talker, listener = mixer.add(1), mixer.add(1)
    speech = sine(300, 8000)
    mixer.write(talker, ulaw(speech))
    exclusive = mixer.play(beep, pid=listener, exclusive=True)
    frame = mixer.tick().frame(listener)
    assert frame == bytes(limiter.encode_sum(beep.frames[0].astype(np.int64), "PCMU"))
    mixer.stop_play(exclusive)
    mixer.play(beep, pid=listener)
    mixer.write(talker, ulaw(speech))
    frame = mixer.tick().frame(listener)
    decoded_speech = g711.ulaw_decode(ulaw(speech)).astype(np.int64)
    assert frame == bytes(limiter.encode_sum(decoded_speech + beep.frames[0].astype(np.int64), "PCMU"))


def test_conference_prompt_reaches_everyone_but_the_deaf() -> None:
    beep = Prompt("beep", tone((1000.0,), 0.2))
    mixer = Mixer()
    talker = mixer.add(1)
    muted = mixer.add(1, muted=True)
    alaw = mixer.add(1, codec="PCMA", muted=True)
    deaf = mixer.add(1, deaf=True)
    elsewhere = mixer.add(2)
    mixer.play(beep, conference=1)
    result = mixer.tick()
    frame = beep.frames[0].astype(np.int64)
    assert result.frame(talker) == result.frame(muted) == bytes(limiter.encode_sum(frame, "PCMU"))
    assert result.frame(alaw) == bytes(limiter.encode_sum(frame, "PCMA"))
    assert result.frame(deaf) == bytes([0xFF]) * 160
    assert result.frame(elsewhere) == bytes([0xFF]) * 160


def test_exclusive_conference_prompt_and_its_end() -> None:
    beep = Prompt("beep", tone((1000.0,), 0.04))  # 2 frames
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    handle = mixer.play(beep, conference=1, exclusive=True)
    for tick in range(2):
        mixer.write(a, ulaw(sine(300, 8000, tick)))
        result = mixer.tick()
        expected = bytes(limiter.encode_sum(beep.frames[tick].astype(np.int64), "PCMU"))
        assert result.frame(a) == result.frame(b) == expected
    assert PlayFinished(handle) in result.events
    mixer.write(a, ulaw(sine(300, 8000, 2)))
    assert mixer.tick().frame(b) == ulaw(g711.ulaw_decode(ulaw(sine(300, 8000, 2))))


class _ListSink:
    def __init__(self) -> None:
        self.frames: list[npt.NDArray[np.int16]] = []

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        self.frames.append(samples.copy())

    def close(self) -> None:
        pass


def test_exclusive_conference_prompt_is_recorded_and_heard_under_a_personal_prompt() -> None:
    beep = Prompt("beep", tone((1000.0,), 0.04))
    chirp = Prompt("chirp", tone((2000.0,), 0.04))
    sink = _ListSink()
    mixer = Mixer(sink_factory=lambda path, rate: sink)
    a, b = mixer.add(1), mixer.add(1)
    mixer.start_recording(1, "ignored.wav")
    mixer.play(beep, conference=1, exclusive=True)
    mixer.play(chirp, pid=b)  # mixed with what b hears: the conference's exclusive prompt
    for tick in range(2):
        mixer.write(a, ulaw(sine(300, 8000, tick)))
        result = mixer.tick()
        prompt = beep.frames[tick].astype(np.int64)
        assert np.array_equal(sink.frames[tick], limiter.linear_sum(prompt))
        assert result.frame(a) == bytes(limiter.encode_sum(prompt, "PCMU"))
        both = prompt + chirp.frames[tick].astype(np.int64)
        assert result.frame(b) == bytes(limiter.encode_sum(both, "PCMU"))


def test_looping_play_loops_and_play_target_leaving_ends_it() -> None:
    beep = Prompt("beep", tone((1000.0,), 0.04))
    mixer = Mixer()
    a = mixer.add(1)
    handle = mixer.play(beep, pid=a, loop=True)
    outputs = [mixer.tick().frame(a) for _ in range(6)]
    assert outputs[0] == outputs[2] == outputs[4] and outputs[1] == outputs[3] == outputs[5]
    mixer.remove(a)
    assert PlayFinished(handle, completed=False) in mixer.tick().events


def test_play_argument_errors() -> None:
    mixer = Mixer()
    beep = load_prompt("beep")
    with pytest.raises(MixerError):
        mixer.play(beep)
    with pytest.raises(MixerError):
        mixer.play(beep, pid=1, conference=1)
    with pytest.raises(UnknownParticipant):
        mixer.play(beep, pid=12345)


# --------------------------------------------------------------------------- limiter


@pytest.mark.parametrize("codec", g711.CODECS)
def test_fifty_full_scale_talkers_never_wrap(codec: str) -> None:
    mixer = Mixer()
    talkers = [mixer.add(1, codec=codec) for _ in range(50)]
    listener = mixer.add(1, codec=codec, muted=True)
    for tick in range(10):
        full = g711.encode(sine(200, 32767, tick), codec).tobytes()
        for pid in talkers:
            mixer.write(pid, full)
        result = mixer.tick()
        reference = sine(200, 32767, tick).astype(np.int64)
        for pid in (listener, talkers[0], talkers[-1]):
            heard = g711.decode(result.frame(pid), codec).astype(np.int64)
            loud = np.abs(reference) > 2000
            assert np.all(np.sign(heard[loud]) == np.sign(reference[loud])), "the sum wrapped"
            assert np.abs(heard).max() <= 32767
            assert np.abs(heard[np.abs(reference) > 8000]).min() > 28000  # limited, loud, no hole


# --------------------------------------------------------------------------- talker detection


def test_talker_detection_has_hysteresis_and_reports_events() -> None:
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    events = []
    loud, quiet = sine(400, 6000), sine(400, 60)  # about -15 dBov and -55 dBov
    script = [loud] * 3 + [quiet] * 10 + [loud] + [quiet] * 30
    for tick, frame in enumerate(script):
        mixer.write(a, ulaw(frame))
        mixer.write(b, None)
        events += [(tick, e) for e in mixer.tick().events]
    # Starts on the 2nd loud frame, survives a 10-frame pause and a blip, stops after 25 quiet frames.
    assert events == [(1, TalkingStarted(a)), (38, TalkingStopped(a))]


def test_muting_a_talker_stops_talking() -> None:
    mixer = Mixer()
    a = mixer.add(1)
    for _ in range(3):
        mixer.write(a, ulaw(sine(400, 6000)))
        mixer.tick()
    assert mixer.talking(a)
    mixer.set_muted(a, True)
    assert not mixer.talking(a)
    assert TalkingStopped(a) in mixer.tick().events


# --------------------------------------------------------------------------- recording


@pytest.mark.parametrize("rate", [8000, 16000])
def test_recording_contains_the_tones_played(tmp_path: Path, rate: int) -> None:
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    path = tmp_path / "rec.wav"
    for tick in range(10):  # before the recording starts: not recorded
        mixer.write(a, ulaw(sine(2500, 8000, tick)))
        mixer.tick()
    mixer.start_recording(1, str(path), rate=rate)
    mixer.play(Prompt("chord", tone((697.0, 1209.0), 1.0)), conference=1)
    for tick in range(50):
        mixer.write(a, ulaw(sine(440, 6000, tick)))
        mixer.write(b, None)
        mixer.tick()
    mixer.stop_recording(1)
    for tick in range(10):  # after the stop: not recorded either
        mixer.write(a, ulaw(sine(2500, 8000, tick)))
        mixer.tick()
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (rate, 2, 1)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(samples) == 50 * 160 * rate // 8000
    assert peak_frequencies(samples, rate, 3) == pytest.approx([440.0, 697.0, 1209.0], abs=10)
    assert not mixer.recording(1)


class _BrokenSink:
    def __init__(self) -> None:
        self.closed = False

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        raise OSError("disk full")

    def close(self) -> None:
        self.closed = True


def test_recording_failure_stops_the_recording_not_the_mix() -> None:
    sink = _BrokenSink()
    mixer = Mixer(sink_factory=lambda path, rate: sink)
    a = mixer.add(1)
    mixer.start_recording(1, "ignored.wav")
    result = mixer.tick()
    assert RecordingFailed(1, "disk full") in result.events
    assert sink.closed and not mixer.recording(1)
    assert mixer.tick().frame(a) == bytes([0xFF]) * 160


def test_recording_arguments(tmp_path: Path) -> None:
    mixer = Mixer()
    with pytest.raises(MixerError):
        mixer.start_recording(1, str(tmp_path / "x.wav"), rate=44100)
    with pytest.raises(MixerError):
        mixer.start_recording(1, str(tmp_path / "no" / "such" / "dir.wav"))
    mixer.start_recording(1, str(tmp_path / "x.wav"))
    with pytest.raises(MixerError):
        mixer.start_recording(1, str(tmp_path / "y.wav"))
    mixer.tick()  # an empty conference records silence, it does not fail
    mixer.stop_recording(1)
    mixer.stop_recording(1)


# --------------------------------------------------------------------------- bad input, bookkeeping


def test_bad_input_never_crashes_the_tick() -> None:
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    mixer.write(a, b"\x00" * 7)  # short: padded with silence
    mixer.write(b, b"\x80" * 400)  # long: cut
    result = mixer.tick()
    assert mixer.bad_frames == 2
    assert g711.ulaw_decode(result.frame(b))[:7].max() < -25000  # b hears a's 7 loud samples
    assert not g711.ulaw_decode(result.frame(b))[7:].any()
    with pytest.raises(UnknownParticipant):
        mixer.write(999, b"\xff" * 160)
    with pytest.raises(UnknownParticipant):
        result.frame(999)
    with pytest.raises(MixerError):
        mixer.add(1, codec="G729")
    with pytest.raises(MixerError):
        mixer.set_gain(a, input_db=float("nan"))
    mixer.remove(a)
    mixer.remove(a)  # idempotent
    with pytest.raises(UnknownParticipant):
        mixer.set_muted(a, True)


def test_write_rows_is_a_batch_write() -> None:
    mixer = Mixer()
    pids = [mixer.add(c % 3) for c in range(9)]
    rows = np.random.default_rng(1).integers(0, 256, (9, 160), dtype=np.uint8)
    mixer.write_rows(np.array(pids), rows)
    batched = mixer.tick()
    batched_frames = {pid: batched.frame(pid) for pid in pids}
    for pid, row in zip(pids, rows, strict=True):
        mixer.write(pid, bytes(row))
    single = mixer.tick()
    assert batched_frames == {pid: single.frame(pid) for pid in pids}
    with pytest.raises(MixerError):
        mixer.write_rows(np.array(pids[:2]), rows)
    with pytest.raises(UnknownParticipant):
        mixer.write_rows(np.array([4242]), rows[:1])


def test_unwritten_input_is_silence_not_a_repeat() -> None:
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    mixer.write(a, ulaw(sine(400, 8000)))
    assert g711.ulaw_decode(mixer.tick().frame(b)).any()
    assert not g711.ulaw_decode(mixer.tick().frame(b)).any()  # a wrote nothing this tick


def test_membership_queries_and_many_participants_grow_storage() -> None:
    mixer = Mixer(capacity=8)
    pids = [mixer.add(i % 5) for i in range(300)]
    assert len(mixer) == 300
    assert mixer.participants(3) == [p for i, p in enumerate(pids) if i % 5 == 3]
    assert mixer.conferences() == [0, 1, 2, 3, 4]
    for p in pids[::2]:
        mixer.remove(p)
    result = mixer.tick()
    assert sorted(result.pids.tolist()) == pids[1::2]
    assert mixer.stats()["participants"] == 150
    assert mixer.conference_of(pids[3]) == 3


def test_frames_for_returns_rows_in_the_callers_order() -> None:
    mixer = Mixer()
    pids = [mixer.add(c % 2, muted=c == 3) for c in range(6)]
    for i, pid in enumerate(pids):
        mixer.write(pid, ulaw(sine(200 + 100 * i, 3000)))
    result = mixer.tick()
    rows = result.frames_for(pids[::-1])
    assert [bytes(r) for r in rows] == [result.frame(p) for p in pids[::-1]]
    with pytest.raises(UnknownParticipant):
        result.frames_for([9999])


def test_write_accepts_any_bytes_like_payload() -> None:
    mixer = Mixer()
    a, b = mixer.add(1), mixer.add(1)
    frame = ulaw(sine(300, 8000))
    expected = None
    for payload in (frame, bytearray(frame), memoryview(frame), np.frombuffer(frame, dtype=np.int8).data):
        mixer.write(a, payload)  # type: ignore[arg-type]
        heard = mixer.tick().frame(b)
        expected = expected or heard
        assert heard == expected and g711.ulaw_decode(heard).any()
    assert mixer.bad_frames == 0
