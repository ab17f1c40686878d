"""Meet-me rooms through the same conference service: PIN, moderator PIN and its keys (recording,
lock, end), a full room refusing a caller -- baresip phones on loopback, the recording checked by FFT.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bridge.db.models import Cdr, ConferenceRun, Recording
from tests.integration.ic_harness import Appliance, Baresip, Phones, band_share, wait_for

pytestmark = pytest.mark.integration

ROOM = """
[[room]]
number = "1002"
name = "Board"
pin = "4321"
moderator_pin = "9999"
max_members = 2
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Appliance, list[Baresip]]]:
    phones = Phones(tmp_path)
    try:
        bridge = Appliance(tmp_path, trunk_port=phones.port, extra=ROOM)
    except BaseException:  # no leaked SIPp when the appliance cannot even be configured
        phones.stop()
        raise
    callers: list[Baresip] = []
    try:
        bridge.start()
        for name, user, freq in (("ann", "15557770001", 440.0), ("mod", "15557770002", 880.0),
                                 ("late", "15557770003", 1000.0)):  # fmt: skip
            callers.append(Baresip(tmp_path, name, user=user, freq=freq))
        yield bridge, callers
    finally:
        for caller in callers:
            caller.stop()
        bridge.stop()
        phones.stop()


def test_room_pin_moderator_keys_full_room_and_recording(rig: tuple[Appliance, list[Baresip]]) -> None:
    bridge, (ann, mod, late) = rig
    ann.dial(bridge.sip_uri("1002"))
    time.sleep(0.5)
    ann.digits("4321#")
    (conf,) = wait_for(bridge.conferences, 10, "the room's conference")
    assert conf["service_type"] == "room" and conf["subject"] == "Board"
    mod.dial(bridge.sip_uri("1002"))
    time.sleep(0.5)
    mod.digits("9999#")
    wait_for(lambda: len(bridge.conferences()[0]["legs"]) == 2, 10, "the moderator in")
    roles = sorted(leg["role"] for leg in bridge.conferences()[0]["legs"])
    assert roles == ["moderator", "participant"]

    # The room holds two: a third caller with the right PIN hears "full" and is hung up.
    closed = late.count("CALL_CLOSED")
    late.dial(bridge.sip_uri("1002"))
    time.sleep(0.5)
    late.digits("4321#")
    wait_for(lambda: late.count("CALL_CLOSED") > closed, 15, "the late caller refused")

    # Moderator keys: *2 starts recording, *5 locks; a participant's *2 does nothing.
    ann.digits("*2")
    time.sleep(0.5)
    assert not bridge.conferences()[0]["recording"]
    mod.digits("*2")
    wait_for(lambda: bridge.conferences()[0]["recording"], 5, "recording on")
    mod.digits("*5")
    wait_for(lambda: bridge.conferences()[0]["locked"], 5, "locked")
    time.sleep(4.0)
    mod.digits("**")
    wait_for(lambda: not bridge.conferences(), 10, "the room to end")

    with bridge.sessions() as s:
        run = s.scalars(select(ConferenceRun).where(ConferenceRun.service_type == "room")).one()
        assert (run.result, run.recorded, run.room_id) == ("ended by moderator", True, 1)
        recording = s.scalars(select(Recording)).one()
        cdrs = s.scalars(select(Cdr)).all()
    assert sorted((c.role, c.direction, c.dnis, c.recording, c.service_type, c.cause) for c in cdrs) == [
        ("caller", "in", "1002", False, "dial-in", "conference full"),  # the late caller: answered, refused
        ("moderator", "in", "1002", True, "room", "ended by moderator"),
        ("participant", "in", "1002", True, "room", "ended by moderator"),
    ]  # fmt: skip
    with wave.open(recording.path) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
    assert len(pcm) > 8000 * 2
    assert band_share(pcm, 440.0) > 0.2 and band_share(pcm, 880.0) > 0.2, "both callers are in the recording"
