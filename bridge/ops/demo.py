"""``bridge demo run`` (``make demo``): the appliance on its configuration, with local stand-ins for the operator's
network, on loopback, and an Instant Conference a newcomer can watch.

1. The stand-ins start on free ports (:mod:`bridge.ops.demo_peers`): the SMSC simulator and one SIPp UAS for
   every phone behind the trunk (it rings, answers and talks: tone bursts).
2. A demo config is written (``<demo dir>/etc/bridge.toml``): the given configuration with its trunk groups
   replaced by one that leads to the SIPp phones, the SMSC pointed at the simulator, no CDR targets, and its own
   data directory. The appliance then runs its production code: :class:`bridge.engine.Engine` with the portal as
   its child, the demo data set (``bridge demo load``) in its database.
3. The portal URL and logins are printed; the simulator texts ``IC1`` from the demo subscriber's mobile; the
   bridge dials the subscriber and the group; when the four legs are connected the live view's URL is printed.
4. After ``duration_s`` (or Ctrl-C) the conference is ended and its CDRs are printed from the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge import config as config_module
from bridge.config import Config
from bridge.ops.demo_peers import Phones, SmscSimulator

DEMO_TRUNK = "demo-phones"
LEGS = 4
"""The subscriber and the three members of the demo group."""
SMSC_LOGIN = ("bridge", "demo")
"""The bind the demo's SMSC simulator accepts."""
PATH_KEYS = {"web": ("tls_cert", "tls_key"), "cdr": ("feed_tls_cert", "feed_tls_key", "feed_client_ca")}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(raw: dict[str, Any]) -> str:
    """The config dict as TOML: tables, arrays of tables (one level of nesting, as the config has)."""
    lines: list[str] = []
    for section, body in raw.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{key} = {toml_value(value)}" for key, value in item.items()]
            continue
        lines.append(f"[{section}]")
        nested = {key: value for key, value in body.items() if isinstance(value, list) and value and
                  all(isinstance(v, dict) for v in value)}  # fmt: skip
        lines += [f"{key} = {toml_value(value)}" for key, value in body.items() if key not in nested]
        for key, items in nested.items():
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def demo_overlay(config: Config, demo_dir: Path, *, trunk_port: int, smsc_port: int) -> dict[str, Any]:
    """The given configuration with the demo's trunk, SMSC and data directory (as a dict for :func:`to_toml`)."""
    raw = dataclasses.asdict(config)
    raw.pop("base_dir")
    for section, keys in PATH_KEYS.items():
        for key in keys:
            if raw[section][key]:
                raw[section][key] = str(config.resolve(raw[section][key]))
    raw["node"]["data_dir"] = str(demo_dir / "var")
    raw["database"]["url"] = ""
    system_id, password = SMSC_LOGIN
    raw["smpp"].update(enabled=True, host="127.0.0.1", port=smsc_port, system_id=system_id, password=password)
    raw["trunk_group"] = [{"name": DEMO_TRUNK, "kind": "sip", "gateways": [f"127.0.0.1:{trunk_port}"],
                           "calls_per_second": 20.0}]  # fmt: skip
    raw["cdr"].update(targets=[], push_enabled=False)
    raw["log"]["sip_trace_trunks"] = []
    raw["web"]["enabled"] = True
    raw["sip"]["enabled"] = True
    return {key: value for key, value in raw.items() if value != [] or key in ("trunk_group",)}


