"""`bridge run` (the whole engine, SMPP inside it) against the node SMSC simulator: an MO from a registered
mobile is answered, and SIGTERM unbinds cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.db import make_engine, make_session_factory, upgrade
from bridge.db.models import Contact, SmsDirection, SmsMessage, SmsStatus
from tests.integration.smpp_harness import MOBILE, SHORT_CODE, Smsc, free_port, register, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[Smsc]:
    sim = Smsc(tmp_path)
    sim.start()
    yield sim
    sim.stop()


def test_bridge_run_answers_an_mo_and_unbinds_on_sigterm(tmp_path: Path, smsc: Smsc) -> None:
    db = tmp_path / "bridge.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    register(factory)
    config = tmp_path / "etc" / "bridge.toml"
    config.parent.mkdir()
    config.write_text(
        f"""
[node]
name = "smpp-test"
data_dir = "{tmp_path / "data"}"
[database]
url = "{url}"
[smpp]
port = {smsc.port}
password = "{smsc.password}"
short_codes = ["{SHORT_CODE}"]
reconnect_min_s = 0.2
[sip]
enabled = false
[web]
enabled = false
[control]
listen = "127.0.0.1:{free_port()}"
[cdr]
push_enabled = false
feed_listen = ""
"""
    )
    log = open(tmp_path / "bridge.log", "wb")  # noqa: SIM115 - closed below
    bridge = Path(sys.executable).with_name("bridge")
    proc = subprocess.Popen(
        [str(bridge), "--config", str(config), "run", "--no-web"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, BRIDGE_CONFIG=str(config)),
    )
    try:
        wait_for(lambda: proc.poll() is None and smsc.bound() == 1, timeout=60, what="bridge run to bind")
        assert smsc.mo("UC gus +15551230081 Gus.Grey")["status"] == [0]
        wait_for(lambda: smsc.messages(to=MOBILE), timeout=30, what="reply from bridge run")
        with factory() as session:
            assert session.scalar(select(Contact.phone).where(Contact.nickname == "gus")) == "+15551230081"
            mo = session.scalar(select(SmsMessage).where(SmsMessage.direction == SmsDirection.MO))
            assert mo is not None and mo.status == SmsStatus.HANDLED
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert smsc.stats()["unbinds"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        engine.dispose()
        print((tmp_path / "bridge.log").read_text()[-3000:])
