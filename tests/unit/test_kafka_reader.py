"""`read_partition`'s stopping rule, on a scripted consumer: the end of a partition as a fetch saw it ends a read only
at or past the offset the pass snapshotted (the real broker is in tests/e2e/test_follow_reader.py)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from pipelines.ingest.readers import read_partition


class Event:
    def __init__(self, offset: int, eof: bool = False) -> None:
        self._offset, self._eof = offset, eof

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return f"m{self._offset}".encode()

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_780_000_000_000 + self._offset


class ScriptedConsumer:
    def __init__(self, *fetches: list[Event]) -> None:
        self.fetches = list(fetches)

    def assign(self, partitions) -> None:
        self.assigned = partitions

    def unassign(self) -> None:
        self.assigned = []

    def consume(self, num_messages: int, timeout: float) -> list[Event]:
        return self.fetches.pop(0) if self.fetches else []


def test_an_end_of_partition_below_the_snapshotted_end_does_not_end_the_read():
    consumer = ScriptedConsumer([Event(5, eof=True)], [Event(5), Event(6)], [Event(7), Event(8, eof=True)])
    assert read_partition(consumer, "t", 0, 5, 8).column("offset").to_pylist() == [5, 6, 7]
    assert consumer.assigned == []


def test_an_end_of_partition_at_the_snapshotted_end_ends_the_read():
    consumer = ScriptedConsumer([Event(3), Event(5, eof=True)])  # offset 4 is a transaction marker
    assert read_partition(consumer, "t", 0, 3, 5).column("offset").to_pylist() == [3]
