"""The appliance's configuration: dataclasses loaded from ``etc/bridge.toml``.

Files and the environment are read only by :func:`load` (called from the entry point); everything else
receives a :class:`Config`. Every field has a default and a docstring, so the sample file only needs
what differs. Validation errors name the offending key (``sip.rtp_ports: ...``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_CONFIG_PATH = Path("etc/bridge.toml")
CONFIG_ENV = "BRIDGE_CONFIG"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    name: str = "bridge-a"
    """This node's name; used in CDR file names, logs and the HA pair."""
    data_dir: str = "var"
    """Directory for the embedded database, spool, recordings and generated TLS material."""


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    url: str = ""
    """SQLAlchemy URL. Empty means ``sqlite:///<data_dir>/bridge.db`` (WAL mode)."""


@dataclass(frozen=True, kw_only=True)
class NumberingConfig:
    default_country: str = "US"
    """ISO 3166 region used to read national numbers; everything is stored in E.164."""


@dataclass(frozen=True, kw_only=True)
class SmppConfig:
    enabled: bool = True
    """Start the SMPP link with ``bridge run``."""
    host: str = "127.0.0.1"
    """SMSC host."""
    port: int = 2775
    """SMSC port."""
    system_id: str = "bridge"
    """ESME system_id used to bind."""
    password: str = ""
    """ESME password (at most 8 characters in SMPP 3.4)."""
    system_type: str = ""
    """ESME system_type."""
    short_codes: list[str] = field(default_factory=lambda: ["2663"])
    """Short codes (source of MTs, destination of MOs); bound as the address range."""
    bind_mode: Literal["transceiver", "split"] = "transceiver"
    """One bind_transceiver, or separate bind_receiver + bind_transmitter sessions."""
    enquire_link_s: float = 30.0
    """Seconds between enquire_link PDUs; a missing response means the link is dead."""
    response_timeout_s: float = 10.0
    """Seconds to wait for any response PDU before treating the link as dead."""
    reconnect_min_s: float = 1.0
    """First reconnect delay; doubles on each failure (with jitter) up to ``reconnect_max_s``."""
    reconnect_max_s: float = 60.0
    """Cap of the reconnect back-off."""
    window: int = 10
    """Outstanding submit_sm PDUs without a response."""
    tps: float = 50.0
    """Maximum submit_sm per second."""
    reassembly_timeout_s: float = 60.0
    """How long parts of a concatenated MO are kept waiting for the rest."""
    dedup_window_s: float = 120.0
    """The same text from the same mobile within this many seconds is an SMSC redelivery, not run twice."""
    queue_poll_s: float = 1.0
    """How often the MT queue table is polled for rows queued by other processes."""
    retry_min_s: float = 1.0
    """First retry delay of a submit answered ESME_RTHROTTLED/ESME_RMSGQFUL; doubles (with jitter)."""
    retry_max_s: float = 30.0
    """Cap of the throttled-submit retry delay."""
    max_attempts: int = 20
    """Submits of one part before a still-throttled MT is recorded as failed."""
    registered_delivery: bool = True
    """Ask the SMSC for delivery receipts (matched to the MT by message id)."""


@dataclass(frozen=True, kw_only=True)
class SipConfig:
    enabled: bool = True
    """Start SIP signalling and RTP media with ``bridge run``."""
    listen: str = "127.0.0.1:5060"
    """``ip:port`` for SIP over UDP."""
    public_address: str = "127.0.0.1"
    """Address written into SDP and Contact headers."""
    rtp_ports: str = "10000-20000"
    """Inclusive range of UDP ports for RTP, one per leg (RTCP uses port + 1)."""
    antiflood_requests: int = 30
    """Requests allowed per source IP within ``antiflood_window_s``; more are dropped."""
    antiflood_window_s: float = 2.0
    """Window of the per-source request limit."""
    antiflood_gateways: bool = False
    """Apply the limit to the trunk gateways too. Off by default: a carrier trunk carrying many calls sends
    far more than 30 requests / 2 s at busy hour; the limit then guards against every other source."""
    rtp_timeout_s: float = 30.0
    """Hang up a leg after this many seconds without RTP."""
    options_interval_s: float = 30.0
    """OPTIONS keepalive interval to trunk gateways; a gateway that does not answer is marked down."""
    user_agent: str = "bridge"
    """User-Agent / Server header."""
    invite_timeout_s: float = 4.0
    """Seconds an outbound INVITE may go without any response before the call advances to the next route."""


