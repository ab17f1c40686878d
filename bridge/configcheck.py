"""Validation of a loaded :class:`~bridge.configschema.Config`: one small validator per section, then the
rules that span sections. Every error is a :class:`ConfigError` whose message starts with the key that is
wrong (``smpp.retry_max_s: ...``, ``room[1].number: ...``), so the operator knows what to edit.

The value parsers (:func:`parse_host_port`, :func:`expand_numbers`, ...) are public: the services use them
to read the same values the same way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.configschema import (
    AlertsConfig,
    ApiConfig,
    BillingConfig,
    CdrConfig,
    CdrTargetConfig,
    ConferenceConfig,
    Config,
    ConfigError,
    ControlConfig,
    DatabaseConfig,
    DnisConfig,
    HaConfig,
    LogConfig,
    MetricsConfig,
    NodeConfig,
    NumberingConfig,
    RoomConfig,
    SipConfig,
    SmppConfig,
    TrunkGroupConfig,
    WebConfig,
)


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


def validate(config: Config) -> None:
    """One validator per section, then the rules that span sections; each error names its key."""
    _check_node(config.node)
    _check_database(config.database)
    _check_numbering(config.numbering)
    _check_smpp(config.smpp)
    _check_sip(config.sip)
    _check_trunk_groups(config.trunk_group)
    _check_dnis(config.dnis)
    _check_conference(config.conference)
    _check_web(config.web)
    _check_control(config.control)
    _check_cdr(config.cdr)
    _check_alerts(config.alerts)
    _check_log(config.log, config.trunk_group)
    _check_metrics(config.metrics)
    _check_rooms(config.room, config.dnis, config.conference.max_participants)
    _check_api(config.api)
    _check_ha(config.ha, config.node)
    _check_billing(config.billing)
    _check_tcp_listeners(config)


# Small rules shared by the section validators: ``where`` is the section's key prefix.


def _positive(section: Any, where: str, *keys: str) -> None:
    for key in keys:
        if getattr(section, key) <= 0:
            raise ConfigError(f"{where}.{key}: must be positive")


def _at_least(section: Any, where: str, minimum: int, *keys: str) -> None:
    for key in keys:
        if getattr(section, key) < minimum:
            raise ConfigError(f"{where}.{key}: must be at least {minimum}")


def _not_below(section: Any, where: str, cap: str, first: str) -> None:
    if getattr(section, cap) < getattr(section, first):
        raise ConfigError(f"{where}.{cap}: must not be below {where}.{first}")


def _port(value: int, where: str, *, zero: bool = False) -> None:
    if not (0 if zero else 1) <= value < 65536:
        raise ConfigError(f"{where}: {value} is not a port")


def _not_empty(value: str, where: str) -> None:
    if not value.strip():
        raise ConfigError(f"{where}: must not be empty")


def _ip(host: str, where: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{where}: {host!r} is not an IP address") from exc
    return host


def _listen_ip(text: str, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host, _ = parse_host_port(text, where)
    return ipaddress.ip_address(_ip(host.strip("[]"), where))


def _email(text: str, where: str) -> None:
    local, at, domain = text.rpartition("@")
    if not (at and local and domain) or any(c.isspace() for c in text):
        raise ConfigError(f"{where}: {text!r} is not a mail address")


# The sections.


def _check_node(node: NodeConfig) -> None:
    _not_empty(node.name, "node.name")


def _check_database(database: DatabaseConfig) -> None:
    """The URL parses and names a dialect SQLAlchemy has (the driver itself is imported at connect)."""
    if not database.url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(database.url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: {database.url!r} is not a database URL (dialect://...)") from exc
    try:
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(f"database.url: unknown database {parsed.drivername!r} (e.g. sqlite, postgresql)") from exc


def _check_numbering(numbering: NumberingConfig) -> None:
    import phonenumbers

    if phonenumbers.country_code_for_region(numbering.default_country) == 0:
        raise ConfigError(f"numbering.default_country: unknown region {numbering.default_country!r}")


def _check_smpp(smpp: SmppConfig) -> None:
    host_name(smpp.host, "smpp.host")
    _port(smpp.port, "smpp.port")
    for key, limit in (("system_id", 15), ("password", 8), ("system_type", 12)):  # SMPP 3.4 §4.1.1
        if len(getattr(smpp, key)) > limit:
            raise ConfigError(f"smpp.{key}: at most {limit} characters (SMPP 3.4)")
    if not smpp.short_codes:
        raise ConfigError("smpp.short_codes: at least one short code is needed")
    for i, code in enumerate(smpp.short_codes):
        phone_number(code, f"smpp.short_codes[{i}]")
    _positive(
        smpp, "smpp", "enquire_link_s", "response_timeout_s", "reconnect_min_s", "reconnect_max_s", "tps",
        "reassembly_timeout_s", "dedup_window_s", "queue_poll_s", "retry_min_s", "retry_max_s",
    )  # fmt: skip
    _not_below(smpp, "smpp", "reconnect_max_s", "reconnect_min_s")
    _not_below(smpp, "smpp", "retry_max_s", "retry_min_s")
    _at_least(smpp, "smpp", 1, "window", "max_attempts")


def _check_sip(sip: SipConfig) -> None:
    _listen_ip(sip.listen, "sip.listen")
    if ipaddress.ip_address(_ip(sip.public_address, "sip.public_address")).is_unspecified:
        raise ConfigError(f"sip.public_address: {sip.public_address!r} is not an address peers can reach")
    parse_port_range(sip.rtp_ports, "sip.rtp_ports")
    if sip.media_path not in ("batched", "socket"):
        raise ConfigError(f"sip.media_path: {sip.media_path!r} is not 'batched' or 'socket'")
    if not 0 <= sip.media_priority <= 99:
        raise ConfigError(f"sip.media_priority: {sip.media_priority} is not 0 (off) or a priority 1-99")
    _at_least(sip, "sip", 1, "antiflood_requests")
    _positive(sip, "sip", "antiflood_window_s", "rtp_timeout_s", "options_interval_s", "invite_timeout_s")
    _not_empty(sip.user_agent, "sip.user_agent")


def _check_trunk_groups(trunks: list[TrunkGroupConfig]) -> None:
    names: set[str] = set()
    for i, trunk in enumerate(trunks):
        where = f"trunk_group[{i}]"
        _not_empty(trunk.name, f"{where}.name")
        if trunk.name in names:
            raise ConfigError(f"{where}.name: duplicate trunk group {trunk.name!r}")
        names.add(trunk.name)
        if not trunk.gateways:
            raise ConfigError(f"{where}.gateways: at least one gateway is needed")
        for j, gateway in enumerate(trunk.gateways):
            parse_host_port(gateway, f"{where}.gateways[{j}]")
        if trunk.kind == "e1":
            for key in ("spans", "channels_per_span"):
                if getattr(trunk, key) < 1:
                    raise ConfigError(f"{where}.{key}: an e1 trunk group needs spans >= 1 and channels_per_span >= 1")
        _positive(trunk, where, "calls_per_second")


def _check_dnis(dnis: DnisConfig) -> None:
    if dnis.common:
        phone_number(dnis.common, "dnis.common")
    pool = expand_numbers(dnis.pool, "dnis.pool")
    if dnis.common and dnis.common in pool:
        raise ConfigError("dnis.pool: the common number must not be in the pool")
    if len(set(pool)) != len(pool):
        raise ConfigError("dnis.pool: duplicate numbers")
    _positive(dnis, "dnis", "digit_timeout_s", "first_digit_timeout_s", "throttle_window_s", "throttle_block_s")
    _at_least(dnis, "dnis", 1, "throttle_failures")


def _check_conference(conf: ConferenceConfig) -> None:
    if not 4 <= conf.pin_digits <= 7:
        raise ConfigError(f"conference.pin_digits: must be 4..7, got {conf.pin_digits}")
    if not 1 <= conf.max_ics_per_subscriber <= 30:
        raise ConfigError("conference.max_ics_per_subscriber: must be 1..30")
    _positive(conf, "conference", "hysteresis_s", "ring_timeout_s")
    _at_least(conf, "conference", 2, "max_participants")
    _at_least(conf, "conference", 1, "pin_attempts")
    _at_least(conf, "conference", 0, "callback_retries", "max_adhoc")
    if conf.callback_delay_s < 0:
        raise ConfigError("conference.callback_delay_s: must not be negative")


def _check_billing(billing: BillingConfig) -> None:
    if billing.low_balance_threshold:
        try:
            threshold = Decimal(billing.low_balance_threshold)
        except InvalidOperation:
            threshold = Decimal(-1)
        if not threshold.is_finite() or threshold < 0:
            raise ConfigError("billing.low_balance_threshold: must be a non-negative decimal such as 1.00")
    if billing.warn_before_s < 0:
        raise ConfigError("billing.warn_before_s: must not be negative")
    _at_least(billing, "billing", 0, "company_max_legs", "subscriber_max_legs", "legs_per_hour")
    for i, code in enumerate(billing.home_country_codes):
        if not (code.isdigit() and 1 <= len(code) <= 3):
            raise ConfigError(f"billing.home_country_codes[{i}]: a country code is 1 to 3 digits, got {code!r}")


def _check_web(web: WebConfig) -> None:
    parse_host_port(web.listen, "web.listen")
    if bool(web.tls_cert) != bool(web.tls_key):
        missing = "tls_key" if web.tls_cert else "tls_cert"
        raise ConfigError(f"web.{missing}: give both tls_cert and tls_key, or neither")
    _at_least(web, "web", 1, "login_attempts")
    if web.lockout_s <= 0:  # 0 or less would silently disable the lockout
        raise ConfigError("web.lockout_s: must be positive")


def _check_control(control: ControlConfig) -> None:
    if not _listen_ip(control.listen, "control.listen").is_loopback:
        raise ConfigError("control.listen: the control API must listen on loopback")


FEED_TLS_KEYS = ("feed_tls_cert", "feed_tls_key", "feed_client_ca")


def _check_cdr(cdr: CdrConfig) -> None:
    if not 0 <= cdr.push_minute < 60:
        raise ConfigError("cdr.push_minute: must be 0..59")
    _at_least(cdr, "cdr", 1, "retention_days")
    hh, sep, mm = cdr.summary_time.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ConfigError(f"cdr.summary_time: expected HH:MM, got {cdr.summary_time!r}")
    _check_feed(cdr)
    _positive(cdr, "cdr", "alert_after_s", "retry_min_s", "retry_max_s", "timeout_s")
    _not_below(cdr, "cdr", "retry_max_s", "retry_min_s")
    _check_cdr_targets(cdr.targets)


def _check_feed(cdr: CdrConfig) -> None:
    """The feed streams every company's CDRs: off loopback only over mutual TLS, and never unbounded."""
    given = [key for key in FEED_TLS_KEYS if getattr(cdr, key)]
    if given and len(given) != len(FEED_TLS_KEYS):
        missing = next(key for key in FEED_TLS_KEYS if key not in given)
        raise ConfigError(f"cdr.{missing}: mutual TLS needs all of {', '.join(FEED_TLS_KEYS)} (got {given[0]})")
    _at_least(cdr, "cdr", 1, "feed_max_clients")
    if cdr.feed_listen and not _listen_ip(cdr.feed_listen, "cdr.feed_listen").is_loopback and not given:
        raise ConfigError(
            f"cdr.feed_listen: {cdr.feed_listen!r} is not loopback; a feed reachable from other machines needs "
            "mutual TLS (set cdr.feed_tls_cert, cdr.feed_tls_key and cdr.feed_client_ca)"
        )


