"""Simulated typists with one known weakness, shared by the end-to-end tests."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np

from devstack.simulate import make_profiles, simulate_test


def slow_q_history(user_id: int, n: int, *, seed: int, start: datetime) -> list[dict]:
    """`n` submissions, a day apart from `start`, of a QWERTY typist four times slower to reach 'q' than any other
    key (and few errors)."""
    profile = make_profiles(1, seed=seed, first_user_id=user_id)[0]
    profile = dataclasses.replace(profile, slow_keys={"q": 4.0}, error_rate=0.01, layout="qwerty")
    rng = np.random.default_rng(seed)
    return [simulate_test(profile, rng, start + timedelta(days=i, minutes=i), i) for i in range(n)]
