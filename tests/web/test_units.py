"""Pure helpers: charts, reports, CSV safety, login throttling, TLS material, the control client."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from bridge.cdr.reports import DailyMinutes, ModeratorUsage
from bridge.config import from_dict
from bridge.control_client import ControlClient, ControlRequestError, EngineUnreachable
from bridge.db.models import Account, Role
from web import charts, reports
from web.security import LoginRateLimiter, is_locked, record_failure, record_success
from web.tls import ensure_certificate, self_signed

T = dt.datetime(2026, 11, 20, 10, 0)


def test_bar_chart_scales_and_escapes() -> None:
    svg = charts.bar_chart([("a<b", 10.0), ("c", 5.0)], title="T & T")
    assert svg.count("<rect") == 2 and "a&lt;b" in svg and "T &amp; T" in svg
    heights = [float(part.split('height="')[1].split('"')[0]) for part in svg.split("<rect")[1:]]
    assert heights[0] == pytest.approx(2 * heights[1])
    assert "no usage" in charts.bar_chart([], title="x")


def test_daily_minutes_fold_into_chart_series() -> None:
    d20, d22 = dt.date(2026, 11, 20), dt.date(2026, 11, 22)
    rows = [DailyMinutes(d20, "A", 1, 170, 3), DailyMinutes(d20, "B", 1, 60, 1), DailyMinutes(d22, "", 1, 50, 1)]
    points = reports.per_day(rows)
    assert points == [("2026-11-20", 4.0), ("2026-11-22", 1.0)]
    assert reports.per_key(rows) == [("(none)", 1.0), ("A", 3.0), ("B", 1.0)]
    filled = reports.days(d20, d22, points)
    assert filled == [("2026-11-20", 4.0), ("2026-11-21", 0.0), ("2026-11-22", 1.0)]


def test_csv_defuses_formulas_but_keeps_numbers() -> None:
    row = ModeratorUsage("=HYPERLINK(1)", 1, "+15551230001", "@me", "-x", 1, 1, 60, 1)
    line = reports.usage_csv([row]).splitlines()[1]
    assert line == "'=HYPERLINK(1),'@me,+15551230001,'-x,1,1,60,1"


def test_rate_limiter_sliding_window() -> None:
    limiter = LoginRateLimiter(limit=2, window_s=60)
    assert limiter.allowed("1.2.3.4", 0)
    limiter.failed("1.2.3.4", 0)
    limiter.failed("1.2.3.4", 10)
    assert not limiter.allowed("1.2.3.4", 59)
    assert limiter.allowed("5.6.7.8", 59)
    assert limiter.allowed("1.2.3.4", 60.5)  # the first failure left the window


def test_lockout_rules() -> None:
    account = Account(username="x", password_hash="", role=Role.SUBSCRIBER, failed_logins=0)
    assert not record_failure(account, T, attempts=3, lockout_s=60)
    assert not record_failure(account, T, attempts=3, lockout_s=60)
    assert record_failure(account, T, attempts=3, lockout_s=60)
    assert is_locked(account, T + dt.timedelta(seconds=59)) and not is_locked(account, T + dt.timedelta(seconds=60))
    record_success(account)
    assert account.failed_logins == 0 and account.locked_until is None


def test_self_signed_certificate(tmp_path: Path) -> None:
    config = from_dict({"node": {"data_dir": str(tmp_path)}, "web": {"listen": "127.0.0.1:9443"}})
    cert_path, key_path = ensure_certificate(config, T)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert ensure_certificate(config, T) == (cert_path, key_path)
    assert cert_path.read_bytes() == ensure_certificate(config, T + dt.timedelta(days=1))[0].read_bytes()  # kept
    pem, _key = self_signed("portal.example", T)
    other = x509.load_pem_x509_certificate(pem)
    dns = other.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "portal.example" in dns


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers.get("Authorization", ""), body))
        if self.headers.get("Authorization") != "Bearer good":
            status, payload = 401, {"error": "bad token"}
        elif self.path == "/conferences/9":
            status, payload = 404, {"error": "not running"}
        elif self.path == "/garbage":
            status, payload = 200, None
        else:
            status, payload = 200, {"conferences": []} if self.path == "/conferences" else {"ok": True}
        data = b"<html>" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def control_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_control_client_over_http(control_server: str) -> None:
    client = ControlClient(control_server, "good")
    assert client.conferences() == []
    client.mute(3, 4, True)
    assert _Handler.seen[-1] == ("POST", "/conferences/3/legs/4/mute", "Bearer good", {"muted": True})
    with pytest.raises(ControlRequestError) as missing:
        client.conference(9)
    assert missing.value.status == 404 and missing.value.message == "not running"
    with pytest.raises(ControlRequestError) as denied:
        ControlClient(control_server, "bad").status()
    assert denied.value.status == 401
    with pytest.raises(EngineUnreachable):
        client._request("GET", "/garbage")


def test_control_client_engine_down() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EngineUnreachable):
        ControlClient(f"http://127.0.0.1:{port}", "t", timeout=1.0).status()