@dataclass(frozen=True, kw_only=True)
class TrunkGroupConfig:
    name: str
    """Unique trunk group name."""
    kind: Literal["sip", "e1"] = "sip"
    """``sip`` for a SIP trunk, ``e1`` for E1 spans behind a SIP media gateway."""
    gateways: list[str] = field(default_factory=list)
    """``host:port`` of each gateway, tried in order (route advance on 5xx or timeout)."""
    username: str = ""
    """Digest user for 401/407 challenges."""
    password: str = ""
    """Digest password."""
    role: Literal["main", "alternate"] = "main"
    """``main`` groups are tried first, then ``alternate`` groups."""
    spans: int = 0
    """E1 only: number of spans."""
    channels_per_span: int = 30
    """E1 only: voice channels per span."""
    inband_dtmf: bool = False
    """Detect DTMF in the audio (Goertzel) for gateways that pass tones in-band."""
    calls_per_second: float = 10.0
    """Dial-out rate limit for this group."""


@dataclass(frozen=True, kw_only=True)
class DnisConfig:
    common: str = ""
    """The common dial-in number (callers enter a user PIN)."""
    pool: list[str] = field(default_factory=list, metadata={"one_or_list": True})
    """Numbers assigned one per Instant Conference: a range ``"A-B"`` or a list of numbers and ranges."""
    digit_timeout_s: float = 4.0
    """PIN IVR: silence after a digit that ends the entry (``#`` ends it at once)."""
    first_digit_timeout_s: float = 15.0
    """PIN IVR: silence before the first digit that counts as a wrong entry."""
    throttle_failures: int = 3
    """Calls from one number that end in "wrong PIN" within ``throttle_window_s`` before it is refused."""
    throttle_window_s: float = 600.0
    """Window of the per-number failure count."""
    throttle_block_s: float = 900.0
    """How long a throttled number is refused (SIP 403) after its last failure."""


@dataclass(frozen=True, kw_only=True)
class ConferenceConfig:
    hysteresis_s: float = 120.0
    """Seconds a conference survives after the subscriber left."""
    callback_retries: int = 3
    """Calls back to a subscriber who dropped."""
    callback_delay_s: float = 5.0
    """Seconds between the subscriber dropping (or a callback failing) and the next callback."""
    ring_timeout_s: float = 45.0
    """Seconds an outbound call may ring before it is cancelled."""
    max_participants: int = 100
    """Participants per conference."""
    max_adhoc: int = 10
    """Ad hoc numbers per Instant Conference."""
    max_ics_per_subscriber: int = 30
    """Instant Conference slots per subscriber."""
    pin_digits: int = 6
    """Length of generated PINs (at most 7)."""
    pin_attempts: int = 3
    """Wrong PINs before the caller is disconnected."""
    participant_sms: bool = False
    """Default for new ICs: text each participant the dial-back number and user PIN."""


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    enabled: bool = True
    """Start the HTTPS portal (gunicorn) alongside the engine with ``bridge run``."""
    listen: str = "127.0.0.1:8443"
    """``ip:port`` of the HTTPS portal."""
    tls_cert: str = ""
    """PEM certificate; empty means a self-signed one generated under ``data_dir/tls``."""
    tls_key: str = ""
    """PEM private key for ``tls_cert``."""
    secret_key: str = ""
    """Flask session secret; empty means one generated and kept under ``data_dir``."""
    login_attempts: int = 5
    """Failed logins before an account is locked for ``lockout_s``."""
    lockout_s: float = 900.0
    """Lockout duration after too many failed logins."""


@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    listen: str = "127.0.0.1:8181"
    """``ip:port`` of the engine's local JSON control API (loopback only)."""
    token: str = ""
    """Bearer token for the control API; empty means one generated and kept under ``data_dir``."""


@dataclass(frozen=True, kw_only=True)
class CdrTargetConfig:
    name: str
    """Target name (used in the delivery ledger)."""
    kind: Literal["rsync", "sftp", "ftp", "ftps"]
    """Transport."""
    host: str = "127.0.0.1"
    """Server host."""
    port: int = 0
    """Server port; 0 means the transport's default."""
    user: str = ""
    """Login user."""
    password: str = ""
    """FTP password."""
    key_file: str = ""
    """SSH private key (rsync, sftp)."""
    known_hosts: str = ""
    """known_hosts file for strict host-key checking (rsync, sftp)."""
    path: str = "."
    """Remote directory."""
    purpose: Literal["cdr", "summary"] = "cdr"
    """``cdr`` for hourly CDR files, ``summary`` for the nightly usage summary."""
    ca_file: str = ""
    """FTPS: CA certificate(s) to verify the server with; empty means the system's CAs."""


