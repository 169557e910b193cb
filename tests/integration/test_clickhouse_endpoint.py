"""The chDB-backed ClickHouse HTTP endpoint, driven by clickhouse-connect and raw HTTP like a real server."""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import logging
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import lz4.frame
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.external import ExternalData

from devstack.clickhouse_http import ClickHouseEndpoint, EndpointError

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[ClickHouseEndpoint]:
    # chDB hosts one data directory per process; each test gets its own and closes it again.
    ep = ClickHouseEndpoint(tmp_path / "ch", port=0, max_body_bytes=64 * 1024 * 1024).start()
    try:
        yield ep
    finally:
        ep.stop()


def connect(endpoint: ClickHouseEndpoint, **kwargs: object) -> Client:
    return clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, **kwargs)


@pytest.fixture
def client(endpoint: ClickHouseEndpoint) -> Iterator[Client]:
    c = connect(endpoint)
    try:
        yield c
    finally:
        c.close()


def request(endpoint: ClickHouseEndpoint, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_handshake_version_and_ping(endpoint: ClickHouseEndpoint, client: Client) -> None:
    assert client.server_version == endpoint.version
    assert client.command("SELECT version()") == endpoint.version
    assert str(client.server_tz) == "UTC"
    assert client.ping()
    assert request(endpoint, "GET", "/ping")[2] == b"Ok.\n"
    status, headers, body = request(endpoint, "GET", "/?query=SELECT%201")
    assert (status, body) == (200, b"1\n")
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Timezone"] == "UTC"
    assert headers["X-ClickHouse-Query-Id"] and headers["X-ClickHouse-Server-Display-Name"]
    _, _, body = request(endpoint, "GET", "/?query=SELECT%201%20AS%20x&default_format=JSONEachRow")
    assert body == b'{"x":1}\n'
    assert request(endpoint, "GET", "/nowhere")[0] == 404


def test_arrow_round_trip_100k_rows(client: Client) -> None:
    client.command("""
        CREATE TABLE events (
            id UInt64, name String, kind LowCardinality(String), at DateTime64(3, 'UTC'),
            value Float64, note Nullable(String)
        ) ENGINE = MergeTree ORDER BY id""")
    n = 100_000
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    table = pa.table({
        "id": pa.array(range(n), pa.uint64()),
        "name": [f"user-{i}" for i in range(n)],
        "kind": pa.array([("down", "up", "hold")[i % 3] for i in range(n)]).dictionary_encode(),
        "at": pa.array([start + dt.timedelta(milliseconds=i) for i in range(n)],
                       pa.timestamp("ms", tz="UTC")),
        "value": pa.array([i / 7 for i in range(n)], pa.float64()),
        "note": pa.array([None if i % 4 == 0 else f"n{i}" for i in range(n)], pa.string()),
    })
    summary = client.insert_arrow("events", table)
    assert summary.written_rows == n
    back = client.query_arrow("SELECT * FROM events ORDER BY id")
    assert back.num_rows == n
    assert back.column("id").to_pylist() == table.column("id").to_pylist()
    assert back.column("name").to_pylist()[-1] == f"user-{n - 1}"
    kinds = table.column("kind").cast(pa.string()).to_pylist()
    assert back.column("kind").cast(pa.string()).to_pylist() == kinds
    assert back.column("at").to_pylist()[12_345] == start + dt.timedelta(milliseconds=12_345)
    assert back.column("value").to_pylist() == table.column("value").to_pylist()
    assert back.column("note").null_count == n // 4
    df = client.query_df("SELECT kind, count() AS c FROM events GROUP BY kind ORDER BY kind")
    assert df["kind"].tolist() == ["down", "hold", "up"] and df["c"].tolist() == [33_334, 33_333, 33_333]


def test_native_insert_with_default_compression(client: Client) -> None:
    assert client.write_compression == "lz4"  # clickhouse-connect compresses inserts unless told not to
    client.command("CREATE TABLE t (id UInt32, s String, at DateTime64(3, 'UTC'), n Nullable(Int64)) "
                   "ENGINE = MergeTree ORDER BY id")
    at = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    rows = [[i, f"s{i}", at, None if i % 2 else i * 10] for i in range(50_000)]
    summary = client.insert("t", rows, column_names=["id", "s", "at", "n"])
    assert summary.written_rows == 50_000
    # clickhouse-connect returns UTC DateTime64 values as naive datetimes, from any server
    assert client.query("SELECT count(), sum(id), countIf(n IS NULL), max(at) FROM t").result_rows == [
        (50_000, sum(range(50_000)), 25_000, at.replace(tzinfo=None))]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "lz4"])
