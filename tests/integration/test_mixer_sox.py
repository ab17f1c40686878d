"""The mixer's audio files and G.711 tables checked by an independent tool: SoX (libsox's own G.711 and WAV code).

- SoX decodes a raw µ-law / A-law file of all 256 codes exactly as our tables do;
- SoX reads a conference recording we wrote (8 and 16 kHz) and its conversion of it carries the tones
  that were played (FFT of SoX's output, not of our own samples);
- the committed voice prompts are valid 8 kHz mono 16-bit WAVs according to SoX, with speech energy in them.
A missing ``sox`` fails these tests (it is a declared test peer), it does not skip them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bridge.mixer import Mixer, Prompt, g711
from bridge.prompts import VOICE_PROMPTS, tone

pytestmark = pytest.mark.integration


def sox() -> str:
    path = shutil.which("sox")
    assert path, "sox is not installed (make deps / apt-get install sox)"
    return path


@pytest.mark.parametrize(
    ("codec", "kind", "table"), [("PCMU", "u-law", g711.ULAW_DECODE), ("PCMA", "a-law", g711.ALAW_DECODE)]
)
def test_sox_decodes_every_code_like_our_tables(tmp_path: Path, codec: str, kind: str, table: np.ndarray) -> None:
    raw = tmp_path / "codes.raw"
    raw.write_bytes(bytes(range(256)))
    out = tmp_path / "codes.s16"
    subprocess.run(
        [sox(), "-t", "raw", "-r", "8000", "-c", "1", "-e", kind, "-b", "8", str(raw),
         "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", str(out)],
        check=True, timeout=30,
    )  # fmt: skip
    decoded = np.frombuffer(out.read_bytes(), dtype="<i2")
    np.testing.assert_array_equal(decoded, table)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_sox_reads_our_recording_and_hears_the_tones(tmp_path: Path, rate: int) -> None:
    mixer = Mixer()
    talker = mixer.add(1)
    mixer.add(1, muted=True)  # a listener: the recording is what they hear
    path = tmp_path / "rec.wav"
    mixer.start_recording(1, str(path), rate=rate)
    mixer.play(Prompt("dtmf-5", tone((770.0, 1336.0), 1.0)), conference=1)
    t = np.arange(160) / 8000
    for tick in range(50):
        sine = np.rint(6000 * np.sin(2 * np.pi * 440 * (t + tick * 0.02))).astype(np.int16)
        mixer.write(talker, bytes(g711.ulaw_encode(sine)))
        mixer.tick()
    mixer.stop_recording(1)
    info = subprocess.run([sox(), "--i", str(path)], capture_output=True, text=True, check=True, timeout=30).stdout
    assert f"Sample Rate    : {rate}" in info and "Channels       : 1" in info and "16-bit" in info
    converted = tmp_path / "rec.f32"
    subprocess.run(
        [sox(), str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-L", str(converted)],
        check=True, timeout=30,
    )  # fmt: skip
    samples = np.frombuffer(converted.read_bytes(), dtype="<f4").astype(np.float64)
    assert len(samples) == rate  # one second
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    strongest = sorted(float(f) for f in freqs[np.argsort(spectrum)[::-1]][:60])
    for expected in (440.0, 770.0, 1336.0):
        assert any(abs(f - expected) < 5 for f in strongest), (expected, strongest[:10])
    # Nothing else of note: the energy outside the three tones is small.
    near = np.zeros_like(freqs, dtype=bool)
    for f0 in (440.0, 770.0, 1336.0):
        near |= np.abs(freqs - f0) < 20
    assert spectrum[~near].max() < 0.02 * spectrum[near].max()


def test_committed_prompts_are_valid_for_sox() -> None:
    folder = Path(__file__).resolve().parents[2] / "bridge" / "prompts" / "wav"
    for name in VOICE_PROMPTS:
        path = folder / f"{name}.wav"
        info = subprocess.run([sox(), "--i", str(path)], capture_output=True, text=True, check=True, timeout=30)
        assert "Sample Rate    : 8000" in info.stdout and "Channels       : 1" in info.stdout, name
        stat = subprocess.run([sox(), str(path), "-n", "stat"], capture_output=True, text=True, check=True, timeout=30)
        rms = float(next(line for line in stat.stderr.splitlines() if line.startswith("RMS     amplitude")).split()[-1])
        assert rms > 0.02, f"{name}: no speech ({rms})"
