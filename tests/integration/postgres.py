"""A throw-away PostgreSQL cluster for the tests: initdb as the ``postgres`` user in a temporary directory, loopback
only, trust auth, fsync off, a free port; stopped and removed afterwards. Fails loudly when PostgreSQL is missing or
the tests do not run as root (the cluster runs as ``postgres``)."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bridge.db import make_engine


def tool(name: str) -> str:
    """``initdb``, ``pg_ctl``...: Debian's versioned binaries first, then PATH."""
    path = next((str(p) for p in sorted(pathlib.Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    path = path or shutil.which(name)
    if path is None:
        pytest.fail(f"PostgreSQL's {name} is missing: install postgresql (make deps)")
    return path


@contextmanager
def throwaway_cluster(prefix: str) -> Iterator[str]:
    """Yields ``postgresql+psycopg2://postgres@127.0.0.1:PORT`` (no database name) once the server accepts."""
    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL peer is started as the postgres user: run as root")
    initdb, pg_ctl = tool("initdb"), tool("pg_ctl")
    base = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(base, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = base / "data"

    def as_postgres(*args: str) -> None:
        subprocess.run(["su", "postgres", "-c", " ".join(args)], check=True, capture_output=True, timeout=60)

    as_postgres(initdb, "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "start",
                "-o", f"'-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off'")  # fmt: skip
    try:
        root = f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
        for _ in range(50):
            try:
                make_engine(f"{root}/postgres").connect().close()
                break
            except Exception:
                time.sleep(0.1)
        yield root
    finally:
        as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
