"""The configuration's shape: one frozen dataclass per section, a default and a docstring per field.

:mod:`bridge.config` loads these from ``etc/bridge.toml`` and :mod:`bridge.configcheck` validates them; the
README's configuration reference is generated from the docstrings (:mod:`bridge.configdoc`). Import the
names from :mod:`bridge.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


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
    """The same text from the same mobile within this many seconds may be an SMSC redelivery (not run twice) or a
    person's repeat (answered): see *Delivery guarantees* under SMPP."""
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
    media_path: str = "batched"
    """``batched``: legs share a few RTP sockets of ``rtp_ports`` (told apart by remote address; one
    ``recvmmsg``/``sendmmsg`` per tick for all of them; an IPv6 ``listen`` uses ``socket``); ``socket``: one
    RTP socket per leg (also for phones behind a NAT that advertise a private address). See "Batched RTP in
    the engine" in docs/design/sip-media.md."""
    media_priority: int = 0
    """Real-time priority (``SCHED_RR``, 1-99) of the media threads: the engine's event loop, which runs the
    20 ms tick, the batched path's send thread and the SIP thread; 0: ordinary scheduling. On a machine where other
    processes keep the cores busy it keeps the tick on time (see "Tick lateness" in docs/design/sip-media.md).
    Needs root or CAP_SYS_NICE, else a warning and ordinary scheduling; threads and processes the engine
    starts do not inherit it, and the kernel's RT throttling leaves other tasks 5 % of each core."""
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
class LogConfig:
    format: Literal["text", "json"] = "text"
    """``text``: one human-readable line per event; ``json``: one JSON object per line (for a log shipper). Either
    way a line about a conference, a leg or a call carries its run id, leg id and Call-ID."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged (``bridge -v`` forces ``debug``)."""
    sip_trace_trunks: list[str] = field(default_factory=list)
    """Trunk groups whose SIP messages are logged in full (the sngrep habit, for troubleshooting); off by
    default: every request and response of those gateways goes to the log."""


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    listen: str = ""
    """``ip:port`` of the Prometheus exporter (``/metrics``); empty disables it."""
    smpp_unbound_alarm_s: float = 60.0
    """Alarm when the SMPP link has not been bound for this many seconds."""
    cdr_behind_alarm_s: float = 7200.0
    """Alarm when the oldest CDR file not yet delivered to a target is older than this."""
    disk_alarm_percent: float = 90.0
    """Alarm when the file system of ``node.data_dir`` is fuller than this (percent)."""
    tick_overrun_alarm: int = 50
    """Alarm when more than this many media ticks ran late or were skipped within one minute."""
    ha_peer_lost_alarm_s: float = 5.0
    """Alarm when the HA peer's heartbeat has not been heard for this many seconds (once HA runs)."""


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
class ApiConfig:
    enabled: bool = False
    """Start the CRM's XML provisioning API (HTTPS with client certificates, its own listener) with ``bridge run``."""
    listen: str = "127.0.0.1:8444"
    """``ip:port`` of the CRM XML API; never the portal's port (its users are not asked for a certificate)."""
    tls_cert: str = ""
    """PEM certificate (chain) the XML API presents; empty means ``<data_dir>/api-ca/server.crt`` made by
    ``bridge api ca-init``. A relative path is taken from the directory above the config file's."""
    tls_key: str = ""
    """PEM private key for ``tls_cert``; empty means ``<data_dir>/api-ca/server.key``."""
    client_ca: str = ""
    """PEM CA certificate(s) that issue the CRM terminals' client certificates; empty means
    ``<data_dir>/api-ca/ca.crt``. A client without a valid certificate from one of them fails the handshake."""
    allowed_subjects: list[str] = field(default_factory=list)
    """Client certificate subjects let in, as RFC 4514 strings (``CN=crm-1,O=Operator``) or a bare common name
    (``crm-1``); empty lets in every certificate the CA issued. Others are dropped before any HTTP is read."""
    max_document_bytes: int = 65536
    """Largest request document; a bigger one gets the ``TOO_LARGE`` negative acknowledgement unread."""
    max_connections: int = 32
    """Simultaneous connections to the XML API (one thread each); more are closed at once."""
    handshake_timeout_s: float = 10.0
    """Seconds a client gets to finish the TLS handshake and send its request."""
    rest_rate_per_s: float = 20.0
    """REST API (``/api/v1``, in the portal): sustained requests per second per token."""
    rest_burst: int = 40
    """REST API: requests a token may send at once before ``429 Too Many Requests``."""


