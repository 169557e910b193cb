"""`keyscope bench live`: many typists typing at once with live feedback, each answer timed and checked.

    keyscope bench live [--sessions 500] [--batch-ms 200] [--seconds 30] [--warmup 5] [--clients 2]

Each session is one WebSocket to /v1/live on the stack's HTTP port, opened with its own user token (ids from
FIRST_USER), typing a different text at its own steady speed (WPM_RANGE); `--clients` processes share the sessions.
Every `batch-ms` a session sends the keys its typist pressed in that interval (an empty interval sends nothing, as a
browser would), on schedule whatever the answers do. An answer's latency runs from its batch's send to its arrival;
`lag` is how late the batch left after its schedule (a load generator short of CPU shows there; it also delays
reading answers, which the latency then includes). Batches sent in the first `warmup` seconds are not counted.

Every answer is checked against its own session: its session_id is the one `ready` gave this connection, its `seq`
is the next batch this connection sent, and its `position` and `keystrokes` are what that session's keys so far
make. A wrong answer is counted; any wrong answer fails the run (exit status 1), as does any error or dropped
connection. Sessions are not ended: nothing is submitted, and their state leaves the stack a minute later.

Last, the server's own work per answer is timed in this process (no network, no Ray): one session's batches
decoded, validated, applied and encoded, in CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field

from bench.serve import percentile

FIRST_USER = 8_150_001  # the benchmark's typists; nothing stores them
WPM_RANGE = (35.0, 95.0)
TEXT_WORDS = 120  # long enough that the fastest typist is still typing when the timing ends
OPEN_CONCURRENCY = 50  # sessions being opened at once (each `start` reads the typist's insights and a prediction)


@dataclass
class SessionResult:
    latencies_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    answers: int = 0
    wrong: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Typist:
    """One session's keys: the text typed without errors at a steady pace."""

    user_id: int
    text: str
    interval_ms: float

    def keys_until(self, first: int, end_ms: float) -> tuple[list[dict], int]:
        """The keystrokes from the text's `first` character pressed before `end_ms`, and the next index."""
        keys, i = [], first
        while i < len(self.text) and i * self.interval_ms < end_ms:
            down = round(i * self.interval_ms)
            keys.append({"key": self.text[i], "down": down, "up": down + 60})
            i += 1
        return keys, i


