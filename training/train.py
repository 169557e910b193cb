"""Train one model with Ray Train, judge it on held-out typists and tests against its baselines and the promoted
version, register it, and promote it when it wins.

    python -m training.train --model pattern [--num-workers N] [--use-gpu] [--since DATE] [--storage PATH]
    keyscope train --model pattern …                 (the same, on the local stack)
    ray job submit --address … -- python -m training.train --model error …

Checkpoints go under --storage (a folder, or s3://… on a cluster) in a run named after the model and the day; the
same command run again after the job was killed resumes from the latest epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from app.config import Settings
from app.models.nets import KINDS, ArtifactError, save_artifact
from app.models.predictor import LoadedModel
from app.models.registry import ModelRegistry, decide_promotion
from training.data import sample_dataset
from training.evaluate import (
    HELD_OUT,
    error_metrics,
    pair_medians,
    pattern_metrics,
    registry_metrics,
    trajectory_metrics,
)
from training.loop import load_checkpoint_model, net_config, train_loop
from training.splits import TRAIN

log = logging.getLogger("keyscope.train")

DESCRIPTION = (
    "Train a model (pattern: time to type per character; error: error probability per character; trajectory: "
    "WPM after more tests) with Ray Train on the tests stored in ClickHouse, evaluate it on held-out typists and "
    "later tests against its baselines and the promoted version, register it, and promote it if it beats both."
)
EPOCHS = {"pattern": 6, "error": 8, "trajectory": 60}
BATCH = {"pattern": 2048, "error": 2048, "trajectory": 256}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=KINDS, help="which model to train")
    parser.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (default 1)")
    parser.add_argument("--use-gpu", action="store_true", help="train on GPUs when the cluster has them")
    parser.add_argument(
        "--since", type=date.fromisoformat, default=None, help="only tests started on or after this date (YYYY-MM-DD)"
    )
    parser.add_argument(
        "--storage", default=None, help="where checkpoints go: a folder or s3://… (default: DATA_DIR/training)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training rows (default per model)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step per worker (default per model)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 0.002)")
    parser.add_argument("--run-name", default=None, help="the run's name under --storage (default MODEL-YYYYMMDD)")
    parser.add_argument("--no-promote", action="store_true", help="register the version but never promote it")


def _columns(batch: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[keep] for name, values in batch.items()}


def _training_rows(batch: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    keep = batch["split"] == TRAIN
    if kind == "pattern":
        keep &= np.isfinite(batch["time_ms"])
    elif kind == "error":
        keep &= np.isfinite(batch["error"])
    return _columns(batch, keep)


def _held_out_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return _columns(batch, np.isin(batch["split"], HELD_OUT))


def _population(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the baselines' population figures need from a block of training rows."""
    return {"pair": batch["cats"][:, 3], "time_ms": batch["time_ms"], "error": batch["error"]}