@dataclass(frozen=True, kw_only=True)
class HaConfig:
    enabled: bool = False
    """Run this node as one half of an active/standby pair (``bridge.ha``); off: a single node, always active."""
    node_id: str = ""
    """This node's id in the pair (sent in every heartbeat); empty means ``node.name``. The two ids must differ."""
    peer_node_id: str = ""
    """The other node's id; heartbeats from any other node are refused."""
    local_addresses: list[str] = field(default_factory=list)
    """Our IPv4 address on each heartbeat path, in path order (path 0: the service LAN, path 1: a dedicated
    link). Two paths, so one cable cannot cause a split brain."""
    peer_addresses: list[str] = field(default_factory=list)
    """The peer's IPv4 address on each heartbeat path, in the same order as ``local_addresses``."""
    key_file: str = ""
    """File holding the shared HMAC key (at least 16 bytes, the same on both nodes, mode 0600). A relative path
    is taken from the directory above the config file's. Empty: the key is read from ``key_env``."""
    key_env: str = "BRIDGE_HA_KEY"
    """Environment variable holding the key when ``key_file`` is empty (never write the key in this file)."""
    interface: str = ""
    """The service interface that carries the VIP; its carrier is watched (down: this node hands over)."""
    vip: str = ""
    """The floating IPv4 address the active node holds: the SMSC, trunks, CRM and users talk to it."""
    vip_prefix: int = 24
    """Prefix length the VIP is added with (that of the service LAN)."""
    port: int = 5405
    """UDP port of the heartbeat on every path (the same on both nodes)."""
    interval_s: float = 0.05
    """Heartbeat interval; the peer is dead after ``miss_count`` intervals of silence on every path."""
    miss_count: int = 4
    """Missed intervals before the peer is dead (the failover time is about ``interval_s * miss_count``)."""
    witness: str = ""
    """IPv4 address that must answer ICMP echo before this node promotes itself (the default gateway, say);
    empty disables the check (a lab only: two isolated nodes would both promote)."""
    witness_interval_s: float = 0.5
    """Routine witness probe period (every interval while the peer is late)."""
    witness_timeout_s: float = 1.5
    """A node whose witness has not answered for this long is unhealthy and will not promote."""
    garp_count: int = 3
    """Gratuitous ARPs sent on takeover, ``garp_interval_s`` apart."""
    garp_interval_s: float = 0.5
    """Spacing of the repeated gratuitous ARPs."""
    realtime_priority: int = 10
    """SCHED_RR priority (1..99) of the engine's HA thread, 0 for normal scheduling (heartbeats on time on a
    busy machine: see *High availability*)."""
    pg_data: str = ""
    """Data directory of this node's PostgreSQL cluster; empty: the engine does not drive replication (SQLite,
    or a database managed elsewhere). Set: synchronous replication while the peer is healthy, ``pg_promote()``
    on takeover, ``pg_rewind`` to rejoin as a replica."""
    pg_bindir: str = "/usr/lib/postgresql/15/bin"
    """Directory of ``pg_ctl``, ``pg_rewind`` and ``pg_basebackup``."""
    pg_user: str = "postgres"
    """Operating-system user that owns ``pg_data``; the PostgreSQL tools run as this user."""
    pg_local: str = ""
    """libpq connection string of this node's cluster as a superuser, for the replication control (e.g.
    ``host=/var/run/postgresql port=5432 user=postgres dbname=postgres``)."""
    pg_peer: str = ""
    """libpq connection string of the peer's cluster, the source of streaming replication, ``pg_rewind`` and
    ``bridge ha init-standby`` (e.g. ``host=10.0.1.2 port=5432 user=postgres dbname=postgres``)."""


@dataclass(frozen=True, kw_only=True)
class BillingConfig:
    """Rating, balances and limits (:mod:`bridge.billing`) applied before every dial and when every leg ends."""

    enabled: bool = False
    """Check every launch, dial and dial-in, cut prepaid legs when the money runs out, price every leg.
    Off: the appliance's own rule (active subscriber; prepaid only with a positive balance), nothing charged."""
    default_plan_csv: str = ""
    """Rate plan CSV (``bridge rates import`` format) used as the default plan while the database has none."""
    low_balance_threshold: str = ""
    """Balance (a plain decimal, e.g. ``1.00``) under which the subscriber gets a low-balance SMS; empty: none."""
    warn_before_s: float = 60.0
    """Seconds before a prepaid leg is cut that it hears the ``one_minute_left`` warning."""
    home_country_codes: list[str] = field(default_factory=list)
    """Country codes that are not international; empty: the code of ``numbering.default_country``."""
    company_max_legs: int = 0
    """Legs up at once per company unless the company sets its own; 0: no limit."""
    subscriber_max_legs: int = 0
    """Legs up at once in a subscriber's conferences unless the subscriber sets their own; 0: no limit."""
    legs_per_hour: int = 0
    """Dials a subscriber may start in any 60 minutes (toll-fraud guard); 0: no cap."""
    deny_satellite: bool = True
    """Deny satellite and international-network codes (870, 881, 882, 883) unless a company allows them."""


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
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    room: list[RoomConfig] = field(default_factory=list)
    api: ApiConfig = field(default_factory=ApiConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
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
