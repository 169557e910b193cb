"""A typist's features: one definition, computed offline (training, from ClickHouse) and online (serving, from
Redis, updated by the ingest job), so the two can never disagree.

Both paths fold the same per-test rows — `test_keys`, `test_pairs` and `test_results`, as the ingest job writes them
and as ClickHouse returns them — through `deltas.test_deltas` and `UserFeatures.add`. Every statistic is an integer
sum (log times in thousandths), so the fold gives the same value whatever order the tests arrive in.

- vocab.py     the characters features are kept for (case folded), and their ids
- deltas.py    what one stored test adds to its typist's features
- summary.py   UserFeatures: the fold, its dense arrays, and its compact byte form
- online.py    the Redis feature store (ingest writes, serving reads, GDPR registered)
- offline.py   point-in-time features from ClickHouse (only tests before a cut)
"""

from app.features.deltas import TestDelta, test_deltas
from app.features.summary import RECENT_TESTS, UserFeatures
from app.features.vocab import VOCAB_SIZE, char_ids, pair_ids

__all__ = ["RECENT_TESTS", "VOCAB_SIZE", "TestDelta", "UserFeatures", "char_ids", "pair_ids", "test_deltas"]
