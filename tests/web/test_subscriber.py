"""Subscriber pages: users, groups, ICs (DNIS, PINs, limits, launch), history, reports, recordings, live."""

from __future__ import annotations

import csv
import html
import io

from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory
from bridge.db.models import Contact, Group, InstantConference
from tests.web.conftest import Auth
from tests.web.portal_world import FakeControl, World


def _session(world: World):  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(world.url))()


def test_users_crud_normalises_numbers(client: FlaskClient, auth: Auth, world: World) -> None:
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    response = client.post(f"/s/{sid}/users/new", data={"nickname": "Bob", "phone": "(555) 123-0042"})
    assert response.status_code == 302
    with _session(world) as session:
        bob = session.scalars(select(Contact).where(Contact.nickname == "Bob")).one()
        assert bob.phone == "+15551230042" and bob.subscriber_id == sid
    assert b"+15551230042" in client.get(f"/s/{sid}/users").data
    # duplicate nickname (case-insensitive) and a bad number are refused with the form shown again
    again = client.post(f"/s/{sid}/users/new", data={"nickname": "bob", "phone": "5551230043"})
    assert again.status_code == 200 and b"exists" in again.data
    bad = client.post(f"/s/{sid}/users/new", data={"nickname": "Eve", "phone": "call me"})
    assert bad.status_code == 200 and b"not a phone number" in bad.data
    edit = client.post(f"/users/{bob.id}/edit", data={"nickname": "Bobby", "phone": "+15551230044"})
    assert edit.status_code == 302
    assert client.post(f"/users/{bob.id}/delete").status_code == 302
    with _session(world) as session:
        assert session.get(Contact, bob.id) is None


def test_group_picks_users_and_numbers(client: FlaskClient, auth: Auth, world: World) -> None:
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    form = client.get(f"/s/{sid}/groups/new").data
    assert b"Acmecontact" in form and b"ZETA" not in form
    # a contact id of company B in the form is ignored (not a choice)
    response = client.post(
        f"/s/{sid}/groups/new",
        data={"name": "Sales", "contacts": [str(world.a.contact_id)], "numbers": "+15551230077\n5551230078"},
    )
    assert response.status_code == 302
    rejected = client.post(f"/s/{sid}/groups/new", data={"name": "Evil", "contacts": [str(world.b.contact_id)]})
    assert rejected.status_code == 200  # not a valid choice: form shown again
    with _session(world) as session:
        group = session.scalars(select(Group).where(Group.name == "Sales")).one()
        assert [m.contact_id for m in group.members if m.contact_id] == [world.a.contact_id]
        assert sorted(m.phone for m in group.members if m.phone) == ["+15551230077", "+15551230078"]
        assert session.scalars(select(Group).where(Group.name == "Evil")).first() is None
    page = client.get(f"/s/{sid}/groups").data
    assert b"Sales" in page and b"+15551230077" in page


def test_ic_gets_dnis_and_pins_and_regenerates(client: FlaskClient, auth: Auth, world: World) -> None:
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    response = client.post(
        f"/s/{sid}/ics/new",
        data={
            "name": "Board",
            "contacts": [str(world.a.contact_id)],
            "groups": [str(world.a.group_id)],
            "numbers": "+15551230101",
        },
    )
    assert response.status_code == 302
    with _session(world) as session:
        ic = session.scalars(select(InstantConference).where(InstantConference.name == "Board")).one()
        assert ic.slot == 2  # slot 1 is taken by the seeded IC
        assert ic.dnis is not None and ic.dnis.number == "+15550102"  # pool position 2
        old = (ic.activation_pin, ic.user_pin)
        assert len(ic.members) == 3
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "+15550102" in page and old[0] in page and old[1] in page
    assert client.post(f"/ics/{ic.id}/pins").status_code == 302
    with _session(world) as session:
        fresh = session.get(InstantConference, ic.id)
        assert fresh is not None and (fresh.activation_pin, fresh.user_pin) != old
        assert fresh.activation_pin != fresh.user_pin


def test_ic_limits(client: FlaskClient, auth: Auth, world: World) -> None:
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    eleven = "\n".join(f"+1555123{n:04d}" for n in range(11))
    too_many = client.post(f"/s/{sid}/ics/new", data={"name": "Big", "numbers": eleven})
    assert too_many.status_code == 200 and b"at most 10" in too_many.data
    for n in range(29):  # slots 2..30
        assert client.post(f"/s/{sid}/ics/new", data={"name": f"ic{n}"}).status_code == 302
    full = client.post(f"/s/{sid}/ics/new", data={"name": "one too many"})
    assert full.status_code == 409 and b"slots are in use" in full.data
    assert b"30 of 30" in client.get(f"/s/{sid}/ics").data


def test_launch_now_goes_through_the_control_api(
    client: FlaskClient, auth: Auth, world: World, control: FakeControl
) -> None:
    auth.login("acmeuser")
    response = client.post(f"/ics/{world.a.ic_id}/launch")
    assert response.status_code == 302
    assert control.launched == [world.a.ic_id]
    control.down = True
    down = client.post(f"/ics/{world.a.ic_id}/launch", follow_redirects=True)
    assert b"engine is unreachable" in down.data


