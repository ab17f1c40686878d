"""The batched path's ``sendmmsg`` in a thread of its own, so a tick's sending overlaps the rest of the loop.

On loopback and towards a local gateway the kernel does most of a send's work in the sender's context
(routing, the UDP/IP stack, and delivery to the receiving socket): at 2,000 legs that is about half of a
tick. :meth:`BatchSocket.transmit <bridge.rtp.batch.BatchSocket.transmit>` runs ``sendmmsg`` through
``ctypes``, which releases the GIL, so a second thread can send one tick's packets while the event loop
goes on with signalling and the next receive. The packets are staged by
:meth:`~bridge.rtp.batch.BatchSocket.prepare` (a copy of the rows), so the caller may change its own
packet table at once; the only rule is :meth:`SendThread.wait` before staging on the same sockets again or
closing one of them, and :meth:`SendThread.submit` waits itself.

:func:`realtime` gives the calling thread real-time scheduling (``sip.media_priority``): the engine's event
loop, which runs the tick, this thread and the SIP thread then preempt ordinary processes when a tick is
due (all three take the GIL often: one of them preempted while holding it would hold the tick up).
"""

from __future__ import annotations

import logging
import os
import threading

from bridge.rtp.batch import BatchSocket

__all__ = ["SendThread", "prioritise", "realtime"]

log = logging.getLogger(__name__)


def realtime(priority: int) -> str | None:
    """``SCHED_RR`` at ``priority`` (1-99) for the calling thread, not inherited by the threads and processes
    it starts (``SCHED_RESET_ON_FORK``); 0 does nothing. Returns why it could not, or None."""
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except (OSError, AttributeError) as exc:  # no CAP_SYS_NICE / RLIMIT_RTPRIO, or not Linux
        return str(exc)
    return None


def prioritise(priority: int, thread: str) -> None:
    """:func:`realtime` for ``sip.media_priority``; a warning naming the key and ``thread`` when refused."""
    refused = realtime(priority)
    if refused:
        log.warning("sip.media_priority = %d: %s keeps ordinary scheduling (%s)", priority, thread, refused)


class SendThread:
    """One daemon thread that transmits what was staged on some :class:`BatchSocket`; one job at a time.
    ``priority``: see :func:`realtime`."""

    def __init__(self, name: str = "rtp-send", *, priority: int = 0) -> None:
        self.priority = priority
        self._cond = threading.Condition()
        self._job: list[tuple[BatchSocket, int]] = []
        self._busy = False
        self._closed = False
        self.jobs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: list[tuple[BatchSocket, int]]) -> None:
        """Transmit ``(socket, staged count)`` pairs in the thread, in order; returns at once."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            if self._closed:
                raise RuntimeError("SendThread is closed")
            self._job, self._busy = job, True
            self._cond.notify_all()

    def wait(self) -> None:
        """Return once the last submitted job has been sent."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)

    def close(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        prioritise(self.priority, "the RTP send thread")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._busy or self._closed)
                if not self._busy:
                    return
                job = self._job
            for sock, count in job:
                try:
                    sock.transmit(count)
                except Exception:  # never leave the loop waiting on a dead thread
                    sock.send_errors += 1
                    log.exception("RTP send thread")
            with self._cond:
                self.jobs += 1
                self._job, self._busy = [], False
                self._cond.notify_all()
