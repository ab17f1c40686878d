"""The HA package's exceptions: one base, split by who was wrong."""

from __future__ import annotations


class HaError(Exception):
    """Base of every error raised by :mod:`bridge.ha`."""


class PeerError(HaError):
    """Something from the network we cannot accept: a forged, garbled, replayed or misrouted heartbeat."""


class HeartbeatError(PeerError):
    """A heartbeat datagram that does not parse or whose HMAC does not verify."""


class ReplayError(HeartbeatError):
    """A correctly signed heartbeat that is not newer than one already accepted on its path."""


class LocalError(HaError):
    """We did something wrong: a transition the role table does not allow, a bad setting, a refused request."""


class TransitionError(LocalError):
    """The role machine was asked to take a transition its table does not allow (a bug in the machine)."""


class SwitchoverRefused(LocalError):
    """A graceful switchover was asked for while it cannot happen (not active, or no healthy standby)."""


class SettingsError(LocalError):
    """An HA setting is out of range or inconsistent with another."""
