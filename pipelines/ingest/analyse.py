"""Decoding and analysis of Kafka records on the workers: a batch of messages in, the storage tables and the
dead letters out, packed as one row of Arrow IPC streams (so Ray can move or merge blocks without separating a
batch's tables). Used by both readers of the ingest job: Ray Data's `read_kafka` (read.py) and the follow mode's
long-lived consumers (readers.py); `unpack` opens the rows again on the driver for the writer (write.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.codec import DecodeError, decode_test, keystroke_errors
from app.kafka import DeadLetter
from app.schemas import TypingTest
from app.tables import TestTables, build_tables

# At most this many messages are analysed at once: per-call costs vanish, memory stays bounded (≈ 550 k
# keystrokes, ≈ 40 MB of rows). A partition's messages of one pass come as one block; larger ones are sliced.
BATCH_MESSAGES = 4096

# What a worker returns for one input batch: one row holding each output table as an Arrow IPC stream
# (one row, so Ray can split or merge blocks without separating a batch's tables).
_PARTS = ("keystrokes", "keys", "pairs", "confusions", "results", "dead")
# `oldest_ms`: the earliest Kafka append time of the batch's messages (processing latency is measured from it).
_PART_SCHEMA = pa.schema(
    [
        *((name, pa.large_binary()) for name in _PARTS),
        ("duplicates", pa.int64()),
        ("dropped_deleted", pa.int64()),  # messages of deleted users (tombstones), dropped unstored
        ("oldest_ms", pa.int64()),
    ]
)
_DEAD_SCHEMA = pa.schema(
    [
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("reason", pa.string()),
    ]
)


def _to_ipc(table: pa.Table) -> pa.Array:
    """The table as an Arrow IPC stream in a one-value binary array, written once into a buffer of the right
    size and wrapped without a copy (a growing stream and Python bytes cost 10× more on batches of 30 MB)."""
    sizer = pa.MockOutputStream()
    with pa.ipc.new_stream(sizer, table.schema) as writer:
        writer.write_table(table)
    data = pa.allocate_buffer(sizer.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(data), table.schema) as writer:
        writer.write_table(table)
    offsets = pa.py_buffer(np.array([0, data.size], dtype=np.int64))
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, data])


def _from_ipc(data: pa.Buffer) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _analysable(tests: list[TypingTest], origin: list[int]) -> tuple[list[TypingTest], list[int], dict[int, str]]:
    """The tests that analyse without error; a test that makes the analytics fail is singled out (by bisection,
    so a healthy batch costs one call) and returned with the reason, to be dead-lettered instead of failing
    the batch and blocking its partition."""
    try:
        build_tables(tests, np.zeros(len(tests), np.int64), np.zeros(len(tests), np.int64))
        return tests, origin, {}
    except Exception as exc:  # a poison test: find it rather than fail every test beside it
        if len(tests) == 1:
            return [], [], {origin[0]: f"analysis failed: {type(exc).__name__}: {exc}"}
    middle = len(tests) // 2
    left = _analysable(tests[:middle], origin[:middle])
    right = _analysable(tests[middle:], origin[middle:])
    return left[0] + right[0], left[1] + right[1], {**left[2], **right[2]}


def _decode_all(
    values: list[bytes | None], max_keystrokes: int, max_message_bytes: int
) -> tuple[list[tuple[int, TypingTest]], dict[int, str]]:
    """(index, test) of every message that decodes to a valid test, and index → reason for the others."""
    decoded: list[tuple[int, TypingTest]] = []
    reasons: dict[int, str] = {}
    for i, value in enumerate(values):
        try:
            if not value:
                raise DecodeError("empty message")
            if len(value) > max_message_bytes:
                raise DecodeError(f"message of {len(value)} bytes exceeds the limit of {max_message_bytes}")
            decoded.append((i, decode_test(value, max_keystrokes, check_keystrokes=False)))
        except DecodeError as exc:
            reasons[i] = str(exc)
    for j, reason in keystroke_errors([test for _, test in decoded]).items():
        reasons[decoded[j][0]] = reason
    return decoded, reasons


def deleted_before(
    decoded: list[tuple[int, TypingTest]], stamps: list[int | None] | None, tombstones: Mapping[int, int]
) -> set[int]:
    """The indices of the decoded messages that belong to a deleted user and were timestamped (Kafka time, ms) at
    or before the end of that user's deletion; a message without a timestamp counts as before."""
    if not tombstones:
        return set()
    dropped = set()
    for i, test in decoded:
        deleted_at = tombstones.get(test.user_id)
        if deleted_at is not None:
            stamp = stamps[i] if stamps is not None else None
            if stamp is None or stamp <= deleted_at:
                dropped.add(i)
    return dropped


