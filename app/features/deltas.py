"""What one stored test adds to its typist's features, from the rows keyscope stores for it.

Input: the per-test rows of `test_keys` and `test_pairs` (one row per test, each stat an array over the test's
presented keys or letter pairs) and of `test_results` — the Arrow tables the ingest job writes (app/tables.py) and
the ones ClickHouse returns, the same schema either way. Output: one TestDelta per test, each statistic summed per
vocabulary id (vocab.py) as integers:

    presses   presses that typed at a position presenting the key (or the pair's second character)
    errors    those that were wrong
    timed     presses with a time to type (the pair's: only after the pair's first character typed correctly)
    log_sum   Σ round(1000 · ln(time to type in ms)) over the timed presses (a geometric mean once divided)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.features.vocab import string_ids, string_pair_ids

STATS = ("presses", "errors", "timed", "log_sum")
# The columns test_deltas reads: of test_keys and test_pairs, and of test_results.
UNIT_COLUMNS = "user_id, test_id, key, presses, errors, timed_presses, time_to_type_ms"
RESULT_COLUMNS = "user_id, test_id, started_at, wpm, accuracy"
LOG_SCALE = 1000.0  # log times are kept in thousandths, as integers, so sums are exact in any order


@dataclass(frozen=True)
class TestDelta:
    """One test's contribution to its typist's features."""

    __test__ = False  # a typing test, not a pytest test class

    user_id: int
    test_id: str
    started_ms: int
    wpm: float | None
    accuracy: float | None
    key_ids: np.ndarray  # int32, may repeat (case folding); add with np.add.at
    key_stats: np.ndarray  # int64 [len(key_ids), 4] in STATS order
    pair_ids: np.ndarray
    pair_stats: np.ndarray


def log_ms(times: np.ndarray) -> np.ndarray:
    """round(1000 · ln(t)) of times in ms (at least 1 ms), as int64."""
    return np.rint(np.log(np.maximum(np.asarray(times, dtype=np.float64), 1.0)) * LOG_SCALE).astype(np.int64)


def _test_names(table: pa.Table) -> list[tuple[int, str]]:
    return list(zip(table.column("user_id").to_pylist(), table.column("test_id").to_pylist(), strict=True))


def _unit_stats(table: pa.Table, pairs: bool) -> tuple[list[tuple[int, str]], np.ndarray, np.ndarray, np.ndarray]:
    """(test of each row, row offsets into the flat units, unit ids, stats [units, 4])."""
    table = table.combine_chunks()
    names = _test_names(table)
    keys = table.column("key")
    # From the lengths, not the array's own offsets: those of a sliced table do not start at 0.
    lengths = pc.list_value_length(keys).to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    flat_names = pc.list_flatten(keys).to_pylist() if table.num_rows else []
    distinct = sorted(set(flat_names))
    lookup = dict(zip(distinct, (string_pair_ids if pairs else string_ids)(distinct).tolist(), strict=True))
    ids = np.array([lookup[n] for n in flat_names], dtype=np.int32)
    n_units = ids.shape[0]
    stats = np.zeros((n_units, len(STATS)), dtype=np.int64)
    if n_units:
        for column, name in enumerate(("presses", "errors", "timed_presses")):
            stats[:, column] = pc.list_flatten(table.column(name)).to_numpy(zero_copy_only=False)
        per_unit = pc.list_flatten(table.column("time_to_type_ms"))  # list<uint32> per unit
        times = pc.list_flatten(per_unit).to_numpy(zero_copy_only=False)
        counts = pc.list_value_length(per_unit).to_numpy(zero_copy_only=False).astype(np.int64)
        unit_of_time = np.repeat(np.arange(n_units), counts)
        stats[:, 3] = np.bincount(unit_of_time, weights=log_ms(times), minlength=n_units).astype(np.int64)
    return names, offsets, ids, stats


def _float_or_none(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if number != number else number


def test_deltas(keys: pa.Table, pairs: pa.Table, results: pa.Table) -> list[TestDelta]:
    """One TestDelta per row of `results` (tests without key or pair rows add only their result)."""
    key_names, key_offsets, key_ids, key_stats = _unit_stats(keys, pairs=False)
    pair_names, pair_offsets, pair_ids, pair_stats = _unit_stats(pairs, pairs=True)
    key_rows = {name: i for i, name in enumerate(key_names)}
    pair_rows = {name: i for i, name in enumerate(pair_names)}
    empty_ids, empty_stats = np.zeros(0, np.int32), np.zeros((0, len(STATS)), np.int64)
    starts = results.column("started_at").cast(pa.int64()).to_pylist()
    wpms = results.column("wpm").to_pylist()
    accuracies = results.column("accuracy").to_pylist()
    deltas = []
    for i, name in enumerate(_test_names(results)):
        k, p = key_rows.get(name), pair_rows.get(name)
        ks = slice(key_offsets[k], key_offsets[k + 1]) if k is not None else None
        ps = slice(pair_offsets[p], pair_offsets[p + 1]) if p is not None else None
        deltas.append(
            TestDelta(
                user_id=int(name[0]),
                test_id=str(name[1]),
                started_ms=int(starts[i]),
                wpm=_float_or_none(wpms[i]),
                accuracy=_float_or_none(accuracies[i]),
                key_ids=key_ids[ks] if ks else empty_ids,
                key_stats=key_stats[ks] if ks else empty_stats,
                pair_ids=pair_ids[ps] if ps else empty_ids,
                pair_stats=pair_stats[ps] if ps else empty_stats,
            )
        )
    return deltas


test_deltas.__test__ = False  # type: ignore[attr-defined]  # deltas of typing tests, not a pytest test
