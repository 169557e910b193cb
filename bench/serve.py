"""`keyscope bench serve`: requests a second and latency of each API route, Ray Serve next to plain uvicorn.

    keyscope bench serve [--concurrency 32] [--duration 5] [--warmup 1] [--uvicorn-workers 1 2] [--routes …]

Each measurement is a closed loop: a load process of its own (`python -m bench.serve --load-worker`, so it never
shares a GIL with anything measured) opens `concurrency` keep-alive HTTP/1.1 connections on loopback and keeps
one request in flight on each: when a response arrives, the connection sends its next request. After `warmup`
seconds it counts, for `duration` seconds, every response and its latency (send to last byte). A status other
than 2xx or 304, a dropped connection or a request still unanswered at the end counts as an error.

The client is an asyncio Protocol that writes prepared request bytes and parses only the status line, the
framing headers and the body length (`ResponseParser`), with uvloop: it drove 11 k req/s of /healthz from uvicorn
with two workers on the same 2 cores, so the load generator is not what limits the figures.

The same routes run against the stack's Serve application and against `serve/standalone.py` under plain uvicorn
(`uvicorn --factory serve.standalone:create_app --no-access-log`, same Settings, same Redis, same code without
Ray): the upper bound on this machine. Reads hit the Redis cache (the users' reads are fetched once, and checked
to be cached, before anything is timed). POST /v1/tests sends simulated tests of users the stack's own users
never meet (ids from SUBMIT_FIRST_USER), each with a fresh test id; they go to Kafka like any submission.

Rate limits: the Serve app enforces the stack's service-key limit (KEYSCOPE_RATE_LIMIT_SERVICE_PER_S, default
2,000/s, burst 4,000); a route pushed past it gets 429s, which count as errors and are reported as such. The
uvicorn targets run with a service limit of UNCAPPED_PER_S: the same Redis check on every request, but one that
never refuses, so the upper bound is not capped by policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROUTES: tuple[str, ...] = ("insights", "revalidate", "keys", "progress", "tests", "healthz", "readyz", "submit")
ROUTE_LABELS = {
    "insights": "GET /v1/users/{id}/insights",
    "revalidate": "GET /v1/users/{id}/insights → 304",
    "keys": "GET /v1/users/{id}/keys",
    "progress": "GET /v1/users/{id}/progress",
    "tests": "GET /v1/users/{id}/tests?limit=20",
    "healthz": "GET /healthz",
    "readyz": "GET /readyz",
    "submit": "POST /v1/tests",
}
# The cached read behind each GET route: (read, Redis hash field) as serve/gateway.py names them.
CACHED_READS = {
    "insights": ("/v1/users/{id}/insights", "insights"),
    "keys": ("/v1/users/{id}/keys", "keys"),
    "progress": ("/v1/users/{id}/progress", "progress"),
    "tests": ("/v1/users/{id}/tests?limit=20", "tests:limit=20"),
}
SUBMIT_FIRST_USER = 900_000_001  # submissions go to users far from any real or simulated stack user
SUBMIT_TEMPLATES = 20  # distinct simulated tests, cycled, each sent with a fresh test id
UNCAPPED_PER_S = 1_000_000.0  # the uvicorn targets' service rate limit: checked in Redis, never reached
TEST_ID_MARK = "@@KEYSCOPE_BENCH_TEST_ID_PLACEHOLDER@@"  # 38 characters; ids allow 64


# -- percentiles and HTTP parsing (pure; unit-tested) --------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) of ascending values, interpolated linearly (numpy's default); None if empty."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile needs 0 <= q <= 100, got {q}")
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


class HttpParseError(ValueError):
    """The server sent something that is not an HTTP/1.x response."""


class ResponseParser:
    """Incremental HTTP/1.1 response framing for a client that has one request in flight per connection.

    `feed(data)` returns the (status, keep_alive) of each response completed by `data`; bodies are counted,
    never kept. Handles Content-Length, chunked transfer coding, bodiless statuses (1xx, 204, 304) and
    `Connection: close`. A response without a length (read to close) is refused: keep-alive needs framing.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._status = 0
        self._keep_alive = True
        self._remaining = -1  # body bytes still to come; -1: reading headers; -2: chunked

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        buffer = self._buffer + data if self._buffer else data
        done: list[tuple[int, bool]] = []
        while True:
            if self._remaining == -1:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                self._head(buffer[:end])
                buffer = buffer[end + 4 :]
            if self._remaining >= 0:
                if len(buffer) < self._remaining:
                    break
                buffer = buffer[self._remaining :]
            else:  # chunked
                consumed = _chunked_length(buffer)
                if consumed is None:
                    break
                buffer = buffer[consumed:]
            done.append((self._status, self._keep_alive))
            self._remaining = -1
            if not buffer:
                break
        self._buffer = buffer
        return done

    @property
    def idle(self) -> bool:
        """True between responses (nothing of a response received yet)."""
        return self._remaining == -1 and not self._buffer

    def _head(self, head: bytes) -> None:
        if not head.startswith(b"HTTP/1.") or len(head) < 12 or not head[9:12].isdigit():
            raise HttpParseError(f"not an HTTP/1.x status line: {head[:40]!r}")
        self._status = status = int(head[9:12])
        lower = head.lower()
        http10 = head[7:8] == b"0"
        if http10:
            self._keep_alive = b"\r\nconnection: keep-alive" in lower
        else:
            self._keep_alive = b"\r\nconnection: close" not in lower
        if status < 200 or status in (204, 304):
            self._remaining = 0
            return
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            start = at + len(b"\r\ncontent-length:")
            stop = lower.find(b"\r\n", start)
            self._remaining = int(lower[start : stop if stop >= 0 else len(lower)].strip())
            return
        if b"\r\ntransfer-encoding: chunked" in lower:
            self._remaining = -2
            return
        raise HttpParseError(f"response {status} has neither Content-Length nor chunked framing")


