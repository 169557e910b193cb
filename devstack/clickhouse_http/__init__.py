"""ClickHouse's HTTP interface over one chDB data directory.

chDB is the real ClickHouse engine in process but has no server mode, and one data directory can be
open in one process only. This process owns the directory and answers the HTTP interface on
127.0.0.1 so every other process reaches ClickHouse with `clickhouse_connect.get_client(host=...,
port=...)` exactly as it would reach a real server.

What it speaks: `GET /ping`; queries in the `query` URL parameter, the body, or a multipart form
(with external tables); `param_*` bind parameters; settings as URL parameters (per query, like the
server); `database` and `default_format`; gzip/deflate/zstd/lz4/xz/bz2 request bodies; sessions
(`session_id`: SET, USE and temporary tables persist); INSERT data streamed into the engine in
constant memory; errors as `Code: N. DB::Exception: ... (NAME)` with ClickHouse's HTTP statuses.
Responses are never compressed (loopback), which every client accepts.

Modules, one concern each:
- `errors`: `ClickHouseError` (code, name, text, HTTP status), `EndpointError`, `BodyTooLarge`;
- `sql`: the tokenizer, statement classification, INSERT/FORMAT splitting, quoting and SET statements;
- `bodies`: request bodies (size cap, chunked transfer, compression) and the multipart parser;
- `engine`: the chDB engine, sessions and the data directory's lock;
- `server`: the HTTP server and handler, `ClickHouseEndpoint` and `serve_forever`;
- `__main__`: the command.

Run: python -m devstack.clickhouse_http --data-dir DIR [--host 127.0.0.1] [--port 8123]
"""

from devstack.clickhouse_http.errors import EndpointError
from devstack.clickhouse_http.server import ClickHouseEndpoint, serve_forever

__all__ = ["ClickHouseEndpoint", "EndpointError", "serve_forever"]
