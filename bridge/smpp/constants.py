"""SMPP 3.4 wire constants we use, with the spec's names (SMPP 3.4 §5.1.2, §5.2.12, §5.2.19, §5.3)."""

from __future__ import annotations

# command_status (§5.1.3)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64  # ESME receiver temporary application error: the SMSC retries later
ESME_RX_P_APPN = 0x65  # ESME receiver permanent application error

TRANSIENT_SUBMIT_STATUSES = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
"""submit_sm statuses that mean "later", not "never" (the issue: retry with back-off)."""

# data_coding (§5.2.19)
DC_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38, one septet per octet
DC_IA5 = 0x01  # IA5 / ASCII
DC_BINARY = 0x02
DC_LATIN1 = 0x03
DC_BINARY_4 = 0x04
DC_UCS2 = 0x08

# esm_class (§5.2.12)
ESM_MESSAGE_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04
ESM_UDHI = 0x40

# TON / NPI (§5.2.5, §5.2.6)
TON_UNKNOWN = 0x00
TON_INTERNATIONAL = 0x01
TON_NATIONAL = 0x02
TON_NETWORK_SPECIFIC = 0x03
NPI_UNKNOWN = 0x00
NPI_ISDN = 0x01

REGISTERED_DELIVERY_RECEIPT = 0x01

MAX_PDU_LENGTH = 65536
"""Longest PDU we accept from the SMSC; a larger command_length is treated as garbage."""

STATUS_NAMES = {
    ESME_ROK: "ESME_ROK",
    ESME_RINVMSGLEN: "ESME_RINVMSGLEN",
    ESME_RINVCMDID: "ESME_RINVCMDID",
    ESME_RINVBNDSTS: "ESME_RINVBNDSTS",
    ESME_RSYSERR: "ESME_RSYSERR",
    ESME_RBINDFAIL: "ESME_RBINDFAIL",
    ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID",
    ESME_RMSGQFUL: "ESME_RMSGQFUL",
    ESME_RTHROTTLED: "ESME_RTHROTTLED",
    ESME_RX_T_APPN: "ESME_RX_T_APPN",
    ESME_RX_P_APPN: "ESME_RX_P_APPN",
}


def status_name(status: int) -> str:
    """``0x58`` -> ``"ESME_RTHROTTLED (0x58)"``."""
    return f"{STATUS_NAMES.get(status, 'status')} (0x{status:02X})"
