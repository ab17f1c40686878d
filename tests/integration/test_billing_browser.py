"""Forced disconnect from the portal's Active calls page (issue 18), in Chromium against the real engine:
``bridge run`` with ``[billing]`` on, SIPp phones behind the trunk, ``bridge web`` over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from bridge.billing.rating import RateEntry, RatePlan
from bridge.conference import accounts
from bridge.db.models import Account, Cdr, InstantConference, Role, Subscriber
from tests.integration.ic_harness import SUB, Appliance, Phones, require, wait_for
from tests.integration.test_web_browser import CHROMIUM, PASSWORD, Portal, _login

pytestmark = pytest.mark.integration

ANN = "+15551230002"
PLAN = RatePlan("default", (RateEntry("1555", "US test", Decimal("0.60"), first_increment=1, next_increment=1),))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make deps)")
    require("sipp")
    started: list[Any] = []
    try:
        phones = Phones(tmp_path)
        started.append(phones)
        bridge = Appliance(tmp_path, trunk_port=phones.port, extra="[billing]\nenabled = true\n")
        bridge.seed(ic_members=(ANN,))
        with bridge.sessions() as s:
            accounts.save_plan(s, PLAN, default=True)
            sub = s.scalars(select(Subscriber)).one()
            sub.prepaid = True
            accounts.top_up(s, subscriber=sub, amount=Decimal("100"), by="test")
            s.add(Account(username="operator", password_hash=generate_password_hash(PASSWORD), role=Role.OPERATOR))
            s.commit()
        started.append(bridge)
        bridge.start()
        portal = Portal(tmp_path, bridge.config_path)
        started.append(portal)
        yield {"bridge": bridge, "portal": portal, "phones": phones}
    finally:
        for item in reversed(started):
            try:
                item.stop()
            except Exception:  # best effort teardown; the test already asserted
                pass


def test_forced_disconnect_from_active_calls_ends_the_leg(stack: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    bridge: Appliance = stack["bridge"]
    portal: Portal = stack["portal"]
    with bridge.sessions() as s:
        ic_id = s.scalars(select(InstantConference.id)).one()
    bridge.client.launch_ic(ic_id)

    def up() -> dict[str, Any] | None:
        confs = bridge.conferences()
        legs = [leg for leg in confs[0]["legs"] if leg["status"] == "connected"] if confs else []
        return confs[0] if len(legs) == 2 else None

    conf = wait_for(up, 30, "two connected legs")
    ann = next(leg for leg in conf["legs"] if leg["number"] == ANN)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])  # fmt: skip
        page = browser.new_context(ignore_https_errors=True).new_page()
        try:
            _login(page, portal, "operator")
            page.get_by_role("link", name="Active calls").click()
            row = page.locator(f'tr[data-leg="{ann["leg_id"]}"]')
            expect(row).to_contain_text(ANN)
            expect(row).to_contain_text("Sam")
            row.get_by_role("button", name="Disconnect").click()
            expect(page.locator("p.flash")).to_contain_text(f"Leg {ann['leg_id']} disconnected.")
        finally:
            browser.close()

    def ended() -> Cdr | None:
        with bridge.sessions() as s:
            return s.scalars(select(Cdr).where(Cdr.leg_id == ann["leg_id"])).first()

    cdr = wait_for(ended, 20, "the disconnected leg's CDR")
    assert cdr.cause == "kicked" and cdr.joined_at and cdr.disconnected_at
    assert cdr.rate_prefix == "1555" and cdr.price is not None and cdr.price > 0
    still = bridge.conferences()
    assert still and [leg["status"] for leg in still[0]["legs"] if leg["number"] == SUB] == ["connected"]
