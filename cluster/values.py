"""The values of one deployment size (`cluster/values/<size>.yaml`): every count and size that differs between
sizes, so a change of partition or replica count is made once, here. Loaded strictly: an unknown or missing key
is an error naming where it is, so a typo never renders silently as a default."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VALUES_DIR = Path(__file__).with_name("values")
SIZES = ("dev", "prod")
# What the values file may change in a Serve deployment of serve/config.yaml, on the cluster only.
SERVE_OVERRIDES = ("min_replicas", "max_replicas", "num_gpus")


class ValuesError(ValueError):
    """A values file that does not describe a deployment."""


@dataclass(frozen=True)
class Resources:
    """A container's CPU and memory (requests = limits: Ray sizes itself by them) and its GPUs."""

    cpu: str
    memory: str
    gpus: int = 0


@dataclass(frozen=True)
class Volume:
    size: str
    storage_class: str


@dataclass(frozen=True)
class Storage:
    models: Volume  # the model registry (ReadWriteMany): training writes it, serving and ingest read it
    cold_uri: str  # KEYSCOPE_COLD_URI
    warehouse_uri: str  # KEYSCOPE_WAREHOUSE_URI
    checkpoints_uri: str  # Ray Train's checkpoints (training --storage)


@dataclass(frozen=True)
class Kafka:
    brokers: int
    controllers: int  # 0: the brokers are KRaft controllers too (one dual-role pool)
    rack_topology_key: str  # the node label brokers take their rack from; empty: no rack awareness
    broker: Resources
    broker_storage: Volume
    controller: Resources
    controller_storage: Volume
    replication: int
    min_insync_replicas: int
    topic_partitions: int
    dlq_partitions: int
    retention_hours: int


@dataclass(frozen=True)
class ClickHouse:
    shards: int
    replicas: int
    image: str
    server: Resources
    storage: Volume  # the hot volume of every server
    keeper_replicas: int
    keeper_image: str
    keeper: Resources
    keeper_storage: Volume


@dataclass(frozen=True)
class Redis:
    cpu: str
    memory: str


@dataclass(frozen=True)
class WorkerGroup:
    min: int
    max: int
    cpu: str
    memory: str
    gpus: int = 0

    @property
    def resources(self) -> Resources:
        return Resources(self.cpu, self.memory, self.gpus)


@dataclass(frozen=True)
class Serve:
    head: Resources
    cpu_workers: WorkerGroup
    gpu_workers: WorkerGroup  # min must be 0: GPU nodes come up only for a deployment that asks for num_gpus
    # Per deployment of serve/config.yaml: SERVE_OVERRIDES on the cluster (the local stack keeps the file's values).
    deployments: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSize:
    """The Ray cluster of one batch job: the head (which runs the driver) and `workers` worker Pods."""

    head: Resources
    workers: int = 0
    worker: Resources | None = None


@dataclass(frozen=True)
class Values:
    size: str
    namespace: str  # the Ray workloads, their ConfigMap, Secret, service account and model volume
    data_namespace: str  # Kafka, ClickHouse, Keeper, Redis
    image: str  # the image's repository (registry prefix included); its tag is always the project version
    service_account_annotations: dict[str, str]  # e.g. a cloud role for object storage (IRSA, workload identity)
    storage: Storage
    kafka: Kafka
    clickhouse: ClickHouse
    redis: Redis
    serve: Serve
    jobs: dict[str, JobSize]


def _build(kind: Any, raw: Any, where: str) -> Any:
    """`raw` (parsed YAML) as `kind`: a dataclass, dict[str, X], int, float, str, or X | None."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return None if raw is None else _build(options[0], raw, where)
    if origin is dict:
        if not isinstance(raw, dict):
            raise ValuesError(f"{where}: expected a mapping, got {raw!r}")
        value_kind = typing.get_args(kind)[1]
        return {str(key): _build(value_kind, item, f"{where}.{key}") for key, item in raw.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(raw, dict):
            raise ValuesError(f"{where}: expected a mapping, got {raw!r}")
        hints = typing.get_type_hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind)}
        if unknown := sorted(set(raw) - set(fields)):
            raise ValuesError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
        missing = [
            name for name, f in fields.items()
            if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValuesError(f"{where}: missing key(s) {missing}")
        return kind(**{name: _build(hints[name], raw[name], f"{where}.{name}") for name in raw})
    if kind is str:
        # Quantities may be written bare (cpu: 4); Kubernetes and the operators take them as strings.
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise ValuesError(f"{where}: expected a string, got {raw!r}")
        return str(raw)
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValuesError(f"{where}: expected an integer, got {raw!r}")
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValuesError(f"{where}: expected a number, got {raw!r}")
        return raw
    raise TypeError(f"no loader for {kind!r}")


def _check(values: Values) -> None:
    """What the types cannot say."""
    problems = []
    if values.kafka.min_insync_replicas > values.kafka.replication:
        problems.append("kafka.min_insync_replicas exceeds kafka.replication: no write could succeed")
    if values.kafka.replication > values.kafka.brokers:
        problems.append("kafka.replication exceeds kafka.brokers")
    if values.serve.gpu_workers.min != 0:
        problems.append("serve.gpu_workers.min must be 0: GPU nodes start only for deployments that ask for GPUs")
    if values.serve.cpu_workers.min > values.serve.cpu_workers.max:
        problems.append("serve.cpu_workers.min exceeds its max")
    for name, overrides in values.serve.deployments.items():
        if unknown := sorted(set(overrides) - set(SERVE_OVERRIDES)):
            problems.append(f"serve.deployments.{name}: only {list(SERVE_OVERRIDES)} can be set, not {unknown}")
        if overrides.get("num_gpus") and not values.serve.gpu_workers.max:
            problems.append(f"serve.deployments.{name} asks for GPUs but serve.gpu_workers.max is 0")
    for name, job in values.jobs.items():
        if job.workers and job.worker is None:
            problems.append(f"jobs.{name}: workers > 0 needs a worker size")
    if problems:
        raise ValuesError("; ".join(problems))


def load_values(size: str, directory: Path = VALUES_DIR) -> Values:
    """The values of `size` (dev or prod)."""
    if size not in SIZES:
        raise ValuesError(f"size must be one of {SIZES}, got {size!r}")
    path = directory / f"{size}.yaml"
    values = _build(Values, yaml.safe_load(path.read_text()), path.name)
    if values.size != size:
        raise ValuesError(f"{path.name} says size {values.size!r}")
    _check(values)
    return values
