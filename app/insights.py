"""A typist's insights, per-key table and progress, assembled from ClickHouse aggregates.

Reads only aggregates (per-test results, per-test key/pair rows, the daily materialized views), never raw
keystrokes, and hands them to the pure history analytics (weakness, progress, recommendations).
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from app.analytics.layouts import FINGERS, get_layout
from app.analytics.progress import progress
from app.analytics.recommendations import recommend
from app.analytics.weakness import rank_units, top_confusions
from app.clickhouse.store import (
    user_confusions,
    user_summary,
    user_test_history,
    user_unit_aggregates,
    user_unit_history,
)

HANDS = ("left", "right")
ROWS = ("number", "top", "home", "bottom", "space")
SLOWEST_KEYS = 5
MIN_TIMED_PRESSES = 3  # fewer timed presses say too little about a key's speed to rank it
RECENT_TESTS = 10


def _slowest(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = [k for k in keys if k["timed_presses"] >= MIN_TIMED_PRESSES]
    return sorted(ranked, key=lambda k: (-k["mean_time_to_type_ms"], k["key"]))[:SLOWEST_KEYS]


def _per_100(count: int, presses: int) -> float | None:
    return 100.0 * count / presses if presses else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def build_insights(
    client: Client,
    user_id: int,
    *,
    target_wpm: float = 60.0,
    target_cpm: float = 175.0,
    model_forecast: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Everything keyscope tells a typist, with its evidence; None for a user with no tests. `model_forecast` is the
    trajectory model's (app/models/forecast.py), shown beside keybr's forecast; None without a promoted model."""
    summary = user_summary(client, user_id, RECENT_TESTS)
    if summary is None:
        return None
    keys = user_unit_aggregates(client, user_id, "key")
    key_rank = rank_units(user_unit_history(client, user_id, "key"), kind="key", target_cpm=target_cpm)
    pair_rank = rank_units(user_unit_history(client, user_id, "pair"), kind="pair", target_cpm=target_cpm)
    history = user_test_history(client, user_id)
    recent_tests = history.slice(max(0, history.num_rows - RECENT_TESTS))
    totals, recent, overall = summary["totals"], summary["recent"], summary["overall"]
    presses = summary["keystroke_count"]
    errors_by = summary["errors_by"]
    progress_report = progress(history, target_wpm=target_wpm)
    return {
        "user_id": user_id,
        "test_count": summary["test_count"],
        "keystroke_count": presses,
        "layout": summary["layout"],
        "mean_wpm": overall["wpm"],
        "mean_accuracy": overall["accuracy"],
        "health": {
            "score": recent["health_score"],
            "components": {
                name: recent[f"health_{name}"] for name in ("speed", "accuracy", "consistency", "rhythm", "fatigue")
            },
            "tests": recent["tests"],
            "note": "typing technique only (speed, accuracy, consistency, rhythm, fatigue); not a medical measure",
        },
        "recent": recent,
        "overall": overall,
        "rhythm": {
            "iki_cv": recent["iki_cv"],
            "median_iki_ms": recent["median_iki_ms"],
            "key_consistency": recent["key_consistency"],
            "hesitations_per_100_presses": _per_100(totals["hesitations"], presses),
            "hesitation_share_at_word_start": _share(totals["hesitations_word_start"], totals["hesitations"]),
            "hesitation_share_after_error": _share(totals["hesitations_after_error"], totals["hesitations"]),
            "slowdown": recent["slowdown"],
        },
        "error_patterns": {
            "transpositions": totals["transpositions"],
            "doubled_letters": totals["doubled_letters"],
            "dropped_letters": totals["dropped_letters"],
            "error_bursts": totals["error_bursts"],
            "corrections": totals["corrections"],
            "by_finger": dict(zip(FINGERS, errors_by["finger"] or [0] * len(FINGERS))),
            "by_hand": dict(zip(HANDS, errors_by["hand"] or [0] * len(HANDS))),
            "by_row": dict(zip(ROWS, errors_by["row"] or [0] * len(ROWS))),
            "top_confusions": top_confusions(user_confusions(client, user_id)),
        },
        "weak_keys": key_rank["weak"],
        "strong_keys": key_rank["strong"],
        "weak_pairs": pair_rank["weak"],
        "strong_pairs": pair_rank["strong"],
        # Every eligible unit, not just the top few: the rules pick their own (e.g. a slow same-finger pair).
        "recommendations": recommend(
            weak_keys=[e for e in key_rank["all"] if e["eligible"]],
            weak_pairs=[e for e in pair_rank["all"] if e["eligible"]],
            recent_tests=recent_tests,
            layout=summary["layout"],
        ),
        "progress": {
            **{name: progress_report[name] for name in ("trend", "forecast", "streaks", "personal_bests")},
            "model_forecast": model_forecast,
        },
        "keys": keys,
        "slowest_keys": _slowest(keys),
    }


def _position(layout_name: str, key: str) -> dict[str, Any]:
    info = get_layout(layout_name).key_info(key)
    if info is None:
        return {"row": None, "column": None, "x": None, "hand": None, "finger": None}
    return {"row": info.row, "column": info.column, "x": info.x, "hand": info.hand, "finger": info.finger}


def build_key_table(client: Client, user_id: int, *, target_cpm: float = 175.0) -> dict[str, Any] | None:
    """Per key (with its place on the user's layout, for a heatmap) and per letter pair: counts, times,
    confidence and what was typed instead; None for a user with no tests."""
    summary = user_summary(client, user_id, RECENT_TESTS)
    if summary is None:
        return None
    layout = summary["layout"]
    confusions = user_confusions(client, user_id).to_pylist()
    typed_instead: dict[str, list[dict[str, Any]]] = {}
    for row in confusions:
        typed_instead.setdefault(row["key"], []).append({"typed": row["typed"], "count": int(row["count"])})
    tables = {}
    for kind in ("key", "pair"):
        ranked = {
            entry["key"]: entry
            for entry in rank_units(user_unit_history(client, user_id, kind), kind=kind, target_cpm=target_cpm)["all"]
        }
        rows = []
        for row in user_unit_aggregates(client, user_id, kind):
            entry = ranked.get(row["key"], {})
            row = {
                **row,
                "smoothed_time_ms": entry.get("smoothed_time_ms"),
                "confidence": entry.get("confidence"),
                "weakness": entry.get("score"),
            }
            if kind == "key":
                row["typed_instead"] = typed_instead.get(row["key"], [])[:3]
                row.update(_position(layout, row["key"]))
            rows.append(row)
        tables[kind] = rows
    return {"user_id": user_id, "layout": layout, "keys": tables["key"], "pairs": tables["pair"]}


def build_progress(
    client: Client, user_id: int, *, target_wpm: float = 60.0, model_forecast: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Daily series, personal bests, streaks, trend, keybr's forecast and the trajectory model's; None for a user
    with no tests."""
    history = user_test_history(client, user_id)
    if history.num_rows == 0:
        return None
    return {"user_id": user_id, **progress(history, target_wpm=target_wpm), "model_forecast": model_forecast}
