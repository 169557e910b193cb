"""`keyscope bench predict`: POST /v1/predict/typing under a steady offered load, and the predictor's batch path.

    keyscope bench predict [--rates 100 500] [--seconds 10] [--warmup 1] [--promote-untrained]

Load (open loop): request i is sent `i / rate` seconds after the start whatever the answers do, from this process
(raw HTTP/1.1 on keep-alive connections, uvloop; bench/serve.py's response framing): an idle connection carries it,
else it waits for one while a new one opens (at most MAX_CONNECTIONS). Its latency runs from its scheduled time,
so a queue building up anywhere shows in the percentiles. Requests scheduled in the first `warmup` seconds are sent
but not counted. Texts are 60 characters of common words; half the requests are for typists with features in the
online store (stored first, through Kafka and the ingest job, when missing), half for ids never seen (cold start).
Achieved req/s: answers counted / the time from the first counted request's schedule to the last answer. A status
other than 200, a dropped connection or a request unanswered STALL_S after the last was scheduled is an error.

Batch path: `TypingPredictor.predict_typing` on BATCH requests × 60 characters, in this process, with the versions
the stack serves and one torch thread (as a replica with a fraction of a CPU gets), timed with time.process_time:
the characters a predictor replica predicts per ms of CPU, encoding included, HTTP and Ray excluded.

The figures need a promoted pattern and error version. On a stack without any, `--promote-untrained` registers and
promotes untrained networks (the same shapes and cost as trained ones; their predictions mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bench.serve import HttpParseError, ResponseParser, build_request, percentile

HISTORY_FIRST_USER = 81_000_000  # typists stored for this benchmark (bench/insights.py uses 80,000,000…)
COLD_FIRST_USER = 981_000_000  # ids nothing stores: every request for one is a cold start
TYPISTS = 20  # with history, and as many without
TESTS_PER_TYPIST = 3
SEED = 81
TEXT_CHARS = 60
TEXTS = 50
BATCH = 64
BATCH_REPEATS = 30
MAX_CONNECTIONS = 256
STALL_S = 10.0


# -- what is sent --------------------------------------------------------------------------------------------------


def texts(count: int = TEXTS, chars: int = TEXT_CHARS) -> list[str]:
    """`count` different texts of exactly `chars` characters of common words."""
    from app.practice import build_drill

    out = []
    for i in range(count):
        text = ""
        seed = i
        while len(text) < chars:
            text = (text + " " + build_drill([], [], length_chars=chars + 20, seed=seed)).strip()
            seed += 1_000_003
        text = text[:chars]
        out.append(text[:-1] + "." if text.endswith(" ") else text)  # never a trailing space to type
    return out


def request_bodies(history: Sequence[int], cold: Sequence[int], passages: Sequence[str]) -> list[bytes]:
    """JSON bodies alternating a typist with history and one without (an even count: cycled, they still alternate),
    texts in turn."""
    users = [u for pair in zip(history, cold, strict=True) for u in pair]
    count = max(len(users), len(passages))
    count += count % 2
    return [
        json.dumps({"user_id": users[i % len(users)], "text": passages[i % len(passages)]}, separators=(",", ":"))
        .encode()
        for i in range(count)
    ]


# -- the open loop -------------------------------------------------------------------------------------------------


@dataclass
class RateResult:
    """What one offered rate measured (requests scheduled after the warm-up)."""

    offered: float
    seconds: float
    counted: int = 0  # requests scheduled in the timed window
    answered_s: float = 0.0  # first counted schedule → last counted answer
    statuses: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)  # of the 200s, ascending
    dropped: int = 0  # connections lost with a counted request on them, or never answered
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def errors(self) -> int:
        return self.counted - self.ok

    @property
    def achieved(self) -> float:
        span = max(self.seconds, self.answered_s)
        return self.ok / span if span else 0.0

    def latency_ms(self, q: float) -> float | None:
        value = percentile(self.latencies_s, q)
        return None if value is None else value * 1000

    def note(self, message: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(message)


class _Pool:
    """Keep-alive connections: a request goes to an idle one, or waits (FIFO) for the next one free."""

    def __init__(self, host: str, port: int, result: RateResult, counted_from: float) -> None:
        self.host, self.port = host, port
        self.result = result
        self.counted_from = counted_from  # perf_counter: requests scheduled before it are the warm-up's
        self.idle: deque[_Connection] = deque()
        self.every: list[_Connection] = []
        self.closed = False  # measured: what the connections do from now on is not counted
        self.waiting: deque[tuple[bytes, float]] = deque()
        self.connections = 0  # open or opening
        self.outstanding = 0  # counted requests not yet answered
        self.last_answer = 0.0
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def submit(self, request: bytes, scheduled: float) -> None:
        if scheduled >= self.counted_from:
            self.result.counted += 1
            self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(request, scheduled)
            return
        self.waiting.append((request, scheduled))
        if self.connections < MAX_CONNECTIONS:
            self.connections += 1
            task = asyncio.get_running_loop().create_task(self._open())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError as exc:
            self.connections -= 1
            self.result.note(f"connect failed: {exc!r}")
            if self.waiting and self.connections == 0:  # nothing will ever carry them: fail them now
                while self.waiting:
                    self.answered(None, self.waiting.popleft()[1])

    def free(self, connection: _Connection) -> None:
        if self.waiting:
            connection.send(*self.waiting.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.connections -= 1
        if connection in self.idle:
            self.idle.remove(connection)

    def answered(self, status: int | None, scheduled: float) -> None:
        """A request's end: its status, or None when it was dropped."""
        if scheduled < self.counted_from or self.closed:
            return
        now = time.perf_counter()
        result = self.result
        if status is None:
            result.dropped += 1
        else:
            result.statuses[status] += 1
            if status == 200:
                result.latencies_s.append(now - scheduled)
        self.last_answer = now
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done.set()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.scheduled: float | None = None  # of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.every.append(self)
        self.pool.free(self)

    def send(self, request: bytes, scheduled: float) -> None:
        self.scheduled = scheduled
        self.transport.write(request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except (HttpParseError, ValueError) as exc:
            self.pool.result.note(f"unparsable response: {exc}")
            self.transport.close()  # type: ignore[union-attr]
            return
        for status, keep_alive in responses:
            scheduled, self.scheduled = self.scheduled, None
            self.pool.answered(status, scheduled)  # type: ignore[arg-type]
            if not keep_alive:
                self.transport.close()  # type: ignore[union-attr]
                return
            self.pool.free(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pool.closed:
            return
        self.pool.lost(self)
        if self.scheduled is not None:
            self.pool.result.note(f"connection lost with a request in flight: {exc!r}")
            self.pool.answered(None, self.scheduled)
            self.scheduled = None
        if self.pool.waiting and self.pool.connections == 0:
            self.pool.connections += 1
            asyncio.get_running_loop().create_task(self.pool._open())


async def offer(host: str, port: int, requests: Sequence[bytes], rate: float, seconds: float, warmup_s: float,
                stall_s: float = STALL_S) -> RateResult:  # fmt: skip
    """Send `requests` (cycled) at `rate` a second for `warmup_s + seconds`; measure those of the last `seconds`."""
    if rate <= 0 or seconds <= 0:
        raise ValueError(f"a rate and a duration must be positive, got {rate} req/s for {seconds} s")
    result = RateResult(offered=rate, seconds=seconds)
    start = time.perf_counter() + 0.05
    pool = _Pool(host, port, result, counted_from=start + warmup_s)
    total = int(round((warmup_s + seconds) * rate))
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pool.submit(requests[i % len(requests)], scheduled)
    deadline = time.perf_counter() + stall_s
    while pool.outstanding and deadline > time.perf_counter():
        pool.done.clear()  # set again when the count reaches 0 (it may have been there before)
        try:
            await asyncio.wait_for(pool.done.wait(), timeout=deadline - time.perf_counter())
        except TimeoutError:
            break
    if pool.outstanding:
        result.dropped += pool.outstanding
        result.note(f"{pool.outstanding} requests unanswered {stall_s:g} s after the last was scheduled")
    result.answered_s = max(0.0, pool.last_answer - pool.counted_from)
    pool.closed = True
    for connection in pool.every:
        connection.transport.abort()  # type: ignore[union-attr]
    result.latencies_s.sort()
    return result


def run_rates(url: str, headers: dict[str, str], bodies: Sequence[bytes], rates: Sequence[float], seconds: float,
              warmup_s: float, progress=print) -> list[RateResult]:  # noqa: ANN001  # fmt: skip
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    requests = [build_request("POST", "/v1/predict/typing", f"{host}:{port}", headers, body) for body in bodies]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = []
    for rate in rates:
        result = runner(offer(host, port, requests, rate, seconds, warmup_s))
        progress(f"  {format_rate_row(result)}")
        results.append(result)
    return results


# -- the batch path ------------------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    requests: int
    chars: int  # in all the batch's requests
    cpu_s: list[float]  # per call

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_s) * 1000

    @property
    def chars_per_cpu_ms(self) -> float:
        return self.chars / self.median_cpu_ms if self.median_cpu_ms else 0.0


def time_batches(predictor, batch: list[tuple], repeats: int = BATCH_REPEATS) -> BatchResult:  # noqa: ANN001
    """CPU time of `predictor.predict_typing(batch)`, `repeats` times after two untimed calls."""
    for _ in range(2):
        predictor.predict_typing(batch)
    cpu = []
    for _ in range(repeats):
        before = time.process_time()
        predictor.predict_typing(batch)
        cpu.append(time.process_time() - before)
    return BatchResult(len(batch), sum(len(text) for _, text, _ in batch), cpu)


def serving_predictor(settings):  # noqa: ANN001, ANN201 - Settings → TypingPredictor (torch imported lazily)
    """The promoted pattern and error versions, loaded in this process."""
    from app.models.predictor import LoadedModel, TypingPredictor
    from app.models.registry import ModelRegistry

    models = {}
    with ModelRegistry(settings, migrate=False) as registry:
        for kind in ("pattern", "error"):
            entry = registry.promoted(kind)
            if entry is None:
                raise SystemExit(
                    f"no {kind} version is promoted: train one (keyscope train), or rerun with --promote-untrained"
                )
            models[kind] = LoadedModel.load(registry.artifact_path(entry), entry.version)
    return TypingPredictor(models)


# -- preparing the stack -------------------------------------------------------------------------------------------


def ensure_promoted(settings, promote_untrained: bool, progress=print) -> dict[str, str]:  # noqa: ANN001
    """The promoted versions; with `promote_untrained`, untrained networks promoted for the models that have none."""
    from app.models.nets import KINDS
    from app.models.registry import ModelRegistry

    with ModelRegistry(settings) as registry:
        versions = {}
        for kind in KINDS:
            entry = registry.promoted(kind)
            if entry is None and promote_untrained:
                entry = promote_untrained_network(registry, kind)
                progress(f"promoted an untrained {kind} network as version {entry.version}")
            if entry is not None:
                versions[kind] = entry.version
    missing = [k for k in ("pattern", "error") if k not in versions]
    if missing:
        raise SystemExit(
            f"no promoted {' and '.join(missing)} version: train one (keyscope train) or rerun with --promote-untrained"
        )
    return versions


def promote_untrained_network(registry, kind: str):  # noqa: ANN001, ANN201 - ModelRegistry → ModelVersion
    import tempfile

    from app.models.nets import build, save_artifact
    from app.models.registry import PROMOTION_METRICS

    zero = {name: 0.0 for name, _ in PROMOTION_METRICS[kind]}  # nothing was measured
    window = {"since": "", "until": "", "users": 0, "tests": 0}
    with tempfile.TemporaryDirectory() as folder:
        source = save_artifact(Path(folder), kind, build(kind), {}, {"note": "untrained, for keyscope bench predict"})
        entry = registry.register(kind, source, {"candidate": zero, "baseline": zero}, window, "bench", {})
    return registry.promote(kind, entry.version, "keyscope bench predict --promote-untrained")


def ensure_typists(settings, progress=print) -> tuple[list[int], list[int]]:  # noqa: ANN001
    """TYPISTS ids with features in the online store (stored through Kafka and the ingest job when missing) and as
    many without."""
    from app.features.online import FeatureStore

    history = list(range(HISTORY_FIRST_USER, HISTORY_FIRST_USER + TYPISTS))
    cold = list(range(COLD_FIRST_USER, COLD_FIRST_USER + TYPISTS))
    store = FeatureStore(settings)
    try:
        if len(store.get_many(history)) < TYPISTS:
            from devstack.produce import produce_tests
            from devstack.simulate import simulate_tests
            from pipelines.ingest import run_ingest

            progress(f"storing {TYPISTS} simulated typists ({TESTS_PER_TYPIST} tests each) through Kafka and ingest…")
            tests = simulate_tests(TYPISTS, TESTS_PER_TYPIST, seed=SEED, first_user_id=HISTORY_FIRST_USER, traits=True)
            asyncio.run(produce_tests(settings, tests))
            progress("ingest: " + run_ingest(settings).line())
        found = store.get_many(history)
        if len(found) < TYPISTS:
            raise SystemExit(f"only {len(found)} of {TYPISTS} typists have features in the online store after ingest")
        if store.get_many(cold):
            raise SystemExit(f"ids {cold[0]}..{cold[-1]} were meant to be unknown, but have features")
    finally:
        store.close()
    return history, cold


def wait_until_served(url: str, headers: dict[str, str], versions: dict[str, str], timeout_s: float) -> None:
    """Until the predictor answers with the promoted versions (a replica polls the registry every model_poll_s)."""
    import httpx

    expected = f"pattern:{versions['pattern']},error:{versions['error']}"
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        response = httpx.post(url + "/v1/predict/typing", headers=headers, timeout=30,
                              json={"user_id": COLD_FIRST_USER, "text": "warm up"})  # fmt: skip
        if response.status_code == 200 and response.json()["model_version"] == expected:
            return
        last = response.text[:200]
        time.sleep(0.5)
    raise SystemExit(f"the predictor did not serve {expected} within {timeout_s:.0f} s: {last}")


# -- the tables ----------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def describe_errors(result: RateResult) -> str:
    if not result.errors:
        return "0"
    parts = [f"{n} × {s}" for s, n in sorted(result.statuses.items()) if s != 200]
    if result.dropped:
        parts.append(f"{result.dropped} dropped")
    return f"{result.errors} ({', '.join(parts)})"


def format_rate_row(result: RateResult) -> str:
    return (
        f"| {result.offered:,.0f} | {result.achieved:,.0f} | {_ms(result.latency_ms(50))} "
        f"| {_ms(result.latency_ms(95))} | {_ms(result.latency_ms(99))} | {describe_errors(result)} |"
    )


def print_rates(results: Sequence[RateResult], out=None) -> None:  # noqa: ANN001
    out = out or sys.stdout
    print("| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | errors |", file=out)
    print("|---:|---:|---:|---:|---:|---:|", file=out)
    for result in results:
        print(format_rate_row(result), file=out)
    for result in results:
        for failure in result.failures:
            print(f"  {result.offered:g} req/s: {failure}", file=out)


def print_batch(result: BatchResult, out=None) -> None:  # noqa: ANN001
    out = out or sys.stdout
    print("| batch | characters | calls | CPU ms per call (median) | characters per CPU ms |", file=out)
    print("|---:|---:|---:|---:|---:|", file=out)
    print(
        f"| {result.requests} × {result.chars // max(result.requests, 1)} chars | {result.chars:,} "
        f"| {len(result.cpu_s)} | {result.median_cpu_ms:,.2f} | {result.chars_per_cpu_ms:,.0f} |",
        file=out,
    )


# -- the command ---------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[100.0, 500.0], metavar="R",
        help="offered loads, requests a second, each measured in turn (default 100 500)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds timed per rate (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each timing (default 1)")
    parser.add_argument(
        "--promote-untrained", action="store_true",
        help="on a stack with no promoted pattern/error/trajectory version, promote untrained networks first",
    )  # fmt: skip


