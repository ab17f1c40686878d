"""The control API server over real loopback sockets, with the real client, against a fake target."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.conference import NotAllowed, UnknownLeg
from bridge.conference.service import UnknownConference
from bridge.config import from_dict
from bridge.control import ControlServer, control_token, json_depth_exceeds
from bridge.control_client import ControlClient, ControlRequestError, EngineUnreachable
from bridge.engine import _error_status

TOKEN = "s3cret"


class FakeTarget:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.conf = {"run_id": 7, "legs": [{"leg_id": 3, "muted": False}], "recording": False, "locked": False}

    def status(self) -> dict[str, Any]:
        return {"node": "n", "role": "active"}

    def conferences(self) -> list[dict[str, Any]]:
        return [self.conf]

    def conference(self, run_id: int) -> dict[str, Any]:
        if run_id != 7:
            raise UnknownConference(f"no running conference {run_id}")
        return self.conf

    def launch(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("launch", body))
        return self.conf

    def end(self, run_id: int) -> None:
        self.conference(run_id)
        self.calls.append(("end", run_id))

    def set_recording(self, run_id: int, on: bool) -> None:
        self.calls.append(("recording", run_id, on))

    def set_locked(self, run_id: int, locked: bool) -> None:
        raise NotAllowed("conference has ended")

    def dial(self, run_id: int, number: str) -> None:
        self.calls.append(("dial", run_id, number))

    def set_muted(self, run_id: int, leg_id: int, muted: bool) -> None:
        if leg_id != 3:
            raise UnknownLeg("no leg")
        self.calls.append(("mute", run_id, leg_id, muted))

    def kick(self, run_id: int, leg_id: int) -> None:
        self.calls.append(("kick", run_id, leg_id))


@pytest.fixture
def server() -> Iterator[tuple[FakeTarget, str]]:
    target = FakeTarget()
    loop = asyncio.new_event_loop()
    control = ControlServer(target, TOKEN, _error_status)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(control.start("127.0.0.1", 0))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield target, f"http://127.0.0.1:{control.port}"
    asyncio.run_coroutine_threadsafe(control.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_every_endpoint(server: tuple[FakeTarget, str]) -> None:
    target, url = server
    client = ControlClient(url, TOKEN)
    assert client.status()["role"] == "active"
    assert client.conferences()[0]["run_id"] == 7
    assert client.conference(7)["run_id"] == 7
    client.launch_ic(4)
    client.launch_numbers(1, ["+1555"])
    client.recording(7, True)
    client.dial(7, "+15550000")
    client.mute(7, 3, True)
    client.kick(7, 3)
    assert client.end(7) == {"run_id": 7, "ended": True}
    assert target.calls == [
        ("launch", {"ic_id": 4}), ("launch", {"subscriber_id": 1, "numbers": ["+1555"]}), ("recording", 7, True),
        ("dial", 7, "+15550000"), ("mute", 7, 3, True), ("kick", 7, 3), ("end", 7),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c: c.conference(99), 404),
        (lambda c: c.end(99), 404),
        (lambda c: c.mute(7, 99, True), 404),
        (lambda c: c.lock(7, True), 409),
        (lambda c: c._request("POST", "/conferences/7/recording", {"on": "yes"}), 400),
        (lambda c: c._request("POST", "/conferences/7/dial", {}), 400),
        (lambda c: c._request("GET", "/nothing"), 404),
        (lambda c: c._request("DELETE", "/status"), 405),
    ],
)
def test_errors_map_to_statuses(server: tuple[FakeTarget, str], call: Any, status: int) -> None:
    _, url = server
    with pytest.raises(ControlRequestError) as info:
        call(ControlClient(url, TOKEN))
    assert info.value.status == status


def test_bad_token_is_401(server: tuple[FakeTarget, str]) -> None:
    _, url = server
    with pytest.raises(ControlRequestError) as info:
        ControlClient(url, "wrong").status()
    assert info.value.status == 401


def test_garbage_request_does_not_kill_the_server(server: tuple[FakeTarget, str]) -> None:
    import socket

    _, url = server
    port = int(url.rsplit(":", 1)[1])
    post_list = b"POST /conferences HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 3\r\n\r\n[1]"
    for garbage in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", post_list):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert ControlClient(url, TOKEN).status()["node"] == "n"


def test_engine_down_raises_unreachable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EngineUnreachable):
        ControlClient(f"http://127.0.0.1:{port}", TOKEN, timeout=1).status()


def test_control_token_created_once_with_mode_0600(tmp_path: Path) -> None:
    config = from_dict({"node": {"data_dir": str(tmp_path)}})
    token = control_token(config)
    path = tmp_path / "control.token"
    assert len(token) > 20 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert control_token(config) == token
    assert control_token(from_dict({"control": {"token": "fixed"}})) == "fixed"


HUGE = 99999999999999999999999  # beyond the database's 64-bit integers


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/conferences", {"ic_id": HUGE}, "'ic_id' must be an integer in 1.."),
        ("/conferences", {"ic_id": 0}, "'ic_id' must be an integer in 1.."),
        ("/conferences", {"ic_id": "4"}, "'ic_id' must be an integer in 1.."),
        ("/conferences", {"ic_id": True}, "'ic_id' must be an integer in 1.."),
        ("/conferences", {"subscriber_id": HUGE, "numbers": ["+1555"]}, "'subscriber_id' must be an integer in 1.."),
        ("/conferences", {"subscriber_id": -1, "numbers": ["+1555"]}, "'subscriber_id' must be an integer in 1.."),
        (f"/conferences/{HUGE}/end", {}, "conference id out of range"),
        (f"/conferences/7/legs/{HUGE}/kick", {}, "leg id out of range"),
    ],
)
def test_ids_outside_the_database_range_are_400(
    server: tuple[FakeTarget, str], path: str, body: dict[str, Any], message: str
) -> None:
    target, url = server
    with pytest.raises(ControlRequestError) as info:
        ControlClient(url, TOKEN)._request("POST", path, body)
    assert info.value.status == 400
    assert message in str(info.value)
    assert target.calls == []  # refused at the API boundary, never reached the service


def test_get_of_an_id_out_of_range_is_400(server: tuple[FakeTarget, str]) -> None:
    _, url = server
    with pytest.raises(ControlRequestError) as info:
        ControlClient(url, TOKEN).conference(HUGE)
    assert info.value.status == 400 and "conference id out of range" in str(info.value)


def test_deeply_nested_body_is_400_and_not_a_recursion_error(
    server: tuple[FakeTarget, str], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    _, url = server
    port = int(url.rsplit(":", 1)[1])
    for opener in (b"[", b'{"a":'):
        body = opener * (60 * 1024 // len(opener))
        head = f"POST /conferences HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head.encode() + body)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"nested too deeply" in reply
    assert "RecursionError" not in caplog.text
    assert ControlClient(url, TOKEN).status()["node"] == "n"


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\\\ab'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\\\a'), inner, max_size=3),
    max_leaves=20,
)


@given(json_values, st.integers(min_value=0, max_value=6))
def test_json_depth_matches_the_parsed_depth(value: Any, limit: int) -> None:
    """Brackets and quotes inside strings (escaped or not) never fool the pre-parse depth check."""
    assert json_depth_exceeds(json.dumps(value).encode(), limit) == (_depth(value) > limit)
