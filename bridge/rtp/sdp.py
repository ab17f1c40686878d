"""SDP offer/answer for one audio stream (RFC 4566 syntax, RFC 3264 negotiation). Pure: text in, text out.

We speak G.711 only (PCMU = static payload type 0, PCMA = 8) at 20 ms packets, plus RFC 4733
``telephone-event/8000`` on a dynamic payload type (101 in our offers; whatever the peer chose in its offer).

Rules we follow (RFC 3264):

* The answer has exactly as many ``m=`` lines as the offer (§6). We accept the first ``m=audio`` line with a
  non-zero port and ``RTP/AVP`` transport and refuse every other stream with port 0.
* The answerer picks one codec: the first one *in the offer's order* that we support (§6.1 lets the answerer
  choose; honouring the offerer's preference is what trunks expect).
* Direction (§6.1, §8.4 hold): an offer ``sendonly`` is answered ``recvonly``, ``recvonly`` -> ``sendonly``,
  ``inactive`` -> ``inactive``. The old RFC 2543 hold, ``c=0.0.0.0``, means "do not send to me": it removes
  the receive half of the offerer's direction (``sendrecv`` -> ``sendonly``, ``recvonly`` -> ``inactive``).

:class:`MediaDescription` always describes the *remote* party: where to send RTP, the negotiated codec and
payload types, and the remote party's effective direction (``sendonly`` = it sends to us but does not want
our audio). It is what :meth:`bridge.rtp.endpoint.RtpEndpoint.start` takes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge.rtp.errors import SdpError

__all__ = [
    "CODECS",
    "DEFAULT_DTMF_PAYLOAD_TYPE",
    "DIRECTIONS",
    "MediaDescription",
    "answer_offer",
    "make_offer",
    "parse_answer",
]

CODECS: dict[str, int] = {"PCMU": 0, "PCMA": 8}
"""Codec name -> static payload type (RFC 3551 §6) of the codecs we can send and receive."""
_STATIC_NAMES = {0: "PCMU", 8: "PCMA", 9: "G722"}
DEFAULT_DTMF_PAYLOAD_TYPE = 101
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_NO_RECEIVE = {"sendrecv": "sendonly", "recvonly": "inactive", "sendonly": "sendonly", "inactive": "inactive"}
PTIME_MS = 20


@dataclass(frozen=True)
class MediaDescription:
    """The remote side of a negotiated audio stream (see the module docstring)."""

    address: str
    """IP address to send RTP to (RTCP goes to ``port + 1``); ``0.0.0.0`` when the peer put itself on hold."""
    port: int
    """Remote RTP port."""
    codec: str
    """Negotiated codec: ``"PCMU"`` or ``"PCMA"``."""
    payload_type: int
    """RTP payload type of the audio (0 or 8, or the dynamic number the peer mapped the codec to)."""
    dtmf_payload_type: int | None
    """Payload type of RFC 4733 ``telephone-event``, or None when the peer did not offer/accept it."""
    direction: str
    """The remote party's effective direction: ``sendrecv``, ``sendonly``, ``recvonly`` or ``inactive``."""

    @property
    def remote_sends(self) -> bool:
        """True when the remote party sends us RTP (so silence from it means trouble)."""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def remote_receives(self) -> bool:
        """True when the remote party wants our RTP."""
        return self.direction in ("sendrecv", "recvonly")


# --- parsing -----------------------------------------------------------------------------------------


@dataclass
class _Media:
    kind: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    direction: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)


@dataclass
class _Session:
    connection: str | None = None
    direction: str | None = None
    media: list[_Media] = field(default_factory=list)


def _parse(text: str) -> _Session:
    """Parse the parts of an SDP body we need; raise :class:`SdpError` (400) on bad syntax."""
    if not isinstance(text, str) or not text.strip():
        raise SdpError("empty SDP body", status_hint=400)
    session = _Session()
    seen_version = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"SDP line {number}: expected '<type>=<value>', got {line[:40]!r}", status_hint=400)
        kind, value = line[0], line[2:].strip()
        media = session.media[-1] if session.media else None
        if kind == "v":
            if value != "0":
                raise SdpError(f"SDP line {number}: unsupported version {value!r}", status_hint=400)
            seen_version = True
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or not _is_number(parts[1].split("/")[0]):
                raise SdpError(f"SDP line {number}: bad media line {value[:60]!r}", status_hint=400)
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError(f"SDP line {number}: port {port} out of range", status_hint=400)
            session.media.append(_Media(kind=parts[0], port=port, proto=parts[2], formats=parts[3:]))
        elif kind == "c":
            address = _connection_address(value, number)
            if media is None:
                session.connection = address
            else:
                media.connection = address
        elif kind == "a":
            name, _, attr = value.partition(":")
            if name in DIRECTIONS:
                if media is None:
                    session.direction = name
                else:
                    media.direction = name
            elif name == "rtpmap" and media is not None:
                pt_text, _, encoding = attr.partition(" ")
                enc_parts = encoding.strip().split("/")
                if not _is_number(pt_text) or len(enc_parts) < 2 or not _is_number(enc_parts[1]):
                    raise SdpError(f"SDP line {number}: bad rtpmap {attr[:60]!r}", status_hint=400)
                media.rtpmap[int(pt_text)] = (enc_parts[0].upper(), int(enc_parts[1]))
    if not seen_version:
        raise SdpError("SDP has no 'v=0' line", status_hint=400)
    return session