def _check_cdr_targets(targets: list[CdrTargetConfig]) -> None:
    names: set[str] = set()
    for i, target in enumerate(targets):
        where = f"cdr.targets[{i}]"
        if not target.name or target.name in names:
            raise ConfigError(f"{where}.name: empty or duplicate target name {target.name!r}")
        names.add(target.name)
        host_name(target.host, f"{where}.host")
        _port(target.port, f"{where}.port", zero=True)
        if target.kind in ("rsync", "sftp"):
            for key in ("user", "key_file", "known_hosts"):
                if not getattr(target, key):
                    raise ConfigError(f"{where}.{key}: {target.kind} needs user, key_file and known_hosts")
        _not_empty(target.path, f"{where}.path")


def _check_alerts(alerts: AlertsConfig) -> None:
    if alerts.smtp_host:
        host_name(alerts.smtp_host, "alerts.smtp_host")
    _port(alerts.smtp_port, "alerts.smtp_port")
    _email(alerts.sender, "alerts.sender")
    for i, recipient in enumerate(alerts.recipients):
        _email(recipient, f"alerts.recipients[{i}]")


def _check_log(log: LogConfig, trunks: list[TrunkGroupConfig]) -> None:
    names = {trunk.name for trunk in trunks}
    for i, name in enumerate(log.sip_trace_trunks):
        if name not in names:
            known = ", ".join(sorted(names)) or "none configured"
            raise ConfigError(f"log.sip_trace_trunks[{i}]: no trunk group {name!r} (trunk groups: {known})")


