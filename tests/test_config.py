"""Config loading and validation: every error names the offending key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from bridge import config as config_module
from bridge.config import Config, ConfigError, expand_numbers, from_dict, load, parse_host_port, parse_port_range

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_valid_and_documented() -> None:
    config = from_dict({})
    assert config.node.name == "bridge-a"
    assert config.numbering.default_country == "US"
    assert config.conference.hysteresis_s == 120
    assert config.conference.callback_retries == 3
    assert config.conference.max_adhoc == 10
    assert config.conference.max_ics_per_subscriber == 30
    assert config.database_url == "sqlite:///" + str(Path(".") / "var" / "bridge.db")


def _sections() -> list[type[Any]]:
    hints = typing.get_type_hints(Config)
    sections: list[type[Any]] = []
    for f in dataclasses.fields(Config):
        hint = hints[f.name]
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        if dataclasses.is_dataclass(inner):
            sections.append(typing.cast(type[Any], inner))
    return sections


def test_every_field_has_a_docstring() -> None:
    """The README reference is generated from these; a field without a docstring is a gap in it."""
    from bridge.configdoc import field_docs

    for section in _sections():
        docs = field_docs(section)
        missing = [f.name for f in dataclasses.fields(section) if not docs.get(f.name)]
        assert missing == [], f"{section.__name__}: fields without a docstring: {missing}"


def test_sample_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(REPO / "etc" / "bridge.toml")
    assert config.base_dir == str(REPO)
    assert config.data_path == REPO / "var"
    assert len(expand_numbers(config.dnis.pool, "dnis.pool")) == 30
    monkeypatch.setenv("BRIDGE_CONFIG", str(REPO / "etc" / "bridge.toml"))
    assert load() == config


def test_load_reports_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nname = 1")
    with pytest.raises(ConfigError, match=str(bad)):
        load(bad)


def test_relative_data_dir_resolves_against_the_config_parent_parent(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text('[node]\ndata_dir = "state"\n')
    config = load(path)
    assert config.data_path == tmp_path / "state"
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"
    assert from_dict({"database": {"url": "postgresql://x/y"}}).database_url == "postgresql://x/y"


def test_feed_defaults_to_loopback_with_a_connection_limit() -> None:
    cdr = from_dict({}).cdr
    assert (cdr.feed_listen, cdr.feed_max_clients) == ("127.0.0.1:8282", 8)
    assert (cdr.feed_tls_cert, cdr.feed_tls_key, cdr.feed_client_ca) == ("", "", "")


def test_config_paths_resolve_against_the_base_dir(tmp_path: Path) -> None:
    config = from_dict({}, base_dir=str(tmp_path))
    assert config.resolve("etc/feed.pem") == tmp_path / "etc" / "feed.pem"
    assert config.resolve("/abs/feed.pem") == Path("/abs/feed.pem")


def test_numbers_without_quotes_become_strings() -> None:
    config = from_dict({"dnis": {"common": 15550100}, "room": [{"number": 1001, "name": "R", "pin": 1234}]})
    assert config.dnis.common == "15550100"
    assert config.room[0].pin == "1234"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"nodes": {}}, "nodes: unknown key"),
        ({"node": {"nmae": "x"}}, "node.nmae: unknown key"),
        ({"node": "x"}, "node: expected a table"),
        ({"node": {"name": ""}}, "node.name: must not be empty"),
        ({"node": {"name": 5.5}}, None),  # numbers become strings: not an error
        ({"numbering": {"default_country": "XX"}}, "numbering.default_country: unknown region 'XX'"),
        ({"smpp": {"port": "2775"}}, "smpp.port: expected an integer"),
        ({"smpp": {"port": 0}}, "smpp.port: 0 is not a port"),
        ({"smpp": {"password": "123456789"}}, "smpp.password: at most 8 characters"),
        ({"smpp": {"system_id": "x" * 16}}, "smpp.system_id: at most 15 characters"),
        ({"smpp": {"short_codes": []}}, "smpp.short_codes: at least one short code"),
        ({"smpp": {"short_codes": "2663"}}, "smpp.short_codes: expected a list"),
        ({"smpp": {"tps": 0}}, "smpp.tps: must be positive"),
        ({"smpp": {"enabled": "yes"}}, "smpp.enabled: expected true or false"),
        ({"smpp": {"bind_mode": "tx"}}, "smpp.bind_mode: 'tx' is not one of"),
        ({"sip": {"listen": "localhost"}}, "sip.listen: expected 'host:port'"),
        ({"sip": {"listen": "example.org:5060"}}, "sip.listen: 'example.org' is not an IP address"),
        ({"sip": {"rtp_ports": "20000-10000"}}, "sip.rtp_ports: range must lie within"),
        ({"sip": {"rtp_ports": "abc"}}, "sip.rtp_ports: expected 'low-high'"),
        ({"trunk_group": [{"kind": "sip"}]}, "trunk_group[0].name: required key missing"),
        ({"trunk_group": [{"name": "a"}]}, "trunk_group[0].gateways: at least one gateway"),
        ({"trunk_group": [{"name": "a", "gateways": ["x"]}]}, "trunk_group[0].gateways[0]: expected 'host:port'"),
        ({"trunk_group": [{"name": "a", "kind": "t1", "gateways": ["1.2.3.4:5060"]}]}, "trunk_group[0].kind"),
        (
            {"trunk_group": [{"name": "a", "kind": "e1", "gateways": ["1.2.3.4:5060"]}]},
            "trunk_group[0].spans: an e1 trunk group needs spans >= 1",
        ),
        (
            {"trunk_group": [{"name": "a", "gateways": ["1.2.3.4:5"]}, {"name": "a", "gateways": ["1.2.3.4:6"]}]},
            "trunk_group[1].name: duplicate trunk group 'a'",
        ),
        ({"dnis": {"pool": ["100-1"]}}, "dnis.pool[0]: bad range"),
        ({"dnis": {"pool": ["100-1000"]}}, "dnis.pool[0]: bad range"),
        ({"dnis": {"pool": ["5550101", "5550101"]}}, "dnis.pool: duplicate numbers"),
        ({"dnis": {"common": "5550101", "pool": ["5550101"]}}, "dnis.pool: the common number must not be in the pool"),
        ({"conference": {"pin_digits": 8}}, "conference.pin_digits: must be 4..7"),
        ({"conference": {"pin_digits": 3}}, "conference.pin_digits: must be 4..7"),
        ({"conference": {"max_ics_per_subscriber": 31}}, "conference.max_ics_per_subscriber: must be 1..30"),
        ({"conference": {"hysteresis_s": 0}}, "conference.hysteresis_s: must be positive"),
        ({"conference": {"max_participants": 1}}, "conference.max_participants: must be at least 2"),
        ({"conference": {"max_adhoc": -1}}, "conference.max_adhoc: must be at least 0"),
        ({"web": {"listen": "8443"}}, "web.listen: expected 'host:port'"),
        ({"web": {"tls_cert": "a.pem"}}, "web.tls_key: give both"),
        ({"control": {"listen": "0.0.0.0:8181"}}, "control.listen: the control API must listen on loopback"),
        ({"cdr": {"feed_listen": "0.0.0.0:8282"}}, "cdr.feed_listen: '0.0.0.0:8282' is not loopback"),
        ({"cdr": {"feed_listen": "192.0.2.7:8282"}}, "cdr.feed_listen: '192.0.2.7:8282' is not loopback"),
        ({"cdr": {"feed_listen": "billing.example:8282"}}, "cdr.feed_listen: 'billing.example' is not an IP"),
        ({"cdr": {"feed_tls_cert": "f.pem"}}, "cdr.feed_tls_key: mutual TLS needs all of"),
        ({"cdr": {"feed_tls_cert": "f.pem", "feed_tls_key": "f.key"}}, "cdr.feed_client_ca: mutual TLS needs"),
        ({"cdr": {"feed_client_ca": "ca.pem"}}, "cdr.feed_tls_cert: mutual TLS needs all of"),
        ({"cdr": {"feed_max_clients": 0}}, "cdr.feed_max_clients: must be at least 1"),
        ({"cdr": {"feed_listen": "127.0.0.1:8282", "feed_max_clients": 1}}, None),
        ({"cdr": {"feed_listen": "", "feed_max_clients": 1}}, None),
        (
            {"cdr": {"feed_listen": "0.0.0.0:8282", "feed_tls_cert": "c", "feed_tls_key": "k", "feed_client_ca": "a"}},
            None,
        ),
        ({"dnis": {"common": "notanumber"}}, "dnis.common: 'notanumber' is not a phone number"),
        ({"dnis": {"pool": ["abc"]}}, "dnis.pool[0]: 'abc' is not a phone number"),
        ({"dnis": {"pool": ["+15550101", "555 0102"]}}, "dnis.pool[1]: '555 0102' is not a phone number"),
        ({"dnis": {"pool": "abc"}}, "dnis.pool[0]: 'abc' is not a phone number"),
        ({"dnis": {"pool": 5}}, "dnis.pool: expected a list"),
        ({"sip": {"public_address": "not-an-ip"}}, "sip.public_address: 'not-an-ip' is not an IP address"),
        ({"sip": {"public_address": "0.0.0.0"}}, "sip.public_address: '0.0.0.0' is not an address peers can reach"),
        ({"smpp": {"host": "smsc .example.net"}}, "smpp.host: 'smsc .example.net' is not a host name or IP address"),
        ({"smpp": {"host": ""}}, "smpp.host: '' is not a host name or IP address"),
        ({"smpp": {"host": "-smsc.example"}}, "smpp.host: '-smsc.example' is not a host name"),
        ({"smpp": {"host": "smsc-1.example.net"}}, None),
        ({"smpp": {"host": "::1"}}, None),
        ({"web": {"listen": "127.0.0.1:8181"}}, "web.listen: '127.0.0.1:8181' is also control.listen"),
        ({"web": {"listen": "0.0.0.0:8181"}}, "web.listen: '0.0.0.0:8181' is also control.listen"),
        ({"web": {"listen": "127.0.0.1:8282"}}, "web.listen: '127.0.0.1:8282' is also cdr.feed_listen"),
        ({"cdr": {"feed_listen": "127.0.0.1:8181"}}, "cdr.feed_listen: '127.0.0.1:8181' is also control.listen"),
        ({"web": {"listen": "127.0.0.2:8181"}}, None),  # another loopback address, same port: no clash
        ({"web": {"enabled": False, "listen": "127.0.0.1:8181"}}, None),  # not started: not a clash
        ({"web": {"login_attempts": 0}}, "web.login_attempts: must be at least 1"),
        ({"web": {"lockout_s": -1}}, "web.lockout_s: must be positive"),
        ({"web": {"lockout_s": 0}}, "web.lockout_s: must be positive"),
        ({"database": {"url": "nosuchdb://x"}}, "database.url: unknown database 'nosuchdb'"),
        ({"database": {"url": "postgresql+nosuch://x"}}, "database.url: unknown database 'postgresql+nosuch'"),
        ({"database": {"url": "not a url"}}, "database.url: 'not a url' is not a database URL"),
        ({"database": {"url": "sqlite:////tmp/x.db"}}, None),
        ({"cdr": {"push_minute": 60}}, "cdr.push_minute: must be 0..59"),
        ({"cdr": {"retention_days": 0}}, "cdr.retention_days: must be at least 1"),
        ({"cdr": {"summary_time": "25:00"}}, "cdr.summary_time: expected HH:MM"),
        ({"cdr": {"targets": [{"name": "x", "kind": "scp"}]}}, "cdr.targets[0].kind: 'scp' is not one of"),
        ({"room": [{"number": "1", "name": "a"}, {"number": "1", "name": "b"}]}, "room[1].number: '1' is already used"),
        ({"room": [{"number": "1", "name": "a", "pin": "12345678"}]}, "room[0].pin: PINs are 1-7 digits"),
        ({"room": [{"number": "1"}]}, "room[0].name: required key missing"),
    ],
)
def test_validation_errors_name_the_key(raw: dict[str, Any], key: str | None) -> None:
    if key is None:
        from_dict(raw)
        return
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    assert str(info.value).startswith(key.split(":")[0]), str(info.value)
    assert key in str(info.value)


def test_a_bare_range_string_is_a_dnis_pool() -> None:
    """The config contract says "a range or list": ``pool = "A-B"`` is the one-range list."""
    config = from_dict({"dnis": {"pool": "8006791401-8006791430"}})
    assert config.dnis.pool == ["8006791401-8006791430"]
    assert len(expand_numbers(config.dnis.pool, "dnis.pool")) == 30
    assert from_dict({"dnis": {"pool": "+15550101"}}).dnis.pool == ["+15550101"]


def test_cli_reports_a_bad_database_url_in_one_line_naming_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    path = tmp_path / "etc" / "bridge.toml"
    path.parent.mkdir()
    path.write_text('[database]\nurl = "nosuchdb://x"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "db", "upgrade"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "database.url: unknown database 'nosuchdb'" in lines[0], result.output
    assert "Traceback" not in result.output


def test_helpers() -> None:
    assert parse_host_port("127.0.0.1:5060", "k") == ("127.0.0.1", 5060)
    assert parse_host_port("[::1]:5060", "k") == ("[::1]", 5060)
    assert parse_port_range("10000-10010", "k") == (10000, 10010)
    assert expand_numbers(["+15550101-+15550103", "99"], "k") == ["+15550101", "+15550102", "+15550103", "99"]
    assert expand_numbers(["0100-0102"], "k") == ["0100", "0101", "0102"]
    assert issubclass(config_module.ConfigError, ValueError)


def test_config_reference_is_up_to_date() -> None:
    from bridge.configdoc import BEGIN, END, TARGET, reference

    page = TARGET.read_text(encoding="utf-8")
    block = page[page.index(BEGIN) + len(BEGIN) : page.index(END)]
    assert block == "\n" + reference(), "docs/reference/config.md is stale: make docs-gen"


# --- one validator per section: every key's error names that key (issue 14 item 6) ------------------

# Per section: a valid base (list sections need their required keys) and, for EVERY key, values that must be
# refused with an error starting "<section>.<key>:". Keys without a rule of their own get a wrong type, which
# the loader refuses the same way. A key added to a section without an entry here fails the test.
LIST_BASES: dict[str, dict[str, Any]] = {
    "trunk_group": {"name": "a", "gateways": ["192.0.2.1:5060"]},
    "room": {"number": "1001", "name": "R"},
    "cdr.targets": {"name": "t", "kind": "ftp"},
}
SFTP = {"kind": "sftp", "user": "u", "key_file": "k", "known_hosts": "h"}
BAD: dict[str, dict[str, list[dict[str, Any]]]] = {
    "node": {"name": [{"name": ""}], "data_dir": [{"data_dir": []}]},
    "database": {"url": [{"url": "nosuchdb://x"}, {"url": "::"}]},
    "numbering": {"default_country": [{"default_country": "XX"}]},
    "smpp": {
        "enabled": [{"enabled": "yes"}],
        "host": [{"host": "a b"}],
        "port": [{"port": 0}, {"port": 65536}],
        "system_id": [{"system_id": "x" * 16}],
        "password": [{"password": "x" * 9}],
        "system_type": [{"system_type": "x" * 13}],
        "short_codes": [{"short_codes": []}, {"short_codes": ["26 63"]}],
        "bind_mode": [{"bind_mode": "tx"}],
        "enquire_link_s": [{"enquire_link_s": 0}],
        "response_timeout_s": [{"response_timeout_s": 0}],
        "reconnect_min_s": [{"reconnect_min_s": 0}],
        "reconnect_max_s": [{"reconnect_max_s": 0}, {"reconnect_min_s": 5, "reconnect_max_s": 1}],
        "window": [{"window": 0}],
        "tps": [{"tps": 0}],
        "reassembly_timeout_s": [{"reassembly_timeout_s": 0}],
        "dedup_window_s": [{"dedup_window_s": 0}],
        "queue_poll_s": [{"queue_poll_s": 0}],
        "retry_min_s": [{"retry_min_s": 0}],
        "retry_max_s": [{"retry_max_s": 0}, {"retry_max_s": 0.5}],  # below retry_min_s (1 s)
        "max_attempts": [{"max_attempts": 0}],
        "registered_delivery": [{"registered_delivery": 1}],
    },
    "sip": {
        "enabled": [{"enabled": "yes"}],
        "listen": [{"listen": "localhost"}, {"listen": "example.org:5060"}],
        "public_address": [{"public_address": "x"}, {"public_address": "::"}],
        "rtp_ports": [{"rtp_ports": "abc"}, {"rtp_ports": "20000-10000"}],
        "antiflood_requests": [{"antiflood_requests": 0}],
        "antiflood_window_s": [{"antiflood_window_s": 0}],
        "antiflood_gateways": [{"antiflood_gateways": "no"}],
        "rtp_timeout_s": [{"rtp_timeout_s": 0}],
        "options_interval_s": [{"options_interval_s": 0}],
        "user_agent": [{"user_agent": ""}],
        "media_path": [{"media_path": "fast"}],
        "media_priority": [{"media_priority": -1}, {"media_priority": 100}],
        "invite_timeout_s": [{"invite_timeout_s": 0}],
    },
    "trunk_group": {
        "name": [{"name": ""}],
        "kind": [{"kind": "t1"}],
        "gateways": [{"gateways": []}, {"gateways": ["x"]}],
        "username": [{"username": []}],
        "password": [{"password": []}],
        "role": [{"role": "backup"}],
        "spans": [{"kind": "e1", "spans": 0}],
        "channels_per_span": [{"kind": "e1", "spans": 1, "channels_per_span": 0}],
        "inband_dtmf": [{"inband_dtmf": "yes"}],
        "calls_per_second": [{"calls_per_second": 0}],
    },
    "dnis": {
        "common": [{"common": "x"}, {"common": "+1 555"}],
        "pool": [{"pool": ["abc"]}, {"pool": ["5550101", "5550101"]}, {"pool": ["100-1"]}, {"pool": ["+15550100"]}],
        "digit_timeout_s": [{"digit_timeout_s": 0}],
        "first_digit_timeout_s": [{"first_digit_timeout_s": 0}],
        "throttle_failures": [{"throttle_failures": 0}],
        "throttle_window_s": [{"throttle_window_s": 0}],
        "throttle_block_s": [{"throttle_block_s": 0}],
    },
    "conference": {
        "hysteresis_s": [{"hysteresis_s": 0}],
        "callback_retries": [{"callback_retries": -1}],
        "callback_delay_s": [{"callback_delay_s": -1}],
        "ring_timeout_s": [{"ring_timeout_s": 0}],
        "max_participants": [{"max_participants": 1}],
        "max_adhoc": [{"max_adhoc": -1}],
        "max_ics_per_subscriber": [{"max_ics_per_subscriber": 0}, {"max_ics_per_subscriber": 31}],
        "pin_digits": [{"pin_digits": 3}, {"pin_digits": 8}],
        "pin_attempts": [{"pin_attempts": 0}],
        "participant_sms": [{"participant_sms": "no"}],
    },
    "web": {
        "enabled": [{"enabled": "yes"}],
        "listen": [{"listen": "8443"}, {"listen": "127.0.0.1:8181"}],
        "tls_cert": [{"tls_key": "k.pem"}],
        "tls_key": [{"tls_cert": "c.pem"}],
        "secret_key": [{"secret_key": []}],
        "login_attempts": [{"login_attempts": 0}],
        "lockout_s": [{"lockout_s": 0}],
    },
    "control": {"listen": [{"listen": "0.0.0.0:8181"}, {"listen": "x"}], "token": [{"token": []}]},
    "cdr": {
        "push_enabled": [{"push_enabled": "yes"}],
        "push_minute": [{"push_minute": 60}, {"push_minute": -1}],
        "retention_days": [{"retention_days": 0}],
        "summary_time": [{"summary_time": "25:00"}, {"summary_time": "2am"}],
        "feed_listen": [{"feed_listen": "0.0.0.0:8282"}, {"feed_listen": "8282"}],
        "feed_tls_cert": [{"feed_tls_key": "k", "feed_client_ca": "ca"}],
        "feed_tls_key": [{"feed_tls_cert": "c", "feed_client_ca": "ca"}],
        "feed_client_ca": [{"feed_tls_cert": "c", "feed_tls_key": "k"}],
        "feed_max_clients": [{"feed_max_clients": 0}],
        "alert_after_s": [{"alert_after_s": 0}],
        "targets": [{"targets": "t"}],
        "retry_min_s": [{"retry_min_s": 0}],
        "retry_max_s": [{"retry_max_s": 0}, {"retry_max_s": 30}],  # below retry_min_s (60 s)
        "timeout_s": [{"timeout_s": 0}],
    },
    "cdr.targets": {
        "name": [{"name": ""}],
        "kind": [{"kind": "scp"}],
        "host": [{"host": "a b"}, {"host": ""}],
        "port": [{"port": -1}, {"port": 65536}],
        "user": [{**SFTP, "user": ""}],
        "password": [{"password": []}],
        "key_file": [{**SFTP, "key_file": ""}],
        "known_hosts": [{**SFTP, "known_hosts": ""}],
        "path": [{"path": ""}],
        "purpose": [{"purpose": "bills"}],
        "ca_file": [{"ca_file": []}],
    },
    "alerts": {
        "smtp_host": [{"smtp_host": "a b"}],
        "smtp_port": [{"smtp_port": 0}],
        "sender": [{"sender": "bridge"}],
        "recipients": [{"recipients": ["noc"]}, {"recipients": "noc@example.net"}],
    },
    "log": {
        "format": [{"format": "xml"}],
        "level": [{"level": "loud"}],
        "sip_trace_trunks": [{"sip_trace_trunks": ["nowhere"]}, {"sip_trace_trunks": "nowhere"}],
    },
    "metrics": {
        "listen": [{"listen": "nowhere"}, {"listen": "127.0.0.1:8181"}],  # the control API's port
        "smpp_unbound_alarm_s": [{"smpp_unbound_alarm_s": 0}],
        "cdr_behind_alarm_s": [{"cdr_behind_alarm_s": -1}],
        "disk_alarm_percent": [{"disk_alarm_percent": 100}, {"disk_alarm_percent": 0}],
        "tick_overrun_alarm": [{"tick_overrun_alarm": 0}],
        "ha_peer_lost_alarm_s": [{"ha_peer_lost_alarm_s": 0}],
    },
    "room": {
        "number": [{"number": "x"}, {"number": "+15550100"}],  # the sample's dnis.common below
        "name": [{"name": ""}],
        "pin": [{"pin": "12345678"}, {"pin": "12a"}],
        "max_members": [{"max_members": -1}, {"max_members": 101}],  # above conference.max_participants
        "moderator_pin": [{"moderator_pin": "x"}, {"pin": "1234", "moderator_pin": "1234"}],
    },
    "api": {
        "enabled": [{"enabled": "yes"}],
        "listen": [{"listen": "nowhere"}],
        "tls_cert": [{"tls_key": "k.pem"}],
        "tls_key": [{"tls_cert": "c.pem"}],
        "client_ca": [{"client_ca": ["ca.pem"]}],
        "allowed_subjects": [{"allowed_subjects": [" "]}, {"allowed_subjects": "CN=x"}],
        "max_document_bytes": [{"max_document_bytes": 10}, {"max_document_bytes": 11 * 1024 * 1024}],
        "max_connections": [{"max_connections": 0}],
        "handshake_timeout_s": [{"handshake_timeout_s": 0}],
        "rest_rate_per_s": [{"rest_rate_per_s": 0}],
        "rest_burst": [{"rest_burst": 0}],
    },
}


HA_GOOD: dict[str, Any] = {
    "enabled": True, "peer_node_id": "b", "local_addresses": ["10.0.0.1"], "peer_addresses": ["10.0.0.2"],
    "interface": "eth0", "vip": "10.0.0.100",
}  # fmt: skip
PG = {"pg_data": "/var/lib/postgresql/15/main", "pg_local": "host=/run/postgresql", "pg_peer": "host=10.0.0.2"}
BAD["ha"] = {
    key: [{**HA_GOOD, **case} for case in cases]
    for key, cases in {
        "enabled": [{"enabled": "yes"}],
        "node_id": [{"node_id": "x" * 65}],
        "peer_node_id": [{"peer_node_id": ""}, {"peer_node_id": "bridge-a"}],
        "local_addresses": [{"local_addresses": []}, {"local_addresses": ["x"], "peer_addresses": ["10.0.0.2"]}],
        "peer_addresses": [{"peer_addresses": []}, {"peer_addresses": ["::1"]}],
        "key_file": [{"key_file": []}],
        "key_env": [{"key_env": "1 bad"}],
        "interface": [{"interface": ""}],
        "vip": [{"vip": "10.0.0"}],
        "vip_prefix": [{"vip_prefix": 0}, {"vip_prefix": 33}],
        "port": [{"port": 0}],
        "interval_s": [{"interval_s": 0.001}],
        "miss_count": [{"miss_count": 1}],
        "witness": [{"witness": "gateway"}],
        "witness_interval_s": [{"witness_interval_s": 0}],
        "witness_timeout_s": [{"witness_timeout_s": 0.5}],
        "garp_count": [{"garp_count": 0}],
        "garp_interval_s": [{"garp_interval_s": 0}],
        "realtime_priority": [{"realtime_priority": 100}],
        "pg_data": [{**PG, "pg_data": "relative/dir"}],
        "pg_bindir": [{**PG, "pg_bindir": ""}],
        "pg_user": [{**PG, "pg_user": " "}],
        "pg_local": [{**PG, "pg_local": "localhost"}],
        "pg_peer": [{**PG, "pg_peer": ""}],
    }.items()
}
BAD["billing"] = {
    "enabled": [{"enabled": "yes"}],
    "default_plan_csv": [{"default_plan_csv": []}],
    "low_balance_threshold": [{"low_balance_threshold": "abc"}, {"low_balance_threshold": "-1"}],
    "warn_before_s": [{"warn_before_s": -1}],
    "home_country_codes": [{"home_country_codes": ["4x"]}, {"home_country_codes": ["1234"]}],
    "company_max_legs": [{"company_max_legs": -1}],
    "subscriber_max_legs": [{"subscriber_max_legs": -1}],
    "legs_per_hour": [{"legs_per_hour": -1}],
    "deny_satellite": [{"deny_satellite": "no"}],
}


def _section_class(section: str) -> type[Any]:
    cls: Any = Config
    for part in section.split("."):
        hint = typing.get_type_hints(cls)[part]
        cls = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
    return typing.cast(type[Any], cls)


def _raw(section: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The config dict with ``overrides`` in ``section``, and the key prefix its errors carry."""
    raw: dict[str, Any] = {"dnis": {"common": "+15550100"}}
    if section == "cdr.targets":
        return {**raw, "cdr": {"targets": [{**LIST_BASES[section], **overrides}]}}, "cdr.targets[0]"
    if section in LIST_BASES:
        return {**raw, section: [{**LIST_BASES[section], **overrides}]}, f"{section}[0]"
    if section == "dnis":
        return {section: {**raw["dnis"], **overrides}}, section
    return {**raw, section: overrides}, section


def test_every_section_and_key_has_a_bad_value() -> None:
    sections = {s.removeprefix("[").strip("[]") for s in _section_names()}
    assert sections == set(BAD)
    for section, keys in BAD.items():
        assert set(keys) == {f.name for f in dataclasses.fields(_section_class(section))}, section


def _section_names() -> list[str]:
    names = [f.name for f in dataclasses.fields(Config) if f.name != "base_dir"]
    return [*names, "cdr.targets"]


@pytest.mark.parametrize("section", sorted(BAD))
def test_each_section_names_the_wrong_key(section: str) -> None:
    assert from_dict(_raw(section, {})[0])  # the base is valid
    for key, cases in BAD[section].items():
        for overrides in cases:
            raw, prefix = _raw(section, overrides)
            with pytest.raises(ConfigError) as info:
                from_dict(raw)
            named = (f"{prefix}.{key}: ", f"{prefix}.{key}[")  # a list key may name the bad item
            assert str(info.value).startswith(named), (overrides, str(info.value))
