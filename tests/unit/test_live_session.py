"""A live session (app/live/session.py) and its messages (app/live/protocol.py): batches continue the test or change
nothing, the state is bounded, the submission is the keystrokes as sent, and a parked session resumes as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.live.history import History
from app.live.protocol import Auth, End, Keys, ProtocolError, Resume, Start, decode, parse
from app.live.session import LiveSession
from app.schemas import parse_submission

USER = 8_100_201
TEXT = "the cat sat on the mat"


def keys(text: str, first_ms: int = 0, seq: int | None = None) -> Keys:
    message = {"type": "keys", "keystrokes": [{"key": c, "down": first_ms + 120 * i, "up": first_ms + 120 * i + 50}
                                              for i, c in enumerate(text)]}  # fmt: skip
    if seq is not None:
        message["seq"] = seq
    parsed = parse(message)
    assert isinstance(parsed, Keys)
    return parsed


def session(max_keystrokes: int = 1000) -> LiveSession:
    start = parse({"type": "start", "user_id": USER, "text": TEXT, "test_id": "t-1"})
    assert isinstance(start, Start)
    return LiveSession.begin(start, History(), now_ms=1_764_000_000_000, max_keystrokes=max_keystrokes)


def test_messages_parse_into_their_types():
    assert parse({"type": "end"}) == End()
    assert parse({"type": "auth", "token": "abc"}) == Auth("abc")
    assert parse({"type": "resume", "session_id": "ls_x"}) == Resume("ls_x", None)
    start = parse({"type": "start", "user_id": USER, "text": "hi", "started_at": "2026-12-06T10:00:00Z"})
    assert start == Start(USER, "hi", "qwerty", "en", None, 1_796_551_200_000)
    batch = keys("ab", seq=4)
    assert batch.codes.tolist() == [97, 98] and batch.downs.tolist() == [0, 120] and batch.seq == 4


@pytest.mark.parametrize(
    "message,field",
    [
        ({"type": "start", "text": "x"}, "user_id"),
        ({"type": "start", "user_id": 0, "text": "x"}, "user_id"),
        ({"type": "start", "user_id": USER, "text": "x", "test_id": "a b"}, "test_id"),
        ({"type": "keys"}, "keystrokes"),
        ({"type": "keys", "keystrokes": [{"key": "a"}]}, "keystrokes[0].down"),
        ({"type": "keys", "keystrokes": [{"key": "a", "down": 0}], "seq": -1}, "seq"),
        ({"type": "keys", "keystrokes": [{"key": "a", "down": 0}] * 2001}, "keystrokes"),
        ({"type": "resume"}, "session_id"),
        ({"type": "auth"}, "token"),
        ({"type": 7}, "type"),
    ],
)
def test_a_bad_message_names_its_field(message, field):
    with pytest.raises(ProtocolError) as refused:
        parse(message)
    assert refused.value.field == field


def test_frames_that_are_not_a_json_object_or_too_large_are_refused():
    for raw in ("nope", "[]", "x" * (256 * 1024 + 1)):
        with pytest.raises(ProtocolError) as refused:
            decode(raw)
        assert refused.value.field == "message"


def test_each_answer_carries_its_session_and_batch_and_the_metrics_so_far():
    live = session()
    answer = live.apply(keys("the ", seq=0))
    assert answer["session_id"] == live.session_id and answer["seq"] == 0
    assert answer["position"] == 4 and answer["keystrokes"] == 4 and answer["accuracy"] == 1.0
    assert answer["wpm"] == pytest.approx(3 / 0.36 * 12, abs=0.1) and answer["hints"] == []


def test_a_batch_that_goes_back_in_time_or_past_the_limit_changes_nothing():
    live = session(max_keystrokes=6)
    live.apply(keys("the", 1000))
    before = json.dumps(live.to_json())
    with pytest.raises(ProtocolError) as refused:
        live.apply(keys("c", 500))
    assert refused.value.field == "keystrokes[0].down"
    with pytest.raises(ProtocolError) as refused:
        live.apply(keys(" cat", 2000))  # 3 + 4 > 6
    assert refused.value.field == "keystrokes"
    assert json.dumps(live.to_json()) == before and live.metrics.presses == 3


def test_the_submission_is_the_test_as_typed():
    live = session()
    live.apply(keys("the c"))
    live.apply(keys("at", 5000))
    submission = parse_submission(live.submission())
    assert submission.user_id == USER and submission.test_id == "t-1" and submission.text == TEXT
    assert "".join(chr(c) for c in submission.key_codes) == "the cat"
    assert submission.down_ms.tolist() == [0, 120, 240, 360, 480, 5000, 5120]
    assert np.all(submission.up_ms - submission.down_ms == 50)


def test_a_parked_session_comes_back_with_its_metrics_and_continues():
    live = session()
    live.apply(keys("the cat", seq=0))
    back = LiveSession.from_json(json.loads(json.dumps(live.to_json())))
    assert back.metrics.snapshot() == live.metrics.snapshot() and back.session_id == live.session_id
    assert back.apply(keys(" sat", 2000))["position"] == live.apply(keys(" sat", 2000))["position"] == 11


def test_session_ids_are_random_and_test_ids_default_to_fresh_ones():
    start = parse({"type": "start", "user_id": USER, "text": TEXT})
    assert isinstance(start, Start)
    a, b = (LiveSession.begin(start, History(), 0, 10) for _ in range(2))
    assert a.session_id != b.session_id and a.test_id != b.test_id and a.test_id.startswith("live-")
    assert len(a.session_id) >= 24


def test_the_hint_style_is_announced_kept_through_a_resume_and_none_shows_no_spots():
    start = parse({"type": "start", "user_id": USER, "text": "we need to", "test_id": "t-2"})
    assert isinstance(start, Start)
    history = History.from_sources({"weak_pairs": [{"key": "ed", "mean_time_ms": 300.0, "eligible": True}]}, None)
    shown = LiveSession.begin(start, history, now_ms=0, max_keystrokes=100)
    assert shown.ready()["hint_style"] == "all" and [s["chars"] for s in shown.ready()["expect"]] == ["ed"]
    quiet = LiveSession.begin(start, history, now_ms=0, max_keystrokes=100, hint_style="none")
    assert quiet.ready()["hint_style"] == "none" and quiet.ready()["expect"] == []
    quiet.apply(keys("we n"))
    back = LiveSession.from_json(json.loads(json.dumps(quiet.to_json())))
    assert back.hint_style == "none" and back.apply(keys("eed", 1000))["hints"] == []
