"""The sippy reactor thread: sippy 2.5 runs its reactor (``ED2``, a process-wide singleton) in one thread, and
its objects are not thread-safe. :class:`SippyRuntime` starts that thread once per process (sippy is *imported*
inside it, because ``ED2`` binds to the importing thread) and never stops it; everything else reaches sippy
through :meth:`SippyRuntime.call` (``ED2.callFromThread``). See :mod:`bridge.sip.stack` for what runs there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from bridge.sip import SipError

# The adapter's one logger: bridge.ops.logs filters and traces by this name (SIP_STACK_LOGGER).
log = logging.getLogger("bridge.sip.stack")

#: Beat of sippy's reactor (its default). A call handed to it from another thread (``callFromThread``: every
#: response and request the asyncio service sends) runs at its next beat, so the beat bounds the latency the
#: reactor adds to each one: 10 ms here. 25 Hz took ~1.3 % of a core off an idle node but put up to 40 ms on
#: every answer (docs/bench/sip-calls.md); the latency is worth more.
REACTOR_HZ = 100.0
E = TypeVar("E")


class SipThread(Protocol):
    """Where the stack runs: ``ensure()`` starts it, ``call(fn, *args)`` runs ``fn`` there."""

    def ensure(self) -> None: ...

    def call(self, fn: Callable[..., Any], *args: Any) -> None: ...


class SippyRuntime:
    """Process-wide sippy reactor thread (started on first use, then kept: sippy cannot restart ``ED2``)."""

    _lock = threading.Lock()
    _ed2: Any = None
    _thread: threading.Thread | None = None

    @classmethod
    def ensure(cls) -> None:
        with cls._lock:
            if cls._thread is not None:
                return
            ready = threading.Event()
            failure: list[BaseException] = []

            def run() -> None:
                try:
                    from sippy.Core.EventDispatcher import ED2

                    cls._ed2 = ED2
                except BaseException as exc:  # pragma: no cover - broken install
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                while True:  # ED2.loop returns only on breakLoop, which we never call
                    try:
                        ED2.loop(freq=REACTOR_HZ)
                    except Exception:  # pragma: no cover - sippy already logs per-callback errors
                        log.exception("sippy loop crashed; restarting it")

            cls._thread = threading.Thread(target=run, name="sippy", daemon=True)
            cls._thread.start()
            ready.wait(10)
            if failure or cls._ed2 is None:
                cls._thread = None
                raise SipError(f"cannot start the sippy reactor: {failure[0] if failure else 'timeout'}")

    @classmethod
    def call(cls, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the sippy thread (exceptions are logged there, never raised here)."""
        cls._ed2.callFromThread(guarded, fn, *args)


def guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)``, logging what it raises (an exception escaping into sippy's loop breaks it)."""
    try:
        fn(*args)
    except Exception:
        log.exception("SIP stack: %s failed", getattr(fn, "__name__", fn))


def guarded_callback(fn: Callable[..., Any]) -> Callable[..., None]:
    """``fn`` for a sippy timer: exceptions are logged (a timer callback that raises breaks sippy's loop)."""

    def run(*args: Any) -> None:
        guarded(fn, *args)

    return run


class NullSipLogger:
    """sippy wants a logger with ``write``; ours goes to :mod:`logging` at DEBUG (sippy's own is chatty)."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        if log.isEnabledFor(logging.DEBUG - 5):
            log.log(logging.DEBUG - 5, "%s", "".join(str(a) for a in args))


def post_to_loop(loop: asyncio.AbstractEventLoop, handler: Callable[[E], None], event: E) -> None:
    """Called in the SIP thread: hand ``event`` to the loop (dropped if the loop is already closed)."""
    try:
        loop.call_soon_threadsafe(handler, event)
    except RuntimeError:
        pass


def resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("SIP service task failed", exc_info=task.exception())
