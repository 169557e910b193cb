"""The cache of written practice texts, per signature: Redis for the hot set, ClickHouse `practice_texts` behind it,
and the queues of signatures that need texts written.

- `keyscope:practice:texts:{signature}`: a hash, text id -> the text's JSON, expiring HOT_TTL_S after its last
  write; a signature ClickHouse has nothing for is remembered as empty for EMPTY_TTL_S, so misses cost Redis only.
- `keyscope:practice:wanted`: signatures a request missed (sorted set, by first miss). The practice deployment
  writes texts for these in the background (serve/practice.py), and so does the pre-generation job.
- `keyscope:practice:writing:{signature}`: a claim (SET NX with an expiry) held by whoever writes the signature's
  texts now, the practice deployment's background writer or the pre-generation job, so they never write the same
  signature at once.
- `keyscope:practice:changed`: signatures typists moved to when their insights were refreshed after an ingest pass
  (pipelines/insights.py); the pre-generation job (pipelines/practice.py) writes texts for them.

Nothing here is about a person: a signature stands for a kind of typist. What was served to whom is served.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import redis
from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.config import Settings

TEXTS_PREFIX = "keyscope:practice:texts:"
WANTED_KEY = "keyscope:practice:wanted"
CHANGED_KEY = "keyscope:practice:changed"
CLAIM_PREFIX = "keyscope:practice:writing:"  # + signature: who writes it now (one writer per signature at a time)
EMPTY_FIELD = "_empty"
HOT_TTL_S = 7 * 24 * 3600
EMPTY_TTL_S = 30
MAX_TEXTS = 64  # per signature read from ClickHouse into the hot set, best first
MAX_QUEUED = 100_000  # per queue; beyond it the oldest entries are dropped (the daily job covers their typists)
COLUMNS = (
    "signature", "text_id", "text", "targets", "prompt_words", "score", "score_value", "generator", "model", "seed",
    "created_at",
)


def claim_key(signature: str) -> str:
    return CLAIM_PREFIX + signature


def text_id(signature: str, text: str) -> str:
    return hashlib.blake2b(f"{signature}\n{text}".encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class PracticeText:
    """A written practice text for one signature."""

    signature: str
    text: str
    targets: tuple[str, ...]
    prompt_words: tuple[str, ...]
    score: dict[str, Any]
    model: str
    seed: int
    generator: str = "lm"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def text_id(self) -> str:
        return text_id(self.signature, self.text)

    @property
    def score_value(self) -> float:
        return float(self.score.get("value", 0.0))

    def public(self) -> dict[str, Any]:
        """The text as the API shows it."""
        return {
            "id": self.text_id,
            "text": self.text,
            "targets": list(self.targets),
            "generator": self.generator,
            "score": self.score,
            "created_at": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }

    def to_json(self) -> str:
        data = asdict(self)
        data["created_at"] = self.created_at.astimezone(UTC).isoformat()
        return json.dumps(data, separators=(",", ":"))

    @staticmethod
    def from_json(raw: str | bytes) -> PracticeText:
        data = json.loads(raw)
        return PracticeText(
            signature=data["signature"], text=data["text"], targets=tuple(data["targets"]),
            prompt_words=tuple(data["prompt_words"]), score=data["score"], model=data["model"], seed=int(data["seed"]),
            generator=data.get("generator", "lm"), created_at=datetime.fromisoformat(data["created_at"]),
        )


def ranked(texts: Iterable[PracticeText]) -> list[PracticeText]:
    """Best first; ties by id, so every reader orders a signature's texts the same way."""
    return sorted(texts, key=lambda t: (-t.score_value, t.text_id))


