"""Weak and strong keys and letter pairs from a user's stored per-test aggregates, and their confusions.

Input rows have the columns of KEY_STAT_SCHEMA: one row per (test, key) or (test, letter pair) of one user.
Per unit (a key, or a pair of presented characters) the ranking combines two kinds of evidence:

- speed, keybr-style: the per-test mean time-to-type, exponentially smoothed over the user's tests in
  chronological order (α = 0.1, seeded with the first test's mean), so recent tests count most;
  confidence = target time (60000 / target_cpm ms) / smoothed time, ≥ 1 meaning "fast enough";
- accuracy, shrunk: a Beta prior centred on the user's overall error rate p0 with `prior_strength` k
  pseudo-presses, so a unit with e errors in n presses has posterior Beta(e + k·p0, n − e + k·(1 − p0)) and
  shrunk error rate (e + k·p0) / (n + k). Three presses barely move it away from p0; three hundred do.

weakness score = ln((t' / m + c·r) / (1 + c·p0)): the expected cost of one press of the unit over that of a
typical press, both in median presses. m is the user's median smoothed time over eligible units, r the shrunk
error rate, c = 5 (`error_cost_presses`) the presses an error costs (the wrong press, the pause to notice it,
Backspace, the retype), and t' / m = (t / m)^(n / (n + 10)) the smoothed time ratio shrunk toward 1: n is the
smoothing's effective number of presses (1 / Σ w_i² / m_i over the per-test weights w_i and press counts
m_i) and 10 (`time_prior_presses`) pseudo-presses at the median time. The score is increasing in both the
smoothed time and the shrunk error rate, 0 for a unit at the median time and the user's error rate, and > 0
means worse than typical. Weighting errors by their cost in time (rather than adding ln(r / p0)) keeps one
stray error in a few presses of a careful typist from outranking a key that is truly slow; shrinking time
keeps one early pause in a rare unit from doing the same. A unit without timed presses counts as typical in
time. Units with fewer than `min_presses` presses are ranked but never weak or strong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike
from scipy import special

# An error costs about five presses' time: the wrong press, the pause before noticing it, a Backspace and the
# retype (keyscope's simulator: 1 + 2.2 + 0.65..1 + 1.25 intervals).
ERROR_COST_PRESSES = 5.0
# Shrinking a log time ratio toward 0 (normal prior and noise) weighs n presses against σ²/τ² pseudo-presses:
# one press's log time-to-type spreads by σ ≈ 0.5–0.6 (typing-facts.md), typical units of one typist by
# τ ≈ 0.15–0.2 (hand alternation ±10 %, word starts +15 %), so σ²/τ² ≈ 10.
TIME_PRIOR_PRESSES = 10.0
INTERVAL_LEVEL = 0.90  # the error_interval is the central 90 % of the Beta posterior
_QUANTILE_EDGE = 1e-12


# --- The Beta distribution --------------------------------------------------------------------------------


def regularized_beta(x: ArrayLike, a: ArrayLike, b: ArrayLike) -> Any:
    """Return I_x(a, b), the Beta(a, b) CDF at x (elementwise over arrays)."""
    return special.betainc(a, b, np.clip(x, 0.0, 1.0))


def beta_quantile(q: ArrayLike, a: ArrayLike, b: ArrayLike) -> Any:
    """Return x with I_x(a, b) = q (elementwise over arrays; a float for scalar input). Quantiles within 1e-12 of
    0 or 1 read as 0 or 1: no rate worth telling apart lies there (a ≪ 1 piles mass at 0)."""
    x = special.betaincinv(a, b, q)
    x = np.where(x <= _QUANTILE_EDGE, 0.0, np.where(x >= 1.0 - _QUANTILE_EDGE, 1.0, x))
    return float(x) if x.ndim == 0 else x


# --- Ranking ---------------------------------------------------------------------------------------------


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Return (per-row index into the distinct values, the distinct values) of a string column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(pc.fill_null(column, ""))
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _int_column(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(pc.cast(table.column(name), pa.int64()), 0).to_numpy().astype(np.int64)


def _chronological_test_positions(history: pa.Table, user_of_row: np.ndarray) -> tuple[np.ndarray, int]:
    """Return each row's test position in chronological order (ties by test_id) and the number of tests. A test is
    a (user, test_id); positions are global, so restricted to one user they are that user's chronological order."""
    id_codes, test_ids = _codes(history.column("test_id"))
    tests, test_codes = np.unique(user_of_row * max(len(test_ids), 1) + id_codes, return_inverse=True)
    test_codes = test_codes.ravel()
    started = pc.fill_null(pc.cast(history.column("started_at"), pa.int64()), 0).to_numpy().astype(np.int64)
    n_tests = tests.shape[0]
    started_per_test = np.zeros(n_tests, dtype=np.int64)
    started_per_test[test_codes] = started
    id_rank_of_code = np.empty(len(test_ids), dtype=np.int64)
    id_rank_of_code[sorted(range(len(test_ids)), key=test_ids.__getitem__)] = np.arange(len(test_ids))
    id_rank = id_rank_of_code[tests % max(len(test_ids), 1)]
    order = np.lexsort((id_rank, started_per_test))
    position = np.empty(n_tests, dtype=np.int64)
    position[order] = np.arange(n_tests)
    return position[test_codes], n_tests


