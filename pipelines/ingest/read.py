"""Step 3 of a pass, the read: the plan's messages, decoded and analysed where they were read (analyse.py), as
batches for the writer. A backlog goes through a bounded Ray Data `read_kafka` (one read task per partition, fused
with the analysis); in follow mode a small pass goes to the job's long-lived readers (readers.py) instead."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import ray

from app.config import Settings
from pipelines.ingest.analyse import analyse_read_block
from pipelines.ingest.plan import PassPlan
from pipelines.ingest.readers import ReaderPool

# In follow mode, a pass of at most this many messages is read by the job's long-lived readers (readers.py); a
# larger backlog (catching up after downtime) goes through Ray Data.
FOLLOW_READER_MAX_MESSAGES = 20_000


def read_and_analyse(
    settings: Settings, begin: dict[int, int], stop: dict[int, int], tombstones: dict[int, int] | None = None
) -> ray.data.Dataset:
    """The messages in [begin, stop) per partition, decoded and analysed by Ray Data workers."""
    return ray.data.read_kafka(
        settings.keystroke_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        start_offset={settings.keystroke_topic: begin},
        end_offset={settings.keystroke_topic: stop},
        # One read task per partition. Without this Ray Data splits each task's output into many small blocks
        # (to reach its default of 200) and will not fuse the read with the analysis: 2-3× slower here.
        override_num_blocks=len(begin),
    ).map_batches(
        analyse_read_block,
        batch_format="pyarrow",
        batch_size=None,  # whole read blocks: a batch size would bundle several partitions' reads into one task
        fn_kwargs={
            "max_keystrokes": settings.max_keystrokes,
            "max_message_bytes": settings.max_message_bytes,
            "tombstones": tombstones or {},
        },
    )


def read(
    settings: Settings,
    plan: PassPlan,
    tombstones: dict[int, int],
    readers: ReaderPool | None,
    reader_max_messages: int,
) -> Iterable[pa.Table]:
    """The analysed batches of the plan's ranges (analyse.py's packed rows), from the readers when there are any
    and the pass holds at most `reader_max_messages` messages, else from Ray Data. Lazy: the writer pulls them."""
    if readers is not None and sum(plan.pending.values()) <= reader_max_messages:
        return readers.batches(plan.ranges, tombstones)
    return read_and_analyse(settings, plan.begin, plan.stop, tombstones).iter_batches(
        batch_format="pyarrow", batch_size=None
    )