def test_compressed_request_bodies(endpoint: ClickHouseEndpoint, client: Client, encoding: str) -> None:
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstd.compress,
                "lz4": lambda b: lz4.frame.compress(b[:10]) + lz4.frame.compress(b[10:])}[encoding]
    client.command("CREATE TABLE c (a UInt8, b String) ENGINE = MergeTree ORDER BY a")
    body = compress(b"INSERT INTO c FORMAT CSV\n1,x\n2,y\n")
    status, headers, _ = request(endpoint, "POST", "/", body, {"Content-Encoding": encoding})
    assert status == 200
    assert '"written_rows":"2"' in headers["X-ClickHouse-Summary"]
    query = compress(b"SELECT count() FROM c")
    status, _, result = request(endpoint, "POST", "/", query, {"Content-Encoding": encoding})
    assert (status, result) == (200, b"2\n")


def test_bind_parameters(client: Client) -> None:
    assert client.query("SELECT {a:UInt32} + 1, {s:String}, {d:DateTime64(3)}",
                        parameters={"a": 41, "s": "it's\ttabbed", "d": dt.datetime(2024, 1, 2, 3, 4, 5)}
                        ).result_rows == [(42, "it's\ttabbed", dt.datetime(2024, 1, 2, 3, 4, 5))]
    # Long parameters travel as a multipart form, as clickhouse-connect sends them past 4 KiB.
    ids = list(range(5_000))
    assert client.query("SELECT count() FROM numbers(10000) WHERE number IN {ids:Array(UInt64)}",
                        parameters={"ids": ids}).result_rows == [(5_000,)]
    assert client.command("SELECT {x:String}", parameters={"x": "cmd"}) == "cmd"


def test_settings_database_and_sessions(endpoint: ClickHouseEndpoint, client: Client) -> None:
    assert client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    # URL settings apply to one query only, also inside the client's session.
    assert client.command("SELECT getSetting('max_block_size')") == 65409
    client.command("CREATE DATABASE other")
    client.command("CREATE TABLE other.x (a UInt8) ENGINE = Memory")
    other = connect(endpoint, database="other")
    assert other.command("SELECT currentDatabase()") == "other"
    assert other.command("EXISTS TABLE x") == 1
    other.close()
    # A session keeps SET and temporary tables, like the server's sessions.
    client.command("SET max_block_size = 1234")
    client.command("CREATE TEMPORARY TABLE tmp (a UInt8)")
    client.command("INSERT INTO tmp VALUES (1), (2)")
    assert client.command("SELECT getSetting('max_block_size')") == 1234
    assert client.command("SELECT count() FROM tmp") == 2
    sessionless = connect(endpoint, autogenerate_session_id=False)
    assert sessionless.command("SELECT getSetting('max_block_size')") == 65409
    sessionless.close()
    # External data becomes a temporary table for one query.
    ext = ExternalData(file_name="ids.csv", data=b"1\n2\n3\n", fmt="CSV", structure=["id UInt32"])
    assert client.query("SELECT sum(id) FROM ids", external_data=ext).result_rows == [(6,)]


def test_sessionless_requests_reuse_connections_without_leaking_state(
    endpoint: ClickHouseEndpoint, client: Client
) -> None:
    """Sessionless requests run on pooled connections set up for their settings and database: each still sees only
    its own settings and database, and a SET or temporary table one of them creates never reaches the next."""
    from urllib.parse import urlencode

    def ask(sql: str, **params: str) -> str:
        status, _, body = request(endpoint, "POST", "/?" + urlencode(params), sql.encode())
        assert status == 200, body
        return body.decode().strip()

    client.command("CREATE DATABASE pooled")
    default_threads = ask("SELECT getSetting('max_threads')")
    for _ in range(3):  # interleaved, so each kind of request meets a connection the other kind left
        assert ask("SELECT getSetting('max_threads')", max_threads="1") == "1"
        assert ask("SELECT getSetting('max_threads')") == default_threads
        assert ask("SELECT currentDatabase()", database="pooled") == "pooled"
        assert ask("SELECT currentDatabase()") == "default"
    default_block = ask("SELECT getSetting('max_block_size')")
    ask("SET max_block_size = 7")
    ask("CREATE TEMPORARY TABLE leftover (a UInt8)")
    for _ in range(3):
        assert ask("SELECT getSetting('max_block_size')") == default_block
        assert ask("EXISTS TEMPORARY TABLE leftover") == "0"
    pooled = endpoint._server.engine._pool  # bounded: idle connections kept per kind of request
    assert pooled and all(1 <= len(idle) <= 8 for idle in pooled.values())


