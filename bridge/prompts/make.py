"""Produce the voice prompts: ``python -m bridge.prompts.make [--out DIR] [--voice en-us]``.

Each phrase of ``bridge.prompts.VOICE_PROMPTS`` is spoken by espeak-ng and converted by sox to a small
8 kHz 16-bit mono WAV (telephone band-pass, silence trimmed, normalised to -7 dBFS peak, below the limiter knee) in
``bridge/prompts/wav/``. The WAVs are committed, so this only runs when the phrases change.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bridge.prompts import VOICE_PROMPTS


def make_prompt(text: str, target: Path, *, voice: str = "en-us", speed: int = 160) -> None:
    """Speak ``text`` into ``target`` (8 kHz 16-bit mono WAV)."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install espeak-ng sox)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", "8000", "-b", "16", "-c", "1", "-e", "signed-integer", str(target),
             "sinc", "300-3400", "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
             "reverse", "norm", "-7"],
            check=True,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("wav"))
    parser.add_argument("--voice", default="en-us")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(VOICE_PROMPTS.items()):
        target = args.out / f"{name}.wav"
        make_prompt(text, target, voice=args.voice)
        print(f"{target}  {target.stat().st_size} bytes  {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
