"""Seed data and a fake control API shared by the portal's unit and browser tests.

Two companies, each with an admin, a subscriber (with login), contacts, a group, an IC, a finished
run with legs, a recording and CDRs, plus an operator. Object names of company B carry the marker
``ZETA`` so a page that leaks them is easy to spot.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from bridge.control_client import ControlRequestError, EngineUnreachable
from bridge.db import make_engine, make_session_factory, upgrade
from bridge.db.models import (
    Account,
    Cdr,
    Company,
    ConferenceRun,
    Contact,
    DnisKind,
    DnisNumber,
    Group,
    GroupMember,
    IcMember,
    InstantConference,
    Leg,
    Recording,
    Role,
    ServiceType,
    Subscriber,
)

PASSWORD = "correct horse battery"


@functools.cache
def password_hash() -> str:
    return generate_password_hash(PASSWORD)


T0 = dt.datetime(2026, 11, 20, 10, 0, 0)


@dataclass
class Tenant:
    company_id: int
    subscriber_id: int
    contact_id: int
    group_id: int
    ic_id: int
    run_id: int
    live_run_id: int
    leg_id: int
    live_leg_ids: list[int]
    recording_id: int
    cdr_id: int
    admin_account_id: int
    subscriber_account_id: int
    admin: str
    user: str


@dataclass
class World:
    url: str
    a: Tenant
    b: Tenant
    dnis_id: int
    operator: str = "op"
    extra: dict[str, Any] = field(default_factory=dict)


def _tenant(session: Session, tag: str, mobile: str, pool: DnisNumber, data_dir: Path) -> Tenant:
    company = Company(name=f"{tag} Corp", timezone="UTC")
    session.add(company)
    session.flush()
    sub = Subscriber(company_id=company.id, name=f"{tag} Moderator", mobile=mobile)
    session.add(sub)
    session.flush()
    contact = Contact(subscriber_id=sub.id, nickname=f"{tag}contact", phone=mobile[:-1] + "9")
    session.add(contact)
    session.flush()
    group = Group(subscriber_id=sub.id, name=f"{tag}group", members=[GroupMember(contact_id=contact.id)])
    ic = InstantConference(
        subscriber_id=sub.id,
        slot=1,
        name=f"{tag} weekly",
        dnis_id=pool.id,
        activation_pin="1234" + mobile[-2:],
        user_pin="5678" + mobile[-2:],
        members=[IcMember(contact_id=contact.id)],
    )
    session.add_all([group, ic])
    session.flush()
    run = ConferenceRun(
        service_type=ServiceType.IC,
        subject=f"{tag} weekly",
        company_id=company.id,
        subscriber_id=sub.id,
        ic_id=ic.id,
        started_at=T0,
        ended_at=T0 + dt.timedelta(minutes=10),
        result="completed",
    )
    live = ConferenceRun(
        service_type=ServiceType.IC,
        subject=f"{tag} live",
        company_id=company.id,
        subscriber_id=sub.id,
        ic_id=ic.id,
        started_at=T0,
    )
    session.add_all([run, live])
    session.flush()
    leg = Leg(
        run_id=run.id,
        direction="out",
        role="participant",
        called=contact.phone,
        status="left",
        called_at=T0,
        joined_at=T0 + dt.timedelta(seconds=5),
        disconnected_at=T0 + dt.timedelta(minutes=8, seconds=5),
    )
    live_legs = [
        Leg(run_id=live.id, direction="out", role="subscriber", called=mobile, status="connected", called_at=T0),
        Leg(
            run_id=live.id, direction="out", role="participant", called=contact.phone, status="connected", called_at=T0
        ),
    ]
    session.add_all([leg, *live_legs])
    session.flush()
    rec_dir = data_dir / "recordings"
    rec_dir.mkdir(parents=True, exist_ok=True)
    rec_path = rec_dir / f"{tag}.wav"
    rec_path.write_bytes(b"RIFF$\x00\x00\x00WAVEfmt " + bytes(28))
    recording = Recording(
        run_id=run.id, path=f"recordings/{tag}.wav", started_at=T0, stopped_at=T0 + dt.timedelta(minutes=5)
    )
    cdr = Cdr(
        leg_id=leg.id,
        company_id=company.id,
        company_name=company.name,
        subscriber_id=sub.id,
        moderator_name=sub.name,
        moderator_phone=mobile,
        ic_id=ic.id,
        service_id=run.id,
        service_type="IC",
        service_subject=run.subject,
        destination=contact.phone,
        direction="out",
        role="participant",
        called_at=leg.called_at,
        joined_at=leg.joined_at,
        disconnected_at=leg.disconnected_at,
    )
    admin = Account(
        username=f"{tag.lower()}admin",
        password_hash=password_hash(),
        role=Role.COMPANY_ADMIN,
        company_id=company.id,
    )
    user = Account(
        username=f"{tag.lower()}user",
        password_hash=password_hash(),
        role=Role.SUBSCRIBER,
        company_id=company.id,
        subscriber_id=sub.id,
    )
    session.add_all([recording, cdr, admin, user])
    session.flush()
    return Tenant(
        company_id=company.id,
        subscriber_id=sub.id,
        contact_id=contact.id,
        group_id=group.id,
        ic_id=ic.id,
        run_id=run.id,
        live_run_id=live.id,
        leg_id=leg.id,
        live_leg_ids=[x.id for x in live_legs],
        recording_id=recording.id,
        cdr_id=cdr.id,
        admin_account_id=admin.id,
        subscriber_account_id=user.id,
        admin=admin.username,
        user=user.username,
    )


def build_world(data_dir: Path) -> World:
    url = "sqlite:///" + str(data_dir / "portal.db")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        common = DnisNumber(number="+15550100", kind=DnisKind.COMMON, position=0)
        pool = [DnisNumber(number=f"+155501{n:02d}", kind=DnisKind.POOL, position=n) for n in range(1, 4)]
        session.add_all([common, *pool])
        session.flush()
        a = _tenant(session, "Acme", "+15551230001", pool[0], data_dir)
        b = _tenant(session, "ZETA", "+15551230002", pool[0], data_dir)
        session.add(Account(username="op", password_hash=password_hash(), role=Role.OPERATOR))
        session.commit()
        world = World(url=url, a=a, b=b, dnis_id=pool[2].id)
    engine.dispose()
    return world


def copy_world(template: World, template_dir: Path, data_dir: Path) -> World:
    """The template world's database and files copied into ``data_dir`` (same ids)."""
    for suffix in ("", "-wal"):
        source = template_dir / ("portal.db" + suffix)
        if source.exists():
            shutil.copyfile(source, data_dir / ("portal.db" + suffix))
    shutil.copytree(template_dir / "recordings", data_dir / "recordings")
    return dataclasses.replace(template, url="sqlite:///" + str(data_dir / "portal.db"))


