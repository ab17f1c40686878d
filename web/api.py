"""Live data for the browser: a JSON snapshot and a server-sent-events stream of one conference.

The stream polls the engine's control API every ``SSE_INTERVAL_S`` and sends an event only when the
conference changed (``state``), when the engine stops or starts answering (``unreachable``), and once
when the conference ended (``ended``, then the stream closes). Comments keep idle proxies from
closing the stream. After ``SSE_MAX_S`` the stream ends and ``EventSource`` reconnects by itself,
so a gunicorn thread is never held forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

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
    stream = event_stream(
        lambda: snapshot(client, run_id),
        interval_s=float(current_app.config["SSE_INTERVAL_S"]),
        max_s=float(current_app.config["SSE_MAX_S"]),
        sleep=time.sleep,
        clock=time.monotonic,
    )
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
