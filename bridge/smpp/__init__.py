"""SMPP 3.4 ESME: the appliance's link to the operator's SMSC.

Pure pieces (no I/O, no clock): :mod:`.gsm` (GSM 03.38 / UCS2 codecs), :mod:`.concat` (splitting with UDH
and reassembly), :mod:`.receipt` (delivery receipts), :mod:`.inbound` (what a deliver_sm is), :mod:`.bind`
(bind state machine), :mod:`.session` (sequence numbers, pending requests, session timers), :mod:`.outbox`
(MT window and retries), :mod:`.feed` (what enters the outbox, submit_sm of a part), :mod:`.delivery`
(receipts to MTs), :mod:`.redelivery` (an SMSC's redelivery or a person's repeat), :mod:`.wire` (hot-path PDUs).
Database helpers: :mod:`.store`, :mod:`.queue` (``queue_mt``). Glue: :mod:`.service` (``SmppService``:
lifecycle, recovery, status), :mod:`.link` (one session's thread), :mod:`.intake` (deliver_sm persisted),
:mod:`.sender` (the MT side), :mod:`.worker` (the command language), :mod:`.database`, :mod:`.context`.
"""

from bridge.smpp.errors import LocalError, PeerError, SmppError

__all__ = ["LocalError", "PeerError", "SmppError"]
