"""What the ingest job's passes did: `IngestReport`, filled in step by step during a pass, added up over passes, and
printed as one line."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestReport:
    """What one or more passes did."""

    passes: int = 0
    messages: int = 0
    tests_written: int = 0
    duplicates_skipped: int = 0
    dead_lettered: int = 0
    keystrokes_written: int = 0
    seconds: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    oldest_message_ms: int | None = None  # Kafka append time of the oldest message read
    lag: int = 0  # messages on the topic beyond the stored offsets when the (last) pass ended
    dropped_deleted: int = 0  # messages of deleted users timestamped before their deletion: dropped
    erased_users: int = 0  # deleted users whose data was deleted again because their deletion raced a pass
    users: set[int] = field(default_factory=set)  # users with tests stored (their insights get refreshed)

    def add(self, other: IngestReport) -> None:
        self.passes += other.passes
        self.messages += other.messages
        self.tests_written += other.tests_written
        self.duplicates_skipped += other.duplicates_skipped
        self.dead_lettered += other.dead_lettered
        self.keystrokes_written += other.keystrokes_written
        self.dropped_deleted += other.dropped_deleted
        self.erased_users += other.erased_users
        self.seconds += other.seconds
        self.offsets.update(other.offsets)
        self.lag = other.lag
        if other.oldest_message_ms is not None:
            self.oldest_message_ms = min(self.oldest_message_ms or other.oldest_message_ms, other.oldest_message_ms)

    def line(self) -> str:
        rate = self.keystrokes_written / self.seconds if self.seconds else 0.0
        deleted = f", {self.dropped_deleted} of deleted users dropped" if self.dropped_deleted else ""
        return (
            f"{self.messages} messages → {self.tests_written} tests ({self.keystrokes_written} keystrokes) stored, "
            f"{self.duplicates_skipped} duplicates skipped, {self.dead_lettered} dead-lettered{deleted} "
            f"in {self.seconds:.1f} s ({rate:,.0f} keystrokes/s)"
        )
