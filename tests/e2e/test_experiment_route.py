"""The practice-text route as an experiment point on the real stack: an experiment on `practice_generator` created
in ClickHouse reaches the running practice deployment (its experiment layer re-reads experiments every 30 s), each
user is served the generator of the variant assignment gives them, their exposure reaches ClickHouse in the
background, and once the experiment ends the route answers as before. The experiment ends by its own end time,
so no later test of the session meets it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from app.clickhouse.client import clickhouse_client
from app.experiments.assignment import assign
from app.experiments.definition import Experiment, Variant
from app.experiments.runtime import REFRESH_S
from app.experiments.store import create_experiment
from tests.api import api_get

pytestmark = pytest.mark.stack

USERS = range(7_903_001, 7_903_021)  # no tests: general practice text, whichever generator
WINDOW_S = REFRESH_S + 20  # long enough for the deployment to see the experiment and for the checks


def practice_text(api_url: str, user_id: int) -> dict:
    response = api_get(f"{api_url}/v1/users/{user_id}/practice-text", params={"words": 12})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_running_experiment_chooses_the_generator_and_records_exposures(stack, stack_settings, api_url):
    started = datetime.now(UTC)
    experiment = Experiment(
        f"route-{started:%H%M%S}", "practice_generator", (Variant("written", 1, "lm"), Variant("drill", 1, "rules")),
        starts_at=started, ends_at=started + timedelta(seconds=WINDOW_S),
    )
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        create_experiment(client, experiment)
        expected = {u: assign(experiment, u).name for u in USERS}
        assert set(expected.values()) == {"written", "drill"}
        deadline = time.monotonic() + REFRESH_S + 10
        while "experiment" not in practice_text(api_url, USERS[0]) and time.monotonic() < deadline:
            time.sleep(1)
        answers = {u: practice_text(api_url, u) for u in USERS}
        assert {u: a["experiment"] for u, a in answers.items()} == {
            u: {"name": experiment.name, "variant": v} for u, v in expected.items()
        }
        for user_id, answer in answers.items():
            if expected[user_id] == "drill":  # the rules variant never gets written text
                assert answer["generator"] == "rules" and answer["text_ids"] == [], answer

        # Exposures: one per user whatever the requests, written by the layer's thread within seconds.
        query = "SELECT user_id, variant FROM experiment_exposures FINAL WHERE experiment = {e:String}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stored = dict(client.query(query, parameters={"e": experiment.name}).result_rows)
            if len(stored) == len(USERS):
                break
            time.sleep(0.5)
        assert stored == expected

        # After its end the route answers without it (the deployment checks the end itself, no refresh needed).
        time.sleep(max(0.0, (experiment.ends_at - datetime.now(UTC)).total_seconds()) + 0.5)
        assert "experiment" not in practice_text(api_url, USERS[0])
    finally:
        client.close()
