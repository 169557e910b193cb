"""The ingest job's drift check: how well the promoted pattern model predicts the tests being stored now.

For a sample of the stored tests (`Settings.drift_sample_share`, chosen by a hash of the test, so a retried or
replayed batch samples the same tests) the writer (write.py) asks this module, per batch:

1. before the batch is written: the promoted pattern model (registry, looked up at most every `RELOAD_CHECK_S`;
   reloaded when another version is promoted) and the sampled typists' online features, read *before* the writer
   folds the batch into them;
2. once the batch is stored: each sampled test's predicted time to type per character (the typist's features as
   they were before the test: the stored ones plus the batch's earlier tests of the same typist, folded here in
   time order) against its real clean times to type (training/samples.py `char_outcomes`, re-analysed from the
   batch's keystroke rows in memory), into a running MAE over the last `WINDOW_CHARS` characters.

`DriftMonitor.snapshot` is what the job exports (metrics.py `DriftMetrics`): the live MAE beside the promoted
version's held-out MAE from the registry (metrics["candidate"]["mae_ms"]); the alert KeyscopePatternModelDrift
compares them. The check never fails a pass: each failure is logged and counted (`errors`).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from app.config import Settings
from app.features import TestDelta, UserFeatures, test_deltas
from app.features.online import FeatureStore
from app.models.encode import TypistView
from app.models.promoted import PromotedVersions
from app.models.registry import ModelRegistry
from app.schemas import TypingTest
from app.tables import TestTables, test_keys
from training.samples import StoredTests, char_outcomes, rebuild_tests

if TYPE_CHECKING:
    from app.models.predictor import TypingPredictor

log = logging.getLogger("keyscope.ingest")

MODEL = "pattern"
RELOAD_CHECK_S = 60.0  # how stale the promoted version may be: one registry query a minute at most
WINDOW_CHARS = 20_000  # the live MAE is over the last this many timed characters (≈ 100 tests)
_HASH_RANGE = 1 << 32


def sampled(results: pa.Table, share: float) -> np.ndarray:
    """Which tests of `results` the drift check takes: about `share` of them, by a hash of 'user_id/test_id', so the
    same test is taken or left in every pass and batch."""
    if share <= 0 or results.num_rows == 0:
        return np.zeros(results.num_rows, dtype=bool)
    if share >= 1:
        return np.ones(results.num_rows, dtype=bool)
    cut = share * _HASH_RANGE
    return np.array([zlib.crc32(key.encode()) < cut for key in test_keys(results).to_pylist()], dtype=bool)


class WindowMae:
    """The mean absolute error over the last `size` characters added (a ring buffer: exact, O(1) memory)."""

    def __init__(self, size: int = WINDOW_CHARS) -> None:
        if size <= 0:
            raise ValueError(f"the live MAE window must hold at least one character, not {size}")
        self._errors = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self.chars = 0  # every character added, the window's and the ones it dropped

    def add(self, errors: np.ndarray) -> None:
        errors = np.asarray(errors, dtype=np.float64)
        self.chars += errors.shape[0]
        errors = errors[-self._errors.shape[0] :]  # the older ones would be dropped anyway
        n, size = errors.shape[0], self._errors.shape[0]
        first = min(n, size - self._next)
        self._errors[self._next : self._next + first] = errors[:first]
        self._errors[: n - first] = errors[first:]
        self._next = (self._next + n) % size
        self._filled = min(size, self._filled + n)

    @property
    def value(self) -> float | None:
        """The MAE over the window; None before the first character."""
        return float(self._errors[: self._filled].mean()) if self._filled else None


@dataclass(frozen=True)
class PromotedPattern:
    """The promoted pattern version as loaded for the check."""

    version: str
    predictor: TypingPredictor
    training_mae_ms: float | None  # its held-out MAE when it was trained (registry metrics)


def training_mae(metrics: dict[str, Any]) -> float | None:
    """metrics["candidate"]["mae_ms"] of a registry version, when it is a number."""
    value = (metrics.get("candidate") or {}).get("mae_ms")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class PromotedWatch:
    """The promoted pattern model, as of the registry at most `interval` seconds ago (app/models/promoted.py: the
    registry is asked again once that has passed, a failed look waits as long, and the artifact is loaded only when
    the version changed)."""

    def __init__(
        self, settings: Settings, interval: float = RELOAD_CHECK_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._registry: ModelRegistry | None = None
        self._versions: PromotedVersions | None = None
        self._current: PromotedPattern | None = None

    def current(self) -> PromotedPattern | None:
        with self._lock:
            if self._versions is None:
                # The ingest job applied the migrations already; the registry only reads.
                self._registry = ModelRegistry(self._settings, migrate=False)
                self._versions = PromotedVersions(self._registry, (MODEL,), clock=self._clock)
            predictor = self._versions.current(self._interval)
            entry = self._versions.entry(MODEL)
            if predictor is None or entry is None:
                return None
            if self._current is None or self._current.version != entry.version:
                log.info("drift check: %s version %s loaded", MODEL, entry.version)
                self._current = PromotedPattern(entry.version, predictor, training_mae(entry.metrics))
            return self._current

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


@dataclass(frozen=True)
class DriftSample:
    """What the check takes from a batch before it is written: the model, the sampled tests and their typists'
    features as stored before this batch."""

    model: PromotedPattern
    tests: frozenset[str]  # 'user_id/test_id'
    features: dict[int, UserFeatures]


@dataclass(frozen=True)
class DriftSnapshot:
    """The check so far (the window belongs to `version`; a newly promoted version starts an empty one)."""

    model: str
    version: str | None
    live_mae_ms: float | None
    training_mae_ms: float | None
    window_chars: int  # characters in the live MAE's window
    tests: int  # tests checked, every version
    chars: int  # timed characters compared, every version
    skipped: int  # sampled tests whose typist's stored features already held them or a later test
    errors: int  # checks that failed (logged; the pass went on)
    cpu_s: float  # CPU time the checks took (the writer threads' own)


class DriftMonitor:
    """The drift check of one ingest job, shared by its writer threads (module docstring)."""

    def __init__(self, settings: Settings, client: redis.Redis, watch: PromotedWatch | None = None) -> None:
        self._share = settings.drift_sample_share
        self._watch = watch or PromotedWatch(settings)
        self._features = FeatureStore(settings, client=client)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._training_mae: float | None = None
        self._window = WindowMae()
        self._tests = self._chars = self._skipped = self._errors = 0
        self._cpu_s = 0.0

    def before_write(self, tables: TestTables) -> DriftSample | None:
        """The sample of a batch about to be written, with its typists' features as stored now (call it before the
        writer folds the batch into them); None when no test is sampled, no model is promoted or this failed."""
        started = time.thread_time()
        try:
            return self._before(tables)
        except Exception:
            log.exception("drift check: reading the model or the features failed; the batch is not checked")
            with self._lock:
                self._errors += 1
            return None
        finally:
            self._spent(started)

    def after_write(self, sample: DriftSample | None, written: TestTables) -> None:
        """Compare the model's predictions with the sampled tests among `written` (the tests stored now)."""
        if sample is None:
            return
        started = time.thread_time()
        try:
            self._check(sample, written)
        except Exception:
            log.exception("drift check of a stored batch failed; the pass goes on")
            with self._lock:
                self._errors += 1
        finally:
            self._spent(started)

    def snapshot(self) -> DriftSnapshot:
        with self._lock:
            return DriftSnapshot(
                model=MODEL,
                version=self._version,
                live_mae_ms=self._window.value,
                training_mae_ms=self._training_mae,
                window_chars=min(self._window.chars, WINDOW_CHARS),
                tests=self._tests,
                chars=self._chars,
                skipped=self._skipped,
                errors=self._errors,
                cpu_s=self._cpu_s,
            )

    def close(self) -> None:
        self._watch.close()

    def _spent(self, started: float) -> None:
        with self._lock:
            self._cpu_s += time.thread_time() - started

    def _before(self, tables: TestTables) -> DriftSample | None:
        chosen = sampled(tables.results, self._share)
        if not chosen.any():
            return None
        model = self._watch.current()
        if model is None:
            return None
        with self._lock:
            if model.version != self._version:  # a new promotion: its errors start a window of their own
                self._version, self._training_mae, self._window = model.version, model.training_mae_ms, WindowMae()
        results = tables.results.filter(pa.array(chosen))
        users = sorted(set(results.column("user_id").to_pylist()))
        return DriftSample(model, frozenset(test_keys(results).to_pylist()), self._features.get_many(users))

    def _check(self, sample: DriftSample, written: TestTables) -> None:
        errors, tests, skipped = compare(sample.model.predictor, sample.tests, sample.features, written)
        with self._lock:
            if sample.model.version == self._version:  # else a newer version was promoted meanwhile
                self._window.add(errors)
                self._tests += tests
                self._chars += errors.shape[0]
            self._skipped += skipped


