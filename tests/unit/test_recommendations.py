import json
import math

import pyarrow as pa
import pytest

from app.analytics.layouts import get_layout
from app.analytics.recommendations import DRILL_SCORE_MIN, recommend, same_finger
from app.analytics.weakness import rank_units
from tests.unit.test_weakness import simulated_tables


def recent(**columns) -> pa.Table:
    return pa.table({name: pa.array(values, pa.float64()) for name, values in columns.items()})


GOOD_TESTS = recent(wpm=[62.0, 64.0, 66.0], accuracy=[0.97, 0.98, 0.99], slowdown=[0.02, 0.05, 0.0])


def unit(name: str, score: float, time_ratio: float = 1.2, eligible: bool = True, **extra) -> dict:
    """A unit dict shaped like rank_units' entries (only the fields recommend reads)."""
    return {
        "key": name,
        "score": score,
        "time_ratio": time_ratio,
        "smoothed_time_ms": 180.0 * time_ratio,
        "error_rate": 0.05,
        "shrunk_error_rate": 0.05,
        "presses": 40,
        "eligible": eligible,
        "reason": f"'{name}' is slow",
        **extra,
    }


def kinds(items: list[dict]) -> list[str]:
    return [item["kind"] for item in items]


def test_same_finger_pairs_on_the_layout():
    qwerty, dvorak = get_layout("qwerty"), get_layout("dvorak")
    assert same_finger("de", qwerty) == "left_middle"  # d and e: left middle finger
    assert same_finger("ed", qwerty) == "left_middle"
    assert same_finger("ju", qwerty) == "right_index"
    assert same_finger("De", qwerty) == "left_middle"  # capitals share their letter's key
    assert same_finger("ee", qwerty) is None  # a repeated key is not a finger move
    assert same_finger("dk", qwerty) is None
    assert same_finger("e ", qwerty) is None
    assert same_finger("ui", qwerty) is None and same_finger("ui", dvorak) == "left_index"


def test_low_accuracy_asks_to_slow_down_first():
    # Mean accuracy (0.92 + 0.90 + 0.94) / 3 = 0.92 < 0.95; mean wpm 70; suggested 0.9 · 70 = 63.
    tests = recent(wpm=[68.0, 70.0, 72.0], accuracy=[0.92, 0.90, 0.94])
    items = recommend(weak_keys=[unit("q", 1.0)], weak_pairs=[], recent_tests=tests)
    assert kinds(items) == ["slow_down", "drill_keys"]
    first = items[0]
    assert first["priority"] == 1 and items[1]["priority"] == 2
    assert first["evidence"]["mean_accuracy"] == pytest.approx(0.92)
    assert first["evidence"]["mean_wpm"] == pytest.approx(70.0)
    assert first["evidence"]["suggested_wpm"] == pytest.approx(63.0)
    assert first["evidence"]["tests"] == 3
    assert "92.0%" in first["detail"] and first["targets"] == {"keys": [], "pairs": []}
    assert kinds(recommend(weak_keys=[], weak_pairs=[], recent_tests=tests, accuracy_floor=0.9)) == ["keep_going"]


def test_drills_take_the_weakest_eligible_units_above_the_threshold():
    weak_keys = [
        unit("z", 0.5),
        unit("q", 1.2),
        unit("x", 2.0, eligible=False),  # too few presses
        unit("b", DRILL_SCORE_MIN / 2),  # barely worse than typical
        unit("j", 0.9),
        unit("k", 0.6),
    ]
    (item,) = recommend(weak_keys=weak_keys, weak_pairs=[], recent_tests=GOOD_TESTS)
    assert item["kind"] == "drill_keys"
    assert item["targets"] == {"keys": ["q", "j", "k"], "pairs": []}
    assert item["evidence"]["score"] == 1.2 and item["evidence"]["targets"] == 3
    assert "'q' is slow" in item["detail"]


def test_slow_same_finger_pair_is_named_once():
    # 'de' (left middle twice) at 1.6× the median pair time; 'ju' (right index) only 1.4×; 'th' is not same-finger;
    # 'ce' (left middle) is 2× slow but its shrunk score is below the drill threshold (a rare pair's noise).
    weak_pairs = [
        unit("de", 0.7, time_ratio=1.6),
        unit("ju", 0.6, time_ratio=1.4),
        unit("th", 0.5, time_ratio=1.7),
        unit("ce", 0.1, time_ratio=2.0),
    ]
    items = recommend(weak_keys=[], weak_pairs=weak_pairs, recent_tests=GOOD_TESTS)
    assert kinds(items) == ["same_finger_pair", "drill_pairs"]
    assert items[0]["targets"]["pairs"] == ["de"] and "left middle" in items[0]["detail"]
    assert items[0]["evidence"]["time_ratio"] == 1.6
    assert items[1]["targets"]["pairs"] == ["ju", "th"]  # 'de' is not repeated in the drill


