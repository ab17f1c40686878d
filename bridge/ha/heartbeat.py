"""The heartbeat wire format: a fixed header, the sender's node id and an HMAC-SHA256 trailer.

Layout (network byte order)::

    0   4  magic b"BRHA"
    4   1  version (1)
    5   1  role (0 init, 1 standby, 2 active, 3 failed)
    6   1  flags (0x01 healthy, 0x02 resign)
    7   1  path (which heartbeat path the sender sent it on)
    8   8  term
    16  8  boot: the sender's wall clock at start, in ns (a nonce that grows across restarts)
    24  8  sequence, per boot and path, from 1
    32  1  node id length n (1..64)
    33  n  node id, UTF-8
    33+n 32 HMAC-SHA256(key, bytes 0 .. 33+n)

:class:`Heartbeat` is the body (``parse``/``__bytes__`` round trip); :func:`seal` appends the HMAC and
:func:`unseal` checks it (constant-time) before parsing. :class:`ReplayGuard` rejects a heartbeat whose
``(boot, sequence)`` is not newer than the last accepted on its path, so a captured "I am active" cannot
be replayed to hold a standby back after the active node died. It compares only the sender's own
numbers, so the two nodes need no synchronised clocks.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from bridge.ha.errors import HeartbeatError, ReplayError
from bridge.ha.role import Role

MAGIC = b"BRHA"
VERSION = 1
FLAG_HEALTHY = 0x01
FLAG_RESIGN = 0x02
MAC_LENGTH = 32
MAX_NODE_ID = 64
_HEADER = struct.Struct("!4sBBBBQQQB")
MIN_LENGTH = _HEADER.size + 1 + MAC_LENGTH
_ROLE_CODES = {Role.INIT: 0, Role.STANDBY: 1, Role.ACTIVE: 2, Role.FAILED: 3}
_ROLES = {code: role for role, code in _ROLE_CODES.items()}
_U64 = 2**64


@dataclass(frozen=True)
class Heartbeat:
    node_id: str
    role: Role
    term: int
    boot: int
    seq: int
    path: int
    healthy: bool
    resign: bool = False

    def __post_init__(self) -> None:
        length = len(self.node_id.encode())
        if not 1 <= length <= MAX_NODE_ID:
            raise HeartbeatError(f"node id must be 1..{MAX_NODE_ID} bytes of UTF-8, got {length}")
        for name in ("term", "boot", "seq"):
            if not 0 <= getattr(self, name) < _U64:
                raise HeartbeatError(f"heartbeat {name} {getattr(self, name)} does not fit in 64 bits")
        if not 0 <= self.path <= 255:
            raise HeartbeatError(f"heartbeat path {self.path} does not fit in one byte")

    def __bytes__(self) -> bytes:
        node = self.node_id.encode()
        flags = (FLAG_HEALTHY if self.healthy else 0) | (FLAG_RESIGN if self.resign else 0)
        header = _HEADER.pack(
            MAGIC, VERSION, _ROLE_CODES[self.role], flags, self.path, self.term, self.boot, self.seq, len(node)
        )
        return header + node

    @classmethod
    def parse(cls, data: bytes) -> Heartbeat:
        """Parse a body (no HMAC); raises :class:`HeartbeatError` with what is wrong."""
        if len(data) < _HEADER.size:
            raise HeartbeatError(f"heartbeat truncated: {len(data)} bytes, the header needs {_HEADER.size}")
        magic, version, role, flags, path, term, boot, seq, length = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise HeartbeatError(f"not a heartbeat: magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise HeartbeatError(f"heartbeat version {version} not supported (we speak {VERSION})")
        if role not in _ROLES:
            raise HeartbeatError(f"heartbeat has unknown role code {role}")
        if flags & ~(FLAG_HEALTHY | FLAG_RESIGN):
            raise HeartbeatError(f"heartbeat has unknown flags 0x{flags:02x}")
        if not 1 <= length <= MAX_NODE_ID:
            raise HeartbeatError(f"heartbeat node id length {length} out of 1..{MAX_NODE_ID}")
        if len(data) != _HEADER.size + length:
            raise HeartbeatError(
                f"heartbeat body is {len(data)} bytes, its node id length {length} makes {_HEADER.size + length}"
            )
        try:
            node_id = data[_HEADER.size :].decode()
        except UnicodeDecodeError as exc:
            raise HeartbeatError(f"heartbeat node id is not UTF-8: {exc.reason}") from None
        return cls(node_id, _ROLES[role], term, boot, seq, path, bool(flags & FLAG_HEALTHY), bool(flags & FLAG_RESIGN))


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def seal(heartbeat: Heartbeat, key: bytes) -> bytes:
    """The datagram: body + HMAC-SHA256 of the body under ``key``."""
    body = bytes(heartbeat)
    return body + _mac(key, body)


def unseal(data: bytes, key: bytes) -> Heartbeat:
    """Verify the HMAC (constant time) and parse; raises :class:`HeartbeatError`."""
    if len(data) < MIN_LENGTH:
        raise HeartbeatError(f"heartbeat truncated: {len(data)} bytes, need at least {MIN_LENGTH}")
    body, mac = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
    if not hmac.compare_digest(_mac(key, body), mac):
        raise HeartbeatError("heartbeat HMAC does not verify (wrong key, or altered on the way)")
    return Heartbeat.parse(body)


class ReplayGuard:
    """Accepts a verified heartbeat only if it is newer than the last one accepted on its path.

    A sender that restarts gets a larger ``boot`` and starts its sequence again. If its clock stepped
    back across the restart its new boot would be refused forever; so a path that accepted nothing for
    ``forget_after_s`` forgets its last ``(boot, seq)`` (a replay is then possible only of a heartbeat
    the attacker captured but we never received, and only once).
    """

    def __init__(self, *, forget_after_s: float) -> None:
        self.forget_after_s = forget_after_s
        self._last: dict[tuple[str, int], tuple[int, int, float]] = {}

    def check(self, heartbeat: Heartbeat, now: float) -> None:
        """Record ``heartbeat`` as accepted, or raise :class:`ReplayError`."""
        key = (heartbeat.node_id, heartbeat.path)
        last = self._last.get(key)
        if last is not None and now - last[2] < self.forget_after_s:
            boot, seq, _ = last
            if (heartbeat.boot, heartbeat.seq) <= (boot, seq):
                raise ReplayError(
                    f"replayed heartbeat from {heartbeat.node_id} on path {heartbeat.path}: "
                    f"boot {heartbeat.boot} seq {heartbeat.seq} is not after boot {boot} seq {seq}"
                )
        self._last[key] = (heartbeat.boot, heartbeat.seq, now)
