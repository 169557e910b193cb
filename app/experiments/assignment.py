"""Deterministic assignment: the same user gets the same variant of an experiment in every process, on every
replica, after every restart, with no state stored.

The user's point in [0, 1) is the first 8 bytes of BLAKE2b(experiment name, user id) read as an integer over 2^64;
the variants split [0, 1) in order, each a slice as wide as its share of the weights. The experiment's name salts
the hash, so two experiments split the same users independently. (Python's `hash()` is salted per process and
would reshuffle users on every restart.)
"""

from __future__ import annotations

import hashlib

from app.experiments.definition import Experiment, Variant
from app.identity import check_user_id

_SCALE = float(2**64)


def bucket(experiment: str, user_id: int) -> float:
    """The user's point in [0, 1) for this experiment."""
    message = f"{experiment}\x00{check_user_id(user_id)}".encode()
    digest = hashlib.blake2b(message, digest_size=8, person=b"keyscope-exp").digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(experiment: Experiment, user_id: int) -> Variant:
    """The variant `user_id` gets in `experiment`."""
    point = bucket(experiment.name, user_id)
    upper = 0.0
    for variant, share in zip(experiment.variants, experiment.shares, strict=True):
        upper += share
        if point < upper:
            return variant
    return experiment.variants[-1]  # the shares' sum may round to just under 1
