"""Schemathesis fuzzes every operation of the API from its OpenAPI schema against the real stack: whatever it
sends, the answer is never a 5xx, and every error has the API's one shape."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.auth import issue_token
from serve.routes import build_app

pytestmark = pytest.mark.stack

# The schema the app serves at /openapi.json, taken from the code so the cases are known at collection time.
schema = schemathesis.openapi.from_dict(build_app().openapi())

# Reads go out as an admin, who may read any user; submissions and deletions as one user, so that a generated test
# that happens to be valid can only be queued for that user (others are refused with 403 before reaching Kafka),
# and no generated id deletes a user other tests rely on (a user token may not delete: 403).
FUZZ_USER = 39_999


@pytest.fixture(scope="module")
def credentials(stack) -> dict[str, str]:
    secret = stack.settings.token_secrets[0]
    return {
        "admin": issue_token(secret, "admin", ttl_s=3600),
        "user": issue_token(secret, "user", user_id=FUZZ_USER, ttl_s=3600),
    }


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case, api_url, credentials):
    token = credentials["admin" if case.method.upper() == "GET" else "user"]
    response = case.call(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    # The one 5xx an input cannot cause: predictions before any model version is promoted (503 no_model).
    no_model = response.status_code == 503 and response.json()["error"]["code"] == "no_model"
    assert response.status_code < 500 or no_model, (
        case.method, case.formatted_path, response.status_code, response.text[:500]
    )  # fmt: skip
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "field"} and error["code"] and error["message"]