def typists(count: int, seed: int = 18) -> list[Typist]:
    """`count` typists, each with a text of common words and a steady speed in WPM_RANGE."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        wpm = rng.uniform(*WPM_RANGE)
        out.append(Typist(FIRST_USER + n, _text(rng), 60_000 / (wpm * 5)))
    return out


WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word but "
    "not what all were we when your can said there use an each which she do how their if will up other about out "
    "many then them these so some her would make like him into time has look two more write go see number no way "
    "could people my than first water been call who oil its now find long down day did get come made may part"
).split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(TEXT_WORDS))


async def run_session(url: str, token: str, typist: Typist, batch_ms: float, t_start: float, t_count: float,
                      t_stop: float, opener: asyncio.Semaphore, result: SessionResult) -> None:  # fmt: skip
    from websockets.asyncio.client import connect

    try:
        async with opener:
            ws = await connect(url, open_timeout=60, max_queue=None, compression=None)
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(json.dumps({"type": "start", "user_id": typist.user_id, "text": typist.text}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if ready.get("type") != "ready":
            result.errors.append(f"user {typist.user_id}: {ready}")
            await ws.close()
            return
    except Exception as exc:
        result.errors.append(f"user {typist.user_id} could not start: {exc!r}")
        return
    session_id = ready["session_id"]
    sent: dict[int, tuple[float, float, int]] = {}  # seq → (scheduled, sent, expected position)

    async def receive() -> None:
        expected_seq = 0
        async for raw in ws:
            now = time.perf_counter()
            answer = json.loads(raw)
            if answer.get("type") != "live":
                result.errors.append(f"user {typist.user_id}: {answer}")
                sent.pop(expected_seq, None)
                expected_seq += 1
                continue
            scheduled, at, position = sent.pop(answer.get("seq"), (0.0, None, None))
            if (answer["session_id"] != session_id or answer.get("seq") != expected_seq or at is None
                    or answer["position"] != position or answer["keystrokes"] != position):  # fmt: skip
                result.wrong += 1
            expected_seq += 1
            result.answers += 1
            if at is not None and scheduled >= t_count:
                result.latencies_ms.append((now - at) * 1000)
                result.lags_ms.append((at - scheduled) * 1000)

    receiver = asyncio.create_task(receive())
    try:
        seq, next_key, batch = 0, 0, 0
        # Each session keeps its own phase within the batch interval, like typists who started at different times.
        phase = random.random() * batch_ms / 1000
        while True:
            scheduled = t_start + phase + batch * batch_ms / 1000
            if scheduled >= t_stop or next_key >= len(typist.text):
                break
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            keys, next_key = typist.keys_until(next_key, (batch + 1) * batch_ms)
            batch += 1
            if not keys:
                continue
            sent[seq] = (scheduled, time.perf_counter(), next_key)
            await ws.send(json.dumps({"type": "keys", "keystrokes": keys, "seq": seq}))
            seq += 1
        deadline = time.perf_counter() + 30
        while sent and time.perf_counter() < deadline and not receiver.done():
            await asyncio.sleep(0.01)
        if sent:
            result.errors.append(f"user {typist.user_id}: {len(sent)} batches unanswered")
    except Exception as exc:
        result.errors.append(f"user {typist.user_id}: {exc!r}")
    finally:
        receiver.cancel()
        await ws.close()


def merge(results: list[SessionResult]) -> SessionResult:
    merged = SessionResult()
    for r in results:
        merged.latencies_ms += r.latencies_ms
        merged.lags_ms += r.lags_ms
        merged.answers += r.answers
        merged.wrong += r.wrong
        merged.errors += r.errors
    return merged


async def run_load(url: str, tokens: list[str], sessions: list[Typist], batch_ms: float, t_start: float,
                   t_count: float, t_stop: float) -> SessionResult:  # fmt: skip
    """These sessions at once, typing from `t_start` (time.perf_counter, the machine's monotonic clock)."""
    opener = asyncio.Semaphore(OPEN_CONCURRENCY)
    results = [SessionResult() for _ in sessions]
    await asyncio.gather(*(
        run_session(url, token, typist, batch_ms, t_start, t_count, t_stop, opener, result)
        for token, typist, result in zip(tokens, sessions, results)
    ))  # fmt: skip
    return merge(results)


def client_process(url: str, tokens: list[str], sessions: list[Typist], batch_ms: float, t_start: float,
                   t_count: float, t_stop: float) -> SessionResult:  # fmt: skip
    """One load-generating process's share of the sessions (on uvloop when it is installed)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(run_load(url, tokens, sessions, batch_ms, t_start, t_count, t_stop))


def run_clients(url: str, tokens: list[str], sessions: list[Typist], batch_ms: float, seconds: float, warmup: float,
                clients: int) -> SessionResult:  # fmt: skip
    """All sessions from `clients` processes, typing together once all are likely open (opening is not timed)."""
    from concurrent.futures import ProcessPoolExecutor

    t_start = time.perf_counter() + 5.0 + len(sessions) / 50 / clients
    t_count, t_stop = t_start + warmup, t_start + warmup + seconds
    shares = [slice(i, len(sessions), clients) for i in range(clients)]
    with ProcessPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client_process, url, tokens[share], sessions[share], batch_ms, t_start, t_count, t_stop)
                   for share in shares]  # fmt: skip
        return merge([f.result() for f in futures])


def answer_cpu_us(typist: Typist, batch_ms: float, repeats: int = 5) -> tuple[int, float]:
    """(batches, µs per batch): one session's whole text in `batch_ms` batches through what the server does per
    message (decode and validate, update the session, hints, encode), in this process; best of `repeats`."""
    import orjson

    from app.live.history import History
    from app.live.protocol import Start, decode, parse
    from app.live.session import LiveSession

    frames, next_key, batch = [], 0, 0
    while next_key < len(typist.text):
        keys, next_key = typist.keys_until(next_key, (batch + 1) * batch_ms)
        batch += 1
        if keys:
            frames.append(json.dumps({"type": "keys", "keystrokes": keys, "seq": len(frames)}))
    history = History.from_sources({"mean_wpm": 60.0, "weak_pairs": [{"key": "th", "mean_time_ms": 300.0}]}, None)
    best = float("inf")
    for _ in range(repeats):
        session = LiveSession.begin(Start(typist.user_id, typist.text, "qwerty", "en", None, None), history, 0, 20_000)
        started = time.process_time()
        for frame in frames:
            orjson.dumps(session.apply(parse(decode(frame))))  # type: ignore[arg-type]
        best = min(best, time.process_time() - started)
    return len(frames), best / len(frames) * 1e6


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def print_table(sessions: int, batch_ms: float, seconds: float, result: SessionResult, out=None) -> None:  # noqa: ANN001
    latencies, lags = sorted(result.latencies_ms), sorted(result.lags_ms)
    print(f"{'sessions':>8}  {'batches/s':>9}  {'answers':>8}  {'p50 ms':>7}  {'p95 ms':>7}  {'p99 ms':>7}  "
          f"{'max ms':>7}  {'lag p95':>7}  {'wrong':>5}  {'errors':>6}", file=out)  # fmt: skip
    print(f"{sessions:>8}  {len(latencies) / seconds:>9.0f}  {len(latencies):>8}  {_ms(percentile(latencies, 50)):>7}  "
          f"{_ms(percentile(latencies, 95)):>7}  {_ms(percentile(latencies, 99)):>7}  "
          f"{_ms(latencies[-1] if latencies else None):>7}  {_ms(percentile(lags, 95)):>7}  {result.wrong:>5}  "
          f"{len(result.errors):>6}", file=out)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=500, help="concurrent live sessions (default 500)")
    parser.add_argument("--batch-ms", type=float, default=200.0, help="each session sends a batch this often")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds timed (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of typing before the timing (default 5)")
    parser.add_argument("--clients", type=int, default=2,
                        help="load-generating processes sharing the sessions (default 2: one Python process cannot "
                        "drive 500 WebSockets at 5 batches/s each without falling behind its schedule)")  # fmt: skip


def run_command(settings, args: argparse.Namespace) -> int:  # noqa: ANN001 - app.config.Settings
    """`keyscope bench live`: brings the stack up; 1 if any answer was wrong or any session failed."""
    from app.api_client import api_url
    from app.auth import issue_token, settings_with_local_secrets
    from devstack.stack import LocalStack

    if args.sessions < 1 or args.clients < 1 or args.batch_ms <= 0 or args.seconds <= 0 or args.warmup < 0:
        raise SystemExit("--sessions, --clients, --batch-ms and --seconds must be positive, --warmup 0 or more")
    LocalStack(settings).up(progress=print)
    secret = settings_with_local_secrets(settings).token_secrets[0]
    sessions = typists(args.sessions)
    tokens = [issue_token(secret, "user", user_id=t.user_id, ttl_s=3600) for t in sessions]
    url = api_url(settings).replace("http://", "ws://") + "/v1/live"
    print(f"keyscope bench live: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
          f"{args.sessions} sessions on {url}, a batch every {args.batch_ms:g} ms each while its typist types "
          f"({WPM_RANGE[0]:g}-{WPM_RANGE[1]:g} WPM), {args.seconds:g} s timed after {args.warmup:g} s, from "
          f"{args.clients} load-generating processes")  # fmt: skip
    result = run_clients(url, tokens, sessions, args.batch_ms, args.seconds, args.warmup, args.clients)
    print()
    print_table(args.sessions, args.batch_ms, args.seconds, result)
    for message in result.errors[:5]:
        print(f"  error: {message}")
    batches, cpu_us = answer_cpu_us(sessions[0], args.batch_ms)
    print(f"an answer's own work, in this process: {cpu_us:.0f} µs of CPU per batch (one session's {batches} batches, "
          "best of 5)")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 1 if result.wrong or result.errors else 0