def _check_metrics(metrics: MetricsConfig) -> None:
    if metrics.listen:
        _listen_ip(metrics.listen, "metrics.listen")
    _positive(metrics, "metrics", "smpp_unbound_alarm_s", "cdr_behind_alarm_s", "ha_peer_lost_alarm_s")
    _at_least(metrics, "metrics", 1, "tick_overrun_alarm")
    if not 0 < metrics.disk_alarm_percent < 100:
        raise ConfigError("metrics.disk_alarm_percent: must lie between 0 and 100")


def _check_rooms(rooms: list[RoomConfig], dnis: DnisConfig, max_participants: int) -> None:
    used = {dnis.common, *expand_numbers(dnis.pool, "dnis.pool")}
    for i, room in enumerate(rooms):
        where = f"room[{i}]"
        phone_number(room.number, f"{where}.number")
        if room.number in used:
            raise ConfigError(f"{where}.number: {room.number!r} is already used")
        used.add(room.number)
        _not_empty(room.name, f"{where}.name")
        for key in ("pin", "moderator_pin"):
            pin = getattr(room, key)
            if pin and not (pin.isdigit() and len(pin) <= 7):
                raise ConfigError(f"{where}.{key}: PINs are 1-7 digits")
        if room.pin and room.moderator_pin == room.pin:
            raise ConfigError(f"{where}.moderator_pin: must differ from pin")
        if not 0 <= room.max_members <= max_participants:  # the CLI's `room add` rule
            raise ConfigError(f"{where}.max_members: must be 0..{max_participants} (conference.max_participants)")


