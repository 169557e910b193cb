"""Everything keyscope holds about one user, in one place: export it, count it, delete it (GDPR; issue #6).

Every store that keeps data about a user registers here, as a factory `Settings -> UserDataStore`:

    name                                   the store's folder in an export archive, its key in counts
    export(user_id) -> Iterator[(path, bytes)]   the user's data as files (paths relative to the store's folder)
    count(user_id) -> int                   how many records it holds about the user
    delete(user_id) -> int                  remove them all; how many records were removed

and optionally `close()`, and `count_parts(user_id)` / `delete_parts(user_id)` returning counts per part (a table, a
key kind) for the manifest and the deletion report. Built in, in the order they are deleted:

- `clickhouse`: every table with a `user_id` column, discovered in `system.columns` each time (views excluded, and
  `user_tombstones`), so a table added by a migration is covered without touching this file: raw keystrokes, test
  results, per-test key / pair stats and confusions, `user_insights`, … (an AggregatingMergeTree table is exported
  with its states finalized). Rows are removed with
  `ALTER TABLE … DELETE … SETTINGS mutations_sync = 2` (rewritten parts, not a lightweight delete mask; see
  `ClickHouseStore`).
- `kafka`: the user's messages on the keystroke topic that the ingest job has not stored yet. Kafka cannot delete
  single messages: `delete` reports them, the tombstone makes the ingest job drop them, and the topic's retention
  removes them from the broker.
- `practice` (app/practice/served.py): the ids of the practice texts last served to the user and their current
  practice signature, in Redis. The texts themselves are per signature, not per person (`practice_texts`).
- `features` (derived from the stored tests, so deleted after every source): the typist's online features
  `keyscope:features:{id}` (app/features/online.py `FeatureStore`), exported as `features.json`.
- `redis` (a cache, so deleted after every source): the cached reads `keyscope:user:{id}`, their invalidation
  generation `keyscope:user:{id}:gen`, the rate-limit bucket `keyscope:rl:user:{id}` and the live sessions in their
  resume window `keyscope:user:{id}:live`.

Later parts register their own with `register_store(factory)` (`cache=True` for anything refilled from the other
stores): the cold Parquet archive (app/cold.py `ColdArchive`). The experiment exposures (app/experiments/) have a
store of their own here, `experiments` (`ExposureStore`): their table `experiment_exposures` is exported with the
experiments' definitions beside each row, so the `clickhouse` store leaves it out (`OWN_STORE_TABLES`).

`export_user` writes one zip archive: a folder per store and `manifest.json` with the records per store and part.
`delete_user` records a tombstone (table `user_tombstones`), deletes the user from every store, and records the
tombstone again with the time the deletion finished; the ingest job then drops the user's messages timestamped
before that time (a user who comes back later starts afresh) and deletes again what a pass that raced the deletion
wrote (pipelines/ingest/, README "Privacy: export and deletion").
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clickhouse_connect.driver.client import Client

from app.cache import user_cache_key, user_generation_key
from app.clickhouse.client import clickhouse_client
from app.config import Settings
from app.identity import check_user_id
from app.live.parking import live_sessions_key
from app.ratelimit import rate_limit_key

log = logging.getLogger("keyscope.user_data")

EXPORT_FORMAT = "keyscope-user-export/1"


class UserDataError(RuntimeError):
    """A store cannot export or delete a user's data (a table keyscope does not know how to erase from, …)."""


@runtime_checkable
class UserDataStore(Protocol):
    """Where keyscope keeps data about users; see the module docstring."""

    name: str

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]: ...

    def count(self, user_id: int) -> int: ...

    def delete(self, user_id: int) -> int: ...


StoreFactory = Callable[[Settings], UserDataStore]

# Sources first, caches last: a cache is refilled from the sources, so it is emptied after them.
_SOURCES: list[StoreFactory] = []
_CACHES: list[StoreFactory] = []


def register_store(factory: StoreFactory, *, cache: bool = False) -> StoreFactory:
    """Add a store to every export and deletion (idempotent; usable as a decorator). `cache=True` for a store
    refilled from the others, which is emptied after them."""
    if factory not in _SOURCES and factory not in _CACHES:
        (_CACHES if cache else _SOURCES).append(factory)
    return factory


