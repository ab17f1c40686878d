"""The PIN IVR: prompt, collect digits, ask the glue to check them, admit or disconnect.

Theory of operation (sans-I/O, like h11): the glue feeds events -- :meth:`PinIvr.start`, one
:meth:`PinIvr.digit` per DTMF digit (RFC 4733 events arrive de-duplicated from the RTP layer, SIP INFO
and in-band digits likewise), :meth:`PinIvr.poll` on its timer, and :meth:`PinIvr.verdict` with the
answer to a :class:`CheckPin` -- and carries out the actions each call returns.

An entry ends with ``#``, when ``submit_length`` digits have been typed (PINs of known length), or
after ``digit_timeout_s`` of silence following the last digit. ``*`` clears the entry. Silence before
any digit for ``first_digit_timeout_s`` counts as a wrong entry (the caller is re-prompted), so a mute
caller cannot hold a port forever. After ``attempts`` wrong entries the caller hears the goodbye
prompt and is disconnected; the glue records that failure in a :class:`FailureThrottle` keyed by the
calling number, which refuses further calls from it for a while.

States form a table (STYLE §6): an event the table does not allow raises :class:`IvrError`.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass

from bridge.dnis import DnisError

log = logging.getLogger(__name__)

MAX_PIN_DIGITS = 7


class IvrError(DnisError):
    """An event arrived that the IVR's current state does not allow (a bug in the glue)."""


class IvrState(enum.Enum):
    IDLE = "idle"
    COLLECTING = "collecting"
    CHECKING = "checking"
    ADMITTED = "admitted"
    DISCONNECTED = "disconnected"


_TRANSITIONS: dict[IvrState, frozenset[IvrState]] = {
    IvrState.IDLE: frozenset({IvrState.COLLECTING, IvrState.DISCONNECTED}),
    IvrState.COLLECTING: frozenset({IvrState.CHECKING, IvrState.DISCONNECTED}),
    IvrState.CHECKING: frozenset({IvrState.COLLECTING, IvrState.ADMITTED, IvrState.DISCONNECTED}),
    IvrState.ADMITTED: frozenset(),
    IvrState.DISCONNECTED: frozenset(),
}


class Verdict(enum.Enum):
    """What the glue found for a PIN (see :mod:`bridge.dnis.routing`)."""

    ACCEPT = "accept"
    WRONG = "wrong"
    NOT_STARTED = "not_started"
    FULL = "full"
    LOCKED = "locked"


# The prompt and the hang-up cause of each refusal that ends the call at once.
_REFUSALS: dict[Verdict, tuple[str, str]] = {
    Verdict.NOT_STARTED: ("not_started", "conference not started"),
    Verdict.FULL: ("conference_full", "conference full"),
    Verdict.LOCKED: ("conference_locked", "conference locked"),
}


@dataclass(frozen=True)
class IvrAction:
    """Base of every IVR action."""


@dataclass(frozen=True)
class Play(IvrAction):
    """Play prompt ``name`` (``bridge.mixer.prompts``) to the caller, replacing what is playing."""

    prompt: str


@dataclass(frozen=True)
class CheckPin(IvrAction):
    """Look ``pin`` up and answer with :meth:`PinIvr.verdict`."""

    pin: str


@dataclass(frozen=True)
class Admit(IvrAction):
    """The PIN is right: put the caller into the conference."""

    pin: str


@dataclass(frozen=True)
class Disconnect(IvrAction):
    """Hang up (after the prompt just played); ``wrong_pin`` is true when the caller ran out of attempts."""

    cause: str
    wrong_pin: bool = False


@dataclass(frozen=True, kw_only=True)
class IvrSettings:
    attempts: int = 3
    """Wrong entries before the caller is disconnected."""
    digit_timeout_s: float = 4.0
    """Silence after a digit that ends the entry."""
    first_digit_timeout_s: float = 15.0
    """Silence before the first digit that counts as a wrong entry."""
    submit_length: int | None = None
    """Submit as soon as this many digits are typed (None: wait for ``#`` or the timeout)."""


