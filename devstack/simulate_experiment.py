"""Simulated typists in an experiment: each typist (devstack/simulate.py, with traits: a practice curve, slow
letter pairs, day-to-day form) also has a few weak letters (`WEAK_LETTERS`: the simulator's typists otherwise type
every letter at nearly the same median speed, so "weak keys" would be noise). They type `tests_before` tests, are
exposed to the variant assignment gives them, then type `tests_after` more, changed by their variant's
`VariantEffect`. A variant built to help more makes its typists faster and their weak letters less weak as they
practise after exposure; a variant with no effect leaves them on their own practice curve (an A/A experiment).
Used by the experiment report's tests and to try the report by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from app.experiments.assignment import assign
from app.experiments.definition import Experiment
from app.experiments.store import Exposure
from devstack.simulate import TypistProfile, make_profiles, simulate_test


@dataclass(frozen=True)
class VariantEffect:
    """How a variant changes a typist's k-th test after exposure (k = 0, 1, …). The effect grows with practice as
    1 − (k + 1)^−0.5 (none on the day of exposure, most of it within ten tests):

    - `speedup`: at most this share faster on every interval (0.1: intervals 10 % shorter);
    - `weak_key_relief`: at most this share of each weak letter's extra time removed.
    """

    speedup: float = 0.0
    weak_key_relief: float = 0.0

    def apply(self, profile: TypistProfile, k: int) -> TypistProfile:
        grown = 1.0 - (k + 1) ** -0.5
        if not (self.speedup or self.weak_key_relief) or grown == 0.0:
            return profile
        relief = 1.0 - self.weak_key_relief * grown
        return replace(
            profile,
            wpm=profile.wpm / (1.0 - self.speedup * grown),  # the simulator's intervals scale as 1 / wpm
            slow_keys={key: 1.0 + (f - 1.0) * relief for key, f in profile.slow_keys.items()},
        )


WEAK_LETTERS = 3  # per typist, drawn from COMMON_LETTERS
WEAK_LETTER_FACTOR = (1.4, 1.9)  # × the interval before the letter
COMMON_LETTERS = "etaoinshrdlcumwfgyp"


def with_weak_letters(profile: TypistProfile, seed: int) -> TypistProfile:
    """The typist with WEAK_LETTERS weak letters of their own (a stream of its own: their other habits stay)."""
    rng = np.random.default_rng([seed, profile.user_id, 3])
    letters = rng.choice(len(COMMON_LETTERS), size=WEAK_LETTERS, replace=False)
    factors = rng.uniform(*WEAK_LETTER_FACTOR, size=WEAK_LETTERS)
    return replace(profile, slow_keys={COMMON_LETTERS[int(i)]: round(float(f), 3) for i, f in zip(letters, factors)})


def simulate_experiment(
    experiment: Experiment,
    n_users: int,
    tests_before: int,
    tests_after: int,
    effects: Mapping[str, VariantEffect],
    seed: int = 0,
    first_user_id: int = 1,
    start: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[Exposure]]:
    """Submissions of every typist (test i on day i after `start`, at the typist's usual hour) and their exposures
    (at midnight before test `tests_before`). A variant missing from `effects` has none."""
    start = start if start is not None else datetime(2026, 10, 1, tzinfo=UTC)
    submissions: list[dict[str, Any]] = []
    exposures = []
    for typist in make_profiles(n_users, seed, first_user_id, traits=True):
        profile = with_weak_letters(typist, seed)
        rng = np.random.default_rng([seed, profile.user_id, 1])
        usual_hour = float(rng.uniform(7.0, 20.0))
        variant = assign(experiment, profile.user_id)
        effect = effects.get(variant.name, VariantEffect())
        exposed_at = start + timedelta(days=tests_before)
        exposures.append(Exposure(profile.user_id, experiment.name, variant.name, exposed_at))
        for i in range(tests_before + tests_after):
            started_at = start + timedelta(days=i, hours=usual_hour, minutes=float(rng.uniform(0.0, 180.0)))
            typist = profile if i < tests_before else effect.apply(profile, i - tests_before)
            test_id = f"exp-{seed}-{profile.user_id}-{i}"
            submissions.append(simulate_test(typist, rng, started_at, i, test_id=test_id))
    return submissions, exposures


def error_rates(seeds: int, users: int, tests_before: int, tests_after: int, effect: VariantEffect) -> str:
    """Run an A/B experiment (variant `b` has `effect`) and an A/A one on each seed's simulated typists, in a
    throwaway in-process chDB, and say how often each outcome's 95 % interval excludes 0 (A/A: false positives;
    A/B: found with the right sign)."""
    import tempfile

    from app.clickhouse.client import clickhouse_client
    from app.clickhouse.migrate import apply_migrations
    from app.clickhouse.store import write_tables
    from app.experiments.definition import Variant
    from app.experiments.report import experiment_report
    from app.experiments.store import create_experiment, write_exposures
    from app.schemas import parse_submission
    from app.tables import build_tables

    found = {("aa", "wpm_change"): 0, ("aa", "weak_key_change_ms"): 0, ("ab", "wpm_change"): 0,
             ("ab", "weak_key_change_ms"): 0}
    better = {"wpm_change": 1, "weak_key_change_ms": -1}
    with tempfile.TemporaryDirectory() as folder:
        client = clickhouse_client(f"chdb://{folder}/ch")
        apply_migrations(client)
        for seed in range(seeds):
            for kind in ("aa", "ab"):
                starts = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=2 * seed + (kind == "ab"))
                experiment = Experiment(
                    f"{kind}-{seed}", "hint_style", (Variant("a", 1, "all"), Variant("b", 1, "all")), starts,
                    starts + timedelta(days=1),
                )
                create_experiment(client, experiment)
                first = 7_900_001 + (2 * seed + (kind == "ab")) * users
                submissions, exposures = simulate_experiment(
                    experiment, users, tests_before, tests_after, {"b": effect} if kind == "ab" else {}, seed, first
                )
                tests = [parse_submission(s) for s in submissions]
                positions = np.arange(len(tests), dtype=np.int64)
                write_tables(client, build_tables(tests, np.zeros(len(tests), np.int64), positions))
                write_exposures(client, exposures)
                report = experiment_report(client, experiment.name, tests_after)
                for outcome, difference in report.differences["b"].items():
                    if kind == "aa":
                        found[(kind, outcome)] += difference.excludes_zero
                    else:
                        found[(kind, outcome)] += difference.excludes_zero and difference.estimate * better[outcome] > 0
        client.close()
    lines = [f"{seeds} seeds × {users} typists, {tests_before} tests before exposure, {tests_after} after"]
    for (kind, outcome), n in found.items():
        what = "A/A: interval excludes 0 (false positive)" if kind == "aa" else "A/B: effect found with the right sign"
        lines.append(f"  {what:<45} {outcome:<20} {n}/{seeds}")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=error_rates.__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--users", type=int, default=160)
    parser.add_argument("--before", type=int, default=5)
    parser.add_argument("--after", type=int, default=8)
    parser.add_argument("--speedup", type=float, default=0.10)
    parser.add_argument("--weak-key-relief", type=float, default=0.7)
    args = parser.parse_args()
    effect = VariantEffect(args.speedup, args.weak_key_relief)
    print(error_rates(args.seeds, args.users, args.before, args.after, effect))
