"""Retries with back-off for the ingest job's ClickHouse calls: while ClickHouse is unreachable a pass waits at the
step it reached, and nothing after that step (the offset store above all) runs until it succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from clickhouse_connect.driver.exceptions import OperationalError

from app.config import Settings

log = logging.getLogger("keyscope.ingest")
T = TypeVar("T")


def with_retry(action: Callable[[], T], what: str, settings: Settings) -> T:
    """The action's result, retrying with exponential back-off (0.5 s doubling to 10 s) while ClickHouse is
    unreachable, for up to `settings.write_retry_s`; nothing after it (the offset store above all) runs
    until it succeeds."""
    deadline = time.monotonic() + settings.write_retry_s
    delay = 0.5
    while True:
        try:
            return action()
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
