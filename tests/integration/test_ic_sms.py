"""Instant Conference launched by SMS, end to end: node SMSC simulator -> SMPP -> commands ->
conference service -> SIP INVITEs to the SIPp phones behind the trunk -> control API -> CDRs.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.db.models import Cdr, ConferenceRun, Leg
from tests.integration.ic_harness import SUB, Appliance, Phones, free_port, wait_for
from tests.integration.smpp_harness import Smsc

pytestmark = pytest.mark.integration

TEAM = {"alice": "+15551230002", "bob": "+15551230003", "carol": "+15551230004"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Smsc, Phones, Appliance]]:
    smsc = Smsc(tmp_path)
    smsc.start()
    phones = Phones(tmp_path)
    try:
        bridge = Appliance(tmp_path, trunk_port=phones.port, smpp_port=smsc.port, feed_port=free_port())
    except BaseException:  # no leaked SIPp/SMSC when the appliance cannot even be configured
        phones.stop()
        smsc.stop()
        raise
    try:
        bridge.seed()
        bridge.start()
        wait_for(lambda: smsc.bound() >= 1, 20, "the bridge bound to the SMSC")
        yield smsc, phones, bridge
    finally:
        bridge.stop()
        phones.stop()
        smsc.stop()


def test_sms_ic_team_rings_everyone_with_the_subscribers_mobile(rig: tuple[Smsc, Phones, Appliance]) -> None:
    smsc, phones, bridge = rig
    for nick, number in TEAM.items():
        smsc.mo(f"UC {nick} {number.lstrip('+1')} {nick.title()}.Test", source=SUB)
    smsc.mo("GC team alice bob carol", source=SUB)
    smsc.mo("IC team", source=SUB)
    wait_for(lambda: len(phones.invites()) >= 4, 20, "four INVITEs at the phones")
    invites = phones.invites()
    assert sorted("+" + i["to"].lstrip("+") for i in invites) == sorted([SUB, *TEAM.values()])
    assert {i["from"].lstrip("+") for i in invites} == {SUB.lstrip("+")}
    assert {i["pai"].lstrip("+") for i in invites} == {SUB.lstrip("+")}

    def connected() -> list[dict[str, object]] | None:
        confs = bridge.conferences()
        legs = [leg for leg in confs[0]["legs"] if leg["status"] == "connected"] if confs else []
        return confs if len(legs) == 4 else None

    (conf,) = wait_for(connected, 20, "four connected legs")
    assert conf["service_type"] == "IC" and conf["ic_id"] is None
    names = {leg["number"]: leg["name"] for leg in conf["legs"]}
    assert names == {SUB: "Sam", **{number: nick for nick, number in TEAM.items()}}
    replies = wait_for(lambda: len(smsc.messages(to=SUB)) >= 5 and smsc.messages(to=SUB), 20, "five SMS replies")
    assert len(replies) == 5

    bridge.client.end(conf["run_id"])
    wait_for(lambda: not bridge.conferences(), 10, "the conference to end")
    with bridge.sessions() as s:
        run = s.get(ConferenceRun, conf["run_id"])
        assert run is not None and run.result == "ended from the portal" and run.launched_by == "sms"
        legs = s.scalars(select(Leg).where(Leg.run_id == run.id)).all()
        cdrs = s.scalars(select(Cdr).where(Cdr.service_id == run.id)).all()
    assert len(legs) == len(cdrs) == len(invites) == 4
    assert sorted(c.destination for c in cdrs) == sorted("+" + i["to"].lstrip("+") for i in invites)
    assert {(c.direction, c.cli, c.service_type) for c in cdrs} == {("out", SUB, "IC")}
    assert {c.role for c in cdrs if c.destination == SUB} == {"subscriber"}
    assert all(c.joined_at and c.disconnected_at and c.subscriber_id == 1 for c in cdrs)

    # The real-time CDR feed delivers the same four records.
    feed = bridge.config_path.read_text().split("feed_listen = ")[1].split("\n")[0].strip('"')
    host, port = feed.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"RESUME 0\n")
        data = b""
        while data.count(b"\n") < 4:
            chunk = sock.recv(65536)
            assert chunk, "the feed closed early"
            data += chunk
    feed_ids = sorted(int(line.split(",", 1)[0]) for line in data.decode().splitlines())
    assert feed_ids == sorted(c.id for c in cdrs)
