"""Any sequence of API calls, including bad input, keeps the mixer consistent (hypothesis state machine).

After every tick: the output rows are exactly the live participants, 160 bytes each; while no prompt
is playing the output equals the naive reference mixer; recordings receive one frame per tick.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bridge.mixer import Mixer, MixerError, Prompt, UnknownParticipant, g711
from bridge.prompts import tone
from tests.mixer.mixer_reference import NaiveParticipant, naive_mix

BEEP = Prompt("beep", tone((1000.0,), 0.06))
PAYLOADS = st.one_of(
    st.none(), st.binary(min_size=160, max_size=160), st.binary(min_size=1, max_size=400), st.just(b"")
)
GAINS = [0.0, -6.0, 6.0]


def gain(db: float) -> float:
    return 1.0 if db == 0.0 else float(np.float32(10 ** (db / 20)))


class CountingSink:
    def __init__(self) -> None:
        self.frames = 0
        self.closed = False

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        assert samples.dtype == np.int16 and samples.shape == (160,)
        self.frames += 1

    def close(self) -> None:
        self.closed = True


class MixerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sinks: list[CountingSink] = []
        self.mixer = Mixer(sink_factory=self._sink, capacity=8)
        self.people: dict[int, NaiveParticipant] = {}
        self.inputs: dict[int, bytes | None] = {}
        self.plays: dict[int, tuple[int | None, int | None]] = {}  # handle -> (pid, conference)
        self.recorded: dict[int, tuple[CountingSink, int]] = {}  # conference -> (sink, ticks at start)
        self.ticks = 0
        self.gone: list[int] = []

    def _sink(self, path: str, rate: int) -> CountingSink:
        sink = CountingSink()
        self.sinks.append(sink)
        return sink

    @initialize(count=st.integers(2, 6), data=st.data())
    def some_people(self, count: int, data: st.DataObject) -> None:
        for _ in range(count):
            self.add(data.draw(st.integers(0, 1)), data.draw(st.sampled_from(g711.CODECS)), False, False)

    @rule(conference=st.integers(0, 1), codec=st.sampled_from(g711.CODECS), muted=st.booleans(), deaf=st.booleans())
    def add(self, conference: int, codec: str, muted: bool, deaf: bool) -> None:
        pid = self.mixer.add(conference, codec=codec, muted=muted, deaf=deaf)
        assert pid not in self.people
        self.people[pid] = NaiveParticipant(pid, conference, codec, muted, deaf)

    @precondition(lambda self: self.people)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.people)))
        self.mixer.remove(pid)
        del self.people[pid]
        self.inputs.pop(pid, None)
        self.gone.append(pid)

    @precondition(lambda self: self.people)
    @rule(data=st.data(), flag=st.sampled_from(["muted", "deaf"]), value=st.booleans())
    def set_flag(self, data: st.DataObject, flag: str, value: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(self.people)))
        getattr(self.mixer, f"set_{flag}")(pid, value)
        setattr(self.people[pid], flag, value)

    @precondition(lambda self: self.people)
    @rule(data=st.data(), gin=st.sampled_from(GAINS), gout=st.sampled_from(GAINS))
    def set_gain(self, data: st.DataObject, gin: float, gout: float) -> None:
        pid = data.draw(st.sampled_from(sorted(self.people)))
        self.mixer.set_gain(pid, input_db=gin, output_db=gout)
        self.people[pid].gain_in, self.people[pid].gain_out = gain(gin), gain(gout)

    def _write(self, pid: int, payload: bytes | None) -> None:
        self.mixer.write(pid, payload)
        if payload is not None and len(payload) != 160:  # padded with silence / cut, like the mixer says
            silence = bytes([0xFF if self.people[pid].codec == "PCMU" else 0xD5])
            payload = (payload + silence * 160)[:160]
        self.inputs[pid] = payload

    @rule(pid=st.integers(-5, 10_000))
    def unknown_participant(self, pid: int) -> None:
        if pid in self.people:
            return
        for call in (lambda: self.mixer.write(pid, b"\xff" * 160), lambda: self.mixer.set_muted(pid, True)):
            try:
                call()
            except UnknownParticipant:
                pass
            else:
                raise AssertionError(f"no error for unknown participant {pid}")

    @precondition(lambda self: self.people)
    @rule(data=st.data(), to_conference=st.booleans(), exclusive=st.booleans(), loop=st.booleans())
    def play(self, data: st.DataObject, to_conference: bool, exclusive: bool, loop: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(self.people)))
        if to_conference:
            conference = self.people[pid].conference
            handle = self.mixer.play(BEEP, conference=conference, exclusive=exclusive, loop=loop)
            self.plays[handle] = (None, conference)
        else:
            handle = self.mixer.play(BEEP, pid=pid, exclusive=exclusive, loop=loop)
            self.plays[handle] = (pid, None)

    @precondition(lambda self: self.plays)
    @rule()
    def stop_plays(self) -> None:
        for handle in self.plays:
            self.mixer.stop_play(handle)
        self.plays.clear()

    @rule(conference=st.integers(0, 4))
    def toggle_recording(self, conference: int) -> None:
        if conference in self.recorded:
            sink, start = self.recorded.pop(conference)
            self.mixer.stop_recording(conference)
            assert sink.closed and sink.frames == self.ticks - start
        else:
            self.mixer.start_recording(conference, "ignored.wav")
            self.recorded[conference] = (self.sinks[-1], self.ticks)
            try:
                self.mixer.start_recording(conference, "again.wav")
            except MixerError:
                pass
            else:
                raise AssertionError("a second recording of one conference was accepted")

    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        # Input for some participants (any length: wrong ones are padded or cut), nothing for the others.
        for pid in sorted(self.people):
            self._write(pid, data.draw(PAYLOADS))
        prompted_pids = {pid for pid, _ in self.plays.values()}
        prompted_confs = {conference for _, conference in self.plays.values()}
        result = self.mixer.tick()
        self.ticks += 1
        assert sorted(result.pids.tolist()) == sorted(self.people)
        assert result.out.shape == (len(self.people), 160)
        self.plays = {h: target for h, target in self.plays.items() if self.mixer.playing(h)}
        # Everyone whom no prompt reached this tick hears exactly what the naive mixer says.
        expected = naive_mix(list(self.people.values()), self.inputs)
        for pid, frame in expected.items():
            if pid not in prompted_pids and self.people[pid].conference not in prompted_confs:
                assert result.frame(pid) == frame
        for pid in self.gone:
            try:
                result.frame(pid)
            except UnknownParticipant:
                pass
            else:
                raise AssertionError(f"frame for removed participant {pid}")
        self.inputs = {}  # consumed: unwritten input is silence next tick

    @invariant()
    def bookkeeping(self) -> None:
        assert len(self.mixer) == len(self.people)
        for conference in range(4):
            assert self.mixer.participants(conference) == sorted(
                p for p, person in self.people.items() if person.conference == conference
            )


MixerMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestMixerStateMachine = MixerMachine.TestCase
