"""The batched N-1 conference mixer: one ``tick()`` mixes every conference at once.

Theory of operation
-------------------
Every participant owns one row of a preallocated ``(capacity, 160)`` uint8 array of encoded input
(``write()`` is a row copy). Membership, mute/deaf flags and gains change rarely, so they are turned
into a *layout* only when they change: rows are permuted so that each category is contiguous and,
inside a category, grouped by codec then conference:

    C  muted, hears, output gain != 0 dB   individual output, no contribution
    A  talks and hears                      individual output (N-1), contributes
    B  talks, deaf                          contributes, hears silence
    D  muted, hears, output gain == 0 dB    shares its conference's full-mix frame
    E  muted and deaf                       nothing

Per tick, with no Python loop per participant or per sample:

1. decode the contributing rows (A, B): one ``take`` per *two* samples in a 64K-entry pair table,
   to float32 in quarter steps (``x = sample / 4``, see ``QUARTER``); ``take`` in ``clip`` mode, which
   never clips here (uint16 indexes, 64K entries) but is much cheaper than the default ``raise``;
2. energy per row by ``vecdot`` -> talker detection with hysteresis -> events;
3. input gains (only rows that have one), then per-conference sums ``T = M @ x`` with ``M`` a
   CSR membership matrix (conference x contributing row), accumulated by scipy's kernel into an
   array that already holds the table bias (``T`` is biased: its truncation is a table index);
4. plays that everyone in a conference hears (prompts, hold music) are added to ``T``; recordings
   take the limited ``T`` of their conference; ``T`` is clamped per conference so that every N-1
   index lands inside the wide table (``limiter.MARGIN``);
5. individual rows, in blocks of ``BLOCK``: ``T[conference] - x`` (N-1; a broadcast when the block
   is one conference, else a row gather), float32 -> int32 -> intp (two SIMD casts: numpy's direct
   float32 -> intp cast is scalar and cost more than both), which *is* the limiter-table index
   (``(sum >> 2) + offset``: quarter steps truncated), then one ``take`` in the limit+encode table of
   the codec. Output gains (rare) are redone afterwards for their rows only, through floats;
6. shared rows (D) copy their conference's full-mix frame, encoded once per conference and codec,
   only for the conferences that have such rows;
7. exclusive and personal prompts overwrite their rows (a loop over plays, not participants).

Sums are exact: samples and gained contributions are integers, held in float32 as quarter steps,
exact while the bias plus a conference's sum of magnitudes stays below 2**22 quarter steps (about
500 full-scale talkers at 0 dB); past that the sum is far beyond the limiter's range anyway.
Everything here is pure: no sockets, no clock (recordings write through an injectable sink).
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from bridge.mixer import g711, limiter
from bridge.mixer.events import (
    MixerError,
    MixerEvent,
    PlayFinished,
    RecordingFailed,
    TalkingStarted,
    TalkingStopped,
    UnknownParticipant,
)
from bridge.mixer.g711 import SAMPLES_PER_FRAME
from bridge.mixer.prompts import Prompt

log = logging.getLogger(__name__)


def _private_csr_kernel() -> Callable[..., None] | None:
    """scipy's kernel behind ``csr_matrix @ dense`` (called directly: ~15 us less dispatch per tick), if this
    scipy has it with the expected signature and result; else None and the mixer uses the public operator."""
    try:
        from scipy.sparse._sparsetools import csr_matvecs
    except ImportError:  # pragma: no cover - another scipy layout
        return None
    mat = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    dense = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = np.full((2, 2), 0.5, dtype=np.float32)
    try:
        csr_matvecs(2, 3, 2, mat.indptr, mat.indices, mat.data, dense.ravel(), out.ravel())
    except Exception:  # pragma: no cover - the signature changed
        return None
    if not np.array_equal(out, 0.5 + mat @ dense):  # pragma: no cover - the semantics changed
        return None
    kernel: Callable[..., None] = csr_matvecs
    return kernel


_csr_matvecs = _private_csr_kernel()

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

CODEC_INDEX: Final = {g711.PCMU: 0, g711.PCMA: 1}
_CODEC_NAMES: Final = (g711.PCMU, g711.PCMA)
_SILENCE: Final = np.array([g711.ULAW_SILENCE, g711.ALAW_SILENCE], dtype=np.uint8)
_SILENCE_FRAMES: Final = tuple(bytes([code]) * SAMPLES_PER_FRAME for code in _SILENCE.tolist())
#: Internal sample unit: a quarter of a linear int16 step, so that truncating a biased value to int
#: *is* the limiter-table index (``(sum >> 2) + INDEX_OFFSET``) with no shift pass.
QUARTER: Final = 1.0 / (1 << limiter.INDEX_SHIFT)
#: Bias that moves a sum (in quarter units) to its limiter-table index (exact in float32).
_BIAS: Final = float(limiter.WIDE_OFFSET)
#: Conference sums (biased) are clamped to this range; see ``limiter.MARGIN``.
_CLAMP: Final = (float(limiter.MARGIN), float(limiter.TABLE_SIZE - 1 + 3 * limiter.MARGIN))
_WIDE_MAX: Final = float(limiter.WIDE_SIZE - 1)


def _pair_table(codec: str) -> npt.NDArray[np.float64]:
    """Decode two code bytes at once: uint16 (two bytes in memory order) -> two float32 in quarter units.

    Half as many ``take`` calls per sample as a 256-entry table; the 512 KiB table stays in L2.
    Stored as float64 only so that one ``take`` moves both float32 (the bytes are two float32).
    """
    decoded = g711.DECODE_TABLES[codec].astype(np.float32) * np.float32(QUARTER)
    u = np.arange(65536)
    first, second = (u & 0xFF, u >> 8) if sys.byteorder == "little" else (u >> 8, u & 0xFF)
    pairs = np.empty((65536, 2), dtype=np.float32)
    pairs[:, 0] = decoded[first]
    pairs[:, 1] = decoded[second]
    table: npt.NDArray[np.float64] = pairs.view(np.float64).reshape(65536)
    table.setflags(write=False)
    return table


_DECODE_PAIRS: Final = tuple(_pair_table(c) for c in _CODEC_NAMES)
_ENCODE: Final = tuple(limiter.LIMIT_ENCODE[c] for c in _CODEC_NAMES)
_ENCODE_WIDE: Final = tuple(limiter.LIMIT_ENCODE_WIDE[c] for c in _CODEC_NAMES)

#: Rows per block in the N-1/encode step (float32 + int32 + intp temporaries: 2.5 KiB per row). 128
#: rather than 256 keeps 1 x 1000's working set (pair table, x, encode table, temporaries) in L2: -3..5 %.
BLOCK: Final = 128
MIN_GAIN_DB: Final = -60.0
MAX_GAIN_DB: Final = 12.0

# Categories, in row order (see the module docstring).
_CAT_C, _CAT_A, _CAT_B, _CAT_D, _CAT_E, _CAT_DEAD = range(6)


class RecordingSink(Protocol):
    """Where a conference recording goes: ``write`` 8 kHz int16 frames, ``close`` once."""

    def write(self, samples: npt.NDArray[np.int16]) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[str, int], RecordingSink]


def _default_sink(path: str, rate: int) -> RecordingSink:
    from bridge.mixer.recording import WavRecorder

    return WavRecorder(path, rate=rate)


@dataclass(frozen=True)
class TalkerSettings:
    """Talker detection: frame energy in dBov with hysteresis (start above, stop below, for N ticks)."""

    start_dbov: float = -40.0
    stop_dbov: float = -48.0
    start_ticks: int = 2
    stop_ticks: int = 25


class MixResult:
    """One tick's output. ``pids[i]`` receives ``out[i]`` (160 encoded bytes in its own codec).

    ``out`` and ``pids`` are views into the mixer's buffers, valid until the next ``tick()``.
    """

    __slots__ = ("pids", "out", "events", "_slot_of_pid", "_slots", "_view")

    def __init__(
        self, pids: I64, out: U8, events: tuple[MixerEvent, ...], slot_of_pid: I64, slots: dict[int, int]
    ) -> None:
        self.pids = pids
        self.out = out
        self.events = events
        self._slot_of_pid = slot_of_pid
        self._slots = slots
        self._view = out.data.cast("B") if out.size and out.flags.c_contiguous else None

    def frame(self, pid: int) -> bytes:
        """The encoded frame for ``pid`` (raises ``UnknownParticipant``). Cheap: a dict lookup and a copy."""
        slot = self._slots.get(pid)
        if slot is None or slot >= len(self.out):  # unknown, or added after this tick: no output yet
            raise UnknownParticipant(pid)
        if self._view is None:
            return bytes(self.out[slot])
        start = slot * SAMPLES_PER_FRAME
        return self._view[start : start + SAMPLES_PER_FRAME].tobytes()

    def frames_for(self, pids: Sequence[int] | npt.NDArray[np.integer]) -> U8:
        """Output rows for ``pids`` in that order (one gather; for senders that keep their own leg order)."""
        ids = np.asarray(pids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self._slot_of_pid)):
            raise UnknownParticipant("frames_for: unknown participant id")
        slots = self._slot_of_pid[ids]
        if len(slots) and (slots.min() < 0 or slots.max() >= len(self.out)):
            raise UnknownParticipant("frames_for: unknown participant id")
        rows: U8 = self.out[slots]
        return rows


@dataclass
class _Play:
    handle: int
    prompt: Prompt
    pid: int | None
    conference: int | None
    exclusive: bool
    loop: bool
    position: int = 0


@dataclass
class _Recording:
    conference: int
    sink: RecordingSink


class _Layout:
    """Row ranges and matrices derived from membership; rebuilt only when membership changes."""

    def __init__(self) -> None:
        self.n = 0
        self.contrib = (0, 0)  # rows [a, b) contribute (categories B, A) ... see Mixer._rebuild
        self.individual = (0, 0)
        self.shared = (0, 0)
        self.deaf_segments: list[tuple[int, int, int]] = []  # (start, stop, codec)
        self.contrib_segments: list[tuple[int, int, int]] = []
        self.individual_segments: list[tuple[int, int, int]] = []
        self.shared_segments: list[tuple[int, int, int]] = []
        # Step 6, per shared segment: (start, stop, codec, its conferences, each row's index among them).
        self.shared_plan: list[tuple[int, int, int, I64, I64]] = []
        self.conferences: I64 = np.zeros(0, dtype=np.int64)  # dense index -> conference id
        self.conf_index: dict[int, int] = {}
        self.row_conf: I64 = np.zeros(0, dtype=np.int64)  # row -> dense conference index
        self.membership: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self.gain_in_rows: I64 = np.zeros(0, dtype=np.int64)  # relative to contrib start
        self.gain_in: F32 = np.zeros((0, 1), dtype=np.float32)
        self.gain_out_rows: I64 = np.zeros(0, dtype=np.int64)  # relative to individual start
        self.gain_out: F32 = np.zeros((0, 1), dtype=np.float32)
        # Output-gain rows (absolute), their dense conference and codec (step 5 fixes them up afterwards).
        self.gain_out_abs: I64 = np.zeros(0, dtype=np.int64)
        self.gain_out_conf: I64 = np.zeros(0, dtype=np.int64)
        self.gain_out_codec: I64 = np.zeros(0, dtype=np.int64)
        # Step 5 blocks: (start, stop, codec, conference if the whole block is one conference else -1,
        # dense conference of each row).
        self.blocks: list[tuple[int, int, int, int, I64]] = []
        self.lone: I64 = np.zeros(0, dtype=np.int64)  # dense indexes of conferences with one member
        self.hold_position: I64 = np.zeros(0, dtype=np.int64)  # hold-music frame of each lone conference


class Mixer:
    """All conferences of the node, mixed together every 20 ms tick. Pure: no I/O, no clock."""

    def __init__(
        self,
        *,
        rate: int = g711.SAMPLE_RATE,
        hold_music: Prompt | None = None,
        talker: TalkerSettings | None = None,
        sink_factory: SinkFactory | None = None,
        capacity: int = 64,
    ) -> None:
        if rate != g711.SAMPLE_RATE:
            raise MixerError(f"internal rate {rate} Hz not supported (only {g711.SAMPLE_RATE})")
        self.rate = rate
        self.hold_music = hold_music
        self.talker = talker or TalkerSettings()
        self._sink_factory = sink_factory or _default_sink
        self._pids = itertools.count(1)
        self._handles = itertools.count(1)
        self._n = 0  # used slots (alive or dead until the next rebuild)
        self._cap = 0
        self._slot_of_pid: I64 = np.full(64, -1, dtype=np.int64)  # for the vectorised batch calls
        self._slots: dict[int, int] = {}  # the same, for the per-participant calls (a dict lookup is cheaper)
        self._codec_of_pid: dict[int, int] = {}
        self._alloc(max(8, capacity))
        self._layout = _Layout()
        self._dirty = True
        self._plays: dict[int, _Play] = {}
        self._recordings: dict[int, _Recording] = {}
        self._pending: list[MixerEvent] = []
        self.ticks = 0
        self.bad_frames = 0
        self._thr_start = self._dbov_to_energy(self.talker.start_dbov)
        self._thr_stop = self._dbov_to_energy(self.talker.stop_dbov)

    # ------------------------------------------------------------------ storage

    # Per-slot state (rows of the same index belong together; permuted together by _rebuild).
    _pid: I64
    _conf: I64
    _codec: I64
    _muted: BoolArray
    _deaf: BoolArray
    _alive: BoolArray
    _gin: F32
    _gout: F32
    _talking: BoolArray
    _run_above: I64
    _run_below: I64
    _inp: U8

    def _alloc(self, cap: int) -> None:
        """Grow every per-slot array to ``cap`` rows, keeping the used ones."""
        n = self._n

        def grow(name: str, dtype: type[Any], fill: float, width: int = 0) -> None:
            shape = (cap, width) if width else (cap,)
            new = np.full(shape, fill, dtype=dtype)
            if self._cap:
                new[:n] = getattr(self, name)[:n]
            setattr(self, name, new)

        for name, dtype, fill in (("_pid", np.int64, -1), ("_conf", np.int64, 0), ("_codec", np.int64, 0),
                                  ("_muted", np.bool_, False), ("_deaf", np.bool_, False),
                                  ("_alive", np.bool_, False), ("_gin", np.float32, 1.0),
                                  ("_gout", np.float32, 1.0), ("_talking", np.bool_, False),
                                  ("_run_above", np.int64, 0), ("_run_below", np.int64, 0)):  # fmt: skip
            grow(name, dtype, fill)
        grow("_inp", np.uint8, g711.ULAW_SILENCE, SAMPLES_PER_FRAME)
        self._inp_view = self._inp.data.cast("B")  # write(): one memcpy per frame
        self._out: U8 = np.empty((cap, SAMPLES_PER_FRAME), dtype=np.uint8)
        self._x: F32 = np.zeros((cap, SAMPLES_PER_FRAME), dtype=np.float32)  # contributions
        if not hasattr(self, "_v"):  # block temporaries (step 5 of tick), intp so take() need not convert
            self._v: F32 = np.empty((BLOCK, SAMPLES_PER_FRAME), dtype=np.float32)
            self._idx: npt.NDArray[np.intp] = np.empty((BLOCK, SAMPLES_PER_FRAME), dtype=np.intp)
            self._idx32: npt.NDArray[np.int32] = np.empty((BLOCK, SAMPLES_PER_FRAME), dtype=np.int32)
        self._cap = cap

    _PER_SLOT = ("_pid", "_conf", "_codec", "_muted", "_deaf", "_alive", "_gin", "_gout",
                 "_talking", "_run_above", "_run_below", "_inp")  # fmt: skip

    def _slot(self, pid: int) -> int:
        slot = self._slots.get(pid)
        if slot is None:
            raise UnknownParticipant(f"unknown participant {pid}")
        return slot

    @staticmethod
    def _dbov_to_energy(dbov: float) -> float:
        """Frame energy (sum of squares over 160 samples, in quarter units) of a signal at ``dbov`` RMS."""
        return float(SAMPLES_PER_FRAME * (32768.0 * QUARTER) ** 2 * 10 ** (dbov / 10))

    # ------------------------------------------------------------------ membership

    def add(self, conference: int, *, codec: str = g711.PCMU, muted: bool = False, deaf: bool = False) -> int:
        """Add a participant to ``conference`` (any int id); returns its participant id."""
        if codec not in CODEC_INDEX:
            raise MixerError(f"codec {codec!r} not supported (PCMU, PCMA)")
        pid = next(self._pids)
        if self._n == self._cap:
            self._alloc(self._cap * 2)
        if pid >= len(self._slot_of_pid):
            grown = np.full(max(2 * len(self._slot_of_pid), pid + 1), -1, dtype=np.int64)
            grown[: len(self._slot_of_pid)] = self._slot_of_pid
            self._slot_of_pid = grown
        s = self._n
        self._n += 1
        self._pid[s] = pid
        self._conf[s] = conference
        self._codec[s] = CODEC_INDEX[codec]
        self._muted[s] = muted
        self._deaf[s] = deaf
        self._alive[s] = True
        self._gin[s] = self._gout[s] = 1.0
        self._talking[s] = False
        self._run_above[s] = self._run_below[s] = 0
        self._inp[s] = _SILENCE[self._codec[s]]
        self._slot_of_pid[pid] = s
        self._slots[pid] = s
        self._codec_of_pid[pid] = CODEC_INDEX[codec]
        self._dirty = True
        return pid

    def remove(self, pid: int) -> None:
        """Remove a participant (idempotent). Its plays end with ``PlayFinished(completed=False)``."""
        try:
            s = self._slot(pid)
        except UnknownParticipant:
            return
        if self._talking[s]:
            self._pending.append(TalkingStopped(pid))
        self._alive[s] = False
        self._talking[s] = False
        self._slot_of_pid[pid] = -1
        del self._slots[pid]
        del self._codec_of_pid[pid]
        for play in [p for p in self._plays.values() if p.pid == pid]:
            del self._plays[play.handle]
            self._pending.append(PlayFinished(play.handle, completed=False))
        self._dirty = True

    def set_muted(self, pid: int, muted: bool) -> None:
        s = self._slot(pid)
        if bool(self._muted[s]) != muted:
            self._muted[s] = muted
            if muted and self._talking[s]:
                self._talking[s] = False
                self._pending.append(TalkingStopped(pid))
            self._run_above[s] = self._run_below[s] = 0
            self._dirty = True

    def set_deaf(self, pid: int, deaf: bool) -> None:
        s = self._slot(pid)
        if bool(self._deaf[s]) != deaf:
            self._deaf[s] = deaf
            self._dirty = True

    def set_gain(self, pid: int, *, input_db: float = 0.0, output_db: float = 0.0) -> None:
        """Per-participant gains in dB, clamped to [-60, +12]; 0 dB is exactly unity."""
        s = self._slot(pid)
        self._gin[s] = self._db_to_gain(input_db)
        self._gout[s] = self._db_to_gain(output_db)
        self._dirty = True

    @staticmethod
    def _db_to_gain(db: float) -> float:
        if db != db:  # NaN
            raise MixerError("gain must be a number")
        db = min(MAX_GAIN_DB, max(MIN_GAIN_DB, db))
        return 1.0 if db == 0.0 else float(np.float32(10 ** (db / 20)))

    def participants(self, conference: int) -> list[int]:
        n = self._n
        mask = self._alive[:n] & (self._conf[:n] == conference)
        return sorted(int(p) for p in self._pid[:n][mask])

    def conferences(self) -> list[int]:
        n = self._n
        return sorted({int(c) for c in self._conf[:n][self._alive[:n]]})

    def talking(self, pid: int) -> bool:
        return bool(self._talking[self._slot(pid)])

    def muted(self, pid: int) -> bool:
        return bool(self._muted[self._slot(pid)])

    def conference_of(self, pid: int) -> int:
        return int(self._conf[self._slot(pid)])

    def __len__(self) -> int:
        return int(np.count_nonzero(self._alive[: self._n]))

    # ------------------------------------------------------------------ input

    def write(self, pid: int, payload: bytes | None) -> None:
        """This tick's encoded input for ``pid`` (``None``: lost/silent). Short frames are padded, long cut."""
        # Called once per leg per tick: a dict lookup and a memoryview copy, no numpy call.
        slot = self._slots.get(pid)
        if slot is None:
            raise UnknownParticipant(f"unknown participant {pid}")
        start = slot * SAMPLES_PER_FRAME
        if payload is None:
            self._inp_view[start : start + SAMPLES_PER_FRAME] = _SILENCE_FRAMES[self._codec_of_pid[pid]]
            return
        if len(payload) == SAMPLES_PER_FRAME:
            try:
                self._inp_view[start : start + SAMPLES_PER_FRAME] = payload
                return
            except (TypeError, ValueError):  # a buffer of another item format: take the slow path
                pass
        self.bad_frames += len(payload) != SAMPLES_PER_FRAME
        row = np.full(SAMPLES_PER_FRAME, _SILENCE[self._codec_of_pid[pid]], dtype=np.uint8)
        data = np.frombuffer(bytes(payload), dtype=np.uint8)[:SAMPLES_PER_FRAME]
        row[: len(data)] = data
        self._inp[slot] = row

    def write_rows(self, pids: Sequence[int] | npt.NDArray[np.integer], frames: U8) -> None:
        """Batch ``write``: ``frames[i]`` (uint8, 160 wide) is the input of ``pids[i]``."""
        ids = np.asarray(pids, dtype=np.int64)
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape != (len(ids), SAMPLES_PER_FRAME):
            raise MixerError(f"write_rows needs uint8 ({len(ids)}, {SAMPLES_PER_FRAME}), got {frames.shape}")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self._slot_of_pid)):
            raise UnknownParticipant("write_rows: unknown participant id")
        slots = self._slot_of_pid[ids]
        if np.any(slots < 0):
            raise UnknownParticipant("write_rows: unknown participant id")
        self._inp[slots] = frames

    # ------------------------------------------------------------------ prompts

    def play(
        self,
        prompt: Prompt,
        *,
        pid: int | None = None,
        conference: int | None = None,
        exclusive: bool = False,
        loop: bool = False,
    ) -> int:
        """Play ``prompt`` to one participant or to a whole conference; returns a handle.

        Mixed with the conversation, or ``exclusive``: the target hears only the prompt meanwhile.
        A conference play is heard by everyone in it (and recorded); deaf participants only hear
        prompts played to them personally.
        """
        if (pid is None) == (conference is None):
            raise MixerError("play needs exactly one of pid= or conference=")
        if pid is not None:
            self._slot(pid)
        handle = next(self._handles)
        self._plays[handle] = _Play(handle, prompt, pid, conference, exclusive, loop)
        return handle

    def stop_play(self, handle: int) -> None:
        """Stop a play (idempotent; no ``PlayFinished`` for plays stopped this way)."""
        self._plays.pop(handle, None)

    def playing(self, handle: int) -> bool:
        return handle in self._plays

    # ------------------------------------------------------------------ recording

    def start_recording(self, conference: int, path: str, *, rate: int = 8000) -> None:
        """Record the mix everyone in ``conference`` hears to a WAV at ``path`` (8000 or 16000 Hz)."""
        if rate not in (8000, 16000):
            raise MixerError(f"recording rate {rate} not supported (8000, 16000)")
        if conference in self._recordings:
            raise MixerError(f"conference {conference} is already being recorded")
        try:
            sink = self._sink_factory(path, rate)
        except OSError as exc:
            raise MixerError(f"cannot record to {path}: {exc}") from exc
        self._recordings[conference] = _Recording(conference, sink)

    def stop_recording(self, conference: int) -> None:
        """Stop and close the recording of ``conference`` (idempotent)."""
        rec = self._recordings.pop(conference, None)
        if rec is not None:
            try:
                rec.sink.close()
            except OSError as exc:
                self._pending.append(RecordingFailed(conference, str(exc)))

    def recording(self, conference: int) -> bool:
        return conference in self._recordings

    def close(self) -> None:
        """Stop every recording."""
        for conference in list(self._recordings):
            self.stop_recording(conference)

    # ------------------------------------------------------------------ layout

    def _rebuild(self) -> None:
        n = self._n
        alive = self._alive[:n]
        muted, deaf = self._muted[:n], self._deaf[:n]
        unity_out = self._gout[:n] == 1.0
        category = np.select(
            [~alive, muted & ~deaf & ~unity_out, ~muted & ~deaf, ~muted & deaf, muted & ~deaf],
            [_CAT_DEAD, _CAT_C, _CAT_A, _CAT_B, _CAT_D],
            default=_CAT_E,
        )
        order = np.lexsort((self._conf[:n], self._codec[:n], category))
        for name in self._PER_SLOT:
            arr = getattr(self, name)
            arr[:n] = arr[:n][order]
        category = category[order]
        live = int(np.count_nonzero(category != _CAT_DEAD))
        self._n = n = live
        self._slot_of_pid[self._pid[:n]] = np.arange(n)
        self._slots = dict(zip(self._pid[:n].tolist(), range(n), strict=True))
        category = category[:n]
        bounds = np.searchsorted(category, np.arange(_CAT_DEAD + 1))  # start of each category

        lay = _Layout()
        lay.n = n
        c0, a0, b0, d0, e0, end = (int(b) for b in bounds)
        lay.individual = (c0, b0)  # C + A
        lay.contrib = (a0, d0)  # A + B
        lay.shared = (d0, e0)
        codec = self._codec[:n]

        def segments(start: int, stop: int) -> list[tuple[int, int, int]]:
            out = []
            for ci in range(len(_CODEC_NAMES)):
                lo = start + int(np.searchsorted(codec[start:stop], ci, side="left"))
                hi = start + int(np.searchsorted(codec[start:stop], ci, side="right"))
                if hi > lo:
                    out.append((lo, hi, ci))
            return out

        # Codec segments inside each category (rows are sorted by codec within a category).
        lay.individual_segments = segments(c0, a0) + segments(a0, b0)
        lay.contrib_segments = segments(a0, b0) + segments(b0, d0)
        lay.shared_segments = segments(d0, e0)
        lay.deaf_segments = segments(b0, d0) + segments(e0, end)

        confs, row_conf = np.unique(self._conf[:n], return_inverse=True)
        lay.conferences = confs.astype(np.int64)
        lay.conf_index = {int(c): i for i, c in enumerate(confs)}
        lay.row_conf = row_conf.astype(np.int64)
        for lo, hi, ci in lay.shared_segments:
            heard, which = np.unique(lay.row_conf[lo:hi], return_inverse=True)
            lay.shared_plan.append((lo, hi, ci, heard.astype(np.int64), which.astype(np.int64)))
        counts = np.bincount(row_conf, minlength=len(confs))
        lay.lone = np.nonzero(counts == 1)[0].astype(np.int64)
        ncontrib = d0 - a0
        lay.membership = sp.csr_matrix(
            (np.ones(ncontrib, dtype=np.float32), (row_conf[a0:d0], np.arange(ncontrib))),
            shape=(len(confs), ncontrib),
        )
        gin = self._gin[a0:d0]
        lay.gain_in_rows = np.nonzero(gin != 1.0)[0].astype(np.int64)
        lay.gain_in = gin[lay.gain_in_rows][:, None].copy()
        gout = self._gout[c0:b0]
        lay.gain_out_rows = np.nonzero(gout != 1.0)[0].astype(np.int64)
        lay.gain_out = gout[lay.gain_out_rows][:, None].copy()
        lay.gain_out_abs = lay.gain_out_rows + c0
        lay.gain_out_conf = lay.row_conf[lay.gain_out_abs]
        lay.gain_out_codec = codec[lay.gain_out_abs].astype(np.int64)
        for lo, hi, ci in lay.individual_segments:
            for start in range(lo, hi, BLOCK):
                stop = min(start + BLOCK, hi)
                block_conf = lay.row_conf[start:stop].copy()
                single = int(block_conf[0]) if block_conf[0] == block_conf[-1] else -1  # sorted by conference
                lay.blocks.append((start, stop, ci, single, block_conf))
        self._x[c0:a0] = 0.0  # category C contributes nothing but shares the N-1 subtraction
        for lo, hi, ci in lay.deaf_segments:
            self._out[lo:hi] = _SILENCE[ci]
        # Hold music carries on where it was for conferences still alone, restarts for the newly alone.
        old = self._layout
        was_alone = dict(zip(old.conferences[old.lone].tolist(), old.hold_position.tolist(), strict=True))
        lay.hold_position = np.array([was_alone.get(c, 0) for c in confs[lay.lone].tolist()], dtype=np.int64)
        self._layout = lay
        self._dirty = False

    # ------------------------------------------------------------------ the tick

    def tick(self) -> MixResult:
        """Mix one 20 ms frame for every conference; consumes the inputs written since the last tick."""
        if self._dirty:
            self._rebuild()
        lay = self._layout
        n = lay.n
        inp, x, v, idx, idx32, out = self._inp, self._x, self._v, self._idx, self._idx32, self._out
        a0, d0 = lay.contrib
        c0, b0 = lay.individual
        events: list[MixerEvent] = self._pending
        self._pending = []

        # 1. decode contributions (rows A + B), two samples per table lookup, in quarter units
        for lo, hi, ci in lay.contrib_segments:
            _DECODE_PAIRS[ci].take(inp[lo:hi].view(np.uint16), out=x[lo:hi].view(np.float64), mode="clip")
            inp[lo:hi] = _SILENCE[ci]  # consumed: a participant who writes nothing next tick is silent
        xc = x[a0:d0]

        # 2. talker detection
        if d0 > a0:
            energy = np.vecdot(xc, xc)
            self._detect_talkers(energy, a0, d0, events)

        # 3. input gains, conference sums
        if len(lay.gain_in_rows):
            rows = lay.gain_in_rows
            xc[rows] = np.rint(xc[rows] * (lay.gain_in / QUARTER)) * QUARTER
        nconf = len(lay.conferences)
        sums = np.full((nconf, SAMPLES_PER_FRAME), _BIAS, dtype=np.float32)  # biased from the start
        if d0 > a0:
            mat = lay.membership
            if _csr_matvecs is not None:  # sums += mat @ xc
                _csr_matvecs(
                    nconf, d0 - a0, SAMPLES_PER_FRAME, mat.indptr, mat.indices, mat.data, xc.ravel(), sums.ravel()
                )
            else:
                sums += np.asarray(mat @ xc, dtype=np.float32)

        # 4. plays everyone in a conference hears
        exclusive_confs = self._conference_plays(sums, events)

        if self._recordings:
            self._record(sums, events)
        heard_sums = sums.clip(*_CLAMP)  # per conference: keeps every N-1 index inside the table

        # 5. individual rows: N-1, limit + encode (truncating the biased value is the index), in blocks
        # of BLOCK rows so the temporaries stay in L2. float32 -> intp is a scalar cast in numpy, so the
        # index takes three SIMD passes: subtract, float32 -> int32, int32 -> intp.
        for start, stop, ci, single, confs in lay.blocks:
            m = stop - start
            vb, i32, ib = v[:m], idx32[:m], idx[:m]
            if single >= 0:  # one conference: broadcast its sum, no gather
                np.subtract(heard_sums[single], x[start:stop], out=vb)
            else:
                heard_sums.take(confs, axis=0, out=vb, mode="clip")  # clip: no out buffering
                np.subtract(vb, x[start:stop], out=vb)
            np.copyto(i32, vb, casting="unsafe")
            np.copyto(ib, i32)
            _ENCODE_WIDE[ci].take(ib, out=out[start:stop], mode="clip")
        if len(lay.gain_out_abs):  # output gains (rare): again from the unclamped sums, then saturate
            rows = lay.gain_out_abs
            raw = sums[lay.gain_out_conf] - x[rows] - _BIAS
            gained = np.rint(raw * (lay.gain_out / QUARTER)) * QUARTER + _BIAS
            np.clip(gained, 0.0, _WIDE_MAX, out=gained)
            index = gained.astype(np.intp)
            for ci in range(len(_CODEC_NAMES)):
                sel = lay.gain_out_codec == ci
                if sel.any():
                    out[rows[sel]] = _ENCODE_WIDE[ci].take(index[sel], mode="clip")

        # 6. shared rows: one encoded frame per conference and codec (only the conferences that have some)
        for lo, hi, ci, heard, which in lay.shared_plan:
            frames = _ENCODE_WIDE[ci].take(heard_sums[heard].astype(np.intp), mode="clip")
            frames.take(which, axis=0, out=out[lo:hi], mode="clip")

        for lo, hi, ci in lay.deaf_segments:
            out[lo:hi] = _SILENCE[ci]
        # 7. exclusive conference plays and personal plays override rows
        for conf_i, frame in exclusive_confs:
            rows = np.nonzero(lay.row_conf == conf_i)[0]  # exclusive conference plays are rare
            self._encode_rows(rows, np.broadcast_to(frame, (len(rows), SAMPLES_PER_FRAME)))
        self._personal_plays(sums, {conf_i for conf_i, _ in exclusive_confs}, events)

        self.ticks += 1
        return MixResult(self._pid[:n], out[:n], tuple(events), self._slot_of_pid, self._slots)

    def _detect_talkers(self, energy: F32, a0: int, d0: int, events: list[MixerEvent]) -> None:
        # Few numpy calls: this runs every tick whatever the layout.
        run_above = self._run_above[a0:d0]
        run_above += 1
        run_above *= energy >= self._thr_start
        run_below = self._run_below[a0:d0]
        run_below += 1
        run_below *= energy < self._thr_stop
        talking = self._talking[a0:d0]
        flip = np.where(talking, run_below >= self.talker.stop_ticks, run_above >= self.talker.start_ticks)
        if flip.any():
            started = flip & ~talking
            stopped = flip & talking
            talking ^= flip
            pids = self._pid[a0:d0]
            events.extend(TalkingStarted(int(p)) for p in pids[started])
            events.extend(TalkingStopped(int(p)) for p in pids[stopped])

    def _next_frame(self, play: _Play, events: list[MixerEvent]) -> F32:
        frames = play.prompt.frames
        frame: F32 = frames[play.position % len(frames)]
        play.position += 1
        if play.position >= len(frames) and not play.loop:
            del self._plays[play.handle]
            events.append(PlayFinished(play.handle))
        return frame

    def _conference_plays(self, sums: F32, events: list[MixerEvent]) -> list[tuple[int, F32]]:
        lay = self._layout
        exclusive: list[tuple[int, F32]] = []
        for play in [p for p in self._plays.values() if p.conference is not None]:
            assert play.conference is not None
            conf_i = lay.conf_index.get(play.conference)
            frame = self._next_frame(play, events)  # time passes for a prompt even in an empty conference
            if conf_i is None:
                continue
            if play.exclusive:
                sums[conf_i] = frame * QUARTER + _BIAS
                exclusive.append((conf_i, frame))
            else:
                sums[conf_i] += frame * QUARTER
        music = self.hold_music
        if music is not None and len(lay.lone):
            sums[lay.lone] += music.frames[lay.hold_position % len(music.frames)] * QUARTER
            lay.hold_position += 1
        return exclusive

    def _encode_rows(self, rows: I64, mix: F32, *, force: bool = False) -> None:
        """Encode unbiased ``mix`` (one row per entry of ``rows``) with each row's output gain and codec.

        Deaf rows are skipped unless ``force`` (a prompt played to a deaf participant personally).
        """
        if not force:
            hears = ~self._deaf[rows]
            rows, mix = rows[hears], mix[hears]
        if not len(rows):
            return
        mix = np.rint(mix * self._gout[rows][:, None])
        index = (mix.astype(np.int64) >> limiter.INDEX_SHIFT) + limiter.INDEX_OFFSET
        codecs = self._codec[rows]
        for ci in range(len(_CODEC_NAMES)):
            sel = codecs == ci
            if sel.any():
                self._out[rows[sel]] = _ENCODE[ci].take(index[sel], mode="clip")

    def _personal_plays(self, sums: F32, exclusive_confs: set[int], events: list[MixerEvent]) -> None:
        """Plays to one participant: their N-1 mix plus the prompt, or the prompt alone if exclusive."""
        lay = self._layout
        a0, d0 = lay.contrib
        for play in [p for p in self._plays.values() if p.pid is not None]:
            assert play.pid is not None
            s = self._slots[play.pid]
            frame = self._next_frame(play, events)
            conf_i = int(lay.row_conf[s])
            if play.exclusive or self._deaf[s]:
                base = np.zeros(SAMPLES_PER_FRAME, dtype=np.float32)
            elif conf_i in exclusive_confs or not a0 <= s < d0:
                base = (sums[conf_i] - _BIAS) / QUARTER  # the conference's prompt, or the full mix (muted row)
            else:
                base = (sums[conf_i] - _BIAS - self._x[s]) / QUARTER
            self._encode_rows(np.array([s], dtype=np.int64), (base + frame)[None, :], force=True)

    def _record(self, sums: F32, events: list[MixerEvent]) -> None:
        lay = self._layout
        for rec in list(self._recordings.values()):
            conf_i = lay.conf_index.get(rec.conference)
            if conf_i is None:
                frame = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
            else:
                index = np.floor(sums[conf_i]).astype(np.int64) + (limiter.INDEX_OFFSET - limiter.WIDE_OFFSET)
                frame = limiter.LIMIT_LINEAR.take(index, mode="clip")
            try:
                rec.sink.write(frame)
            except OSError as exc:
                log.warning("recording of conference %s failed: %s", rec.conference, exc)
                del self._recordings[rec.conference]
                events.append(RecordingFailed(rec.conference, str(exc)))
                try:
                    rec.sink.close()
                except OSError:
                    pass

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, int]:
        """Counters for the status page."""
        n = self._n
        return {
            "conferences": len(self.conferences()),
            "participants": int(np.count_nonzero(self._alive[:n])),
            "ticks": self.ticks,
            "plays": len(self._plays),
            "recordings": len(self._recordings),
            "bad_frames": self.bad_frames,
        }
