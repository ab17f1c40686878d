"""The portal end to end in Chromium (Playwright), served over HTTPS by ``bridge web`` (gunicorn + TLS),
against the REAL engine (``bridge run --no-web``) whose trunk leads to a SIPp UAS answering every call.

Operator, company admin and subscriber each sign in; the subscriber creates users, a group and an IC,
reads its DNIS and PINs, launches it, watches the live view fill with connected legs (SSE), mutes a
participant and sees the mute come back from the engine. Then the engine is stopped and the live
view says so. Screenshots go to ``test-artifacts/``; with ``DOCS_SCREENSHOTS=1`` also to ``docs/img/`` (the
subscriber guide's pictures: ``DOCS_SCREENSHOTS=1 make integration``, then commit them). A missing peer (sipp,
chromium) fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from bridge.db.models import Account, Company, InstantConference, Role, Subscriber
from tests.integration.ic_harness import REPO, SUB, Appliance, Phones, free_port, require, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
DOCS_IMG = REPO / "docs" / "img"
PASSWORD = "browser-pass-123"
ANN, BEN, ADHOC = "+15551230002", "+15551230003", "+15551230004"


class Portal:
    """``bridge web`` in a subprocess on a free loopback port; HTTPS with the generated self-signed cert."""

    def __init__(self, workdir: Path, appliance_config: Path) -> None:
        self.port = free_port()
        text = appliance_config.read_text().replace(
            "[web]\nenabled = false", f'[web]\nlisten = "127.0.0.1:{self.port}"'
        )
        assert f"127.0.0.1:{self.port}" in text
        self.config = workdir / "etc" / "portal.toml"
        self.config.write_text(text)
        self.out = open(workdir / "portal.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "--config", str(self.config), "web", "--workers", "1",
             "--threads", "8"],
            cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL, stdout=self.out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{self.port}"
        self.workdir = workdir
        wait_for(self._up, 60, "bridge web (gunicorn + TLS)")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"bridge web exited: {self.logs()[-3000:]}")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.url + "/login", context=context, timeout=2) as response:
                return bool(response.status == 200 and response.headers["Strict-Transport-Security"])
        except OSError:
            return False

    def logs(self) -> str:
        path = self.workdir / "portal.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make deps)")
    require("sipp")
    started: list[Any] = []
    try:
        phones = Phones(tmp_path)
        started.append(phones)
        bridge = Appliance(tmp_path, trunk_port=phones.port)
        bridge.seed()
        with bridge.sessions() as session:
            company = session.scalars(select(Company)).one()
            sam = session.scalars(select(Subscriber).where(Subscriber.mobile == SUB)).one()
            digest = generate_password_hash(PASSWORD)
            session.add_all([
                Account(username="operator", password_hash=digest, role=Role.OPERATOR),
                Account(username="coadmin", password_hash=digest, role=Role.COMPANY_ADMIN, company_id=company.id),
                Account(username="sam", password_hash=digest, role=Role.SUBSCRIBER, company_id=company.id,
                        subscriber_id=sam.id),
            ])  # fmt: skip
            session.commit()
        started.append(bridge)
        try:
            bridge.start()
        except Exception:
            print(bridge.logs()[-5000:])
            raise
        portal = Portal(tmp_path, bridge.config_path)
        started.append(portal)
        yield {"bridge": bridge, "portal": portal, "phones": phones}
    finally:
        for item in reversed(started):
            try:
                item.stop()
            except Exception:  # best effort teardown; the test already asserted
                pass


def _login(page: Any, portal: Portal, username: str) -> None:
    page.goto(portal.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:2000]


def _logout(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def _shot(page: Any, name: str) -> None:
    """A screenshot into ``test-artifacts/``, and into ``docs/img/`` for the manual when ``DOCS_SCREENSHOTS=1``."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / path.name)