@dataclass(frozen=True, kw_only=True)
class CdrConfig:
    push_enabled: bool = True
    """Run the hourly push (only on the active node)."""
    push_minute: int = 5
    """Minute past the hour at which the previous hour is pushed."""
    retention_days: int = 92
    """CDRs and spooled files older than this are purged nightly."""
    summary_time: str = "02:00"
    """Time of day (HH:MM, the engine scheduler's zone: UTC) of the nightly usage summary and retention purge."""
    feed_listen: str = "127.0.0.1:8282"
    """``ip:port`` of the real-time CDR feed; empty disables it. Plain TCP is allowed on loopback only:
    any other address needs ``feed_tls_cert``, ``feed_tls_key`` and ``feed_client_ca`` (mutual TLS)."""
    feed_tls_cert: str = ""
    """PEM certificate (chain) the feed presents; set with ``feed_tls_key`` and ``feed_client_ca``, the feed
    speaks TLS only and requires a client certificate. A relative path is taken from the directory above the
    config file's (like ``node.data_dir``)."""
    feed_tls_key: str = ""
    """PEM private key for ``feed_tls_cert``."""
    feed_client_ca: str = ""
    """PEM CA certificate(s) that issue the billing systems' client certificates; a client without a
    certificate from one of them fails the TLS handshake."""
    feed_max_clients: int = 8
    """Simultaneous feed connections; one more gets ``ERR too many connections (limit N)`` and is closed."""
    alert_after_s: float = 3600.0
    """Alert when a target has been failing for this long."""
    targets: list[CdrTargetConfig] = field(default_factory=list)
    """Delivery targets, in failover order (``[[cdr.targets]]``)."""
    retry_min_s: float = 60.0
    """First retry delay after a failed upload to a target; doubles per failure."""
    retry_max_s: float = 900.0
    """Longest retry delay (the backoff stops doubling here)."""
    timeout_s: float = 30.0
    """Connect / transfer timeout of one upload."""


@dataclass(frozen=True, kw_only=True)
class AlertsConfig:
    smtp_host: str = ""
    """SMTP relay; empty disables alert mail."""
    smtp_port: int = 25
    """SMTP port."""
    sender: str = "bridge@localhost"
    """From address of alerts."""
    recipients: list[str] = field(default_factory=list)
    """Who receives alerts."""


@dataclass(frozen=True, kw_only=True)
class RoomConfig:
    number: str
    """Dialled number that reaches the room."""
    name: str
    """Room name."""
    pin: str = ""
    """Participant PIN; empty means no PIN prompt."""
    max_members: int = 0
    """Capacity; 0 means ``conference.max_participants``."""
    moderator_pin: str = ""
    """PIN that gives the subscriber's controls; empty means none."""


