"""The one owner of media: :class:`MixerMedia` maps mixer participants to their endpoints and runs each tick.

Media flows one way (../shared/DESIGN.md "Data flow"): the conference service and the dial-in lobby attach a
participant with the endpoint the SIP side handed over, and from then on only this object touches it. Once
per 20 ms the engine calls :meth:`MixerMedia.tick`, which sends the frames mixed by the previous tick, lets
the RTP poller read the sockets, reads one frame of every endpoint, mixes them all in one batch and keeps
the output for the next tick. Talker changes go to the one ``on_talking(pid, talking)`` callback.

The endpoint interface is narrow on purpose (:class:`~bridge.conference.interfaces.MediaEndpoint`:
``read_frame(now)`` / ``write_frame(bytes)`` / ``close``, plus DTMF and statistics), so the batched RTP path
can replace the per-leg sockets here without the service noticing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from bridge.conference.interfaces import MediaEndpoint, MediaQuality
from bridge.mixer.events import TalkingStarted, TalkingStopped
from bridge.mixer.mixer import Mixer
from bridge.mixer.prompts import Prompt
from bridge.prompts import PROMPT_NAMES, load_prompt
from bridge.rtp.poller import RtpPoller
from bridge.rtp.shared import BatchedMedia
from bridge.rtp.sharedleg import BatchedLeg

log = logging.getLogger(__name__)

FRAME_BYTES = 160  # one 20 ms G.711 frame
CODECS = ("PCMU", "PCMA")


def _ignore_talking(pid: int, talking: bool) -> None:
    pass


class MixerMedia:
    """The :class:`~bridge.conference.interfaces.MediaPort` over :class:`bridge.mixer.mixer.Mixer`.

    ``poller`` (optional) reads every endpoint's socket at the start of :meth:`tick`. ``batched`` (optional) is
    the batched RTP path (:mod:`bridge.rtp.shared`): its legs are read, mixed and sent as arrays, without a
    Python call per leg; other endpoints go one by one. ``on_talking`` receives
    every talker change (the engine wires it to the conference service); it may be set after construction.
    """

    def __init__(
        self, mixer: Mixer, *, poller: RtpPoller | None = None, batched: BatchedMedia | None = None,
        on_talking: Callable[[int, bool], None] = _ignore_talking,
    ) -> None:  # fmt: skip
        self.mixer = mixer
        self.poller = poller
        self.batched = batched
        self.on_talking = on_talking
        self._sequences: dict[tuple[str, ...], Prompt] = {}
        self._endpoints: dict[int, MediaEndpoint] = {}
        self._items: list[tuple[int, MediaEndpoint]] = []
        self._dirty = False
        self._generic: dict[int, MediaEndpoint] = {}  # endpoints not on the batched path
        self._outbox: tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None = None

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

    # --- participants --------------------------------------------------------------------------

    def attach(self, conference: int, endpoint: MediaEndpoint | None, *, muted: bool = False) -> int:
        pid = self.mixer.add(conference, codec=_codec(endpoint), muted=muted)
        if endpoint is not None:
            self._endpoints[pid] = endpoint
            if isinstance(endpoint, BatchedLeg) and endpoint.owner is self.batched:
                endpoint.owner.bind(endpoint, pid)
            else:
                self._generic[pid] = endpoint
            self._dirty = True
        return pid

    def detach(self, pid: int) -> None:
        endpoint = self._endpoints.pop(pid, None)
        if endpoint is not None:
            self._dirty = True
            if self._generic.pop(pid, None) is None and isinstance(endpoint, BatchedLeg):
                endpoint.owner.unbind(endpoint, pid)
        self.mixer.remove(pid)

    def quality(self, pid: int) -> MediaQuality:
        endpoint = self._endpoints.get(pid)
        stats = _stats(endpoint)
        loss = stats.get("loss_fraction")
        return MediaQuality(_codec(endpoint), float(loss) if isinstance(loss, int | float) else None)

    def endpoint(self, pid: int) -> MediaEndpoint | None:
        return self._endpoints.get(pid)

    def __len__(self) -> int:
        """Participants bound to an endpoint."""
        return len(self._endpoints)

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

    # --- the tick ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Read the sockets, mix this tick, send its frames (bench/engine_tick.py measures it)."""
        poller = self.poller
        if poller is not None and len(poller):
            poller.poll(now)
        batched = self.batched
        if batched is not None and len(batched):
            batched.receive(now)
        if self._dirty:
            self._items = list(self._generic.items())
            self._dirty = False
        if self._endpoints or len(self.mixer):  # an idle node does not mix silence
            self.mix(now)
            self.flush(now)

    def mix(self, now: float) -> None:
        """Every endpoint's frame in, one batched mix, the output kept for :meth:`flush`.

        Whole frames go to the mixer in one ``write_rows`` (one join + one array copy instead of a numpy
        call per leg); a leg with nothing this tick is silent (the mixer clears consumed input), and the
        output is kept for :meth:`flush`, which sends it right after the mix: a frame leaves in the tick it
        was played out in (sending it at the start of the next tick, at a steadier instant, cost a whole
        frame of mouth-to-ear delay; the batched legs' ``sendmmsg`` runs in a thread of its own, so the
        instant varies only with this tick's receive and mix).
        """
        if self._dirty:
            self._items = list(self._generic.items())
            self._dirty = False
        mixer = self.mixer
        batched = self.batched
        if batched is not None and len(batched):
            batched_pids, rows = batched.pop(now)
            if len(batched_pids):
                mixer.write_rows(batched_pids, rows)
        pids: list[int] = []
        frames: list[bytes] = []
        for pid, endpoint in self._items:
            try:
                frame = endpoint.read_frame(now)
            except Exception:  # a closing endpoint: its leg is being torn down
                continue
            if frame is None:
                continue
            if len(frame) == FRAME_BYTES:
                pids.append(pid)
                frames.append(frame)
            else:
                mixer.write(pid, frame)  # the mixer pads or cuts odd sizes
        if pids:
            rows = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(pids), FRAME_BYTES)
            mixer.write_rows(pids, rows)
        result = mixer.tick()
        self._outbox = (result.out.copy(), result.pids.copy()) if len(result.pids) else None
        for event in result.events:
            if isinstance(event, TalkingStarted | TalkingStopped):
                self.on_talking(event.pid, isinstance(event, TalkingStarted))

    def flush(self, now: float = 0.0) -> None:
        """Send the frames of the last :meth:`mix`: the batched legs' in one go, then one packet per other
        endpoint."""
        if self._outbox is None:
            return
        out, pid_array = self._outbox
        self._outbox = None
        if self.batched is not None and len(self.batched):
            self.batched.send(pid_array, out, now)
        endpoints = self._generic
        if not endpoints:
            return
        blob = out.tobytes()
        for index, pid in enumerate(pid_array.tolist()):
            endpoint = endpoints.get(pid)
            if endpoint is not None:
                start = index * FRAME_BYTES
                try:
                    endpoint.write_frame(blob[start : start + FRAME_BYTES])
                except Exception:
                    pass  # a closed endpoint: its leg is being torn down

    # --- internals -----------------------------------------------------------------------------

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


def _stats(endpoint: MediaEndpoint | None) -> dict[str, object]:
    if endpoint is None:
        return {}
    try:
        return endpoint.stats()
    except Exception:  # stats are best effort
        return {}


def _codec(endpoint: MediaEndpoint | None) -> str:
    codec = _stats(endpoint).get("codec")
    return codec if isinstance(codec, str) and codec in CODECS else "PCMU"
