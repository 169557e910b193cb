"""The pieces of `keyscope bench serve` that need no services: percentiles, HTTP response framing, the requests it
sends, the closed loop against a tiny in-process HTTP server, and the table."""

from __future__ import annotations

import asyncio
import io
import json
import random

import numpy as np
import pytest

from app.schemas import TEST_ID_PATTERN
from bench.serve import (
    TEST_ID_MARK,
    HttpParseError,
    LoadResult,
    LoadSpec,
    ResponseParser,
    Row,
    _RequestSource,
    build_request,
    drive,
    percentile,
    print_table,
)

# -- percentiles ---------------------------------------------------------------------------------------------------


def test_percentile_matches_numpy_linear_interpolation():
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101, 1000):
        values = sorted(rng.expovariate(50) for _ in range(n))
        for q in (0, 1, 50, 95, 99, 99.9, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_in_ms_of_a_result():
    result = LoadResult(requests=4, seconds=2.0, latencies_s=[0.001, 0.002, 0.003, 0.004])
    assert result.rate == 2.0
    assert result.latency_ms(50) == pytest.approx(2.5)
    assert LoadResult().latency_ms(99) is None and LoadResult().rate == 0.0


# -- response framing ------------------------------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"ok\": true}\n"
NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\r\netag: "abc"\r\n\r\n'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
)
CLOSE = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def test_a_whole_response_in_one_read():
    assert ResponseParser().feed(OK) == [(200, True)]


def test_a_response_split_at_every_byte_boundary():
    for stream in (OK, NOT_MODIFIED, CHUNKED, CLOSE):
        for cut in range(1, len(stream)):
            parser = ResponseParser()
            done = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
            assert len(done) == 1, (stream, cut)
            assert parser.idle


def test_several_responses_in_one_read_keep_their_order():
    parser = ResponseParser()
    assert parser.feed(OK + NOT_MODIFIED + CHUNKED + CLOSE) == [(200, True), (304, True), (200, True), (429, False)]
    assert parser.idle


