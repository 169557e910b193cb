import copy

import pytest

from app.schemas import SubmissionError, format_started_at, parse_started_at, parse_submission

VALID = {
    "user_id": 7,
    "started_at": "2026-11-27T10:00:00Z",
    "text": "ab",
    "keystrokes": [{"key": "a", "down": 0, "up": 80}, {"key": "b", "down": 150.4, "up": None}],
}


def with_change(path: str, value):
    body = copy.deepcopy(VALID)
    target = body
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


def test_valid_submission_defaults_layout_language_and_derives_a_stable_test_id():
    test = parse_submission(copy.deepcopy(VALID))
    assert (test.layout, test.language) == ("qwerty", "en")
    assert test.down_ms.tolist() == [0, 150]  # fractions round to whole ms
    assert test.up_ms.tolist() == [80, -1]
    assert test.test_id == parse_submission(copy.deepcopy(VALID)).test_id
    assert test.test_id != parse_submission(with_change("text", "abc")).test_id


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("user_id", KeyError, "user_id"),
        ("user_id", 0, "user_id"),
        ("user_id", "7", "user_id"),
        ("user_id", True, "user_id"),
        ("started_at", "yesterday", "started_at"),
        ("text", KeyError, "text"),
        ("text", "", "text"),
        ("text", 12, "text"),
        ("layout", "bepo", "layout"),
        ("language", "english!", "language"),
        ("test_id", "x" * 65, "test_id"),
        ("test_id", "has space", "test_id"),
        ("keystrokes", KeyError, "keystrokes"),
        ("keystrokes", [], "keystrokes"),
        ("keystrokes", "ab", "keystrokes"),
        ("keystrokes.0", "a", "keystrokes[0]"),
        ("keystrokes.0.key", "Hyper", "keystrokes[0].key"),
        ("keystrokes.0.key", "", "keystrokes[0].key"),
        ("keystrokes.1.down", -1, "keystrokes[1].down"),
        ("keystrokes.1.down", "150", "keystrokes[1].down"),
        ("keystrokes.1.down", KeyError, "keystrokes[1].down"),
        ("keystrokes.0.up", -3, "keystrokes[0].up"),
        ("keystrokes.1.up", 100, "keystrokes[1].up"),  # released before pressed
    ],
)
def test_bad_input_names_the_field(path, value, field):
    with pytest.raises(SubmissionError) as caught:
        parse_submission(with_change(path, value))
    assert caught.value.field == field


def test_decreasing_press_times_name_the_later_keystroke():
    body = copy.deepcopy(VALID)
    body["keystrokes"][0] = {"key": "a", "down": 200, "up": None}
    with pytest.raises(SubmissionError, match="must not decrease") as caught:
        parse_submission(body)
    assert caught.value.field == "keystrokes[1].down"


def test_keystroke_limit():
    body = copy.deepcopy(VALID)
    body["keystrokes"] = [{"key": "a", "down": i, "up": i + 1} for i in range(21)]
    with pytest.raises(SubmissionError, match="at most 20"):
        parse_submission(body, max_keystrokes=20)
    assert parse_submission(body, max_keystrokes=21).keystroke_count == 21


def test_not_an_object():
    with pytest.raises(SubmissionError) as caught:
        parse_submission([1, 2])
    assert caught.value.field == "body"


def test_seed_message_shape_maps_onto_a_test():
    seed = {
        "userId": 12345,
        "testResultId": 67890,
        "timestamp": "2024-01-01T12:00:00Z",
        "keyTimings": [
            {"key": "h", "time": 0, "duration": 90},
            {"key": "x", "time": 120, "duration": 80},
            {"key": "Backspace", "time": 300, "duration": 70},
            {"key": "i", "time": 420, "duration": None},
        ],
        "keyErrors": {"i": 1},
    }
    test = parse_submission(seed)
    assert (test.user_id, test.test_id) == (12345, "67890")
    assert test.text == "hi"  # no presented text: the final field content stands in for it
    assert test.up_ms.tolist() == [90, 200, 370, -1]  # duration → release time
    seed["text"] = "ho"
    assert parse_submission(seed).text == "ho"
    seed["keyErrors"] = {"i": -1}
    with pytest.raises(SubmissionError) as caught:
        parse_submission(seed)
    assert caught.value.field == "keyErrors.i"


def test_started_at_round_trip_and_naive_means_utc():
    millis = parse_started_at("2026-11-27T10:00:00.250Z")
    assert format_started_at(millis) == "2026-11-27T10:00:00.250Z"
    assert parse_started_at("2026-11-27T10:00:00.250") == millis
    assert parse_started_at("2026-11-27T11:00:00.250+01:00") == millis


def test_stored_fields_are_exactly_what_the_analytics_compute():
    from app.analytics.metrics import COUNT_NAMES, ERROR_LOCATION_NAMES, METRIC_NAMES, SERIES_NAMES
    from app.schemas import COUNT_FIELDS, ERROR_LOCATION_FIELDS, METRIC_FIELDS, SERIES_FIELDS

    assert METRIC_FIELDS == tuple(METRIC_NAMES)
    assert COUNT_FIELDS == tuple(COUNT_NAMES)
    assert ERROR_LOCATION_FIELDS == tuple(ERROR_LOCATION_NAMES)
    assert SERIES_FIELDS == tuple(SERIES_NAMES)