def _chunked_length(buffer: bytes) -> int | None:
    """Bytes of a complete chunked body (with trailers) at the start of `buffer`; None if it is incomplete."""
    at = 0
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(buffer[at:line_end].split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpParseError(f"bad chunk size line {buffer[at:line_end][:20]!r}") from exc
        at = line_end + 2
        if size == 0:
            trailers_end = buffer.find(b"\r\n\r\n", at - 2)
            return None if trailers_end < 0 else trailers_end + 4
        if len(buffer) < at + size + 2:
            return None
        at += size + 2


def build_request(method: str, path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- the load process ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What one load process sends. `requests` are cycled; with `id_tag`, each request's TEST_ID_MARK is
    replaced by a fresh test id of the same length (so Content-Length holds)."""

    host: str
    port: int
    requests: tuple[bytes, ...]
    concurrency: int
    duration_s: float
    warmup_s: float
    id_tag: str = ""
    stall_s: float = 5.0  # a request unanswered this long at the end counts as an error


@dataclass
class LoadResult:
    requests: int = 0  # responses completed inside the timed window
    errors: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)  # ascending
    failures: list[str] = field(default_factory=list)  # the first few connection errors, for the report

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def latency_ms(self, q: float) -> float | None:
        value = percentile(self.latencies_s, q)
        return None if value is None else value * 1000


def ok_status(status: int) -> bool:
    return 200 <= status < 300 or status == 304


class _RequestSource:
    def __init__(self, spec: LoadSpec) -> None:
        self._requests = spec.requests
        self._next = 0
        self._mark = TEST_ID_MARK.encode()
        self._tag = spec.id_tag
        self._width = len(TEST_ID_MARK) - len(spec.id_tag) - 1
        if spec.id_tag and self._width < 6:
            raise ValueError("id_tag too long for the test id placeholder")

    def next(self) -> bytes:
        request = self._requests[self._next % len(self._requests)]
        self._next += 1
        if self._tag:
            test_id = f"{self._tag}-{self._next:0{self._width}d}".encode()
            request = request.replace(self._mark, test_id, 1)
        return request


class _LoadState:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.source = _RequestSource(spec)
        self.recording = False
        self.started = 0.0  # when the timed window began (perf_counter)
        self.stopping = False
        self.result = LoadResult()
        self.open = 0
        self.all_closed = asyncio.Event()
        self.connections: list[_Connection] = []
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine) -> None:  # noqa: ANN001
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def record(self, status: int, seconds: float) -> None:
        if not self.recording:
            return
        result = self.result
        result.requests += 1
        result.statuses[status] += 1
        result.latencies_s.append(seconds)
        if not ok_status(status):
            result.errors += 1

    def failure(self, message: str) -> None:
        if self.recording:
            self.result.errors += 1
            if len(self.result.failures) < 5:
                self.result.failures.append(f"{message} ({time.perf_counter() - self.started:.2f} s into the timing)")


class _Connection(asyncio.Protocol):
    def __init__(self, state: _LoadState) -> None:
        self.state = state
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.in_flight = False
        self.closing = False
        state.connections.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.open += 1
        self.send()

    def send(self) -> None:
        if self.state.stopping:
            self.close()
            return
        request = self.state.source.next()
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except (HttpParseError, ValueError) as exc:
            self.state.failure(f"unparsable response: {exc}")
            self.in_flight = False
            self.close()
            return
        for status, keep_alive in responses:
            now = time.perf_counter()
            self.in_flight = False
            self.state.record(status, now - self.sent_at)
            if not keep_alive:
                self.close()
                return
            self.send()

    def close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.open -= 1
        if self.in_flight and not state.stopping:
            state.failure(f"connection lost with a request in flight: {exc!r}")
            self.in_flight = False  # counted here; not again as unanswered at the end
        if not state.stopping:  # the server closed it (or told us to): reconnect and go on
            state.spawn(_connect(state))
        elif state.open == 0:
            state.all_closed.set()


async def _connect(state: _LoadState) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(lambda: _Connection(state), state.spec.host, state.spec.port)
    except OSError as exc:
        state.failure(f"connect failed: {exc!r}")
        if not state.stopping:
            await asyncio.sleep(0.05)
            state.spawn(_connect(state))


async def drive(spec: LoadSpec) -> LoadResult:
    """Run the closed loop in this process's event loop and return what the timed window measured."""
    state = _LoadState(spec)
    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(loop.create_connection(lambda: _Connection(state), spec.host, spec.port) for _ in range(spec.concurrency))
    )
    await asyncio.sleep(spec.warmup_s)
    state.recording = True
    started = state.started = time.perf_counter()
    await asyncio.sleep(spec.duration_s)
    state.result.seconds = time.perf_counter() - started
    state.recording = False
    state.stopping = True
    ended = time.perf_counter()
    # Connections close as their in-flight request completes; whatever is left after stall_s is a stall.
    try:
        await asyncio.wait_for(state.all_closed.wait(), timeout=spec.stall_s)
    except TimeoutError:
        pass
    stalled = [c for c in state.connections if c.in_flight and not c.closing and c.sent_at < ended]
    for connection in state.connections:
        if connection.transport is not None:
            connection.transport.abort()
    state.result.errors += len(stalled)
    if stalled:
        sent = sorted(c.sent_at - started for c in stalled)
        state.result.failures.append(
            f"{len(stalled)} requests unanswered after {spec.stall_s:g} s (sent {sent[0]:.2f}–{sent[-1]:.2f} s into "
            "the timing)"
        )
    state.result.latencies_s.sort()
    return state.result


def _load_worker() -> int:
    """`python -m bench.serve --load-worker`: a LoadSpec (pickled) on stdin, its LoadResult (pickled) on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    spec = pickle.load(sys.stdin.buffer)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        answer: LoadResult | str = asyncio.run(drive(spec))
    except Exception as exc:  # report it to the parent rather than a bare exit status
        answer = f"{type(exc).__name__}: {exc}"
    pickle.dump(answer, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def run_load(spec: LoadSpec) -> LoadResult:
    """`drive(spec)` in a process of its own (so the load never shares a GIL with anything measured)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve", "--load-worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    timeout = spec.warmup_s + spec.duration_s + spec.stall_s + 60
    try:
        out, err = process.communicate(pickle.dumps(spec), timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError(f"the load process did not finish in {timeout:.0f} s") from None
    if process.returncode != 0 or not out:
        raise RuntimeError(f"the load process failed ({process.returncode}): {err.decode(errors='replace')[-2000:]}")
    answer = pickle.loads(out)
    if isinstance(answer, str):
        raise RuntimeError(f"the load process failed: {answer}")
    return answer


# -- targets ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:]) if log_path.exists() else ""
    raise RuntimeError(f"uvicorn at {url} did not answer /healthz in {timeout_s:.0f} s\n{tail}")


def uvicorn_env(settings) -> dict[str, str]:  # noqa: ANN001 - Settings, imported lazily
    """The stack's Settings (secrets included) for the standalone app, with the service rate limit uncapped."""
    from app.auth import settings_with_local_secrets
    from app.config import child_environment

    env = child_environment(settings_with_local_secrets(settings).as_env())
    env["KEYSCOPE_RATE_LIMIT_SERVICE_PER_S"] = str(UNCAPPED_PER_S)
    env.pop("RAY_ADDRESS", None)
    return env


@contextmanager
def standalone_uvicorn(settings, workers: int = 1, port: int | None = None) -> Iterator[Target]:  # noqa: ANN001
    """serve/standalone.py under plain uvicorn on a free loopback port, stopped (SIGTERM) on exit."""
    port = port or free_port()
    logs = Path(settings.data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"bench-uvicorn-{port}.log"
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", "serve.standalone:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--workers", str(workers),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, env=uvicorn_env(settings), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, 60, log_path)
        label = "uvicorn" if workers == 1 else f"uvicorn ×{workers}"
        yield Target(label, url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- requests of each route ---------------------------------------------------------------------------------------


def route_requests(
    route: str, host: str, headers: dict[str, str], user_ids: Sequence[int], etags: dict[int, str]
) -> tuple[bytes, ...]:
    """The raw requests one measurement of `route` cycles through."""
    if route in CACHED_READS:
        path = CACHED_READS[route][0]
        return tuple(build_request("GET", path.format(id=u), host, headers) for u in user_ids)
    if route == "revalidate":
        return tuple(
            build_request("GET", f"/v1/users/{u}/insights", host, {**headers, "If-None-Match": etags[u]})
            for u in user_ids
        )
    if route in ("healthz", "readyz"):
        return (build_request("GET", "/" + route, host, {}),)
    if route == "submit":
        from devstack.simulate import simulate_tests

        tests = simulate_tests(SUBMIT_TEMPLATES, 1, seed=20261127, first_user_id=SUBMIT_FIRST_USER)
        bodies = [json.dumps({**t, "test_id": TEST_ID_MARK}, separators=(",", ":")).encode() for t in tests]
        return tuple(build_request("POST", "/v1/tests", host, headers, body) for body in bodies)
    raise ValueError(f"unknown route {route!r} (one of {', '.join(ROUTES)})")


def prepare_reads(settings, url: str, headers: dict[str, str], user_ids: Sequence[int]) -> dict[int, str]:  # noqa: ANN001
    """Fetch every cached read of every user once (a miss computes and caches it), check each is now in Redis,
    and return each user's insights ETag (for the 304 route)."""
    import httpx
    import redis

    from app.cache import user_cache_key

    etags: dict[int, str] = {}
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            for user in user_ids:
                for path, field_name in CACHED_READS.values():
                    for _ in range(20):
                        response = http.get(path.format(id=user))
                        if response.status_code == 404:
                            raise RuntimeError(
                                f"user {user} has no tests at {url}: store some first (`keyscope demo`, or "
                                "`keyscope simulate` then `keyscope ingest`), or pick other users (--read-users)"
                            )
                        response.raise_for_status()
                        if path.endswith("/insights"):
                            etags[user] = response.headers["etag"]
                        if client.hexists(user_cache_key(user), field_name):
                            break
                        time.sleep(0.1)  # the back-fill races an invalidation: read again
                    else:
                        raise RuntimeError(f"read {field_name} of user {user} does not stay cached in Redis")
    finally:
        client.close()
    return etags


# -- the benchmark ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    route: str
    concurrency: int
    result: LoadResult


@dataclass
class BenchConfig:
    routes: tuple[str, ...] = ROUTES
    concurrency: int = 32
    duration_s: float = 5.0
    warmup_s: float = 1.0
    user_ids: tuple[int, ...] = tuple(range(1, 21))
    uvicorn_workers: tuple[int, ...] = (1,)


def measure(target: Target, route: str, requests: tuple[bytes, ...], config: BenchConfig) -> Row:
    host, port = target.host_port
    spec = LoadSpec(
        host=host,
        port=port,
        requests=requests,
        concurrency=config.concurrency,
        duration_s=config.duration_s,
        warmup_s=config.warmup_s,
        id_tag=f"bench-{time.time_ns() // 1_000_000:x}" if route == "submit" else "",
    )
    return Row(target.name, route, config.concurrency, run_load(spec))


def run(settings, config: BenchConfig, serve_url: str | None = None, progress=print) -> list[Row]:  # noqa: ANN001
    """Measure every route on the Serve app (the stack's, or `serve_url`) and on standalone uvicorn, route by
    route (Serve first, then each uvicorn), so drift on a noisy machine hits every target alike."""
    from app.api_client import api_url, service_headers

    for route in config.routes:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r} (one of {', '.join(ROUTES)})")
    headers = service_headers(settings)
    serve = Target("Ray Serve", serve_url or api_url(settings))
    progress(f"warming the cache: every read of users {config.user_ids[0]}…{config.user_ids[-1]} through {serve.url}")
    etags = prepare_reads(settings, serve.url, headers, config.user_ids)
    rows: list[Row] = []
    with ExitStack() as stack:
        targets = [serve]
        for workers in config.uvicorn_workers:
            progress(f"starting serve.standalone under uvicorn ({workers} worker{'s' * (workers > 1)})…")
            targets.append(stack.enter_context(standalone_uvicorn(settings, workers)))
        for route in config.routes:
            for target in targets:
                host, port = target.host_port
                requests = route_requests(route, f"{host}:{port}", headers, config.user_ids, etags)
                row = measure(target, route, requests, config)
                progress(f"  {format_row(row)}")
                rows.append(row)
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def describe_errors(result: LoadResult) -> str:
    if not result.errors:
        return "0"
    bad = {s: n for s, n in sorted(result.statuses.items()) if not ok_status(s)}
    parts = [f"{n} × {s}" for s, n in bad.items()]
    other = result.errors - sum(bad.values())
    if other:
        parts.append(f"{other} connection")
    return f"{result.errors} ({', '.join(parts)})"


def format_row(row: Row) -> str:
    r = row.result
    return (
        f"| {row.target} | {ROUTE_LABELS.get(row.route, row.route)} | {row.concurrency} | {r.rate:,.0f} "
        f"| {_ms(r.latency_ms(50))} | {_ms(r.latency_ms(95))} | {_ms(r.latency_ms(99))} | {describe_errors(r)} |"
    )


def print_table(rows: Sequence[Row], out=None) -> None:  # noqa: ANN001
    out = out or sys.stdout
    print("| target | route | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |", file=out)
    print("|---|---|---:|---:|---:|---:|---:|---:|", file=out)
    for row in rows:
        print(format_row(row), file=out)
    for row in rows:
        for failure in row.result.failures:
            print(f"  {row.target} {row.route}: {failure}", file=out)



# -- the command --------------------------------------------------------------------------------------------------


def stack_ray_processes(settings) -> dict[int, bytes]:  # noqa: ANN001
    """pid → command line of every process of the local stack's Ray session ({} if this stack started no Ray)."""
    from devstack.stack import _session_members

    state_file = Path(settings.data_dir) / "stack.json"
    try:
        leader = int(json.loads(state_file.read_text())["ray"]["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    processes = {}
    for pid in _session_members(leader):
        try:
            processes[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
    return processes


def stack_ray_env(settings) -> dict[str, str] | None:  # noqa: ANN001
    """The environment the local stack's Ray head runs with (what Serve's controller and replicas see)."""
    state_file = Path(settings.data_dir) / "stack.json"
    try:
        leader = int(json.loads(state_file.read_text())["ray"]["pid"])
        raw = Path(f"/proc/{leader}/environ").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def describe_ingress(env: dict[str, str] | None) -> str:
    if env is None:
        return "ingress settings unknown (this stack's Ray head was not started by `keyscope up` here)"
    optimized = env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1"
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        return "HAProxy → ingress replicas (RAY_SERVE_ENABLE_HA_PROXY=1" + (
            ", RAY_SERVE_THROUGHPUT_OPTIMIZED=1)" if optimized else ")"
        )
    if optimized:
        return "Serve's proxy, RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (no HAProxy)"
    return "Serve's default Python proxy (no HAProxy, not throughput-optimized)"


def run_and_print(
    settings,  # noqa: ANN001 - app.config.Settings
    routes: str | None = None,
    concurrency: int = 32,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    read_users: int = 20,
    uvicorn_workers: Sequence[int] = (1,),
    serve_url: str | None = None,
    first_user: int = 1,
) -> int:
    """`keyscope bench serve`: run the benchmark, print what ran where and the table; 1 if any request failed."""
    from app.api_client import api_url

    config = BenchConfig(
        routes=tuple(r.strip() for r in routes.split(",") if r.strip()) if routes else ROUTES,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        user_ids=tuple(range(first_user, first_user + read_users)),
        uvicorn_workers=tuple(w for w in uvicorn_workers if w > 0),
    )
    env = stack_ray_env(settings)
    replicas = sum(b"ServeReplica:keyscope:ingress" in cmd for cmd in stack_ray_processes(settings).values())
    service_limit = float((env or {}).get("KEYSCOPE_RATE_LIMIT_SERVICE_PER_S", settings.rate_limit_service_per_s))
    service_burst = (env or {}).get("KEYSCOPE_RATE_LIMIT_SERVICE_BURST", str(settings.rate_limit_service_burst))
    print(
        f"keyscope bench serve: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
        f"{config.concurrency} connections, {config.duration_s:g} s timed after {config.warmup_s:g} s of load, per "
        f"route and target; reads of users {config.user_ids[0]}..{config.user_ids[-1]}, all cached in Redis"
    )
    print(
        f"Ray Serve at {serve_url or api_url(settings)}: {describe_ingress(env)}"
        + (f", {replicas} ingress replicas" if replicas else "")
    )
    print(
        f"rate limit: Ray Serve enforces the stack's service-key limit ({service_limit:,.0f}/s, burst {service_burst}; "
        f"a 429 counts as an error); uvicorn runs with {UNCAPPED_PER_S:,.0f}/s, the same Redis check never refusing"
    )
    rows = run(settings, config, serve_url=serve_url)
    print()
    print_table(rows)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 1 if any(row.result.errors for row in rows) else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections, each with one request in flight (default 32)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds timed per route (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="load before each timing, s (default 1)")
    parser.add_argument(
        "--routes",
        default=None,
        help=f"comma-separated routes among {','.join(ROUTES)} (default all)",
    )
    parser.add_argument("--read-users", type=int, default=20, help="read the users 1..N (default 20)")
    parser.add_argument(
        "--uvicorn-workers",
        type=int,
        nargs="*",
        default=[1],
        metavar="N",
        help="also run the app under plain uvicorn with N workers, once per N given (default 1; none: skip)",
    )


def run_command(settings, args: argparse.Namespace) -> int:  # noqa: ANN001 - app.config.Settings
    """`keyscope bench serve`: brings the stack up; 1 if any request failed."""
    from devstack.stack import LocalStack

    LocalStack(settings).up(progress=print)
    return run_and_print(
        settings,
        routes=args.routes,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        read_users=args.read_users,
        uvicorn_workers=args.uvicorn_workers,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--load-worker"]:
        # Through the package, so what is pickled back names bench.serve classes, not __main__ ones.
        from bench.serve import _load_worker as load_worker

        raise SystemExit(load_worker())
    raise SystemExit("usage: keyscope bench serve (this module's entry point is the load worker)")
