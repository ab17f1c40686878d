"""Logging as an operator's tooling expects it: one line per event, text or JSON, with the conference run, leg,
Call-ID and SMS id on every line that concerns one.

The ids travel in :mod:`contextvars` (:func:`log_context`): the glue that dispatches an event about a leg sets
them around the dispatch, and :class:`ContextFilter` copies them onto every record logged inside it, whatever
module logs it. A call site that knows an id can also pass ``extra={"run": ...}``; the record's own value wins.

``[log] sip_trace_trunks`` names trunk groups whose SIP messages are logged in full (:class:`SipTraceFilter`).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bridge.config import LogConfig, TrunkGroupConfig

CONTEXT_FIELDS = ("run", "leg", "call_id", "sms_id")
"""The ids a line may carry: conference run id, leg id, SIP Call-ID, SMS (MO/MT) id."""

SIP_TRACE_LOGGER = "bridge.sip.trace"
SIP_STACK_LOGGER = "bridge.sip.stack"
TRACE_LEVEL = logging.DEBUG - 5
"""The level at which the SIP stack logs every message sippy sends and receives."""
_SIP_MESSAGE = re.compile(
    r"(?P<op>RECEIVED|SENDING) message (?:from|to) (?:udp:|tcp:|tls:)?(?P<peer>\S+?):\n(?P<body>.*)", re.S
)
_CALL_ID = re.compile(r"^(?:Call-ID|i)\s*:(.*)$", re.M | re.I)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"

_EMPTY: Mapping[str, object] = types.MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar("bridge_log_context", default=_EMPTY)


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every line logged inside the block carries these ids (``None`` values are left out); blocks nest."""
    merged = {**_context.get(), **{key: value for key, value in ids.items() if value not in (None, "")}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, object]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Puts the context ids on the record (as attributes) and a ready ``context`` suffix for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = dict(_context.get())
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                ids[key] = value
            elif key in ids:
                setattr(record, key, ids[key])
        record.context = "".join(f" {key}={ids[key]}" for key in CONTEXT_FIELDS if key in ids)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class OneLineFormatter(logging.Formatter):
    """The text format; a traceback is folded into the same line (`` | ``-joined), so one event is one line."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context"):
            record.context = ""
        return " | ".join(super().format(record).splitlines())


class SipTraceFilter(logging.Filter):
    """The sngrep habit, without touching the SIP stack: sippy hands every message it sends or receives to the
    stack's logger at ``TRACE_LEVEL`` (``RECEIVED message from udp:host:port:`` / ``SENDING message to host:port:``).
    This filter drops those records, and every other record of that logger below ``level``, except the messages
    to and from the gateways of the traced trunk groups: those are relabelled INFO on ``bridge.sip.trace``, on
    one line (CRLF written ``\\r\\n``), with their Call-ID."""

    def __init__(self, trunks: list[TrunkGroupConfig], traced: list[str], *, level: int = logging.INFO) -> None:
        super().__init__()
        self.gateways = {gw for trunk in trunks if trunk.name in traced for gw in trunk.gateways}
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != SIP_STACK_LOGGER or record.levelno >= self.level:
            return True
        match = _SIP_MESSAGE.match(record.getMessage()) if self.gateways else None
        if match is None or match["peer"] not in self.gateways:
            return False
        direction = "in" if match["op"] == "RECEIVED" else "out"
        body = match["body"]
        call_id = _CALL_ID.search(body)
        record.name, record.levelno, record.levelname = SIP_TRACE_LOGGER, logging.INFO, "INFO"
        record.msg, record.args = "SIP %s %s: %s", (direction, match["peer"], body.replace("\r\n", "\\r\\n"))
        if call_id is not None and getattr(record, "call_id", None) is None:
            record.call_id = call_id[1].strip()
        return True


def handler_for(config: LogConfig, trunks: list[TrunkGroupConfig], *, verbose: bool = False) -> logging.Handler:
    """The stderr handler ``[log]`` asks for (the journal takes stderr under systemd)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if config.format == "json" else OneLineFormatter(TEXT_FORMAT))
    handler.addFilter(SipTraceFilter(trunks, config.sip_trace_trunks, level=_level(config, verbose)))
    handler.addFilter(ContextFilter())  # after the trace filter: it may have found the record's Call-ID
    return handler


def _level(config: LogConfig, verbose: bool = False) -> int:
    return logging.DEBUG if verbose else int(getattr(logging, config.level.upper()))


def configure(config: LogConfig, trunks: list[TrunkGroupConfig], *, verbose: bool = False) -> None:
    """Replace the root logger's handlers with the ``[log]`` one (called once, by the entry point)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    level = _level(config, verbose)
    root.addHandler(handler_for(config, trunks, verbose=verbose))
    root.setLevel(level)
    # sippy's message log is produced only when a trunk is traced (it costs a format per message otherwise).
    logging.getLogger(SIP_STACK_LOGGER).setLevel(TRACE_LEVEL if config.sip_trace_trunks else logging.NOTSET)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