def prepare_database(config: Config) -> list[str]:
    """Migrate; load the demo data set into an empty database. Returns the demo's description lines."""
    from bridge.db import make_engine, make_session_factory, upgrade
    from bridge.demo import is_empty, load_demo

    upgrade(config.database_url)
    engine = make_engine(config.database_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            if is_empty(session):
                return list(load_demo(session, config).lines)
            return ["demo data already loaded"]
    finally:
        engine.dispose()


def cdr_lines(config: Config, run_id: int) -> list[str]:
    from bridge.db import make_engine, make_session_factory
    from bridge.db.models import Cdr

    engine = make_engine(config.database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.scalars(select(Cdr).where(Cdr.service_id == run_id).order_by(Cdr.id)).all()
            out = []
            for row in rows:
                seconds = 0.0
                if row.joined_at is not None and row.disconnected_at is not None:
                    seconds = (row.disconnected_at - row.joined_at).total_seconds()
                who = f"{row.role:<11} {row.destination or row.cli:<14} {row.direction:<3}"
                out.append(f"CDR {row.id}: {who} {seconds:5.1f} s  cause={row.cause!r} codec={row.codec} "
                           f"call_id={row.call_id}")  # fmt: skip
            return out
    finally:
        engine.dispose()


class Demo:
    """One demo run; ``say`` prints a line for the newcomer (the CLI passes ``click.echo``)."""

    def __init__(self, config: Config, demo_dir: Path, *, duration_s: float, say: Callable[[str], None]) -> None:
        self.base = config
        self.dir = demo_dir
        self.duration_s = duration_s
        self.say = say
        self._stop = asyncio.Event()

    async def run(self) -> int:
        from bridge.engine import Engine

        (self.dir / "peers").mkdir(parents=True, exist_ok=True)
        smsc = SmscSimulator(self.dir / "peers", system_id=SMSC_LOGIN[0], password=SMSC_LOGIN[1])
        phones: Phones | None = None
        engine: Engine | None = None
        try:
            phones = Phones(self.dir / "peers", talk_s=self.duration_s + 60)
            config_path = self.write_config(trunk_port=phones.port, smsc_port=smsc.port)
            config = config_module.load(config_path)
            for line in await asyncio.to_thread(prepare_database, config):
                self.say(line)
            base = ["--config", str(config_path)]
            engine = Engine(config, portal_args=[*base, "web"], api_args=[*base, "api", "serve"])
            self._signals()
            await engine.start()
            self.announce(config)
            run_id = await self.launch(engine, smsc, config)
            await self.watch(engine, run_id)
            engine.end(run_id)
            await asyncio.sleep(1.0)  # the BYEs and the CDR writes
            self.say("conference ended; its CDRs:")
            for line in await asyncio.to_thread(cdr_lines, config, run_id):
                self.say("  " + line)
            return 0
        finally:
            if engine is not None:
                await engine.stop()
            if phones is not None:
                phones.stop()
            smsc.stop()

    def write_config(self, *, trunk_port: int, smsc_port: int) -> Path:
        path = self.dir / "etc" / "bridge.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = demo_overlay(self.base, self.dir, trunk_port=trunk_port, smsc_port=smsc_port)
        path.write_text("# Written by `bridge demo run`: the demo's trunk, SMSC and data directory.\n" + to_toml(raw))
        return path

    def announce(self, config: Config) -> None:
        from bridge.demo import DEMO_ACCOUNTS

        self.say(f"portal: https://{config.web.listen} (self-signed certificate)")
        self.say("logins: " + ", ".join(f"{user} / {password}" for user, password, _role in DEMO_ACCOUNTS))
        if config.metrics.listen:
            self.say(f"metrics: http://{config.metrics.listen}/metrics")

    async def launch(self, engine: Any, smsc: SmscSimulator, config: Config) -> int:
        from bridge.demo import DEMO_MOBILE

        await self._until(lambda: engine.status()["smpp"].get("state") == "bound", 30, "the SMPP bind")
        self.say(f"SMSC: {DEMO_MOBILE} texts 'IC1' to {config.smpp.short_codes[0]}")
        await asyncio.to_thread(smsc.mo, DEMO_MOBILE, config.smpp.short_codes[0], "IC1")
        runs = await self._until(engine.conferences, 30, "the conference")
        run_id = int(runs[0]["run_id"])

        def connected() -> list[dict[str, Any]]:
            legs = [leg for leg in engine.conference(run_id)["legs"] if leg["status"] == "connected"]
            return legs if len(legs) >= LEGS else []

        legs = await self._until(connected, 45, f"{LEGS} legs connected")
        self.say(f"{len(legs)} legs connected: " + ", ".join(f"{leg['number']} ({leg['role']})" for leg in legs))
        self.say(f"live view: https://{config.web.listen}/live/{run_id}")
        return run_id

    async def watch(self, engine: Any, run_id: int) -> None:
        """Hold the conference for the duration (or until Ctrl-C), one status line every 5 s."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.duration_s
        while not self._stop.is_set() and (left := end - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), min(5.0, left))
            except TimeoutError:
                legs = engine.conference(run_id)["legs"]
                talking = [leg["number"] for leg in legs if leg["talking"]]
                up = sum(1 for leg in legs if leg["status"] == "connected")
                self.say(f"{up} legs connected, talking now: {', '.join(talking) or 'nobody'}")

    async def _until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self._stop.is_set():
            value = predicate()
            if value:
                return value
            if loop.time() > end:
                raise RuntimeError(f"demo: timed out waiting for {what} (logs under {self.dir})")
            await asyncio.sleep(0.2)
        raise RuntimeError("demo: interrupted")

    def _signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
