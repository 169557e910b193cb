"""A stack of two Ray nodes on one machine: the whole stack (services, Ray head, HAProxy, jobs) in the head's network
namespace, a Ray worker node in a second namespace (second_node.py), and the Serve app deployed once both are up, so
its replicas spread over both. What tests/e2e/test_scale_out.py and `keyscope bench failover` run on."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings, child_environment
from devstack.cluster_state import wait_app_running
from devstack.second_node import SecondNode, TwoHosts, create_network, delete_network
from devstack.stack import LocalStack, in_namespace


@dataclass(frozen=True)
class Ports:
    """The stack's ports, all on the head's address."""

    kafka: int
    clickhouse: int
    redis: int
    ray: int  # GCS; Ray's fixed ports take the next nine (devstack/stack.py)
    dashboard: int
    serve: int


def two_node_settings(data_dir: Path, net: TwoHosts, ports: Ports, extra: Mapping[str, str] | None = None) -> Settings:
    """Settings of a stack whose services, Ray head and API listen on the head's address."""
    host = net.head_ip
    return Settings.from_env(
        {
            "KEYSCOPE_DATA_DIR": str(data_dir),
            "KAFKA_BOOTSTRAP": f"{host}:{ports.kafka}",
            "CLICKHOUSE_URL": f"http://{host}:{ports.clickhouse}/default",
            "REDIS_URL": f"redis://{host}:{ports.redis}/0",
            "RAY_ADDRESS": f"{host}:{ports.ray}",
            "KEYSCOPE_RAY_DASHBOARD_PORT": str(ports.dashboard),
            "KEYSCOPE_SERVE_HOST": host,
            "KEYSCOPE_SERVE_PORT": str(ports.serve),
            **(extra or {}),
        }
    )


def start_job(stack: LocalStack, argv: list[str], log_path: Path) -> subprocess.Popen:
    """A Ray job (a driver, e.g. `python -m pipelines.ingest`) started on the head host: in its namespace, with the
    stack's Ray environment and the cluster's address; its output goes to `log_path`."""
    env = child_environment({**stack.ray_env(), "RAY_ADDRESS": stack.settings.ray_address})
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            in_namespace(argv, stack.namespace), env=env, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip


@contextmanager
def two_node_stack(
    settings: Settings, net: TwoHosts, progress: Callable[[str], None] = lambda _: None
) -> Iterator[tuple[LocalStack, SecondNode]]:
    """The running two-node stack; everything stopped and both namespaces gone on exit."""
    create_network(net)
    stack = LocalStack(settings, namespace=net.head_ns)
    node: SecondNode | None = None
    try:
        stack.up(with_serve=False, progress=progress)
        progress(f"starting a Ray worker node in namespace {net.node_ns} at {net.node_ip}…")
        node = SecondNode(stack.settings, net)
        node.start()
        stack.up(progress=progress)  # the services answer: only the Serve app is deployed now
        wait_app_running(stack.settings, min_ingress=2)
        yield stack, node
    finally:
        if node is not None:
            node.stop()
        stack.down()
        delete_network(net)