def run_command(settings, args: argparse.Namespace) -> int:  # noqa: ANN001 - app.config.Settings
    """`keyscope bench predict`: brings the stack up; 1 if any request failed."""
    from app.api_client import api_url, service_headers
    from devstack.stack import LocalStack

    if any(rate <= 0 for rate in args.rates) or args.seconds <= 0 or args.warmup < 0:
        raise SystemExit("--rates and --seconds must be positive, --warmup 0 or more")
    LocalStack(settings).up(progress=print)
    versions = ensure_promoted(settings, args.promote_untrained)
    history, cold = ensure_typists(settings)
    url, headers = api_url(settings), service_headers(settings)
    wait_until_served(url, headers, versions, timeout_s=settings.model_poll_s * 3 + 30)
    passages = texts()
    print(
        f"keyscope bench predict: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
        f"POST /v1/predict/typing at {url}, {TEXT_CHARS}-character texts, half for {len(history)} typists with "
        f"features, half for {len(cold)} without; {args.seconds:g} s timed per rate after {args.warmup:g} s; "
        f"versions {', '.join(f'{k} {v}' for k, v in versions.items())}"
    )
    results = run_rates(url, headers, request_bodies(history, cold, passages), args.rates, args.seconds, args.warmup)
    print()
    print_rates(results)

    import torch

    from app.features.online import FeatureStore

    torch.set_num_threads(1)
    store = FeatureStore(settings)
    try:
        features = store.get_many(history)
    finally:
        store.close()
    users = [u for pair in zip(history, cold, strict=True) for u in pair]
    batch = [(features.get(users[i % len(users)]), passages[i % len(passages)], "qwerty") for i in range(BATCH)]
    result = time_batches(serving_predictor(settings), batch)
    print()
    print(f"batch path: TypingPredictor.predict_typing in this process, 1 torch thread, {result.requests} requests "
          f"(half with features) × {TEXT_CHARS} characters, {len(result.cpu_s)} calls after 2 untimed")  # fmt: skip
    print_batch(result)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 1 if any(r.errors for r in results) else 0
