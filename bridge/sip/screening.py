"""Screening of a raw SIP request before sippy sees it (RFC 3261 §7, §8.2, §18.2.2, §18.3; RFC 4475 §3).

Pure: bytes in, a :class:`Screening` out; no sippy, no I/O, no clock. :mod:`bridge.sip.stack` calls
:func:`screen` on every request datagram and either sends the stateless answer built by :func:`reply` or hands
:attr:`Screening.text` to sippy.

Theory of operation. sippy is a liberal parser in some places and a brittle one in others: it splits header
fields on whitespace (so the LWS that RFC 3261 §7.3.1/§25.1 allows around ``/ ; = ,`` breaks it, RFC 4475
3.1.1.1), counts characters where Content-Length counts octets (3.1.1.11), keeps the last of two
Content-Lengths (3.3.9) and never compares the CSeq method with the request line (3.1.2.17). So, in the order
of RFC 3261 §8.2:

1. *Syntax* (§7, answered to anyone): an unreadable request line or head -> dropped or 400; a version other
   than SIP/2.0 -> 505; a request line that is not exactly ``Method SP Request-URI SP SIP/2.0`` -> 400 (RFC 4475
   3.1.2.8-10); a missing or repeated single-valued field, a Content-Length that is not a count or exceeds the
   datagram, a CSeq beyond 2**32-1 or naming another method, an ``<>``-enclosed Request-URI or one carrying
   headers (§19.1.1 table 1) -> 400.
2. *Capabilities* (:attr:`Verdict.policy`; §8.2.1-8.2.2, which come after authorization, so a source that is
   not a trunk gateway gets 403 instead): a Request-URI scheme other than sip/sips -> 416; an unknown method ->
   501, a known one we do not serve outside a dialog -> 405 (both with ``Allow``); a ``Require`` option-tag we
   do not support -> 420 with ``Unsupported`` (never for ACK and CANCEL, §8.2.2.3).
3. Otherwise the text for sippy: header fields unfolded, LWS around separators removed in the structured
   fields (outside quoted strings and ``<>``), the body cut at Content-Length (§18.3: the rest of a UDP
   datagram is ignored) and decoded one character per octet so that sippy's count is the octet count.

ACK is never answered (§17.2.3); an answer goes where §18.2.2 says (:func:`reply_address`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"
CSEQ_MAX = 2**32 - 1
"""RFC 3261 §8.1.1.5: the CSeq sequence number is a 32-bit unsigned integer."""

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO")
"""What the bridge serves (sent in ``Allow``)."""

KNOWN_METHODS = frozenset(
    {*ALLOWED_METHODS, "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "UPDATE"}
)
"""Methods we recognize (RFC 3261 and its extensions); any other gets 501, a recognized one we do not serve
outside a dialog 405 (RFC 3261 §8.2.1)."""

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
"""Option tags (RFC 3261 §19.2) the bridge supports in ``Require``: none (no 100rel, no session timers)."""

COMPACT_NAMES = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
}
SINGLE_VALUED = ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type")
"""Fields that may appear once (RFC 3261 §7.3.1, table 2; RFC 4475 3.3.8 and 3.3.9)."""
MANDATORY = ("via", "from", "to", "call-id", "cseq")
"""Max-Forwards is left out on purpose: RFC 2543 requests lack it and must still be served (RFC 4475 3.4.1)."""
STRUCTURED = frozenset(
    {
        "via",
        "from",
        "to",
        "contact",
        "route",
        "record-route",
        "cseq",
        "call-id",
        "max-forwards",
        "content-length",
        "content-type",
        "require",
        "proxy-require",
        "supported",
        "expires",
    }
)
"""Fields whose grammar is separators and tokens; free text (Subject, User-Agent...) is passed untouched."""

_TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) (SIP/\d+\.\d+)$")
_LOOSE_REQUEST_LINE = re.compile(rf"^({_TOKEN})[ \t]+\S")
_CSEQ = re.compile(rf"^(\d+) ({_TOKEN})$")
_HEAD_END = re.compile(rb"\r\n\r\n|\n\n")
_SEPARATED = re.compile(r"[ \t]*([;=/,])[ \t]*")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Verdict:
    """A stateless answer to the request; the request goes no further."""

    status: int
    reason: str
    policy: bool = False
    """True for answers about what we support (416, 420, 405, 501): only a trunk gateway gets them, anyone
    else gets 403, as authorization comes first in RFC 3261 §8.2."""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Screening:
    """The outcome of :func:`screen`: ``verdict`` to answer with, or ``text`` to hand to sippy."""

    method: str
    fields: tuple[tuple[str, str], ...] = ()
    """(canonical lower-case name, value): unfolded, structured values with LWS removed around separators."""
    verdict: Verdict | None = None
    text: str = ""
    answerable: bool = field(default=True)
    """False when no answer can be built (unreadable request line, ACK): drop silently."""

    def values(self, name: str) -> list[str]:
        return [value for n, value in self.fields if n == name]


def screen(data: bytes) -> Screening:
    """Decide what to do with one request datagram (see the module docstring for the order of the checks)."""
    match = _HEAD_END.search(data)
    head_bytes, body = (data[: match.start()], data[match.end() :]) if match else (data, b"")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        head = head_bytes.decode("utf-8", "replace")
        fields = _fields(head.splitlines()[1:])
        return _answer(head, fields, Verdict(400, "Bad Request - header not UTF-8"))
    lines = head.splitlines()
    start = lines[0] if lines else ""
    fields = _fields(lines[1:])
    request_line = _REQUEST_LINE.match(start)
    if request_line is None:
        if start.rstrip().endswith(SIP_VERSION):
            return _answer(start, fields, Verdict(400, "Bad Request - malformed Request-Line"))
        if re.search(r" SIP/\d+\.\d+\s*$", start):
            return _answer(start, fields, Verdict(505, "Version Not Supported"))
        return _answer(start, fields, Verdict(400, "Bad Request - malformed Request-Line"))
    method, ruri, version = request_line.groups()
    if version != SIP_VERSION:
        return _answer(start, fields, Verdict(505, "Version Not Supported"))
    if any(not name for name, _value in fields):
        return _answer(start, fields, Verdict(400, "Bad Request - malformed header field"))
    verdict = _syntax(method, ruri, fields, body) or _capabilities(method, ruri, fields)
    if verdict is not None:
        return _answer(start, fields, verdict)
    length = _content_length(fields)
    if length is not None:
        body = body[:length]
    head_out = "\r\n".join([start, *(f"{name}: {value}" for name, value in fields)])
    return Screening(method, fields, text=head_out + "\r\n\r\n" + body.decode("latin-1"))


def reply(screening: Screening, verdict: Verdict) -> bytes | None:
    """The stateless response to ``screening`` (RFC 3261 §8.2.6): Via, From, To (with a To tag added, §8.2.6.2),
    Call-ID and CSeq copied; ``None`` if it cannot be answered (ACK, unreadable request line, no Via)."""
    if not screening.answerable:
        return None
    vias = screening.values("via")
    if not vias:
        return None  # nowhere to send it (RFC 3261 §18.2.2 routes responses by Via)
    head = [f"SIP/2.0 {verdict.status} {verdict.reason}"]
    head += [f"Via: {via}" for via in vias]
    head += [f"From: {value}" for value in screening.values("from")[:1]]
    for value in screening.values("to")[:1]:
        if _to_tag(value) is None and verdict.status > 100:
            seed = "|".join(screening.values("call-id")[:1] + vias[:1]).encode("utf-8", "replace")
            value += ";tag=" + hashlib.sha1(seed).hexdigest()[:12]
        head.append(f"To: {value}")
    head += [f"Call-ID: {value}" for value in screening.values("call-id")[:1]]
    head += [f"CSeq: {value}" for value in screening.values("cseq")[:1]]
    head += [f"{name}: {value}" for name, value in verdict.headers]
    head.append("Content-Length: 0")
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "replace")


def reply_address(screening: Screening, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response goes over UDP (RFC 3261 §18.2.2, RFC 3581): the source address when the top Via has
    ``rport``, else the source IP (the ``received`` address) at the Via's port, 5060 by default."""
    vias = screening.values("via")
    if not vias:
        return source
    top = vias[0].split(",", 1)[0]
    sent_by, _, params = top.partition(";")
    if "rport" in [p.partition("=")[0].strip().lower() for p in params.split(";")]:
        return source
    host = sent_by.split()[-1] if sent_by.split() else ""
    port = re.search(r"(?<!:):(\d{1,5})$", host.rpartition("]")[2] if host.startswith("[") else host)
    value = int(port.group(1)) if port else 5060
    return source[0], value if 0 < value < 65536 else 5060


