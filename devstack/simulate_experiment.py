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