def store_factories() -> list[StoreFactory]:
    """Every registered factory, in deletion order."""
    return [*_SOURCES, *_CACHES]


def open_stores(settings: Settings, names: Sequence[str] | None = None) -> list[UserDataStore]:
    """An instance of every registered store (or of those named), in deletion order."""
    stores = [factory(settings) for factory in store_factories()]
    seen = [store.name for store in stores]
    if len(set(seen)) != len(seen):
        close_stores(stores)
        raise UserDataError(f"two user-data stores share a name: {seen}")
    if names is not None:
        unknown = set(names) - set(seen)
        if unknown:
            close_stores(stores)
            raise UserDataError(f"no user-data store named {sorted(unknown)}")
        keep = [store for store in stores if store.name in names]
        close_stores([store for store in stores if store.name not in names])
        stores = keep
    return stores


def close_stores(stores: Iterable[UserDataStore]) -> None:
    for store in stores:
        close = getattr(store, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing must not hide the result or the original error
                log.warning("closing user-data store %s failed: %r", store.name, exc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- ClickHouse -------------------------------------------------------------------------------------------------

# Tables with a user_id column that are not the user's data: the deletion records themselves.
EXCLUDED_TABLES = frozenset({"user_tombstones"})
# User tables that a registered store of their own exports and deletes; the `clickhouse` store leaves them out so
# they are not exported twice.
OWN_STORE_TABLES = frozenset({"experiment_exposures"})
# Engines that store nothing of their own (their data lives in the tables they feed or read).
_STORELESS_ENGINES = frozenset({"View", "MaterializedView", "LiveView", "WindowView", "Null", "Dictionary"})
# MergeTree engines whose rows are merged (replaced, aggregated, …): read with FINAL so counts are exact.
_MERGING = re.compile(r"(Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing|Graphite|Coalescing)MergeTree$")
_DISTRIBUTED_ARGS = re.compile(r"Distributed\(\s*'?([^',\s)]+)'?\s*,\s*'?([^',\s)]+)'?\s*,\s*'?([^',\s)]+)'?")
# Export files are cut at a line boundary once this big, so no table is ever held whole in memory.
PART_BYTES = 32 << 20
# JSON the way a person reads it: numbers as numbers, times as ISO-8601, NaN as null.
_JSON_SETTINGS = {"output_format_json_quote_64bit_integers": 0, "date_time_output_format": "iso"}


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True)
class UserTable:
    """One table holding rows about users, and how to read and erase them."""

    name: str  # read through this table (a Distributed table on a cluster)
    engine: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    final: bool  # rows are merged: read with FINAL
    delete_from: str  # rows are deleted here (a Distributed table's local table)
    on_cluster: str | None = None

    def _select_list(self) -> str:
        # Aggregate states are opaque bytes: export their values.
        return ", ".join(
            f"finalizeAggregation({quote_identifier(n)}) AS {quote_identifier(n)}"
            if t.startswith("AggregateFunction(")
            else quote_identifier(n)
            for n, t in self.columns
        )

    def _from(self) -> str:
        return quote_identifier(self.name) + (" FINAL" if self.final else "")

    def export_sql(self, user_id: int) -> str:
        return f"SELECT {self._select_list()} FROM {self._from()} WHERE user_id = {check_user_id(user_id)}"

    def count_sql(self, user_id: int) -> str:
        return f"SELECT count() FROM {self._from()} WHERE user_id = {check_user_id(user_id)}"

    def delete_sql(self, user_id: int) -> str:
        cluster = f" ON CLUSTER '{self.on_cluster}'" if self.on_cluster else ""
        table = quote_identifier(self.delete_from)
        return (
            f"ALTER TABLE {table}{cluster} DELETE WHERE user_id = {check_user_id(user_id)} SETTINGS mutations_sync = 2"
        )


def plan_user_tables(
    tables: Iterable[tuple[str, str, str]], columns: Iterable[tuple[str, str, str]]
) -> list[UserTable]:
    """The user tables among `tables` (name, engine, engine_full) with `columns` (table, name, type; in table
    order), as `system.tables` and `system.columns` describe them. A Distributed table is read through and its
    local table deleted from (ON CLUSTER); the local table is not listed again. A table of an engine keyscope cannot
    delete from is an error, never skipped: a store nobody erases would keep the user's data."""
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in columns:
        by_table.setdefault(table, []).append((name, type_))
    engines = {name: (engine, full) for name, engine, full in tables}
    behind_distributed: dict[str, tuple[str, str]] = {}  # local table -> (distributed table, cluster)
    for name, (engine, full) in engines.items():
        if engine == "Distributed":
            match = _DISTRIBUTED_ARGS.search(full)
            if match is None:
                raise UserDataError(f"cannot read the cluster and local table of {name}: {full!r}")
            behind_distributed[match.group(3)] = (name, match.group(1))
    planned = []
    for name, (engine, _) in sorted(engines.items()):
        if name in EXCLUDED_TABLES or name.removesuffix("_local") in EXCLUDED_TABLES or engine in _STORELESS_ENGINES:
            continue
        if "user_id" not in {c for c, _ in by_table.get(name, [])} or name in behind_distributed:
            continue
        if engine == "Distributed":
            local = next(local for local, (dist, _) in behind_distributed.items() if dist == name)
            cluster = behind_distributed[local][1]
            local_engine = engines.get(local, ("", ""))[0]
            planned.append(
                UserTable(name, engine, tuple(by_table[name]), bool(_MERGING.search(local_engine)), local, cluster)
            )
        elif engine.endswith("MergeTree"):
            planned.append(UserTable(name, engine, tuple(by_table[name]), bool(_MERGING.search(engine)), name))
        else:
            raise UserDataError(
                f"table {name} (engine {engine}) has a user_id column, but keyscope cannot delete from that engine: "
                "use a MergeTree table, or register a store for it in app/user_data.py"
            )
    return planned


def discover_user_tables(client: Client) -> list[UserTable]:
    """Every table of the current database with a `user_id` column (views and tombstones excluded)."""
    names = client.query(
        "SELECT DISTINCT table FROM system.columns WHERE database = currentDatabase() AND name = 'user_id'"
    ).result_rows
    wanted = sorted({str(row[0]) for row in names})
    if not wanted:
        return []
    tables = client.query(
        "SELECT name, engine, engine_full FROM system.tables WHERE database = currentDatabase() "
        "AND name IN {t:Array(String)}",
        parameters={"t": wanted},
    ).result_rows
    columns = client.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table IN {t:Array(String)} ORDER BY table, position",
        parameters={"t": wanted},
    ).result_rows
    return plan_user_tables(
        [(str(n), str(e), str(f)) for n, e, f in tables], [(str(t), str(n), str(ty)) for t, n, ty in columns]
    )


