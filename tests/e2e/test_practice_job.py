"""The practice pre-generation job and its ingest hook on the real stack, with the real language model (a small
budget): `python -m pipelines.practice --dry-run` plans from the queues and writes nothing; a run writes passing
texts for a signature into ClickHouse and the Redis hot set and takes it off both queues; a run for a signature with
enough texts writes nothing; and an insights refresh after an ingest pass records each typist's signature and queues
the signatures typists moved to, for which the job then writes the texts the typist's practice-text route serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import pipelines.insights as insights_job
import pipelines.practice as practice_job
from app.clickhouse.client import clickhouse_client
from app.practice.served import signature_key
from app.practice.signature import needs_from_insights
from app.practice.texts import CHANGED_KEY, TEXTS_PREFIX, WANTED_KEY, TextCache, claim_key
from devstack.simulate import simulate_tests
from pipelines.entry import job_parser
from pipelines.ingest import run_ingest
from tests.api import api_client

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
# A signature whose candidates pass with seed 0 and this small budget (most of its 8 did when this was written).
SIGNATURE = "qwerty-en-s1-in.s"
SMALL = ("--candidates", "4", "--prompts", "2", "--max-new-tokens", "48")
TYPIST = 7_700_001


def options(*argv: str):
    return job_parser("python -m pipelines.practice", practice_job.DESCRIPTION, practice_job.add_arguments).parse_args(
        list(argv)
    )


def stored_texts(settings, signature: str) -> list[tuple[str, str]]:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return client.query(
            "SELECT text_id, score FROM practice_texts FINAL WHERE signature = {s:String} ORDER BY text_id",
            parameters={"s": signature},
        ).result_rows
    finally:
        client.close()


def queued(settings, key: str) -> set[str]:
    return {member.decode() for member in redis.Redis.from_url(settings.redis_url).zrange(key, 0, -1)}


def test_the_job_writes_passing_texts_for_a_queued_signature_and_takes_it_off_the_queues(
    stack, ray_driver, stack_settings
):
    # Queued as the ingest hook queues it. (Not on the wanted queue: the practice deployment's own background writer
    # serves that one and would write for it at the same time.)
    cache = TextCache(stack_settings)
    try:
        cache.changed([SIGNATURE])
    finally:
        cache.close()
    # The dry run, as `ray job submit` runs the module: the queued signature is planned, nothing is written.
    env = {**os.environ, **stack_settings.as_env(), "PYTHONPATH": str(REPO)}
    dry = subprocess.run(
        [sys.executable, "-m", "pipelines.practice", "--dry-run", "--max-signatures", "1000"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert dry.returncode == 0, dry.stderr
    planned = dry.stdout.splitlines()
    assert any(line.startswith(f"{SIGNATURE}  stored 0, writes up to 8") for line in planned), dry.stdout
    assert stored_texts(stack_settings, SIGNATURE) == []
    assert SIGNATURE in queued(stack_settings, CHANGED_KEY)

    report = practice_job.run_generation(
        stack_settings, options("--signature", SIGNATURE, "--texts-per-signature", "2", *SMALL)
    )
    assert (report.considered, report.wanted, report.written, report.failed) == (1, 1, 1, 0), report.line()
    assert report.new_tokens > 0 and report.candidates == 2 * 4
    rows = stored_texts(stack_settings, SIGNATURE)
    assert 1 <= len(rows) == report.texts <= 2
    assert all(json.loads(score)["passed"] for _, score in rows)
    hot = redis.Redis.from_url(stack_settings.redis_url).hgetall(TEXTS_PREFIX + SIGNATURE)
    assert {key.decode() for key in hot} == {text_id for text_id, _ in rows}
    assert SIGNATURE not in queued(stack_settings, WANTED_KEY) | queued(stack_settings, CHANGED_KEY)

    # Enough texts now: a second run for it plans nothing and writes nothing.
    again = practice_job.run_generation(
        stack_settings, options("--signature", SIGNATURE, "--texts-per-signature", str(len(rows)), *SMALL)
    )
    assert (again.wanted, again.written, again.texts, again.new_tokens) == (0, 0, 0, 0)
    assert stored_texts(stack_settings, SIGNATURE) == rows
    assert redis.Redis.from_url(stack_settings.redis_url).get(claim_key(SIGNATURE)) is None  # the run's claim went


def test_the_job_skips_a_signature_the_practice_deployment_is_writing(stack, ray_driver, stack_settings):
    signature = "qwerty-en-s3-k.x"
    client = redis.Redis.from_url(stack_settings.redis_url)
    client.set(claim_key(signature), "a practice replica", ex=60)
    try:
        report = practice_job.run_generation(stack_settings, options("--signature", signature, *SMALL))
        assert (report.wanted, report.written, report.new_tokens) == (0, 0, 0), report.line()
        assert stored_texts(stack_settings, signature) == []
        assert client.get(claim_key(signature)) == b"a practice replica"  # not the job's to release
    finally:
        client.delete(claim_key(signature))


def test_an_insights_refresh_records_the_typists_signature_and_queues_it_when_it_moved(
    stack, ray_driver, api_url, stack_settings
):
    with api_client(api_url) as client:
        tests = simulate_tests(1, 3, seed=77, first_user_id=TYPIST)
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * 3
    run_ingest(stack_settings)
    cache = redis.Redis.from_url(stack_settings.redis_url)
    assert insights_job.refresh_users(stack_settings, [TYPIST]) == 1
    clickhouse = clickhouse_client(stack_settings.clickhouse_url)
    try:
        insights = clickhouse.query(
            "SELECT argMax(insights, computed_at) FROM user_insights WHERE user_id = {u:UInt64}",
            parameters={"u": TYPIST},
        ).result_rows[0][0]
    finally:
        clickhouse.close()
    expected = needs_from_insights(json.loads(insights)).signature
    assert cache.get(signature_key(TYPIST)) == expected.encode()
    assert expected in queued(stack_settings, CHANGED_KEY)

    # Refreshed again with the same needs: recorded, not queued again.
    cache.zrem(CHANGED_KEY, expected)
    assert insights_job.refresh_users(stack_settings, [TYPIST]) == 1
    assert expected not in queued(stack_settings, CHANGED_KEY)
    # The typist had other needs before: the refresh queues the signature they moved to.
    cache.set(signature_key(TYPIST), "qwerty-en-s0-z")
    assert insights_job.refresh_users(stack_settings, [TYPIST]) == 1
    assert expected in queued(stack_settings, CHANGED_KEY)
    assert cache.get(signature_key(TYPIST)) == expected.encode()

    # The job writes for the signatures typists moved to; then the typist's practice text is the model's, one of
    # the texts the job stored (nothing asked the route before, so the deployment's writer wrote none of them).
    report = practice_job.run_generation(stack_settings, options("--signature", expected, "--texts-per-signature", "2",
                                                                 *SMALL))
    assert report.written == 1, report.line()
    stored = {text_id for text_id, _ in stored_texts(stack_settings, expected)}
    with api_client(api_url) as client:
        answer = client.get(f"/v1/users/{TYPIST}/practice-text", params={"words": 20}).json()
    assert answer["generator"] == "lm" and answer["signature"] == expected
    assert answer["text_ids"] and set(answer["text_ids"]) <= stored
