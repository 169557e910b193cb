"""Which tests train a model and which judge it, decided per typist and per test, the same on every run.

- A typist is *unseen* (held out whole) when a hash of their id falls in the held-out share; the rest are *seen*.
- A typist's tests in time order: the last LATER_SHARE of them (at least one, once they have MIN_TESTS) are *later*
  tests; the ones before are history.
- Samples: `train` = seen typists' history tests; `later` = seen typists' later tests; `unseen` = unseen typists'
  later tests (their history only feeds their features, as a new typist's would). Every sample's features come
  from the tests before it, so no split ever sees its own future.
"""

from __future__ import annotations

import hashlib

TRAIN, LATER, UNSEEN, HISTORY = 0, 1, 2, 3  # HISTORY: an unseen typist's earlier test (features only)
SPLIT_NAMES = {TRAIN: "train", LATER: "later", UNSEEN: "unseen"}
HELD_OUT_USERS_PERCENT = 20
LATER_SHARE = 0.2
MIN_TESTS = 5


def is_unseen(user_id: int, percent: int = HELD_OUT_USERS_PERCENT) -> bool:
    digest = hashlib.blake2b(f"keyscope-holdout:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 100 < percent


def later_start(n_tests: int) -> int:
    """The index of a typist's first later test (n_tests when they have too few to hold any out)."""
    if n_tests < MIN_TESTS:
        return n_tests
    return n_tests - max(1, round(n_tests * LATER_SHARE))


def split_of(user_id: int, index: int, n_tests: int) -> int:
    later = index >= later_start(n_tests)
    if is_unseen(user_id):
        return UNSEEN if later else HISTORY
    return LATER if later else TRAIN
