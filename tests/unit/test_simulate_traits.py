"""The simulator's typist traits (`traits=True`): slow letter pairs, error-prone keys, a power-law practice curve,
within-test fatigue and day-to-day form, each measured on the submissions it produces. Paired checks type the same
tests with and without one trait (the same random stream), so the difference is the trait's alone."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from devstack.simulate import TypistProfile, make_profiles, simulate_test, simulate_tests

START = datetime(2026, 11, 1, tzinfo=UTC)
PLAIN = TypistProfile(
    user_id=7, wpm=50.0, hold_median_ms=100.0, rollover=0.2, error_rate=0.03, correction_rate=0.8
)


def _tests(profile: TypistProfile, count: int, seed: int = 1, first_index: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [simulate_test(profile, rng, START, first_index + i) for i in range(count)]


def _wpm(test: dict[str, Any]) -> float:
    """Characters of the text / 5 per minute from the first press to the last."""
    downs = [k["down"] for k in test["keystrokes"]]
    return len(test["text"]) / 5 / ((downs[-1] - downs[0]) / 60_000)


def _pair_intervals(tests: list[dict[str, Any]], pair: str) -> list[int]:
    """The interval before the pair's second key wherever the two keys follow each other (no Shift between)."""
    found = []
    for test in tests:
        strokes = test["keystrokes"]
        for before, after in zip(strokes, strokes[1:]):
            if (before["key"] + after["key"]).lower() == pair:
                found.append(after["down"] - before["down"])
    return found


def test_without_traits_a_typist_has_none_and_the_output_is_unchanged() -> None:
    plain = make_profiles(5, seed=3)
    assert all(p.pair_factors == {} and p.key_error_factors == {} and p.fatigue == p.day_sigma == 0 for p in plain)
    assert all(p.practice_factor(100) == 1.0 for p in plain)
    assert json.dumps(simulate_tests(3, 2, seed=3)) == json.dumps(simulate_tests(3, 2, seed=3, traits=False))


def test_traits_leave_a_typists_other_habits_as_they_were_and_are_seeded() -> None:
    plain, rich = make_profiles(20, seed=3), make_profiles(20, seed=3, traits=True)
    for a, b in zip(plain, rich, strict=True):
        assert (a.wpm, a.hold_median_ms, a.rollover, a.error_rate, a.correction_rate, a.layout) == (
            b.wpm, b.hold_median_ms, b.rollover, b.error_rate, b.correction_rate, b.layout
        )
        assert 4 <= len(b.pair_factors) <= 10 and 2 <= len(b.key_error_factors) <= 6
        assert 0 < b.practice_floor < 1 and b.practice_rate > 0 and b.day_sigma > 0
    once = json.dumps(simulate_tests(4, 3, seed=9, traits=True))
    assert once == json.dumps(simulate_tests(4, 3, seed=9, traits=True))
    assert once != json.dumps(simulate_tests(4, 3, seed=10, traits=True))
    first, other_seed = make_profiles(3, seed=3, traits=True)[0], make_profiles(3, seed=4, traits=True)[0]
    assert first.pair_factors != other_seed.pair_factors


@pytest.mark.parametrize("pair, factor", [("th", 2.0), ("he", 1.4)])
def test_a_slow_pair_takes_its_factor_longer_than_the_same_pair_without_it(pair: str, factor: float) -> None:
    slow = replace(PLAIN, pair_factors={pair: factor})
    with_trait = _pair_intervals(_tests(slow, 60), pair)
    without = _pair_intervals(_tests(PLAIN, 60), pair)
    assert len(with_trait) == len(without) >= 30  # the same presses: the trait moves times only
    ratio = float(np.median(np.array(with_trait) / np.maximum(np.array(without), 1)))
    assert ratio == pytest.approx(factor, rel=0.05)
    others = np.array(_pair_intervals(_tests(slow, 60), "an"))
    assert np.abs(others - np.array(_pair_intervals(_tests(PLAIN, 60), "an"))).max() <= 1  # (rounding to whole ms)


