"""Harness for the SMPP integration tests: the node-smpp SMSC simulator (tests/peers/smsc_sim.js) as a
subprocess on free loopback ports, and an SmppService running on its own asyncio loop thread."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bridge.config import Config
from bridge.db.models import Company, Subscriber
from bridge.smpp.service import SmppService

PEERS = Path(__file__).resolve().parents[1] / "peers"
SIM = PEERS / "smsc_sim.js"
MOBILE = "+15551230001"
SHORT_CODE = "2663"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` (hang guard)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Smsc:
    """The node SMSC simulator. A missing node or node_modules fails loudly (never skips)."""

    def __init__(self, workdir: Path, *, password: str = "secret", system_id: str = "bridge") -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: run `make deps` (tests/peers/install.sh)")
        if not (PEERS / "node_modules" / "smpp").is_dir():
            raise RuntimeError("tests/peers/node_modules is missing: run `make deps` (npm ci in tests/peers)")
        self.node = node
        self.workdir = workdir
        self.port = free_port()
        self.ctrl_port = free_port()
        self.password = password
        self.system_id = system_id
        self.submits_log = workdir / "submits.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, password: str | None = None) -> None:
        if password is not None:
            self.password = password
        env = dict(
            os.environ,
            SMSC_PORT=str(self.port),
            CTRL_PORT=str(self.ctrl_port),
            SMSC_SYSTEM_ID=self.system_id,
            SMSC_PASSWORD=self.password,
            SUBMITS_LOG=str(self.submits_log),
            SMSC_QUIET="1",
            NODE_PATH=str(PEERS / "node_modules"),
        )
        self.starts += 1
        with open(self.workdir / f"smsc_{self.starts}.log", "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([self.node, str(SIM)], env=env, stdout=log, stderr=subprocess.STDOUT)
        for port in (self.port, self.ctrl_port):
            wait_for(lambda p=port: self._open(p), timeout=15, what=f"simulator port {port}")  # type: ignore[misc]

    def _open(self, port: int) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"SMSC simulator exited with {self.proc.returncode}; see {self.workdir}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def http(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ctrl_port}{path}",
            method=method,
            data=data,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def mo(self, text: str = "", *, source: str = MOBILE, destination: str = SHORT_CODE, **extra: Any) -> Any:
        """Inject an MO; returns once every deliver_sm_resp arrived. ``source`` in E.164 (sent as TON 1)."""
        body = {"source_addr": source.lstrip("+"), "destination_addr": destination, "text": text, **extra}
        return self.http("POST", "/mo", body)

    def control(self, **settings: Any) -> Any:
        return self.http("POST", "/control", settings)

    def stats(self) -> Any:
        return self.http("GET", "/stats")

    def bound(self) -> int:
        return int(self.http("GET", "/health")["bound"])

    def submits(self) -> list[dict[str, Any]]:
        """Every submit_sm accepted, across restarts of the simulator."""
        if not self.submits_log.exists():
            return []
        return [json.loads(line) for line in self.submits_log.read_text().splitlines() if line.strip()]

    def messages(self, to: str | None = None) -> list[str]:
        """Texts the simulator received, concatenated parts joined by their UDH (node-smpp's decoding)."""
        texts: list[str] = []
        pending: dict[tuple[str, int, int], dict[int, str]] = {}
        for s in self.submits():
            if to is not None and s["destination_addr"] != to.lstrip("+"):
                continue
            text = s["text"] if isinstance(s["text"], str) else ""
            if not s["udh"]:
                texts.append(text)
                continue
            ie = bytes.fromhex(s["udh"][0])  # 00 03 ref total seq
            key = (s["destination_addr"], ie[2], ie[3])
            pending.setdefault(key, {})[ie[4]] = text
            if len(pending[key]) == ie[3]:
                parts = pending.pop(key)
                texts.append("".join(parts[i] for i in range(1, ie[3] + 1)))
        return texts


class Running:
    """An SmppService started on a private event loop thread (as the engine would run it)."""

    def __init__(self, config: Config, session_factory: sessionmaker[Session], **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.actions: list[Any] = []
        self.service = SmppService(config, session_factory, on_actions=self.actions.extend, **kwargs)
        self.run(self.service.start())

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def state(self) -> str:
        return str(self.service.status()["state"])

    def stop(self) -> None:
        """Stop the service and its loop (idempotent: fixtures stop what a test may have stopped)."""
        if self.loop.is_closed():
            return
        self.run(self.service.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def smpp_config(config: Config, smsc: Smsc, **overrides: Any) -> Config:
    """The test config pointed at ``smsc`` with short timers so failures show within seconds."""
    settings: dict[str, Any] = dict(
        host="127.0.0.1",
        port=smsc.port,
        system_id=smsc.system_id,
        password=smsc.password,
        short_codes=[SHORT_CODE],
        enquire_link_s=5.0,
        response_timeout_s=3.0,
        reconnect_min_s=0.2,
        reconnect_max_s=2.0,
        queue_poll_s=0.2,
        retry_min_s=0.2,
        retry_max_s=1.0,
        tps=1000.0,
    )
    settings.update(overrides)
    return dataclasses.replace(config, smpp=dataclasses.replace(config.smpp, **settings))


def register(session_factory: sessionmaker[Session], mobile: str = MOBILE) -> int:
    """A registered subscriber (the only kind the command language obeys)."""
    with session_factory() as session:
        company = Company(name="Acme")
        subscriber = Subscriber(company=company, name="Alice", mobile=mobile)
        session.add_all([company, subscriber])
        session.commit()
        return subscriber.id
