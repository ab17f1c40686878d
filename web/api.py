"""Live data for the browser: a JSON snapshot and a server-sent-events stream of one conference.

The stream polls the engine's control API every ``SSE_INTERVAL_S`` and sends an event only when the
conference changed (``state``), when the engine stops or starts answering (``unreachable``), and once
when the conference ended (``ended``, then the stream closes). Comments keep idle proxies from
closing the stream. After ``SSE_MAX_S`` the stream ends and ``EventSource`` reconnects by itself,
so a gunicorn thread is never held forever.

Each open stream holds one of the worker's threads, so at most ``SSE_MAX_STREAMS`` stream at once per
worker process (``bridge web`` sets it to the threads per worker minus two, kept for pages and forms).
A live view that finds them all taken still gets the conference: one ``state`` event and ``retry: 5000``,
then the response ends and ``EventSource`` comes back five seconds later -- polling, without a thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from bridge.control_client import ControlRequestError, EngineUnreachable
from bridge.db.models import ConferenceRun
from web.live import Control, control
from web.security import ALL_ROLES, roles_required
from web.tenancy import get_or_404

bp = Blueprint("api", __name__, url_prefix="/api")


def snapshot(client: Control, run_id: int) -> tuple[str, dict[str, Any]]:
    """(kind, payload): ``state`` with the conference, ``ended`` or ``unreachable``."""
    try:
        return "state", client.conference(run_id)
    except EngineUnreachable:
        return "unreachable", {"error": "engine unreachable"}
    except ControlRequestError as exc:
        if exc.status == 404:
            return "ended", {"run_id": run_id}
        return "unreachable", {"error": exc.message}


BUSY_RETRY_MS = 5000


def init_app(app: Flask) -> None:
    """The worker's semaphore of live streams (``SSE_MAX_STREAMS`` slots)."""
    app.extensions["sse_slots"] = threading.BoundedSemaphore(max(1, int(app.config["SSE_MAX_STREAMS"])))


def one_shot(kind: str, payload: dict[str, Any]) -> Iterator[str]:
    """The whole answer to a live view when no stream slot is free: the current state, come back later."""
    yield f"retry: {BUSY_RETRY_MS}\n\n"
    yield f"event: {kind}\ndata: {json.dumps(payload, sort_keys=True)}\n\n"


class Holding:
    """``stream``, holding a slot until it ends or the server closes it (the client went away) -- also when
    it never started, which a generator's ``finally`` would miss."""

    def __init__(self, slots: threading.BoundedSemaphore, stream: Iterator[str]) -> None:
        self._slots = slots
        self._stream = stream
        self._held = True

    def __iter__(self) -> Holding:
        return self

    def __next__(self) -> str:
        try:
            return next(self._stream)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def event_stream(
    poll: Callable[[], tuple[str, dict[str, Any]]],
    *,
    interval_s: float,
    max_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Iterator[str]:
    """The SSE text for a sequence of polls; sends changes only; stops after ``ended`` or ``max_s``."""
    started = clock()
    last: str | None = None
    idle = 0.0
    yield "retry: 2000\n\n"
    while True:
        kind, payload = poll()
        text = json.dumps(payload, sort_keys=True)
        marker = kind + text
        if marker != last:
            last = marker
            idle = 0.0
            yield f"event: {kind}\ndata: {text}\n\n"
        else:
            idle += interval_s
            if idle >= 15.0:
                idle = 0.0
                yield ": keepalive\n\n"
        if kind == "ended" or clock() - started >= max_s:
            return
        sleep(interval_s)


@bp.route("/live/<int:run_id>")
@roles_required(*ALL_ROLES)
def live_json(run_id: int) -> tuple[Response, int]:
    run = get_or_404(ConferenceRun, run_id)
    kind, payload = snapshot(control(), run.id)
    status = {"state": 200, "ended": 404, "unreachable": 503}[kind]
    return jsonify({"kind": kind, **({"conference": payload} if kind == "state" else payload)}), status


@bp.route("/live/<int:run_id>/events")
@roles_required(*ALL_ROLES)
def live_events(run_id: int) -> Response:
    run = get_or_404(ConferenceRun, run_id)  # the tenant check happens before streaming starts
    client = control()
    run_id = run.id
    slots: threading.BoundedSemaphore = current_app.extensions["sse_slots"]
    stream: Iterator[str]
    if slots.acquire(blocking=False):
        stream = Holding(
            slots,
            event_stream(
                lambda: snapshot(client, run_id),
                interval_s=float(current_app.config["SSE_INTERVAL_S"]),
                max_s=float(current_app.config["SSE_MAX_S"]),
                sleep=time.sleep,
                clock=time.monotonic,
            ),
        )
    else:
        stream = one_shot(*snapshot(client, run_id))
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
