"""Each exposed user's later outcomes, relative to their own tests before exposure.

For a user first exposed at t, the *before* window is their last N tests started before t and the *after* window
their first N tests started at or after t (N = `after_tests`). A user is *measured* once they have at least one test
before and N after; the others are *pending* (they still count in the sample-ratio check). Two outcomes:

- **WPM change**: mean WPM of the after window − mean WPM of the before window (positive: faster).
- **Weak-key change**: the user's weak keys are their WEAK_KEYS slowest keys in the before window (median
  time-to-type, among lower-case letters with at least MIN_PRESSES timed presses there and one or more after:
  capitals and punctuation carry Shift and sentence-boundary pauses that practice text does not target); the
  change is the mean over those keys of their median time-to-type after − before, in ms (negative: faster);
  medians, because one pause to think in a test of a few hundred presses moves a key's mean by more than a week
  of practice does (the insights' key medians are the same estimator, quantileTiming). The keys are
  chosen before exposure, so the change measures improvement on what was weak, not regression to the mean of
  whatever happened to be slow afterwards.

Comparing each user with themselves removes the large differences between typists (30 vs 90 WPM) from the
comparison between variants. Both windows are read in ClickHouse (test_results, test_keys), aggregated there per
user and per (user, window, key).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

AFTER_TESTS = 10
WEAK_KEYS = 3
MIN_PRESSES = 5

# The exposed users and their tests in the two windows; {e} is the experiment, {n} the window size.
_WINDOWS = """
WITH exposed AS (
    SELECT user_id, argMin(variant, exposed_at) AS first_variant, min(exposed_at) AS first_exposed_at
    FROM experiment_exposures
    WHERE experiment = {e:String}
    GROUP BY user_id
),
ranked AS (
    SELECT r.user_id AS user_id, r.test_id AS test_id, r.wpm AS wpm,
           r.started_at >= x.first_exposed_at AS after,
           row_number() OVER (PARTITION BY r.user_id, r.started_at >= x.first_exposed_at
                              ORDER BY r.started_at, r.test_id) AS rank_up,
           row_number() OVER (PARTITION BY r.user_id, r.started_at >= x.first_exposed_at
                              ORDER BY r.started_at DESC, r.test_id DESC) AS rank_down
    FROM test_results AS r FINAL
    INNER JOIN exposed AS x ON r.user_id = x.user_id
    WHERE r.user_id IN (SELECT user_id FROM exposed)
),
windows AS (
    SELECT user_id, test_id, wpm, after FROM ranked
    WHERE (after AND rank_up <= {n:UInt32}) OR (NOT after AND rank_down <= {n:UInt32})
)
"""

_PER_USER = _WINDOWS + """
SELECT x.user_id, x.first_variant, countIf(w.after = 0 AND w.test_id != ''), countIf(w.after = 1),
       avgIf(w.wpm, w.after = 0 AND w.test_id != ''), avgIf(w.wpm, w.after = 1)
FROM exposed AS x
LEFT JOIN windows AS w ON w.user_id = x.user_id
GROUP BY x.user_id, x.first_variant
ORDER BY x.user_id
"""

_PER_KEY = _WINDOWS + """
SELECT k.user_id, w.after, k.key, sum(length(k.times)), quantileTimingArray(0.5)(k.times)
FROM (
    SELECT user_id, test_id, key, times
    FROM test_keys FINAL
    ARRAY JOIN key, time_to_type_ms AS times
    WHERE user_id IN (SELECT user_id FROM exposed)
) AS k
INNER JOIN windows AS w ON w.user_id = k.user_id AND w.test_id = k.test_id
GROUP BY k.user_id, w.after, k.key
"""


@dataclass(frozen=True)
class UserOutcome:
    """One exposed user's windows (module docstring); NaN where a window has nothing to measure."""

    user_id: int
    variant: str
    tests_before: int
    tests_after: int
    wpm_change: float
    weak_key_change_ms: float

    def measured(self, after_tests: int) -> bool:
        return self.tests_before >= 1 and self.tests_after >= after_tests


KeyTimes = Mapping[str, tuple[int, float]]  # key -> (timed presses, median time-to-type in ms)


def weak_key_change(
    before: KeyTimes, after: KeyTimes, weak_keys: int = WEAK_KEYS, min_presses: int = MIN_PRESSES
) -> float:
    """After − before mean time-to-type of the user's weak keys, chosen in the before window (module docstring);
    NaN when no key qualifies."""
    candidates = [
        key for key, (presses, _) in before.items()
        if len(key) == 1 and key.isalpha() and key.islower() and presses >= min_presses
        and after.get(key, (0, 0))[0] > 0
    ]
    if not candidates:
        return math.nan
    candidates.sort(key=lambda k: (-before[k][1], k))
    chosen = candidates[:weak_keys]
    return sum(after[k][1] - before[k][1] for k in chosen) / len(chosen)


def load_outcomes(client: Client, experiment: str, after_tests: int = AFTER_TESTS) -> list[UserOutcome]:
    """Every exposed user's outcomes in `experiment` (measured or not), by user id."""
    if after_tests < 1:
        raise ValueError("after_tests must be at least 1")
    parameters = {"e": experiment, "n": after_tests}
    users = client.query(_PER_USER, parameters=parameters).result_rows
    keys: dict[int, tuple[dict[str, tuple[int, float]], dict[str, tuple[int, float]]]] = {}
    for user_id, after, key, presses, median_ms in client.query(_PER_KEY, parameters=parameters).result_rows:
        windows = keys.setdefault(int(user_id), ({}, {}))
        windows[int(bool(after))][str(key)] = (int(presses), float(median_ms))
    outcomes = []
    for user_id, variant, n_before, n_after, wpm_before, wpm_after in users:
        before, after = keys.get(int(user_id), ({}, {}))
        n_before, n_after = int(n_before), int(n_after)
        outcomes.append(
            UserOutcome(
                user_id=int(user_id),
                variant=str(variant),
                tests_before=n_before,
                tests_after=n_after,
                wpm_change=float(wpm_after) - float(wpm_before) if n_before and n_after else math.nan,
                weak_key_change_ms=weak_key_change(before, after),
            )
        )
    return outcomes
