"""The local stack's lifecycle on real processes: idempotent up, status, and a down that stops only what up
started (the broker with SIGINT, so it keeps its data)."""

from __future__ import annotations

import asyncio

import redis

from app.config import Settings
from app.kafka import TestProducer, end_offsets, ensure_topics
from app.stack import LocalStack, port_open


def test_second_up_starts_nothing_and_status_reports_every_service(stack, stack_settings):
    before = stack._state()
    statuses = LocalStack(stack_settings).up()
    assert stack._state() == before  # same processes: nothing restarted
    assert {s.name: s.running for s in statuses} == dict.fromkeys(
        ["kafka", "clickhouse", "redis", "ray", "serve"], True
    )
    assert all(s.started_by_stack for s in statuses if s.name != "redis")


def test_down_stops_only_what_up_started_and_the_broker_keeps_its_data(tmp_path):
    settings = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path / "stack"),
            "KAFKA_BOOTSTRAP": "127.0.0.1:39092",
            "CLICKHOUSE_URL": "http://127.0.0.1:38123/default",
            "REDIS_URL": "redis://127.0.0.1:36379/0",  # nothing answers here: the stack starts its own
        }
    )
    local = LocalStack(settings)
    state: dict = {}
    local.start_broker(state)
    local.start_clickhouse(state)
    local.start_redis(state)
    assert set(state) == {"broker", "clickhouse", "redis"}

    async def produce_one() -> None:
        await ensure_topics(settings)
        producer = TestProducer(settings)
        try:
            await producer.send(1, b"kept across restarts")
        finally:
            await producer.close()

    asyncio.run(produce_one())
    assert sum(asyncio.run(end_offsets(settings, settings.keystroke_topic)).values()) == 1
    assert sorted(local.down()) == ["broker", "clickhouse", "redis"]
    assert not port_open("127.0.0.1", 39092) and not port_open("127.0.0.1", 38123)
    assert not port_open("127.0.0.1", 36379)

    # A Redis that was already running is used, never stopped.
    machine_redis = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path / "stack"),
            "KAFKA_BOOTSTRAP": "127.0.0.1:39092",
            "CLICKHOUSE_URL": "http://127.0.0.1:38123/default",
        }
    )
    if redis.Redis.from_url(machine_redis.redis_url).ping():
        again = LocalStack(machine_redis)
        state = {}
        again.start_broker(state)
        again.start_redis(state)
        assert "redis" not in state
        # The broker stopped with SIGINT wrote its log: the message is still there after a restart.
        assert sum(asyncio.run(end_offsets(machine_redis, machine_redis.keystroke_topic)).values()) == 1
        assert again.down() == ["broker"]
        assert redis.Redis.from_url(machine_redis.redis_url).ping()
