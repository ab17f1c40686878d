"""``bridge backup`` / ``bridge restore``: one tar file with the database and the data directory.

The database is copied consistently while the engine runs: SQLite through its online backup API
(``sqlite3.Connection.backup``: a snapshot of the committed state, WAL included, writers are not blocked for
long), PostgreSQL with ``pg_dump -Fc`` (one transaction snapshot). The data directory goes in as it is
(recordings, the generated TLS material, the control token and the portal's secret key, the CDR spool), except
the live SQLite files, which the snapshot replaces. A ``manifest.json`` records the row count of every table;
:func:`restore` checks the restored database against it.

Restore is meant for an empty node: it refuses to overwrite a database that has tables, or files in the data
directory, unless ``force``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func as sql_func
from sqlalchemy import inspect, make_url, select, table

from bridge.config import Config
from bridge.db.session import make_engine

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/bridge.sqlite3"
PG_MEMBER = "database/bridge.pgdump"
DATA_PREFIX = "data"
SKIPPED_SUFFIXES = (".pid", ".sock")


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why."""


@dataclass(frozen=True)
class Summary:
    path: Path
    database: str
    tables: dict[str, int]
    files: int


def row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            return {name: int(connection.scalar(select(sql_func.count()).select_from(table(name))) or 0)
                    for name in names}  # fmt: skip
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg2://u:p@h:5432/db`` -> ``postgresql://u:p@h:5432/db`` (what pg_dump reads)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if path is None:
        raise BackupError(f"{name} is not installed (PostgreSQL client tools)")
    return path


def _data_files(config: Config, exclude: set[Path]) -> Iterator[Path]:
    root = config.data_path
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in SKIPPED_SUFFIXES:
            continue
        resolved = path.resolve()
        if resolved in exclude or any(str(resolved).startswith(str(e) + "-") for e in exclude):  # -wal, -shm
            continue
        yield path


def backup(config: Config, out: Path) -> Summary:
    """Write the tar file ``out`` (gzip); returns what went in."""
    url = config.database_url
    out = out.resolve()
    sqlite_path = _sqlite_path(url)
    with tempfile.TemporaryDirectory(prefix="bridge-backup-") as scratch:
        dump = Path(scratch) / "database"
        if sqlite_path is not None:
            if not sqlite_path.exists():
                raise BackupError(f"no database at {sqlite_path}")
            with sqlite3.connect(sqlite_path) as source, sqlite3.connect(dump) as target:
                source.backup(target)
            source.close()
            target.close()
            counts = row_counts(f"sqlite:///{dump}")
            member, kind = SQLITE_MEMBER, "sqlite"
        else:
            counts = row_counts(url)
            run = subprocess.run([_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(dump), _libpq_url(url)],
                                 capture_output=True, text=True)  # fmt: skip
            if run.returncode != 0:
                raise BackupError(f"pg_dump failed: {run.stderr.strip()}")
            member, kind = PG_MEMBER, "postgresql"
        exclude = {out} | ({sqlite_path.resolve()} if sqlite_path is not None else set())
        files = list(_data_files(config, exclude))
        manifest = {
            "format": FORMAT, "node": config.node.name, "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "database": kind, "tables": counts,
            "files": [str(path.relative_to(config.data_path)) for path in files],
        }  # fmt: skip
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            tar.add(dump, arcname=member)
            for path in files:
                tar.add(path, arcname=f"{DATA_PREFIX}/{path.relative_to(config.data_path)}")
        partial.replace(out)
    return Summary(out, kind, counts, len(files))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(dt.datetime.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


def read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = tar.extractfile(MANIFEST)
    except KeyError as exc:
        raise BackupError("not a bridge backup (no manifest.json)") from exc
    if member is None:
        raise BackupError("not a bridge backup (manifest.json is not a file)")
    manifest: dict[str, Any] = json.load(member)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    return manifest


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise BackupError(f"refusing the member {name!r} (outside the data directory)")
    return path


def restore(config: Config, source: Path, *, force: bool = False) -> Summary:
    """Restore ``source`` into the configured database and data directory; checks every table's row count."""
    url = config.database_url
    with tarfile.open(source, "r:*") as tar:
        manifest = read_manifest(tar)
        _refuse_non_empty(config, url, force)
        data = config.data_path
        data.mkdir(parents=True, exist_ok=True)
        members = [m for m in tar.getmembers() if m.name.startswith(f"{DATA_PREFIX}/") and m.isfile()]
        for member in members:
            relative = _safe_name(member.name.removeprefix(f"{DATA_PREFIX}/"))
            target = data / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file
            with open(target, "wb") as out:
                shutil.copyfileobj(extracted, out)
            target.chmod(member.mode & 0o777)
        _restore_database(tar, manifest, url)
    counts = row_counts(url)
    expected = {k: int(v) for k, v in manifest["tables"].items()}
    if counts != expected:
        differ = sorted(k for k in set(counts) | set(expected) if counts.get(k) != expected.get(k))
        raise BackupError(f"restored row counts differ from the backup's in: {', '.join(differ)}")
    return Summary(source, str(manifest["database"]), counts, len(members))


def _refuse_non_empty(config: Config, url: str, force: bool) -> None:
    if force:
        return
    sqlite_path = _sqlite_path(url)
    if sqlite_path is None or sqlite_path.exists():
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                tables = inspect(connection).get_table_names()
        finally:
            engine.dispose()
        if tables:
            raise BackupError(f"the database {make_url(url).render_as_string()} already has tables; "
                              "restore into an empty node (or --force)")  # fmt: skip
    data = config.data_path
    if data.is_dir() and any(p.is_file() and p.resolve() != (sqlite_path or Path()).resolve() for p in data.rglob("*")):
        raise BackupError(f"the data directory {data} is not empty; restore into an empty node (or --force)")


def _restore_database(tar: tarfile.TarFile, manifest: dict[str, Any], url: str) -> None:
    kind = manifest["database"]
    sqlite_path = _sqlite_path(url)
    if (kind == "sqlite") != (sqlite_path is not None):
        raise BackupError(f"the backup holds a {kind} database, the config names {make_url(url).get_backend_name()}")
    member = tar.extractfile(SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER)
    if member is None:
        raise BackupError("the backup has no database")
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        partial = sqlite_path.with_name(sqlite_path.name + ".restoring")
        with open(partial, "wb") as out:
            shutil.copyfileobj(member, out)
        for suffix in ("-wal", "-shm"):
            Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
        partial.replace(sqlite_path)
        return
    with tempfile.NamedTemporaryFile(prefix="bridge-restore-", suffix=".pgdump") as dump:
        shutil.copyfileobj(member, dump)
        dump.flush()
        run = subprocess.run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "-d", _libpq_url(url),
                              dump.name], capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        raise BackupError(f"pg_restore failed: {run.stderr.strip()}")