def compare(
    predictor: TypingPredictor, tests: frozenset[str], features: dict[int, UserFeatures], written: TestTables
) -> tuple[np.ndarray, int, int]:
    """(|predicted − real| time to type per timed character, tests compared, tests skipped) of the tests named in
    `tests` ('user_id/test_id') among `written`, each predicted from its typist's `features` (as stored before the
    batch; changed here) plus the batch's earlier tests of that typist."""
    names = test_keys(written.results).to_pylist()
    rows = [i for i, name in enumerate(names) if name in tests]
    if not rows:
        return np.zeros(0), 0, 0
    typed = dict(zip((names[i] for i in rows), _typed_tests(written, rows), strict=True))
    outcomes = dict(zip(typed, char_outcomes(list(typed.values())), strict=True))
    requests: list[tuple[TypistView, str, str]] = []
    real: list[np.ndarray] = []
    skipped = 0
    for user_id, deltas in _batch_deltas(written, {t.user_id for t in typed.values()}).items():
        folded = features.get(user_id) or UserFeatures(user_id)
        for delta in deltas:  # in time order: each sampled test sees the typist's tests before it
            name = f"{delta.user_id}/{delta.test_id}"
            if name in typed:
                if _holds_later(folded, delta):
                    skipped += 1
                else:
                    test = typed[name]
                    requests.append((TypistView.of(folded), test.text, test.layout))
                    real.append(outcomes[name][0])
            folded.add(delta)
    if not requests:
        return np.zeros(0), 0, skipped
    predicted = np.concatenate(predictor.pattern_times_many(requests))
    times = np.concatenate(real)
    timed = np.isfinite(times)
    return np.abs(predicted[timed] - times[timed]), len(requests), skipped


