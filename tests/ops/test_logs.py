"""Log lines: one per event, text or JSON, with the context ids; the SIP trace only for the traced trunks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bridge.config import LogConfig, TrunkGroupConfig
from bridge.ops.logs import SIP_STACK_LOGGER, TRACE_LEVEL, handler_for, log_context

TRUNKS = [
    TrunkGroupConfig(name="main", gateways=["10.0.0.1:5060"]),
    TrunkGroupConfig(name="backup", gateways=["10.0.0.2:5060"]),
]


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    logger = logging.getLogger("test.ops.logs")
    logger.propagate = False
    logger.setLevel(TRACE_LEVEL)
    yield stream, logger
    logger.handlers.clear()


def _attach(logger: logging.Logger, stream: io.StringIO, config: LogConfig) -> None:
    handler = handler_for(config, TRUNKS)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logger.handlers = [handler]


def test_json_lines_carry_the_context_ids_and_extra_wins(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = capture
    _attach(logger, stream, LogConfig(format="json"))
    logger.info("outside")
    with log_context(run=7, leg=12, call_id="abc@host"):
        logger.info("leg %s connected", 12)
        with log_context(sms_id=99):
            logger.warning("nested")
        logger.info("explicit", extra={"leg": 13})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4
    assert "run" not in lines[0] and lines[0]["message"] == "outside"
    assert lines[1] == {**lines[1], "run": 7, "leg": 12, "call_id": "abc@host", "message": "leg 12 connected"}
    assert lines[1]["level"] == "info" and lines[1]["logger"] == "test.ops.logs" and lines[1]["time"].endswith("+00:00")
    assert lines[2]["sms_id"] == 99 and lines[2]["run"] == 7
    assert lines[3]["leg"] == 13 and lines[3]["run"] == 7


def test_text_is_one_line_per_event_even_with_a_traceback(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = capture
    _attach(logger, stream, LogConfig())
    with log_context(run=3, call_id="x@y"):
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("tick failed")
    (line,) = stream.getvalue().splitlines()
    assert "tick failed run=3 call_id=x@y | Traceback" in line and "ValueError: boom | second line" in line


def _sippy(logger: logging.Logger, text: str) -> None:
    logger.log(TRACE_LEVEL, "%s", text)


def test_sip_trace_only_for_the_traced_trunk_groups(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, _ = capture
    stack = logging.getLogger(SIP_STACK_LOGGER)
    saved = stack.handlers, stack.propagate, stack.level
    stack.propagate = False
    stack.setLevel(TRACE_LEVEL)
    try:
        _attach(stack, stream, LogConfig(sip_trace_trunks=["main"]))
        invite = "INVITE sip:1@10.0.0.1 SIP/2.0\r\nCall-ID: c1@bridge\r\n\r\n"
        _sippy(stack, "SENDING message to 10.0.0.1:5060:\n" + invite)
        _sippy(stack, "RECEIVED message from udp:10.0.0.1:5060:\nSIP/2.0 200 OK\r\ni: c1@bridge\r\n\r\n")
        _sippy(stack, "SENDING message to 10.0.0.2:5060:\n" + invite)  # the backup trunk: not traced
        stack.debug("stack chatter below the configured level")
        stack.info("a normal line")
    finally:
        stack.handlers, stack.propagate = saved[0], saved[1]
        stack.setLevel(saved[2])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "INFO bridge.sip.trace: SIP out 10.0.0.1:5060: INVITE sip:1@10.0.0.1 SIP/2.0\\r\\nCall-ID" in lines[0]
    assert lines[0].endswith("call_id=c1@bridge")
    assert "SIP in 10.0.0.1:5060: SIP/2.0 200 OK" in lines[1] and lines[1].endswith("call_id=c1@bridge")
    assert lines[2].endswith("a normal line")


def test_without_traced_trunks_no_sip_message_is_logged(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, _ = capture
    logger = logging.getLogger(SIP_STACK_LOGGER + ".child_for_test")
    logger.propagate = False
    logger.setLevel(TRACE_LEVEL)
    _attach(logger, stream, LogConfig())
    logger.name = SIP_STACK_LOGGER  # records as the stack's logger makes them
    _sippy(logger, "SENDING message to 10.0.0.1:5060:\nOPTIONS sip:10.0.0.1 SIP/2.0\r\n\r\n")
    assert stream.getvalue() == ""
