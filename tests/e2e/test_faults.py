"""Faults on the real local stack; each test reconciles counts at the end: produced = stored + dead-lettered,
and no test is stored twice (raw keystrokes and the per-test key and pair stats included)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from app import faults
from app.clickhouse.client import clickhouse_client
from app.codec import encode_test
from app.dlq import list_dead_letters, replay_dead_letters
from app.kafka import user_key
from app.schemas import TypingTest, parse_submission
from devstack.simulate import simulate_tests
from devstack.stack import _stop_pid
from pipelines.ingest import run_ingest
from tests.api import api_client

pytestmark = pytest.mark.stack


def post(api_url: str, tests: list[dict]) -> list[httpx.Response]:
    with api_client(api_url, timeout=60) as client:
        return [client.post("/v1/tests", json=t) for t in tests]


def scalar(settings, sql: str, **parameters) -> int:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return int(client.query(sql, parameters=parameters).result_rows[0][0])
    finally:
        client.close()


def assert_stored_exactly_once(settings, tests: list[dict]) -> None:
    """Every test has one result row, one key-stats row, one copy of each keystroke, and the per-test key stats count
    each presented-key press once (read without FINAL: a second copy of a test would show)."""
    for test in tests:
        where = {"u": test["user_id"], "t": test["test_id"]}
        assert (
            scalar(
                settings, "SELECT count() FROM test_results WHERE user_id={u:UInt64} AND test_id={t:String}", **where
            )
            == 1
        )
        assert scalar(
            settings, "SELECT count() FROM keystrokes WHERE user_id={u:UInt64} AND test_id={t:String}", **where
        ) == len(test["keystrokes"])
        assert scalar(
            settings, "SELECT count() FROM test_keys WHERE user_id={u:UInt64} AND test_id={t:String}", **where
        ) == 1
    for user in {t["user_id"] for t in tests}:
        pressed = scalar(settings, "SELECT count() FROM keystrokes WHERE user_id={u:UInt64} AND target != ''", u=user)
        aggregated = scalar(
            settings, "SELECT sum(arraySum(presses)) FROM test_keys WHERE user_id={u:UInt64}", u=user
        )
        assert aggregated == pressed


def produce(settings, messages: list[tuple[bytes, bytes]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=8 << 20)
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(settings.keystroke_topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


@pytest.mark.parametrize("mode", ["drain", "follow"])  # Ray Data's read_kafka, the long-lived readers
@pytest.mark.parametrize("point", ["after_read", "mid_write", "after_write"])
def test_the_job_killed_mid_batch_then_restarted_loses_and_duplicates_nothing(
    point, mode, stack, ray_driver, api_url, stack_settings
):
    run_ingest(stack_settings)  # start from a drained topic
    first_user = {"after_read": 40_000, "after_write": 40_100, "mid_write": 40_200}[point]
    first_user += 50 if mode == "follow" else 0
    tests = simulate_tests(4, 3, seed=first_user, first_user_id=first_user)
    assert all(r.status_code == 202 for r in post(api_url, tests))
    env = {**os.environ, **stack_settings.as_env(), "KEYSCOPE_FAULT_INJECTION": point}
    command = [sys.executable, "-m", "pipelines.ingest", *(["--follow"] if mode == "follow" else [])]
    crashed = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout.decode()[-2000:]
    report = run_ingest(stack_settings)
    assert report.tests_written + report.duplicates_skipped == len(tests)
    if point == "after_write":
        assert report.tests_written == 0  # everything had been written; only the offsets were missing
    if point == "mid_write":
        assert report.tests_written == len(tests)  # raw keystrokes were in, but no test was complete
    assert_stored_exactly_once(stack_settings, tests)


def test_clickhouse_unavailable_for_a_while_the_job_waits_and_catches_up(stack, ray_driver, api_url, stack_settings):
    run_ingest(stack_settings)
    tests = simulate_tests(3, 2, seed=31, first_user_id=41_000)
    assert all(r.status_code == 202 for r in post(api_url, tests))
    state = stack._state()
    _stop_pid(int(state["clickhouse"]["pid"]))
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(report=run_ingest(stack_settings)))
    job.start()
    time.sleep(6)
    assert job.is_alive()  # retrying with back-off, not failing and not moving on
    stack.start_clickhouse(state)
    job.join(timeout=240)
    assert not job.is_alive()
    assert result["report"].tests_written == len(tests)
    assert_stored_exactly_once(stack_settings, tests)


def test_clickhouse_killed_mid_insert_the_job_retries_and_stores_each_test_once(
    stack, ray_driver, api_url, stack_settings
):
    """SIGKILL of the endpoint while a batch is being written: its keystrokes acknowledged, the other tables' inserts
    in flight or not started. The job retries until the endpoint is back, then writes what is missing, once."""
    run_ingest(stack_settings)
    tests = simulate_tests(4, 3, seed=32, first_user_id=41_100)
    assert all(r.status_code == 202 for r in post(api_url, tests))
    state = stack._state()
    killed = threading.Event()

    def kill_after_keystrokes() -> None:  # at `mid_write`: a batch's keystrokes are in
        if not killed.is_set():
            killed.set()
            _stop_pid(int(state["clickhouse"]["pid"]), signal.SIGKILL)

    result: dict = {}
    with faults.armed("mid_write", kill_after_keystrokes):
        job = threading.Thread(target=lambda: result.update(report=run_ingest(stack_settings)))
        job.start()
        assert killed.wait(timeout=120)
        time.sleep(3)
        assert job.is_alive()  # retrying, the offsets not stored
        stack.start_clickhouse(state)  # ClickHouse's own recovery of a killed store: unfinished parts are dropped
        job.join(timeout=240)
    assert not job.is_alive()
    assert result["report"].tests_written == len(tests)
    assert_stored_exactly_once(stack_settings, tests)
    assert run_ingest(stack_settings).messages == 0  # the offsets were stored past them


def test_broker_down_answers_503_with_retry_after_and_loses_nothing_acknowledged(
    stack, ray_driver, api_url, stack_settings
):
    run_ingest(stack_settings)
    before = simulate_tests(2, 2, seed=41, first_user_id=42_000)
    assert all(r.status_code == 202 for r in post(api_url, before))
    state = stack._state()
    _stop_pid(int(state["broker"]["pid"]), signal.SIGINT)
    during = simulate_tests(1, 1, seed=42, first_user_id=42_100)[0]
    response = post(api_url, [during])[0]
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "broker_unavailable"
    stack.start_broker(state)
    deadline = time.monotonic() + 90
    while True:  # a client retrying as Retry-After says
        response = post(api_url, [during])[0]
        if response.status_code == 202:
            break
        assert response.status_code == 503 and time.monotonic() < deadline
        time.sleep(int(response.headers["Retry-After"]))
    run_ingest(stack_settings)
    assert_stored_exactly_once(stack_settings, [*before, during])


def impossible_but_well_encoded(good: TypingTest) -> bytes:
    """A message that decodes structurally but holds decreasing key-down times."""
    downs = good.down_ms.copy()
    downs[3] = downs[2] - 50
    ups = np.where(good.up_ms >= 0, np.maximum(good.up_ms, downs), -1).astype(np.int32)
    return encode_test(TypingTest(**{**good.__dict__, "down_ms": downs, "up_ms": ups}))


def test_poison_messages_are_dead_lettered_with_reasons_and_replayed_after_a_fix(
    stack, ray_driver, api_url, stack_settings
):
    run_ingest(stack_settings)
    user = 43_000
    candidates = sorted(
        (parse_submission(t) for t in simulate_tests(1, 8, seed=51, first_user_id=user)),
        key=lambda t: len(encode_test(t)),
    )
    valid = [*candidates[:3], candidates[-1]]  # the three smallest, and the largest as the oversize one
    big = encode_test(valid[3])
    impossible = impossible_but_well_encoded(candidates[3])
    assert max(len(encode_test(t)) for t in valid[:3]) < len(big) and len(impossible) < len(big)
    messages = [
        (user_key(user), b"\xff\xfe garbage bytes that are long enough to hold a header......"),
        (user_key(user), encode_test(valid[0])),
        (user_key(user), impossible),
        (user_key(user), encode_test(valid[1])),
        (user_key(user), big),  # over the limit this pass runs with
        (user_key(user), encode_test(valid[2])),
    ]
    produce(stack_settings, messages)
    limited = stack_settings.with_overrides(max_message_bytes=len(big) - 1)
    report = run_ingest(limited)
    assert report.dead_lettered == 3 and report.tests_written == 3  # the partition was never blocked
    letters = [d.letter for d in list_dead_letters(stack_settings, 10_000) if d.letter.key == user_key(user)]
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 3
    assert any("magic" in r for r in reasons) and any("decrease" in r for r in reasons)
    assert any("exceeds the limit" in r for r in reasons)

    # The fix: the limit goes back up; replay re-submits the dead letters, and the oversize test now lands.
    replayed = replay_dead_letters(stack_settings)
    assert replayed.replayed >= 3
    assert replay_dead_letters(stack_settings).replayed == 0  # each letter is replayed once
    run_ingest(stack_settings)
    assert_stored_exactly_once(
        stack_settings,
        [{"user_id": user, "test_id": t.test_id, "keystrokes": list(range(t.keystroke_count))} for t in valid],
    )
    # Reconciled for this user: 6 produced = 4 stored + 2 still dead after the fix (dead-lettered again).
    mine = [d.letter for d in list_dead_letters(stack_settings, 10_000) if d.letter.key == user_key(user)]
    assert len(mine) == 3 + 2
    assert scalar(stack_settings, "SELECT count() FROM test_results WHERE user_id={u:UInt64}", u=user) == 4