def split_lines(chunks: Iterable[bytes], limit: int = PART_BYTES) -> Iterator[bytes]:
    """Newline-terminated records from a byte stream, regrouped into parts of about `limit` bytes, cut at a line
    end (a single longer line is a part of its own). Yields at least one part, empty when the stream is."""
    buffer = bytearray()
    yielded = False
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= limit:
            cut = buffer.rfind(b"\n", 0, limit) + 1 or buffer.find(b"\n", limit) + 1
            if cut == 0:
                break  # one line longer than limit, not finished yet
            yield bytes(buffer[:cut])
            del buffer[:cut]
            yielded = True
    if buffer or not yielded:
        yield bytes(buffer)


def part_name(base: str, index: int, extension: str = "jsonl") -> str:
    """`base.jsonl` for the first part of a file, `base.0002.jsonl` for the next ones."""
    return f"{base}.{extension}" if index == 1 else f"{base}.{index:04d}.{extension}"


class ClickHouseStore:
    """Every ClickHouse table with a `user_id` column, discovered at each call.

    Export: one JSON Lines file per table (`<table>.jsonl`, cut into `<table>.0002.jsonl`, … beyond 32 MiB),
    formatted by ClickHouse itself, read with FINAL where rows merge, aggregate states finalized. Delete: one
    `ALTER TABLE … DELETE WHERE user_id = …` mutation per table with `mutations_sync = 2` (returns once every replica
    rewrote its parts). A mutation rewrites the parts that hold the user (user_id leads every sorting key, so other
    parts are skipped) and the old parts are removed after `old_parts_lifetime` (8 minutes by default); a
    lightweight `DELETE FROM` would only mask the rows until a merge. Materialized views fire on inserts only, so
    the aggregates they feed are deleted as tables of their own. On a cluster the Distributed table is read and
    its local table mutated ON CLUSTER.
    """

    name = "clickhouse"

    def __init__(self, settings: Settings) -> None:
        self._url = settings.clickhouse_url
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = clickhouse_client(self._url)
        return self._client

    def tables(self) -> list[UserTable]:
        return [table for table in discover_user_tables(self.client()) if table.name not in OWN_STORE_TABLES]

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        for table in self.tables():
            stream = self.client().raw_stream(table.export_sql(user_id), settings=_JSON_SETTINGS, fmt="JSONEachRow")
            try:
                for index, part in enumerate(split_lines(stream), start=1):
                    yield part_name(table.name, index), part
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def count_parts(self, user_id: int) -> dict[str, int]:
        client = self.client()
        return {table.name: int(client.query(table.count_sql(user_id)).result_rows[0][0]) for table in self.tables()}

    def count(self, user_id: int) -> int:
        return sum(self.count_parts(user_id).values())

    def delete_parts(self, user_id: int) -> dict[str, int]:
        client = self.client()
        deleted = {}
        for table in self.tables():
            deleted[table.name] = int(client.query(table.count_sql(user_id)).result_rows[0][0])
            client.command(table.delete_sql(user_id))
        return deleted

    def delete(self, user_id: int) -> int:
        return sum(self.delete_parts(user_id).values())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --- Experiment exposures --------------------------------------------------------------------------------------

