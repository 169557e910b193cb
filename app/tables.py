"""Arrow tables of analysed typing tests, shaped as the ClickHouse tables they are stored in."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.analytics.metrics import BatchAnalysis, TestBatch, analyse_batch
from app.analytics.transcription import segment_ids
from app.schemas import (
    CONFUSION_SCHEMA,
    COUNT_FIELDS,
    ERROR_LOCATION_FIELDS,
    KEY_STAT_STORAGE_SCHEMA,
    KEYSTROKE_SCHEMA,
    METRIC_FIELDS,
    NAMED_KEYS,
    PAIR_STAT_STORAGE_SCHEMA,
    SERIES_FIELDS,
    TEST_IDENTITY_FIELDS,
    TEST_KEYS_SCHEMA,
    TEST_PAIRS_SCHEMA,
    TEST_RESULT_SCHEMA,
    TypingTest,
)


@dataclass(frozen=True)
class TestTables:
    """The rows one batch of tests adds to each table; `results` is written last (it marks a test complete)."""

    __test__ = False  # a typing test, not a pytest test class

    keystrokes: pa.Table
    keys: pa.Table  # TEST_KEYS_SCHEMA: one row per test, its presented keys' stats as arrays
    pairs: pa.Table  # TEST_PAIRS_SCHEMA: the same per presented letter pair
    confusions: pa.Table
    results: pa.Table

    def parts(self) -> dict[str, pa.Table]:
        """ClickHouse table name → rows, in write order."""
        return {
            "keystrokes": self.keystrokes,
            "test_keys": self.keys,
            "test_pairs": self.pairs,
            "test_confusions": self.confusions,
            "test_results": self.results,
        }

    @property
    def key_stats(self) -> pa.Table:
        """The per-test key stats one row per (test, presented key): KEY_STAT_STORAGE_SCHEMA."""
        return unit_rows(self.keys, KEY_STAT_STORAGE_SCHEMA)

    @property
    def pair_stats(self) -> pa.Table:
        """The per-test letter-pair stats one row per (test, pair): PAIR_STAT_STORAGE_SCHEMA."""
        return unit_rows(self.pairs, PAIR_STAT_STORAGE_SCHEMA)

    @staticmethod
    def concat(batches: list[TestTables]) -> TestTables:
        """One batch of the tests of several (each test in one of them)."""
        return TestTables(*(pa.concat_tables([getattr(b, f.name) for b in batches]) for f in fields(TestTables)))

    def only(self, keep_results: np.ndarray) -> TestTables:
        """The tables restricted to the tests whose result rows are marked in `keep_results` (rows are matched by
        test, so the tables must hold one copy of each test)."""
        if bool(np.all(keep_results)):
            return self
        results = self.results.filter(pa.array(keep_results))
        kept = test_keys(results)
        return TestTables(
            *(
                table.filter(pc.is_in(test_keys(table), kept))
                for table in (self.keystrokes, self.keys, self.pairs, self.confusions)
            ),
            results,
        )


def unit_rows(per_test: pa.Table, schema: pa.Schema) -> pa.Table:
    """Per-test stat arrays (TEST_KEYS_SCHEMA or TEST_PAIRS_SCHEMA) as one row per (test, key or pair)."""
    per_test = per_test.combine_chunks()
    parent = pc.list_parent_indices(per_test.column("key"))
    return pa.table(
        {
            f.name: per_test.column(f.name).take(parent)
            if f.name in TEST_IDENTITY_FIELDS
            else pc.list_flatten(per_test.column(f.name))
            for f in schema
        },
        schema=schema,
    )


def test_keys(table: pa.Table) -> pa.Array:
    """'user_id/test_id' per row: one value that names a test across users."""
    user = pc.cast(table.column("user_id"), pa.string())
    return pc.binary_join_element_wise(user, table.column("test_id"), "/").combine_chunks()


_NO_KEY = -(10**6)  # a code that names no key: stored as ''


_DENSE_CODES = 1024  # named keys and code points below this are looked up in a fixed table (no sort)
_DENSE_NAMES = pa.array(
    [""] + list(reversed(NAMED_KEYS)) + [chr(c) for c in range(_DENSE_CODES)], pa.string()
)  # index 0: no key; 1..len(NAMED_KEYS): named keys (code −len … −1); then code points 0..1023


def _name(code: int) -> str:
    return "" if code == _NO_KEY else chr(code) if code >= 0 else NAMED_KEYS[-code - 1]


def _key_names(codes: np.ndarray) -> pa.Array:
    """Key names for code points and named-key codes (dictionary lookup, no per-key Python)."""
    codes = np.asarray(codes, dtype=np.int64)
    dense = (codes < _DENSE_CODES) & ((codes >= -len(NAMED_KEYS)) | (codes == _NO_KEY))
    if dense.all():
        index = np.where(codes == _NO_KEY, 0, codes + len(NAMED_KEYS) + 1)
        return _DENSE_NAMES.take(pa.array(index))
    unique, inverse = np.unique(codes, return_inverse=True)
    names = pa.array([_name(c) for c in unique.tolist()], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), names).cast(pa.string())


def build_tables(tests: list[TypingTest], partitions: np.ndarray, offsets: np.ndarray) -> TestTables:
    """Analyse the tests and lay out their storage rows; `partitions`/`offsets` say where each came from."""
    batch = TestBatch.from_tests(tests)
    analysis = analyse_batch(batch)
    return tables_from_analysis(tests, batch, analysis, partitions, offsets)


def tables_from_analysis(
    tests: list[TypingTest],
    batch: TestBatch,
    analysis: BatchAnalysis,
    partitions: np.ndarray,
    offsets: np.ndarray,
) -> TestTables:
    """Storage rows of an analysed batch."""
    seg = segment_ids(batch.offsets)
    counts = np.diff(batch.offsets)
    user_ids = np.array([t.user_id for t in tests], dtype=np.uint64)
    test_ids = pa.array([t.test_id for t in tests], pa.string())
    started = np.array([t.started_at_ms for t in tests], dtype=np.int64)
    seq = np.arange(batch.key_codes.shape[0], dtype=np.int64) - np.repeat(batch.offsets[:-1], counts)
    has_target = analysis.target_codes >= 0

    keystrokes = pa.table(
        {
            "user_id": pa.array(user_ids[seg]),
            "test_id": test_ids.take(pa.array(seg)),
            "started_at": pa.array(started[seg], pa.timestamp("ms", tz="UTC")),
            "seq": pa.array(seq.astype(np.uint16)),
            "key": _key_names(batch.key_codes.astype(np.int64)),
            "target": _key_names(np.where(has_target, analysis.target_codes, _NO_KEY)),
            "hold_ms": pa.array(analysis.hold_ms),
            "iki_ms": pa.array(stored_iki_ms(batch, seq, analysis)),
            "correct": pa.array(analysis.correct.astype(np.uint8)),
            "clean_transition": pa.array(clean_transitions(seg, analysis).astype(np.uint8)),
        },
        schema=KEYSTROKE_SCHEMA,
    )

    keys = _key_stats(tests, seg, analysis, user_ids, started)
    pairs = _pair_stats(tests, seg, analysis, user_ids, started)
    confusions = _confusions(tests, seg, analysis, batch.key_codes.astype(np.int64), user_ids, started)
    results = pa.table(
        {
            "user_id": pa.array(user_ids),
            "test_id": test_ids,
            "started_at": pa.array(started, pa.timestamp("ms", tz="UTC")),
            "layout": pa.array([t.layout for t in tests], pa.string()),
            "language": pa.array([t.language for t in tests], pa.string()),
            "text": pa.array(batch.texts, pa.string()),
            "transcribed": pa.array(analysis.transcription.transcribed, pa.string()),
            "keystroke_count": pa.array(counts.astype(np.uint32)),
            "duration_ms": pa.array(analysis.duration_ms.astype(np.uint32)),
            # NaN (undefined) becomes NULL.
            **{name: pa.array(analysis.metrics[name], pa.float64(), from_pandas=True) for name in METRIC_FIELDS},
            **{name: pa.array(analysis.counts[name].astype(np.uint32)) for name in COUNT_FIELDS},
            **{name: _rows_as_lists(getattr(analysis, name)) for name in ERROR_LOCATION_FIELDS},
            **{name: _series_as_lists(*analysis.series[name]) for name in SERIES_FIELDS},
            "kafka_partition": pa.array(np.asarray(partitions, dtype=np.uint32)),
            "kafka_offset": pa.array(np.asarray(offsets, dtype=np.uint64)),
        },
        schema=TEST_RESULT_SCHEMA,
    )
    return TestTables(keystrokes, keys, pairs, confusions, results)


def stored_iki_ms(batch: TestBatch, seq: np.ndarray, analysis: BatchAnalysis) -> np.ndarray:
    """The raw table's `iki_ms`: the IKI, and for a test's first press its time since the test start, so the
    press times are the running sum over the test (`down_ms` is not stored). The analysis keeps −1 there: the
    first press has no IKI, and the per-key and per-pair times to type leave it untimed."""
    return np.where(seq == 0, batch.down_ms, analysis.iki_ms).astype(np.int32)


def _rows_as_lists(matrix: np.ndarray) -> pa.Array:
    """A tests × k count matrix as one list<uint32> per test."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint32)
    offsets = np.arange(matrix.shape[0] + 1, dtype=np.int32) * matrix.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1)))


