"""A second Ray node on this machine, joined the way a cluster adds a host: its own network namespace, reached
over a veth pair, started with `ray start --address=<head>`.

    veth = Veth("ks-scaleout", "10.77.0.1", "10.77.0.2")
    create_network(veth)                       # ip netns add, ip link add … type veth peer …, addresses, up
    node = SecondNode(settings, veth)          # settings: a stack whose services listen on veth.host_ip
    node.start()                               # ip netns exec NS ray start --address=… --node-ip-address=… --block
    node.kill()                                # a host crash: SIGKILL to every process of the node
    delete_network(veth)

Inside a namespace, 127.0.0.1 is the namespace's own loopback, so the worker reaches nothing of the ordinary stack.
The choice made here: a stack that takes a second node listens on the host's end of the pair instead. Its
settings point every service there (KAFKA_BOOTSTRAP, CLICKHOUSE_URL, REDIS_URL and RAY_ADDRESS on `veth.host_ip`),
and `LocalStack` binds each service, and the Ray head's `--node-ip-address`, to the host of its URL, so no code
changes for that. Only the Serve app's HTTP port (HAProxy, on the head) and the Ray dashboard stay on 127.0.0.1.
The veth address is one only this machine's namespaces route to; the ordinary stack is untouched and listens on
loopback alone. The other way, forwarders in the namespace to the host's loopback, would work for the broker,
ClickHouse and Redis but not for Ray: Ray's processes talk to each other on ports chosen at run time, at each
node's own address, so the head must have one the worker can reach.

Each Ray listener that would bind every interface or the Serve config's host binds the address of the node it runs
on (devstack/loopback/sitecustomize.py): the head's veth end, or this node's.

The node runs with the head's environment (`LocalStack.ray_env`: the same virtualenv, settings, secrets and Serve
settings), its own temp dir (Ray's sockets and logs) and as many logical CPUs as the head. It is stopped by its
process ids, never `ray stop`, which ends every Ray process on the machine whatever its namespace (the process
table is shared).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.auth import settings_with_local_secrets
from app.config import Settings, child_environment
from devstack.stack import (
    LOGICAL_CPUS,
    LocalStack,
    StackError,
    _pid_alive,
    _session_members,
    ray_temp_dir,
    stop_session,
    wait_until,
)

OBJECT_STORE_BYTES = 1 << 30  # the worker's share of /dev/shm; its tasks pass small analysed batches


@dataclass(frozen=True)
class Veth:
    """A namespace and the veth pair into it: `host_ip` on the host's end, `node_ip` inside, one /30 between."""

    namespace: str = "ks-node2"
    host_ip: str = "10.77.0.1"
    node_ip: str = "10.77.0.2"
    prefix: int = 30

    @property
    def host_link(self) -> str:
        return f"{self.namespace[:10]}-h"  # interface names hold at most 15 characters

    @property
    def node_link(self) -> str:
        return f"{self.namespace[:10]}-n"