_EXPOSURES_SQL = """
SELECT x.experiment AS experiment, e.factor AS factor, x.first_variant AS variant,
       e.variant_values[indexOf(e.variant_names, x.first_variant)] AS value, x.first_exposed_at AS first_exposed_at
FROM (
    SELECT experiment, argMin(variant, exposed_at) AS first_variant, min(exposed_at) AS first_exposed_at
    FROM experiment_exposures WHERE user_id = {u:UInt64} GROUP BY experiment
) AS x
LEFT JOIN (SELECT name, factor, variant_names, variant_values FROM experiments FINAL) AS e ON e.name = x.experiment
ORDER BY first_exposed_at, experiment
"""


class ExposureStore:
    """The user's experiment exposures (migration 0017, app/experiments/), as the `experiments` store.

    Exported as `exposures.jsonl`: one line per experiment the user was exposed to, with its factor, the user's
    variant, the value it set and the first exposure time. Deleted like every ClickHouse table of the user's
    (`UserTable.delete_sql`: a synchronous mutation; on a cluster the local table ON CLUSTER). An exposure still
    buffered in a serving process when the deletion runs is dropped when written: app/experiments/store.py
    `write_exposures` checks the tombstones."""

    name = "experiments"
    table = "experiment_exposures"

    def __init__(self, settings: Settings) -> None:
        self._store = ClickHouseStore(settings)

    def _table(self) -> UserTable:
        for table in discover_user_tables(self._store.client()):
            if table.name == self.table:
                return table
        raise UserDataError(f"table {self.table} is missing: apply the ClickHouse migrations (0017)")

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        stream = self._store.client().raw_stream(
            _EXPOSURES_SQL, parameters={"u": check_user_id(user_id)}, settings=_JSON_SETTINGS, fmt="JSONEachRow"
        )
        try:
            yield "exposures.jsonl", b"".join(stream)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def count(self, user_id: int) -> int:
        return int(
            self._store.client().query(
                f"SELECT uniqExact(experiment) FROM {self.table} WHERE user_id = {{u:UInt64}}",
                parameters={"u": check_user_id(user_id)},
            ).result_rows[0][0]
        )

    def delete(self, user_id: int) -> int:
        removed = self.count(user_id)
        self._store.client().command(self._table().delete_sql(user_id))
        return removed

    def close(self) -> None:
        self._store.close()


# --- Kafka ------------------------------------------------------------------------------------------------------


