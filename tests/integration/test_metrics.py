"""A scrape of ``/metrics`` during an Instant Conference: the real appliance (``bridge run``) with
``[metrics] listen``, its trunk leading to a SIPp UAS; the IC is launched through the control API. The scrape shows
the four legs connected, the answered calls per trunk group, the tick histograms filled and RTP counted, and the
dashboard's queries all name metrics this scrape exposes."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.db.models import InstantConference
from tests.integration.ic_harness import MEMBERS, Appliance, Phones, free_port, wait_for

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "bridge-dashboard.json"


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match, f"{sample} not in the scrape"
    return float(match[1])


def test_scrape_during_an_ic_shows_legs_calls_and_tick_histograms(tmp_path: Path) -> None:
    phones = Phones(tmp_path)
    metrics_port = free_port()
    bridge = Appliance(tmp_path, trunk_port=phones.port, extra=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    try:
        bridge.seed(ic_members=MEMBERS)
        bridge.start()
        with bridge.sessions() as session:
            ic_id = session.scalars(select(InstantConference.id)).one()
        run_id = bridge.client.launch_ic(ic_id)["run_id"]

        def four_connected() -> bool:
            legs = bridge.client.conference(run_id)["legs"]
            return sum(1 for leg in legs if leg["status"] == "connected") == 4

        wait_for(four_connected, 30, "4 legs connected")

        def scrape() -> str:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

        def scrape_with_rtp() -> str:
            text = scrape()
            return text if _value(text, "bridge_rtp_packets_out_total") > 0 else ""  # these phones send no audio

        text = wait_for(scrape_with_rtp, 20, "RTP packets counted")
    finally:
        bridge.stop()
        phones.stop()
    assert _value(text, "bridge_up") == 1 and _value(text, "bridge_conferences") == 1
    assert _value(text, 'bridge_legs{status="connected"}') == 4
    assert _value(text, 'bridge_calls_setup_total{trunk_group="trunk"}') == 4
    assert _value(text, "bridge_tick_duration_seconds_count") > 0
    assert _value(text, 'bridge_tick_duration_seconds_bucket{le="+Inf"}') == _value(
        text, "bridge_tick_duration_seconds_count")  # fmt: skip
    assert _value(text, "bridge_tick_lateness_seconds_count") > 0
    assert _value(text, "bridge_rtp_packets_out_total") > 0
    assert _value(text, f'bridge_trunk_gateway_up{{gateway="127.0.0.1:{phones.port}",trunk_group="trunk"}}') == 1
    helped = re.findall(r"^# HELP (bridge_[a-z_]+)", text, re.M)  # labelled families may have no sample yet
    families = {re.sub(r"_total$", "", name) for name in helped}
    queried = {re.sub(r"_(total|bucket|count|sum)$", "", name) for panel in json.loads(DASHBOARD.read_text())["panels"]
               for target in panel["targets"] for name in re.findall(r"\bbridge_[a-z_]+", target["expr"])}  # fmt: skip
    assert queried <= families, sorted(queried - families)
