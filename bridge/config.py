"""The appliance's configuration: dataclasses loaded from ``etc/bridge.toml``.

Files and the environment are read only by :func:`load` (called from the entry point); everything else
receives a :class:`Config`. Every field has a default and a docstring (:mod:`bridge.configschema`), so the
sample file only needs what differs. Validation (:mod:`bridge.configcheck`) names the offending key
(``sip.rtp_ports: ...``). Import every configuration name from here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from bridge.configcheck import (
    FEED_TLS_KEYS,
    expand_numbers,
    host_name,
    parse_host_port,
    parse_port_range,
    phone_number,
    validate,
)
from bridge.configschema import (
    AlertsConfig,
    CdrConfig,
    CdrTargetConfig,
    ConferenceConfig,
    Config,
    ConfigError,
    ControlConfig,
    DatabaseConfig,
    DnisConfig,
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

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "FEED_TLS_KEYS",
    "AlertsConfig",
    "CdrConfig",
    "CdrTargetConfig",
    "Config",
    "ConfigError",
    "ConferenceConfig",
    "ControlConfig",
    "DatabaseConfig",
    "DnisConfig",
    "LogConfig",
    "MetricsConfig",
    "NodeConfig",
    "NumberingConfig",
    "RoomConfig",
    "SipConfig",
    "SmppConfig",
    "TrunkGroupConfig",
    "WebConfig",
    "expand_numbers",
    "from_dict",
    "host_name",
    "load",
    "parse_host_port",
    "parse_port_range",
    "phone_number",
]

DEFAULT_CONFIG_PATH = Path("etc/bridge.toml")
CONFIG_ENV = "BRIDGE_CONFIG"


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
    validate(config)
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
