"""Concrete practice recommendations from a user's weak units and recent tests.

Each rule fires on its own evidence and yields at most one item (same-finger pairs: one per pair, at most
two). Items come in this fixed order of importance, and `priority` is the position (1 = most important):

1. slow_down — mean accuracy of the recent tests below `accuracy_floor`: errors cost the presses that fix
   them and practise the wrong motion, so accuracy comes before everything else;
2. drill_keys — up to 3 weak keys whose weakness score ≥ ln 1.25 (≈ 25 % slower and/or more error-prone
   than the user's typical key, see app.analytics.weakness);
3. same_finger_pair — a pair of two different keys typed by the same finger (not the thumb) on the layout
   whose smoothed time is ≥ 1.5 × the user's median pair time (its `time_ratio`) and whose weakness score
   passes the drill threshold too (so one slow early test of a rare pair is not enough);
4. drill_pairs — up to 3 weak pairs with score ≥ ln 1.25, leaving out pairs already named by rule 3;
5. pause_after_errors — over ≥ 3 recent tests, at least 5 hesitations right after an error, and ≥ 40 % of
   all hesitations are such: the typist stops to regroup after each mistake;
6. shorter_sessions — over ≥ 3 recent tests with a slowdown, the mean slowdown > 0.15 (fatigue).

A user for whom no rule fires gets a single keep_going item (raise the target by 10 %) when the recent
tests show a speed, and an empty list when there is no evidence at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.analytics.layouts import KeyboardLayout, get_layout

DRILL_SCORE_MIN = math.log(1.25)
MAX_DRILL_TARGETS = 3
SAME_FINGER_TIME_RATIO = 1.5
MAX_SAME_FINGER_PAIRS = 2
HESITATION_AFTER_ERROR_SHARE = 0.4
MIN_HESITATIONS_AFTER_ERROR = 5
FATIGUE_SLOWDOWN = 0.15
MIN_HABIT_TESTS = 3  # a habit (pausing, tiring) needs a few tests; one test says little
RAISE_TARGET_FACTOR = 1.10


def _floats(table: pa.Table, name: str) -> np.ndarray | None:
    """Return a column as float64 with NaN for nulls, or None when the table lacks it."""
    if name not in table.column_names:
        return None
    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _label(unit: str) -> str:
    """Return how a unit reads in a sentence (as in app.analytics.weakness)."""
    return "space" if unit == " " else "'" + unit.replace(" ", "␣") + "'"


def _numbers(**values: float | int | None) -> dict[str, float | int]:
    """Return the evidence dict without the numbers that are unknown."""
    return {name: value for name, value in values.items() if value is not None}


def _item(
    kind: str, title: str, detail: str, evidence: dict[str, Any], keys: list[str], pairs: list[str]
) -> dict[str, Any]:
    """Return one recommendation (its priority is set when the list is complete)."""
    return {
        "kind": kind,
        "priority": 0,
        "title": title,
        "detail": detail,
        "evidence": evidence,
        "targets": {"keys": keys, "pairs": pairs},
    }


def _drillable(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the eligible units weak enough to drill, weakest first (ties by unit), each unit once."""
    chosen = [u for u in units if u.get("eligible", True) and (u.get("score") or 0.0) >= DRILL_SCORE_MIN]
    ordered = sorted(chosen, key=lambda u: (-u["score"], u["key"]))
    return [u for i, u in enumerate(ordered) if u["key"] not in {v["key"] for v in ordered[:i]}]


def _unit_evidence(unit: dict[str, Any], count: int) -> dict[str, float | int]:
    """Return the numbers behind a unit item: the weakest target's, and how many targets there are."""
    return _numbers(
        targets=count,
        score=unit.get("score"),
        smoothed_time_ms=unit.get("smoothed_time_ms"),
        time_ratio=unit.get("time_ratio"),
        error_rate=unit.get("error_rate"),
        shrunk_error_rate=unit.get("shrunk_error_rate"),
        confidence=unit.get("confidence"),
        presses=unit.get("presses"),
    )


