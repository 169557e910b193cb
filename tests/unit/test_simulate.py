"""The typist simulator: determinism, submission shape, replay, and behaviour against published numbers."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from app.analytics.layouts import LAYOUTS, get_layout
from devstack.simulate import SENTENCES, TypistProfile, make_profiles, simulate_test, simulate_tests

STARTED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
POPULATION_USERS, POPULATION_TESTS, POPULATION_SEED = 300, 7, 11

Keystrokes = list[dict[str, Any]]


# --- small measurements straight from the keystrokes (deliberately independent of app code) ---


def transcribe(keystrokes: Keystrokes) -> str:
    """Return the text a field holds after the keystrokes: characters append, Backspace removes one."""
    field: list[str] = []
    for stroke in keystrokes:
        if stroke["key"] == "Backspace":
            if field:
                field.pop()
        elif len(stroke["key"]) == 1:
            field.append(stroke["key"])
    return "".join(field)


def substitutions(text: str, keystrokes: Keystrokes) -> Counter[tuple[str, str]]:
    """Return counts of (presented, typed) for every character press that disagreed with the text."""
    counts: Counter[tuple[str, str]] = Counter()
    position = 0
    for stroke in keystrokes:
        key = stroke["key"]
        if key == "Backspace":
            position = max(position - 1, 0)
        elif len(key) == 1:
            if position < len(text) and key != text[position]:
                counts[(text[position], key)] += 1
            position += 1
    return counts


def iki_ms(keystrokes: Keystrokes) -> np.ndarray:
    """Return the intervals between consecutive key presses (ms)."""
    return np.diff(np.array([stroke["down"] for stroke in keystrokes], dtype=float))


def rollover_ratio(keystrokes: Keystrokes) -> float:
    """Return the share of presses after the first that go down before the previous press is released."""
    overlaps = [
        current["down"] < previous["up"]
        for previous, current in pairwise(keystrokes)
        if previous["up"] is not None
    ]
    return float(np.mean(overlaps))


def letter_pair_ikis(submission: dict[str, Any]) -> dict[str, list[int]]:
    """Return IKIs of consecutive letter presses, split into alternating-hand, same-hand and repeated."""
    layout = get_layout(submission["layout"])
    pairs: dict[str, list[int]] = {"alternating": [], "same_hand": [], "repeat": []}
    strokes = submission["keystrokes"]
    for previous, current in pairwise(strokes):
        a, b = previous["key"], current["key"]
        if len(a) != 1 or len(b) != 1 or not (a.isalpha() and b.isalpha()):
            continue
        if a.lower() == b.lower():
            kind = "repeat"
        elif layout.hand(a) == layout.hand(b):
            kind = "same_hand"
        else:
            kind = "alternating"
        pairs[kind].append(current["down"] - previous["down"])
    return pairs


def typing_wpm(submission: dict[str, Any]) -> float:
    """Return (len(T) − 1) / S × 60 / 5, S the seconds from first to last press (MacKenzie 2002)."""
    downs = [stroke["down"] for stroke in submission["keystrokes"]]
    seconds = (downs[-1] - downs[0]) / 1000
    return (len(transcribe(submission["keystrokes"])) - 1) / seconds * 12


def split_sentences(text: str) -> list[str]:
    """Return the built-in sentences that, joined by spaces, make `text` (fails if they don't)."""
    found = []
    while text:
        sentence = next(s for s in SENTENCES if text.startswith(s) and text[len(s) : len(s) + 1] in ("", " "))
        found.append(sentence)
        text = text[len(sentence) + 1 :]
    return found


def profile(**changes: Any) -> TypistProfile:
    """Return an average qwerty typist, with `changes` applied."""
    fields: dict[str, Any] = dict(
        user_id=7, wpm=55.0, hold_median_ms=105.0, rollover=0.2, error_rate=0.05, correction_rate=0.85
    )
    fields.update(changes)
    return TypistProfile(**fields)


def type_tests(typist: TypistProfile, n_tests: int, seed: int = 5) -> list[dict[str, Any]]:
    """Return `n_tests` submissions typed by one profile."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    return [simulate_test(typist, rng, start + timedelta(days=i), i) for i in range(n_tests)]


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return simulate_tests(POPULATION_USERS, POPULATION_TESTS, seed=POPULATION_SEED)


# --- determinism ---


def test_same_seed_same_output_different_seed_different() -> None:
    first = simulate_tests(6, 3, seed=1)
    assert first == simulate_tests(6, 3, seed=1)
    other = simulate_tests(6, 3, seed=2)
    assert [s["keystrokes"] for s in other] != [s["keystrokes"] for s in first]
    assert [s["test_id"] for s in first][:2] == ["sim-1-1-0", "sim-1-1-1"]


def test_users_do_not_depend_on_how_many_are_simulated() -> None:
    assert make_profiles(5, seed=3)[:3] == make_profiles(3, seed=3)
    assert simulate_tests(4, 2, seed=3)[:4] == simulate_tests(2, 2, seed=3)
    assert [p.user_id for p in make_profiles(3, seed=3, first_user_id=100)] == [100, 101, 102]


# --- profiles ---


def test_profiles_follow_the_published_population() -> None:
    profiles = make_profiles(3000, seed=4)
    wpm = np.array([p.wpm for p in profiles])
    assert 48 < wpm.mean() < 55 and 16 < wpm.std() < 24
    assert wpm.min() >= 15 and wpm.max() <= 150
    holds = np.array([p.hold_median_ms for p in profiles])
    assert 95 < holds.mean() < 112
    rollover = np.array([p.rollover for p in profiles])
    assert 0.17 < rollover.mean() < 0.28 and 0.08 < rollover.std() < 0.22
    uncorrected = np.array([p.error_rate * (1 - p.correction_rate) for p in profiles])
    assert 0.008 < uncorrected.mean() < 0.016
    assert 0.75 < np.mean([p.correction_rate for p in profiles]) < 0.9
    layouts = Counter(p.layout for p in profiles)
    assert set(layouts) == set(LAYOUTS) and layouts.most_common(1)[0][0] == "qwerty"


def test_profile_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="workman"):
        profile(layout="workman")
    with pytest.raises(ValueError, match="error_rate"):
        profile(error_rate=1.5)
    with pytest.raises(ValueError):
        profile(wpm=0)


# --- texts and submission shape ---


def test_sentences_are_plain_english_every_layout_can_type() -> None:
    assert len(SENTENCES) >= 24 and len(set(SENTENCES)) == len(SENTENCES)
    for sentence in SENTENCES:
        assert 30 <= len(sentence) <= 120 and sentence.isascii()
        for name in LAYOUTS:
            assert all(get_layout(name).key_info(char) is not None for char in sentence)


def test_submission_shape(population: list[dict[str, Any]]) -> None:
    assert len(population) == POPULATION_USERS * POPULATION_TESTS
    assert len({s["test_id"] for s in population}) == len(population)
    for submission in population[:200]:
        assert set(submission) == {
            "user_id",
            "test_id",
            "started_at",
            "text",
            "layout",
            "language",
            "keystrokes",
        }
        assert json.loads(json.dumps(submission)) == submission
        assert isinstance(submission["user_id"], int)
        assert re.fullmatch(rf"sim-{POPULATION_SEED}-{submission['user_id']}-\d+", submission["test_id"])
        assert STARTED_AT.match(submission["started_at"])
        assert submission["layout"] in LAYOUTS and submission["language"] == "en"
        sentences = split_sentences(submission["text"])
        assert 1 <= len(sentences) <= 3 and len(set(sentences)) == len(sentences)
        for stroke in submission["keystrokes"]:
            assert set(stroke) == {"key", "down", "up"}
            assert len(stroke["key"]) == 1 or stroke["key"] in ("Backspace", "Shift")


def test_started_at_is_utc_and_tests_are_spread_over_days(population: list[dict[str, Any]]) -> None:
    by_user: dict[int, list[datetime]] = {}
    for submission in population:
        moment = datetime.strptime(submission["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        by_user.setdefault(submission["user_id"], []).append(moment)
    for moments in by_user.values():
        assert moments == sorted(moments)
        assert len({m.date() for m in moments}) == POPULATION_TESTS
    typist = profile()
    rng = np.random.default_rng(0)
    naive = simulate_test(typist, rng, datetime(2026, 11, 27, 10, 0, 0, 5000), 3)
    assert naive["started_at"] == "2026-11-27T10:00:00.005Z" and naive["test_id"] == "sim-7-3"
    paris = timezone(timedelta(hours=1))
    aware = simulate_test(typist, rng, datetime(2026, 11, 27, 11, tzinfo=paris), 4, test_id="t-4")
    assert aware["started_at"] == "2026-11-27T10:00:00.000Z" and aware["test_id"] == "t-4"


def test_keystroke_order_invariants(population: list[dict[str, Any]]) -> None:
    missing = total = 0
    for submission in population:
        strokes = submission["keystrokes"]
        downs = [stroke["down"] for stroke in strokes]
        assert all(isinstance(d, int) for d in downs) and downs[0] == 0
        assert all(a <= b for a, b in pairwise(downs))
        for stroke in strokes:
            if stroke["up"] is None:
                missing += 1
            else:
                assert isinstance(stroke["up"], int) and stroke["up"] >= stroke["down"]
        total += len(strokes)
    assert 0.003 < missing / total < 0.02  # the lost-release case is exercised, rarely


def test_capitals_are_typed_with_shift_held(population: list[dict[str, Any]]) -> None:
    capitals = 0
    for submission in population[:300]:
        strokes = submission["keystrokes"]
        for previous, current in pairwise(strokes):
            if current["key"].isupper():
                capitals += 1
                assert previous["key"] == "Shift"
                if previous["up"] is not None and current["up"] is not None:
                    assert previous["down"] <= current["down"] < previous["up"]
                    assert previous["up"] >= current["up"]
        assert strokes[-1]["key"] != "Shift"
    assert capitals > 300


# --- replay: corrections put the presented text back ---


def test_replay_reproduces_the_text_apart_from_rare_uncorrected_slips(
    population: list[dict[str, Any]],
) -> None:
    wrong = characters = exact = at_most_two = 0
    for submission in population:
        typed, text = transcribe(submission["keystrokes"]), submission["text"]
        assert len(typed) == len(text)  # slips substitute; corrections restore the length
        errors = sum(a != b for a, b in zip(typed, text, strict=True))
        wrong += errors
        characters += len(text)
        exact += errors == 0
        at_most_two += errors <= 2
    assert 0.005 < wrong / characters < 0.05  # published: 1.18 % of characters stay wrong
    # 1.2 % of ~150 characters leaves about one slip per test, so exact copies are a large minority.
    assert exact / len(population) > 0.3
    assert at_most_two / len(population) > 0.75


def test_a_typist_who_corrects_everything_reproduces_every_text() -> None:
    backspaces = 0
    for submission in type_tests(profile(error_rate=0.15, correction_rate=1.0), 60):
        assert transcribe(submission["keystrokes"]) == submission["text"]
        backspaces += sum(stroke["key"] == "Backspace" for stroke in submission["keystrokes"])
    assert backspaces > 200  # there were slips to correct


def test_an_error_free_typist_never_backspaces() -> None:
    for submission in type_tests(profile(error_rate=0.0), 30):
        keys = [stroke["key"] for stroke in submission["keystrokes"]]
        assert "Backspace" not in keys
        assert "".join(key for key in keys if key != "Shift") == submission["text"]


# --- population statistics against typing-facts.md ---


def test_population_timing_statistics(population: list[dict[str, Any]]) -> None:
    ikis = np.concatenate([iki_ms(s["keystrokes"]) for s in population])
    holds = np.array(
        [k["up"] - k["down"] for s in population for k in s["keystrokes"] if k["up"] is not None]
    )
    assert 120 < np.median(ikis) < 260  # published pooled median 169 ms
    assert 80 < holds.mean() < 150  # published 112.7 ms

    pairs: dict[str, list[int]] = {"alternating": [], "same_hand": [], "repeat": []}
    for submission in population:
        for kind, values in letter_pair_ikis(submission).items():
            pairs[kind].extend(values)
    assert np.mean(pairs["alternating"]) < np.mean(pairs["same_hand"])
    assert np.median(pairs["alternating"]) < np.median(pairs["same_hand"])  # published 144 vs 176 ms

    per_user: dict[int, list[float]] = {}
    for submission in population:
        per_user.setdefault(submission["user_id"], []).append(rollover_ratio(submission["keystrokes"]))
    rollover = np.array([np.mean(ratios) for ratios in per_user.values()])
    assert 0.1 < rollover.mean() < 0.4  # published 0.22 ± 0.16
    assert rollover.max() > 0.4  # fast typists roll over a lot


def test_profiles_score_their_wpm(population: list[dict[str, Any]]) -> None:
    target = {p.user_id: p.wpm for p in make_profiles(POPULATION_USERS, POPULATION_SEED)}
    scored: dict[int, list[float]] = {}
    for submission in population:
        scored.setdefault(submission["user_id"], []).append(typing_wpm(submission))
    users = sorted(scored)
    measured = np.array([np.median(scored[u]) for u in users])
    wanted = np.array([target[u] for u in users])
    assert 0.9 < np.median(measured / wanted) < 1.1
    assert np.corrcoef(measured, wanted)[0, 1] > 0.95
    assert 45 < measured.mean() < 58  # published 51.5


def test_rollover_follows_the_profile() -> None:
    low = np.mean([rollover_ratio(s["keystrokes"]) for s in type_tests(profile(rollover=0.05), 40)])
    high = np.mean([rollover_ratio(s["keystrokes"]) for s in type_tests(profile(rollover=0.5), 40)])
    assert abs(low - 0.05) < 0.05 and abs(high - 0.5) < 0.05


# --- behavioural hooks used by later tests ---


def before_key_ikis(submissions: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Return the median IKI before presses of `key` and before presses of other letters."""
    before_key, before_others = [], []
    for submission in submissions:
        strokes = submission["keystrokes"]
        for previous, current in pairwise(strokes):
            if current["key"] == key:
                before_key.append(current["down"] - previous["down"])
            elif current["key"].isalpha() and len(current["key"]) == 1 and current["key"].islower():
                before_others.append(current["down"] - previous["down"])
    return float(np.median(before_key)), float(np.median(before_others))


def test_slow_keys_slow_the_interval_before_that_key() -> None:
    slow_q, slow_others = before_key_ikis(type_tests(profile(slow_keys={"q": 3.0}), 250), "q")
    plain_q, plain_others = before_key_ikis(type_tests(profile(), 250), "q")
    assert slow_q > 2.0 * slow_others
    assert plain_q < 1.5 * plain_others
    assert slow_others == pytest.approx(plain_others, rel=0.1)


def test_confusions_force_their_substitution() -> None:
    counts: Counter[tuple[str, str]] = Counter()
    for submission in type_tests(profile(confusions={"e": "r"}), 150):
        counts += substitutions(submission["text"], submission["keystrokes"])
    (most_common, n), (_, runner_up) = counts.most_common(2)
    assert most_common == ("e", "r") and n > 3 * runner_up

    plain: Counter[tuple[str, str]] = Counter()
    for submission in type_tests(profile(), 150):
        plain += substitutions(submission["text"], submission["keystrokes"])
    assert plain[("e", "r")] < n / 3