def canonical_value(value: str) -> str:
    """``value`` with LWS collapsed to one SP and removed around ``/ ; = ,``, outside quoted strings and
    ``<...>`` (RFC 3261 §7.3.1: LWS around separators carries no meaning)."""
    out: list[str] = []
    plain: list[str] = []

    def flush() -> None:
        if plain:
            text = re.sub(r"[ \t]+", " ", "".join(plain))
            out.append(_SEPARATED.sub(r"\1", text))
            plain.clear()

    i = 0
    while i < len(value):
        ch = value[i]
        if ch == '"' or ch == "<":
            flush()
            close = '"' if ch == '"' else ">"
            j = i + 1
            while j < len(value) and value[j] != close:
                j += 2 if ch == '"' and value[j] == "\\" else 1
            out.append(value[i : j + 1])
            i = j + 1
            continue
        plain.append(ch)
        i += 1
    flush()
    return "".join(out).strip()


# --- the checks -------------------------------------------------------------------------------------


def _fields(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """Unfold (RFC 3261 §7.3.1) and split into (canonical name, value); a line without a colon gets the name
    ``""`` so the caller can refuse it."""
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    out = []
    for line in unfolded:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not re.fullmatch(_TOKEN, name):
            out.append(("", line))
            continue
        name = COMPACT_NAMES.get(name, name)
        value = value.strip()
        out.append((name, canonical_value(value) if name in STRUCTURED else value))
    return tuple(out)


def _syntax(method: str, ruri: str, fields: tuple[tuple[str, str], ...], body: bytes) -> Verdict | None:
    names = [name for name, _value in fields]
    for name in MANDATORY:
        if name not in names:
            return Verdict(400, f"Bad Request - missing {_title(name)}")
    for name in SINGLE_VALUED:
        if names.count(name) > 1:
            return Verdict(400, f"Bad Request - more than one {_title(name)}")
    for value in (v for n, v in fields if n == "content-length"):
        if not value.isdigit():
            return Verdict(400, "Bad Request - bad Content-Length")
        if int(value) > len(body):
            return Verdict(400, "Bad Request - Content-Length larger than the message")
    cseq = _CSEQ.match(next(v for n, v in fields if n == "cseq"))
    if cseq is None:
        return Verdict(400, "Bad Request - malformed CSeq")
    if int(cseq.group(1)) > CSEQ_MAX:
        return Verdict(400, "Bad Request - CSeq number too large")
    if cseq.group(2) != method:
        return Verdict(400, "Bad Request - CSeq method does not match the Request-Line")
    if ruri.startswith("<"):
        return Verdict(400, "Bad Request - Request-URI in angle brackets")
    scheme = _SCHEME.match(ruri)
    if scheme is None:
        return Verdict(400, "Bad Request - malformed Request-URI")
    if scheme.group(1).lower() in ("sip", "sips") and "?" in ruri.partition("@")[2 if "@" in ruri else 0]:
        return Verdict(400, "Bad Request - headers in the Request-URI")
    return None


def _capabilities(method: str, ruri: str, fields: tuple[tuple[str, str], ...]) -> Verdict | None:
    scheme = ruri.partition(":")[0].lower()
    if scheme not in ("sip", "sips"):
        return Verdict(416, "Unsupported URI Scheme", policy=True)
    allow = (("Allow", ", ".join(ALLOWED_METHODS)),)
    if method not in KNOWN_METHODS:
        return Verdict(501, "Not Implemented", policy=True, headers=allow)
    in_dialog = any(_to_tag(v) is not None for n, v in fields if n == "to")
    if method not in ALLOWED_METHODS and not in_dialog:
        return Verdict(405, "Method Not Allowed", policy=True, headers=allow)
    if method not in ("ACK", "CANCEL"):
        required = [tag.strip() for n, v in fields if n == "require" for tag in v.split(",") if tag.strip()]
        unsupported = [tag for tag in required if tag.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            return Verdict(420, "Bad Extension", policy=True, headers=(("Unsupported", ", ".join(unsupported)),))
    return None


def _answer(start: str, fields: tuple[tuple[str, str], ...], verdict: Verdict) -> Screening:
    method = start.split(" ", 1)[0] if _LOOSE_REQUEST_LINE.match(start) else ""
    return Screening(method, fields, verdict, answerable=bool(method) and method != "ACK")


def _content_length(fields: tuple[tuple[str, str], ...]) -> int | None:
    for name, value in fields:
        if name == "content-length":
            return int(value)
    return None


def _to_tag(value: str) -> str | None:
    """The ``tag`` parameter of a canonical To value (parameters follow ``>``, or the URI when there is none)."""
    params = value.rpartition(">")[2] if "<" in value else value.partition(";")[2]
    for param in params.split(";"):
        name, _, tag = param.partition("=")
        if name.strip().lower() == "tag":
            return tag.strip()
    return None


def _title(name: str) -> str:
    return "Call-ID" if name == "call-id" else "CSeq" if name == "cseq" else name.title()
