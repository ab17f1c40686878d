"""The batched mixer against the naive per-sample reference, for random layouts, mutes, deaf flags and gains."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mixer import Mixer, g711
from tests.mixer.mixer_reference import NaiveParticipant, naive_mix

GAINS_DB = [0.0, 0.0, 0.0, -6.0, 3.5, -20.0, 12.0]


def _gain(db: float) -> float:
    return 1.0 if db == 0.0 else float(np.float32(10 ** (db / 20)))


def _loud() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=160, max_size=160)


def _quiet() -> st.SearchStrategy[bytes]:
    # Codes near zero in both laws (µ-law 0x70-0x7F / 0xF0-0xFF, A-law 0x50-0x5F / 0xD0-0xDF).
    near_zero = [*range(0x70, 0x80), *range(0xF0, 0x100), *range(0x50, 0x60), *range(0xD0, 0xE0)]
    return st.lists(st.sampled_from(near_zero), min_size=160, max_size=160).map(bytes)


frames = st.one_of(st.none(), _loud(), _quiet())
participant = st.fixed_dictionaries(
    {
        "conference": st.integers(0, 2),
        "codec": st.sampled_from(g711.CODECS),
        "muted": st.booleans(),
        "deaf": st.booleans(),
        "gain_in": st.sampled_from(GAINS_DB),
        "gain_out": st.sampled_from(GAINS_DB),
    }
)


def _add(mixer: Mixer, spec: dict[str, object], people: dict[int, NaiveParticipant]) -> None:
    conference, codec = int(spec["conference"]), str(spec["codec"])  # type: ignore[call-overload]
    pid = mixer.add(conference, codec=codec, muted=bool(spec["muted"]), deaf=bool(spec["deaf"]))
    gin, gout = float(spec["gain_in"]), float(spec["gain_out"])  # type: ignore[arg-type]
    if gin or gout:
        mixer.set_gain(pid, input_db=gin, output_db=gout)
    people[pid] = NaiveParticipant(
        pid, conference, codec, bool(spec["muted"]), bool(spec["deaf"]), _gain(gin), _gain(gout)
    )


def _tick_and_compare(mixer: Mixer, people: dict[int, NaiveParticipant], data: st.DataObject) -> None:
    inputs = {pid: data.draw(frames) for pid in people}
    for pid, payload in inputs.items():
        mixer.write(pid, payload)
    result = mixer.tick()
    expected = naive_mix(list(people.values()), inputs)
    assert sorted(result.pids.tolist()) == sorted(people)
    for pid, frame in expected.items():
        assert result.frame(pid) == frame, f"participant {people[pid]}"
    # The batch arrays say the same as frame().
    for row, pid in enumerate(result.pids.tolist()):
        assert bytes(result.out[row]) == expected[pid]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(participant, min_size=1, max_size=9), data=st.data())
def test_batched_mix_equals_naive_mix(specs: list[dict[str, object]], data: st.DataObject) -> None:
    mixer = Mixer()
    people: dict[int, NaiveParticipant] = {}
    for spec in specs:
        _add(mixer, spec, people)
    _tick_and_compare(mixer, people, data)
    # Membership changes between ticks: the layout is rebuilt and must still agree.
    for _ in range(data.draw(st.integers(1, 3))):
        change = data.draw(st.sampled_from(["add", "remove", "mute", "deaf", "gain", "none"]))
        pid = data.draw(st.sampled_from(sorted(people))) if people else None
        if change == "add" or pid is None:
            _add(mixer, data.draw(participant), people)
        elif change == "remove" and len(people) > 1:
            mixer.remove(pid)
            del people[pid]
        elif change == "mute":
            people[pid].muted = not people[pid].muted
            mixer.set_muted(pid, people[pid].muted)
        elif change == "deaf":
            people[pid].deaf = not people[pid].deaf
            mixer.set_deaf(pid, people[pid].deaf)
        elif change == "gain":
            gin, gout = data.draw(st.sampled_from(GAINS_DB)), data.draw(st.sampled_from(GAINS_DB))
            mixer.set_gain(pid, input_db=gin, output_db=gout)
            people[pid].gain_in, people[pid].gain_out = _gain(gin), _gain(gout)
        _tick_and_compare(mixer, people, data)


@pytest.mark.parametrize("seed", [1, 2])
def test_overloaded_conference_equals_naive_mix(seed: int) -> None:
    # 40 full-scale talkers: conference sums far beyond the limiter table (clamped per conference),
    # with input/output gains on some, muted and A-law members: still exactly the naive result.
    rng = np.random.default_rng(seed)
    mixer = Mixer()
    people: dict[int, NaiveParticipant] = {}
    for i in range(40):
        codec = "PCMA" if i % 7 == 0 else "PCMU"
        muted = i % 11 == 0
        pid = mixer.add(5, codec=codec, muted=muted)
        gin, gout = (12.0, -20.0) if i % 5 == 0 else (0.0, 0.0)
        mixer.set_gain(pid, input_db=gin, output_db=gout)
        people[pid] = NaiveParticipant(pid, 5, codec, muted, False, _gain(gin), _gain(gout))
    loud = [0x80, 0x81, 0x00, 0x01, 0xAA, 0x2A]  # near full scale, both signs, both laws
    inputs = {pid: bytes(rng.choice(loud, 160).astype(np.uint8)) for pid in people}
    for pid, payload in inputs.items():
        mixer.write(pid, payload)
    result = mixer.tick()
    expected = naive_mix(list(people.values()), inputs)
    for pid, frame in expected.items():
        assert result.frame(pid) == frame
