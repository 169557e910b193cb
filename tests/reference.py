"""A slow, obviously-correct reference of the transcription model and the per-test analytics.

Written straight from typing-facts.md and the definitions in the app.analytics module docstrings, press by
press with plain Python loops and independent of the vectorized engine, so the engine and the end-to-end
results can be checked against it. Only the keyboard model (which key, finger and row type a character) is
taken from app.analytics.layouts, as data. Undefined values are NaN, as in the engine.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from app.analytics.layouts import FINGERS, get_layout

NAMED = {"Backspace", "Shift", "Enter", "Tab", "CapsLock", "Control", "Alt", "Meta", "Escape", "Delete"}
NAN = math.nan


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def consistency(values: list[float]) -> float:
    """Monkeytype's consistency of a list of values (NaN under 2 values or a mean ≤ 0)."""
    if len(values) < 2 or statistics.fmean(values) <= 0:
        return NAN
    cv = statistics.pstdev(values) / statistics.fmean(values)
    return 100 * (1 - math.tanh(cv + cv**3 / 3 + cv**5 / 5))


def _divide(a: float, b: float) -> float:
    return a / b if b > 0 else NAN


def reference_analysis(text: str, keystrokes: list[dict[str, Any]], layout: str = "qwerty") -> dict[str, Any]:
    """Everything analyse_batch computes for one test: transcribed, metrics, counts, series, error locations."""
    keys = [s["key"] for s in keystrokes]
    downs = [round(s["down"]) for s in keystrokes]
    ups = [None if s.get("up") is None else round(s["up"]) for s in keystrokes]
    n = len(keys)

    # Replay the presses into the field; the field remembers which press typed each character.
    field: list[tuple[str, int]] = []
    position: list[int | None] = []
    correct: list[bool] = []
    for i, key in enumerate(keys):
        if len(key) == 1:
            p = len(field)
            position.append(p)
            correct.append(p < len(text) and text[p] == key)
            field.append((key, i))
        else:
            position.append(None)
            correct.append(False)
            if key == "Backspace" and field:
                field.pop()
    transcribed = "".join(char for char, _ in field)
    survivors = {i for _, i in field}
    char_presses = sum(1 for key in keys if len(key) == 1)
    erased = sum(1 for i, key in enumerate(keys) if len(key) == 1 and i not in survivors)
    corrections = sum(1 for key in keys if key in ("Backspace", "Delete"))

    duration_ms = downs[-1] - downs[0] if n else 0
    seconds = duration_ms / 1000
    ikis = [downs[i] - downs[i - 1] for i in range(1, n)]
    holds = [u - d for d, u in zip(downs, ups) if u is not None]
    rolled = sum(1 for i in range(1, n) if ups[i - 1] is not None and downs[i] < ups[i - 1])

    # Soukoreff & MacKenzie.
    inf = levenshtein(text, transcribed)
    longest = max(len(text), len(transcribed))
    c_correct = longest - inf
    everything = c_correct + inf + erased

    # Words (str.split(" ") of P and T, word i against word i).
    p_words = text.split(" ") if text else []
    t_words = transcribed.split(" ") if transcribed else []
    chars = {"chars_correct": 0, "chars_incorrect": 0, "chars_extra": 0, "chars_missed": 0}
    net_chars = 0
    for i, t_word in enumerate(t_words):
        p_word = p_words[i] if i < len(p_words) else None
        for j, char in enumerate(t_word):
            if p_word is not None and j < len(p_word):
                chars["chars_correct" if char == p_word[j] else "chars_incorrect"] += 1
            else:
                chars["chars_extra"] += 1
        if i < len(t_words) - 1:  # the space after this word
            chars["chars_correct" if i < len(p_words) - 1 else "chars_extra"] += 1
        if t_word == p_word:
            net_chars += len(t_word) + (1 if i < len(t_words) - 1 and i < len(p_words) - 1 else 0)
    for i, p_word in enumerate(p_words):
        typed_length = len(t_words[i]) if i < len(t_words) else 0
        chars["chars_missed"] += max(0, len(p_word) - typed_length)
        if i < len(p_words) - 1 and not i < len(t_words) - 1:
            chars["chars_missed"] += 1

    # Per-second raw WPM over the whole seconds; burst WPM per non-empty word of T.
    whole_seconds = duration_ms // 1000
    per_second = [0.0] * whole_seconds
    for i, key in enumerate(keys):
        second = (downs[i] - downs[0]) // 1000
        if len(key) == 1 and second < whole_seconds:
            per_second[second] += 60 / 5
    bursts = []
    start = 0
    while start < len(field):
        if field[start][0] == " ":
            start += 1
            continue
        end = start
        while end + 1 < len(field) and field[end + 1][0] != " ":
            end += 1
        first_press, last_press = field[start][1], field[end][1]
        elapsed = downs[last_press] - downs[first_press - 1] if first_press > 0 else 0
        bursts.append((end - start + 1) / 5 / (elapsed / 60_000) if elapsed > 0 else NAN)
        start = end + 1

    # Hesitations.
    median_iki = statistics.median(ikis) if ikis else NAN
    hesitations = {"hesitations": 0, "hesitations_word_start": 0, "hesitations_after_error": 0}
    for i in range(1, n):
        iki = downs[i] - downs[i - 1]
        if not (iki > 3 * median_iki or iki > 2000):
            continue
        hesitations["hesitations"] += 1
        last_char = next((keys[j] for j in range(i - 1, -1, -1) if len(keys[j]) == 1), None)
        if keys[i] not in (" ", "Backspace", "Delete") and last_char in (None, " "):
            hesitations["hesitations_word_start"] += 1
        if (len(keys[i - 1]) == 1 and not correct[i - 1]) or keys[i - 1] == "Backspace":
            hesitations["hesitations_after_error"] += 1

    # Error patterns.
    patterns = {"transpositions": 0, "doubled_letters": 0, "dropped_letters": 0, "error_bursts": 0}
    char_indices = [i for i, key in enumerate(keys) if len(key) == 1]
    for order, i in enumerate(char_indices):
        key, p = keys[i], position[i]
        assert p is not None
        here = text[p] if p < len(text) else None
        ahead = text[p + 1] if p + 1 < len(text) else None
        behind = text[p - 1] if 1 <= p <= len(text) else None
        previous = char_indices[order - 1] if order > 0 else None
        following = char_indices[order + 1] if order + 1 < len(char_indices) else None
        skips = ahead is not None and key == ahead and ahead != here
        transposed = skips and following is not None and position[following] == p + 1 and keys[following] == here
        in_step = previous is not None and position[previous] == p - 1 and correct[previous]
        dropped = skips and not transposed and (p == 0 or in_step)
        doubled = (
            behind is not None
            and key == behind
            and key != here
            and previous is not None
            and position[previous] == p - 1
            and keys[previous] == key
            and not transposed
            and not dropped
        )
        patterns["transpositions"] += transposed
        patterns["dropped_letters"] += dropped
        patterns["doubled_letters"] += doubled
    run = 0
    for i, key in enumerate(keys):
        if len(key) == 1:
            run = run + 1 if not correct[i] else 0
            patterns["error_bursts"] += run == 2
        elif key in ("Backspace", "Delete"):
            run = 0

    # Where errors happen, by the presented key.
    model = get_layout(layout)
    by_finger, by_hand, by_row = [0] * len(FINGERS), [0, 0], [0] * 5
    for i, key in enumerate(keys):
        p = position[i]
        if len(key) == 1 and not correct[i] and p is not None and p < len(text):
            info = model.key_info(text[p])
            if info is None:
                continue
            by_finger[FINGERS.index(info.finger)] += 1
            if info.hand is not None:
                by_hand[("left", "right").index(info.hand)] += 1
            by_row[info.row] += 1

    iki_cv = statistics.pstdev(ikis) / statistics.fmean(ikis) if len(ikis) >= 2 and statistics.fmean(ikis) > 0 else NAN
    third = len(ikis) // 3
    slowdown = NAN
    if third >= 1 and sum(ikis[:third]) > 0:
        slowdown = statistics.fmean(ikis[-third:]) / statistics.fmean(ikis[:third]) - 1
    wpm = _divide(max(len(transcribed) - 1, 0) / 5 * 60, seconds)
    metrics = {
        "wpm": wpm,
        "accuracy": _divide(sum(correct), char_presses),
        "uncorrected_error_rate": _divide(inf, longest),
        "kspc": _divide(n, len(transcribed)),
        "mean_iki_ms": statistics.fmean(ikis) if ikis else NAN,
        "mean_hold_ms": statistics.fmean(holds) if holds else NAN,
        "rollover_ratio": _divide(rolled, n - 1),
        "raw_wpm": _divide(char_presses / 5 * 60, seconds),
        "net_wpm": _divide(net_chars / 5 * 60, seconds),
        "corrected_error_rate": _divide(erased, everything),
        "total_error_rate": _divide(inf + erased, everything),
        "ecpc": _divide(corrections, len(transcribed)),
        "median_iki_ms": median_iki,
        "consistency": consistency(per_second),
        "key_consistency": NAN if math.isnan(iki_cv) else 100 * (1 - math.tanh(iki_cv + iki_cv**3 / 3 + iki_cv**5 / 5)),
        "iki_cv": iki_cv,
        "slowdown": slowdown,
    }
    metrics.update(reference_health(metrics, hesitations["hesitations"], n - 1))
    return {
        "transcribed": transcribed,
        "metrics": metrics,
        "counts": {
            **chars,
            "c_correct": c_correct,
            "inf": inf,
            "if_": erased,
            "corrections": corrections,
            **hesitations,
            **patterns,
        },
        "series": {"per_second_wpm": per_second, "word_burst_wpm": bursts},
        "errors_by_finger": by_finger,
        "errors_by_hand": by_hand,
        "errors_by_row": by_row,
    }