def test_history_report_csv_and_recordings(client: FlaskClient, auth: Auth, world: World) -> None:
    auth.login("acmeuser")
    sid = world.a.subscriber_id
    history = client.get(f"/s/{sid}/history").data
    assert b"Acme weekly" in history
    assert b"<title>2026-11-20: 8 min</title>" in history  # the usage chart's bar for the seeded call
    report = client.get(f"/runs/{world.a.run_id}").data
    assert b"Acmecontact" in report and b"8.0" in report  # 8 minutes connected
    text = client.get(f"/runs/{world.a.run_id}/report.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["caller", "name", "direction", "role", "status", "called_at", "disconnected_at", "minutes"]
    assert rows[1][0] == "+15551230009" and rows[1][1] == "Acmecontact" and rows[1][-1] == "8.0"
    listing = client.get(f"/s/{sid}/recordings").data
    assert f"/recordings/{world.a.recording_id}/audio".encode() in listing
    audio = client.get(f"/recordings/{world.a.recording_id}/audio")
    assert audio.status_code == 200 and audio.mimetype == "audio/wav" and audio.data.startswith(b"RIFF")
    download = client.get(f"/recordings/{world.a.recording_id}/download")
    assert "attachment" in download.headers["Content-Disposition"]


def test_live_view_controls_reach_the_engine(
    client: FlaskClient, auth: Auth, world: World, control: FakeControl
) -> None:
    auth.login("acmeuser")
    run, (moderator, guest) = world.a.live_run_id, world.a.live_leg_ids
    page = client.get(f"/live/{run}").get_data(as_text=True)
    assert f'id="leg-{guest}"' in page and "Live" in page
    accept = {"Accept": "application/json"}
    assert client.post(f"/live/{run}/legs/{guest}/mute", data={"muted": "1"}, headers=accept).json == {"ok": True}
    assert control.conferences_by_id[run]["legs"][1]["muted"] is True
    client.post(f"/live/{run}/legs/{guest}/mute", data={"muted": "0"})
    assert control.conferences_by_id[run]["legs"][1]["muted"] is False
    client.post(f"/live/{run}/recording", data={"on": "1"})
    client.post(f"/live/{run}/lock", data={"locked": "1"})
    assert control.conferences_by_id[run]["recording"] and control.conferences_by_id[run]["locked"]
    client.post(f"/live/{run}/dial", data={"number": "(555) 123-0050"})
    assert control.conferences_by_id[run]["legs"][-1]["number"] == "+15551230050"
    bad = client.post(f"/live/{run}/dial", data={"number": "nope"}, headers=accept)
    assert bad.status_code == 400
    client.post(f"/live/{run}/legs/{moderator}/kick")
    assert control.conferences_by_id[run]["legs"][0]["status"] == "left"
    client.post(f"/live/{run}/end")
    assert run not in control.conferences_by_id
    assert b"not running" in client.get(f"/live/{run}").data
    # a leg of another run of the same tenant is refused
    assert client.post(f"/live/{run}/legs/{world.a.leg_id}/mute", data={"muted": "1"}).status_code == 404


def test_pages_work_with_the_engine_stopped(
    client: FlaskClient, auth: Auth, world: World, control: FakeControl
) -> None:
    control.down = True
    auth.login("acmeuser")
    assert b"engine is unreachable" in client.get(f"/live/{world.a.live_run_id}").data
    assert b"engine is unreachable" in client.get("/live/").data
    action = client.post(
        f"/live/{world.a.live_run_id}/legs/{world.a.live_leg_ids[1]}/mute",
        data={"muted": "1"},
        headers={"Accept": "application/json"},
    )
    assert action.status_code == 503 and action.json == {"error": "engine unreachable"}
    for url in (f"/s/{world.a.subscriber_id}/", f"/s/{world.a.subscriber_id}/ics", f"/runs/{world.a.run_id}", "/help"):
        assert client.get(url).status_code == 200


def test_help_page(client: FlaskClient, auth: Auth) -> None:
    auth.login("acmeuser")
    page = client.get("/help").data
    assert b"activation PIN" in page and b"+15550100" in page


def test_contact_and_group_forms_reach_the_provisioning_core(client: FlaskClient, auth: Auth, world: World) -> None:
    """The portal used to let a contact take a group's name (and the reverse); the core refuses it as SMS does."""
    sid = world.a.subscriber_id
    auth.login("acmeuser")
    user = client.post(f"/s/{sid}/users/new", data={"nickname": "acmegroup", "phone": "5551230042"})
    assert user.status_code == 200
    assert "'acmegroup' is a group name; pick another nickname" in html.unescape(user.get_data(as_text=True))
    group = client.post(f"/s/{sid}/groups/new", data={"name": "ACMECONTACT"})
    assert group.status_code == 200
    assert "'ACMECONTACT' is a user's nickname; pick another group name" in html.unescape(group.get_data(as_text=True))
    unicode = client.post(f"/s/{sid}/users/new", data={"nickname": "Ñandú", "phone": "5551230043"})
    assert unicode.status_code == 302  # the name rule is the core's: any letter, not ASCII only
    with _session(world) as session:
        assert {c.nickname for c in session.scalars(select(Contact))} >= {"Ñandú"}
        assert session.scalars(select(Contact).where(Contact.nickname == "acmegroup")).first() is None