class TextCache:
    """Reads and writes practice texts and the generation queues. Thread-safe (one Redis pool, a ClickHouse client
    per call site's thread is the caller's business: pass `client` or let it open one)."""

    def __init__(self, settings: Settings, *, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._clickhouse: Client | None = None

    def clickhouse(self) -> Client:
        if self._clickhouse is None:
            # No session: the deployment's worker threads query through one client at once, and ClickHouse refuses
            # concurrent queries within one session.
            self._clickhouse = clickhouse_client(self.settings.clickhouse_url, autogenerate_session_id=False)
        return self._clickhouse

    def close(self) -> None:
        if self._clickhouse is not None:
            self._clickhouse.close()
        self.redis.close()

    # -- texts --------------------------------------------------------------------------------------------------

    def texts(self, signature: str) -> list[PracticeText]:
        """A signature's texts, best first: the hot set, else ClickHouse (then kept hot); [] when there are none."""
        key = TEXTS_PREFIX + signature
        cached = self.redis.hgetall(key)
        if cached:
            return ranked(PracticeText.from_json(v) for k, v in cached.items() if k != EMPTY_FIELD.encode())
        stored = self.stored(signature)
        pipe = self.redis.pipeline(transaction=False)
        if stored:
            pipe.hset(key, mapping={t.text_id: t.to_json() for t in stored})
            pipe.expire(key, HOT_TTL_S)
        else:
            pipe.hset(key, EMPTY_FIELD, "1")
            pipe.expire(key, EMPTY_TTL_S)
        pipe.execute()
        return stored

    def stored(self, signature: str) -> list[PracticeText]:
        """A signature's texts in ClickHouse, best first (at most MAX_TEXTS)."""
        result = self.clickhouse().query(
            f"SELECT {', '.join(COLUMNS)} FROM practice_texts FINAL WHERE signature = {{signature:String}} "
            f"ORDER BY score_value DESC, text_id LIMIT {MAX_TEXTS}",
            parameters={"signature": signature},
        )
        return ranked(_from_row(dict(zip(COLUMNS, row))) for row in result.result_rows)

    def put(self, texts: Sequence[PracticeText]) -> None:
        """Store texts: ClickHouse first (what the hot set is refilled from), then the hot set."""
        if not texts:
            return
        rows = pa.table(
            {
                "signature": [t.signature for t in texts],
                "text_id": [t.text_id for t in texts],
                "text": [t.text for t in texts],
                "targets": [list(t.targets) for t in texts],
                "prompt_words": [list(t.prompt_words) for t in texts],
                "score": [json.dumps(t.score, separators=(",", ":")) for t in texts],
                "score_value": pa.array([t.score_value for t in texts], pa.float32()),
                "generator": [t.generator for t in texts],
                "model": [t.model for t in texts],
                "seed": pa.array([t.seed for t in texts], pa.uint64()),
                "created_at": pa.array([t.created_at for t in texts], pa.timestamp("ms", tz="UTC")),
            }
        )
        self.clickhouse().insert_arrow("practice_texts", rows)
        pipe = self.redis.pipeline(transaction=False)
        for signature in {t.signature for t in texts}:
            key = TEXTS_PREFIX + signature
            pipe.hdel(key, EMPTY_FIELD)
            pipe.hset(key, mapping={t.text_id: t.to_json() for t in texts if t.signature == signature})
            pipe.expire(key, HOT_TTL_S)
        pipe.execute()

    def counts(self, signatures: Sequence[str]) -> dict[str, int]:
        """How many texts ClickHouse holds per signature (0 for those it has none of)."""
        found = {s: 0 for s in signatures}
        if signatures:
            result = self.clickhouse().query(
                "SELECT signature, uniqExact(text_id) FROM practice_texts "
                "WHERE signature IN {signatures:Array(String)} GROUP BY signature",
                parameters={"signatures": list(signatures)},
            )
            found.update({signature: int(n) for signature, n in result.result_rows})
        return found

    # -- queues -------------------------------------------------------------------------------------------------

    def want(self, signature: str) -> None:
        """A request missed: queue the signature for the deployment's background writer (and the job)."""
        self._queue(WANTED_KEY, [signature])

    def changed(self, signatures: Iterable[str]) -> None:
        """Typists moved to these signatures: queue them for the pre-generation job."""
        self._queue(CHANGED_KEY, list(signatures))

    def _queue(self, key: str, signatures: list[str]) -> None:
        if not signatures:
            return
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {s: now for s in signatures}, nx=True)
        pipe.zremrangebyrank(key, 0, -MAX_QUEUED - 1)  # the newest MAX_QUEUED stay
        pipe.execute()

    def queued(self, key: str = WANTED_KEY, limit: int = 100) -> list[str]:
        """The oldest queued signatures of a queue (left queued until `done`)."""
        return [s.decode() for s in self.redis.zrange(key, 0, limit - 1)]

    def done(self, signatures: Iterable[str]) -> None:
        """Signatures with texts written: off both queues."""
        batch = list(signatures)
        if batch:
            self.redis.zrem(WANTED_KEY, *batch)
            self.redis.zrem(CHANGED_KEY, *batch)


def _from_row(row: dict[str, Any]) -> PracticeText:
    created = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return PracticeText(
        signature=row["signature"], text=row["text"], targets=tuple(row["targets"]),
        prompt_words=tuple(row["prompt_words"]), score=json.loads(row["score"]), model=row["model"],
        seed=int(row["seed"]), generator=row["generator"], created_at=created,
    )
