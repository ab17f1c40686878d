"""SDP offer/answer (RFC 3264): codec choice, telephone-event, hold directions, refused streams, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtp.errors import SdpError
from bridge.rtp.sdp import MediaDescription, answer_offer, make_offer, parse_answer

SIPP_OFFER = """v=0
o=sipp 1 1 IN IP4 127.0.0.1
s=sipp
c=IN IP4 127.0.0.1
t=0 0
m=audio 6200 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""


def offer(formats: str = "0 101", *, extra: str = "", connection: str = "127.0.0.1", rtpmaps: str = "") -> str:
    maps = rtpmaps or "a=rtpmap:101 telephone-event/8000\r\n"
    return (
        f"v=0\r\no=peer 7 7 IN IP4 {connection}\r\ns=-\r\nc=IN IP4 {connection}\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {formats}\r\n{maps}{extra}"
    )


def m_lines(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("m=")]


def attributes(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=")]


def test_answer_to_a_sipp_offer_picks_pcmu_and_telephone_event() -> None:
    answer, remote = answer_offer(SIPP_OFFER, "127.0.0.2", 10000, session_id=42)
    assert remote == MediaDescription("127.0.0.1", 6200, "PCMU", 0, 101, "sendrecv")
    assert m_lines(answer) == ["m=audio 10000 RTP/AVP 0 101"]
    assert "c=IN IP4 127.0.0.2" in answer.splitlines()
    assert "o=- 42 1 IN IP4 127.0.0.2" in answer.splitlines()
    assert {"a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=sendrecv"} <= set(attributes(answer))
    assert answer.endswith("\r\n") and "\r\n\r\n" not in answer


def test_answer_honours_the_offerers_codec_order() -> None:
    _, remote = answer_offer(offer("8 0 101"), "127.0.0.1", 10000, session_id=1)
    assert (remote.codec, remote.payload_type) == ("PCMA", 8)


def test_answer_restricted_to_our_codecs() -> None:
    _, remote = answer_offer(offer("0 8 101"), "127.0.0.1", 10000, session_id=1, codecs=("PCMA",))
    assert remote.codec == "PCMA"


def test_no_common_codec_is_488() -> None:
    with pytest.raises(SdpError) as err:
        answer_offer(offer("18 101", rtpmaps="a=rtpmap:18 G729/8000\r\n"), "127.0.0.1", 10000, session_id=1)
    assert err.value.status_hint == 488
    assert "no codec in common" in str(err.value)


def test_g722_alone_is_refused_we_only_mix_narrowband() -> None:
    with pytest.raises(SdpError):
        answer_offer(offer("9"), "127.0.0.1", 10000, session_id=1)


def test_dynamic_payload_type_for_pcmu_is_honoured() -> None:
    answer, remote = answer_offer(
        offer("96 97", rtpmaps="a=rtpmap:96 pcmu/8000\r\na=rtpmap:97 telephone-event/8000\r\n"),
        "127.0.0.1",
        10000,
        session_id=1,
    )
    assert (remote.codec, remote.payload_type, remote.dtmf_payload_type) == ("PCMU", 96, 97)
    assert m_lines(answer) == ["m=audio 10000 RTP/AVP 96 97"]


def test_offer_without_telephone_event() -> None:
    answer, remote = answer_offer(offer("0", rtpmaps="a=ptime:20\r\n"), "127.0.0.1", 10000, session_id=1)
    assert remote.dtmf_payload_type is None
    assert m_lines(answer) == ["m=audio 10000 RTP/AVP 0"]
    assert not any("telephone-event" in a for a in attributes(answer))


@pytest.mark.parametrize(
    ("attribute", "connection", "remote_direction", "our_direction"),
    [
        ("a=sendrecv", "127.0.0.1", "sendrecv", "sendrecv"),
        ("a=sendonly", "127.0.0.1", "sendonly", "recvonly"),
        ("a=recvonly", "127.0.0.1", "recvonly", "sendonly"),
        ("a=inactive", "127.0.0.1", "inactive", "inactive"),
        ("", "0.0.0.0", "sendonly", "recvonly"),  # RFC 2543 hold
        ("a=recvonly", "0.0.0.0", "inactive", "inactive"),
        ("a=sendonly", "0.0.0.0", "sendonly", "recvonly"),
    ],
)
def test_hold_directions(attribute: str, connection: str, remote_direction: str, our_direction: str) -> None:
    extra = f"{attribute}\r\n" if attribute else ""
    answer, remote = answer_offer(offer(extra=extra, connection=connection), "127.0.0.1", 10000, session_id=1)
    assert remote.direction == remote_direction
    assert f"a={our_direction}" in attributes(answer)
    assert remote.remote_receives == (remote_direction in ("sendrecv", "recvonly"))
    assert remote.remote_sends == (remote_direction in ("sendrecv", "sendonly"))


def test_session_level_direction_applies_unless_the_media_overrides_it() -> None:
    text = offer().replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    assert answer_offer(text, "127.0.0.1", 1, session_id=1)[1].direction == "sendonly"
    assert answer_offer(text + "a=sendrecv\r\n", "127.0.0.1", 1, session_id=1)[1].direction == "sendrecv"


def test_other_streams_are_refused_with_port_zero_keeping_the_m_line_count() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=video 4000 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\na=rtpmap:96 H264/90000\r\n"
        "m=audio 4002 RTP/SAVP 0\r\nc=IN IP4 10.0.0.1\r\n"
        "m=audio 4004 RTP/AVP 8 0\r\nc=IN IP4 10.0.0.2\r\n"
    )
    answer, remote = answer_offer(text, "127.0.0.1", 10000, session_id=1)
    assert m_lines(answer) == ["m=video 0 RTP/AVP 96", "m=audio 0 RTP/SAVP 0", "m=audio 10000 RTP/AVP 8"]
    assert (remote.address, remote.port, remote.codec) == ("10.0.0.2", 4004, "PCMA")