def _holds_later(features: UserFeatures, delta: TestDelta) -> bool:
    """Whether the stored features already hold this test or one that started after it (a replayed batch, a late
    test): then they are not the typist's features before it."""
    return features.tests > 0 and (
        features.last_ms > delta.started_ms or any(entry[1] == delta.test_id for entry in features.recent)
    )


def _batch_deltas(written: TestTables, users: set[int]) -> dict[int, list[TestDelta]]:
    """The deltas of these typists' tests in the batch, per typist in time order (the order the features fold)."""
    of_users = pc.is_in(written.results.column("user_id"), pa.array(sorted(users), pa.uint64()))
    results = written.results.filter(of_users)
    kept = test_keys(results)
    keys = written.keys.filter(pc.is_in(test_keys(written.keys), kept))
    pairs = written.pairs.filter(pc.is_in(test_keys(written.pairs), kept))
    by_user: dict[int, list[TestDelta]] = defaultdict(list)
    for delta in test_deltas(keys, pairs, results):
        by_user[delta.user_id].append(delta)
    return {user: sorted(deltas, key=lambda d: (d.started_ms, d.test_id)) for user, deltas in by_user.items()}


def _typed_tests(written: TestTables, rows: list[int]) -> list[TypingTest]:
    """The tests at these rows of `written.results` as TypingTests, rebuilt from the batch's keystroke rows: press
    times are the running sum of `iki_ms` (at seq 0: the time since the start), releases the press plus `hold_ms`."""
    results = written.results.take(pa.array(rows, pa.int64()))
    strokes = _keystrokes_of(written, rows)
    iki = strokes.column("iki_ms").to_numpy(zero_copy_only=False).astype(np.int64)
    hold = strokes.column("hold_ms").to_numpy(zero_copy_only=False).astype(np.int64)
    first = strokes.column("seq").to_numpy(zero_copy_only=False) == 0
    running = np.cumsum(iki)
    test_of = np.cumsum(first) - 1  # each test's rows start at seq 0
    down = running - (running - iki)[first][test_of]
    up = np.where(hold >= 0, down + hold, -1)
    stored = pa.table(
        {
            "user_id": strokes.column("user_id"),
            "test_id": strokes.column("test_id"),
            "key": strokes.column("key"),
            "down_ms": pa.array(down.astype(np.int32)),
            "up_ms": pa.array(up.astype(np.int32)),
        }
    )
    return rebuild_tests(StoredTests(results, written.keys, written.pairs, stored))


def _keystrokes_of(written: TestTables, rows: list[int]) -> pa.Table:
    """The keystroke rows of the tests at these rows, in press order. The writer's tables keep each test's
    keystrokes together and in the results' order (app/tables.py), so the rows are sliced by `keystroke_count`;
    tables that are not laid out so are filtered by test instead."""
    strokes = written.keystrokes
    counts = written.results.column("keystroke_count").to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    if starts[-1] == strokes.num_rows:
        users, tests = written.results.column("user_id"), written.results.column("test_id")
        pieces = [strokes.slice(int(starts[i]), int(counts[i])) for i in rows]
        if all(
            piece.num_rows == 0
            or (
                piece.column("user_id")[0].as_py() == users[i].as_py()
                and piece.column("test_id")[0].as_py() == piece.column("test_id")[-1].as_py() == tests[i].as_py()
            )
            for i, piece in zip(rows, pieces, strict=True)
        ):
            return pa.concat_tables(pieces)
    chosen = np.zeros(written.results.num_rows, dtype=bool)
    chosen[rows] = True
    return strokes.filter(pc.is_in(test_keys(strokes), test_keys(written.results.filter(pa.array(chosen)))))
