"""The local stack's lifecycle on real processes: idempotent up, status, and a down that stops only what up
started (the broker with SIGINT, so it keeps its data)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

import redis

from app.config import Settings
from app.kafka import TestProducer, end_offsets, ensure_topics
from devstack.stack import LocalStack, port_open


def test_second_up_starts_nothing_and_status_reports_every_service(stack, stack_settings):
    before = stack._state()
    statuses = LocalStack(stack_settings).up()
    assert stack._state() == before  # same processes: nothing restarted
    assert {s.name: s.running for s in statuses} == dict.fromkeys(
        ["kafka", "clickhouse", "redis", "ray", "serve", "serve/live"], True
    )  # serve: the `keyscope` Serve application at /; serve/live: the `live` one at /v1/live
    assert all(s.started_by_stack for s in statuses if s.name != "redis")


def test_down_stops_only_what_up_started_and_the_broker_keeps_its_data(tmp_path):
    # Ports below Linux's ephemeral range (32768-60999): in it, a client's outgoing connection can hold the port
    # at the moment the broker binds it (a CI run failed so with 39092).
    settings = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path / "stack"),
            "KAFKA_BOOTSTRAP": "127.0.0.1:31092",
            "CLICKHOUSE_URL": "http://127.0.0.1:31123/default",
            "REDIS_URL": "redis://127.0.0.1:31379/0",  # nothing answers here: the stack starts its own
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
    assert not port_open("127.0.0.1", 31092) and not port_open("127.0.0.1", 31123)
    assert not port_open("127.0.0.1", 31379)

    # A Redis that was already running is used, never stopped.
    machine_redis = Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(tmp_path / "stack"),
            "KAFKA_BOOTSTRAP": "127.0.0.1:31092",
            "CLICKHOUSE_URL": "http://127.0.0.1:31123/default",
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


def _listeners() -> dict[str, list[str]]:
    """Socket inode → local address of every listening TCP socket on the machine (IPv4 and IPv6)."""
    found: dict[str, list[str]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            if width == 8:
                address = ".".join(str(b) for b in reversed(bytes.fromhex(address_hex)))
            else:
                words = [bytes.fromhex(address_hex[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
                address = ipaddress.IPv6Address(bytes.fromhex("".join(words))).compressed
            found.setdefault(fields[9], []).append(f"{address}:{int(port_hex, 16)}")
    return found


def test_no_process_of_the_stack_listens_beyond_loopback(stack, api_url):
    from devstack.stack import _session_members

    state = stack._state()
    pids = {info["pid"] for info in state.values() if isinstance(info, dict) and info.get("pid")}
    pids |= set(_session_members(state["ray"]["pid"]))
    listeners = _listeners()
    exposed, checked = [], 0
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # exited meanwhile
        for link in links:
            if link.startswith("socket:["):
                for address in listeners.get(link[8:-1], []):
                    checked += 1
                    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
                    if not (getattr(ip, "ipv4_mapped", None) or ip).is_loopback:
                        exposed.append(f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()}) on {address}")
    assert checked >= 5  # broker, ClickHouse, GCS, dashboard, Serve at least
    assert not exposed, exposed