def _json_line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _submission(test: Any) -> dict[str, Any]:
    """A decoded test as the JSON it was submitted as (README "Submission")."""
    from app.schemas import format_started_at

    ups = test.up_ms.tolist()
    return {
        "user_id": test.user_id,
        "test_id": test.test_id,
        "started_at": format_started_at(test.started_at_ms),
        "text": test.text,
        "layout": test.layout,
        "language": test.language,
        "keystrokes": [
            {"key": key, "down": int(down), "up": None if up < 0 else int(up)}
            for key, down, up in zip(test.keys(), test.down_ms.tolist(), ups)
        ],
    }


@dataclass(frozen=True)
class PendingMessage:
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


class KafkaPendingStore:
    """The user's messages on the keystroke topic that the ingest job has not stored yet: those on the user's
    partition (messages are keyed by user) from the job's stored offset to the end. Exported as the submissions
    they hold. They cannot be deleted one by one: `delete` counts them, the tombstone `delete_user` records makes the
    ingest job drop them, and the topic's retention removes them from the broker."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def pending(self, user_id: int) -> list[PendingMessage]:
        return asyncio.run(self._pending(check_user_id(user_id)))

    async def _pending(self, user_id: int) -> list[PendingMessage]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.partitioner import DefaultPartitioner

        from app.clickhouse.store import load_offsets
        from app.kafka import end_offsets, user_key

        settings, topic, key = self._settings, self._settings.keystroke_topic, user_key(user_id)
        ends = await end_offsets(settings, topic)
        partitions = sorted(ends)
        partition = DefaultPartitioner()(key, partitions, partitions)  # the producer's partitioner (murmur2)
        client = await asyncio.to_thread(clickhouse_client, settings.clickhouse_url)
        try:
            stored = await asyncio.to_thread(load_offsets, client, settings.consumer_group, topic)
        finally:
            client.close()
        begin, end = stored.get(partition, 0), ends[partition]
        if begin >= end:
            return []
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        found: list[PendingMessage] = []
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, begin)
            position = begin
            while position < end:
                batch = await consumer.getmany(tp, timeout_ms=5000, max_records=2000)
                records = batch.get(tp, [])
                if not records:
                    # Compacted or deleted offsets are skipped; an empty answer before the end means the broker
                    # has nothing more to give right now.
                    position = await consumer.position(tp)
                    if position < end:
                        raise UserDataError(f"Kafka returned nothing at {topic}:{partition}@{position} (end {end})")
                    break
                for record in records:
                    if record.offset >= end:
                        break
                    if record.key == key:
                        found.append(
                            PendingMessage(partition, record.offset, int(record.timestamp), record.value or b"")
                        )
                position = records[-1].offset + 1
        finally:
            await consumer.stop()
        return found

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        from app.codec import DecodeError, decode_test

        lines = []
        for message in self.pending(user_id):
            entry: dict[str, Any] = {
                "partition": message.partition,
                "offset": message.offset,
                "timestamp": _iso(datetime.fromtimestamp(message.timestamp_ms / 1000, UTC)),
            }
            try:
                entry["test"] = _submission(decode_test(message.value, self._settings.max_keystrokes))
            except DecodeError as exc:
                entry["undecodable"] = {"reason": str(exc), "base64": base64.b64encode(message.value).decode()}
            lines.append(_json_line(entry))
        yield "pending.jsonl", b"".join(lines)

    def count(self, user_id: int) -> int:
        return len(self.pending(user_id))

    def delete(self, user_id: int) -> int:
        return self.count(user_id)


# --- Redis ------------------------------------------------------------------------------------------------------


def user_redis_keys(user_id: int) -> list[str]:
    """Every Redis key keyscope keeps for a user: cached reads, their invalidation generation, the rate-limit
    bucket of the user's token (app/ratelimit.py names it after the principal, `user:{id}`), the live sessions in
    their resume window (app/live/parking.py). A module that adds a per-user key adds it here."""
    check_user_id(user_id)
    return [
        user_cache_key(user_id), user_generation_key(user_id), rate_limit_key(f"user:{user_id}"),
        live_sessions_key(user_id),
    ]  # fmt: skip


def _redis_value(raw: bytes) -> Any:
    """A stored value for the export: its JSON when it is JSON, its text when it is UTF-8, else base64."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}
    try:
        return json.loads(text)
    except ValueError:
        return text