@dataclass(frozen=True, kw_only=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    numbering: NumberingConfig = field(default_factory=NumberingConfig)
    smpp: SmppConfig = field(default_factory=SmppConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    trunk_group: list[TrunkGroupConfig] = field(default_factory=list)
    dnis: DnisConfig = field(default_factory=DnisConfig)
    conference: ConferenceConfig = field(default_factory=ConferenceConfig)
    web: WebConfig = field(default_factory=WebConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    cdr: CdrConfig = field(default_factory=CdrConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    room: list[RoomConfig] = field(default_factory=list)
    base_dir: str = "."
    """Directory relative paths are resolved against (the config file's parent's parent)."""

    @property
    def data_path(self) -> Path:
        path = Path(self.node.data_dir)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def resolve(self, path: str) -> Path:
        """A path from the config: absolute as given, relative against ``base_dir``."""
        resolved = Path(path)
        return resolved if resolved.is_absolute() else Path(self.base_dir) / resolved

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'bridge.db'}"


# --- loading -----------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file (``$BRIDGE_CONFIG`` or ``etc/bridge.toml``)."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.resolve().parent.parent
    return from_dict(raw, base_dir=str(base))


def from_dict(raw: dict[str, Any], *, base_dir: str = ".") -> Config:
    """Build and validate a :class:`Config` from parsed TOML."""
    config: Config = _build(Config, {**raw, "base_dir": base_dir}, "")
    _validate(config)
    return config


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{_join(where, key)}: unknown key (expected one of {', '.join(fields)})")
    raw = {key: [value] if fields[key].metadata.get("one_or_list") and isinstance(value, str) else value
           for key, value in raw.items()}  # fmt: skip
    kwargs = {key: _coerce(hints[key], value, _join(where, key)) for key, value in raw.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{_join(where, missing[0])}: required key missing")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type[Any], hint), value, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported type")  # pragma: no cover - no optional fields
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # numbers written without quotes (DNIS, PINs)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# --- validation --------------------------------------------------------------------------------------


def parse_host_port(text: str, where: str) -> tuple[str, int]:
    """``"ip:port"`` -> ``(ip, port)``; raises :class:`ConfigError` naming ``where``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
    return host, int(port)


def parse_port_range(text: str, where: str) -> tuple[int, int]:
    """``"10000-20000"`` -> ``(10000, 20000)``; raises :class:`ConfigError` naming ``where``."""
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigError(f"{where}: expected 'low-high', got {text!r}")
    lo, hi = int(low), int(high)
    if not 1024 <= lo <= hi < 65536:
        raise ConfigError(f"{where}: range must lie within 1024-65535 and low <= high, got {text!r}")
    return lo, hi


_PHONE = re.compile(r"\+?[0-9]{1,15}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def phone_number(text: str, where: str) -> str:
    """A dialled number as the gateway sends it: up to 15 digits (E.164), optionally after ``+``."""
    if not _PHONE.fullmatch(text):
        raise ConfigError(f"{where}: {text!r} is not a phone number (up to 15 digits, optionally after '+')")
    return text


def host_name(text: str, where: str) -> str:
    """An IP address or an RFC 1123 host name (letters, digits, inner hyphens; dot-separated labels)."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(text)
        return text
    labels = text.removesuffix(".").split(".")
    if not text or len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(f"{where}: {text!r} is not a host name or IP address")
    return text


def expand_numbers(items: list[str], where: str) -> list[str]:
    """Expand ``["5550100-5550130", "5550200"]`` into single numbers, keeping order."""
    numbers: list[str] = []
    for i, item in enumerate(items):
        low, sep, high = item.partition("-")
        if not sep:
            numbers.append(phone_number(item.strip(), f"{where}[{i}]"))
            continue
        low, high = low.strip(), high.strip()
        if not (low.lstrip("+").isdigit() and high.lstrip("+").isdigit()) or len(low) != len(high):
            raise ConfigError(f"{where}[{i}]: bad range {item!r} (both ends need the same number of digits)")
        prefix = "+" if low.startswith("+") else ""
        start, stop = int(low.lstrip("+")), int(high.lstrip("+"))
        if stop < start or stop - start > 10_000:
            raise ConfigError(f"{where}[{i}]: bad range {item!r}")
        width = len(low.lstrip("+"))
        numbers.extend(f"{prefix}{n:0{width}d}" for n in range(start, stop + 1))
    return numbers


def _validate(config: Config) -> None:
    import phonenumbers

    if phonenumbers.country_code_for_region(config.numbering.default_country) == 0:
        raise ConfigError(f"numbering.default_country: unknown region {config.numbering.default_country!r}")
    if not config.node.name:
        raise ConfigError("node.name: must not be empty")
    _validate_database_url(config.database.url)
    smpp = config.smpp
    host_name(smpp.host, "smpp.host")
    if not 0 < smpp.port < 65536:
        raise ConfigError(f"smpp.port: {smpp.port} is not a port")
    if len(smpp.system_id) > 15:
        raise ConfigError("smpp.system_id: at most 15 characters")
    if len(smpp.password) > 8:
        raise ConfigError("smpp.password: at most 8 characters (SMPP 3.4)")
    if not smpp.short_codes:
        raise ConfigError("smpp.short_codes: at least one short code is needed")
    for key in (
        "enquire_link_s",
        "response_timeout_s",
        "reconnect_min_s",
        "reconnect_max_s",
        "tps",
        "reassembly_timeout_s",
        "dedup_window_s",
        "queue_poll_s",
        "retry_min_s",
        "retry_max_s",
    ):
        if getattr(smpp, key) <= 0:
            raise ConfigError(f"smpp.{key}: must be positive")
    if smpp.reconnect_max_s < smpp.reconnect_min_s or smpp.retry_max_s < smpp.retry_min_s:
        raise ConfigError("smpp.reconnect_max_s: the cap must not be below the first delay")
    if smpp.max_attempts < 1:
        raise ConfigError("smpp.max_attempts: must be at least 1")
    if smpp.window < 1:
        raise ConfigError("smpp.window: must be at least 1")
    host, _ = parse_host_port(config.sip.listen, "sip.listen")
    _ip(host, "sip.listen")
    _public_ip(config.sip.public_address, "sip.public_address")
    parse_port_range(config.sip.rtp_ports, "sip.rtp_ports")
    if config.sip.antiflood_requests < 1 or config.sip.antiflood_window_s <= 0:
        raise ConfigError("sip.antiflood_requests: limit and window must be positive")
    for key in ("invite_timeout_s", "options_interval_s", "rtp_timeout_s"):
        if getattr(config.sip, key) <= 0:
            raise ConfigError(f"sip.{key}: must be positive")
    names: set[str] = set()
    for i, trunk in enumerate(config.trunk_group):
        where = f"trunk_group[{i}]"
        if trunk.name in names:
            raise ConfigError(f"{where}.name: duplicate trunk group {trunk.name!r}")
        names.add(trunk.name)
        if not trunk.gateways:
            raise ConfigError(f"{where}.gateways: at least one gateway is needed")
        for j, gateway in enumerate(trunk.gateways):
            parse_host_port(gateway, f"{where}.gateways[{j}]")
        if trunk.kind == "e1" and (trunk.spans < 1 or trunk.channels_per_span < 1):
            raise ConfigError(f"{where}.spans: an e1 trunk group needs spans >= 1 and channels_per_span >= 1")
    if config.dnis.common:
        phone_number(config.dnis.common, "dnis.common")
    dnis = expand_numbers(config.dnis.pool, "dnis.pool")
    if config.dnis.common and config.dnis.common in dnis:
        raise ConfigError("dnis.pool: the common number must not be in the pool")
    if len(set(dnis)) != len(dnis):
        raise ConfigError("dnis.pool: duplicate numbers")
    conf = config.conference
    if not 4 <= conf.pin_digits <= 7:
        raise ConfigError(f"conference.pin_digits: must be 4..7, got {conf.pin_digits}")
    if not 1 <= conf.max_ics_per_subscriber <= 30:
        raise ConfigError("conference.max_ics_per_subscriber: must be 1..30")
    for key in ("hysteresis_s", "ring_timeout_s"):
        if getattr(conf, key) <= 0:
            raise ConfigError(f"conference.{key}: must be positive")
    if conf.max_participants < 2:
        raise ConfigError("conference.max_participants: must be at least 2")
    if conf.callback_delay_s < 0:
        raise ConfigError("conference.callback_delay_s: must not be negative")
    for key in ("digit_timeout_s", "first_digit_timeout_s", "throttle_window_s", "throttle_block_s"):
        if getattr(config.dnis, key) <= 0:
            raise ConfigError(f"dnis.{key}: must be positive")
    if config.dnis.throttle_failures < 1:
        raise ConfigError("dnis.throttle_failures: must be at least 1")
    if conf.callback_retries < 0 or conf.max_adhoc < 0 or conf.pin_attempts < 1:
        raise ConfigError("conference.callback_retries: counts must not be negative")
    parse_host_port(config.web.listen, "web.listen")
    if config.web.login_attempts < 1:
        raise ConfigError("web.login_attempts: must be at least 1")
    if config.web.lockout_s <= 0:  # 0 or less would silently disable the lockout
        raise ConfigError("web.lockout_s: must be positive")
    if bool(config.web.tls_cert) != bool(config.web.tls_key):
        raise ConfigError("web.tls_key: give both tls_cert and tls_key, or neither")
    control_host, _ = parse_host_port(config.control.listen, "control.listen")
    if not ipaddress.ip_address(_ip(control_host, "control.listen")).is_loopback:
        raise ConfigError("control.listen: the control API must listen on loopback")
    _validate_feed(config.cdr)
    _validate_tcp_listeners(config)
    if not 0 <= config.cdr.push_minute < 60:
        raise ConfigError("cdr.push_minute: must be 0..59")
    if config.cdr.retention_days < 1:
        raise ConfigError("cdr.retention_days: must be at least 1")
    for key in ("retry_min_s", "retry_max_s", "timeout_s", "alert_after_s"):
        if getattr(config.cdr, key) <= 0:
            raise ConfigError(f"cdr.{key}: must be positive")
    if config.cdr.retry_max_s < config.cdr.retry_min_s:
        raise ConfigError("cdr.retry_max_s: must not be below cdr.retry_min_s")
    target_names: set[str] = set()
    for i, target in enumerate(config.cdr.targets):
        if not target.name or target.name in target_names:
            raise ConfigError(f"cdr.targets[{i}].name: empty or duplicate target name {target.name!r}")
        target_names.add(target.name)
        if not 0 <= target.port < 65536:
            raise ConfigError(f"cdr.targets[{i}].port: {target.port} is not a port")
        if target.kind in ("rsync", "sftp") and not (target.key_file and target.known_hosts and target.user):
            raise ConfigError(f"cdr.targets[{i}].known_hosts: {target.kind} needs user, key_file and known_hosts")
    hh, sep, mm = config.cdr.summary_time.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ConfigError(f"cdr.summary_time: expected HH:MM, got {config.cdr.summary_time!r}")
    rooms: set[str] = set()
    for i, room in enumerate(config.room):
        if room.number in rooms or room.number in dnis or room.number == config.dnis.common:
            raise ConfigError(f"room[{i}].number: {room.number!r} is already used")
        rooms.add(room.number)
        for key in ("pin", "moderator_pin"):
            pin = getattr(room, key)
            if pin and not (pin.isdigit() and len(pin) <= 7):
                raise ConfigError(f"room[{i}].{key}: PINs are 1-7 digits")


def _validate_database_url(url: str) -> None:
    """The URL parses and names a dialect SQLAlchemy has (the driver itself is imported at connect)."""
    if not url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: {url!r} is not a database URL (dialect://...)") from exc
    try:
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(f"database.url: unknown database {parsed.drivername!r} (e.g. sqlite, postgresql)") from exc


def _validate_tcp_listeners(config: Config) -> None:
    """Two of our TCP listeners on one port would have the second fail to bind at start: say so now."""
    listeners = [("control.listen", config.control.listen)]
    if config.cdr.feed_listen:
        listeners.append(("cdr.feed_listen", config.cdr.feed_listen))
    if config.web.enabled:
        listeners.append(("web.listen", config.web.listen))
    seen: list[tuple[str, str, int]] = []
    for key, text in listeners:
        host, port = parse_host_port(text, key)
        for other_key, other_host, other_port in seen:
            wildcard = {host, other_host} & {"0.0.0.0", "::", "[::]"}
            if port == other_port and (host == other_host or wildcard):
                raise ConfigError(f"{key}: {text!r} is also {other_key} ({_value_at(config, other_key)})")
        seen.append((key, host, port))


def _value_at(config: Config, key: str) -> Any:
    """``_value_at(config, "control.listen")`` -> ``config.control.listen``."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _public_ip(text: str, where: str) -> str:
    """An address written into SDP/Contact: an IP a peer can send to (not the wildcard)."""
    if ipaddress.ip_address(_ip(text, where)).is_unspecified:
        raise ConfigError(f"{where}: {text!r} is not an address peers can reach (give this host's IP)")
    return text


FEED_TLS_KEYS = ("feed_tls_cert", "feed_tls_key", "feed_client_ca")


def _validate_feed(cdr: CdrConfig) -> None:
    """The feed streams every company's CDRs: off loopback only over mutual TLS, and never unbounded."""
    given = [key for key in FEED_TLS_KEYS if getattr(cdr, key)]
    if given and len(given) != len(FEED_TLS_KEYS):
        missing = next(key for key in FEED_TLS_KEYS if key not in given)
        raise ConfigError(f"cdr.{missing}: mutual TLS needs all of {', '.join(FEED_TLS_KEYS)} (got {given[0]})")
    if cdr.feed_max_clients < 1:
        raise ConfigError("cdr.feed_max_clients: must be at least 1")
    if not cdr.feed_listen:
        return
    host, _ = parse_host_port(cdr.feed_listen, "cdr.feed_listen")
    loopback = ipaddress.ip_address(_ip(host.strip("[]"), "cdr.feed_listen")).is_loopback
    if not given and not loopback:
        raise ConfigError(
            f"cdr.feed_listen: {cdr.feed_listen!r} is not loopback; a feed reachable from other machines needs "
            "mutual TLS (set cdr.feed_tls_cert, cdr.feed_tls_key and cdr.feed_client_ca)"
        )


def _ip(host: str, where: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{where}: {host!r} is not an IP address") from exc
    return host
