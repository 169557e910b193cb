"""The resume window: a session whose connection dropped waits in Redis, so the typist's reconnect continues it
on whichever ingress replica it reaches.

Each user's parked sessions live in one hash, `keyscope:user:{id}:live` (field = session id), so a session is only
ever found by the user it belongs to, and deleting the user (app/user_data.py) deletes it. A field parked longer
than `resume_s` ago is never handed out; the hash itself expires `resume_s` after the last park. Claiming is
atomic (HGET and HDEL in one transaction), so two reconnects cannot both continue one session.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.live.session import LiveSession


def live_sessions_key(user_id: int) -> str:
    return f"keyscope:user:{user_id}:live"


class SessionParking:
    """Parked sessions in Redis, for `resume_s` seconds."""

    def __init__(self, redis_url: str, resume_s: float) -> None:
        self._redis = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.resume_s = resume_s

    async def park(self, session: LiveSession) -> None:
        key = live_sessions_key(session.user_id)
        body = orjson.dumps({"parked_at": time.time(), "session": session.to_json()})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, session.session_id, body)
            pipe.expire(key, max(1, int(self.resume_s)))
            await pipe.execute()

    async def claim(self, user_id: int, session_id: str) -> LiveSession | None:
        """The user's parked session `session_id`, taken out of the window; None when there is none (unknown,
        another user's, expired, resumed already)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(live_sessions_key(user_id), session_id)
            pipe.hdel(live_sessions_key(user_id), session_id)
            raw, _ = await pipe.execute()
        if raw is None:
            return None
        parked: dict[str, Any] = orjson.loads(raw)
        if time.time() - parked["parked_at"] > self.resume_s:
            return None
        return LiveSession.from_json(parked["session"])

    async def close(self) -> None:
        await self._redis.aclose()