def _check_api(api: ApiConfig) -> None:
    parse_host_port(api.listen, "api.listen")
    if bool(api.tls_cert) != bool(api.tls_key):
        missing = "tls_key" if api.tls_cert else "tls_cert"
        raise ConfigError(f"api.{missing}: give both tls_cert and tls_key, or neither")
    for i, subject in enumerate(api.allowed_subjects):
        if not subject.strip():
            raise ConfigError(f"api.allowed_subjects[{i}]: empty subject")
    if not 1024 <= api.max_document_bytes <= 10 * 1024 * 1024:
        raise ConfigError("api.max_document_bytes: must be 1024..10485760")
    _at_least(api, "api", 1, "max_connections", "rest_burst")
    _positive(api, "api", "handshake_timeout_s", "rest_rate_per_s")


def _ipv4(text: str, where: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {text!r} is not an IPv4 address") from exc


def _check_ha(ha: HaConfig, node: NodeConfig) -> None:
    """Checked only when enabled (a disabled section may be half filled); the key itself is read at start."""
    if not ha.enabled:
        return
    if ha.node_id and len(ha.node_id.encode()) > 64:
        raise ConfigError("ha.node_id: at most 64 bytes")
    _not_empty(ha.peer_node_id, "ha.peer_node_id")
    if len(ha.peer_node_id.encode()) > 64 or ha.peer_node_id == (ha.node_id or node.name):
        raise ConfigError("ha.peer_node_id: must differ from this node's id and be at most 64 bytes")
    if not ha.local_addresses:
        raise ConfigError("ha.local_addresses: one address per heartbeat path is needed")
    if len(ha.peer_addresses) != len(ha.local_addresses):
        raise ConfigError(f"ha.peer_addresses: one per path, as many as ha.local_addresses ({len(ha.local_addresses)})")
    for key in ("local_addresses", "peer_addresses"):
        for i, address in enumerate(getattr(ha, key)):
            _ipv4(address, f"ha.{key}[{i}]")
    if not ha.key_file and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ha.key_env):
        raise ConfigError(f"ha.key_env: {ha.key_env!r} is not an environment variable name (or set ha.key_file)")
    _not_empty(ha.interface, "ha.interface")
    _ipv4(ha.vip, "ha.vip")
    if not 1 <= ha.vip_prefix <= 32:
        raise ConfigError("ha.vip_prefix: must be 1..32")
    _port(ha.port, "ha.port")
    if not 0.005 <= ha.interval_s <= 10:
        raise ConfigError("ha.interval_s: must be 0.005..10")
    if not 2 <= ha.miss_count <= 100:
        raise ConfigError("ha.miss_count: must be 2..100")
    if ha.witness:
        _ipv4(ha.witness, "ha.witness")
    _positive(ha, "ha", "witness_interval_s", "garp_interval_s")
    if ha.witness_timeout_s < 2 * ha.witness_interval_s:
        raise ConfigError("ha.witness_timeout_s: must cover at least two witness probes (2 * witness_interval_s)")
    _at_least(ha, "ha", 1, "garp_count")
    if not 0 <= ha.realtime_priority <= 99:
        raise ConfigError("ha.realtime_priority: must be 0..99")
    _check_ha_postgres(ha)


