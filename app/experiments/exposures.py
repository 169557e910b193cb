"""Recording exposures without slowing the route that exposes: `record` only appends to memory; `flush` (called by a
background thread, app/experiments/runtime.py) writes what was recorded in one insert.

A user is recorded once per experiment while this process remembers them (a bounded LRU), so a typist asking for
practice text every minute costs one row, not one per request. A process that restarts records them again; the
table keeps the earliest time (migration 0017). A failed write keeps the batch for the next flush; beyond
`max_pending` the oldest unwritten exposures are dropped and counted (`dropped`), so an outage of ClickHouse costs
memory up to a bound and never fails a request.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from app.experiments.store import Exposure

log = logging.getLogger("keyscope.experiments")

MAX_PENDING = 20_000
REMEMBER = 200_000


class ExposureRecorder:
    """A bounded buffer of exposures; thread-safe (see the module docstring)."""

    def __init__(
        self, write: Callable[[list[Exposure]], int], *, max_pending: int = MAX_PENDING, remember: int = REMEMBER
    ) -> None:
        self._write = write
        self._max_pending = max_pending
        self._remember = remember
        self._pending: deque[Exposure] = deque()
        self._seen: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0

    def record(self, exposure: Exposure) -> bool:
        """Buffer the exposure unless this user was already recorded in this experiment; True if buffered."""
        key = (exposure.user_id, exposure.experiment)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(exposure)
            return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every buffered exposure; returns how many were written. A failure keeps them and re-raises."""
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        if not batch:
            return 0
        try:
            written = self._write(batch)
        except BaseException:
            with self._lock:
                room = self._max_pending - len(self._pending)
                keep = batch[-room:] if room > 0 else []
                self.dropped += len(batch) - len(keep)
                self._pending.extendleft(reversed(keep))
            raise
        self.written += written
        return written
