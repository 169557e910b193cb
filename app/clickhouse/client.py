"""clickhouse-connect clients from a URL: `http(s)://host:port/database` or `chdb:///abs/path`."""

from __future__ import annotations

from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client


def clickhouse_client(url: str, **options: object) -> Client:
    """A clickhouse-connect client for the server (or in-process chDB directory) at `url`."""
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https", "chdb"):
        raise ValueError(f"CLICKHOUSE_URL must start with http://, https:// or chdb://, got {url!r}")
    # Re-reads are idempotent, so a few automatic retries on a dropped connection are safe.
    options.setdefault("connect_timeout", 5)
    if scheme != "chdb":
        options.setdefault("send_receive_timeout", 120)
    return clickhouse_connect.get_client(dsn=url, **options)