def test_pausing_after_errors():
    # 10 hesitations, 5 of them right after an error: share 0.5 ≥ 0.4 and at least 5 → advice.
    tests = recent(
        wpm=[60.0, 61.0, 62.0],
        accuracy=[0.97, 0.97, 0.97],
        hesitations=[4, 3, 3],
        hesitations_after_error=[2, 2, 1],
        keystroke_count=[300, 300, 400],
    )
    (item,) = recommend(weak_keys=[], weak_pairs=[], recent_tests=tests)
    assert item["kind"] == "pause_after_errors"
    assert item["evidence"] == {
        "hesitations": 10,
        "hesitations_after_error": 5,
        "share_after_error": 0.5,
        "per_1000_keystrokes": 5.0,
        "tests": 3,
    }
    calm = recent(wpm=[60.0] * 3, accuracy=[0.97] * 3, hesitations=[10, 10, 10], hesitations_after_error=[1, 2, 2])
    assert kinds(recommend(weak_keys=[], weak_pairs=[], recent_tests=calm)) == ["keep_going"]


def test_fatigue_suggests_shorter_sessions():
    # Mean slowdown (0.20 + 0.18 + 0.12) / 3 = 0.1667 > 0.15.
    tired = recent(wpm=[60.0] * 3, accuracy=[0.97] * 3, slowdown=[0.20, 0.18, 0.12])
    (item,) = recommend(weak_keys=[], weak_pairs=[], recent_tests=tired)
    assert item["kind"] == "shorter_sessions"
    assert item["evidence"]["mean_slowdown"] == pytest.approx(0.5 / 3)
    fresh = recent(wpm=[60.0] * 3, accuracy=[0.97] * 3, slowdown=[0.10, 0.10, 0.20])
    assert kinds(recommend(weak_keys=[], weak_pairs=[], recent_tests=fresh)) == ["keep_going"]
    one_bad_test = recent(wpm=[60.0, 60.0], accuracy=[0.97, 0.97], slowdown=[0.5, 0.3])  # too few tests
    assert kinds(recommend(weak_keys=[], weak_pairs=[], recent_tests=one_bad_test)) == ["keep_going"]


def test_nothing_wrong_gets_one_keep_going_item():
    (item,) = recommend(weak_keys=[unit("a", 0.05)], weak_pairs=[], recent_tests=GOOD_TESTS)
    assert item["kind"] == "keep_going" and item["priority"] == 1
    assert item["evidence"]["suggested_target_wpm"] == math.ceil(64.0 * 1.1)  # 71
    assert recommend(weak_keys=[], weak_pairs=[], recent_tests=pa.table({})) == []


def test_everything_at_once_is_ordered_deterministic_and_json_friendly():
    tests = recent(
        wpm=[50.0, 52.0, 54.0, None],
        accuracy=[0.90, 0.92, 0.91, None],
        hesitations=[6, 6, 6, 6],
        hesitations_after_error=[4, 4, 4, 4],
        keystroke_count=[250, 250, 250, 250],
        slowdown=[0.3, 0.2, 0.2, None],  # nulls are skipped
        health_score=[50.0, 55.0, 60.0, 60.0],
    )
    arguments = dict(
        weak_keys=[unit("q", 1.0), unit("z", 0.7)],
        weak_pairs=[unit("de", 0.8, time_ratio=1.8), unit("qu", 0.6)],
        recent_tests=tests,
    )
    items = recommend(**arguments)
    assert kinds(items) == [
        "slow_down",
        "drill_keys",
        "same_finger_pair",
        "drill_pairs",
        "pause_after_errors",
        "shorter_sessions",
    ]
    assert [item["priority"] for item in items] == [1, 2, 3, 4, 5, 6]
    assert items == recommend(**arguments)
    pairs = [p for item in items for p in item["targets"]["pairs"]]
    assert len(pairs) == len(set(pairs))
    for item in items:
        assert all(isinstance(v, (int, float)) for v in item["evidence"].values()) and item["evidence"]
    json.dumps(items, allow_nan=False)


def test_simulated_slow_q_typist_is_told_to_drill_q():
    tables = simulated_tables(40, slow_keys={"q": 3.0})
    keys = rank_units(tables.key_stats, kind="key")["weak"]
    pairs = rank_units(tables.pair_stats, kind="pair")["weak"]
    results = tables.results
    items = recommend(weak_keys=keys, weak_pairs=pairs, recent_tests=results.select(["wpm", "accuracy"]))
    drill = next(item for item in items if item["kind"] == "drill_keys")
    assert drill["targets"]["keys"][0] == "q"
    assert any("q" in pair for item in items for pair in item["targets"]["pairs"])
    json.dumps(items, allow_nan=False)
