"""``bridge demo run`` end to end: the appliance with its stand-ins (the node SMSC simulator, SIPp phones that
talk) texts IC1 as the demo subscriber; Chromium (Playwright) signs in to the portal with the printed login and
sees the four legs connected in the live view (screenshot in the test's tmp path); after the run the CDRs of the
four legs are printed. A missing peer (node smpp, sipp, chromium) fails the test."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ic_harness import REPO, free_port, free_rtp_range, require

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text(
        f'[node]\ndata_dir = "{tmp_path / "var"}"\n'
        f'[sip]\nlisten = "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"\nrtp_ports = "{free_rtp_range(40)}"\n'
        f'[web]\nlisten = "127.0.0.1:{free_port()}"\n[control]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[cdr]\nfeed_listen = ""\n[dnis]\ncommon = "+15550100"\npool = ["+15550101-+15550103"]\n'
    )
    return path


def test_demo_reaches_four_legs_connected_in_the_live_view(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (make deps)")
    require("sipp")
    require("node")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "--config", str(_config(tmp_path)), "demo", "run", "--duration", "12",
         "--dir", str(tmp_path / "demo")],
        cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=open(tmp_path / "demo.log", "wb"), text=True,  # noqa: SIM115 - the child owns it
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout or []], daemon=True).start()

    def wait_line(pattern: str) -> re.Match[str]:
        while True:
            try:
                line = lines.get(timeout=90)  # a hang guard only
            except queue.Empty as exc:
                raise AssertionError(f"no line matching {pattern!r}; got {seen}; log: {_log(tmp_path)}") from exc
            seen.append(line)
            if match := re.search(pattern, line):
                return match

    try:
        portal = wait_line(r"^portal: (https://\S+)")[1]
        password = wait_line(r"^logins: .*\bsubscriber / (\S+)")[1]
        live = wait_line(r"^live view: (https://\S+/live/\d+)")[1]
        shot = tmp_path / "artifacts" / "demo_live_view.png"
        shot.parent.mkdir()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])  # fmt: skip
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            page: Any = context.new_page()
            try:
                page.goto(portal + "/login")
                page.get_by_label("Username").fill("subscriber")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_load_state()
                page.goto(live)
                statuses = page.locator("#legs tbody tr .leg-status")
                expect(statuses).to_have_text(["connected"] * 4, timeout=30_000)
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()
        assert shot.stat().st_size > 0
        wait_line(r"^conference ended; its CDRs:")
        cdrs = [wait_line(r"^\s+CDR \d+: ").string for _ in range(4)]
        assert proc.wait(60) == 0, _log(tmp_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    assert any("4 legs connected" in line for line in seen)
    assert sorted(re.search(r"(\+1555123000\d)", c)[1] for c in cdrs) == [  # type: ignore[index]
        "+15551230001", "+15551230002", "+15551230003", "+15551230004"]  # fmt: skip
    assert all("codec=PCMU" in c for c in cdrs)


def _log(tmp_path: Path) -> str:
    path = tmp_path / "demo.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""
