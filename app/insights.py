"""A typist's insights, per-key table and progress, assembled from ClickHouse aggregates.

Reads only aggregates (per-test results, per-test key/pair rows), never raw keystrokes, and hands them to the pure
history analytics (weakness, progress, recommendations). `load_histories` fetches what the reads need for many
typists in one query per kind (the insights refresh); `build_reads` assembles all three reads of one typist,
ranking keys and pairs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from app.analytics.layouts import FINGERS, get_layout
from app.analytics.progress import progress
from app.analytics.recommendations import recommend
from app.analytics.weakness import empty_ranking, rank_units_by_user, top_confusions
from app.clickhouse.store import (
    users_confusions,
    users_summary,
    users_test_history,
    users_unit_aggregates,
    users_unit_history,
)

HANDS = ("left", "right")
ROWS = ("number", "top", "home", "bottom", "space")
SLOWEST_KEYS = 5
MIN_TIMED_PRESSES = 3  # fewer timed presses say too little about a key's speed to rank it
RECENT_TESTS = 10


@dataclass(frozen=True)
class TypistHistory:
    """What the reads of one typist with tests are computed from."""

    user_id: int
    summary: dict[str, Any]  # users_summary's entry: counts, means, layout, covered_until
    tests: pa.Table  # chronological, one row per test
    key_rows: pa.Table  # one row per (test, key)
    pair_rows: pa.Table  # one row per (test, letter pair)
    key_totals: list[dict[str, Any]]  # per key over the history, with time quantiles
    pair_totals: list[dict[str, Any]]
    confusions: pa.Table  # key, typed, count; most frequent first


def load_histories(client: Client, user_ids: list[int]) -> dict[int, TypistHistory]:
    """The histories of these users, in eight queries whatever their number; users without tests are absent."""
    summaries = users_summary(client, user_ids, RECENT_TESTS)
    found = sorted(summaries)
    if not found:
        return {}
    tests = users_test_history(client, found)
    key_rows, pair_rows = (users_unit_history(client, found, kind) for kind in ("key", "pair"))
    key_totals, pair_totals = (users_unit_aggregates(client, found, kind) for kind in ("key", "pair"))
    confusions = users_confusions(client, found)
    return {
        u: TypistHistory(
            u, summaries[u], tests[u], key_rows[u], pair_rows[u], key_totals[u], pair_totals[u], confusions[u]
        )
        for u in found
    }


def load_history(client: Client, user_id: int) -> TypistHistory | None:
    """One user's history; None for a user with no tests."""
    return load_histories(client, [user_id]).get(user_id)


@dataclass(frozen=True)
class _Ranked:
    keys: dict[str, Any]
    pairs: dict[str, Any]


def rank_histories(histories: list[TypistHistory], target_cpm: float = 175.0) -> dict[int, _Ranked]:
    """Every typist's keys and letter pairs ranked, all typists in one vectorized pass per unit kind."""
    rankings = {}
    for kind in ("key", "pair"):
        rows = [h.key_rows if kind == "key" else h.pair_rows for h in histories]
        rankings[kind] = rank_units_by_user(pa.concat_tables(rows), kind=kind, target_cpm=target_cpm) if rows else {}
    empty = empty_ranking(60_000.0 / target_cpm)
    return {
        h.user_id: _Ranked(rankings["key"].get(h.user_id, empty), rankings["pair"].get(h.user_id, empty))
        for h in histories
    }


def _rank(history: TypistHistory, target_cpm: float) -> _Ranked:
    return rank_histories([history], target_cpm)[history.user_id]


def _slowest(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = [k for k in keys if k["timed_presses"] >= MIN_TIMED_PRESSES]
    return sorted(ranked, key=lambda k: (-k["mean_time_to_type_ms"], k["key"]))[:SLOWEST_KEYS]


def _per_100(count: int, presses: int) -> float | None:
    return 100.0 * count / presses if presses else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def build_insights(
    history: TypistHistory,
    *,
    target_wpm: float = 60.0,
    target_cpm: float = 175.0,
    model_forecast: dict[str, Any] | None = None,
    ranked: _Ranked | None = None,
    progress_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything keyscope tells a typist, with its evidence. `model_forecast` is the trajectory model's
    (app/models/forecast.py), shown beside keybr's forecast; None without a promoted model."""
    summary, tests, keys = history.summary, history.tests, history.key_totals
    ranked = ranked or _rank(history, target_cpm)
    key_rank, pair_rank = ranked.keys, ranked.pairs
    recent_tests = tests.slice(max(0, tests.num_rows - RECENT_TESTS))
    totals, recent, overall = summary["totals"], summary["recent"], summary["overall"]
    presses = summary["keystroke_count"]
    errors_by = summary["errors_by"]
    progress_report = progress_report or progress(tests, target_wpm=target_wpm)
    return {
        "user_id": history.user_id,
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
            "top_confusions": top_confusions(history.confusions),
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


def build_key_table(
    history: TypistHistory, *, target_cpm: float = 175.0, ranked: _Ranked | None = None
) -> dict[str, Any]:
    """Per key (with its place on the user's layout, for a heatmap) and per letter pair: counts, times,
    confidence and what was typed instead."""
    layout = history.summary["layout"]
    ranked = ranked or _rank(history, target_cpm)
    typed_instead: dict[str, list[dict[str, Any]]] = {}
    for row in history.confusions.to_pylist():
        typed_instead.setdefault(row["key"], []).append({"typed": row["typed"], "count": int(row["count"])})
    tables = {}
    for kind, rank, totals in (("key", ranked.keys, history.key_totals), ("pair", ranked.pairs, history.pair_totals)):
        by_unit = {entry["key"]: entry for entry in rank["all"]}
        rows = []
        for row in totals:
            entry = by_unit.get(row["key"], {})
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
    return {"user_id": history.user_id, "layout": layout, "keys": tables["key"], "pairs": tables["pair"]}


def build_progress(
    user_id: int,
    tests: pa.Table,
    *,
    target_wpm: float = 60.0,
    model_forecast: dict[str, Any] | None = None,
    progress_report: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Daily series, personal bests, streaks, trend, keybr's forecast and the trajectory model's, from the user's
    chronological tests; None for a user with no tests."""
    if tests.num_rows == 0:
        return None
    report = progress_report or progress(tests, target_wpm=target_wpm)
    return {"user_id": user_id, **report, "model_forecast": model_forecast}


def build_reads(
    history: TypistHistory,
    *,
    target_wpm: float = 60.0,
    target_cpm: float = 175.0,
    model_forecast: dict[str, Any] | None = None,
    ranked: _Ranked | None = None,
) -> dict[str, dict[str, Any]]:
    """The three precomputed reads of one typist ("insights", "keys", "progress"), ranking keys and pairs (unless
    `ranked` by `rank_histories` already) and computing progress once for all three."""
    ranked = ranked or _rank(history, target_cpm)
    report = progress(history.tests, target_wpm=target_wpm)
    return {
        "insights": build_insights(
            history, target_wpm=target_wpm, model_forecast=model_forecast, ranked=ranked, progress_report=report
        ),
        "keys": build_key_table(history, ranked=ranked),
        "progress": build_progress(
            history.user_id, history.tests, model_forecast=model_forecast, progress_report=report
        ),
    }