def test_errors_surface_and_server_keeps_serving(endpoint: ClickHouseEndpoint, client: Client) -> None:
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM missing_table")
    assert info.value.code == 60 and "UNKNOWN_TABLE" in str(info.value) and "missing_table" in str(info.value)
    with pytest.raises(DatabaseError, match="SYNTAX_ERROR"):
        client.command("SELEC 1")
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.query("SELECT 1", settings={"no_such_setting": 1})
    client.command("CREATE TABLE e (a UInt8) ENGINE = MergeTree ORDER BY a")
    with pytest.raises(DatabaseError, match="INCORRECT_DATA|CANNOT_PARSE"):
        client.raw_insert("e", ["a"], b"not-a-number\n", fmt="CSV")
    assert client.command("SELECT 1") == 1
    assert client.command("SELECT count() FROM e") == 0

    status, headers, body = request(endpoint, "POST", "/", b"SELECT * FROM missing_table")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(UNKNOWN_TABLE)" in body
    assert request(endpoint, "POST", "/", b"SELEC 1")[0] == 400
    status, headers, body = request(endpoint, "POST", "/", b"")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62" and b"Empty query" in body
    status, _, body = request(endpoint, "GET", "/?query=DROP%20TABLE%20e")
    assert status == 500 and b"(READONLY)" in body
    too_long = {"Content-Length": str(endpoint.max_body_bytes + 1)}
    status, _, body = request(endpoint, "POST", "/", b"x", too_long)
    assert status == 413 and b"limit" in body
    assert client.command("EXISTS TABLE e") == 1


def test_concurrent_clients(endpoint: ClickHouseEndpoint, client: Client) -> None:
    client.command("CREATE TABLE k (worker UInt8, i UInt32) ENGINE = MergeTree ORDER BY (worker, i)")
    shared = connect(endpoint, autogenerate_session_id=False)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        own = connect(endpoint)
        try:
            for round_ in range(5):
                rows = [[worker, round_ * 100 + i] for i in range(100)]
                own.insert("k", rows, column_names=["worker", "i"])
                assert own.query("SELECT count() FROM k WHERE worker = {w:UInt8}",
                                 parameters={"w": worker}).result_rows == [((round_ + 1) * 100,)]
                total = shared.query("SELECT sum(number) FROM numbers(100000)").result_rows
                assert total == [(4_999_950_000,)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    shared.close()
    assert not errors, errors
    assert client.command("SELECT count() FROM k") == 8 * 500


def test_data_persists_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "persist"
    with ClickHouseEndpoint(data_dir, port=0) as ep:
        c = connect(ep)
        c.command("CREATE TABLE p (a UInt64) ENGINE = MergeTree ORDER BY a")
        c.insert("p", [[i] for i in range(1000)], column_names=["a"])
        c.close()
    with ClickHouseEndpoint(data_dir, port=0) as ep:
        c = connect(ep)
        assert c.command("SELECT sum(a) FROM p") == sum(range(1000))
        c.close()


def test_second_process_on_same_dir_fails_clearly(endpoint: ClickHouseEndpoint) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack.clickhouse_http", "--data-dir", str(endpoint.data_dir),
         "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "in use by another process" in result.stderr and str(endpoint.data_dir) in result.stderr
    # And in this process a second endpoint on the same directory is refused the same way.
    with pytest.raises(EndpointError, match="in use by another process"):
        ClickHouseEndpoint(endpoint.data_dir, port=0).start()
    assert request(endpoint, "GET", "/ping")[2] == b"Ok.\n"


def test_statements_slower_than_the_threshold_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devstack.clickhouse_http")
    with ClickHouseEndpoint(tmp_path / "slow", port=0, slow_query_ms=250) as ep:
        c = connect(ep)
        c.command("SELECT 'fast one'")
        c.command("SELECT sleep(0.4), 'slow one'")
        c.close()
    logged = [r.getMessage() for r in caplog.records if "query took" in r.getMessage()]
    slow = [m for m in logged if "slow one" in m]
    assert len(slow) == 1 and int(slow[0].split("query took ")[1].split(" ms")[0]) >= 400
    assert not any("fast one" in m for m in logged)


def test_with_a_zero_threshold_every_statement_is_logged_inserts_by_their_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devstack.clickhouse_http")
    with ClickHouseEndpoint(tmp_path / "all", port=0, slow_query_ms=0) as ep:
        c = connect(ep)
        c.command("CREATE TABLE s (a UInt64) ENGINE = MergeTree ORDER BY a")
        c.insert("s", [[1], [2]], column_names=["a"])
        c.close()
    logged = [r.getMessage() for r in caplog.records if "query took" in r.getMessage()]
    assert any("CREATE TABLE s" in m for m in logged)
    assert "query took" in logged[0] and any(m.endswith(": INSERT INTO `s` (`a`)") for m in logged)  # not its data


def test_background_clients_run_their_queries_at_the_lowest_cpu_priority(endpoint: ClickHouseEndpoint) -> None:
    from app.clickhouse.client import clickhouse_client

    url = f"http://127.0.0.1:{endpoint.port}/default"
    background, foreground = clickhouse_client(url, background=True), clickhouse_client(url)
    try:
        assert background.command("SELECT getSetting('os_thread_priority')") == 19
        assert foreground.command("SELECT getSetting('os_thread_priority')") == 0
    finally:
        background.close()
        foreground.close()
