"""The RFC 4475 torture messages (all 49, byte for byte, one UDP datagram each) against the real SIP service,
once from a trunk gateway address and once from a stranger's, asserting the answer RFC 4475 §3 expects.

Policy for strangers (sources that are not trunk gateways), following the order of RFC 3261 §8.2 (parse, then
authorize, then method/header/content inspection): a malformed request gets the same 400/505 as from a
gateway (it is refused before anyone is identified, and the antiflood bounds what a stranger can make us
send); a well-formed out-of-dialog request gets 403 Forbidden, never a 416/420/405/501 that would describe the
bridge; a request inside an unknown dialog gets 481 from anyone. Responses are never answered.

For the messages where RFC 4475 allows a choice, ``EXPECTED`` records ours (see the comments): the bridge is
an endpoint that serves only INVITE/OPTIONS (REGISTER gets 405, it is no registrar); the Request-URI users of
the corpus are not numbers it serves, so INVITEs end at 404 (RFC 3261 §8.2.2.1, before content is examined).

How answers are collected: without ``rport`` a response goes to the source IP at the Via port (RFC 3261
§18.2.2), so the test listens on the corpus' Via ports of its own source address, picked at run time among
127/8 addresses where those ports are free. After each message it sends a plain OPTIONS from the same socket:
the stack handles datagrams in order with one sender, so once that probe is answered, any answer to the
message has arrived too, and silence is established without waiting on a clock.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sip_peers import Recorder, free_udp_port, make_config, started_service

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent / "sip_torture"
MANIFEST: list[dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text())
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
BRANCH = re.compile(rb"branch[ \t]*=[ \t\r\n]*([^;,\s]+)", re.I)
VIA_PORT = re.compile(rb"^(?:via|v)[ \t]*:[^\r\n]*?SIP/2\.0/\w+[ \t]+[^\s;:,]+:(\d+)", re.I | re.M)

# name -> (answer to a trunk gateway, answer to a stranger); None: no answer (the message is a response).
EXPECTED: dict[str, tuple[int | None, int | None]] = {
    # 3.1.1 valid: parsed; then answered as an endpoint would
    "wsinv": (481, 481),  # it carries a To tag: a request in a dialog we do not have
    "intmeth": (501, 403),  # unknown method (RFC 3261 §8.2.1)
    "esc01": (404, 403),
    "escnull": (405, 403),  # REGISTER: not a registrar
    "esc02": (501, 403),  # method RE%47IST%45R is not REGISTER
    "lwsdisp": (200, 403),
    "longreq": (404, 403),
    "dblreq": (405, 403),
    "semiuri": (200, 403),
    "transports": (200, 403),
    "mpart01": (405, 403),  # MESSAGE, parsed despite the binary part
    "unreason": (None, None),
    "noreason": (None, None),
    # 3.1.2 invalid
    "badinv01": (400, 400),
    "clerr": (400, 400),
    "ncl": (400, 400),
    "scalar02": (400, 400),
    "scalarlg": (None, None),
    "quotbal": (400, 400),
    "ltgtruri": (400, 400),
    "lwsruri": (400, 400),
    "lwsstart": (400, 400),  # RFC: acceptable to reject; we do
    "trws": (400, 400),  # idem
    "escruri": (400, 400),  # idem (RFC 3261 §19.1.1: no headers in a Request-URI)
    "baddate": (404, 403),  # the Date does not matter to us, so we may (and do) ignore it
    "regbadct": (405, 403),  # REGISTER is refused before its Contact is examined
    "badaspec": (400, 400),
    "baddn": (400, 400),
    "badvers": (505, 505),
    "mismatch01": (400, 400),
    "mismatch02": (400, 400),  # RFC: 501 preferred, 400 acceptable; the CSeq check comes first
    "bigcode": (None, None),
    # 3.2-3.4 semantic
    "badbranch": (200, 403),  # RFC 2543 transaction matching
    "insuf": (400, 400),
    "unkscm": (416, 403),
    "novelsc": (416, 403),
    "unksm2": (405, 403),  # REGISTER; the isbn: To does not get in the way
    "bext01": (420, 403),
    "invut": (404, 403),  # 415 only for a number we serve (the Request-URI is examined first)
    "regaut01": (405, 403),
    "multi01": (400, 400),
    "mcl01": (400, 400),
    "bcast": (None, None),
    "zeromf": (200, 403),  # an endpoint processes Max-Forwards: 0
    "cparam01": (405, 403),
    "cparam02": (405, 403),
    "regescrt": (405, 403),
    "sdp01": (404, 403),  # 406 only for a number we serve
    "inv2543": (404, 403),
}


def rfc_class_allows(expect: str, is_response: bool, status: int | None) -> bool:
    """The manifest's class, as RFC 4475 §3 states it: responses unanswered, invalid requests 4xx/5xx, valid
    requests parsed (anything but 400)."""
    if is_response:
        return status is None
    if expect == "invalid":
        return status is not None and 400 <= status <= 599
    if expect == "valid":
        return status is not None and status != 400
    return status is not None


def test_expectations_cover_the_corpus() -> None:
    assert sorted(EXPECTED) == sorted(m["name"] for m in MANIFEST) and len(MANIFEST) == 49
    for m in MANIFEST:
        data = (CORPUS / m["file"]).read_bytes()
        for status in EXPECTED[m["name"]]:
            if status != 403:  # the stranger's 403 is our policy, not the RFC's
                assert rfc_class_allows(m["expect"], data.startswith(b"SIP/"), status), m["name"]


def via_ports() -> set[int]:
    ports = {5060}
    for m in MANIFEST:
        ports.update(int(p) for p in VIA_PORT.findall((CORPUS / m["file"]).read_bytes()))
    return ports


def bind_source(ports: set[int]) -> tuple[str, list[socket.socket]]:
    """A 127/8 address where every Via port is free, with those ports bound (so nothing takes them meanwhile)."""
    rnd = random.Random()
    for _ in range(50):
        host = f"127.{rnd.randrange(1, 255)}.{rnd.randrange(0, 255)}.{rnd.randrange(1, 255)}"
        socks: list[socket.socket] = []
        try:
            for port in sorted(ports):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
                s.setblocking(False)
            return host, socks
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError(f"no 127/8 address with UDP ports {sorted(ports)} free")


def probe(host: str, src: socket.socket, target: tuple[str, int]) -> tuple[bytes, bytes]:
    port = src.getsockname()[1]
    tag = uuid.uuid4().hex[:10]
    call_id = f"probe-{tag}@{host}".encode()
    msg = (
        f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{tag};rport\r\n"
        f"Max-Forwards: 70\r\nTo: <sip:{target[0]}>\r\nFrom: <sip:probe@{host}>;tag={tag}\r\n"
        f"Call-ID: {call_id.decode()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return msg, call_id


def matches(answer: bytes, data: bytes) -> bool:
    """The answer is to ``data``: same Call-ID, or (when it has none, RFC 4475 3.3.1) the same top branch."""
    ids = CALL_ID.findall(data)
    got = CALL_ID.search(answer)
    if ids:
        return got is not None and got.group(1) in ids
    branch, got_branch = BRANCH.search(data), BRANCH.search(answer)
    return branch is not None and got_branch is not None and branch.group(1) == got_branch.group(1)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def exchange(
    data: bytes, host: str, catchers: list[socket.socket], target: tuple[str, int]
) -> tuple[list[bytes], int]:
    """Send ``data`` and then a probe from one fresh socket; return the answers to ``data`` and the probe's status."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src:
        src.bind((host, 0))
        src.setblocking(False)
        src.sendto(data, target)
        msg, probe_id = probe(host, src, target)
        answers: list[bytes] = []
        probe_status = 0
        for _attempt in range(3):  # the probe is resent, as Timer E would, should a datagram be lost
            src.sendto(msg, target)
            try:
                while True:
                    got = await asyncio.wait_for(loop.sock_recv(src, 65535), 5)
                    answers.append(got)
                    m = CALL_ID.search(got)
                    if m is not None and m.group(1) == probe_id and status_of(got) >= 200:
                        probe_status = status_of(got)
                        break
            except TimeoutError:
                continue
            break
        for sock in catchers:  # the probe's answer came last: whatever was sent before it is queued by now
            while True:
                try:
                    answers.append(sock.recv(65535))
                except BlockingIOError:
                    break
    return [a for a in answers if a.startswith(b"SIP/2.0 ") and matches(a, data)], probe_status