def test_srtp_only_offer_is_488() -> None:
    with pytest.raises(SdpError) as err:
        answer_offer(offer().replace("RTP/AVP", "RTP/SAVP"), "127.0.0.1", 1, session_id=1)
    assert err.value.status_hint == 488


def test_disabled_audio_stream_is_488() -> None:
    with pytest.raises(SdpError):
        answer_offer(offer().replace("m=audio 30000", "m=audio 0"), "127.0.0.1", 1, session_id=1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "v=1\r\n",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",  # no v=
        "v=0\r\nm=audio\r\n",
        "v=0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\nm=audio \u00b2 RTP/AVP 0\r\n",  # a Unicode digit int() refuses
        "v=0\r\nc=IN IP4\r\n",
        "v=0\r\nc=XX IP4 1.2.3.4\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 0\r\n",  # no connection address at all
    ],
)
def test_malformed_offers_are_400(text: str) -> None:
    with pytest.raises(SdpError) as err:
        answer_offer(text, "127.0.0.1", 1, session_id=1)
    assert err.value.status_hint == 400


def test_hostname_connection_address_is_refused() -> None:
    with pytest.raises(SdpError, match="not an IP address"):
        answer_offer(offer(connection="gw.example.net"), "127.0.0.1", 1, session_id=1)


def test_ipv6() -> None:
    text = offer().replace("IN IP4 127.0.0.1", "IN IP6 ::1")
    answer, remote = answer_offer(text, "::1", 10000, session_id=1)
    assert remote.address == "::1"
    assert "c=IN IP6 ::1" in answer.splitlines()


def test_make_offer_round_trips_through_parse_answer() -> None:
    text = make_offer("127.0.0.1", 10002, session_id=99, version=3)
    assert "o=- 99 3 IN IP4 127.0.0.1" in text.splitlines()
    assert m_lines(text) == ["m=audio 10002 RTP/AVP 0 8 101"]
    assert "a=fmtp:101 0-15" in attributes(text)
    assert parse_answer(text) == MediaDescription("127.0.0.1", 10002, "PCMU", 0, 101, "sendrecv")


def test_make_offer_for_hold_and_codec_order() -> None:
    text = make_offer("127.0.0.1", 10002, session_id=1, codecs=("PCMA", "PCMU"), direction="sendonly")
    remote = parse_answer(text)
    assert (remote.codec, remote.direction) == ("PCMA", "sendonly")
    with pytest.raises(ValueError):
        make_offer("127.0.0.1", 1, session_id=1, codecs=("OPUS",))
    with pytest.raises(ValueError):
        make_offer("127.0.0.1", 1, session_id=1, direction="sideways")


def test_our_answer_is_a_valid_answer_for_the_offerer() -> None:
    answer, remote = answer_offer(offer("8 0 101"), "127.0.0.3", 12000, session_id=5)
    seen_by_offerer = parse_answer(answer)
    assert seen_by_offerer == MediaDescription("127.0.0.3", 12000, remote.codec, remote.payload_type, 101, "sendrecv")


def test_answer_refusing_audio_is_an_error() -> None:
    with pytest.raises(SdpError):
        parse_answer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n")


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_answers_or_raises_sdp_error(text: str) -> None:
    try:
        answer_offer(text, "127.0.0.1", 10000, session_id=1)
    except SdpError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_offers_answer_or_raise_sdp_error(data: st.DataObject) -> None:
    lines = SIPP_OFFER.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    cut = data.draw(st.integers(0, len(lines[index])))
    junk = data.draw(st.text(max_size=12))
    lines[index] = lines[index][:cut] + junk
    try:
        answer, remote = answer_offer("\n".join(lines), "127.0.0.1", 10000, session_id=1)
    except SdpError:
        return
    assert parse_answer(answer).codec == remote.codec
