"""The endpoint as a command: python -m devstack.clickhouse_http --data-dir DIR [--host] [--port]
[--log-level] [--slow-query-ms]; it serves until SIGINT or SIGTERM and exits 1 when it cannot start."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from devstack.clickhouse_http.errors import EndpointError
from devstack.clickhouse_http.server import DEFAULT_PORT, serve_forever

logger = logging.getLogger("devstack.clickhouse_http")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface over a chDB data directory")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--slow-query-ms", type=float, default=1000.0,
                        help="log each statement that takes at least this long (0 logs all; default 1000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve_forever(args.data_dir, args.host, args.port, args.slow_query_ms)
    except EndpointError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
