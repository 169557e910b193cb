"""The model registry: every trained version of keyscope's models, where its artifact folder lives, the held-out
metrics that decided its promotion, and which version serves.

ClickHouse holds the records (`model_versions`, `model_promotions`, migration 0014); the artifact folders (model.pt
and meta.json, written by training) are copied to `<models_dir>/<model>/<version>/` (KEYSCOPE_MODELS_DIR, default
`<data_dir>/models`). A training run evaluates its candidate, the baseline and the promoted version on the same
held-out set, `register`s the candidate, asks `decide` whether it beats both on every metric of PROMOTION_METRICS,
and `promote`s it if it does. Serving loads `artifact_path(promoted(model))`. The promoted version of a model is the
version of its latest promotions row; `rollback` returns to the version promoted before the current one.

No user data is stored here: a data window holds times and counts, never a user id.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.config import Settings

Direction = Literal["min", "max"]

# The metrics a candidate must win on, each against the baseline and against the promoted version, all on the same
# held-out set: "min" = lower is better. Training reports exactly these names (and may report more, for reading).
PROMOTION_METRICS: dict[str, list[tuple[str, Direction]]] = {
    "pattern": [("mae_ms", "min")],
    "error": [("log_loss", "min"), ("roc_auc", "max")],
    "trajectory": [("mae_wpm", "min")],
}
MODELS: tuple[str, ...] = tuple(PROMOTION_METRICS)
METRIC_SETS = ("candidate", "baseline", "promoted")  # the keys of a metrics dict; "promoted" may be None
ARTIFACT_FILES = ("model.pt", "meta.json")  # what every artifact folder holds (more files are copied too)
DATA_WINDOW_KEYS = ("since", "until", "users", "tests")

# UTC second of registration + 4 hex digits: sorts by time, and two runs in the same second still differ.
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
_VERSION_TIME = "%Y%m%dT%H%M%SZ"
_COLUMNS = "model, version, created_at, artifact, metrics, data_window, code_version, trained_by, params"
# On a cluster the tables are Distributed: write through to the shards, so the next read sees the row.
_INSERT_SETTINGS = {"distributed_foreground_insert": 1}


class ModelRegistryError(ValueError):
    """A model, version or record the registry does not have or cannot accept; the message names it."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version. `artifact` is relative to the registry's root (use `ModelRegistry.artifact_path`);
    `promoted` is whether it was the serving version when it was read."""

    model: str
    version: str
    created_at: datetime
    artifact: str
    metrics: dict[str, Any]  # {"candidate": {name: value}, "baseline": {…}, "promoted": {…} | None}
    data_window: dict[str, Any]  # since/until/users/tests, and whatever else training recorded
    code_version: str
    trained_by: str
    params: dict[str, Any]
    promoted: bool = False


@dataclass(frozen=True)
class Promotion:
    """One row of the promotion log."""

    model: str
    version: str
    promoted_at: datetime
    action: Literal["promote", "rollback"]
    reason: str


def models_root(settings: Settings) -> Path:
    """Where the artifact folders live: KEYSCOPE_MODELS_DIR, else <data_dir>/models."""
    return Path(settings.models_dir) if settings.models_dir else Path(settings.data_dir) / "models"


def check_model(model: str) -> str:
    if model not in PROMOTION_METRICS:
        raise ModelRegistryError(f"unknown model {model!r}: keyscope's models are {', '.join(MODELS)}")
    return model


def check_version_id(version: str) -> str:
    """A version id as the registry makes them (which also keeps it a plain folder name)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ModelRegistryError(f"{version!r} is not a model version id (like 20261206T101500Z-3f2a)")
    return version


