"""Every batch job keyscope runs on a cluster: a `python -m` module of pipelines/ or training/ on a Ray cluster of
its own, once (a RayJob) or on a schedule (a RayCronJob). Sizes come from the values file (`jobs.<size>`); what
a job runs, when, for how long and with what it needs is the same in every deployment, so it is written here.

Schedules are UTC and keep the nightly jobs apart: warehouse 01:30, training 02:00 / 03:00 / 04:00, archive 03:30,
practice texts 05:00 (after the trainings). A cron run's `deadline_s` ends it before the next tick, standing in for
the `concurrencyPolicy: Forbid` KubeRay v1.7 lacks; each job is safe to cut off and repeat (its docstring says how).
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class BatchJob:
    name: str  # the RayJob's name, or the RayCronJob's (whose runs add -<5 chars>)
    size: str  # its key under `jobs:` in the values file
    component: str  # the app.kubernetes.io/component label
    module: str  # python -m MODULE
    args: tuple[str, ...]  # may hold {workers}, {worker_cpus} and {checkpoints_uri}
    about: str  # the rendered file's header
    deadline_s: int  # activeDeadlineSeconds
    schedule: str = ""  # five-field cron, UTC; empty: a one-off RayJob
    gpu_args: tuple[str, ...] = ()  # added when the job's workers have GPUs
    cpu_args: tuple[str, ...] = ()  # added when they have none
    backoff_limit: int = 0  # retries on a fresh cluster (only for jobs safe to repeat)
    keep_s: int = DAY  # how long a succeeded cron run's RayJob stays to read its logs
    keep_failed_s: int = 3 * DAY  # and a failed one
    models: bool = False  # mounts the model registry (KEYSCOPE_MODELS_DIR)
    language_model: bool = False  # uses the practice-text model (KEYSCOPE_LM_DIR)
    required_config: tuple[str, ...] = ()  # ConfigMap keys it must not run without
    required_secrets: tuple[str, ...] = ()  # keyscope-secrets keys it needs beyond the service URLs

    @property
    def is_cron(self) -> bool:
        return bool(self.schedule)


_TRAIN_ABOUT = (
    "reads the stored tests from ClickHouse, trains the {model} model with Ray Train (one worker per worker Pod, "
    "checkpoints under --storage: a run killed midway resumes from them the same day), evaluates it against the "
    "baseline and the promoted version on the same held-out tests, registers it in the model registry (the "
    "keyscope-models volume) and promotes it if it wins (app/models/registry.py). Serving and the ingest job's drift "
    "check pick up a promotion within a minute (KEYSCOPE_MODEL_POLL_S)."
)


def _training(model: str, hour: int, cron: bool) -> BatchJob:
    return BatchJob(
        name=f"keyscope-train-{model}" + ("-cron" if cron else ""),
        size=f"train-{model}",
        component="training",
        module="training.train",
        args=("--model", model, "--num-workers", "{workers}", "--storage", "{checkpoints_uri}"),
        gpu_args=("--use-gpu",),
        about=("Daily retraining, " if cron else "One training run: ") + _TRAIN_ABOUT.format(model=model),
        schedule=f"0 {hour} * * *" if cron else "",
        deadline_s=55 * 60 if cron else 6 * HOUR,  # a cut-off run registers nothing; the next model starts on the hour
        models=True,
    )


ONE_OFF: tuple[BatchJob, ...] = (
    BatchJob(
        name="keyscope-schema",
        size="schema",
        component="schema",
        module="pipelines.schema",
        args=(),
        about=(
            "The ClickHouse cluster's schema: applies the replicated, sharded form of every migration not applied yet "
            "(ON CLUSTER) and records it where every job looks, so no job applies the single-node form. Run it on a "
            "new cluster before anything else, and after every upgrade that adds a migration, before the new image's "
            "jobs start. Safe to repeat."
        ),
        deadline_s=HOUR,
        backoff_limit=2,
    ),
    BatchJob(
        name="keyscope-ingest",
        size="ingest",
        component="ingest",
        module="pipelines.ingest",
        args=(),
        about=(
            "One ingest run: drains what is on the keystroke topic now into ClickHouse, stores the offsets, trims the "
            "topic and exits. A pass is safe to repeat (offsets are stored after the data; duplicates are skipped), "
            "so a failed run is retried on a fresh cluster."
        ),
        deadline_s=HOUR,
        backoff_limit=2,
        models=True,
    ),
    BatchJob(
        name="keyscope-insights-backfill",
        size="insights",
        component="insights",
        module="pipelines.insights",
        args=("--all",),
        about=(
            "Recomputes every typist's insights into ClickHouse user_insights and Redis, not only those with new "
            "tests: after an import (keyscope-migrate-mysql) or a change to the analytics."
        ),
        deadline_s=12 * HOUR,
        backoff_limit=1,
    ),
    BatchJob(
        name="keyscope-features",
        size="features",
        component="features",
        module="pipelines.features",
        args=(),
        about=(
            "Rebuilds the online feature store (Redis) from the tests stored in ClickHouse, for typists it holds "
            "fewer tests of: after a Redis restart (Redis keeps no copy on disk), an import, or for typists stored "
            "before the store existed. Safe while ingest runs; typists being ingested meanwhile are deferred to the "
            "next run."
        ),
        deadline_s=12 * HOUR,
        backoff_limit=2,
    ),
    BatchJob(
        name="keyscope-migrate-mysql",
        size="migrate-mysql",
        component="migration",
        module="pipelines.migrate_mysql",
        args=(),
        about=(
            "Imports the seed's MySQL keystroke_analytics table into ClickHouse in batches, resuming after the last "
            "stored batch, and ends with a reconciliation (docs/migration.md). The source is KEYSCOPE_MYSQL_DSN "
            "from keyscope-secrets. A run cut off by its deadline is continued by the next one; then run "
            "keyscope-features and keyscope-insights-backfill."
        ),
        deadline_s=DAY,
        backoff_limit=2,
        required_secrets=("KEYSCOPE_MYSQL_DSN",),
    ),
    *(_training(model, 0, cron=False) for model in ("pattern", "error", "trajectory")),
)

SCHEDULED: tuple[BatchJob, ...] = (
    BatchJob(
        name="keyscope-ingest-cron",
        size="ingest",
        component="ingest",
        module="pipelines.ingest",
        args=(),
        about=(
            "Drains the keystroke topic every 10 minutes, as the RayJob keyscope-ingest does. A run cut off by its "
            "deadline stores no offsets and the next run repeats its pass; duplicates are skipped."
        ),
        schedule="*/10 * * * *",
        deadline_s=540,
        keep_s=HOUR,
        keep_failed_s=DAY,
        models=True,
    ),
    BatchJob(
        name="keyscope-insights-cron",
        size="insights",
        component="insights",
        module="pipelines.insights",
        args=(),
        about=(
            "Hourly: every typist with tests stored since the watermark (job_watermarks) is recomputed into "
            "user_insights and Redis. Between runs the ingest job refreshes the typists of each pass itself, so this "
            "mostly catches up what that skipped. A cut-off run stores no watermark and the next repeats it."
        ),
        schedule="0 * * * *",
        deadline_s=55 * 60,
        keep_s=HOUR,
        keep_failed_s=DAY,
    ),
    *(_training(model, hour, cron=True) for model, hour in (("pattern", 2), ("error", 3), ("trajectory", 4))),
    BatchJob(
        name="keyscope-archive-cron",
        size="archive",
        component="archive",
        module="pipelines.archive",
        args=(),
        about=(
            "Retention, daily: month partitions of raw keystrokes older than KEYSCOPE_HOT_DAYS (90) are written to the "
            "cold store as Parquet (KEYSCOPE_COLD_URI), verified, and only then dropped from ClickHouse; cold days "
            "older than KEYSCOPE_COLD_DAYS (730) are deleted and per-test results as old anonymized. A cut-off run "
            "leaves its month in keystrokes_archiving and the next run finishes it."
        ),
        schedule="30 3 * * *",
        deadline_s=20 * HOUR,
        keep_failed_s=7 * DAY,
        required_config=("KEYSCOPE_COLD_URI",),
    ),
    BatchJob(
        name="keyscope-warehouse-cron",
        size="warehouse",
        component="warehouse",
        module="pipelines.warehouse",
        args=("export",),
        about=(
            "Exports yesterday (UTC) to the warehouse daily: date-partitioned Parquet under KEYSCOPE_WAREHOUSE_URI "
            "for BigQuery / Snowflake external tables, and deleted users swept out of the exported days. The 90 "
            "minutes after midnight let late tests arrive; a run replaces the day, so a retry is safe."
        ),
        schedule="30 1 * * *",
        deadline_s=6 * HOUR,
        backoff_limit=2,
        keep_failed_s=7 * DAY,
        required_config=("KEYSCOPE_WAREHOUSE_URI",),
    ),
    BatchJob(
        name="keyscope-practice-cron",
        size="practice",
        component="practice",
        module="pipelines.practice",
        args=("--writers", "{workers}"),
        cpu_args=("--writer-cpus", "{worker_cpus}"),
        about=(
            "Practice texts written ahead, daily: the signatures requests missed, those typists moved to, and those "
            "of typists active in the last 7 days with too few texts are written by Ray Data batch inference (one "
            "writer actor per worker, holding the language model, on the worker's GPU when it has one) into "
            "ClickHouse practice_texts and the Redis hot set. A cut-off run keeps the batches it stored."
        ),
        schedule="0 5 * * *",
        deadline_s=55 * 60,
        language_model=True,
    ),
)

ALL: tuple[BatchJob, ...] = ONE_OFF + SCHEDULED