def _smoothed_last(
    unit: np.ndarray, values: np.ndarray, presses: np.ndarray, n_units: int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return per unit (the last value of the exponential smoothing of `values`, its effective press count).

    Rows are sorted by unit, then time. s_0 = x_0, s_i = α·x_i + (1 − α)·s_(i−1), so s_last = Σ w_i·x_i with
    w_i = α(1 − α)^(n−1−i) and w_0 = (1 − α)^(n−1): one weighted bincount instead of a loop per unit. A
    per-test mean over m presses has variance σ²/m, so s_last has the variance of 1 / Σ(w_i² / m_i) presses:
    the smoothing's effective press count, which long histories cap near 19 tests' worth. NaN / 0 where a
    unit has no values.
    """
    counts = np.bincount(unit, minlength=n_units)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(unit.shape[0]) - starts[unit]
    steps_to_last = counts[unit] - 1 - position
    weights = np.where(position == 0, (1.0 - alpha) ** steps_to_last, alpha * (1.0 - alpha) ** steps_to_last)
    smoothed = np.bincount(unit, weights=weights * values, minlength=n_units)
    spread = np.bincount(unit, weights=weights**2 / presses, minlength=n_units)
    with np.errstate(divide="ignore"):
        effective = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 0.0)
    return np.where(counts > 0, smoothed, np.nan), effective


def _percent(rate: float) -> str:
    """'9 %' for rates from 10 % up, '1.2 %' below, so small error rates keep a digit."""
    value = 100.0 * rate
    return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"


def _label(unit: str) -> str:
    """Return how a unit reads in a sentence: quoted, the space key named, a space inside a pair shown as ␣."""
    return "space" if unit == " " else "'" + unit.replace(" ", "␣") + "'"


class _Reasons:
    """The plain-language sentence naming the evidence behind each of one user's unit scores; the parts every
    sentence of the user shares are formatted once (a refresh writes one for each of a typist's hundreds of keys
    and pairs)."""

    def __init__(self, kind: str, median_ms: float | None, user_rate: float, min_presses: int) -> None:
        self.min_presses = min_presses
        self.median = None if median_ms is None else f" ms on average (your median {kind} {median_ms:.0f} ms)"
        self.rate = f" presses are wrong (you: {_percent(user_rate)})"

    def of(self, entry: dict[str, Any], name: str) -> str:
        presses = entry["presses"]
        if presses < self.min_presses:
            return f"{name} has only {presses} press{'es' if presses != 1 else ''} so far: too few to judge"
        smoothed_ms = entry["smoothed_time_ms"]
        if smoothed_ms is not None and self.median is not None:
            timing = f"{name} takes {smoothed_ms:.0f}{self.median}"
        else:
            timing = f"{name} has no timed presses yet"
        return f"{timing} and {_percent(entry['error_rate'])} of its {presses}{self.rate}"


def empty_ranking(target_time_ms: float) -> dict[str, Any]:
    return {
        "weak": [],
        "strong": [],
        "all": [],
        "baseline": {"error_rate": None, "median_time_ms": None, "target_time_ms": target_time_ms},
    }


def rank_units(
    history: pa.Table, *, kind: Literal["key", "pair"], target_cpm: float = 175.0, **options: Any
) -> dict[str, Any]:
    """Return {"weak", "strong", "all", "baseline"}: the user's keys or letter pairs ranked by weakness score
    (`options`: the tuning parameters of `rank_units_by_user`).

    `all` holds every unit, weakest first (ties by unit), each a dict with unit, presses, errors, error_rate,
    shrunk_error_rate, error_interval [lo, hi] (90 % Beta posterior), tests, timed_presses, mean_time_ms,
    smoothed_time_ms, time_ratio (smoothed / the user's median), confidence, score, eligible and reason.
    `weak` is the `top` eligible units with score > 0, weakest first; `strong` the `top` eligible units with
    score < 0, strongest first. `baseline` holds the user's error_rate, median_time_ms and target_time_ms.
    Rows of one (test, unit) that appear twice are summed. Every row counts as the one user's.
    """
    if "user_id" in history.column_names:
        history = history.drop_columns(["user_id"])
    one_user = history.append_column("user_id", pa.array(np.zeros(history.num_rows, dtype=np.int64)))
    ranked = rank_units_by_user(one_user, kind=kind, target_cpm=target_cpm, **options)
    return ranked.get(0) or empty_ranking(60_000.0 / target_cpm)


def rank_units_by_user(
    history: pa.Table,
    *,
    kind: Literal["key", "pair"],
    target_cpm: float = 175.0,
    alpha: float = 0.1,
    prior_strength: float = 30.0,
    min_presses: int = 5,
    top: int = 5,
    error_cost_presses: float = ERROR_COST_PRESSES,
    time_prior_presses: float = TIME_PRIOR_PRESSES,
) -> dict[int, dict[str, Any]]:
    """`rank_units` for the rows of many users at once (a `user_id` column): user id → ranking, for each user with
    rows. The arithmetic runs over every (user, unit) together (the insights refresh ranks thousands of typists a
    pass); only each unit's dict is built one by one."""
    target_time_ms = 60_000.0 / target_cpm
    if history.num_rows == 0:
        return {}
    users, user_of_row = np.unique(_int_column(history, "user_id"), return_inverse=True)
    user_of_row = user_of_row.ravel()
    name_of_row, names = _codes(history.column("key"))
    n_names = len(names)
    # One "unit" per (user, key or pair), sorted by user: each user's units are one contiguous run.
    unit_keys, unit_of_row = np.unique(user_of_row * n_names + name_of_row, return_inverse=True)
    unit_of_row = unit_of_row.ravel()
    n_units = unit_keys.shape[0]
    unit_user, unit_name = unit_keys // n_names, unit_keys % n_names
    presses_row = _int_column(history, "presses")
    errors_row = _int_column(history, "errors")
    timed_row = _int_column(history, "timed_presses")
    time_sum_row = _int_column(history, "time_to_type_sum_ms")
    test_position, n_tests = _chronological_test_positions(history, user_of_row)

    # One group per (unit, test), sorted by unit then chronologically: the smoothing needs that order.
    group_keys, group_of_row = np.unique(unit_of_row * n_tests + test_position, return_inverse=True)
    group_of_row = group_of_row.ravel()
    n_groups = group_keys.shape[0]
    group_unit = group_keys // n_tests
    group_timed = np.bincount(group_of_row, weights=timed_row, minlength=n_groups)
    group_time = np.bincount(group_of_row, weights=time_sum_row, minlength=n_groups)
    has_time = group_timed > 0
    per_test_mean = group_time[has_time] / group_timed[has_time]
    smoothed, effective_timed = _smoothed_last(
        group_unit[has_time], per_test_mean, group_timed[has_time], n_units, alpha
    )

    presses = np.bincount(unit_of_row, weights=presses_row, minlength=n_units).astype(np.int64)
    errors = np.bincount(unit_of_row, weights=errors_row, minlength=n_units).astype(np.int64)
    timed = np.bincount(unit_of_row, weights=timed_row, minlength=n_units).astype(np.int64)
    time_sum = np.bincount(unit_of_row, weights=time_sum_row, minlength=n_units)
    tests = np.bincount(group_unit, minlength=n_units)

    n_users = users.shape[0]
    total_presses = np.bincount(unit_user, weights=presses, minlength=n_users)
    total_errors = np.bincount(unit_user, weights=errors, minlength=n_users)
    # A user with no errors (or only errors) would give a degenerate prior; keep p0 half a press inside (0, 1).
    edge = 0.5 / (total_presses + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw_rate = np.where(total_presses > 0, total_errors / np.maximum(total_presses, 1), 0.0)
    user_rate = np.minimum(np.maximum(raw_rate, edge), 1.0 - edge)
    rate = user_rate[unit_user]
    shrunk = (errors + prior_strength * rate) / (presses + prior_strength)

    eligible = presses >= min_presses
    timed_eligible = eligible & np.isfinite(smoothed)
    bounds = np.searchsorted(unit_user, np.arange(n_users + 1))
    median_time = np.full(n_users, np.nan)
    for j in range(n_users):
        run = slice(bounds[j], bounds[j + 1])
        values = smoothed[run][timed_eligible[run]]
        if values.size:
            median_time[j] = np.median(values)
    # Cost per press in median presses: time ratio plus the presses an error costs; no time reads as typical.
    median = median_time[unit_user]
    with np.errstate(divide="ignore", invalid="ignore"):
        usable = np.isfinite(median) & (median > 0) & np.isfinite(smoothed) & (smoothed > 0)
        time_ratio = np.where(usable, smoothed / np.where(usable, median, 1.0), 1.0)
    # Shrink the time ratio toward 1 as the error rate is shrunk toward p0, weighing the smoothing's effective
    # presses against time_prior_presses: one early pause in a rare unit's few tests must not make it look slow.
    time_ratio = time_ratio ** (effective_timed / (effective_timed + time_prior_presses))
    score = np.log((time_ratio + error_cost_presses * shrunk) / (1.0 + error_cost_presses * rate))

    tail = (1.0 - INTERVAL_LEVEL) / 2
    # Many units share their posterior (rare pairs above all): one quantile per distinct (user, errors, presses).
    posteriors, posterior_of_unit = np.unique(
        np.stack([unit_user, errors, presses], axis=1), axis=0, return_inverse=True
    )
    posterior_of_unit = posterior_of_unit.ravel()
    p_rate = user_rate[posteriors[:, 0]]
    a = posteriors[:, 1] + prior_strength * p_rate
    b = posteriors[:, 2] - posteriors[:, 1] + prior_strength * (1.0 - p_rate)
    quantiles = beta_quantile(np.array([[tail], [1.0 - tail]]), a, b)
    interval_lo, interval_hi = quantiles[0][posterior_of_unit].tolist(), quantiles[1][posterior_of_unit].tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_time = np.where(timed > 0, time_sum / np.maximum(timed, 1), np.nan)
    # Plain Python numbers before the loop: indexing numpy arrays per element costs more than the entry itself.
    presses_l, errors_l, tests_l, timed_l = presses.tolist(), errors.tolist(), tests.tolist(), timed.tolist()
    shrunk_l, score_l, eligible_l = shrunk.tolist(), score.tolist(), eligible.tolist()
    smoothed_l, mean_time_l, name_l = smoothed.tolist(), mean_time.tolist(), unit_name.tolist()

    labels = [_label(name) for name in names]
    out: dict[int, dict[str, Any]] = {}
    for j, user_id in enumerate(users.tolist()):
        median_j = float(median_time[j]) if np.isfinite(median_time[j]) else None
        rate_j = float(user_rate[j])
        reasons = _Reasons(kind, median_j, rate_j, min_presses)
        entries = []
        for i in range(bounds[j], bounds[j + 1]):
            n, e = presses_l[i], errors_l[i]
            smoothed_i = smoothed_l[i] if math.isfinite(smoothed_l[i]) else None
            entry: dict[str, Any] = {
                "key": names[name_l[i]],
                "presses": n,
                "errors": e,
                "error_rate": e / n if n else 0.0,
                "shrunk_error_rate": shrunk_l[i],
                "error_interval": [interval_lo[i], interval_hi[i]],
                "tests": tests_l[i],
                "timed_presses": timed_l[i],
                "mean_time_ms": mean_time_l[i] if timed_l[i] else None,
                "smoothed_time_ms": smoothed_i,
                "time_ratio": smoothed_i / median_j if smoothed_i is not None and median_j else None,
                "confidence": target_time_ms / smoothed_i if smoothed_i else None,
                "score": score_l[i],
                "eligible": eligible_l[i],
            }
            entry["reason"] = reasons.of(entry, labels[name_l[i]])
            entries.append(entry)
        ranked = sorted(entries, key=lambda entry: (-entry["score"], entry["key"]))
        weak = [entry for entry in ranked if entry["eligible"] and entry["score"] > 0][:top]
        strong = [entry for entry in reversed(ranked) if entry["eligible"] and entry["score"] < 0]
        strong = sorted(strong, key=lambda entry: (entry["score"], entry["key"]))[:top]
        out[int(user_id)] = {
            "weak": weak,
            "strong": strong,
            "all": ranked,
            "baseline": {"error_rate": rate_j, "median_time_ms": median_j, "target_time_ms": target_time_ms},
        }
    return out


# --- Confusions ------------------------------------------------------------------------------------------


def errors_by_key(history: pa.Table) -> dict[str, int]:
    """Return key → total errors over the rows of a KEY_STAT_SCHEMA table (the denominator for confusion shares)."""
    unit_of_row, units = _codes(history.column("key"))
    errors = np.bincount(unit_of_row, weights=_int_column(history, "errors"), minlength=len(units))
    return {unit: int(count) for unit, count in zip(units, errors.tolist())}


def top_confusions(
    confusions: pa.Table, top: int = 10, key_errors: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Return the `top` (presented key, typed key) confusions summed over tests, most frequent first.

    Each is {key, typed, count, share_of_key_errors}: the share is count / key_errors[key] (the key's errors
    of every kind, e.g. from `errors_by_key`), None when no total is given or the key has none. Ties go by
    key, then typed, so the order is deterministic. `confusions` needs key, typed and count columns
    (CONFUSION_SCHEMA rows, or rows already summed per pair).
    """
    if confusions.num_rows == 0 or top <= 0:
        return []
    key_of_row, keys = _codes(confusions.column("key"))
    typed_of_row, typed_names = _codes(confusions.column("typed"))
    pair_of_row = key_of_row * len(typed_names) + typed_of_row
    pairs, inverse = np.unique(pair_of_row, return_inverse=True)
    counts = np.bincount(inverse, weights=_int_column(confusions, "count"), minlength=pairs.shape[0])
    names = [(keys[p // len(typed_names)], typed_names[p % len(typed_names)]) for p in pairs.tolist()]
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))
    out = []
    for i in order:
        count = int(counts[i])
        if count <= 0:
            continue
        key, typed = names[i]
        total = key_errors.get(key) if key_errors is not None else None
        out.append(
            {"key": key, "typed": typed, "count": count, "share_of_key_errors": count / total if total else None}
        )
        if len(out) == top:
            break
    return out