def analyse_messages(
    messages: pa.Table,
    max_keystrokes: int = 20_000,
    max_message_bytes: int = 4 << 20,
    tombstones: Mapping[int, int] | None = None,
) -> pa.Table:
    """Decode and analyse a batch of Kafka records; returns the storage tables and dead letters as IPC parts.
    Messages of users in `tombstones` (user id → end of their deletion, epoch ms) timestamped before it are dropped,
    valid or not, and counted."""
    values = messages.column("value").to_pylist()
    keys = messages.column("key").to_pylist()
    partitions = messages.column("partition").to_numpy()
    offsets = messages.column("offset").to_numpy()
    tests: list[TypingTest] = []
    origin: list[int] = []
    decoded, reasons = _decode_all(values, max_keystrokes, max_message_bytes)
    if tombstones:
        times = messages.column("timestamp").to_pylist() if "timestamp" in messages.column_names else None
        dropped = deleted_before(decoded, times, tombstones)
    else:
        dropped = set()
    for i in dropped:
        reasons.pop(i, None)  # a deleted user's message is not kept, not even as a dead letter
    met: set[tuple[int, str]] = set()
    duplicates = 0
    for i, test in decoded:
        if i in reasons or i in dropped:
            continue
        # A re-sent test (a client retry, a producer retry) keeps its first copy: one batch's tables must never
        # hold two copies of a test (write_tables stores each test's rows once per table).
        if (test.user_id, test.test_id) in met:
            duplicates += 1
            continue
        met.add((test.user_id, test.test_id))
        tests.append(test)
        origin.append(i)
    try:
        tables = build_tables(tests, partitions[np.array(origin, dtype=np.int64)], offsets[origin])
    except Exception:
        tests, origin, failed = _analysable(tests, origin)
        reasons.update(failed)
        tables = build_tables(tests, partitions[np.array(origin, dtype=np.int64)], offsets[origin])
    dead_rows = sorted(reasons)
    dead = pa.table(
        {
            "partition": pa.array([int(partitions[i]) for i in dead_rows], pa.int32()),
            "offset": pa.array([int(offsets[i]) for i in dead_rows], pa.int64()),
            "key": pa.array([keys[i] for i in dead_rows], pa.binary()),
            "value": pa.array([values[i] or b"" for i in dead_rows], pa.binary()),
            "reason": pa.array([reasons[i] for i in dead_rows], pa.string()),
        },
        schema=_DEAD_SCHEMA,
    )
    parts = (*(getattr(tables, name) for name in _PARTS[:-1]), dead)
    stamps = messages.column("timestamp") if "timestamp" in messages.column_names else None
    oldest = pc.min(stamps).as_py() if stamps is not None and len(stamps) else None
    return pa.table(
        {
            **{name: _to_ipc(t) for name, t in zip(_PARTS, parts)},
            "duplicates": [duplicates],
            "dropped_deleted": [len(dropped)],
            "oldest_ms": [oldest],
        },
        schema=_PART_SCHEMA,
    )


def analyse_read_block(
    messages: pa.Table,
    max_keystrokes: int = 20_000,
    max_message_bytes: int = 4 << 20,
    tombstones: Mapping[int, int] | None = None,
) -> Iterator[pa.Table]:
    """`analyse_messages` over a block that Ray Data read (messages of one partition) in slices of
    `BATCH_MESSAGES`, so a large backlog never becomes one huge batch."""
    for start in range(0, messages.num_rows, BATCH_MESSAGES):
        yield analyse_messages(messages.slice(start, BATCH_MESSAGES), max_keystrokes, max_message_bytes, tombstones)


def unpack(batch: pa.Table) -> tuple[list[TestTables], list[DeadLetter], int, int, int | None]:
    """A batch of analysed rows back as (tables per row, dead letters, duplicates, messages of deleted users
    dropped, oldest Kafka time in ms)."""
    tables: list[TestTables] = []
    dead: list[DeadLetter] = []
    for i in range(batch.num_rows):
        # Buffers over the block's memory: reading the tables copies nothing.
        group = {name: _from_ipc(batch.column(name)[i].as_buffer()) for name in _PARTS}
        tables.append(TestTables(*(group[name] for name in _PARTS[:-1])))
        for letter in group["dead"].to_pylist():
            dead.append(
                DeadLetter(letter["partition"], letter["offset"], letter["key"], letter["value"], letter["reason"])
            )
    stamps = [v for v in batch.column("oldest_ms").to_pylist() if v is not None]
    duplicates, dropped = (sum(batch.column(name).to_pylist()) for name in ("duplicates", "dropped_deleted"))
    return tables, dead, duplicates, dropped, min(stamps, default=None)
