"""The systemd units in etc/systemd: ``systemd-analyze verify`` accepts them (ExecStart pointed at this checkout's
venv), ``systemd-analyze security`` rates the engine's exposure OK, and the unit keeps its promises: notify +
watchdog, restart on failure, unprivileged user with only the network capabilities. Fails if systemd-analyze is
missing (Debian's systemd package)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "etc" / "systemd"
VENV = Path(sys.executable).parent.parent


@pytest.fixture
def units(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        raise RuntimeError("systemd-analyze is missing: install systemd")
    for unit in UNITS.glob("bridge*.[st]*"):
        if unit.suffix in (".service", ".timer"):
            (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/bridge/.venv", str(VENV)))
    return tmp_path


def test_systemd_analyze_verify_accepts_every_unit(units: Path) -> None:
    names = sorted(p.name for p in units.iterdir())
    assert names == ["bridge-backup.service", "bridge-backup.timer", "bridge.service"]
    run = subprocess.run(["systemd-analyze", "verify", *(f"./{n}" for n in names)], cwd=units, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_engine_unit_exposure_is_rated_ok(units: Path) -> None:
    run = subprocess.run(["systemd-analyze", "security", "--offline=true", "./bridge.service"], cwd=units,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    match = re.search(r"Overall exposure level for bridge.service: ([0-9.]+) (\w+)", run.stdout)
    assert match, run.stdout[-2000:] + run.stderr
    assert float(match[1]) < 4.0 and match[2] == "OK", match[0]


def test_engine_unit_settings() -> None:
    text = (UNITS / "bridge.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["Type"] == "notify" and settings["WatchdogSec"] == "10s" and settings["Restart"] == "on-failure"
    assert settings["User"] == "bridge" and settings["NoNewPrivileges"] == "yes"
    caps = {"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert set(settings["AmbientCapabilities"].split()) == caps == set(settings["CapabilityBoundingSet"].split())
    assert settings["ProtectSystem"] == "strict" and settings["ReadWritePaths"] == "/var/lib/bridge"
    assert settings["PrivateTmp"] == "yes" and settings["StandardError"] == "journal"
    assert "u bridge " in (UNITS / "bridge.sysusers.conf").read_text()
