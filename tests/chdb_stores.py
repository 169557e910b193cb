"""One chDB directory holding a database per test store, keyscope's migrations applied to each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations


def chdb_databases(path: Path) -> Iterator[Callable[[str], Client]]:
    """For a fixture to yield from: new(name) opens a client on a new database of the chDB directory at `path`,
    migrations applied; every client is closed when the fixture ends."""
    opened = [clickhouse_client(f"chdb://{path}")]

    def new(name: str) -> Client:
        opened[0].command(f"CREATE DATABASE IF NOT EXISTS {name}")
        client = clickhouse_client(f"chdb://{path}", database=name)
        opened.append(client)
        apply_migrations(client)
        return client

    try:
        yield new
    finally:
        for client in reversed(opened):
            client.close()
