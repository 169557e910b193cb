"""The online feature store: each typist's UserFeatures in Redis (`keyscope:features:{user_id}`, the byte form of
summary.py), folded forward by the ingest job for every test it stores and read by the predictor.

The ingest job is the only writer (one per deployment; its passes never overlap, and its writer threads take turns
here), so an update is a read, a fold and a write of each touched typist, two round trips per batch. It runs just
before a batch's result rows are stored (a pass that stops in between rewrites the tests, and a test folded twice
counts once) and before the pass rechecks deletions, so a typist deleted meanwhile loses these keys too. No TTL: a
typist's features are kept as long as their tests are, and `keyscope users delete` removes them (registered in
app/user_data.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator

import redis

from app.config import Settings
from app.features.deltas import TestDelta
from app.features.summary import UserFeatures


def feature_key(user_id: int) -> str:
    return f"keyscope:features:{user_id}"


class FeatureStore:
    """Read and fold typists' features in Redis."""

    name = "features"  # its name in the GDPR registry and in export archives

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._redis = client or redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._owned = client is None

    def get(self, user_id: int) -> UserFeatures | None:
        raw = self._redis.get(feature_key(user_id))
        return UserFeatures.from_bytes(raw) if raw is not None else None

    def get_many(self, user_ids: list[int]) -> dict[int, UserFeatures]:
        if not user_ids:
            return {}
        raws = self._redis.mget([feature_key(u) for u in user_ids])
        return {u: UserFeatures.from_bytes(raw) for u, raw in zip(user_ids, raws, strict=True) if raw is not None}

    def update(self, deltas: Iterable[TestDelta]) -> int:
        """Fold the tests into their typists' features; returns how many were new (not already folded)."""
        by_user: dict[int, list[TestDelta]] = defaultdict(list)
        for delta in deltas:
            by_user[delta.user_id].append(delta)
        if not by_user:
            return 0
        users = sorted(by_user)
        current = self.get_many(users)
        folded = 0
        pipe = self._redis.pipeline(transaction=False)
        for user_id in users:
            features = current.get(user_id) or UserFeatures(user_id)
            added = sum(features.add(delta) for delta in by_user[user_id])
            if added:
                folded += added
                pipe.set(feature_key(user_id), features.to_bytes())
        pipe.execute()
        return folded

    def rebuild(self, features: UserFeatures, test_ids: set[str], *, attempts: int = 5) -> str:
        """Make the stored features of `features.user_id` these — a fold of the tests `test_ids` stored in
        ClickHouse — where the store holds fewer tests. Returns "written", "current" (nothing to do) or "deferred":
        the store holds a test that is not among `test_ids`, i.e. ingest is storing this typist right now, and
        writing would lose that test (run again later). Optimistic: an ingest write to the typist between the check
        and the write makes the write fail and the check start again."""
        key = feature_key(features.user_id)
        for _ in range(attempts):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = UserFeatures.from_bytes(raw) if raw is not None else None
                    if current is not None and any(entry[1] not in test_ids for entry in current.recent):
                        pipe.unwatch()
                        return "deferred"
                    if current is not None and current.tests >= features.tests:
                        pipe.unwatch()
                        return "current"
                    pipe.multi()
                    pipe.set(key, features.to_bytes())
                    pipe.execute()
                    return "written"
                except redis.WatchError:
                    continue
        return "deferred"

    # --- the GDPR registry's store protocol (app/user_data.py) ---
    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        features = self.get(user_id)
        if features is not None:
            yield "features.json", json.dumps(features.to_dict(), indent=1).encode()

    def count(self, user_id: int) -> int:
        return int(self._redis.exists(feature_key(user_id)))

    def delete(self, user_id: int) -> int:
        return int(self._redis.delete(feature_key(user_id)))

    def close(self) -> None:
        if self._owned:
            self._redis.close()
