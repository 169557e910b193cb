"""The bounds of a typist's and a test's identity, checked wherever one enters keyscope (submissions, tokens,
user-data requests, archives)."""

from __future__ import annotations

import re

MAX_USER_ID = 2**63 - 1  # user ids are positive signed 64-bit integers (ClickHouse UInt64, JSON-safe as text)
TEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_user_id(user_id: int) -> int:
    """`user_id` when it is a valid user id; ValueError otherwise."""
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 1 <= user_id <= MAX_USER_ID:
        raise ValueError(f"a user id is an integer from 1 to {MAX_USER_ID}, got {user_id!r}")
    return user_id
