"""Billing for conference legs: rating, balances, limits and the dial gate (pure cores, no I/O, no clock).

Layout:

- :mod:`bridge.billing.prefixes` -- E.164 digits and the longest-prefix table every lookup uses;
- :mod:`bridge.billing.rating` -- rate plans, ``rate(plan, number, at, zone)`` and ``price(rate, seconds)``;
- :mod:`bridge.billing.ratecsv` -- a plan as CSV, both ways, with a per-line error report;
- :mod:`bridge.billing.ledger` -- balances as a ledger of movements, maximum leg durations, warn/cut instants;
- :mod:`bridge.billing.policy` -- concurrent-call limits, destination policy, legs per hour, locks, refusals;
- :mod:`bridge.billing.gate` -- ``check_dial`` before every dial and ``settle_leg`` when a leg ends: the two
  calls the conference service makes.

Money is :class:`decimal.Decimal` throughout, never ``float``; a leg's price is rounded once, half up to
:data:`bridge.billing.rating.MONEY_PLACES` (4 decimals).
"""

from __future__ import annotations


class BillingError(Exception):
    """Base exception of the billing package."""


class RatePlanError(BillingError):
    """A rate plan or a number is malformed (the operator's data is wrong: reported, never guessed around)."""


class LedgerError(BillingError):
    """A movement would break the ledger's rules (a caller bug: a charge past the floor, a negative top-up)."""
