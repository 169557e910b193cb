"""POST /v1/predict/typing's body checks: each refusal names its field, and the limit where there is one."""

from __future__ import annotations

import json

import pytest

from app.schemas import LAYOUTS, MAX_USER_ID
from serve.prediction_request import MAX_PREDICT_CHARS, InvalidRequest, TypingRequest, parse_typing_request


def test_a_valid_body_with_and_without_a_layout():
    assert parse_typing_request({"user_id": 7, "text": "the quick fox"}) == TypingRequest(7, "the quick fox", "qwerty")
    assert parse_typing_request({"user_id": 7, "text": "x", "layout": None}).layout == "qwerty"
    for layout in LAYOUTS:
        assert parse_typing_request({"user_id": MAX_USER_ID, "text": "a", "layout": layout}).layout == layout
    longest = "é" * MAX_PREDICT_CHARS  # characters, not bytes
    assert parse_typing_request({"user_id": 1, "text": longest}).text == longest


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([1, 2], "body", "must be a JSON object, got list"),
        ({"text": "abc"}, "user_id", "is required"),
        ({"user_id": "7", "text": "abc"}, "user_id", "must be an integer, got str"),
        ({"user_id": True, "text": "abc"}, "user_id", "must be an integer, got bool"),
        ({"user_id": 1.5, "text": "abc"}, "user_id", "must be an integer, got float"),
        ({"user_id": 0, "text": "abc"}, "user_id", f"must be between 1 and {MAX_USER_ID}, got 0"),
        ({"user_id": MAX_USER_ID + 1, "text": "abc"}, "user_id", "must be between 1 and"),
        ({"user_id": 7}, "text", "is required"),
        ({"user_id": 7, "text": 12}, "text", "must be a string, got int"),
        ({"user_id": 7, "text": ""}, "text", f"must be 1 to {MAX_PREDICT_CHARS} characters, got 0"),
        ({"user_id": 7, "text": "a" * 501}, "text", "must be 1 to 500 characters, got 501"),
        ({"user_id": 7, "text": "abc", "layout": "bepo"}, "layout", "unknown layout 'bepo'; known: qwerty"),
        ({"user_id": 7, "text": "abc", "layout": 3}, "layout", "must be a string, got int"),
        ({"user_id": 7, "text": "abc", "lang": "en"}, "lang", "is not a field of this request"),
    ],
)
def test_each_refusal_names_the_field(body, field, message):
    with pytest.raises(InvalidRequest) as caught:
        parse_typing_request(body)
    assert caught.value.field == field
    assert caught.value.message.startswith(message), caught.value.message


def test_a_lone_surrogate_is_refused_not_a_server_error():
    body = json.loads('{"user_id": 7, "text": "ab\\ud800c"}')  # what a JSON body with a broken escape decodes to
    with pytest.raises(InvalidRequest) as caught:
        parse_typing_request(body)
    assert (caught.value.field, caught.value.message) == ("text", "is not valid Unicode at character 2")