def _drill(kind: str, noun: str, units: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the drill item for the weakest `units` (already filtered), or None when there are none."""
    chosen = units[:MAX_DRILL_TARGETS]
    if not chosen:
        return None
    names = [u["key"] for u in chosen]
    labels = ", ".join(_label(name) for name in names)
    reasons = "; ".join(u.get("reason", "") for u in chosen if u.get("reason"))
    detail = f"Practise text rich in {labels} at a speed you can keep accurate." + (f" {reasons}." if reasons else "")
    title = f"Drill the {noun}{'s' if len(chosen) > 1 else ''} {labels}"
    keys, pairs = (names, []) if kind == "drill_keys" else ([], names)
    return _item(kind, title, detail, _unit_evidence(chosen[0], len(chosen)), keys, pairs)


def same_finger(pair: str, layout: KeyboardLayout) -> str | None:
    """Return the finger that types both characters of `pair` on different keys, or None (thumb excluded)."""
    if len(pair) != 2:
        return None
    first, second = layout.key_info(pair[0]), layout.key_info(pair[1])
    if first is None or second is None or first == second or first.finger == "thumb":
        return None
    return first.finger if first.finger == second.finger else None


def _same_finger_items(weak_pairs: list[dict[str, Any]], layout: KeyboardLayout) -> list[dict[str, Any]]:
    """Return one item per slow same-finger pair (slowest first, at most MAX_SAME_FINGER_PAIRS)."""
    found = []
    for unit in weak_pairs:
        ratio = unit.get("time_ratio")
        finger = same_finger(unit["key"], layout)
        slow = ratio is not None and ratio >= SAME_FINGER_TIME_RATIO
        # The score's shrinkage keeps a pair slow in one or two tests only (an early pause) from being named.
        if finger and slow and _drillable([unit]):
            found.append((unit, finger))
    found.sort(key=lambda item: (-item[0]["time_ratio"], item[0]["key"]))
    items = []
    for unit, finger in found[:MAX_SAME_FINGER_PAIRS]:
        label, hand_finger = _label(unit["key"]), finger.replace("_", " ")
        detail = (
            f"{label} is typed twice by your {hand_finger} and takes {unit['smoothed_time_ms']:.0f} ms, "
            f"{unit['time_ratio']:.1f}× your median letter pair. Start moving the finger to the second key while "
            "the first is still going down, and practise words containing the pair slowly, then at speed."
        )
        items.append(
            _item(
                "same_finger_pair",
                f"Same-finger pair {label}",
                detail,
                _unit_evidence(unit, 1),
                [],
                [unit["key"]],
            )
        )
    return items


def recommend(
    *,
    weak_keys: list[dict[str, Any]],
    weak_pairs: list[dict[str, Any]],
    recent_tests: pa.Table,
    layout: str = "qwerty",
    accuracy_floor: float = 0.95,
) -> list[dict[str, Any]]:
    """Return ranked recommendations [{kind, priority, title, detail, evidence, targets {keys, pairs}}].

    `weak_keys` / `weak_pairs` are unit dicts from `rank_units` (its "weak" list, or a longer list such as
    its eligible "all" entries to let the same-finger rule see more pairs). `recent_tests` has per-test wpm,
    accuracy, hesitations, hesitations_after_error, keystroke_count and slowdown (nulls and missing columns
    are skipped). The order and the thresholds are in the module docstring.
    """
    model = get_layout(layout)
    items: list[dict[str, Any]] = []
    wpm = _floats(recent_tests, "wpm")
    mean_wpm = float(np.nanmean(wpm)) if wpm is not None and (~np.isnan(wpm)).any() else None

    accuracy = _floats(recent_tests, "accuracy")
    mean_accuracy = float(np.nanmean(accuracy)) if accuracy is not None and (~np.isnan(accuracy)).any() else None
    if accuracy is not None and mean_accuracy is not None:
        if mean_accuracy < accuracy_floor:
            tests = int((~np.isnan(accuracy)).sum())
            suggested = 0.9 * mean_wpm if mean_wpm is not None else None
            speed = f" at {mean_wpm:.0f} WPM" if mean_wpm is not None else ""
            pace = f" (about {suggested:.0f} WPM)" if suggested is not None else ""
            items.append(
                _item(
                    "slow_down",
                    "Slow down: accuracy first",
                    f"Your last {tests} tests averaged {mean_accuracy:.1%} accuracy{speed}, below your "
                    f"{accuracy_floor:.0%} floor. Type about 10 % slower{pace} until mistakes are rare: each one "
                    "costs the presses that fix it and rehearses the wrong motion.",
                    _numbers(
                        mean_accuracy=mean_accuracy,
                        mean_wpm=mean_wpm,
                        tests=tests,
                        accuracy_floor=accuracy_floor,
                        suggested_wpm=suggested,
                    ),
                    [],
                    [],
                )
            )

    key_drill = _drill("drill_keys", "key", _drillable(weak_keys))
    if key_drill is not None:
        items.append(key_drill)

    same_finger_items = _same_finger_items(weak_pairs, model)
    items.extend(same_finger_items)
    named = {pair for item in same_finger_items for pair in item["targets"]["pairs"]}
    pair_drill = _drill("drill_pairs", "pair", [u for u in _drillable(weak_pairs) if u["key"] not in named])
    if pair_drill is not None:
        items.append(pair_drill)

    hesitations = _floats(recent_tests, "hesitations")
    after_error = _floats(recent_tests, "hesitations_after_error")
    if hesitations is not None and after_error is not None:
        both = ~np.isnan(hesitations) & ~np.isnan(after_error)
        total, total_after = float(hesitations[both].sum()), float(after_error[both].sum())
        share = total_after / total if total > 0 else None
        if (
            int(both.sum()) >= MIN_HABIT_TESTS
            and share is not None
            and total_after >= MIN_HESITATIONS_AFTER_ERROR
            and share >= HESITATION_AFTER_ERROR_SHARE
        ):
            keystrokes = _floats(recent_tests, "keystroke_count")
            per_1000 = None
            if keystrokes is not None and np.nansum(keystrokes[both]) > 0:
                per_1000 = 1000.0 * total_after / float(np.nansum(keystrokes[both]))
            items.append(
                _item(
                    "pause_after_errors",
                    "Keep your rhythm after a mistake",
                    f"{total_after:.0f} of your {total:.0f} long pauses in the last {int(both.sum())} tests "
                    f"({share:.0%}) came right after a mistake. Fix it and carry on at your usual pace instead "
                    "of stopping to regroup: the pause costs more time than the error.",
                    _numbers(
                        hesitations=int(total),
                        hesitations_after_error=int(total_after),
                        share_after_error=share,
                        per_1000_keystrokes=per_1000,
                        tests=int(both.sum()),
                    ),
                    [],
                    [],
                )
            )

    slowdown = _floats(recent_tests, "slowdown")
    if slowdown is not None and int((~np.isnan(slowdown)).sum()) >= MIN_HABIT_TESTS:
        mean_slowdown = float(np.nanmean(slowdown))
        if mean_slowdown > FATIGUE_SLOWDOWN:
            tests = int((~np.isnan(slowdown)).sum())
            items.append(
                _item(
                    "shorter_sessions",
                    "Shorter sessions, more breaks",
                    f"Over your last {tests} tests you typed on average {mean_slowdown:.0%} slower at the end of a "
                    "test than at its start. Practise in shorter bursts with breaks so every minute is at full "
                    "speed and good form.",
                    _numbers(mean_slowdown=mean_slowdown, tests=tests, threshold=FATIGUE_SLOWDOWN),
                    [],
                    [],
                )
            )

    if not items and mean_wpm is not None:
        target = math.ceil(mean_wpm * RAISE_TARGET_FACTOR)
        items.append(
            _item(
                "keep_going",
                "Keep going: raise your target",
                f"Nothing stands out: your recent tests average {mean_wpm:.0f} WPM with no weak key or habit "
                f"above the thresholds. Aim for {target} WPM next while keeping your accuracy.",
                _numbers(mean_wpm=mean_wpm, mean_accuracy=mean_accuracy, suggested_target_wpm=target),
                [],
                [],
            )
        )

    for priority, item in enumerate(items, start=1):
        item["priority"] = priority
    return items