def leg_state(leg_id: int, number: str, name: str, role: str) -> dict[str, Any]:
    return {
        "leg_id": leg_id,
        "number": number,
        "name": name,
        "role": role,
        "direction": "out",
        "status": "connected",
        "cause": "",
        "muted": False,
        "talking": False,
        "joined_at": T0.isoformat(),
    }


class FakeControl:
    """The control API's behaviour over an in-memory conference table (same methods as ControlClient)."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.conferences_by_id: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.down = False
        self.launched: list[int] = []
        self.next_leg = 100_000

    def add(self, tenant: Tenant, names: tuple[str, str] = ("Moderator", "Contact")) -> None:
        self.conferences_by_id[tenant.live_run_id] = {
            "run_id": tenant.live_run_id,
            "service_type": "IC",
            "subject": "live",
            "company_id": tenant.company_id,
            "subscriber_id": tenant.subscriber_id,
            "ic_id": tenant.ic_id,
            "room_id": None,
            "started_at": T0.isoformat(),
            "recording": False,
            "locked": False,
            "legs": [
                leg_state(tenant.live_leg_ids[0], "+15551230001", names[0], "subscriber"),
                leg_state(tenant.live_leg_ids[1], "+15551230009", names[1], "participant"),
            ],
        }

    def _check(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.down:
            raise EngineUnreachable("engine stopped")

    def _conf(self, run_id: int) -> dict[str, Any]:
        conf = self.conferences_by_id.get(run_id)
        if conf is None:
            raise ControlRequestError(404, "conference not running")
        return conf

    def _leg(self, run_id: int, leg_id: int) -> dict[str, Any]:
        for leg in self._conf(run_id)["legs"]:
            if leg["leg_id"] == leg_id:
                return leg  # type: ignore[no-any-return]
        raise ControlRequestError(404, "no such leg")

    def status(self) -> dict[str, Any]:
        self._check("status")
        return {
            "node": "bridge-a",
            "role": "active",
            "uptime_s": 3725.0,
            "smpp": {"state": "bound_trx", "since": T0.isoformat()},
            "sip": {
                "trunk_groups": [
                    {
                        "name": "e1gw",
                        "kind": "e1",
                        "role": "main",
                        "gateways": [{"address": "127.0.0.1:5070", "up": True}],
                        "ports": [
                            {"span": span, "channel": ch, "state": "busy" if ch == 1 else "idle", "leg_id": None}
                            for span in (1, 2)
                            for ch in range(1, 31)
                        ],
                    }
                ]
            },
            "mixer": {
                "conferences": len(self.conferences_by_id),
                "participants": 2,
                "ticks": 1000,
                "lateness_p99_ms": 1.5,
                "late_ticks": 0,
            },
        }

    def conferences(self) -> list[dict[str, Any]]:
        self._check("conferences")
        with self.mutex:
            return copy.deepcopy(list(self.conferences_by_id.values()))

    def conference(self, run_id: int) -> dict[str, Any]:
        self._check("conference", run_id)
        with self.mutex:
            return copy.deepcopy(self._conf(run_id))

    def launch_ic(self, ic_id: int) -> dict[str, Any]:
        self._check("launch_ic", ic_id)
        self.launched.append(ic_id)
        return {"run_id": 0, "legs": []}

    def end(self, run_id: int) -> dict[str, Any]:
        self._check("end", run_id)
        with self.mutex:
            self._conf(run_id)
            del self.conferences_by_id[run_id]
        return {}

    def recording(self, run_id: int, on: bool) -> dict[str, Any]:
        self._check("recording", run_id, on)
        with self.mutex:
            self._conf(run_id)["recording"] = on
        return {}

    def lock(self, run_id: int, locked: bool) -> dict[str, Any]:
        self._check("lock", run_id, locked)
        with self.mutex:
            self._conf(run_id)["locked"] = locked
        return {}

    def dial(self, run_id: int, number: str) -> dict[str, Any]:
        self._check("dial", run_id, number)
        with self.mutex:
            self.next_leg += 1
            self._conf(run_id)["legs"].append(leg_state(self.next_leg, number, "", "participant"))
        return {}

    def mute(self, run_id: int, leg_id: int, muted: bool) -> dict[str, Any]:
        self._check("mute", run_id, leg_id, muted)
        with self.mutex:
            self._leg(run_id, leg_id)["muted"] = muted
        return {}

    def kick(self, run_id: int, leg_id: int) -> dict[str, Any]:
        self._check("kick", run_id, leg_id)
        with self.mutex:
            self._leg(run_id, leg_id)["status"] = "left"
        return {}
