"""clickhouse-connect clients from a URL: `http(s)://host:port/database` or `chdb:///abs/path`."""

from __future__ import annotations

from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

# Background work (insights refreshes, archive, warehouse exports) runs its queries' threads at the lowest CPU
# priority (nice 19; ClickHouse's `os_thread_priority`), so on a busy server the ingest writes and the API's
# reads go first. Positive values need no privilege.
BACKGROUND_SETTINGS = {"os_thread_priority": 19}


def clickhouse_client(url: str, *, background: bool = False, **options: object) -> Client:
    """A clickhouse-connect client for the server (or in-process chDB directory) at `url`; with `background`,
    its queries yield the CPU to everyone else's."""
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https", "chdb"):
        raise ValueError(f"CLICKHOUSE_URL must start with http://, https:// or chdb://, got {url!r}")
    # Re-reads are idempotent, so a few automatic retries on a dropped connection are safe.
    options.setdefault("connect_timeout", 5)
    if scheme != "chdb":
        options.setdefault("send_receive_timeout", 120)
    if background:
        options["settings"] = {**BACKGROUND_SETTINGS, **dict(options.get("settings") or {})}  # type: ignore[arg-type]
    return clickhouse_connect.get_client(dsn=url, **options)