def _gather(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    parts = [b for b in dataset.iter_batches(batch_size=None, batch_format="numpy")]
    parts = [p for p in parts if p and next(iter(p.values())).shape[0]]
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def code_version() -> str:
    """The git commit of the code that trained (the package version where there is no checkout)."""
    try:
        here = Path(__file__).parent
        command = ["git", "rev-parse", "--short", "HEAD"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=5, cwd=here)
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    from importlib.metadata import version

    return version("keyscope")


def _evaluate(kind: str, net: Any, held: dict[str, np.ndarray], population: dict[str, Any]) -> dict[str, Any]:
    if kind == "pattern":
        return pattern_metrics(net, held, population["pairs"])
    if kind == "error":
        return error_metrics(net, held, population["error_rate"])
    return trajectory_metrics(net, held)


def train_model(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The whole run; returns its summary (version, metrics, promoted, reason)."""
    kind = args.model
    since = datetime(args.since.year, args.since.month, args.since.day, tzinfo=UTC) if args.since else None
    storage = args.storage or str((settings.data_dir / "training").resolve())
    run_name = args.run_name or f"{kind}-{datetime.now(UTC):%Y%m%d}"
    epochs = args.epochs or EPOCHS[kind]
    batch_size = args.batch_size or BATCH[kind]
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    use_gpu = bool(args.use_gpu and ray.cluster_resources().get("GPU", 0) > 0)
    if args.use_gpu and not use_gpu:
        log.warning("--use-gpu: the cluster has no GPU; training on CPUs")

    log.info("building %s samples from ClickHouse%s", kind, f" since {since:%Y-%m-%d}" if since else "")
    samples, typists, tests = sample_dataset(settings, kind, since)
    samples = samples.materialize()
    train_rows = samples.map_batches(_training_rows, fn_kwargs={"kind": kind}, batch_format="numpy").materialize()
    held = _gather(samples.map_batches(_held_out_rows, batch_format="numpy"))
    if not held or train_rows.count() == 0:
        raise ValueError(f"not enough data to train and judge {kind}: {typists} typists in the window")
    population: dict[str, Any] = {}
    if kind != "trajectory":
        pop = _gather(train_rows.map_batches(_population, batch_format="numpy"))
        timed = np.isfinite(pop["time_ms"])
        population["pairs"] = pair_medians(pop["pair"][timed].astype(np.int64), pop["time_ms"][timed])
        reached = np.isfinite(pop["error"])
        population["error_rate"] = float(pop["error"][reached].mean())
    log.info("%d typists: %d training rows, %d held-out rows", typists, train_rows.count(), len(held["split"]))

    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"kind": kind, "epochs": epochs, "batch_size": batch_size, "lr": args.lr},
        scaling_config=ScalingConfig(num_workers=args.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name=run_name, storage_path=storage),
        datasets={"train": train_rows},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} ended without a checkpoint")
    net = load_checkpoint_model(kind, result.checkpoint)
    candidate = _evaluate(kind, net, held, population)

    registry = ModelRegistry(settings)
    current = registry.promoted(kind)
    promoted_metrics = None
    if current is not None:
        try:
            loaded = LoadedModel.load(registry.artifact_path(current), current.version)
            promoted_metrics = _evaluate(kind, loaded.net, held, population)
        except ArtifactError as exc:
            # This code cannot serve the promoted version at all: the candidate only has to beat the baseline.
            log.warning("the promoted %s version %s is not comparable: %s", kind, current.version, exc)
            current = None
    record = registry_metrics(kind, candidate, promoted_metrics)
    window = {
        "since": since.isoformat() if since else None,
        "until": datetime.now(UTC).isoformat(),
        "users": typists,
        "tests": int(tests),
        "training_rows": train_rows.count(),
        "held_out_rows": int(len(held["split"])),
    }
    params = {"epochs": epochs, "batch_size": batch_size, "lr": args.lr, "num_workers": args.num_workers,
              "use_gpu": use_gpu, "run": run_name, "storage": storage,
              "samples_per_s": result.metrics.get("samples_per_s")}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        meta = {"metrics": record, "by_split": candidate, "data_window": window, "params": params}
        save_artifact(Path(folder), kind, net, net_config(kind), meta)
        version = registry.register(kind, Path(folder), record, window, code_version(), params)
    promote, reason = registry.decide(kind, record) if current is not None else decide_promotion(kind, record)
    if promote and not args.no_promote:
        registry.promote(kind, version.version, reason)
    summary = {
        "model": kind,
        "version": version.version,
        "promoted": bool(promote and not args.no_promote),
        "reason": reason if not args.no_promote else "--no-promote",
        "metrics": record,
        "by_split": candidate,
        "params": params,
        "training_rows": window["training_rows"],
    }
    return summary


def _table(summary: dict[str, Any]) -> str:
    lines = [f"{summary['model']} {summary['version']}: {'PROMOTED' if summary['promoted'] else 'not promoted'}"
             f" ({summary['reason']})"]  # fmt: skip
    by_split = summary["by_split"]
    names = sorted({k for m in by_split.values() for k in m})
    lines.append(f"{'metric':<32}" + "".join(f"{s:>14}" for s in by_split))
    for name in names:
        cells = []
        for split in by_split:
            value = by_split[split].get(name)
            cells.append(f"{value:>14.4f}" if isinstance(value, float) else f"{value!s:>14}")
        lines.append(f"{name:<32}" + "".join(cells))
    return "\n".join(lines)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        summary = train_model(settings, args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    print(_table(summary))
    print("RESULT " + json.dumps({k: summary[k] for k in ("model", "version", "promoted", "reason")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipelines.entry import job_main, job_parser

    return job_main(job_parser("python -m training.train", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
