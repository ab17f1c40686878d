"""Launch decisions, pure: who may launch a conference, who may have calls placed on their number, whom to
dial, and the rules (:class:`~bridge.conference.machine.Policy`) a new conference runs by.

Outbound calls carry the subscriber's number and are billed to them, so every launch -- by SMS, from the
portal, or by calling an IC's number with its activation PIN (speed dial) -- asks :func:`may_launch`, and
every dial of a running conference's subscriber asks :func:`may_dial`.

**The billing seam.** Without ``[billing]`` (``enabled = false``) :func:`may_dial` applies the appliance's
own rule (an active subscriber; a prepaid one only with a positive balance). With it, the billing glue
(:mod:`bridge.conference.billing`) asks :func:`bridge.billing.gate.check_dial` (or ``check_dial_in``) with
the payer's profile, balance and usage, and hands the result to :func:`may_dial` as ``billed``: a
:class:`bridge.billing.policy.Refusal` becomes this module's :class:`Refusal` (its ``cause`` for the CDR,
its ``message`` for the SMS and the portal) and replaces the balance rule. Nothing else in the service
decides whether a call may be placed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bridge.billing.gate import Allowed
from bridge.billing.policy import Refusal as BillingRefusal
from bridge.conference.machine import Policy, plan_launch
from bridge.config import ConferenceConfig


@dataclass(frozen=True, kw_only=True)
class Launcher:
    """What launch decisions know about a subscriber (read by :mod:`bridge.conference.records`)."""

    subscriber_id: int
    name: str
    mobile: str
    company_id: int | None
    status: str
    """``SubscriberStatus`` value: ``active`` may launch."""
    prepaid: bool = False
    balance: Decimal | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a launch or a dial is refused: ``cause`` for the CDR, ``message`` in the subscriber's terms (an SMS,
    a portal message; the cause itself when empty)."""

    cause: str
    message: str = ""

    @property
    def text(self) -> str:
        return self.message or self.cause


def may_dial(launcher: Launcher, billed: Allowed | BillingRefusal | None = None) -> Refusal | None:
    """May calls be placed on ``launcher``'s number and billed to them? ``billed``: the billing gate's answer
    for this dial, when billing is enabled (see above)."""
    if launcher.status != "active":
        return Refusal(f"subscriber {launcher.subscriber_id} is {launcher.status}")
    if isinstance(billed, BillingRefusal):
        return Refusal(billed.cause, billed.message)
    if billed is not None:
        return None
    if launcher.prepaid and (launcher.balance is None or launcher.balance <= 0):
        return Refusal("no prepaid balance left")
    return None


def may_launch(
    launcher: Launcher, *, ic_slot: int | None = None, ic_running: bool = False,
    billed: Allowed | BillingRefusal | None = None,
) -> Refusal | None:  # fmt: skip
    """May ``launcher`` start a conference (of their IC in ``ic_slot``, which may be running already)?
    ``billed``: the billing gate's answer for the launch's first leg, when billing is enabled."""
    if ic_running:
        # The subscriber knows the slot, not the database id.
        return Refusal(f"IC{ic_slot} is already running")
    return may_dial(launcher, billed)


def launch_plan(subscriber_number: str, numbers: Sequence[str], *, max_participants: int) -> list[tuple[str, str]]:
    """``(number, role)`` to dial at a launch: the subscriber first (when ``subscriber_number``), members once."""
    return plan_launch(subscriber_number, list(numbers), max_participants=max_participants)


def speed_dial_plan(subscriber_number: str, numbers: Sequence[str], *, max_participants: int) -> list[tuple[str, str]]:
    """Whom to dial when the subscriber launched their IC by calling in: everyone but the caller, who is
    already connected and takes one of the ``max_participants`` seats."""
    members = [n for n in numbers if n != subscriber_number]
    return plan_launch("", members, max_participants=max_participants - 1)


def conference_policy(
    config: ConferenceConfig, *, subscriber_number: str, room: bool, room_max_members: int | None = None
) -> Policy:
    """The rules of a new conference: an IC (subscriber presence, callbacks to ``subscriber_number``) or a room."""
    return Policy(
        require_subscriber=not room, subscriber_number=subscriber_number, calling_number=subscriber_number,
        hysteresis_s=config.hysteresis_s, callback_retries=config.callback_retries,
        callback_delay_s=config.callback_delay_s,
        max_participants=room_max_members if room and room_max_members else config.max_participants,
    )  # fmt: skip
