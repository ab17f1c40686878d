"""Produce the key-map help prompts: ``python -m bridge.conference.make_prompts``.

The phrases say the DTMF key map of :data:`bridge.conference.machine.KEY_MAP` (README "DTMF key map");
they are spoken with the mixer's prompt maker (espeak-ng + sox, 8 kHz 16-bit mono) into
``bridge/conference/prompts/``. The WAVs are committed, so this only runs when the key map changes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

HELP_PROMPTS: Final[dict[str, str]] = {
    "help_participant": "Press star six to mute or unmute yourself. Press star zero to hear this again.",
    "help_moderator": (
        "Press star six to mute or unmute yourself. Star two starts or stops recording. "
        "Star three tells the number of participants. Star four mutes or unmutes everybody. "
        "Star five locks or unlocks the conference. Star star ends the conference for everyone."
    ),
}
PROMPT_DIR: Final = Path(__file__).with_name("prompts")


def main() -> int:
    from bridge.mixer.make_prompts import make_prompt

    PROMPT_DIR.mkdir(exist_ok=True)
    for name, text in HELP_PROMPTS.items():
        target = PROMPT_DIR / f"{name}.wav"
        make_prompt(text, target)
        print(f"{target}  {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
