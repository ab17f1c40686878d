"""Uploads to the provider: ``rsync -e ssh``, SFTP (paramiko), FTP and FTPS (ftplib).

Every transport puts the file under a temporary name and renames it into place, so the provider never
reads half a file: SFTP and FTP upload ``<name>.part`` then rename; rsync does the same by design (it
writes ``.<name>.XXXXXX`` in the destination directory and renames it when complete; we never pass
``--inplace``). SSH transports check the server's host key strictly against the configured
known_hosts file and never prompt; an unknown or changed key raises :class:`HostKeyError` before any
byte of the file is sent. Every other failure raises :class:`DeliveryError`.
"""

from __future__ import annotations

import contextlib
import ftplib
import posixpath
import shlex
import ssl
import subprocess
from pathlib import Path
from typing import Protocol

import paramiko

from bridge.cdr import DeliveryError, HostKeyError
from bridge.config import CdrTargetConfig

PART_SUFFIX = ".part"


class Transport(Protocol):
    name: str

    def upload(self, local: Path, remote_name: str) -> None:
        """Put ``local`` as ``<target path>/<remote_name>``, atomically; raise DeliveryError on failure."""


def make_transport(target: CdrTargetConfig, *, timeout_s: float = 30.0) -> Transport:
    if target.kind == "rsync":
        return RsyncTransport(target, timeout_s=timeout_s)
    if target.kind == "sftp":
        return SftpTransport(target, timeout_s=timeout_s)
    return FtpTransport(target, timeout_s=timeout_s, tls=target.kind == "ftps")


def ssh_command(target: CdrTargetConfig, *, timeout_s: float = 30.0) -> list[str]:
    """The ``ssh`` command line rsync runs: our key only, strict host key from known_hosts, never prompt."""
    return [
        "ssh",
        "-p",
        str(target.port or 22),
        "-i",
        target.key_file,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={target.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        f"ConnectTimeout={max(1, int(timeout_s))}",
    ]


class RsyncTransport:
    def __init__(self, target: CdrTargetConfig, *, timeout_s: float = 30.0) -> None:
        self.name = target.name
        self.target = target
        self.timeout_s = timeout_s

    def upload(self, local: Path, remote_name: str) -> None:
        target = self.target
        remote_dir = target.path.rstrip("/") or "."
        destination = f"{target.user}@{target.host}:{remote_dir}/{remote_name}"
        command = [
            "rsync",
            "--protect-args",  # names reach the remote side verbatim, never through its shell
            "--times",
            "--chmod=F644",
            f"--timeout={max(1, int(self.timeout_s))}",
            "-e",
            shlex.join(ssh_command(target, timeout_s=self.timeout_s)),
            str(local),
            destination,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s * 4, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeliveryError(f"{self.name}: rsync failed: {exc}") from exc
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            if "Host key verification failed" in done.stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr:
                raise HostKeyError(f"{self.name}: host key refused ({message})")
            raise DeliveryError(f"{self.name}: rsync exit {done.returncode}: {message}")


class SftpTransport:
    def __init__(self, target: CdrTargetConfig, *, timeout_s: float = 30.0) -> None:
        self.name = target.name
        self.target = target
        self.timeout_s = timeout_s

    def upload(self, local: Path, remote_name: str) -> None:
        target = self.target
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(target.known_hosts)  # only these keys; no system or user files
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                target.host,
                port=target.port or 22,
                username=target.user,
                key_filename=target.key_file,
                look_for_keys=False,
                allow_agent=False,
                timeout=self.timeout_s,
                banner_timeout=self.timeout_s,
                auth_timeout=self.timeout_s,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.timeout_s)
            remote_dir = target.path.rstrip("/") or "."
            final = posixpath.join(remote_dir, remote_name)
            part = final + PART_SUFFIX
            sftp.put(str(local), part, confirm=True)
            try:
                sftp.posix_rename(part, final)  # atomic replace (posix-rename@openssh.com)
            except OSError:
                # a server without the extension: plain SFTP rename refuses to overwrite
                with contextlib.suppress(OSError):
                    sftp.remove(final)
                sftp.rename(part, final)
            sftp.close()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(f"{self.name}: host key does not match known_hosts ({exc})") from exc
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(f"{self.name}: host key not in known_hosts ({exc})") from exc
            raise DeliveryError(f"{self.name}: ssh: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise DeliveryError(f"{self.name}: sftp: {exc}") from exc
        finally:
            client.close()


class FtpTransport:
    def __init__(self, target: CdrTargetConfig, *, timeout_s: float = 30.0, tls: bool = False) -> None:
        self.name = target.name
        self.target = target
        self.timeout_s = timeout_s
        self.tls = tls

    def upload(self, local: Path, remote_name: str) -> None:
        target = self.target
        ftp: ftplib.FTP = (
            ftplib.FTP_TLS(context=ssl.create_default_context(cafile=target.ca_file or None))
            if self.tls
            else ftplib.FTP()
        )
        try:
            ftp.connect(target.host, target.port or 21, timeout=self.timeout_s)
            ftp.login(target.user, target.password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()  # encrypt the data channel too
            if target.path and target.path != ".":
                ftp.cwd(target.path)
            part = remote_name + PART_SUFFIX
            with local.open("rb") as f:
                ftp.storbinary(f"STOR {part}", f)
            try:
                ftp.rename(part, remote_name)
            except ftplib.error_perm:
                # some servers refuse to rename over an existing file (a re-push after a lost ledger write)
                ftp.delete(remote_name)
                ftp.rename(part, remote_name)
            ftp.quit()
        except (TimeoutError, ftplib.Error, OSError, EOFError) as exc:
            raise DeliveryError(f"{self.name}: ftp: {exc}") from exc
        finally:
            ftp.close()
