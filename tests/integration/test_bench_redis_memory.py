"""`keyscope bench redis-memory` on the real Redis (DB 14, flushed here and nowhere else): it finds the typists,
measures each key family where a typist holds one and counts 0 where not."""

from __future__ import annotations

import os

import pytest
import redis

from bench.redis_memory import FAMILIES, family_bytes, report_rows, sample_typists, typists_in_cache

REDIS_URL = os.environ.get("KEYSCOPE_TEST_MEMORY_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
def client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"this test needs the real Redis at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_each_family_is_measured_where_held_and_zero_where_not(client):
    big, small = 8_200_001, 8_200_002
    client.hset(f"keyscope:user:{big}", mapping={"insights": b"x" * 20_000, "keys": b"y" * 30_000})
    client.set(f"keyscope:user:{big}:gen", 3)
    client.set(f"keyscope:features:{big}", b"f" * 4_000)
    client.set(f"keyscope:user:{small}:gen", 1)
    client.set("keyscope:practice:texts:abc", b"not a typist's key")

    typists = sample_typists(typists_in_cache(client), 10, seed=1)
    assert typists == [big, small]
    measured = family_bytes(client, typists)
    assert set(measured) == {label for label, _ in FAMILIES}
    assert measured["cached reads"][0] > 50_000 and measured["cached reads"][1] == 0
    assert measured["online features"][0] > 4_000 and measured["online features"][1] == 0
    assert all(value > 0 for value in measured["cache generation"])
    assert measured["live resume window"] == [0, 0]

    rows = {row[0]: row for row in report_rows(measured)}
    assert rows["cached reads"][1] == "1/2" and rows["live resume window"][2] == "-"
    total = float(rows["total"][-1].replace(",", ""))
    assert total == pytest.approx(sum(sum(v) / 2 for v in measured.values()), abs=1)
    assert len(sample_typists(typists, 1, seed=1)) == 1 and sample_typists(typists, 1, seed=1)[0] in typists