class PinIvr:
    """One caller's PIN dialogue."""

    def __init__(self, settings: IvrSettings, *, name: str = "") -> None:
        self.settings = settings
        self.name = name
        self.state = IvrState.IDLE
        self.wrong = 0
        self._digits: list[str] = []
        self._deadline: float | None = None

    @property
    def entry(self) -> str:
        return "".join(self._digits)

    @property
    def deadline(self) -> float | None:
        """When :meth:`poll` has something to do (None: nothing is timed)."""
        return self._deadline

    def start(self, now: float) -> list[IvrAction]:
        self._set_state(IvrState.COLLECTING)
        self._deadline = now + self.settings.first_digit_timeout_s
        return [Play("enter_pin")]

    def digit(self, digit: str, now: float) -> list[IvrAction]:
        if self.state is not IvrState.COLLECTING:
            return []  # digits typed while a PIN is being checked or after the end are ignored
        if digit == "#":
            return self._submit() if self._digits else []
        if digit == "*":
            self._digits.clear()
            self._deadline = now + self.settings.first_digit_timeout_s
            return []
        if not digit.isdigit() or len(digit) != 1:
            return []  # A-D from a DTMF keypad mean nothing here
        self._digits.append(digit)
        self._deadline = now + self.settings.digit_timeout_s
        limit = self.settings.submit_length or MAX_PIN_DIGITS
        if len(self._digits) >= min(limit, MAX_PIN_DIGITS):
            return self._submit()
        return []

    def poll(self, now: float) -> list[IvrAction]:
        if self.state is not IvrState.COLLECTING or self._deadline is None or now < self._deadline:
            return []
        if self._digits:
            return self._submit()
        return self._wrong(now)

    def verdict(self, verdict: Verdict, now: float) -> list[IvrAction]:
        if self.state is not IvrState.CHECKING:
            raise IvrError(f"verdict {verdict.value} in state {self.state.value}")
        pin, self._digits = self.entry, []
        if verdict is Verdict.ACCEPT:
            self._set_state(IvrState.ADMITTED)
            self._deadline = None
            return [Admit(pin)]
        if verdict is Verdict.WRONG:
            self._set_state(IvrState.COLLECTING)
            return self._wrong(now)
        prompt, cause = _REFUSALS[verdict]
        return self._disconnect(prompt, cause, wrong_pin=False)

    def hangup(self) -> None:
        """The caller hung up first."""
        if self.state not in (IvrState.ADMITTED, IvrState.DISCONNECTED):
            self._set_state(IvrState.DISCONNECTED)
        self._deadline = None

    # --- internals -----------------------------------------------------------------------------

    def _submit(self) -> list[IvrAction]:
        self._set_state(IvrState.CHECKING)
        self._deadline = None
        return [CheckPin(self.entry)]

    def _wrong(self, now: float) -> list[IvrAction]:
        self.wrong += 1
        self._digits.clear()
        if self.wrong >= self.settings.attempts:
            return self._disconnect("goodbye", "wrong pin", wrong_pin=True)
        self._deadline = now + self.settings.first_digit_timeout_s
        return [Play("wrong_pin")]

    def _disconnect(self, prompt: str, cause: str, *, wrong_pin: bool) -> list[IvrAction]:
        self._set_state(IvrState.DISCONNECTED)
        self._deadline = None
        return [Play(prompt), Disconnect(cause, wrong_pin=wrong_pin)]

    def _set_state(self, new: IvrState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise IvrError(f"ivr {self.name}: {self.state.value} -> {new.value} is not allowed")
        log.debug("ivr %s: %s -> %s", self.name, self.state.value, new.value)
        self.state = new


class FailureThrottle:
    """Refuse calls from a number that failed the PIN dialogue ``limit`` times within ``window_s``.

    A refused number stays blocked for ``block_s`` after its last failure. Pure: ``now`` is passed in;
    the table is pruned as it is used so it cannot grow without bound.
    """

    def __init__(self, *, limit: int = 3, window_s: float = 600.0, block_s: float = 900.0, max_numbers: int = 10_000):
        self.limit = limit
        self.window_s = window_s
        self.block_s = block_s
        self.max_numbers = max_numbers
        self._failures: dict[str, deque[float]] = {}

    def record_failure(self, number: str, now: float) -> None:
        times = self._failures.setdefault(number, deque())
        times.append(now)
        self._prune(number, now)
        if len(self._failures) > self.max_numbers:  # forget the stalest number first
            stalest = min(self._failures, key=lambda n: self._failures[n][-1] if self._failures[n] else 0.0)
            del self._failures[stalest]

    def blocked(self, number: str, now: float) -> bool:
        self._prune(number, now)
        times = self._failures.get(number)
        if not times:
            return False
        last = times[-1]
        recent = sum(1 for t in times if t >= last - self.window_s)
        return recent >= self.limit and now < last + self.block_s

    def _prune(self, number: str, now: float) -> None:
        times = self._failures.get(number)
        if times is None:
            return
        horizon = now - (self.window_s + self.block_s)
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            del self._failures[number]
