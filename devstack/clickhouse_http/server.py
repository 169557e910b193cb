"""The HTTP side of the endpoint: the threaded server and its request handler (routing, URL parameters,
settings and sessions, reading the statement off the body, errors with ClickHouse's statuses),
`ClickHouseEndpoint` (the endpoint in a background thread, as tests and tools start it) and `serve_forever`
(the endpoint in the foreground until SIGINT or SIGTERM)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.clickhouse_http.bodies import Body, parse_multipart, read_up_to
from devstack.clickhouse_http.engine import Call, Engine, External, Outcome
from devstack.clickhouse_http.errors import BodyTooLarge, ClickHouseError, EndpointError
from devstack.clickhouse_http.sql import GET_KEYWORDS, SETTING_NAME_RE, InsertSplit, first_keyword, split_insert

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8123
MAX_BODY_BYTES = 512 * 1024 * 1024
# ClickHouse parses at most max_query_size (256 KiB) of a query; INSERT data beyond that is data.
QUERY_PREFIX_BYTES = 256 * 1024
DEFAULT_SESSION_TIMEOUT_S = 60
MAX_SESSION_TIMEOUT_S = 3600

# URL parameters the HTTP layer consumes; the rest are ClickHouse settings for the query.
_TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "enable_http_compression", "wait_end_of_query", "user", "password", "quota_key",
    "buffer_size", "client_protocol_version", "role", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "stacktrace",
    "http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header",
})

def _content_type(fmt: str | None) -> str:
    name = (fmt or "").lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "xml")) or not name:
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block shutdown
    engine: Engine
    max_body_bytes: int
    display_name: str
    slow_query_s: float | None

    def __init__(self, address: tuple[str, int], engine: Engine, max_body_bytes: int,
                 slow_query_s: float | None = None) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.slow_query_s = slow_query_s
        self.display_name = socket.gethostname()
        self._active = 0
        self._closing = False
        self._idle = threading.Condition()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host, which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def enter(self) -> bool:
        with self._idle:
            if self._closing:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def close_and_wait(self, timeout_s: float) -> bool:
        """Refuse new requests and wait for in-flight ones; True when none is left."""
        with self._idle:
            self._closing = True
            return self._idle.wait_for(lambda: self._active == 0, timeout_s)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    server_version = "keyscope-chdb-endpoint"
    timeout = 600  # idle keep-alive connections eventually let go of their thread
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        if not self.server.enter():
            self.close_connection = True
            self._send_error(ClickHouseError(236, "ABORTED", "The endpoint is shutting down"), "", 503)
            return
        try:
            self._route(method)
        finally:
            self.server.leave()

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        path = url.path.rstrip("/")
        if path == "/ping" or (path == "" and method == "GET" and "query" not in params):
            self.close_connection = self.close_connection or method != "GET"  # a POST body goes unread
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if path != "":
            self.close_connection = True
            error = ClickHouseError(1002, "UNKNOWN_EXCEPTION", f"There is no handle {url.path}. "
                                    "Use / for queries and /ping for health checks")
            self._send_error(error, query_id, 404)
            return
        body: Body | None = None
        try:
            body = Body(self, self.server.max_body_bytes)
            outcome = self._execute(method, params, body)
        except BodyTooLarge:
            self.close_connection = True  # the rest of the body is not worth reading
            error = ClickHouseError(36, "BAD_ARGUMENTS", "Request body is larger than this endpoint's limit "
                                    f"of {self.server.max_body_bytes} bytes; send smaller inserts")
            self._send_error(error, query_id, 413)
            return
        except ClickHouseError as exc:
            self._finish_body(body)
            self._send_error(exc, query_id)
            return
        except (ConnectionError, TimeoutError) as exc:
            logger.debug("client connection failed: %s", exc)
            self.close_connection = True
            return
        except Exception as exc:  # a bug here, not in the query: say so in ClickHouse's shape
            logger.exception("request failed")
            self._finish_body(body)
            self._send_error(ClickHouseError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)
            return
        headers = {"Content-Type": _content_type(outcome.fmt),
                   "X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":"))}
        if outcome.fmt is not None:
            headers["X-ClickHouse-Format"] = outcome.fmt
        self._send(200, outcome.body, headers, query_id)

    def _finish_body(self, body: Body | None) -> None:
        if body is None:  # failed before reading it: the connection cannot be reused
            self.close_connection = True
        elif not body.complete:
            try:
                body.drain()
            except (BodyTooLarge, ConnectionError, OSError):
                self.close_connection = True

    def _execute(self, method: str, params: dict[str, str], body: Body) -> Outcome:
        engine = self.server.engine
        external: dict[str, External] = {}
        query = params.pop("query", "")
        content_type = self.headers.get("Content-Type") or ""
        chunks: Iterator[bytes]
        if content_type.lower().startswith("multipart/form-data"):
            form, _ = read_up_to(body.chunks(), self.server.max_body_bytes + 1, self.server.max_body_bytes)
            fields, files = parse_multipart(form, content_type)
            query = fields.pop("query", query)
            params.update(fields)
            external = self._external_tables(files, params)
            chunks = iter(())
        else:
            chunks = body.chunks()
        call = Call(
            method=method,
            database=params.pop("database", None) or self.headers.get("X-ClickHouse-Database"),
            default_format=params.pop("default_format", None) or self.headers.get("X-ClickHouse-Format"),
            external=external,
        )
        session_id = params.get("session_id") or ""
        session_timeout = self._session_timeout(params.get("session_timeout"))
        session_check = params.get("session_check", "0") not in ("", "0", "false")
        for key, value in params.items():
            if key.startswith("param_"):
                call.params[key[6:]] = value
            elif key not in _TRANSPORT_PARAMS:
                if not SETTING_NAME_RE.match(key):
                    raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{key}'")
                call.settings[key] = value
        self._read_statement(call, query, chunks)
        if method == "GET" and (call.insert is not None
                                or first_keyword(call.sql.decode("latin-1")) not in GET_KEYWORDS):
            raise ClickHouseError(164, "READONLY", "Cannot execute query in readonly mode. For queries over "
                                  "HTTP, method GET implies readonly. You should use method POST for "
                                  "modifying queries")
        started = time.perf_counter()
        try:
            if not session_id:
                return engine.run(call, None)
            session = engine.acquire_session(session_id, session_timeout, session_check)
            try:
                return engine.run(call, session)
            finally:
                engine.release_session(session_id, session)
        finally:
            self._log_if_slow(call, time.perf_counter() - started)

    def _log_if_slow(self, call: Call, seconds: float) -> None:
        """The endpoint's query log (chDB keeps no system.query_log): statements slower than the threshold."""
        threshold = self.server.slow_query_s
        if threshold is None or seconds < threshold:
            return
        statement = call.insert.head if call.insert is not None else call.sql.decode("utf-8", "replace")
        logger.info("query took %.0f ms: %s", seconds * 1000, " ".join(statement.split())[:300])

    def _read_statement(self, call: Call, query: str, chunks: Iterator[bytes]) -> None:
        """Split `query param + newline + body` (how ClickHouse reads them) into SQL and INSERT data, reading
        only the start of the body: inline INSERT data streams into the engine without being buffered."""
        cap = self.server.max_body_bytes
        head = (query + "\n").encode() if query else b""
        split = split_insert(head.decode("latin-1")) if query else None
        exhausted = False
        if split is None:  # the statement (or its data) goes on in the body
            prefix, exhausted = read_up_to(chunks, QUERY_PREFIX_BYTES, cap)
            head += prefix
            split = split_insert(head.decode("latin-1"))
        if split is not None and not call.params:
            call.insert = InsertSplit(split.head.encode("latin-1").decode("utf-8", "replace"), split.fmt, 0)
            call.data = chain((head[split.data_start:],), chunks)
            return
        # Anything else is one statement; bound INSERTs run whole so the engine substitutes their parameters.
        if not exhausted:
            rest, _ = read_up_to(chunks, cap + 1, cap - len(head))
            head += rest
        if not head.strip():
            raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
        call.sql = head

    @staticmethod
    def _session_timeout(raw: str | None) -> float:
        if not raw:
            return DEFAULT_SESSION_TIMEOUT_S
        try:
            value = float(raw)
        except ValueError:
            raise ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                                  f"Invalid session timeout: '{raw}'") from None
        if value > MAX_SESSION_TIMEOUT_S:
            raise ClickHouseError(36, "BAD_ARGUMENTS", f"Session timeout '{raw}' is larger than "
                                  f"max_session_timeout: {MAX_SESSION_TIMEOUT_S}")
        return value

    @staticmethod
    def _external_tables(files: dict[str, bytes], params: dict[str, str]) -> dict[str, External]:
        """ClickHouse's external data: each file part is a temporary table described by <name>_structure
        (or <name>_types) and <name>_format."""
        tables: dict[str, External] = {}
        for name, data in files.items():
            structure = params.pop(f"{name}_structure", None)
            types = params.pop(f"{name}_types", None)
            fmt = params.pop(f"{name}_format", None) or "TabSeparated"
            if structure is None and types is not None:
                structure = ", ".join(f"_{i} {t.strip()}" for i, t in enumerate(types.split(","), 1))
            if not structure:
                raise ClickHouseError(36, "BAD_ARGUMENTS", "Neither structure nor types have been provided "
                                      f"for external table {name}. "
                                      f"Use fields {name}_structure or {name}_types.")
            tables[name] = External(structure, fmt, data)
        return tables

    def _send_error(self, exc: ClickHouseError, query_id: str, status: int | None = None) -> None:
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(exc.code)}
        self._send(status or exc.status, exc.body(self.server.engine.version), headers, query_id)

    def _send(self, status: int, body: Any, headers: dict[str, str], query_id: str = "") -> None:
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if query_id:
                self.send_header("X-ClickHouse-Query-Id", query_id)
            self.send_header("X-ClickHouse-Timezone", self.server.engine.timezone)
            self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class ClickHouseEndpoint:
    """The endpoint in a background thread: `start()`, `.url`, `stop()` (also a context manager)."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 max_body_bytes: int = MAX_BODY_BYTES, timezone: str = "UTC",
                 slow_query_ms: float | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.slow_query_s = None if slow_query_ms is None else slow_query_ms / 1000
        self.timezone = timezone
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def version(self) -> str:
        """The ClickHouse engine's version, as `SELECT version()` reports it."""
        if self._server is None:
            raise EndpointError("endpoint not started")
        return self._server.engine.version

    def start(self) -> ClickHouseEndpoint:
        if self._server is not None:
            raise EndpointError("endpoint already started")
        engine = Engine(self.data_dir, self.timezone)
        try:
            server = _Server((self.host, self.port), engine, self.max_body_bytes, self.slow_query_s)
        except OSError as exc:
            engine.close()
            raise EndpointError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._server = server
        self.port = server.server_address[1]  # the real one when port 0 asked for any free port
        # A short poll interval makes stop() quick; the accept loop is idle otherwise.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name=f"clickhouse-endpoint-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, let in-flight queries finish, then close chDB so its data is flushed."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        if not server.close_and_wait(timeout_s):
            logger.warning("closing chDB with queries still running after %.0f s", timeout_s)
        server.engine.close()

    def __enter__(self) -> ClickHouseEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                  slow_query_ms: float | None = None) -> None:
    """Run the endpoint in the foreground until SIGINT or SIGTERM, logging statements slower than
    `slow_query_ms`."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoint = ClickHouseEndpoint(data_dir, host, port, slow_query_ms=slow_query_ms).start()
        logger.info("listening on %s (ClickHouse %s in chDB, data dir %s)", endpoint.url, endpoint.version,
                    endpoint.data_dir)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            endpoint.stop()
            logger.info("stopped; data flushed to %s", endpoint.data_dir)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