class RedisStore:
    """The user's Redis keys (`user_redis_keys`). Deleted last, after the sources the cache is refilled from, in one
    DEL: a read that was computing from ClickHouse meanwhile took the old generation and can no longer cache what it
    read (app/cache.py)."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        import redis

        self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        lines = []
        for key in user_redis_keys(user_id):
            kind = self._redis.type(key).decode()
            if kind == "none":
                continue
            if kind == "hash":
                value: Any = {f.decode(errors="replace"): _redis_value(v) for f, v in self._redis.hgetall(key).items()}
            elif kind == "string":
                value = _redis_value(self._redis.get(key) or b"")
            elif kind in ("list", "set", "zset"):
                items = {
                    "list": lambda k: self._redis.lrange(k, 0, -1),
                    "set": lambda k: sorted(self._redis.smembers(k)),
                    "zset": lambda k: [m for m, _ in self._redis.zrange(k, 0, -1, withscores=True)],
                }[kind](key)
                value = [_redis_value(item) for item in items]
            else:
                value = None
            ttl_ms = self._redis.pttl(key)
            lines.append(
                _json_line({"key": key, "type": kind, "ttl_ms": ttl_ms if ttl_ms >= 0 else None, "value": value})
            )
        yield "keys.jsonl", b"".join(lines)

    def count(self, user_id: int) -> int:
        return int(self._redis.exists(*user_redis_keys(user_id)))

    def delete(self, user_id: int) -> int:
        return int(self._redis.delete(*user_redis_keys(user_id)))

    def close(self) -> None:
        self._redis.close()


def _cold_archive(settings: Settings) -> UserDataStore:
    """Keystrokes archived to Parquet (app/cold.py); imported here so the registry is the one place to look."""
    from app.cold import ColdArchive

    return ColdArchive(settings)


def _online_features(settings: Settings) -> UserDataStore:
    """The typist's online features (app/features/online.py), folded by the ingest job from the stored tests."""
    from app.features.online import FeatureStore

    return FeatureStore(settings)


def _practice_records(settings: Settings) -> UserDataStore:
    """Which practice texts were served to the user and their current practice signature (app/practice/served.py)."""
    from app.practice.served import ServedTexts

    return ServedTexts(settings)


register_store(ClickHouseStore)
register_store(KafkaPendingStore)
register_store(ExposureStore)
register_store(_cold_archive)
register_store(_practice_records)
register_store(_online_features, cache=True)
register_store(RedisStore, cache=True)


# --- Tombstones -------------------------------------------------------------------------------------------------


def record_tombstone(client: Client, user_id: int, deleted_at: datetime) -> None:
    """Record that the user's data up to `deleted_at` is deleted (a later time for the same user wins)."""
    client.insert(
        "user_tombstones",
        [[check_user_id(user_id), deleted_at]],
        column_names=["user_id", "deleted_at"],
        # On a cluster the table is Distributed: write through to the shard before returning.
        settings={"insert_distributed_sync": 1},
    )


def load_tombstones(client: Client, user_ids: Iterable[int] | None = None) -> dict[int, int]:
    """user id -> the time its latest deletion finished (epoch ms), for every deleted user or those given."""
    where, parameters = "", {}
    if user_ids is not None:
        ids = sorted({int(u) for u in user_ids})
        if not ids:
            return {}
        where, parameters = "WHERE user_id IN {u:Array(UInt64)} ", {"u": ids}
    rows = client.query(
        f"SELECT user_id, toUnixTimestamp64Milli(max(deleted_at)) FROM user_tombstones {where}GROUP BY user_id",
        parameters=parameters,
    ).result_rows
    return {int(u): int(t) for u, t in rows}


def tombstoned_since(client: Client, since_ms: int) -> list[int]:
    """The users whose latest deletion finished at or after `since_ms` (epoch ms)."""
    rows = client.query(
        "SELECT user_id FROM user_tombstones GROUP BY user_id "
        "HAVING toUnixTimestamp64Milli(max(deleted_at)) >= {s:Int64} ORDER BY user_id",
        parameters={"s": int(since_ms)},
    ).result_rows
    return [int(row[0]) for row in rows]


