"""What practice text was served to whom: per user, in Redis, registered with the GDPR registry as `practice`.

- `keyscope:practice:served:{id}`: the ids of the last RECENT texts served to the user (a list, newest first), so
  the next request gets one they have not just typed;
- `keyscope:practice:signature:{id}`: the user's current signature, set when their insights are refreshed, so the
  refresh can tell when it changed and queue the new one for writing (texts.py).

Both expire RECORD_TTL_S after their last write: a typist who stops practising leaves nothing behind for long.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import redis

from app.config import Settings
from app.identity import check_user_id

RECENT = 8
RECORD_TTL_S = 30 * 24 * 3600


def served_key(user_id: int) -> str:
    return f"keyscope:practice:served:{user_id}"


def signature_key(user_id: int) -> str:
    return f"keyscope:practice:signature:{user_id}"


class ServedTexts:
    """Per-user practice records (see the module docstring)."""

    name = "practice"

    def __init__(self, settings: Settings, *, client: redis.Redis | None = None) -> None:
        self.redis = client or redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def recent(self, user_id: int) -> list[str]:
        return [item.decode() for item in self.redis.lrange(served_key(check_user_id(user_id)), 0, RECENT - 1)]

    def record(self, user_id: int, text_ids: list[str]) -> None:
        if not text_ids:
            return
        key = served_key(check_user_id(user_id))
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(key, *text_ids)
        pipe.ltrim(key, 0, RECENT - 1)
        pipe.expire(key, RECORD_TTL_S)
        pipe.execute()

    def swap_signatures(self, signatures: Mapping[int, str]) -> list[str]:
        """Store each user's current signature; return the signatures some user has newly moved to."""
        users = list(signatures)
        if not users:
            return []
        previous = self.redis.mget([signature_key(check_user_id(u)) for u in users])
        pipe = self.redis.pipeline(transaction=False)
        moved: set[str] = set()
        for user_id, old in zip(users, previous):
            new = signatures[user_id]
            if old is None or old.decode() != new:
                moved.add(new)
            pipe.set(signature_key(user_id), new, ex=RECORD_TTL_S)
        pipe.execute()
        return sorted(moved)

    # -- the GDPR registry's store (app/user_data.py) -----------------------------------------------------------

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        served = self.recent(user_id)
        signature = self.redis.get(signature_key(check_user_id(user_id)))
        if served or signature is not None:
            record = {"served_text_ids": served, "signature": signature.decode() if signature else None}
            yield "practice.json", json.dumps(record, indent=2).encode()

    def count(self, user_id: int) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(served_key(check_user_id(user_id)))
        pipe.exists(signature_key(user_id))
        served, signature = pipe.execute()
        return int(served) + int(signature)

    def delete(self, user_id: int) -> int:
        removed = self.count(user_id)
        self.redis.delete(served_key(check_user_id(user_id)), signature_key(user_id))
        return removed

    def close(self) -> None:
        self.redis.close()