def test_bodiless_statuses_and_header_case():
    assert ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\n") == [(204, True)]
    assert ResponseParser().feed(b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 0\r\n\r\n") == [(200, True)]
    assert ResponseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length:3\r\n\r\nabc") == [(200, True)]


def test_http_1_0_closes_unless_kept_alive():
    assert ResponseParser().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") == [(200, False)]
    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    assert ResponseParser().feed(kept) == [(200, True)]


def test_unframed_or_garbled_responses_are_refused():
    with pytest.raises(HttpParseError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody to close")
    with pytest.raises(HttpParseError):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(HttpParseError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


def test_a_partial_response_is_not_idle():
    parser = ResponseParser()
    assert parser.feed(OK[:30]) == []
    assert not parser.idle


# -- requests ------------------------------------------------------------------------------------------------------


def test_requests_carry_host_auth_and_a_body_length():
    get = build_request("GET", "/v1/users/3/insights", "127.0.0.1:8000", {"Authorization": "Bearer k"})
    assert get == b"GET /v1/users/3/insights HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer k\r\n\r\n"
    post = build_request("POST", "/v1/tests", "h", {}, b'{"a":1}')
    head, body = post.split(b"\r\n\r\n", 1)
    assert body == b'{"a":1}' and b"\r\nContent-Length: 7" in head and b"\r\nContent-Type: application/json" in head


def test_each_submission_gets_a_fresh_valid_test_id_of_the_same_length():
    body = json.dumps({"user_id": 1, "test_id": TEST_ID_MARK}).encode()
    spec = LoadSpec("127.0.0.1", 1, (build_request("POST", "/v1/tests", "h", {}, body),), 1, 1, 0, id_tag="bench-1a2b")
    source = _RequestSource(spec)
    sent = [source.next() for _ in range(1000)]
    assert len({len(r) for r in sent}) == 1  # Content-Length still holds
    ids = [json.loads(r.split(b"\r\n\r\n", 1)[1])["test_id"] for r in sent]
    assert len(set(ids)) == len(ids)
    assert all(TEST_ID_PATTERN.fullmatch(i) and i.startswith("bench-1a2b-") for i in ids)


def test_reads_are_cycled_unchanged():
    spec = LoadSpec("127.0.0.1", 1, (b"A", b"B"), 1, 1, 0)
    source = _RequestSource(spec)
    assert [source.next() for _ in range(5)] == [b"A", b"B", b"A", b"B", b"A"]


# -- the closed loop against an in-process server ------------------------------------------------------------------


async def _serve(requests_seen: list[bytes], close_every: int = 0):
    """A keep-alive HTTP/1.1 server: 200 for /ok, 500 for /fail; with close_every, every n-th answer closes."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                requests_seen.append(head)
                count += 1
                status = b"500 Internal Server Error" if head.startswith(b"GET /fail") else b"200 OK"
                close = close_every and count % close_every == 0
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n" + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n{}"
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _run_against_server(requests: tuple[bytes, ...], close_every: int = 0) -> tuple[LoadResult, list[bytes]]:
    async def main() -> tuple[LoadResult, list[bytes]]:
        seen: list[bytes] = []
        server = await _serve(seen, close_every)
        port = server.sockets[0].getsockname()[1]
        async with server:
            result = await drive(LoadSpec("127.0.0.1", port, requests, 4, 0.4, 0.1, stall_s=1.0))
        return result, seen

    return asyncio.run(main())


def test_the_loop_counts_responses_and_latencies_in_the_timed_window():
    result, seen = _run_against_server((b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n",))
    assert result.requests > 50 and result.errors == 0
    assert result.statuses == {200: result.requests}
    assert len(result.latencies_s) == result.requests and result.latencies_s == sorted(result.latencies_s)
    assert 0.35 < result.seconds < 1.0
    assert len(seen) > result.requests  # the warm-up's requests were sent but not counted


def test_error_statuses_count_as_errors():
    ok, fail = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n"
    result, _ = _run_against_server((ok, fail))
    assert result.errors == result.statuses[500] > 0
    assert abs(result.statuses[200] - result.statuses[500]) <= 4  # alternated on each of 4 connections


def test_connections_the_server_closes_are_reopened_without_errors():
    result, _ = _run_against_server((b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n",), close_every=3)
    assert result.requests > 30 and result.errors == 0


def test_a_server_that_stops_answering_is_reported():
    async def main() -> LoadResult:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # reads the request, never answers

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await drive(LoadSpec("127.0.0.1", port, (b"GET / HTTP/1.1\r\n\r\n",), 3, 0.2, 0.0, stall_s=0.2))

    result = asyncio.run(main())
    assert result.requests == 0 and result.errors == 3
    assert "unanswered" in result.failures[-1]


def test_a_request_lost_with_its_connection_counts_once_and_says_when():
    async def main() -> LoadResult:
        async def drop_every_third(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            answered = 0
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    if answered == 2:
                        writer.transport.abort()  # as a killed replica: the request in flight gets no answer
                        return
                    answered += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(drop_every_third, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await drive(LoadSpec("127.0.0.1", port, (b"GET / HTTP/1.1\r\n\r\n",), 2, 0.5, 0.0, stall_s=0.3))

    result = asyncio.run(main())
    # Each connection: two answers, then a drop (a busy machine may fit few of those cycles in the window).
    assert result.errors >= 1 and result.statuses[200] >= 2 * result.errors - 4
    assert not any("unanswered" in f for f in result.failures)  # a lost request is not counted again at the end
    assert all("connection lost with a request in flight" in f and "s into the timing" in f for f in result.failures)


# -- the table -----------------------------------------------------------------------------------------------------


def test_the_table_has_a_row_per_measurement_and_names_errors():
    good = LoadResult(requests=1000, seconds=2.0, latencies_s=[0.01] * 1000)
    good.statuses[200] = 1000
    bad = LoadResult(requests=10, errors=3, seconds=1.0, latencies_s=[0.02] * 10, failures=["connect failed"])
    bad.statuses.update({200: 8, 429: 2})
    out = io.StringIO()
    print_table([Row("Ray Serve", "insights", 32, good), Row("uvicorn", "submit", 32, bad)], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "| target | route | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |"
    assert lines[2] == "| Ray Serve | GET /v1/users/{id}/insights | 32 | 500 | 10.0 | 10.0 | 10.0 | 0 |"
    assert lines[3] == "| uvicorn | POST /v1/tests | 32 | 10 | 20.0 | 20.0 | 20.0 | 3 (2 × 429, 1 connection) |"
    assert lines[4] == "  uvicorn submit: connect failed"


# -- the stack's Serve ingress settings ------------------------------------------------------------------------------


def test_the_stack_fronts_serve_with_haproxy_on_ports_of_its_own():
    from devstack.stack import serve_ingress_env

    dev, tests = serve_ingress_env(6380, "/bin/haproxy"), serve_ingress_env(26380, "/bin/haproxy")
    assert dev["RAY_SERVE_ENABLE_HA_PROXY"] == dev["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert dev["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/bin/haproxy"
    ports = lambda env: {int(v) for k, v in env.items() if k.endswith("_PORT")}  # noqa: E731
    assert ports(dev) == set(range(6386, 6390)) and ports(tests) == set(range(26386, 26390))  # past Ray's +1..+5
    # HAProxy sends a request a replica dropped unanswered to the other one (every route is safe to send twice).
    assert dev["RAY_SERVE_HAPROXY_RETRY_ON"].split() == ["conn-failure", "empty-response", "junk-response"]
    # Without an HAProxy binary only the throughput switch is left.
    assert serve_ingress_env(6380, None) == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def test_the_callers_environment_overrides_the_serve_settings(monkeypatch, tmp_path):
    from app.config import Settings
    from devstack.stack import LocalStack, haproxy_binary

    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:6380"})
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    env = LocalStack(settings).ray_env()
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env.get("RAY_SERVE_ENABLE_HA_PROXY") == ("1" if haproxy_binary() else None)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")
    assert LocalStack(settings).ray_env().get("RAY_SERVE_ENABLE_HA_PROXY") in ("0", None)
