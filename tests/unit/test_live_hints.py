"""The hint rules and the expected slow spots (app/live/hints.py, app/live/history.py): each rule fires when its
evidence says so, names that evidence, and stays quiet otherwise."""

from __future__ import annotations

from app.keys import BACKSPACE_CODE
from app.live.hints import HintRules
from app.live.history import History, WeakUnit, expect
from app.live.metrics import LiveMetrics

INSIGHTS = {
    "test_count": 12,
    "mean_wpm": 50.0,
    "weak_pairs": [
        {"key": "ed", "mean_time_ms": 310.0, "time_ratio": 1.8, "error_rate": 0.05, "tests": 12, "eligible": True},
        {"key": " t", "mean_time_ms": 280.0, "time_ratio": 1.5, "error_rate": 0.02, "tests": 12, "eligible": True},
        {"key": "zz", "mean_time_ms": 900.0, "tests": 1, "eligible": False},
    ],
    "weak_keys": [{"key": "q", "mean_time_ms": 400.0, "time_ratio": 2.2, "error_rate": 0.1, "tests": 12}],
}


def run(text: str, history: History, presses: list[tuple[int, int]]) -> list[list[dict]]:
    """The hints of each batch of one press."""
    metrics, rules = LiveMetrics(text), HintRules(text, history, expect(text, history))
    return [rules.after(metrics, [metrics.press(code, down)]) for code, down in presses]


def steady(text: str, step_ms: int = 200, first_ms: int = 0) -> list[tuple[int, int]]:
    return [(ord(c), first_ms + i * step_ms) for i, c in enumerate(text)]


def kinds(batches: list[list[dict]]) -> list[str]:
    return [h["kind"] for batch in batches for h in batch]


def test_history_reads_the_insights_eligible_weak_units_in_rank_order():
    history = History.from_sources(INSIGHTS, None)
    assert [(u.unit, u.rank) for u in history.weak_pairs] == [("ed", 1), (" t", 2)]
    assert history.weak_keys[0] == WeakUnit("q", "key", 1, 400.0, 2.2, 0.1, 12)
    assert history.target_wpm() == (50.0, {"source": "insights", "tests": 12})
    assert History.from_sources(None, None) == History() and History().target_wpm() is None
    assert History.from_json(history.to_json()) == history


def test_expect_lists_every_weak_unit_in_the_text_and_the_predictors_slow_characters():
    text = "we need to quit"
    prediction = {"predicted_wpm": 60.0, "model_version": "pattern:v1,error:v1",
                  "chars": [{"char": c, "time_ms": 700.0 if c == "u" else 150.0} for c in text]}  # fmt: skip
    spots = expect(text, History.from_sources(INSIGHTS, prediction))
    assert [(s.position, s.chars, s.kind) for s in spots] == [
        (5, "ed", "slow_pair"), (7, " t", "slow_pair"), (11, "q", "slow_key"), (12, "u", "predicted_slow"),
    ]  # fmt: skip
    assert spots[0].evidence == {"source": "insights", "unit": "ed", "kind": "pair", "rank": 1, "mean_time_ms": 310.0,
                                 "time_ratio": 1.8, "error_rate": 0.05, "tests": 12}  # fmt: skip
    assert spots[3].evidence["source"] == "predictor" and spots[3].evidence["predicted_ms"] == 700.0


def test_a_word_with_a_slow_pair_is_announced_once_when_the_cursor_reaches_it():
    text = "we need to"
    batches = run(text, History.from_sources(INSIGHTS, None), steady(text))
    ahead = [h for batch in batches for h in batch if h["kind"] == "slow_spot_ahead"]
    assert [h["message"] for h in ahead] == [
        "'ed' ahead — your slowest pair", "'␣t' ahead — one of your slow pairs (#2)"
    ]  # fmt: skip
    assert ahead[0]["evidence"]["mean_time_ms"] == 310.0 and ahead[0]["evidence"]["position"] == 5
    # Announced right after the space before the word: the third press is the space after "we".
    assert batches[2][0]["kind"] == "slow_spot_ahead"