def _series_as_lists(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Concatenated per-test series as one list<float32> per test."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values.astype(np.float32)))


def clean_transitions(seg: np.ndarray, analysis: BatchAnalysis) -> np.ndarray:
    """Per keystroke: the press before, in the same test, typed the previous presented character correctly,
    so this press's IKI is a clean letter-pair transition."""
    position = analysis.transcription.position
    clean = np.zeros(position.shape[0], dtype=bool)
    clean[1:] = analysis.correct[:-1] & (position[:-1] == position[1:] - 1) & (seg[:-1] == seg[1:])
    return clean & (analysis.target_codes >= 0) & (analysis.presented_before >= 0)


def _test_ids(tests: list[TypingTest]) -> pa.Array:
    return pa.array([t.test_id for t in tests], pa.string())


_UNIT = 1 << 21  # code points are < 2**21: a pair of them packs into 42 bits, a test index above that


def _grouped(seg: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(test index, unit, inverse, order) of the distinct (test, unit) groups, `order` listing the members group
    after group (one sort serves both); `units` are < 2**42."""
    keys = seg.astype(np.int64) << 42 | units
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.ones(ordered.shape[0], dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    unique = ordered[starts]
    inverse = np.empty(keys.shape[0], dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return unique >> 42, unique & ((1 << 42) - 1), inverse, order


def _unit_stats(
    tests: list[TypingTest],
    seg: np.ndarray,
    units: np.ndarray,
    names: pa.Array,
    errors: np.ndarray,
    timed_ms: np.ndarray,
    user_ids: np.ndarray,
    started: np.ndarray,
    hold_ms: np.ndarray | None = None,
) -> pa.Table:
    """Per test, its keys or pairs (`units`, one per press) and for each: presses, errors, time-to-type totals and
    each timed press's time (`timed_ms` −1 = not timed); with `hold_ms` (−1 = unknown) also the presses with a known
    hold and their sum. One row per test with any unit, each stat an array in the order of the units' codes."""
    schema = TEST_PAIRS_SCHEMA if hold_ms is None else TEST_KEYS_SCHEMA
    if units.shape[0] == 0:
        return schema.empty_table()
    group_test, _, inverse, order = _grouped(seg, units)
    n = group_test.shape[0]
    timed = timed_ms >= 0
    first = np.zeros(n, dtype=np.int64)
    first[inverse[::-1]] = np.arange(units.shape[0] - 1, -1, -1)  # one member of each group, for its name
    timed_count = np.bincount(inverse, weights=timed, minlength=n)
    stats = {
        "key": names.take(pa.array(first)),
        "presses": pa.array(np.bincount(inverse, minlength=n).astype(np.uint32)),
        "errors": pa.array(np.bincount(inverse, weights=errors, minlength=n).astype(np.uint32)),
        "timed_presses": pa.array(timed_count.astype(np.uint32)),
        "time_to_type_sum_ms": pa.array(
            np.bincount(inverse, weights=np.where(timed, timed_ms, 0), minlength=n).astype(np.uint64)
        ),
    }
    if hold_ms is not None:
        held = hold_ms >= 0
        stats["holds"] = pa.array(np.bincount(inverse, weights=held, minlength=n).astype(np.uint32))
        stats["hold_sum_ms"] = pa.array(
            np.bincount(inverse, weights=np.where(held, hold_ms, 0), minlength=n).astype(np.uint64)
        )
    timed_in_order = order[timed[order]]
    stats["time_to_type_ms"] = _lists(timed_ms[timed_in_order], timed_count)
    # The groups come test after test (the sort key starts with the test), so each test's are one slice.
    units_per_test = np.bincount(group_test, minlength=len(tests))
    present = np.flatnonzero(units_per_test)
    offsets = np.zeros(present.shape[0] + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(units_per_test[present])
    list_offsets = pa.array(offsets)
    columns = {
        "user_id": pa.array(user_ids[present]),
        "test_id": _test_ids(tests).take(pa.array(present)),
        "started_at": pa.array(started[present], pa.timestamp("ms", tz="UTC")),
        **{name: pa.ListArray.from_arrays(list_offsets, values) for name, values in stats.items()},
    }
    return pa.table(columns, schema=schema)


def _lists(values: np.ndarray, counts: np.ndarray) -> pa.Array:
    """`values`, concatenated list after list, as one list<uint32> per entry of `counts`."""
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(counts)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.uint32)))


