"""End to end on the real local stack: HTTP → Kafka → Ray Data ingest job → ClickHouse → Redis → HTTP."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import store_offsets
from app.kafka import end_offsets, read_dead_letters, user_key
from devstack.simulate import simulate_tests
from pipelines.ingest import ingest_once, run_ingest
from tests.api import api_client, api_get, api_post
from tests.reference import reference_key_stats, reference_metrics

pytestmark = pytest.mark.stack

METRICS = ("wpm", "accuracy", "uncorrected_error_rate", "kspc", "mean_iki_ms", "mean_hold_ms", "rollover_ratio")


def post_all(api_url: str, tests: list[dict]) -> list[httpx.Response]:
    with api_client(api_url, timeout=30) as client:
        return [client.post("/v1/tests", json=t) for t in tests]


def topic_size(settings) -> int:
    return sum(asyncio.run(end_offsets(settings, settings.keystroke_topic)).values())


def rows(settings, sql: str, **parameters) -> list[tuple]:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return client.query(sql, parameters=parameters).result_rows
    finally:
        client.close()


@pytest.fixture(scope="module")
def fifty_tests(stack, ray_driver, api_url, stack_settings):
    tests = simulate_tests(10, 5, seed=101, first_user_id=5_000)
    responses = post_all(api_url, tests)
    assert [r.status_code for r in responses] == [202] * 50
    assert [r.json() for r in responses] == [{"test_id": t["test_id"], "status": "queued"} for t in tests]
    report = run_ingest(stack_settings)
    assert report.tests_written >= 50
    return tests


def test_tests_endpoint_returns_exactly_the_posted_tests_with_independently_computed_metrics(fifty_tests, api_url):
    by_user: dict[int, list[dict]] = {}
    for test in fifty_tests:
        by_user.setdefault(test["user_id"], []).append(test)
    for user_id, posted in by_user.items():
        response = api_get(f"{api_url}/v1/users/{user_id}/tests", params={"limit": 100})
        assert response.status_code == 200
        returned = response.json()["tests"]
        assert sorted(t["test_id"] for t in returned) == sorted(t["test_id"] for t in posted)
        started = [t["started_at"] for t in returned]
        assert started == sorted(started, reverse=True)  # newest first
        expected_by_id = {t["test_id"]: t for t in posted}
        for row in returned:
            submission = expected_by_id[row["test_id"]]
            expected = reference_metrics(submission["text"], submission["keystrokes"])
            assert row["started_at"] == submission["started_at"]
            assert row["keystroke_count"] == len(submission["keystrokes"])
            for name in METRICS:
                assert row[name] == pytest.approx(expected[name]), (row["test_id"], name)
    limited = api_get(f"{api_url}/v1/users/5000/tests", params={"limit": 2}).json()["tests"]
    assert len(limited) == 2


def test_insights_match_an_independent_computation(fifty_tests, api_url):
    user_id = 5_003
    posted = [t for t in fifty_tests if t["user_id"] == user_id]
    body = api_get(f"{api_url}/v1/users/{user_id}/insights").json()
    assert body["test_count"] == 5
    per_test = [reference_metrics(t["text"], t["keystrokes"]) for t in posted]
    assert body["mean_wpm"] == pytest.approx(statistics.mean(m["wpm"] for m in per_test))
    assert body["mean_accuracy"] == pytest.approx(statistics.mean(m["accuracy"] for m in per_test))

    totals: dict[str, dict[str, int]] = {}
    for test in posted:
        for key, stats in reference_key_stats(test["text"], test["keystrokes"]).items():
            entry = totals.setdefault(key, {"presses": 0, "errors": 0, "timed": 0, "time_sum": 0})
            for name, value in stats.items():
                entry[name] += value
    returned = {k["key"]: k for k in body["keys"]}
    assert set(returned) == set(totals)
    for key, entry in totals.items():
        assert returned[key]["presses"] == entry["presses"]
        assert returned[key]["errors"] == entry["errors"]
        assert returned[key]["error_rate"] == pytest.approx(entry["errors"] / entry["presses"])
        if entry["timed"]:
            assert returned[key]["mean_time_to_type_ms"] == pytest.approx(entry["time_sum"] / entry["timed"])
    ranked = sorted(
        ((k, e["time_sum"] / e["timed"]) for k, e in totals.items() if e["timed"] >= 3),
        key=lambda item: (-item[1], item[0]),
    )
    assert [k["key"] for k in body["slowest_keys"]] == [k for k, _ in ranked[:5]]


def test_unknown_user_is_404_with_the_error_shape(stack, api_url):
    for path in ("/v1/users/999999/insights", "/v1/users/999999/tests"):
        response = api_get(api_url + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_user"
        assert response.json()["error"]["field"] == "user_id"


def test_new_tests_refresh_cached_insights(fifty_tests, api_url, stack_settings):
    user_id = 5_001
    before = api_get(f"{api_url}/v1/users/{user_id}/insights").json()  # cached now
    assert api_get(f"{api_url}/v1/users/{user_id}/insights").json() == before
    extra = simulate_tests(1, 1, seed=555, first_user_id=user_id)[0]
    extra["test_id"] = "extra-after-cache"
    assert post_all(api_url, [extra])[0].status_code == 202
    run_ingest(stack_settings)
    after = api_get(f"{api_url}/v1/users/{user_id}/insights").json()
    assert after["test_count"] == before["test_count"] + 1


def test_a_test_posted_twice_and_ingested_twice_is_stored_once(stack, ray_driver, api_url, stack_settings):
    test = simulate_tests(1, 1, seed=7, first_user_id=6_000)[0]
    assert [r.status_code for r in post_all(api_url, [test, test])] == [202, 202]
    without_id = copy.deepcopy(test)
    del without_id["test_id"]
    first, second = post_all(api_url, [without_id, without_id])
    assert first.json()["test_id"] == second.json()["test_id"]  # derived from the content
    run_ingest(stack_settings.with_overrides(topic_trim_interval_s=0))  # keep the messages on the topic

    # Run the job again over the same offsets: rewind every partition to 0 (to the topic's start, where earlier
    # passes trimmed it).
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        offsets = asyncio.run(end_offsets(stack_settings, stack_settings.keystroke_topic))
        store_offsets(client, stack_settings.consumer_group, stack_settings.keystroke_topic, dict.fromkeys(offsets, 0))
    finally:
        client.close()
    report = run_ingest(stack_settings)
    assert report.tests_written == 0 and report.duplicates_skipped > 0

    for test_id in (test["test_id"], first.json()["test_id"]):
        assert rows(
            stack_settings, "SELECT count() FROM test_results WHERE user_id = 6000 AND test_id = {t:String}", t=test_id
        ) == [(1,)]
        assert rows(
            stack_settings, "SELECT count() FROM keystrokes WHERE user_id = 6000 AND test_id = {t:String}", t=test_id
        ) == [(len(test["keystrokes"]),)]
    assert len(api_get(f"{api_url}/v1/users/6000/tests").json()["tests"]) == 2


def test_a_crash_between_the_write_and_the_offset_store_loses_and_duplicates_nothing(
    stack, ray_driver, api_url, stack_settings
):
    run_ingest(stack_settings)  # start from a drained topic
    tests = simulate_tests(3, 2, seed=99, first_user_id=7_000)
    assert all(r.status_code == 202 for r in post_all(api_url, tests))
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        from app.clickhouse.store import load_offsets

        before = load_offsets(client, stack_settings.consumer_group, stack_settings.keystroke_topic)
        with faults.armed("after_write"), pytest.raises(faults.SimulatedCrash):
            ingest_once(stack_settings)
        assert load_offsets(client, stack_settings.consumer_group, stack_settings.keystroke_topic) == before
    finally:
        client.close()
    report = ingest_once(stack_settings)
    assert report.tests_written == 0 and report.duplicates_skipped == 6
    for test in tests:
        assert rows(
            stack_settings,
            "SELECT count() FROM test_results WHERE user_id = {u:UInt64} AND test_id = {t:String}",
            u=test["user_id"],
            t=test["test_id"],
        ) == [(1,)]
        assert rows(
            stack_settings,
            "SELECT count() FROM keystrokes WHERE user_id = {u:UInt64} AND test_id = {t:String}",
            u=test["user_id"],
            t=test["test_id"],
        ) == [(len(test["keystrokes"]),)]


def _bad(change):
    body = copy.deepcopy(simulate_tests(1, 1, seed=3, first_user_id=8_000)[0])
    change(body)
    return body


BAD_INPUTS = {
    "missing user_id": (lambda b: b.pop("user_id"), 422, "user_id"),
    "user_id as text": (lambda b: b.update(user_id="42"), 422, "user_id"),
    "missing keystrokes": (lambda b: b.pop("keystrokes"), 422, "keystrokes"),
    "text of wrong type": (lambda b: b.update(text=["a"]), 422, "text"),
    "negative time": (lambda b: b["keystrokes"][3].update(down=-5), 422, "keystrokes[3].down"),
    "decreasing times": (lambda b: b["keystrokes"][4].update(down=0, up=1), 422, "keystrokes[4].down"),
    "too many keystrokes": (
        lambda b: b.update(keystrokes=[{"key": "a", "down": i, "up": i + 1} for i in range(20_001)]),
        422,
        "keystrokes",
    ),
    "unknown layout": (lambda b: b.update(layout="klingon"), 422, "layout"),
    "unknown named key": (lambda b: b["keystrokes"][0].update(key="Hyper"), 422, "keystrokes[0].key"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_4xx_naming_the_field_and_nothing_reaches_kafka(case, stack, api_url, stack_settings):
    change, status, field = BAD_INPUTS[case]
    before = topic_size(stack_settings)
    response = post_all(api_url, [_bad(change)])[0]
    assert response.status_code == status
    assert response.json()["error"]["field"] == field
    assert field.split("[")[0] in response.json()["error"]["message"] or response.json()["error"]["message"]
    assert topic_size(stack_settings) == before


def test_oversize_and_non_json_bodies_are_refused(stack, api_url, stack_settings):
    before = topic_size(stack_settings)
    big = b'{"user_id": 1, "text": "' + b"a" * (stack_settings.max_body_bytes + 10) + b'"}'
    response = api_post(f"{api_url}/v1/tests", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["field"] == "body"
    response = api_post(f"{api_url}/v1/tests", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert topic_size(stack_settings) == before


def test_garbage_on_the_topic_goes_to_the_dlq_and_does_not_stop_the_job(stack, ray_driver, api_url, stack_settings):
    from aiokafka import AIOKafkaProducer

    user_id = 9_000
    garbage = b"\x00\x01 definitely not a typing test, but long enough to hold a header"

    async def produce_garbage() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(stack_settings.keystroke_topic, garbage, key=user_key(user_id))
        finally:
            await producer.stop()

    asyncio.run(produce_garbage())
    valid = simulate_tests(1, 1, seed=4, first_user_id=user_id)[0]
    assert post_all(api_url, [valid])[0].status_code == 202  # same key, same partition, after the garbage
    report = run_ingest(stack_settings)
    assert report.dead_lettered >= 1
    assert api_get(f"{api_url}/v1/users/{user_id}/tests").json()["tests"][0]["test_id"] == valid["test_id"]
    letters = asyncio.run(read_dead_letters(stack_settings, limit=1000))
    mine = [d.letter for d in letters if d.letter.value == garbage]
    assert len(mine) == 1 and "magic" in mine[0].reason
    assert run_ingest(stack_settings).dead_lettered == 0  # offsets moved past it: not dead-lettered twice


def test_the_job_runs_through_ray_job_submit(stack, api_url, stack_settings):
    from ray.job_submission import JobStatus, JobSubmissionClient

    test = simulate_tests(1, 1, seed=12, first_user_id=11_000)[0]
    assert post_all(api_url, [test])[0].status_code == 202
    jobs = JobSubmissionClient(f"http://127.0.0.1:{stack_settings.ray_dashboard_port}")
    job_id = jobs.submit_job(entrypoint="python -m pipelines.ingest")
    deadline = time.monotonic() + 180
    while jobs.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "ingest job did not finish in 3 minutes"
        time.sleep(1)
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED, jobs.get_job_logs(job_id)
    assert "stored" in jobs.get_job_logs(job_id)
    assert api_get(f"{api_url}/v1/users/11000/tests").json()["tests"][0]["test_id"] == test["test_id"]


def test_follow_mode_ingests_new_tests_until_interrupted(stack, api_url, stack_settings):
    env = {**os.environ, **stack_settings.as_env()}
    follower = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ingest", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        tests = simulate_tests(1, 3, seed=13, first_user_id=12_000)
        for test in tests:
            assert post_all(api_url, [test])[0].status_code == 202
            time.sleep(1)
        deadline = time.monotonic() + 120
        while True:
            listed = api_get(f"{api_url}/v1/users/12000/tests").json().get("tests", [])
            if len(listed) == 3:
                break
            assert time.monotonic() < deadline, "follow mode did not ingest the tests within 2 minutes"
            time.sleep(1)
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            output = follower.communicate(timeout=90)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            follower.kill()  # never leave a second consumer behind for the tests that follow
            raise
    assert follower.returncode == 0, output
    assert "stopped on request after a finished pass" in output


def test_a_capped_pass_size_drains_a_backlog_in_bounded_steps(stack, ray_driver, api_url, stack_settings):
    run_ingest(stack_settings)  # start from a drained topic
    tests = simulate_tests(1, 3, seed=14, first_user_id=13_000)  # one user: one partition, three messages
    assert all(r.status_code == 202 for r in post_all(api_url, tests))
    report = run_ingest(stack_settings.with_overrides(ingest_max_messages=1))
    assert report.tests_written == 3
    assert report.passes == 4  # one message a pass, then an empty pass that ends the drain
    assert len(api_get(f"{api_url}/v1/users/13000/tests").json()["tests"]) == 3
