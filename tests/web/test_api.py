"""The live-data API: JSON snapshot and the server-sent-events stream (pure generator + endpoint)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from tests.web.conftest import Auth, Clock, HttpsClient, make_app
from tests.web.portal_world import FakeControl, World
from web.api import event_stream


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_stream_sends_only_changes_and_stops_when_ended() -> None:
    polls = iter(
        [
            ("state", {"n": 1}),
            ("state", {"n": 1}),
            ("state", {"n": 2}),
            ("unreachable", {}),
            ("unreachable", {}),
            ("state", {"n": 2}),
            ("ended", {"run_id": 7}),
        ]
    )
    fake = FakeTime()
    text = "".join(event_stream(lambda: next(polls), interval_s=1.0, max_s=100, sleep=fake.sleep, clock=fake.clock))
    assert _events(text) == [
        ("state", {"n": 1}),
        ("state", {"n": 2}),
        ("unreachable", {}),
        ("state", {"n": 2}),
        ("ended", {"run_id": 7}),
    ]
    assert text.startswith("retry: ")
    assert fake.sleeps == [1.0] * 6


def test_stream_keepalive_and_time_limit() -> None:
    fake = FakeTime()
    text = "".join(
        event_stream(lambda: ("state", {"same": True}), interval_s=5.0, max_s=60, sleep=fake.sleep, clock=fake.clock)
    )
    assert len(_events(text)) == 1
    assert text.count(": keepalive") == 4  # every 15 s of silence within 60 s
    assert fake.now == 60.0


def test_live_json(client: FlaskClient, auth: Auth, world: World, control: FakeControl) -> None:
    auth.login("acmeuser")
    response = client.get(f"/api/live/{world.a.live_run_id}")
    assert response.status_code == 200 and response.json["conference"]["run_id"] == world.a.live_run_id
    assert client.get(f"/api/live/{world.a.run_id}").status_code == 404  # finished: engine says 404
    control.down = True
    assert client.get(f"/api/live/{world.a.live_run_id}").json["kind"] == "unreachable"


def test_live_events_endpoint_streams_state(
    client: FlaskClient, auth: Auth, world: World, control: FakeControl
) -> None:
    auth.login("acmeuser")
    response = client.get(f"/api/live/{world.a.live_run_id}/events")
    assert response.mimetype == "text/event-stream"
    events = _events(response.get_data(as_text=True))
    assert events[0][0] == "state"
    assert [leg["leg_id"] for leg in events[0][1]["legs"]] == world.a.live_leg_ids
    ended = _events(client.get(f"/api/live/{world.a.run_id}/events").get_data(as_text=True))
    assert ended == [("ended", {"run_id": world.a.run_id})]


def test_live_views_beyond_the_stream_slots_get_the_state_and_come_back(
    tmp_path: Path, world: World, control: FakeControl, clock: Clock
) -> None:
    app = make_app(tmp_path, world, control, clock, SSE_MAX_STREAMS=1, SSE_MAX_S=60.0)
    app.test_client_class = HttpsClient
    client = app.test_client()
    Auth(client).login("acmeuser")
    url = f"/api/live/{world.a.live_run_id}/events"
    first = client.get(url, buffered=False)  # holds the only slot while it streams
    busy = client.get(url).get_data(as_text=True)
    assert busy.startswith("retry: 5000\n\n")  # EventSource comes back in 5 s: polling, no thread held
    (event,) = _events(busy)
    assert event[0] == "state" and [leg["leg_id"] for leg in event[1]["legs"]] == world.a.live_leg_ids
    first.close()  # the client went away before the stream even started: the slot comes back
    second = client.get(url, buffered=False)
    assert next(iter(second.response)) == b"retry: 2000\n\n"  # a real stream again
    second.close()
