"""The analytics engine through HTTP on the real stack: per-test metrics, the key table, progress, insights,
behaviour on simulated typists, and edge-case tests that must yield nulls, never NaN or an error."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from devstack.simulate import make_profiles, simulate_test, simulate_tests
from pipelines.ingest import run_ingest
from tests.api import api_client, api_get
from tests.reference import reference_key_stats

pytestmark = pytest.mark.stack


def strict_json(response: httpx.Response):
    """The body parsed with NaN and Infinity refused (JSON has neither)."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in a JSON response: {response.request.url}")

    return json.loads(response.text, parse_constant=refuse)


def post(api_url: str, tests: list[dict]) -> None:
    with api_client(api_url, timeout=30) as client:
        statuses = [client.post("/v1/tests", json=t).status_code for t in tests]
    assert statuses == [202] * len(tests)


def typist_tests(user_id: int, n: int, seed: int, **habits) -> list[dict]:
    profile = dataclasses.replace(make_profiles(1, seed=seed, first_user_id=user_id)[0], **habits)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    return [simulate_test(profile, rng, start + timedelta(days=i, minutes=i), i) for i in range(n)]


@pytest.fixture(scope="module")
def analysed_users(stack, ray_driver, api_url, stack_settings):
    slow_q = typist_tests(20_001, 30, seed=1, slow_keys={"q": 4.0}, error_rate=0.01)
    confuses = typist_tests(20_002, 30, seed=2, confusions={"e": "r"})
    plain = simulate_tests(1, 6, seed=3, first_user_id=20_003)
    post(api_url, slow_q + confuses + plain)
    run_ingest(stack_settings)
    return {"slow_q": slow_q, "confuses": confuses, "plain": plain}


def test_tests_carry_every_metric_and_no_nan(analysed_users, api_url):
    body = strict_json(api_get(f"{api_url}/v1/users/20003/tests", params={"limit": 10}))
    assert len(body["tests"]) == 6
    for test in body["tests"]:
        for name in ("raw_wpm", "net_wpm", "corrected_error_rate", "total_error_rate", "ecpc", "median_iki_ms",
                     "consistency", "key_consistency", "iki_cv", "slowdown", "health_score"):
            assert name in test
        assert 0 <= test["health_score"] <= 100
        assert set(test["char_stats"]) == {"correct", "incorrect", "extra", "missed"}
        assert len(test["errors_by_finger"]) == 9 and len(test["errors_by_hand"]) == 2
        assert len(test["errors_by_row"]) == 5
        assert test["per_second_wpm"] and test["word_burst_wpm"]


def test_key_table_matches_an_independent_count_and_places_keys_on_the_layout(analysed_users, api_url):
    posted = analysed_users["plain"]
    totals: dict[str, dict[str, int]] = {}
    for test in posted:
        for key, stats in reference_key_stats(test["text"], test["keystrokes"]).items():
            entry = totals.setdefault(key, {"presses": 0, "errors": 0, "timed": 0, "time_sum": 0})
            for name, value in stats.items():
                entry[name] += value
    body = strict_json(api_get(f"{api_url}/v1/users/20003/keys"))
    assert body["layout"] == posted[0]["layout"]
    rows = {row["key"]: row for row in body["keys"]}
    assert set(rows) == set(totals)
    for key, entry in totals.items():
        assert (rows[key]["presses"], rows[key]["errors"]) == (entry["presses"], entry["errors"])
        if entry["timed"]:
            assert rows[key]["mean_time_to_type_ms"] == pytest.approx(entry["time_sum"] / entry["timed"])
            assert rows[key]["median_time_to_type_ms"] is not None
            assert rows[key]["p95_time_to_type_ms"] >= rows[key]["median_time_to_type_ms"] * 0.99
    letter = next(k for k in rows if k.isalpha())
    assert rows[letter]["finger"] is not None and rows[letter]["row"] in (1, 2, 3)
    assert body["pairs"] and all(len(p["key"]) == 2 for p in body["pairs"])


def test_a_typist_slow_on_q_gets_q_as_the_weakest_key(analysed_users, api_url):
    insights = strict_json(api_get(f"{api_url}/v1/users/20001/insights"))
    assert insights["weak_keys"][0]["key"] == "q"
    assert insights["weak_keys"][0]["reason"]
    assert any("q" in pair["key"] for pair in insights["weak_pairs"])
    targets = [t for r in insights["recommendations"] for t in r["targets"].get("keys", [])]
    assert "q" in targets


def test_a_typist_who_types_r_for_e_gets_that_confusion_first(analysed_users, api_url):
    insights = strict_json(api_get(f"{api_url}/v1/users/20002/insights"))
    first = insights["error_patterns"]["top_confusions"][0]
    assert (first["key"], first["typed"]) == ("e", "r")
    keys = {row["key"]: row for row in strict_json(api_get(f"{api_url}/v1/users/20002/keys"))["keys"]}
    assert keys["e"]["typed_instead"][0]["typed"] == "r"


def test_progress_has_a_day_per_test_day_and_a_trend(analysed_users, api_url):
    body = strict_json(api_get(f"{api_url}/v1/users/20001/progress"))
    assert len(body["daily"]) == 30  # one test a day for 30 days
    assert body["streaks"]["longest_days"] == 30
    assert body["trend"]["n"] == 30
    assert "sessions_to_target" in body["forecast"]
    insights = strict_json(api_get(f"{api_url}/v1/users/20001/insights"))
    assert insights["health"]["score"] is not None
    assert set(insights["health"]["components"]) == {"speed", "accuracy", "consistency", "rhythm", "fatigue"}


EDGE_CASES = {
    "one keystroke": [{"key": "h", "down": 0, "up": 50}],
    "only backspaces": [{"key": "Backspace", "down": i * 100, "up": i * 100 + 40} for i in range(4)],
    "all keys wrong": [{"key": "x", "down": i * 150, "up": i * 150 + 60} for i in range(5)],
}


def test_edge_case_tests_yield_nulls_not_errors(stack, ray_driver, api_url, stack_settings):
    tests = [
        {"user_id": 21_000 + i, "test_id": f"edge-{i}", "started_at": "2026-11-27T10:00:00Z", "text": "hello",
         "keystrokes": strokes}
        for i, strokes in enumerate(EDGE_CASES.values())
    ]
    post(api_url, tests)
    run_ingest(stack_settings)
    one, backspaces, wrong = (
        strict_json(api_get(f"{api_url}/v1/users/{21_000 + i}/tests"))["tests"][0] for i in range(3)
    )
    assert one["wpm"] is None and one["mean_iki_ms"] is None and one["accuracy"] == 1.0
    assert backspaces["accuracy"] is None and backspaces["kspc"] is None
    assert backspaces["uncorrected_error_rate"] == 1.0
    assert wrong["accuracy"] == 0.0 and wrong["char_stats"]["incorrect"] == 5
    for i in range(3):
        for path in ("insights", "keys", "progress"):
            response = api_get(f"{api_url}/v1/users/{21_000 + i}/{path}")
            assert response.status_code == 200, (i, path, response.text)
            strict_json(response)