def test_portal_in_chromium_against_the_real_engine(stack: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    bridge: Appliance = stack["bridge"]
    portal: Portal = stack["portal"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            # --- operator: companies, system status from the running engine
            _login(page, portal, "operator")
            expect(page.locator("h1")).to_have_text("Operator overview")
            page.goto(portal.url + "/admin/companies")
            expect(page.locator("table")).to_contain_text("Demo Co")
            page.goto(portal.url + "/admin/status")
            expect(page.locator("h2").first).to_have_text("Voice processor")
            expect(page.locator("#tick-health")).to_contain_text("ticks")
            _shot(page, "portal_operator_status")
            _logout(page)

            # --- company admin: sees the company's subscribers, adds one with a login
            _login(page, portal, "coadmin")
            page.goto(portal.url + "/company/subscribers")
            expect(page.locator("table")).to_contain_text(SUB)
            page.get_by_role("link", name="Add subscriber").click()
            page.get_by_label("Name", exact=True).fill("Pat")
            page.get_by_label("Mobile", exact=True).fill("(555) 123-0070")
            page.get_by_label("Portal username (optional)").fill("pat")
            page.get_by_label("Portal password").fill(PASSWORD)
            page.get_by_role("button", name="Save").click()
            expect(page.locator("table")).to_contain_text("+15551230070")
            _shot(page, "portal_company_subscribers")
            _logout(page)

            # --- subscriber: users, group, IC with DNIS and PINs
            _login(page, portal, "sam")
            expect(page.locator("ul.icons")).to_contain_text("Instant Conferences")
            _shot(page, "portal_subscriber_home")
            for nick, number in (("Ann", ANN), ("Ben", BEN)):
                page.get_by_role("link", name="Users").first.click()
                page.get_by_role("link", name="Add user").click()
                page.get_by_label("Nickname", exact=True).fill(nick)
                page.get_by_label("Phone", exact=True).fill(number)
                page.get_by_role("button", name="Save").click()
                expect(page.locator("table")).to_contain_text(number)
                page.get_by_role("link", name="Sam").click()
            page.get_by_role("link", name="Groups").click()
            page.get_by_role("link", name="Add group").click()
            page.get_by_label("Name", exact=True).fill("Team")
            page.get_by_label(re.compile(r"^Ann ")).check()
            page.get_by_label(re.compile(r"^Ben ")).check()
            page.get_by_role("button", name="Save").click()
            expect(page.locator("table")).to_contain_text("Ann, Ben")
            page.get_by_role("link", name="Sam").click()
            page.get_by_role("link", name="Instant Conferences").click()
            page.get_by_role("link", name="New Instant Conference").click()
            page.get_by_label("Name", exact=True).fill("Standup")
            page.get_by_label("Team").check()
            page.get_by_label("Ad hoc numbers (one per line)").fill(ADHOC)
            page.get_by_role("button", name="Save").click()
            expect(page.locator("h1")).to_contain_text("IC1: Standup")
            with bridge.sessions() as session:
                ic = session.scalars(select(InstantConference).where(InstantConference.name == "Standup")).one()
                assert ic.dnis is not None
                dnis, activation, user = ic.dnis.number, ic.activation_pin, ic.user_pin
            expect(page.locator("#dnis")).to_have_text(dnis)
            expect(page.locator("#activation-pin")).to_have_text(activation)
            expect(page.locator("#user-pin")).to_have_text(user)
            assert dnis == "+15550101" and activation != user
            _shot(page, "portal_ic_detail")

            # --- launch now: the engine dials Sam, Ann, Ben and the ad hoc number through SIPp
            page.get_by_role("button", name="Launch now").click()
            page.wait_for_url(re.compile(r"/live/\d+$"))
            run_id = int(page.url.rsplit("/", 1)[1])
            ann_row = page.locator("#legs tbody tr", has_text=ANN)
            expect(ann_row.locator(".leg-status")).to_have_text("connected", timeout=30_000)
            for number in (SUB, BEN, ADHOC):
                expect(page.locator("#legs tbody tr", has_text=number).locator(".leg-status")).to_have_text(
                    "connected", timeout=30_000
                )
            expect(ann_row.locator(".muted-state")).to_have_text("")
            ann_row.get_by_role("button", name="Mute").click()
            expect(ann_row.locator(".muted-state")).to_have_text("muted", timeout=10_000)  # back from the engine
            leg = next(x for x in bridge.client.conference(run_id)["legs"] if x["number"] == ANN)
            assert leg["muted"] is True
            _shot(page, "portal_live_muted")
            ann_row.get_by_role("button", name="Unmute").click()
            expect(ann_row.locator(".muted-state")).to_have_text("", timeout=10_000)
            assert next(x for x in bridge.client.conference(run_id)["legs"] if x["number"] == ANN)["muted"] is False

            # --- engine stopped: the live view says so instead of failing
            assert bridge.stop() == 0
            expect(page.locator("#live-status")).to_contain_text("unreachable", timeout=15_000)
            page.reload()
            expect(page.locator("#live-status")).to_contain_text("engine is unreachable")
            page.goto(portal.url + f"/runs/{run_id}")
            expect(page.locator("table")).to_contain_text(ANN)  # history from the database
            _shot(page, "portal_engine_stopped")
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "portal_failure.png"), full_page=True)
            print(portal.logs()[-4000:])
            print(bridge.logs()[-4000:])
            raise
        finally:
            browser.close()
