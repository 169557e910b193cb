"""The per-worker training loop (Ray Train): each worker reads its shard of the training rows, fits, and reports
each epoch's loss and throughput with a checkpoint; a run restarted under the same name resumes from the latest.

Losses: `pattern` L1 on ln(time to type) − base (its minimiser is the median, which is what MAE rewards); `error`
binary cross-entropy; `trajectory` the pinball loss of each quantile of ln(future WPM / current speed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray.train import Checkpoint

from app.models.history import QUANTILES
from app.models.nets import build

_CHECKPOINT = "state.pt"


def _loss(kind: str, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if kind == "trajectory":
        y = torch.log(batch["target"] / batch["ref"]).unsqueeze(1)
        q = torch.tensor(QUANTILES, device=y.device).unsqueeze(0)
        diff = y - net(batch["x"])
        return torch.maximum(q * diff, (q - 1) * diff).mean()
    out = net(batch["cats"], batch["numeric"])
    if kind == "pattern":
        return (out - (torch.log(batch["time_ms"].clamp(min=1.0)) - batch["base"])).abs().mean()
    return torch.nn.functional.binary_cross_entropy_with_logits(out, batch["error"])


def train_loop(config: dict[str, Any]) -> None:
    kind, epochs = config["kind"], int(config["epochs"])
    context = ray.train.get_context()
    net = ray.train.torch.prepare_model(build(kind, net_config(kind)))
    optimiser = torch.optim.Adam(net.parameters(), lr=float(config["lr"]))
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / _CHECKPOINT, weights_only=True)
        (net.module if hasattr(net, "module") else net).load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = int(state["epoch"]) + 1
    shard = ray.train.get_dataset_shard("train")
    device = ray.train.torch.get_device()
    columns = ["x", "ref", "target"] if kind == "trajectory" else ["cats", "numeric", "base", "time_ms", "error"]
    if start >= epochs:  # a finished run started again: report its last state so the run has a result
        _report(kind, epochs, start - 1, net, optimiser, context, 0, 0.0, 0.0)
        return
    for epoch in range(start, epochs):
        net.train()
        began, seen, total = time.perf_counter(), 0, 0.0
        batch_size = int(config["batch_size"])
        for batch in shard.iter_torch_batches(
            batch_size=batch_size, device=device, local_shuffle_buffer_size=4 * batch_size
        ):
            batch = {name: batch[name] for name in columns if name in batch}
            loss = _loss(kind, net, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            n = next(iter(batch.values())).shape[0]
            seen += n
            total += float(loss.detach()) * n
        _report(kind, epochs, epoch, net, optimiser, context, seen, total, time.perf_counter() - began)


def _report(kind, epochs, epoch, net, optimiser, context, seen: int, total: float, seconds: float) -> None:  # noqa: ANN001
    """Print the epoch's progress line (rank 0) and report its metrics with a checkpoint."""
    metrics = {
        "epoch": epoch,
        "loss": total / seen if seen else float("nan"),
        "samples": seen,
        "samples_per_s": seen / seconds if seconds > 0 else 0.0,
    }
    if context.get_world_rank() == 0 and seen:
        print(
            f"[{kind}] epoch {epoch + 1}/{epochs}: loss {metrics['loss']:.4f}, {seen:,} samples, "
            f"{metrics['samples_per_s']:,.0f} samples/s per worker",
            flush=True,
        )
    with tempfile.TemporaryDirectory() as folder:
        model = net.module if hasattr(net, "module") else net
        state = {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch}
        torch.save(state, Path(folder) / _CHECKPOINT)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def net_config(kind: str) -> dict[str, Any]:
    """The network's shape, saved with the artifact so later changes of the defaults leave it loadable."""
    return {"hidden": 64} if kind == "trajectory" else {"hidden": 64, "char_dim": 12, "pair_dim": 8}


def load_checkpoint_model(kind: str, checkpoint: Checkpoint) -> torch.nn.Module:
    """The network of a run's checkpoint, on the CPU in eval mode."""
    net = build(kind, net_config(kind))
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / _CHECKPOINT, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"])
    return net.eval()