def _key_stats(
    tests: list[TypingTest], seg: np.ndarray, analysis: BatchAnalysis, user_ids: np.ndarray, started: np.ndarray
) -> pa.Table:
    """Per (test, presented key): presses, errors, time since the previous press, and hold times."""
    has_target = analysis.target_codes >= 0
    target = analysis.target_codes[has_target]
    return _unit_stats(
        tests,
        seg[has_target],
        target,
        _key_names(target),
        ~analysis.correct[has_target],
        analysis.iki_ms[has_target].astype(np.int64),
        user_ids,
        started,
        analysis.hold_ms[has_target].astype(np.int64),
    )


def _pair_stats(
    tests: list[TypingTest], seg: np.ndarray, analysis: BatchAnalysis, user_ids: np.ndarray, started: np.ndarray
) -> pa.Table:
    """Per (test, presented letter pair): presses of the pair's second character at its position, errors,
    and the transition time, timed only when the press before was the pair's first character, correct."""
    target = analysis.target_codes
    # The pair's first character is the presented one before this position, typed or not.
    first_char = analysis.presented_before
    has_pair = (target >= 0) & (first_char >= 0)
    prev_ok = clean_transitions(seg, analysis)
    units = first_char[has_pair] * _UNIT + target[has_pair]
    names = pc.binary_join_element_wise(_key_names(first_char[has_pair]), _key_names(target[has_pair]), "")
    timed = np.where(prev_ok[has_pair], analysis.iki_ms[has_pair], -1).astype(np.int64)
    return _unit_stats(tests, seg[has_pair], units, names, ~analysis.correct[has_pair], timed, user_ids, started)


def _confusions(
    tests: list[TypingTest],
    seg: np.ndarray,
    analysis: BatchAnalysis,
    codes: np.ndarray,
    user_ids: np.ndarray,
    started: np.ndarray,
) -> pa.Table:
    """Per (test, presented key, key typed instead): how often."""
    wrong = (analysis.target_codes >= 0) & ~analysis.correct & (codes >= 0)
    if not wrong.any():
        return CONFUSION_SCHEMA.empty_table()
    target, typed = analysis.target_codes[wrong], codes[wrong]
    group_test, unit, inverse, _ = _grouped(seg[wrong], target * _UNIT + typed)
    return pa.table(
        {
            "user_id": pa.array(user_ids[group_test]),
            "test_id": _test_ids(tests).take(pa.array(group_test)),
            "started_at": pa.array(started[group_test], pa.timestamp("ms", tz="UTC")),
            "key": _key_names(unit // _UNIT),
            "typed": _key_names(unit % _UNIT),
            "count": pa.array(np.bincount(inverse, minlength=group_test.shape[0]).astype(np.uint32)),
        },
        schema=CONFUSION_SCHEMA,
    )