def _check_ha_postgres(ha: HaConfig) -> None:
    if not ha.pg_data:
        return
    if not ha.pg_data.startswith("/"):
        raise ConfigError(f"ha.pg_data: {ha.pg_data!r} is not an absolute path")
    _not_empty(ha.pg_bindir, "ha.pg_bindir")
    _not_empty(ha.pg_user, "ha.pg_user")
    for key in ("pg_local", "pg_peer"):
        text = getattr(ha, key)
        if "=" not in text:
            raise ConfigError(f"ha.{key}: expected a libpq connection string (host=... port=... user=...)")


def _check_tcp_listeners(config: Config) -> None:
    """Two of our TCP listeners on one port would have the second fail to bind at start: say so now."""
    listeners = [("control.listen", config.control.listen)]
    if config.api.enabled:
        listeners.append(("api.listen", config.api.listen))
    if config.cdr.feed_listen:
        listeners.append(("cdr.feed_listen", config.cdr.feed_listen))
    if config.web.enabled:
        listeners.append(("web.listen", config.web.listen))
    if config.metrics.listen:
        listeners.append(("metrics.listen", config.metrics.listen))
    seen: list[tuple[str, str, str, int]] = []
    for key, text in listeners:
        host, port = parse_host_port(text, key)
        for other_key, other_text, other_host, other_port in seen:
            wildcard = {host, other_host} & {"0.0.0.0", "::", "[::]"}
            if port == other_port and (host == other_host or wildcard):
                raise ConfigError(f"{key}: {text!r} is also {other_key} ({other_text})")
        seen.append((key, text, host, port))