def _is_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` accepts '²', which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _connection_address(value: str, number: int) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"SDP line {number}: bad connection line {value[:60]!r}", status_hint=400)
    address = parts[2].split("/")[0]  # strip a multicast TTL
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # RFC 4566 allows an FQDN here; we refuse it rather than resolve names on the media path.
        raise SdpError(f"SDP line {number}: connection address {address!r} is not an IP address") from None
    return address


def _codec_of(media: _Media, pt: int) -> tuple[str, int] | None:
    if pt in media.rtpmap:
        return media.rtpmap[pt]
    if pt in _STATIC_NAMES:
        return _STATIC_NAMES[pt], 8000
    return None


def _negotiate(media: _Media, codecs: Iterable[str]) -> tuple[str, int, int | None]:
    """(codec, payload type, telephone-event payload type) for ``media``; raise SdpError 488."""
    wanted = {c.upper() for c in codecs}
    unknown = wanted - CODECS.keys()
    if unknown:
        raise ValueError(f"unsupported codecs requested: {sorted(unknown)}")
    chosen: tuple[str, int] | None = None
    dtmf: int | None = None
    for fmt in media.formats:
        if not _is_number(fmt) or int(fmt) > 127:
            continue
        pt = int(fmt)
        codec = _codec_of(media, pt)
        if codec is None:
            continue
        name, rate = codec
        if chosen is None and name in wanted and rate == 8000:
            chosen = (name, pt)
        elif dtmf is None and name == "TELEPHONE-EVENT" and rate == 8000:
            dtmf = pt
    if chosen is None:
        offered = " ".join(media.formats)
        raise SdpError(f"no codec in common (offered payload types {offered}, we support {sorted(wanted)})")
    return chosen[0], chosen[1], dtmf


def _audio_index(session: _Session) -> int | None:
    for i, media in enumerate(session.media):
        if media.kind == "audio" and media.port != 0 and media.proto.upper() == "RTP/AVP":
            return i
    return None


def _remote(session: _Session, media: _Media, codecs: Iterable[str]) -> MediaDescription:
    address = media.connection or session.connection
    if address is None:
        raise SdpError("SDP has no connection ('c=') line for the audio stream", status_hint=400)
    codec, pt, dtmf = _negotiate(media, codecs)
    direction = media.direction or session.direction or "sendrecv"
    if ipaddress.ip_address(address).is_unspecified:
        direction = _NO_RECEIVE[direction]
    return MediaDescription(
        address=address, port=media.port, codec=codec, payload_type=pt, dtmf_payload_type=dtmf, direction=direction
    )


# --- writing -----------------------------------------------------------------------------------------


def _ip_kind(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        raise ValueError(f"our SDP address must be an IP address, got {address!r}") from None


def _header(address: str, session_id: int, version: int) -> list[str]:
    kind = _ip_kind(address)
    return ["v=0", f"o=- {session_id} {version} IN {kind} {address}", "s=-", f"c=IN {kind} {address}", "t=0 0"]


def _audio_lines(port: int, formats: list[tuple[str, int]], dtmf: int | None, direction: str) -> list[str]:
    pts = [pt for _, pt in formats] + ([dtmf] if dtmf is not None else [])
    lines = [f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}"]
    lines += [f"a=rtpmap:{pt} {name}/8000" for name, pt in formats]
    if dtmf is not None:
        lines += [f"a=rtpmap:{dtmf} telephone-event/8000", f"a=fmtp:{dtmf} 0-15"]
    lines += [f"a=ptime:{PTIME_MS}", f"a={direction}"]
    return lines


def make_offer(
    address: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    codecs: Iterable[str] = ("PCMU", "PCMA"),
    dtmf_payload_type: int = DEFAULT_DTMF_PAYLOAD_TYPE,
    direction: str = "sendrecv",
) -> str:
    """Our SDP offer: one audio stream at ``address:port`` with ``codecs`` in preference order + telephone-event.

    ``version`` must grow by one with every new offer in the same dialog (RFC 3264 §8); ``direction`` is
    ``sendonly`` to put the peer on hold.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    formats = []
    for name in codecs:
        if name.upper() not in CODECS:
            raise ValueError(f"unsupported codec {name!r}")
        formats.append((name.upper(), CODECS[name.upper()]))
    lines = _header(address, session_id, version) + _audio_lines(port, formats, dtmf_payload_type, direction)
    return "\r\n".join(lines) + "\r\n"


def answer_offer(
    offer: str,
    address: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    codecs: Iterable[str] = ("PCMU", "PCMA"),
) -> tuple[str, MediaDescription]:
    """Answer the peer's ``offer`` with our ``address:port``; return the answer text and the remote media.

    Raises :class:`SdpError` with ``status_hint`` 400 (syntax) or 488 (no usable audio / no common codec).
    """
    codecs = tuple(codecs)
    session = _parse(offer)
    index = _audio_index(session)
    if index is None:
        raise SdpError("offer has no active RTP/AVP audio stream")
    remote = _remote(session, session.media[index], codecs)
    lines = _header(address, session_id, version)
    for i, media in enumerate(session.media):
        if i == index:
            formats = [(remote.codec, remote.payload_type)]
            lines += _audio_lines(port, formats, remote.dtmf_payload_type, _MIRROR[remote.direction])
        else:
            first = media.formats[0] if media.formats else "0"
            lines.append(f"m={media.kind} 0 {media.proto} {first}")
    return "\r\n".join(lines) + "\r\n", remote


def parse_answer(answer: str, *, codecs: Iterable[str] = ("PCMU", "PCMA")) -> MediaDescription:
    """Read the peer's answer to our offer. Raises :class:`SdpError` if it refused audio or is malformed."""
    session = _parse(answer)
    index = _audio_index(session)
    if index is None:
        raise SdpError("answer has no active RTP/AVP audio stream (audio refused)")
    return _remote(session, session.media[index], tuple(codecs))
