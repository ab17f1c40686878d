"""SMPP 3.4 ESME: the appliance's link to the operator's SMSC.

Pure pieces (no I/O, no clock): :mod:`.gsm` (GSM 03.38 / UCS2 codecs), :mod:`.concat` (splitting with UDH
and reassembly), :mod:`.receipt` (delivery receipts), :mod:`.inbound` (what a deliver_sm is), :mod:`.bind`
(bind state machine), :mod:`.throttle` (token bucket, back-off), :mod:`.outbox` (MT window and retries).
Database helpers: :mod:`.store`, :mod:`.queue` (``queue_mt``). Glue: :mod:`.service` (``SmppService``).
"""

from bridge.smpp.errors import LocalError, PeerError, SmppError

__all__ = ["LocalError", "PeerError", "SmppError"]
