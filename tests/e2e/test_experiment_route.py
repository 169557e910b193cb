"""The experiment points on the real stack: an experiment on `practice_generator` created in ClickHouse reaches the
running practice deployment (its experiment layer re-reads experiments every 30 s), each user is served the
generator of the variant assignment gives them, their exposure reaches ClickHouse in the background, and once the
experiment ends the route answers as before. The same for `hint_style` and the live application's sessions, in the
same window. The experiments end by their own end times, so no later test of the session meets them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from app.clickhouse.client import clickhouse_client
from app.experiments.assignment import assign
from app.experiments.definition import Experiment, Variant
from app.experiments.runtime import REFRESH_S
from app.experiments.store import create_experiment
from tests.api import SERVICE_HEADERS, api_get
from tests.e2e.test_live import ask, live

pytestmark = pytest.mark.stack

USERS = range(7_903_001, 7_903_021)  # no tests: general practice text, whichever generator
LIVE_USERS = range(7_903_101, 7_903_113)
WINDOW_S = REFRESH_S + 20  # long enough for the deployment to see the experiment and for the checks


def practice_text(api_url: str, user_id: int) -> dict:
    response = api_get(f"{api_url}/v1/users/{user_id}/practice-text", params={"words": 12})
    assert response.status_code == 200, response.text
    return response.json()


def hint_style(api_url: str, user_id: int) -> str:
    """The hint style a new live session of the user announces."""
    with live(api_url, headers=SERVICE_HEADERS) as ws:
        ready = ask(ws, {"type": "start", "user_id": user_id, "text": "the quick brown fox"})
        assert ready["type"] == "ready", ready
        return ready["hint_style"]


def stored_exposures(client, name: str, count: int) -> dict[int, str]:
    """user → variant of the experiment's exposures, once `count` are in ClickHouse (or 15 s have passed)."""
    query = "SELECT user_id, variant FROM experiment_exposures FINAL WHERE experiment = {e:String}"
    deadline = time.monotonic() + 15
    while True:
        stored = dict(client.query(query, parameters={"e": name}).result_rows)
        if len(stored) >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def test_a_running_experiment_chooses_the_generator_and_records_exposures(stack, stack_settings, api_url):
    started = datetime.now(UTC)
    experiment = Experiment(
        f"route-{started:%H%M%S}", "practice_generator", (Variant("written", 1, "lm"), Variant("drill", 1, "rules")),
        starts_at=started, ends_at=started + timedelta(seconds=WINDOW_S),
    )
    # Without `all`, a session announcing `all` has not seen the experiment yet.
    hints = Experiment(
        f"hints-{started:%H%M%S}", "hint_style", (Variant("quiet", 1, "none"), Variant("spots", 1, "slow_spots")),
        starts_at=started, ends_at=started + timedelta(seconds=WINDOW_S),
    )
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        create_experiment(client, experiment)
        create_experiment(client, hints)
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
        assert stored_exposures(client, experiment.name, len(USERS)) == expected

        # Live sessions: each live replica reads the experiments on its own schedule, so wait until every user's
        # session has the assigned style (a session opened before its replica saw the experiment announces `all`).
        styles = {u: assign(hints, u).value for u in LIVE_USERS}
        assert set(styles.values()) == {"none", "slow_spots"}
        deadline = time.monotonic() + REFRESH_S + 10
        while (seen := {u: hint_style(api_url, u) for u in LIVE_USERS}) != styles and time.monotonic() < deadline:
            time.sleep(1)
        assert seen == styles
        assert stored_exposures(client, hints.name, len(LIVE_USERS)) == {u: assign(hints, u).name for u in LIVE_USERS}

        # After its end the route answers without it (the deployment checks the end itself, no refresh needed).
        time.sleep(max(0.0, (experiment.ends_at - datetime.now(UTC)).total_seconds()) + 0.5)
        assert "experiment" not in practice_text(api_url, USERS[0])
        assert hint_style(api_url, LIVE_USERS[0]) == "all"
    finally:
        client.close()
