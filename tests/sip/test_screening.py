"""The screening rules of :mod:`bridge.sip.screening` (pure) and how :meth:`SipStack._screen` applies them.

Each rule is named after the RFC 4475 message that found it missing; the whole corpus, sent over UDP to the
real service, is in tests/integration/test_sip_torture.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.antiflood import Antiflood
from bridge.sip.screening import Verdict, canonical_value, reply, reply_address, screen
from bridge.sip.stack import SippyRuntime, SipStack

BODY = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request(
    method: str = "OPTIONS",
    *,
    line: str | None = None,
    cseq: str | None = None,
    extra: str = "",
    to: str = "<sip:user@example.com>",
    body: str = "",
    length: str | None = None,
    via: str = "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc",
) -> bytes:
    start = line if line is not None else f"{method} sip:user@example.com SIP/2.0"
    head = (
        f"{start}\r\nVia: {via}\r\nFrom: <sip:caller@example.net>;tag=f1\r\nTo: {to}\r\n"
        f"Call-ID: c1@example.net\r\nCSeq: {cseq if cseq is not None else '1 ' + method}\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Length: {length if length is not None else len(body.encode('latin-1'))}\r\n\r\n"
    )
    return head.encode() + body.encode("latin-1")


def verdict_of(data: bytes) -> tuple[int, bool] | None:
    verdict = screen(data).verdict
    return None if verdict is None else (verdict.status, verdict.policy)


# --- the rules, by RFC 4475 message ------------------------------------------------------------------


def test_plain_request_goes_to_sippy_unchanged_but_for_canonical_form() -> None:
    result = screen(request(body=BODY, extra="Content-Type: application/sdp\r\n", method="INVITE"))
    assert result.verdict is None
    assert result.method == "INVITE"
    assert result.text.endswith("\r\n\r\n" + BODY)


def test_wsinv_lws_around_separators_is_removed_for_sippy() -> None:
    """3.1.1.1: ``SIP  /   2.0 /UDP``, ``tag    = x``, folded lines, ``cseq: 0009\\r\\n  INVITE``."""
    data = (
        b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\nTO :\r\n sip:vivekg@example.com ;   tag"
        b'    = 1918181833n\r\nfrom   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98'
        b"\r\nMaX-fOrWaRdS: 0068\r\nCall-ID: wsinv.ndaksdj@192.0.2.1\r\nContent-Length   : 0\r\ncseq: 0009\r\n  INVITE"
        b"\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n\r\n"
    )
    result = screen(data)
    assert result.verdict is None
    assert result.values("via") == ["SIP/2.0/UDP 192.0.2.2;branch=390skdjuw"]
    assert result.values("to") == ["sip:vivekg@example.com;tag=1918181833n"]
    assert result.values("from") == ['"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98']
    assert result.values("cseq") == ["0009 INVITE"]


def test_canonical_value_keeps_quoted_strings_and_uris() -> None:
    assert canonical_value('"a ; b = c"  <sip:x@y;lr> ; q = 0.3') == '"a ; b = c" <sip:x@y;lr>;q=0.3'


def test_mpart01_binary_body_is_framed_by_octets() -> None:
    """3.1.1.11: a body with NULs and invalid UTF-8 is fine; sippy gets one character per octet."""
    body = "--b\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\x82\r\n--b--\r\n"
    result = screen(request("INVITE", body=body, extra="Content-Type: multipart/mixed;boundary=b\r\n"))
    assert result.verdict is None
    assert result.text.endswith("\r\n\r\n" + body)


def test_a_head_that_is_not_utf8_is_refused() -> None:
    assert verdict_of(request(extra="Subject: \xff\r\n".encode("latin-1").decode("latin-1"))) is None
    data = request().replace(b"caller", b"\xc3\x28")
    assert verdict_of(data) == (400, False)


def test_dblreq_octets_beyond_content_length_are_ignored() -> None:
    """3.1.1.8 / RFC 3261 §18.3."""
    result = screen(request(body="") + b"INVITE sip:x@y SIP/2.0\r\n\r\n")
    assert result.verdict is None and result.text.endswith("\r\n\r\n")


@pytest.mark.parametrize(
    "line",
    [
        "INVITE sip:user@example.com; lr SIP/2.0",  # 3.1.2.8 lwsruri
        "INVITE  sip:user@example.com  SIP/2.0",  # 3.1.2.9 lwsstart
        "INVITE sip:user@example.com SIP/2.0  ",  # 3.1.2.10 trws
    ],
)
def test_malformed_request_line_is_400(line: str) -> None:
    result = screen(request("INVITE", line=line))
    assert result.verdict == Verdict(400, "Bad Request - malformed Request-Line")
    data = reply(result, result.verdict)
    assert data is not None and data.startswith(b"SIP/2.0 400 ")


def test_badvers_is_505() -> None:
    assert verdict_of(request(line="OPTIONS sip:user@example.com SIP/7.0")) == (505, False)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cseq": "8 INVITE"}, "CSeq method does not match"),  # 3.1.2.17 mismatch01
        ({"cseq": "36893488147419103232 OPTIONS"}, "CSeq number too large"),  # 3.1.2.4 scalar02
        ({"length": "-999"}, "bad Content-Length"),  # 3.1.2.3 ncl
        ({"length": "9999"}, "Content-Length larger"),  # 3.1.2.2 clerr
        ({"extra": "Content-Length: 5\r\n", "body": "hello"}, "more than one Content-Length"),  # 3.3.9 mcl01
        ({"extra": "Call-ID: other@x\r\n"}, "more than one Call-ID"),  # 3.3.8 multi01
        ({"extra": "To: <sip:other@example.net>\r\n"}, "more than one To"),  # 3.3.8 multi01
        ({"line": "INVITE <sip:user@example.com> SIP/2.0", "cseq": "1 INVITE"}, "angle brackets"),  # 3.1.2.7 ltgtruri
        ({"line": "OPTIONS sip:user@example.com?Route=%3Csip:x%3E SIP/2.0"}, "headers in the Request-URI"),
    ],
)
def test_syntax_errors_are_400_for_anyone(kwargs: dict[str, Any], reason: str) -> None:
    verdict = screen(request(**kwargs)).verdict
    assert verdict is not None and verdict.status == 400 and not verdict.policy
    assert reason in verdict.reason


def test_question_mark_in_the_user_part_is_not_a_header() -> None:
    """3.1.1.2 intmeth has ``?`` in the user part, which is legal."""
    assert verdict_of(request(line="OPTIONS sip:we?ird@example.com SIP/2.0")) is None


def test_missing_mandatory_field_is_400() -> None:
    """3.3.1 insuf."""
    data = b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 1 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
    data += b"\r\n"
    assert verdict_of(data) == (400, False)


def test_rfc2543_request_without_max_forwards_or_content_length_passes() -> None:
    """3.4.1 inv2543."""
    data = (
        b"INVITE sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/UDP iftgw.example.com\r\nFrom: <sip:a@b>\r\n"
        b"To: sip:c@d\r\nCall-ID: x@y\r\nCSeq: 56 INVITE\r\n\r\n" + BODY.encode()
    )
    assert verdict_of(data) is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(line="OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0"), 416),  # 3.3.2 unkscm
        (request(line="OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0"), 416),  # 3.3.3 novelsc
        (request("NEWMETHOD"), 501),  # 3.1.1.2 intmeth, 3.1.1.5 esc02
        (request("MESSAGE"), 405),  # 3.1.1.11 mpart01
        (request("REGISTER"), 405),  # 3.3.4 unksm2, 3.3.12-14
        (request(extra="Require: nothingSupportsThis, nothingSupportsThisEither\r\n"), 420),  # 3.3.5 bext01
    ],
)
def test_capability_answers_are_policy(data: bytes, status: int) -> None:
    assert verdict_of(data) == (status, True)


def test_bext01_lists_the_unsupported_tags_and_ignores_proxy_require() -> None:
    verdict = screen(request(extra="Require: a, b\r\nProxy-Require: c\r\n")).verdict
    assert verdict is not None and verdict.headers == (("Unsupported", "a, b"),)
    assert verdict_of(request(extra="Proxy-Require: noProxiesSupportThis\r\n")) is None


def test_require_is_not_checked_on_ack_and_cancel() -> None:
    assert verdict_of(request("CANCEL", extra="Require: x\r\n")) is None
    result = screen(request("ACK", extra="Require: x\r\n", cseq="1 INVITE"))
    assert result.verdict is not None and reply(result, result.verdict) is None  # an ACK is never answered


def test_in_dialog_methods_are_left_to_sippy() -> None:
    assert verdict_of(request("REFER", to="<sip:user@example.com>;tag=t9")) is None
    assert verdict_of(request("NEWMETHOD", to="<sip:user@example.com>;tag=t9")) == (501, True)


# --- the stateless answer ----------------------------------------------------------------------------


def test_reply_copies_dialog_headers_and_adds_a_to_tag() -> None:
    result = screen(request(cseq="8 INVITE", extra="X-Other: y\r\n"))
    assert result.verdict is not None
    data = reply(result, Verdict(420, "Bad Extension", headers=(("Unsupported", "foo"),)))
    assert data is not None
    lines = data.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 420 Bad Extension"
    assert "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc" in lines
    assert "Call-ID: c1@example.net" in lines and "CSeq: 8 INVITE" in lines and "Unsupported: foo" in lines
    assert any(ln.startswith("To: <sip:user@example.com>;tag=") for ln in lines)
    assert not any("X-Other" in ln for ln in lines) and data.endswith(b"Content-Length: 0\r\n\r\n")


def test_no_reply_without_request_line_or_via() -> None:
    result = screen(b"garbage\r\nVia: SIP/2.0/UDP h\r\n\r\n")
    assert result.verdict is not None and reply(result, result.verdict) is None
    result = screen(b"INVITE sip:1@h SIP/2.0\r\nFrom: x\r\n\r\n")
    assert result.verdict is not None and reply(result, result.verdict) is None


@pytest.mark.parametrize(
    ("via", "address"),
    [
        ("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx", ("127.0.0.9", 5070)),
        ("SIP/2.0/UDP host.example.com;branch=z9hG4bKx", ("127.0.0.9", 5060)),
        ("SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bKx", ("127.0.0.9", 40000)),
    ],
)
def test_reply_address_follows_rfc3261_18_2_2(via: str, address: tuple[str, int]) -> None:
    assert reply_address(screen(request(via=via)), ("127.0.0.9", 40000)) == address


@given(st.binary(max_size=600))
def test_screen_and_reply_never_raise(data: bytes) -> None:
    result = screen(b"INVITE sip:u@h SIP/2.0\r\n" + data)
    if result.verdict is not None:
        out = reply(result, result.verdict)
        assert out is None or out.startswith(b"SIP/2.0 ")
    reply_address(result, ("127.0.0.1", 1))


@given(st.text(max_size=300))
def test_screen_never_raises_on_text(text: str) -> None:
    screen(text.encode("utf-8", "surrogatepass"))


# --- SipStack._screen: who gets which answer ---------------------------------------------------------

GATEWAY, STRANGER = "127.0.0.1", "127.0.0.2"


class FakeServer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))

    def getSIPaddr(self) -> tuple[tuple[str, int], str]:  # noqa: N802 - sippy's API
        return (("127.0.0.1", 5060), "udp")


class FakeAddress:
    def __init__(self, host: str) -> None:
        self.address = (host, 40000)


def in_sippy_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` where sippy may be imported (its reactor binds to the importing thread)."""
    SippyRuntime.ensure()
    done = threading.Event()
    out: list[Any] = []
    SippyRuntime.call(lambda: (out.append(fn()), done.set()))
    assert done.wait(10)
    return out[0]