def run_corpus(gateway: bool) -> dict[str, Any]:
    async def scenario() -> dict[str, Any]:
        host, catchers = bind_source(via_ports())
        sip_port = free_udp_port()
        config = make_config(
            sip_port=sip_port,
            sip={"antiflood_requests": 100_000},
            trunk_groups=[{"name": "pstn", "gateways": [f"{host if gateway else '127.0.0.1'}:5999"]}],
        )
        recorder = Recorder()
        # One service per pass: sippy recognises retransmissions by content alone, so the second pass would
        # only get the first one's answers resent to the first source.
        service = await started_service(config, recorder, accept_number=lambda number: False)
        target = ("127.0.0.1", sip_port)
        got: dict[str, Any] = {}
        try:
            for m in MANIFEST:
                answers, probe_status = await exchange((CORPUS / m["file"]).read_bytes(), host, catchers, target)
                assert probe_status == (200 if gateway else 403), f"after {m['name']}: probe got {probe_status}"
                finals = {status_of(a) for a in answers if status_of(a) >= 200}
                got[m["name"]] = finals.pop() if len(finals) == 1 else (sorted(finals) or None)
            # the stack survived: a normal OPTIONS from a gateway is still answered 200
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
                msg, _ = probe("127.0.0.1", s, target)
                s.sendto(msg, target)
                final = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(s, 65535), 5)
            got["_final"] = status_of(final)
            got["_events"] = list(recorder.events)
        finally:
            for sock in catchers:
                sock.close()
            await service.stop()
        return got

    return asyncio.run(scenario())


@pytest.mark.parametrize("gateway", [True, False], ids=["gateway", "stranger"])
def test_torture_corpus(gateway: bool) -> None:
    got = run_corpus(gateway)
    # the final OPTIONS came from 127.0.0.1: a gateway in the stranger pass' config, a stranger in the other
    assert got.pop("_final") == (403 if gateway else 200)
    assert got.pop("_events") == []  # nothing reached the engine: no INVITE was for a number we serve
    wanted = {name: pair[0 if gateway else 1] for name, pair in EXPECTED.items()}
    wrong = {name: f"got {got.get(name)}, want {want}" for name, want in wanted.items() if got.get(name) != want}
    assert not wrong, wrong
