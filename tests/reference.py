"""A slow, obviously-correct reference of the transcription model and the per-test metrics.

Written straight from typing-facts.md with plain Python loops, independent of app.analytics, so the
vectorized engine and the end-to-end results can be checked against it.
"""

from __future__ import annotations

from typing import Any

NAMED = {"Backspace", "Shift", "Enter", "Tab", "CapsLock", "Control", "Alt", "Meta", "Escape", "Delete"}


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def reference_metrics(text: str, keystrokes: list[dict[str, Any]]) -> dict[str, Any]:
    """Transcribed text and the seven skeleton metrics of one test, computed press by press."""
    field: list[str] = []
    char_presses = correct = 0
    for stroke in keystrokes:
        key = stroke["key"]
        if len(key) == 1:
            char_presses += 1
            position = len(field)
            if position < len(text) and text[position] == key:
                correct += 1
            field.append(key)
        elif key == "Backspace" and field:
            field.pop()
    transcribed = "".join(field)
    downs = [round(s["down"]) for s in keystrokes]
    ups = [None if s.get("up") is None else round(s["up"]) for s in keystrokes]
    n = len(keystrokes)
    seconds = (downs[-1] - downs[0]) / 1000
    holds = [u - d for d, u in zip(downs, ups) if u is not None]
    rolled = sum(1 for i in range(1, n) if ups[i - 1] is not None and downs[i] < ups[i - 1])
    longest = max(len(text), len(transcribed))
    return {
        "transcribed": transcribed,
        "wpm": max(len(transcribed) - 1, 0) / seconds * 60 / 5 if seconds > 0 else 0.0,
        "accuracy": correct / char_presses if char_presses else 0.0,
        "uncorrected_error_rate": levenshtein(text, transcribed) / longest if longest else 0.0,
        "kspc": n / len(transcribed) if transcribed else 0.0,
        "mean_iki_ms": sum(downs[i] - downs[i - 1] for i in range(1, n)) / (n - 1) if n > 1 else 0.0,
        "mean_hold_ms": sum(holds) / len(holds) if holds else 0.0,
        "rollover_ratio": rolled / (n - 1) if n > 1 else 0.0,
    }


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
