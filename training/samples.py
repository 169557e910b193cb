"""Training and evaluation samples of a group of typists, from the rows keyscope stores for their tests.

Per typist, tests go in time order; each test's samples use the features folded from the tests *before* it
(app/features — the same fold the online store runs), so a sample sees exactly what the predictor would have
seen when the test started. Per-character outcomes come from re-running the analytics on the stored keystrokes:

    time_ms   the first press at a position, when the press before it typed the previous character correctly
              (a clean transition): its interval since that press — the unit of the per-key and per-pair times
              to type (NaN otherwise)
    error     1 when the first press at the position was not the presented character (NaN: never reached)

Alongside, the baselines' inputs from the same history: the typist's median time for the letter pair (backing off
to their key median), their overall median, and their shrunk per-key error rate. The population pair medians the
pair baseline finally backs off to are filled in by evaluation, from the training split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from app.analytics.metrics import TestBatch, analyse_batch
from app.analytics.progress import polynomial_projection
from app.analytics.transcription import segment_ids
from app.features import UserFeatures, test_deltas
from app.keys import key_code, key_name
from app.models.encode import TypistView, encode_text, text_cats
from app.models.history import HORIZONS, encode_history
from app.schemas import TypingTest, parse_submission
from app.tables import build_tables, clean_transitions
from training.splits import HISTORY, split_of

BLEND_PRESSES = 10.0  # the shrunk blend: a pair median counts as much as the overall one after this many presses


@dataclass(frozen=True)
class StoredTests:
    """One group of typists' stored rows: results (with text and layout), per-test key and pair rows, keystrokes
    (user_id, test_id, key, down_ms, up_ms, in press order within each test)."""

    results: pa.Table
    keys: pa.Table
    pairs: pa.Table
    keystrokes: pa.Table


def stored_from_submissions(submissions: list[dict]) -> tuple[StoredTests, list[TypingTest]]:
    """The rows the ingest job would store for these submissions, built in memory (benchmarks and tests)."""
    tests = [parse_submission(s) for s in submissions]
    tables = build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests)))
    rows: dict[str, list] = {"user_id": [], "test_id": [], "key": [], "down_ms": [], "up_ms": []}
    for test in tests:
        n = test.keystroke_count
        rows["user_id"] += [test.user_id] * n
        rows["test_id"] += [test.test_id] * n
        rows["key"] += [key_name(int(c)) for c in test.key_codes]
        rows["down_ms"] += test.down_ms.tolist()
        rows["up_ms"] += test.up_ms.tolist()
    return StoredTests(tables.results, tables.keys, tables.pairs, pa.table(rows)), tests


def rebuild_tests(stored: StoredTests) -> list[TypingTest]:
    """The stored tests as TypingTests, in `results` order (keystrokes matched by test)."""
    strokes = stored.keystrokes
    names = list(zip(strokes.column("user_id").to_pylist(), strokes.column("test_id").to_pylist(), strict=True))
    keys = strokes.column("key").to_pylist()
    downs = strokes.column("down_ms").to_numpy(zero_copy_only=False).astype(np.int32)
    ups = strokes.column("up_ms").to_numpy(zero_copy_only=False).astype(np.int32)
    spans: dict[tuple[int, str], list[int]] = {}
    for i, name in enumerate(names):
        span = spans.setdefault(name, [i, i])
        span[1] = i + 1
    tests = []
    r = stored.results
    for user_id, test_id, started, text, layout, language in zip(
        r.column("user_id").to_pylist(),
        r.column("test_id").to_pylist(),
        r.column("started_at").cast(pa.int64()).to_pylist(),
        r.column("text").to_pylist(),
        r.column("layout").to_pylist(),
        r.column("language").to_pylist(),
        strict=True,
    ):
        lo, hi = spans.get((user_id, test_id), (0, 0))
        codes = np.array([key_code(k) for k in keys[lo:hi]], dtype=np.int32)
        tests.append(
            TypingTest(user_id, test_id, int(started), text, layout, language, codes, downs[lo:hi], ups[lo:hi])
        )
    return tests


def char_outcomes(tests: list[TypingTest]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(time_ms, error) per character of each test's text (module docstring), float32 with NaN where unknown."""
    if not tests:
        return []
    batch = TestBatch.from_tests(tests)
    analysis = analyse_batch(batch)
    seg = segment_ids(np.asarray(batch.offsets, dtype=np.int64))
    position = analysis.transcription.position
    clean = clean_transitions(seg, analysis)
    pressed = np.flatnonzero(analysis.target_codes >= 0)
    # The first press at each (test, position): np.unique keeps the first occurrence in press order.
    _, first = np.unique(seg[pressed] * (1 << 32) + position[pressed], return_index=True)
    first = pressed[first]
    out = [(np.full(len(t.text), np.nan, np.float32), np.full(len(t.text), np.nan, np.float32)) for t in tests]
    for press in first.tolist():
        times, errors = out[seg[press]]
        at = position[press]
        errors[at] = 0.0 if analysis.correct[press] else 1.0
        if clean[press]:
            times[at] = analysis.iki_ms[press]
    return out