def reference_health(metrics: dict[str, float], hesitations: int, presses_with_iki: int) -> dict[str, float]:
    """The health score and its components, from the formulas in app.analytics.health's docstring."""
    nan_or = lambda value, f: NAN if math.isnan(value) else f(value)  # noqa: E731
    components = {
        "health_speed": nan_or(metrics["wpm"], lambda w: 100 * 0.5 * (1 + math.erf((w - 51.5) / 20.5 / math.sqrt(2)))),
        "health_accuracy": nan_or(metrics["total_error_rate"], lambda r: 100 * max(0.0, 1 - r / 0.2)),
        "health_consistency": metrics["consistency"],
        "health_rhythm": 100 * 0.5 ** (100 * hesitations / presses_with_iki / 5) if presses_with_iki > 0 else NAN,
        "health_fatigue": nan_or(metrics["slowdown"], lambda s: 100 * 0.5 ** (max(s, 0.0) / 0.25)),
    }
    weights = {"health_speed": 0.3, "health_accuracy": 0.25, "health_consistency": 0.15}
    weights |= {"health_rhythm": 0.15, "health_fatigue": 0.15}
    defined = [name for name in weights if not math.isnan(components[name])]
    total = sum(weights[name] for name in defined)
    # Fewer than three defined components say too little about technique: no score.
    score = sum(weights[name] * components[name] for name in defined) / total if len(defined) >= 3 else NAN
    return {"health_score": score, **components}


def reference_metrics(text: str, keystrokes: list[dict[str, Any]]) -> dict[str, Any]:
    """Transcribed text and every per-test metric of one test (NaN where undefined), computed press by press."""
    analysis = reference_analysis(text, keystrokes)
    return {"transcribed": analysis["transcribed"], **analysis["metrics"]}


def reference_key_stats(text: str, keystrokes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per presented key: presses, errors, timed presses and the sum of time-to-type (ms)."""
    stats: dict[str, dict[str, int]] = {}
    length = 0
    previous_down = None
    for stroke in keystrokes:
        key, down = stroke["key"], round(stroke["down"])
        if len(key) == 1:
            if length < len(text):
                entry = stats.setdefault(text[length], {"presses": 0, "errors": 0, "timed": 0, "time_sum": 0})
                entry["presses"] += 1
                entry["errors"] += key != text[length]
                if previous_down is not None:
                    entry["timed"] += 1
                    entry["time_sum"] += down - previous_down
            length += 1
        elif key == "Backspace" and length:
            length -= 1
        previous_down = down
    return stats
