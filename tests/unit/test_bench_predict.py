"""The pieces of `keyscope bench predict` that need no stack: the texts and bodies it sends, the open loop against a
tiny in-process HTTP server (schedule, latency from the schedule, errors, unanswered requests), the batch timing on
untrained networks, and both tables."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest

from bench.predict import (
    TEXT_CHARS,
    BatchResult,
    RateResult,
    offer,
    print_batch,
    print_rates,
    request_bodies,
    texts,
    time_batches,
)


def test_texts_are_sixty_characters_of_words_and_all_different():
    passages = texts(20)
    assert all(len(t) == TEXT_CHARS and t == t.strip() and " " in t for t in passages)
    assert len(set(passages)) == 20


def test_bodies_alternate_typists_with_and_without_history_even_when_cycled():
    history, cold = [1, 2, 3], [101, 102, 103]
    bodies = [json.loads(b) for b in request_bodies(history, cold, texts(5))]
    assert len(bodies) % 2 == 0
    cycled = [bodies[i % len(bodies)]["user_id"] for i in range(3 * len(bodies))]
    assert all((u in history) == (i % 2 == 0) for i, u in enumerate(cycled))
    assert {b["text"] for b in bodies} == set(texts(5))


# -- the open loop against an in-process server ---------------------------------------------------------------------


async def _server(delay_s: float = 0.0, fail_every: int = 0, silent_after: int = 0):
    """Keep-alive HTTP/1.1: 200 after `delay_s`; every `fail_every`-th answer a 503; no answers after `silent_after`."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                count += 1
                if silent_after and count > silent_after:
                    continue
                await asyncio.sleep(delay_s)
                status = b"503 Service Unavailable" if fail_every and count % fail_every == 0 else b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _offer(rate: float, seconds: float, **server_options) -> RateResult:
    async def main() -> RateResult:
        server = await _server(**server_options)
        port = server.sockets[0].getsockname()[1]
        request = b"POST /v1/predict/typing HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        async with server:
            return await offer("127.0.0.1", port, [request], rate, seconds, warmup_s=0.2, stall_s=0.5)

    return asyncio.run(main())


def test_the_offered_rate_is_achieved_and_latency_counts_from_the_schedule():
    result = _offer(200, 1.0, delay_s=0.01)
    assert result.counted == 200 and result.errors == 0 and result.ok == 200  # the warm-up's 40 not counted
    assert result.achieved == pytest.approx(200, rel=0.1)
    assert 10 <= result.latency_ms(50) < 60 and result.latencies_s == sorted(result.latencies_s)


def test_a_slow_server_builds_a_queue_that_shows_in_the_latency():
    # Answers take 20 ms each and connections are many: the open loop keeps sending on new connections.
    result = _offer(100, 0.5, delay_s=0.02)
    assert result.errors == 0 and result.latency_ms(99) >= 20


def test_error_statuses_and_unanswered_requests_are_errors():
    failing = _offer(100, 0.5, fail_every=5)
    assert failing.statuses[503] == pytest.approx(10, abs=2) and failing.errors == failing.statuses[503]
    silent = _offer(100, 0.5, silent_after=30)  # answers the warm-up (20) and 10 more, then nothing
    assert silent.ok == 10 and silent.dropped == 40 and silent.errors == 40
    assert "unanswered" in silent.failures[-1]


def test_nothing_listening_fails_every_request():
    async def main() -> RateResult:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # bound, not listening: connections are refused
            return await offer("127.0.0.1", port, [b"GET / HTTP/1.1\r\n\r\n"], 50, 0.2, warmup_s=0.0, stall_s=0.5)

    result = asyncio.run(main())
    assert result.counted == 10 and result.ok == 0 and result.errors == 10
    assert "connect failed" in result.failures[0]


def test_rates_and_durations_must_be_positive():
    with pytest.raises(ValueError, match="must be positive"):
        asyncio.run(offer("127.0.0.1", 1, [b""], 0, 1.0, 0.0))


# -- the batch path --------------------------------------------------------------------------------------------------


def test_the_batch_timing_runs_the_predictor_on_every_character(tmp_path):
    from app.models.nets import build, save_artifact
    from app.models.predictor import LoadedModel, TypingPredictor

    models = {
        kind: LoadedModel.load(save_artifact(tmp_path / kind, kind, build(kind), {}, {}), "v1")
        for kind in ("pattern", "error")
    }
    batch = [(None, text, "qwerty") for text in texts(8)]
    result = time_batches(TypingPredictor(models), batch, repeats=5)
    assert (result.requests, result.chars, len(result.cpu_s)) == (8, 8 * TEXT_CHARS, 5)
    assert all(s > 0 for s in result.cpu_s) and result.chars_per_cpu_ms > 0


# -- the tables ------------------------------------------------------------------------------------------------------


def test_both_tables():
    good = RateResult(offered=100, seconds=2.0, counted=200, answered_s=2.01, latencies_s=list(np.full(200, 0.012)))
    good.statuses[200] = 200
    bad = RateResult(offered=500, seconds=2.0, counted=1000, answered_s=4.0, latencies_s=[0.5] * 900, dropped=40,
                     failures=["40 requests unanswered 10 s after the last was scheduled"])  # fmt: skip
    bad.statuses.update({200: 900, 429: 60})
    out = io.StringIO()
    print_rates([good, bad], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | errors |"
    assert lines[2] == "| 100 | 100 | 12.0 | 12.0 | 12.0 | 0 |"
    assert lines[3] == "| 500 | 225 | 500.0 | 500.0 | 500.0 | 100 (60 × 429, 40 dropped) |"
    assert lines[4] == "  500 req/s: 40 requests unanswered 10 s after the last was scheduled"
    out = io.StringIO()
    print_batch(BatchResult(64, 3840, [0.004, 0.005, 0.006]), out)
    assert out.getvalue().splitlines()[2] == "| 64 × 60 chars | 3,840 | 3 | 5.00 | 768 |"
