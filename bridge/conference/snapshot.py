"""The control API's view of one running conference (``GET /conferences/<id>``), built from the machine, the
run's row and the service's live legs; with billing on, each answered leg's rate and price so far."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from bridge.conference.machine import Conference, LegStatus
from bridge.conference.records import RunMeta


def describe_run(
    conf: Conference, meta: RunMeta, live_of: Callable[[int], Any], billing: Mapping[int, Mapping[str, object]]
) -> dict[str, Any]:
    """``live_of(leg_id)``: the service's ``LiveLeg`` (up or finished) or None; ``billing``: leg id -> extras."""
    legs = []
    for info in conf.legs.values():
        live = live_of(info.leg_id)
        legs.append({
            "leg_id": info.leg_id, "number": info.number, "name": live.name if live else "", "role": info.role,
            "direction": info.direction, "status": str(info.status), "cause": info.cause, "muted": info.muted,
            "on_hold": bool(live and live.on_hold),
            "talking": bool(live and live.talking and info.status is LegStatus.CONNECTED),
            "joined_at": iso(live.joined_at) if live else None, **billing.get(info.leg_id, {}),
        })  # fmt: skip
    return {
        "run_id": meta.run_id, "service_type": meta.service_type, "subject": meta.subject,
        "company_id": meta.company_id, "subscriber_id": meta.subscriber_id, "ic_id": meta.ic_id,
        "room_id": meta.room_id, "started_at": iso(meta.started_at), "recording": conf.recording,
        "locked": conf.locked, "state": conf.state.value, "legs": legs,
    }  # fmt: skip


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else None
