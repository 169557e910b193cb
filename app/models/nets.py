"""The networks (PyTorch) and their artifacts.

- CharNet: per character, embeddings of the character, the two before it and the letter pair, with the numeric
  inputs of encode.py, through a small MLP. As `pattern` its output is ln(time to type) − the typist's base (trained
  with an L1 loss, so it is a median); as `error` it is the logit of a wrong first press.
- TrajectoryNet: the history inputs of history.py to the QUANTILES of ln(future WPM / current speed), kept in order
  by construction (a base plus cumulative softplus steps).

An artifact is a folder: `model.pt` (kind, config, state dict) and `meta.json` (what the registry shows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.features.vocab import PAIR_COUNT
from app.models.encode import EMBEDDINGS, NUMERIC
from app.models.history import FEATURES, QUANTILES

KINDS = ("pattern", "error", "trajectory")
# Bumped whenever encode.py or history.py change what an input means: a network trained on other inputs would
# answer nonsense, so loading it fails instead (ArtifactError) and it is retrained.
INPUTS_VERSION = 2


class ArtifactError(ValueError):
    """An artifact this code cannot serve (another inputs version, a broken file)."""


class CharNet(nn.Module):
    def __init__(self, hidden: int = 64, char_dim: int = 12, pair_dim: int = 8) -> None:
        super().__init__()
        self.char = nn.Embedding(EMBEDDINGS, char_dim)
        self.prev = nn.Embedding(EMBEDDINGS, char_dim)
        self.prev2 = nn.Embedding(EMBEDDINGS, char_dim // 2)
        self.pair = nn.Embedding(PAIR_COUNT, pair_dim)
        width = 2 * char_dim + char_dim // 2 + pair_dim + NUMERIC
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 1)
        )

    def forward(self, cats: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            [self.char(cats[:, 0]), self.prev(cats[:, 1]), self.prev2(cats[:, 2]), self.pair(cats[:, 3]), numeric],
            dim=1,
        )
        return self.mlp(x).squeeze(1)


class TrajectoryNet(nn.Module):
    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(FEATURES, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, len(QUANTILES)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.mlp(x)
        steps = nn.functional.softplus(raw[:, 1:])
        return torch.cat([raw[:, :1], raw[:, :1] + torch.cumsum(steps, dim=1)], dim=1)


def build(kind: str, config: dict[str, Any] | None = None) -> nn.Module:
    config = config or {}
    if kind in ("pattern", "error"):
        return CharNet(**config)
    if kind == "trajectory":
        return TrajectoryNet(**config)
    raise ValueError(f"unknown model {kind!r}; models: {', '.join(KINDS)}")


def save_artifact(folder: Path, kind: str, net: nn.Module, config: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write `model.pt` and `meta.json` into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}
    saved = {"kind": kind, "config": config, "inputs_version": INPUTS_VERSION, "state_dict": state}
    torch.save(saved, folder / "model.pt")
    (folder / "meta.json").write_text(
        json.dumps({"kind": kind, "inputs_version": INPUTS_VERSION, **meta}, indent=1, default=str)
    )
    return folder


def load_artifact(folder: Path, device: str = "cpu") -> tuple[str, nn.Module, dict[str, Any]]:
    """(kind, network in eval mode, meta) of an artifact folder."""
    saved = torch.load(Path(folder) / "model.pt", map_location=device, weights_only=True)
    if saved.get("inputs_version") != INPUTS_VERSION:
        raise ArtifactError(
            f"{folder} was trained on inputs version {saved.get('inputs_version', 1)}, this code encodes version "
            f"{INPUTS_VERSION}: train the model again"
        )
    net = build(saved["kind"], saved["config"])
    try:
        net.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ArtifactError(f"{folder} does not fit its network: {exc}") from exc
    net.to(device).eval()
    meta_path = Path(folder) / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return saved["kind"], net, meta