def _ip(*args: str, namespace: str | None = None) -> subprocess.CompletedProcess:
    argv = ["ip", *(["netns", "exec", namespace, "ip"] if namespace else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _checked(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise StackError(f"{what} failed: {(result.stderr or result.stdout).strip()}")


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here (no `ip`, not root, no kernel support), or None if they can:
    found by adding and deleting one."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = "ks-probe"
    _ip("netns", "del", probe)
    added = _ip("netns", "add", probe)
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip() or added.returncode}"
    _ip("netns", "del", probe)
    return None


def create_network(veth: Veth) -> None:
    """The namespace with its loopback up, and the veth pair with an address and a route on each end (anything
    left of an earlier run with the same names is removed first)."""
    delete_network(veth)
    steps = [
        (("netns", "add", veth.namespace), None),
        (("link", "add", veth.host_link, "type", "veth", "peer", "name", veth.node_link), None),
        (("link", "set", veth.node_link, "netns", veth.namespace), None),
        (("addr", "add", f"{veth.host_ip}/{veth.prefix}", "dev", veth.host_link), None),
        (("link", "set", veth.host_link, "up"), None),
        (("addr", "add", f"{veth.node_ip}/{veth.prefix}", "dev", veth.node_link), veth.namespace),
        (("link", "set", veth.node_link, "up"), veth.namespace),
        (("link", "set", "lo", "up"), veth.namespace),
    ]
    for args, namespace in steps:
        _checked(_ip(*args, namespace=namespace), "ip " + " ".join(args))


def delete_network(veth: Veth) -> None:
    """Remove the namespace (which takes its end of the pair, and so the pair) and the host's end if it is left."""
    _ip("netns", "del", veth.namespace)
    _ip("link", "del", veth.host_link)


def namespace_pids(namespace: str) -> list[int]:
    """Every process running in the namespace."""
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


class SecondNode:
    """A Ray worker node in the namespace of `veth`, joined to the head of the stack `settings` describe."""

    def __init__(self, settings: Settings, veth: Veth, num_cpus: int = LOGICAL_CPUS) -> None:
        head_host = LocalStack(settings)._ray_address()[0]
        if head_host != veth.host_ip:
            raise StackError(
                f"the Ray head at {settings.ray_address} is not on the host's end of the veth pair ({veth.host_ip}): "
                "a node in the namespace cannot reach it"
            )
        self.settings = settings_with_local_secrets(settings)
        self.veth = veth
        self.num_cpus = num_cpus
        self.process: subprocess.Popen | None = None
        self.node_id: str | None = None
        self.log_path = settings.data_dir / "logs" / f"ray-{veth.namespace}.log"

    def temp_dir(self) -> Path:
        return Path(f"{ray_temp_dir(self.settings)}-{self.veth.namespace}")

    def start(self, timeout: float = 120) -> str:
        """Start the node and wait until the head lists it alive; returns its Ray node id."""
        stack = LocalStack(self.settings)
        argv = [
            "ip", "netns", "exec", self.veth.namespace,
            str(Path(sys.executable).with_name("ray")),
            "start",
            f"--address={self.settings.ray_address}",
            f"--node-ip-address={self.veth.node_ip}",
            "--block",
            f"--temp-dir={self.temp_dir()}",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = child_environment(stack.ray_env())
        environment.pop("RAY_ADDRESS", None)
        with open(self.log_path, "ab") as log_file:
            # A session of its own, like the head: its processes are found (and stopped) by that session as well.
            self.process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
            )
        wait_until(
            lambda: self._alive_node_id() is not None,
            f"Ray node at {self.veth.node_ip} in namespace {self.veth.namespace}",
            timeout,
            self.process,
            self.log_path,
        )
        node_id = self._alive_node_id()
        if node_id is None:
            raise StackError(f"the Ray node at {self.veth.node_ip} left the cluster as soon as it joined")
        self.node_id = node_id
        return node_id

    def _alive_node_id(self) -> str | None:
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(
                address=LocalStack(self.settings).dashboard_url(),
                filters=[("node_ip", "=", self.veth.node_ip), ("state", "=", "ALIVE")],
                raise_on_missing_output=False,
            )
        except Exception:  # the dashboard busy or restarting: ask again
            return None
        return nodes[0].node_id if nodes else None

    def pids(self) -> list[int]:
        """Every process of the node: its `ray start` session and whatever runs in its namespace."""
        found = set(namespace_pids(self.veth.namespace))
        if self.process is not None:
            found |= set(_session_members(self.process.pid))
        return sorted(p for p in found if _pid_alive(p))

    def kill(self) -> int:
        """SIGKILL every process of the node at once (a host that loses power); returns how many there were."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.1)
        if self.process is not None:
            self.process.wait(timeout=10)
        return len(pids)

    def stop(self) -> None:
        """Stop the node cleanly (SIGINT to `ray start --block`, as for the head), then anything left in it."""
        if self.process is not None and self.process.poll() is None:
            stop_session(self.process.pid)
        self.kill()
