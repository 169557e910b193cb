"""Experiments and exposures in ClickHouse (migration 0017): create, list and load definitions; write and count
exposures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from app.experiments.definition import Experiment, ExperimentError, Variant
from app.identity import check_user_id
from app.user_data import load_tombstones

_COLUMNS = (
    "name", "factor", "variant_names", "variant_weights", "variant_values", "metric", "description", "starts_at",
    "ends_at", "created_at",
)


@dataclass(frozen=True)
class Exposure:
    """A user was served a variant of an experiment at `exposed_at` (UTC)."""

    user_id: int
    experiment: str
    variant: str
    exposed_at: datetime


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC (clickhouse-connect returns naive UTC times for DateTime64(3, 'UTC') columns)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _experiment(row: Sequence[Any]) -> Experiment:
    name, factor, names, weights, values, metric, description, starts_at, ends_at, created_at = row
    variants = tuple(Variant(str(n), float(w), str(v)) for n, w, v in zip(names, weights, values, strict=True))
    return Experiment(
        name=str(name),
        factor=str(factor),
        variants=variants,
        starts_at=_utc(starts_at),
        ends_at=None if ends_at is None else _utc(ends_at),
        metric=str(metric),
        description=str(description),
        created_at=_utc(created_at),
    )


def load_experiments(client: Client) -> list[Experiment]:
    """Every experiment, oldest start first."""
    rows = client.query(f"SELECT {', '.join(_COLUMNS)} FROM experiments FINAL ORDER BY starts_at, name").result_rows
    return [_experiment(row) for row in rows]


def load_experiment(client: Client, name: str) -> Experiment:
    """The experiment called `name`; ExperimentError if there is none."""
    rows = client.query(
        f"SELECT {', '.join(_COLUMNS)} FROM experiments FINAL WHERE name = {{n:String}}", parameters={"n": name}
    ).result_rows
    if not rows:
        known = ", ".join(e.name for e in load_experiments(client)) or "none yet"
        raise ExperimentError(f"no experiment named {name!r} (experiments: {known})")
    return _experiment(rows[0])


def unfinished_experiments(client: Client, now: datetime | None = None) -> list[Experiment]:
    """The experiments running or yet to start."""
    now = now or datetime.now(UTC)
    return [e for e in load_experiments(client) if e.ends_at is None or e.ends_at > now]


def create_experiment(client: Client, experiment: Experiment) -> Experiment:
    """Store a new experiment; ExperimentError if the name is taken or another experiment on the same factor runs at
    an overlapping time (a serving point must get one answer per factor)."""
    existing = load_experiments(client)
    for other in existing:
        if other.name == experiment.name:
            raise ExperimentError(f"an experiment named {experiment.name!r} exists; definitions never change")
        if other.factor == experiment.factor and other.overlaps(experiment):
            until = "open" if other.ends_at is None else f"{other.ends_at:%Y-%m-%d %H:%M}"
            raise ExperimentError(
                f"experiment {other.name!r} already varies {other.factor} at an overlapping time "
                f"({other.starts_at:%Y-%m-%d %H:%M} to {until})"
            )
    _insert(client, experiment)
    return load_experiment(client, experiment.name)


def stop_experiment(client: Client, name: str, now: datetime | None = None) -> Experiment:
    """End the experiment now (the one change a definition takes); ExperimentError if it is unknown or ended.
    Serving processes see the end at their next refresh (app/experiments/runtime.py)."""
    experiment = load_experiment(client, name)
    now = now or datetime.now(UTC)
    if experiment.ends_at is not None and experiment.ends_at <= now:
        raise ExperimentError(f"experiment {name!r} already ended at {experiment.ends_at:%Y-%m-%d %H:%M:%S}Z")
    if now <= experiment.starts_at:
        raise ExperimentError(f"experiment {name!r} has not started; it starts {experiment.starts_at:%Y-%m-%d %H:%M}Z")
    _insert(client, replace(experiment, ends_at=now))
    return load_experiment(client, name)


def _insert(client: Client, experiment: Experiment) -> None:
    # The newest row of a name wins (ReplacingMergeTree(created_at)): a stop writes the definition again.
    client.insert(
        "experiments",
        [[
            experiment.name, experiment.factor, [v.name for v in experiment.variants],
            [float(v.weight) for v in experiment.variants], [v.value for v in experiment.variants], experiment.metric,
            experiment.description, experiment.starts_at, experiment.ends_at, datetime.now(UTC),
        ]],
        column_names=list(_COLUMNS),
        settings={"insert_distributed_sync": 1},
    )


def write_exposures(client: Client, exposures: Iterable[Exposure]) -> int:
    """Insert exposures (re-inserting one is harmless: the earliest time is kept); returns how many were written.

    An exposure of a user whose deletion finished at or after it is dropped: it was buffered before the deletion
    and would otherwise bring the user's data back (the ingest job drops a deleted user's messages the same way)."""
    batch = [e for e in exposures if check_user_id(e.user_id)]
    if not batch:
        return 0
    deleted = load_tombstones(client, {e.user_id for e in batch})
    kept = [
        e for e in batch
        if e.user_id not in deleted or int(_utc(e.exposed_at).timestamp() * 1000) > deleted[e.user_id]
    ]
    if kept:
        client.insert(
            "experiment_exposures",
            [[e.user_id, e.experiment, e.variant, e.exposed_at] for e in kept],
            column_names=["user_id", "experiment", "variant", "exposed_at"],
            settings={"insert_distributed_sync": 1},
        )
    return len(kept)


def exposure_counts(client: Client, experiment: str) -> dict[str, int]:
    """Exposed users per variant (each user once, whatever was re-recorded)."""
    rows = client.query(
        "SELECT variant, uniqExact(user_id) FROM experiment_exposures WHERE experiment = {e:String} GROUP BY variant",
        parameters={"e": experiment},
    ).result_rows
    return {str(variant): int(count) for variant, count in rows}