def stack_screen(data: bytes, source: str) -> tuple[Any, list[tuple[bytes, tuple[str, int]]], dict[str, int]]:
    stack = SipStack(
        host="127.0.0.1",
        port=5060,
        public_address="127.0.0.1",
        user_agent="test",
        acl=frozenset({GATEWAY}),
        accept_number=lambda number: False,
        antiflood=Antiflood(limit=100, window_s=1.0),
        post=lambda event: None,
    )
    server = FakeServer()
    result = in_sippy_thread(lambda: stack._screen(data, FakeAddress(source), server))
    return result, server.sent, stack.counters


@pytest.mark.parametrize(
    ("data", "gateway", "stranger"),
    [
        (request(extra="Require: nothingSupportsThis\r\n"), b"420", b"403"),  # bext01
        (request("NEWMETHOD"), b"501", b"403"),  # intmeth
        (request("MESSAGE"), b"405", b"403"),  # mpart01
        (request(line="OPTIONS nobodyknowsthisscheme:x SIP/2.0"), b"416", b"403"),  # unkscm
        (request(cseq="8 INVITE"), b"400", b"400"),  # mismatch01
        (request(extra="Content-Length: 5\r\n", body="hello"), b"400", b"400"),  # mcl01
        (request(line="INVITE sip:user@example.com; lr SIP/2.0", cseq="1 INVITE"), b"400", b"400"),  # lwsruri
    ],
)
def test_stack_answers_here_gateway_and_stranger(data: bytes, gateway: bytes, stranger: bytes) -> None:
    for source, status in ((GATEWAY, gateway), (STRANGER, stranger)):
        result, sent, counters = stack_screen(data, source)
        assert result is None
        assert len(sent) == 1 and sent[0][0].startswith(b"SIP/2.0 " + status + b" ")
        assert sent[0][1] == (source, 5070)  # the Via port, no rport (RFC 3261 §18.2.2)
        assert counters["forbidden"] == (status == b"403")


def test_stack_hands_sippy_the_screened_text() -> None:
    """3.1.1.1 wsinv and 3.1.1.11 mpart01: what sippy could not parse before now reaches it."""
    data = request(via="SIP  /  2.0 / UDP 192.0.2.1:5070;branch=z9hG4bKabc", body="\x00\xff", method="INFO")
    result, sent, _counters = stack_screen(data, GATEWAY)
    assert sent == [] and isinstance(result, str)
    assert "\r\nvia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc\r\n" in result and result.endswith("\x00\xff")


def test_stack_sippy_parse_failure_is_400() -> None:
    """3.1.2.6 quotbal: the screening passes it; sippy's parse refuses it; the answer is 400."""
    data = request(to='"Mr. J. User <sip:j.user@example.com>')
    result, sent, counters = stack_screen(data, STRANGER)
    assert result is None and len(sent) == 1 and sent[0][0].startswith(b"SIP/2.0 400 ")
    assert counters["bad_requests"] == 1