def test_the_first_word_is_announced_with_the_first_batch_and_a_typed_spot_never():
    text = "need it"
    batches = run(text, History.from_sources(INSIGHTS, None), steady(text))
    assert batches[0][0]["message"] == "'ed' ahead — your slowest pair"  # after the "n" of "need"
    assert all(h["kind"] != "slow_spot_ahead" for batch in batches[1:4] for h in batch)  # once per word
    # Typed past the spot before the batch arrives: nothing to announce.
    metrics, history = LiveMetrics(text), History.from_sources(INSIGHTS, None)
    rules = HintRules(text, history, expect(text, history))
    assert rules.after(metrics, [metrics.press(ord(c), 100 * i) for i, c in enumerate("need")]) == []


def test_a_typist_without_history_gets_no_slow_spot_or_pace_hints():
    text = "we need to quit the treadmill today"
    assert kinds(run(text, History(), steady(text))) == []


def test_three_errors_in_a_row_once_per_run_backspace_ends_a_run():
    text = "abcdefgh"
    presses = [(ord("x"), 0), (ord("x"), 100), (ord("x"), 200), (ord("x"), 300), (BACKSPACE_CODE, 400),
               (ord("x"), 500), (ord("x"), 600), (ord("x"), 700)]  # fmt: skip
    batches = run(text, History(), presses)
    errors = [(i, h) for i, batch in enumerate(batches) for h in batch if h["kind"] == "errors_in_a_row"]
    assert [i for i, _ in errors] == [2, 7]
    assert errors[0][1]["message"] == "three errors in a row: slow down"
    assert errors[0][1]["evidence"] == {"errors_in_a_row": 3, "position": 2}


def test_a_long_pause_after_a_steady_start_is_a_rhythm_break():
    text = "abcdefghijklmnopqrstuvwxyz"
    presses = steady(text[:15], 150) + [(ord(text[15]), 14 * 150 + 1200)]
    batches = run(text, History(), presses)
    assert kinds(batches) == ["rhythm_break"]
    evidence = batches[-1][0]["evidence"]
    assert evidence["iki_ms"] == 1200 and evidence["median_iki_ms"] == 150.0
    assert batches[-1][0]["message"].startswith("rhythm break: 1.2 s pause")


def test_pace_against_the_predicted_wpm_ahead_and_behind():
    text = "a" * 80
    predicted = {"predicted_wpm": 40.0, "model_version": "pattern:v1,error:v1", "chars": []}
    fast = run(text, History.from_sources(INSIGHTS, predicted), steady(text, 100))  # 120 WPM
    pace = [h for batch in fast for h in batch if h["kind"] == "pace"]
    assert pace[0]["message"] == "80 WPM ahead of your predicted 40 WPM"
    assert pace[0]["evidence"] == {"wpm": 120.0, "target_wpm": 40.0, "source": "predictor",
                                   "model_version": "pattern:v1,error:v1"}  # fmt: skip
    assert len(pace) == 2  # 7.9 s of typing: once at 20 characters, again 5 s later
    slow = run(text, History.from_sources({"mean_wpm": 100.0, "test_count": 3}, None), steady(text, 200))  # 60 WPM
    assert [h["message"] for b in slow for h in b if h["kind"] == "pace"][0] == "40 WPM behind your usual 100 WPM"
    on_pace = run(text, History.from_sources({"mean_wpm": 61.0}, None), steady(text, 200))
    assert "pace" not in kinds(on_pace)


def test_the_hint_style_keeps_only_its_hints_and_every_rule_still_runs():
    # Errors in a row, then the word "need" with the slowest pair: one hint of each kind under "all".
    text = "we need to"
    presses = [(ord("x"), 0), (ord("x"), 100), (ord("x"), 200)] + steady(text[3:], 200, 300)
    history = History.from_sources(INSIGHTS, None)

    def styled(style: str) -> list[str]:
        metrics = LiveMetrics(text)
        rules = HintRules(text, history, expect(text, history), style=style)
        return [h["kind"] for code, down in presses for h in rules.after(metrics, [metrics.press(code, down)])]

    everything = styled("all")
    assert "errors_in_a_row" in everything and "slow_spot_ahead" in everything
    assert styled("slow_spots") == [k for k in everything if k == "slow_spot_ahead"]
    assert styled("none") == []


def test_an_unknown_hint_style_is_refused():
    history = History.from_sources(INSIGHTS, None)
    try:
        HintRules("abc", history, [], style="loud")
    except ValueError as exc:
        assert "loud" in str(exc) and "slow_spots" in str(exc)
    else:
        raise AssertionError("an unknown style must be refused")
