"""The engine's operations hooks in a real engine (SIP off, SMPP pointed at a closed port): ``/metrics`` served
on ``[metrics] listen`` from the engine's status, and the SMSC-unbound alarm raised into the event log and mailed
to a real SMTP server (aiosmtpd) on loopback, then shown as a metric."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge.config import from_dict
from bridge.db.models import EventLog
from bridge.db.session import make_engine, make_session_factory, upgrade
from bridge.engine import Engine


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]


def test_metrics_endpoint_and_smpp_unbound_alarm(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    sink, smtp_port, metrics_port = MailSink(), _port(), _port()
    smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    config = from_dict({
        "node": {"name": "ops-test", "data_dir": str(tmp_path)},
        "smpp": {"port": _port(), "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},  # nobody listens there
        "sip": {"enabled": False}, "web": {"enabled": False}, "cdr": {"feed_listen": ""},
        "control": {"listen": f"127.0.0.1:{_port()}"},
        "alerts": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "recipients": ["noc@example.net"]},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "smpp_unbound_alarm_s": 0.5},
    })  # fmt: skip
    upgrade(config.database_url)
    engine = Engine(config, alive_interval_s=0.2)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    async def scenario() -> str:
        await engine.start()
        try:
            assert engine.states["metrics"] == f"http://127.0.0.1:{metrics_port}/metrics"
            for _ in range(300):  # hang guard only: the alarm needs 0.5 s unbound + one housekeeping round
                if any("ALARM smpp_unbound" in s for s in sink.subjects()):
                    break
                await asyncio.sleep(0.05)
            return await asyncio.to_thread(scrape)
        finally:
            await engine.stop()

    try:
        text = asyncio.run(scenario())
    finally:
        smtp.stop()
    assert "bridge_up 1.0" in text and "bridge_conferences 0.0" in text
    assert "bridge_tick_duration_seconds_count" in text and "bridge_tick_lateness_seconds_bucket" in text
    count = next(line for line in text.splitlines() if line.startswith("bridge_tick_duration_seconds_count"))
    assert float(count.split()[1]) > 0
    assert "bridge_smpp_bound 0.0" in text
    assert 'bridge_alarm_active{alarm="smpp_unbound",subject=""} 1.0' in text
    assert "[bridge ops-test] ALARM smpp_unbound" in sink.subjects()
    with make_session_factory(make_engine(config.database_url))() as session:
        kinds = session.scalars(select(EventLog.kind).where(EventLog.kind.like("alarm_%"))).all()
    assert "alarm_raised" in kinds
