"""A stack of two Ray nodes on one machine: the services and the Ray head on the host's end of a veth pair, a Ray
worker node in a network namespace behind it (second_node.py), and the Serve app deployed once both are up, so its
replicas spread over both. What tests/e2e/test_scale_out.py and `keyscope bench failover` run on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings, child_environment
from devstack.cluster_state import wait_app_running
from devstack.second_node import SecondNode, Veth, create_network, delete_network
from devstack.stack import LocalStack


@dataclass(frozen=True)
class Ports:
    """The stack's ports. The services and Ray listen on the veth address, the dashboard and the API on loopback."""

    kafka: int
    clickhouse: int
    redis: int
    ray: int  # GCS; Ray's fixed ports take the next nine (devstack/stack.py)
    dashboard: int
    serve: int


def two_node_settings(data_dir: Path, veth: Veth, ports: Ports, extra: Mapping[str, str] | None = None) -> Settings:
    """Settings of a stack whose services, and Ray head, listen on the host's end of `veth`."""
    host = veth.host_ip
    return Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(data_dir),
            "KAFKA_BOOTSTRAP": f"{host}:{ports.kafka}",
            "CLICKHOUSE_URL": f"http://{host}:{ports.clickhouse}/default",
            "REDIS_URL": f"redis://{host}:{ports.redis}/0",
            "RAY_ADDRESS": f"{host}:{ports.ray}",
            "KEYSCOPE_RAY_DASHBOARD_PORT": str(ports.dashboard),
            "KEYSCOPE_SERVE_PORT": str(ports.serve),
            **(extra or {}),
        }
    )


def job_env(stack: LocalStack) -> dict[str, str]:
    """The environment of a Ray job (a driver, e.g. `python -m pipelines.ingest`) on the head's machine: the stack's
    Ray environment, which lets Ray find its node off loopback, with the cluster's address."""
    return child_environment({**stack.ray_env(), "RAY_ADDRESS": stack.settings.ray_address})


@contextmanager
def two_node_stack(
    settings: Settings, veth: Veth, progress: Callable[[str], None] = lambda _: None
) -> Iterator[tuple[LocalStack, SecondNode]]:
    """The running two-node stack; everything stopped and the namespace gone on exit."""
    create_network(veth)
    stack = LocalStack(settings)
    node: SecondNode | None = None
    try:
        stack.up(with_serve=False, progress=progress)
        progress(f"starting a Ray worker node in namespace {veth.namespace} at {veth.node_ip}…")
        node = SecondNode(stack.settings, veth)
        node.start()
        stack.up(progress=progress)  # the services answer: only the Serve app is deployed now
        wait_app_running(stack.settings, min_ingress=2)
        yield stack, node
    finally:
        if node is not None:
            node.stop()
        stack.down()
        delete_network(veth)