# --- Export and deletion ----------------------------------------------------------------------------------------


def _records(path: str, data: bytes) -> int | None:
    """Records in an exported file: lines of a JSON Lines file; None for other formats."""
    if not path.endswith(".jsonl"):
        return None
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _part_of(path: str) -> str:
    """The part a store-relative file belongs to: `keystrokes.0002.jsonl` -> `keystrokes`."""
    return path.split("/", 1)[0].split(".", 1)[0]


def _safe_path(store: str, path: str) -> str:
    if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise UserDataError(f"store {store} exported a file with an unsafe name: {path!r}")
    return f"{store}/{path}"


def _detail(store: UserDataStore, method: str, user_id: int) -> tuple[int, dict[str, int]]:
    parts = getattr(store, f"{method}_parts", None)
    if parts is not None:
        counts = {name: int(n) for name, n in parts(user_id).items()}
        return sum(counts.values()), counts
    return int(getattr(store, method)(user_id)), {}


def export_user(settings: Settings, user_id: int, out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write everything keyscope holds about the user into one zip archive at `out_path` (a folder per store and
    `manifest.json`); returns the manifest. The counts are those of the files written (lines of each JSON Lines
    file), so the manifest describes exactly what the archive holds; a store exporting other formats is counted
    with its `count`."""
    check_user_id(user_id)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "user_id": user_id,
        "exported_at": _iso(datetime.now(UTC)),
        "stores": {},
    }
    stores = open_stores(settings)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for store in stores:
                files: dict[str, dict[str, int | None]] = {}
                parts: dict[str, int] = {}
                for path, data in store.export(user_id):
                    name = _safe_path(store.name, path)
                    archive.writestr(name, data)
                    records = _records(path, data)
                    files[name] = {"bytes": len(data), "records": records}
                    if records is not None:
                        parts[_part_of(path)] = parts.get(_part_of(path), 0) + records
                if files and all(f["records"] is not None for f in files.values()):
                    count = sum(parts.values())
                else:
                    count = int(store.count(user_id))
                manifest["stores"][store.name] = {"count": count, "parts": parts, "files": files}
            manifest["total"] = sum(entry["count"] for entry in manifest["stores"].values())
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        close_stores(stores)
    return manifest


def count_user(settings: Settings, user_id: int) -> dict[str, dict[str, Any]]:
    """Per store, how many records it holds about the user (and per part where the store says)."""
    check_user_id(user_id)
    stores = open_stores(settings)
    try:
        out = {}
        for store in stores:
            total, parts = _detail(store, "count", user_id)
            out[store.name] = {"count": total, "parts": parts}
        return out
    finally:
        close_stores(stores)


def erase_user(settings: Settings, user_id: int, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Delete the user from every store (or those named), sources before caches, without recording a tombstone;
    returns per store the records deleted. The ingest job calls it for a user whose deletion raced a pass."""
    check_user_id(user_id)
    stores = open_stores(settings, names)
    try:
        out = {}
        for store in stores:
            total, parts = _detail(store, "delete", user_id)
            out[store.name] = {"count": total, "parts": parts}
        return out
    finally:
        close_stores(stores)


def delete_user(settings: Settings, user_id: int) -> dict[str, Any]:
    """Remove the user from every registered store and record a tombstone; returns the records deleted per store.

    The tombstone is recorded before anything is deleted (so an ingest pass that starts meanwhile already drops the
    user's messages) and again, with the time the deletion finished, after: every message of the user timestamped
    before that time is dropped by the ingest job, one timestamped later is a new start. Idempotent: running it
    again (after a failure half-way) deletes what is left."""
    check_user_id(user_id)
    client = clickhouse_client(settings.clickhouse_url)
    try:
        record_tombstone(client, user_id, datetime.now(UTC))
        stores = erase_user(settings, user_id)
        finished = datetime.now(UTC)
        record_tombstone(client, user_id, finished)
    finally:
        client.close()
    log.info("deleted user %d: %s", user_id, {name: entry["count"] for name, entry in stores.items()})
    return {
        "user_id": user_id,
        "deleted_at": _iso(finished),
        "total": sum(entry["count"] for entry in stores.values()),
        "stores": stores,
    }