def new_version_id(now: datetime | None = None) -> str:
    """A fresh version id: the UTC time and a random suffix, e.g. 20261206T101500Z-3f2a."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{at.strftime(_VERSION_TIME)}-{secrets.token_hex(2)}"


def _finite_numbers(model: str, which: str, values: object) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ModelRegistryError(f"{model} metrics: {which!r} must be a dict of metric name → number, got {values!r}")
    out: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise ModelRegistryError(f"{model} metrics: {which!r} has a metric name that is not a string: {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ModelRegistryError(f"{model} metrics: {which}.{name} must be a finite number, got {value!r}")
        out[name] = float(value)
    missing = [name for name, _ in PROMOTION_METRICS[model] if name not in out]
    if missing:
        raise ModelRegistryError(f"{model} metrics: {which!r} lacks {', '.join(missing)} (the promotion metrics)")
    return out


def check_metrics(model: str, metrics: Mapping[str, Any]) -> dict[str, dict[str, float] | None]:
    """The metrics dict, checked: candidate and baseline (and promoted, unless None) carry every promotion metric
    of the model, as finite numbers. Returns it with plain dicts and floats."""
    check_model(model)
    if not isinstance(metrics, Mapping):
        raise ModelRegistryError(f"{model} metrics must be a dict with keys {', '.join(METRIC_SETS)}")
    unknown = sorted(set(metrics) - set(METRIC_SETS))
    if unknown:
        raise ModelRegistryError(f"{model} metrics: unknown keys {unknown} (expected {', '.join(METRIC_SETS)})")
    for which in ("candidate", "baseline"):
        if which not in metrics:
            raise ModelRegistryError(f"{model} metrics: {which!r} is missing")
    promoted = metrics.get("promoted")
    return {
        "candidate": _finite_numbers(model, "candidate", metrics["candidate"]),
        "baseline": _finite_numbers(model, "baseline", metrics["baseline"]),
        "promoted": None if promoted is None else _finite_numbers(model, "promoted", promoted),
    }


def _beats(candidate: float, other: float, direction: Direction) -> bool:
    return candidate < other if direction == "min" else candidate > other


def _comparison(name: str, direction: Direction, candidate: float, against: str, other: float) -> str:
    diff = candidate - other
    relative = f", {diff / abs(other):+.1%}" if other else ""
    better = "lower" if direction == "min" else "higher"
    return f"{name} {candidate:.4g} vs {against} {other:.4g} ({diff:+.4g}{relative}; {better} is better)"


def decide_promotion(model: str, metrics: Mapping[str, Any]) -> tuple[bool, str]:
    """The promotion rule: promote the candidate only if it beats the baseline and the promoted version (when there
    is one) on every metric of PROMOTION_METRICS[model], strictly; a tie is not a win. Returns (promote, reason),
    the reason naming each metric that lost (or, when promoted, each margin it won by)."""
    checked = check_metrics(model, metrics)
    candidate = checked["candidate"]
    assert candidate is not None  # check_metrics requires it
    references = [(which, values) for which in ("baseline", "promoted") if (values := checked[which]) is not None]
    won, lost = [], []
    for name, direction in PROMOTION_METRICS[model]:
        for which, values in references:
            text = _comparison(name, direction, candidate[name], which, values[name])
            (won if _beats(candidate[name], values[name], direction) else lost).append(text)
    if lost:
        return False, "not promoted: does not beat " + "; ".join(lost)
    against = " and the promoted version" if checked["promoted"] is not None else " (no version promoted yet)"
    return True, f"promoted: beats the baseline{against} on every metric: " + "; ".join(won)


def promotion_stack(log: Sequence[Promotion]) -> list[str]:
    """The versions a model's promotion log has stacked up, oldest first, the serving one last: a promotion pushes
    its version, a rollback pops back to the one below (its row names that version)."""
    stack: list[str] = []
    for row in log:
        if row.action == "rollback" and stack:
            stack.pop()
            if stack and stack[-1] == row.version:
                continue
        stack.append(row.version)  # a promotion, or a rollback the stack does not explain: its version serves
    return stack


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_object(what: str, value: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    """`value` as it will read back from its JSON column (times as ISO strings)."""
    if not isinstance(value, Mapping):
        raise ModelRegistryError(f"{what} must be a dict, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise ModelRegistryError(f"{what} lacks {', '.join(missing)}")
    try:
        return json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ModelRegistryError(f"{what} cannot be stored as JSON: {exc}") from exc


def _check_artifact_dir(model: str, source: Path) -> None:
    if not source.is_dir():
        raise ModelRegistryError(f"{model} artifact folder {source} does not exist or is not a folder")
    missing = [name for name in ARTIFACT_FILES if not (source / name).is_file()]
    if missing:
        raise ModelRegistryError(f"{model} artifact folder {source} lacks {', '.join(missing)}")


class ModelRegistry:
    """The registry on one ClickHouse (settings.clickhouse_url, or `client`) and one artifact root.

    Applies the migrations when opened (idempotent), unless `migrate=False` (Serve replicas, which only read).
    """

    def __init__(self, settings: Settings, client: Client | None = None, *, migrate: bool = True) -> None:
        self.root = models_root(settings)
        self._own_client = client is None
        self._client = client if client is not None else clickhouse_client(settings.clickhouse_url)
        if migrate:
            apply_migrations(self._client)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Versions

    def register(
        self,
        model: str,
        artifact_src_dir: str | os.PathLike[str],
        metrics: Mapping[str, Any],
        data_window: Mapping[str, Any],
        code_version: str,
        params: Mapping[str, Any],
        *,
        trained_by: str | None = None,
    ) -> ModelVersion:
        """Record a trained version: copy its artifact folder to <root>/<model>/<version>/ and insert its row.
        Everything is checked before anything is written; a failed insert removes the copied folder."""
        check_model(model)
        source = Path(artifact_src_dir)
        _check_artifact_dir(model, source)
        checked = check_metrics(model, metrics)
        window = _json_object(f"{model} data_window", data_window, DATA_WINDOW_KEYS)
        stored_params = _json_object(f"{model} params", params)
        if not isinstance(code_version, str):
            raise ModelRegistryError(f"{model} code_version must be a string, got {code_version!r}")
        now = datetime.now(UTC)
        created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # DateTime64(3) reads back the same
        version = new_version_id(created_at)
        home = self.root / model
        home.mkdir(parents=True, exist_ok=True)
        while (home / version).exists():  # same second, same suffix
            version = new_version_id(created_at)
        # Copied under a hidden temporary name and renamed into place: a crash leaves no half folder under a
        # version's name, and a rename within one folder is atomic.
        temporary = home / f".{version}.tmp-{secrets.token_hex(4)}"
        try:
            shutil.copytree(source, temporary)
            temporary.rename(home / version)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        entry = ModelVersion(
            model=model,
            version=version,
            created_at=created_at,
            artifact=f"{model}/{version}",
            metrics=checked,
            data_window=window,
            code_version=code_version,
            trained_by=socket.gethostname() if trained_by is None else trained_by,
            params=stored_params,
        )
        try:
            self._client.insert(
                "model_versions",
                [
                    [
                        entry.model,
                        entry.version,
                        entry.created_at,
                        entry.artifact,
                        json.dumps(entry.metrics),
                        json.dumps(entry.data_window),
                        entry.code_version,
                        entry.trained_by,
                        json.dumps(entry.params),
                    ]
                ],
                column_names=[c.strip() for c in _COLUMNS.split(",")],
                settings=_INSERT_SETTINGS,
            )
        except BaseException:
            shutil.rmtree(home / version, ignore_errors=True)
            raise
        return entry

    def versions(self, model: str) -> list[ModelVersion]:
        """Every version of the model, newest first, `promoted` set on the serving one."""
        check_model(model)
        return self._read(model)

    def get(self, model: str, version: str) -> ModelVersion:
        check_model(model)
        check_version_id(version)
        found = self._read(model, version)
        if not found:
            raise ModelRegistryError(f"no version {version} of model {model!r} in the registry")
        return found[0]

    def promoted(self, model: str) -> ModelVersion | None:
        """The serving version of the model, or None when none was ever promoted."""
        check_model(model)
        log = self.promotions(model)
        if not log:
            return None
        return self.get(model, log[-1].version)

    def artifact_path(self, version: ModelVersion) -> Path:
        """The version's artifact folder (model.pt, meta.json) on this machine."""
        return self.root / version.artifact

    # Promotions

    def promotions(self, model: str) -> list[Promotion]:
        """The model's promotion log, oldest first."""
        check_model(model)
        rows = self._client.query(
            "SELECT version, promoted_at, action, reason FROM model_promotions WHERE model = {m:String} "
            "ORDER BY promoted_at",
            parameters={"m": model},
        ).result_rows
        return [Promotion(model, str(v), _utc(at), action, str(reason)) for v, at, action, reason in rows]

    def decide(self, model: str, metrics: Mapping[str, Any]) -> tuple[bool, str]:
        """`decide_promotion`, after checking that the metrics compare against the version serving now: with a
        promoted version, metrics["promoted"] must hold its values on the same held-out set."""
        serving = self.promoted(model)
        if serving is not None and metrics.get("promoted") is None:
            raise ModelRegistryError(
                f"{model} version {serving.version} is promoted: the metrics need its values on the same held-out "
                "set under 'promoted'"
            )
        return decide_promotion(model, metrics)

    def promote(self, model: str, version: str, reason: str) -> ModelVersion:
        """Make `version` the serving version of `model`."""
        entry = self.get(model, version)
        log = self.promotions(model)
        if log and log[-1].version == version:
            raise ModelRegistryError(f"version {version} of {model!r} is already the promoted version")
        self._log(model, version, "promote", reason, log)
        return _with_promoted(entry)

    def rollback(self, model: str, reason: str) -> ModelVersion:
        """Serve again the version promoted before the current one; returns it."""
        check_model(model)
        log = self.promotions(model)
        stack = promotion_stack(log)
        if not stack:
            raise ModelRegistryError(f"no version of {model!r} was ever promoted: nothing to roll back")
        if len(stack) < 2:
            raise ModelRegistryError(
                f"no version of {model!r} was promoted before {stack[-1]}: nothing to roll back to"
            )
        entry = self.get(model, stack[-2])
        self._log(model, entry.version, "rollback", reason, log)
        return _with_promoted(entry)

    def _log(self, model: str, version: str, action: str, reason: str, log: list[Promotion]) -> None:
        at = datetime.now(UTC)
        if log and at <= log[-1].promoted_at:  # a clock behind the last row must not reorder the log
            at = log[-1].promoted_at + timedelta(microseconds=1)
        self._client.insert(
            "model_promotions",
            [[model, version, at, action, reason]],
            column_names=["model", "version", "promoted_at", "action", "reason"],
            settings=_INSERT_SETTINGS,
        )

    def _read(self, model: str, version: str | None = None) -> list[ModelVersion]:
        where = "model = {m:String}" + ("" if version is None else " AND version = {v:String}")
        rows = self._client.query(
            f"SELECT {_COLUMNS} FROM model_versions FINAL WHERE {where} ORDER BY created_at DESC, version DESC",
            parameters={"m": model, "v": version or ""},
        ).result_rows
        log = self.promotions(model)
        serving = log[-1].version if log else None
        return [
            ModelVersion(
                model=str(m),
                version=str(v),
                created_at=_utc(created_at),
                artifact=str(artifact),
                metrics=json.loads(metrics),
                data_window=json.loads(window),
                code_version=str(code),
                trained_by=str(by),
                params=json.loads(params),
                promoted=v == serving,
            )
            for m, v, created_at, artifact, metrics, window, code, by, params in rows
        ]


def _with_promoted(entry: ModelVersion) -> ModelVersion:
    return replace(entry, promoted=True)
