"""CDR transports without a server: the ssh command line, the choice of transport, how rsync's failures are told
apart (a stand-in ``rsync`` on PATH prints what the real one prints). The uploads themselves are proven against
real sshd, rsync and FTP servers in tests/integration/test_cdr_delivery.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bridge.cdr import DeliveryError, HostKeyError
from bridge.cdr.transports import FtpTransport, RsyncTransport, SftpTransport, make_transport, ssh_command
from bridge.config import CdrTargetConfig


def target(kind: str = "rsync", **overrides: object) -> CdrTargetConfig:
    values: dict[str, object] = {
        "name": "billing",
        "kind": kind,
        "user": "cdr",
        "key_file": "/keys/id",
        "known_hosts": "/keys/known_hosts",
        "path": "/in/",
    }
    values.update(overrides)
    return CdrTargetConfig(**values)  # type: ignore[arg-type]


def test_ssh_command_uses_our_key_only_and_strict_host_keys_without_prompting() -> None:
    command = ssh_command(target(port=2222), timeout_s=7.9)
    assert command[:5] == ["ssh", "-p", "2222", "-i", "/keys/id"]
    options = {command[i + 1] for i, word in enumerate(command) if word == "-o"}
    assert {
        "IdentitiesOnly=yes",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/keys/known_hosts",
        "GlobalKnownHostsFile=/dev/null",
        "ConnectTimeout=7",
    } <= options
    assert ssh_command(target())[2] == "22"  # port 0 means the default


@pytest.mark.parametrize(
    ("kind", "cls"), [("rsync", RsyncTransport), ("sftp", SftpTransport), ("ftp", FtpTransport), ("ftps", FtpTransport)]
)
def test_make_transport_by_kind(kind: str, cls: type) -> None:
    transport = make_transport(target(kind))
    assert isinstance(transport, cls)
    assert transport.name == "billing"
    if kind.startswith("ftp"):
        assert isinstance(transport, FtpTransport) and transport.tls == (kind == "ftps")


def fake_rsync(bin_dir: Path, *, stderr: str, code: int) -> Path:
    """An ``rsync`` that records its arguments and fails the way the real one does."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "rsync"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{bin_dir}/args"\nprintf "{stderr}" >&2\nexit {code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.fixture
def cdr_file(tmp_path: Path) -> Path:
    local = tmp_path / "node_2026120100.csv"
    local.write_text("a,b\n")
    return local


def with_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_rsync_arguments_protect_names_and_never_write_in_place(
    tmp_path: Path, cdr_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_path(monkeypatch, fake_rsync(tmp_path / "bin", stderr="", code=0))
    RsyncTransport(target()).upload(cdr_file, "node 2026120100.csv")
    args = (tmp_path / "bin" / "args").read_text().splitlines()
    assert "--protect-args" in args and "--inplace" not in args
    assert args[-2:] == [str(cdr_file), "cdr@127.0.0.1:/in/node 2026120100.csv"]


@pytest.mark.parametrize(
    "stderr", ["Host key verification failed.\\n", "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\\n"]
)
def test_rsync_host_key_refusal_is_a_host_key_error(
    tmp_path: Path, cdr_file: Path, monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    with_path(monkeypatch, fake_rsync(tmp_path / "bin", stderr=stderr, code=255))
    with pytest.raises(HostKeyError, match="billing: host key refused"):
        RsyncTransport(target()).upload(cdr_file, "x.csv")


def test_rsync_other_failure_is_a_delivery_error_naming_the_first_line(
    tmp_path: Path, cdr_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = "rsync: connection unexpectedly closed\\nmore\\n"
    with_path(monkeypatch, fake_rsync(tmp_path / "bin", stderr=stderr, code=12))
    with pytest.raises(DeliveryError, match="rsync exit 12: rsync: connection unexpectedly closed$") as caught:
        RsyncTransport(target()).upload(cdr_file, "x.csv")
    assert not isinstance(caught.value, HostKeyError)


def test_missing_rsync_binary_is_a_delivery_error(
    tmp_path: Path, cdr_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DeliveryError, match="rsync failed"):
        RsyncTransport(target()).upload(cdr_file, "x.csv")


def test_ftp_refused_connection_is_a_delivery_error(cdr_file: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError, match="billing: ftp:"):
        FtpTransport(target("ftp", port=port), timeout_s=5).upload(cdr_file, "x.csv")
