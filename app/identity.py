"""The bounds of a typist's and a test's identity, checked wherever one enters keyscope (submissions, tokens,
user-data requests, archives)."""

from __future__ import annotations

import re

MAX_USER_ID = 2**63 - 1  # user ids are positive signed 64-bit integers (ClickHouse UInt64, JSON-safe as text)
TEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