def test_an_error_prone_key_slips_its_factor_more_often() -> None:
    """No corrections, so each press is the presented character or a slip in its place."""
    careless = replace(PLAIN, error_rate=0.04, correction_rate=0.0, key_error_factors={"e": 5.0})
    wrong = {"e": 0, "other": 0}
    seen = {"e": 0, "other": 0}
    for test in _tests(careless, 400):
        typed = [k["key"] for k in test["keystrokes"] if k["key"] != "Shift"]
        assert len(typed) == len(test["text"])
        for presented, pressed in zip(test["text"], typed):
            if presented.isalpha():
                which = "e" if presented.lower() == "e" else "other"
                seen[which] += 1
                wrong[which] += pressed != presented
    e_rate, other_rate = wrong["e"] / seen["e"], wrong["other"] / seen["other"]
    assert other_rate == pytest.approx(0.04, rel=0.35)  # slips to a key without neighbours are no slips
    assert 3.5 < e_rate / other_rate < 6.5


def test_practice_raises_speed_on_a_power_law_that_levels_off() -> None:
    learner = replace(PLAIN, error_rate=0.0, practice_floor=0.6, practice_rate=0.5)
    curve = [float(np.mean([_wpm(t) for t in _tests(learner, 10, first_index=first)])) for first in (0, 20, 80, 110)]
    first, early, late, later = curve
    assert first < early < late
    assert early - first > 3 * abs(later - late)  # most of the gain comes early, then a plateau
    # The measured gain follows the curve: speed ∝ 1 / practice_factor.
    expected = np.mean([1 / learner.practice_factor(i) for i in range(110, 120)]) / np.mean(
        [1 / learner.practice_factor(i) for i in range(10)]
    )
    assert later / first == pytest.approx(expected, rel=0.08)
    assert learner.plateau_wpm == pytest.approx(50.0 / 0.6)


def test_beginners_have_more_room_to_gain() -> None:
    profiles = make_profiles(400, seed=11, traits=True)
    wpm = np.array([p.wpm for p in profiles])
    gain = np.array([p.plateau_wpm / p.wpm for p in profiles])
    assert np.corrcoef(wpm, gain)[0, 1] < -0.4
    assert gain[wpm < 35].mean() > gain[wpm > 70].mean() + 0.1


def test_fatigue_stretches_the_end_of_a_test() -> None:
    tired = replace(PLAIN, error_rate=0.0, fatigue=0.05)

    def halves(test: dict[str, Any]) -> float:
        downs = np.array([k["down"] for k in test["keystrokes"]])
        middle = len(downs) // 2
        return (downs[-1] - downs[middle]) / (downs[middle] - downs[0])

    fresh_ratio = np.mean([halves(t) for t in _tests(PLAIN, 80)])
    tired_ratio = np.mean([halves(t) for t in _tests(tired, 80)])
    assert tired_ratio > fresh_ratio * 1.02
    # About 1 + fatigue × (half a test, in hundreds of characters), measured on the same presses.
    mean_presses = np.mean([len(t["keystrokes"]) for t in _tests(PLAIN, 80)])
    assert tired_ratio / fresh_ratio == pytest.approx(1 + 0.05 * mean_presses / 200, rel=0.03)


def test_day_form_spreads_test_speeds_around_the_curve() -> None:
    steady_typist = replace(PLAIN, error_rate=0.0)
    moody = replace(steady_typist, day_sigma=0.08)

    def spread(profile: TypistProfile) -> float:
        return float(np.std([math.log(_wpm(t)) for t in _tests(profile, 300)]))

    steady, varied = spread(steady_typist), spread(moody)
    assert math.sqrt(max(varied**2 - steady**2, 0)) == pytest.approx(0.08, rel=0.3)


def test_profile_rejects_bad_traits() -> None:
    with pytest.raises(ValueError, match="practice_floor"):
        replace(PLAIN, practice_floor=0.0)
    with pytest.raises(ValueError, match="≥ 0"):
        replace(PLAIN, fatigue=-0.1)
    with pytest.raises(ValueError, match="two characters"):
        replace(PLAIN, pair_factors={"abc": 2.0})


def test_keyscope_simulate_traits_prints_the_typists_with_traits(capsys) -> None:
    from cli.main import main

    assert main(["simulate", "--users", "2", "--tests", "2", "--seed", "4", "--traits", "--to", "stdout"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == json.loads(json.dumps(simulate_tests(2, 2, seed=4, traits=True)))
    assert printed != json.loads(json.dumps(simulate_tests(2, 2, seed=4)))
