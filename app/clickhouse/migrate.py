"""Versioned ClickHouse migrations: `migrations/NNNN_name.sql`, applied once each, in order.

Applied versions are recorded with a checksum in `schema_migrations`; an applied file that was later
edited is an error (write a new migration instead), so every environment has the same schema.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The migration's statements, split on semicolons that end a line."""
        without_comments = "\n".join(line for line in self.sql.splitlines() if not line.strip().startswith("--"))
        return [part.strip() for part in re.split(r";\s*(?:\n|$)", without_comments) if part.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in the directory, by version."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return migrations


SCHEMA_MIGRATIONS_COLUMNS = (
    "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
)
RECORD_SQL = "INSERT INTO schema_migrations (version, name, checksum) VALUES ({v:UInt32}, {n:String}, {c:String})"


def pending_migrations(applied: Mapping[int, str], migrations: list[Migration]) -> list[Migration]:
    """The migrations not in `applied` (version -> checksum of the file when it was applied), in order; an applied
    file whose checksum has changed since is an error."""
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise RuntimeError(
                f"migration {migration.version}_{migration.name} changed after it was applied; "
                "add a new migration instead"
            )
    return [migration for migration in migrations if migration.version not in applied]


def applied_versions(client: Client) -> dict[int, str]:
    """What `schema_migrations` records: version -> checksum."""
    rows = client.query("SELECT version, checksum FROM schema_migrations").result_rows
    return {int(row[0]): str(row[1]) for row in rows}


def record_applied(client: Client, migration: Migration) -> None:
    client.command(RECORD_SQL, parameters={"v": migration.version, "n": migration.name, "c": migration.checksum})


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations not yet applied; returns the versions applied now."""
    client.command(
        f"CREATE TABLE IF NOT EXISTS schema_migrations {SCHEMA_MIGRATIONS_COLUMNS} ENGINE = MergeTree ORDER BY version"
    )
    done = []
    for migration in pending_migrations(applied_versions(client), load_migrations(directory)):
        for statement in migration.statements():
            client.command(statement)
        record_applied(client, migration)
        log.info("applied ClickHouse migration %04d_%s", migration.version, migration.name)
        done.append(migration.version)
    return done
