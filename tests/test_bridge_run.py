"""``bridge run`` as a real subprocess: a listener that cannot bind stops the start with one line naming
its config key; ``kill -9`` of the engine takes its portal down (the next run finds it running) and the
call it left open ends at its last alive stamp, not at the restart."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bridge.control_client import ControlClient
from bridge.db import make_engine, make_session_factory, upgrade
from bridge.db.models import Cdr, ConferenceRun, EngineAlive, Leg, utcnow

BRIDGE = Path(sys.executable).with_name("bridge")
WAIT_S = 60.0  # an upper bound for slow shared machines, never a performance threshold


def _port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _config(tmp_path: Path, *, sip: int, control: int, feed: int | None, web: int | None) -> Path:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"""
[node]
name = "run-test"
data_dir = "{tmp_path / "data"}"
[database]
url = "{url}"
[smpp]
enabled = false
[sip]
listen = "127.0.0.1:{sip}"
[web]
enabled = {"true" if web else "false"}
listen = "127.0.0.1:{web or _port()}"
[control]
listen = "127.0.0.1:{control}"
[cdr]
push_enabled = false
feed_listen = "{f"127.0.0.1:{feed}" if feed else ""}"
"""
    )
    return path


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BRIDGE), "--config", str(config), "run", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, BRIDGE_CONFIG=str(config)),
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("key", ["control.listen", "sip.listen", "cdr.feed_listen", "web.listen"])
def test_a_listener_that_cannot_bind_stops_the_start_naming_its_key(tmp_path: Path, key: str) -> None:
    ports = {"sip.listen": _port(socket.SOCK_DGRAM), "control.listen": _port(), "cdr.feed_listen": _port()}
    ports["web.listen"] = _port()
    kind = socket.SOCK_DGRAM if key == "sip.listen" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as squatter:
        squatter.bind(("127.0.0.1", ports[key]))
        if kind == socket.SOCK_STREAM:
            squatter.listen()
        config = _config(
            tmp_path, sip=ports["sip.listen"], control=ports["control.listen"], feed=ports["cdr.feed_listen"],
            web=ports["web.listen"] if key == "web.listen" else None,
        )  # fmt: skip
        proc = subprocess.Popen(
            [str(BRIDGE), "--config", str(config), "run", *([] if key == "web.listen" else ["--no-web"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise AssertionError(f"bridge run kept running with {key} taken") from None
    assert proc.returncode != 0
    lines = err.decode().strip().splitlines()
    expected = f"{key}: cannot bind 127.0.0.1:{ports[key]}: address already in use"
    assert lines[-1].endswith(expected), err.decode()
    assert "Traceback" not in err.decode()


@pytest.fixture
def engines() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        _stop(proc)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped
    except (FileNotFoundError, ProcessLookupError):
        return False


def _status(client: ControlClient, token_file: Path) -> dict[str, Any] | None:
    if not token_file.exists():
        return None
    client.token = token_file.read_text().strip()
    try:
        return client.status()
    except Exception:
        return None


def _portal_pid(status: dict[str, Any]) -> int | None:
    found = re.search(r"pid (\d+)", str(status["services"].get("web", "")))
    return int(found.group(1)) if found else None


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class _Run:
    """A config with SIP, control API and portal on free loopback ports, and its ``/status``."""

    def __init__(self, tmp_path: Path) -> None:
        self.control, self.web = _port(), _port()
        self.config = _config(tmp_path, sip=_port(socket.SOCK_DGRAM), control=self.control, feed=None, web=self.web)
        self.client = ControlClient(f"http://127.0.0.1:{self.control}", "", timeout=5)
        self.token_file = tmp_path / "data" / "control.token"
        self.log = tmp_path / "bridge.log"

    def portal_running(self) -> int | None:
        """The portal's pid once ``/status`` says it runs and its port accepts connections."""
        status = _status(self.client, self.token_file)
        if status is None or not str(status["services"].get("web", "")).startswith("running"):
            return None
        return _portal_pid(status) if _listening(self.web) else None


def test_kill_9_of_the_engine_takes_the_portal_down(tmp_path: Path, engines: list[subprocess.Popen[bytes]]) -> None:
    run = _Run(tmp_path)
    first = _start(run.config, run.log)
    engines.append(first)

    def portal_up() -> int | None:  # any /status wording: this part must hold before the fix too
        status = _status(run.client, run.token_file)
        return _portal_pid(status) if status is not None and _listening(run.web) else None

    portal_pid = _wait_for(portal_up, "the first portal to listen")
    assert _alive(portal_pid)
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'bridge.db'}"))
    with factory() as s:  # a call in progress when the engine dies
        run_row = ConferenceRun(service_type="IC", subscriber_id=None)
        s.add(run_row)
        s.flush()
        joined = utcnow()
        s.add(Leg(run_id=run_row.id, direction="in", role="participant", status="connected", joined_at=joined))
        s.commit()

    def stamp() -> dt.datetime | None:
        with factory() as s:
            return s.scalar(select(EngineAlive.seen_at))

    _wait_for(lambda: (stamp() or joined) > joined, "an alive stamp after the call was answered")

    first.send_signal(signal.SIGKILL)
    first.wait(WAIT_S)
    try:
        _wait_for(lambda: not _alive(portal_pid), "the orphaned portal to exit")
    except AssertionError:
        os.kill(portal_pid, signal.SIGTERM)  # the test started it (through the engine): do not leave it behind
        raise
    last_seen = stamp()

    second = _start(run.config, run.log)
    engines.append(second)
    new_pid = _wait_for(run.portal_running, "the second portal to run")
    assert new_pid != portal_pid and _alive(new_pid), run.log.read_text()
    with factory() as s:  # recovered before the control API answered: ended when last seen, not at the restart
        leg = s.scalars(select(Leg)).one()
        assert (leg.cause, leg.disconnected_at) == ("system restart (end time = last seen alive)", last_seen)
        cdr = s.scalars(select(Cdr)).one()
        assert (cdr.cause, cdr.disconnected_at) == (leg.cause, last_seen)


def test_a_stale_portal_is_stopped_at_start(tmp_path: Path, engines: list[subprocess.Popen[bytes]]) -> None:
    """A portal whose death signal never came (another kernel, a pid file from an older engine) is found
    through the pid file and stopped, so the new portal can bind."""
    run = _Run(tmp_path)
    with run.log.open("ab") as out:
        stale = subprocess.Popen(
            [sys.executable, "-m", "bridge.portal", str(os.getpid()), "--config", str(run.config), "web"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engines.append(stale)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "portal.pid").write_text(f"{stale.pid}\n")
    _wait_for(lambda: _listening(run.web), "the stale portal to listen")

    engine = _start(run.config, run.log)
    engines.append(engine)
    stale.wait(WAIT_S)
    new_pid = _wait_for(run.portal_running, "the new portal to run")
    assert new_pid != stale.pid, run.log.read_text()
    assert (tmp_path / "data" / "portal.pid").read_text().strip() == str(new_pid)