class TypistHistory:
    """A typist's clean times so far per pair and key (the medians the baselines use)."""

    def __init__(self) -> None:
        self.pair: dict[int, list[float]] = defaultdict(list)
        self.key: dict[int, list[float]] = defaultdict(list)
        self.all: list[float] = []

    def baselines(self, pairs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair→key median or NaN, overall median or NaN, shrunk blend) per character."""
        n = pairs.shape[0]
        overall = float(np.median(self.all)) if self.all else np.nan
        pair_key = np.full(n, np.nan)
        blend = np.full(n, overall)
        medians: dict[tuple[int, int], tuple[float, int]] = {}
        for i in range(n):
            at = (int(pairs[i]), int(keys[i]))
            if at not in medians:
                times = self.pair.get(at[0])
                if times:
                    medians[at] = (float(np.median(times)), len(times))
                else:
                    key_times = self.key.get(at[1])
                    medians[at] = (float(np.median(key_times)), 0) if key_times else (np.nan, 0)
            median, count = medians[at]
            pair_key[i] = median
            if np.isfinite(median) and np.isfinite(overall):
                w = count / (count + BLEND_PRESSES)
                blend[i] = float(np.exp(w * np.log(median) + (1 - w) * np.log(overall)))
        return pair_key, np.full(n, overall), blend

    def add(self, pairs: np.ndarray, keys: np.ndarray, times: np.ndarray) -> None:
        timed = np.flatnonzero(np.isfinite(times))
        for i in timed.tolist():
            t = float(times[i])
            self.pair[int(pairs[i])].append(t)
            self.key[int(keys[i])].append(t)
            self.all.append(t)


def _by_user(stored: StoredTests) -> dict[int, list[int]]:
    """Each typist's rows of `results` in time order."""
    r = stored.results
    order: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for i, (user_id, test_id, started) in enumerate(
        zip(
            r.column("user_id").to_pylist(),
            r.column("test_id").to_pylist(),
            r.column("started_at").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    ):
        order[int(user_id)].append((int(started), str(test_id), i))
    return {u: [i for _, _, i in sorted(rows)] for u, rows in order.items()}


def char_samples(stored: StoredTests, want_baselines: bool = True) -> dict[str, np.ndarray]:
    """Per-character samples of every test (module docstring) as columns: split, user_id, cats [n, 4],
    numeric [n, F], base, time_ms, error, and the baselines b_pair_ms, b_overall_ms, b_blend_ms, b_key_error."""
    tests = rebuild_tests(stored)
    outcomes = char_outcomes(tests)
    deltas = test_deltas(stored.keys, stored.pairs, stored.results)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for user_id, rows in _by_user(stored).items():
        features = UserFeatures(user_id)
        history = TypistHistory()
        for index, row in enumerate(rows):
            test = tests[row]
            split = split_of(user_id, index, len(rows))
            times, errors = outcomes[row]
            if split != HISTORY and len(test.text):
                view = TypistView.of(features)
                encoded = encode_text(test.text, test.layout, view)
                n = len(encoded)
                parts["split"].append(np.full(n, split, np.int8))
                parts["user_id"].append(np.full(n, user_id, np.int64))
                parts["cats"].append(encoded.cats)
                parts["numeric"].append(encoded.numeric)
                parts["base"].append(encoded.base)
                parts["time_ms"].append(times)
                parts["error"].append(errors)
                if want_baselines:
                    b_pair, b_all, b_blend = history.baselines(encoded.cats[:, 3], encoded.cats[:, 0])
                    parts["b_pair_ms"].append(b_pair.astype(np.float32))
                    parts["b_overall_ms"].append(b_all.astype(np.float32))
                    parts["b_blend_ms"].append(b_blend.astype(np.float32))
                    parts["b_key_error"].append(view.key_error_rate[encoded.cats[:, 0]].astype(np.float32))
            if len(test.text):
                cats = encoded.cats if split != HISTORY else text_cats(test.text)
                history.add(cats[:, 3], cats[:, 0], times)
            features.add(deltas[row])
    return {name: np.concatenate(values) for name, values in parts.items()}


def trajectory_samples(stored: StoredTests) -> dict[str, np.ndarray]:
    """Per (typist, prediction point, horizon): split, user_id, x [n, F], ref (current WPM), target (the WPM
    `horizon` tests later), horizon, and the keybr baseline b_keybr. A point's split is its target test's: training
    samples never reach into a typist's later tests."""
    r = stored.results
    wpm_all = np.array([np.nan if w is None else w for w in r.column("wpm").to_pylist()], dtype=np.float64)
    parts: dict[str, list] = defaultdict(list)
    for user_id, rows in _by_user(stored).items():
        wpm = wpm_all[rows]
        n = len(rows)
        for index in range(3, n):
            for horizon in HORIZONS:
                target_at = index + horizon - 1
                if target_at >= n or not np.isfinite(wpm[target_at]):
                    continue
                split = split_of(user_id, target_at, n)
                if split == HISTORY or (split != 0 and split_of(user_id, index, n) == 0 and horizon > 1):
                    # A held-out target predicted from a point inside the training window would still be fine,
                    # but keep the held-out sets to points at or after the cut, so they match serving's case.
                    continue
                x, ref = encode_history(wpm[:index], index, horizon)
                if not np.isfinite(ref):
                    continue
                parts["split"].append(split)
                parts["user_id"].append(user_id)
                parts["x"].append(x)
                parts["ref"].append(ref)
                parts["target"].append(wpm[target_at])
                parts["horizon"].append(horizon)
                parts["b_keybr"].append(polynomial_projection(wpm[:index], horizon))
    if not parts:
        from app.models.history import FEATURES

        return {
            "split": np.zeros(0, np.int8), "user_id": np.zeros(0, np.int64), "x": np.zeros((0, FEATURES), np.float32),
            "ref": np.zeros(0, np.float32), "target": np.zeros(0, np.float32), "horizon": np.zeros(0, np.int64),
            "b_keybr": np.zeros(0, np.float32),
        }  # fmt: skip
    return {
        "split": np.array(parts["split"], np.int8),
        "user_id": np.array(parts["user_id"], np.int64),
        "x": np.stack(parts["x"]).astype(np.float32),
        "ref": np.array(parts["ref"], np.float32),
        "target": np.array(parts["target"], np.float32),
        "horizon": np.array(parts["horizon"], np.int64),
        "b_keybr": np.array(parts["b_keybr"], np.float32),
    }
