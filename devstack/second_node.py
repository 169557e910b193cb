"""Two hosts on one machine, for a Ray cluster of two nodes: two network namespaces joined by veth pairs, and a Ray
worker node started in the second the way a cluster adds one, `ray start --address=<head>`.

    net = TwoHosts("ks", 77)
    create_network(net)        # ip netns add, ip link add … type veth peer …, addresses, routes
    ...                        # a stack in net.head_ns, its services and Ray head on net.head_ip (two_nodes.py)
    node = SecondNode(settings, net)
    node.start()               # ip netns exec ks-node ray start --address=10.77.0.2:… --node-ip-address=10.77.1.2
    node.kill()                # a host losing power: SIGKILL to every process of the node
    delete_network(net)

    this machine 10.77.0.1 ── 10.77.0.2 head namespace 10.77.1.1 ── 10.77.1.2 node namespace

Why the head is in a namespace too: Ray binds its own servers (GCS, raylets, workers) to 127.0.0.1 only when a node's
address is 127.0.0.1, and to every interface otherwise. A head the node can reach therefore listens on every
interface of wherever it runs; in a namespace of its own those are only the namespace's loopback and veth ends,
which nothing beyond this machine routes to, and this machine's own interfaces stay untouched (the ordinary stack
keeps listening on loopback alone). Forwarders from the node's namespace to this machine's loopback would not do:
Ray's processes call each other at their node's address on ports chosen at run time. So the whole stack runs in the
head's namespace (`LocalStack(settings, namespace=…)`): the broker, the ClickHouse endpoint, Redis, the Ray head,
HAProxy and the jobs. This machine reaches them at `head_ip` as a client; the node reaches `head_ip` through the
head's other veth end (an address of the head's own, so nothing is forwarded).

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
    in_namespace,
    ray_temp_dir,
    stop_session,
    wait_until,
)

OBJECT_STORE_BYTES = 1 << 30  # the worker's share of /dev/shm; its tasks pass small analysed batches


@dataclass(frozen=True)
class TwoHosts:
    """The namespaces `<name>-head` and `<name>-node` and their addresses in 10.<subnet>.0.0/23: a /30 between this
    machine and the head, another between the head and the node."""

    name: str = "ks"  # at most 10 characters: interface names hold 15
    subnet: int = 77

    @property
    def head_ns(self) -> str:
        return f"{self.name}-head"

    @property
    def node_ns(self) -> str:
        return f"{self.name}-node"

    @property
    def host_ip(self) -> str:
        """This machine's end of the pair into the head."""
        return f"10.{self.subnet}.0.1"

    @property
    def head_ip(self) -> str:
        """The head host's address: every service of the stack and the Ray head listen here."""
        return f"10.{self.subnet}.0.2"

    @property
    def head_inner_ip(self) -> str:
        """The head's end of the pair into the node (the node's route to the head)."""
        return f"10.{self.subnet}.1.1"

    @property
    def node_ip(self) -> str:
        return f"10.{self.subnet}.1.2"

    def links(self) -> tuple[str, str, str, str]:
        """The interfaces: this machine's and the head's ends of the first pair, the head's and the node's of the
        second."""
        return f"{self.name}-a0", f"{self.name}-a1", f"{self.name}-b0", f"{self.name}-b1"


def _ip(*args: str, namespace: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(in_namespace(["ip", *args], namespace), capture_output=True, text=True, check=False)


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


def create_network(net: TwoHosts) -> None:
    """Both namespaces with their loopback up, the two veth pairs with their addresses, and the node's route to the
    head (anything left of an earlier run with the same names is removed first)."""
    delete_network(net)
    host_end, head_end, head_inner_end, node_end = net.links()
    head, node = net.head_ns, net.node_ns
    steps: list[tuple[tuple[str, ...], str | None]] = [
        (("netns", "add", head), None),
        (("netns", "add", node), None),
        (("link", "add", host_end, "type", "veth", "peer", "name", head_end), None),
        (("link", "set", head_end, "netns", head), None),
        (("link", "add", head_inner_end, "type", "veth", "peer", "name", node_end), None),
        (("link", "set", head_inner_end, "netns", head), None),
        (("link", "set", node_end, "netns", node), None),
        (("addr", "add", f"{net.host_ip}/30", "dev", host_end), None),
        (("link", "set", host_end, "up"), None),
        (("addr", "add", f"{net.head_ip}/30", "dev", head_end), head),
        (("addr", "add", f"{net.head_inner_ip}/30", "dev", head_inner_end), head),
        (("link", "set", head_end, "up"), head),
        (("link", "set", head_inner_end, "up"), head),
        (("link", "set", "lo", "up"), head),
        (("addr", "add", f"{net.node_ip}/30", "dev", node_end), node),
        (("link", "set", node_end, "up"), node),
        (("link", "set", "lo", "up"), node),
        (("route", "add", "default", "via", net.head_inner_ip), node),
    ]
    for args, namespace in steps:
        result = _ip(*args, namespace=namespace)
        if result.returncode != 0:
            raise StackError(f"ip {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


def delete_network(net: TwoHosts) -> None:
    """Remove both namespaces (which takes the veth ends in them, and so both pairs) and this machine's end if left."""
    _ip("netns", "del", net.node_ns)
    _ip("netns", "del", net.head_ns)
    _ip("link", "del", net.links()[0])


def namespace_pids(namespace: str) -> list[int]:
    """Every process running in the namespace."""
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


class SecondNode:
    """A Ray worker node in the node namespace of `net`, joined to the head of the stack `settings` describe."""

    def __init__(self, settings: Settings, net: TwoHosts, num_cpus: int = LOGICAL_CPUS) -> None:
        head_host = LocalStack(settings)._ray_address()[0]
        if head_host != net.head_ip:
            raise StackError(
                f"the Ray head at {settings.ray_address} is not the head host of the network ({net.head_ip}): "
                "a node in the namespace cannot reach it"
            )
        self.settings = settings_with_local_secrets(settings)
        self.net = net
        self.num_cpus = num_cpus
        self.process: subprocess.Popen | None = None
        self.node_id: str | None = None
        self.log_path = settings.data_dir / "logs" / f"ray-{net.node_ns}.log"

    def temp_dir(self) -> Path:
        return Path(f"{ray_temp_dir(self.settings)}-{self.net.node_ns}")

    def start(self, timeout: float = 120) -> str:
        """Start the node and wait until the head lists it alive; returns its Ray node id."""
        argv = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            f"--address={self.settings.ray_address}",
            f"--node-ip-address={self.net.node_ip}",
            "--block",
            f"--temp-dir={self.temp_dir()}",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = child_environment(LocalStack(self.settings).ray_env())
        with open(self.log_path, "ab") as log_file:
            # A session of its own, like the head: its processes are found (and stopped) by that session as well.
            self.process = subprocess.Popen(
                in_namespace(argv, self.net.node_ns),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
            )
        wait_until(
            lambda: self._alive_node_id() is not None,
            f"Ray node at {self.net.node_ip} in namespace {self.net.node_ns}",
            timeout,
            self.process,
            self.log_path,
        )
        node_id = self._alive_node_id()
        if node_id is None:
            raise StackError(f"the Ray node at {self.net.node_ip} left the cluster as soon as it joined")
        self.node_id = node_id
        return node_id

    def _alive_node_id(self) -> str | None:
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(
                address=LocalStack(self.settings).dashboard_url(),
                filters=[("node_ip", "=", self.net.node_ip), ("state", "=", "ALIVE")],
                raise_on_missing_output=False,
            )
        except Exception:  # the dashboard busy or restarting: ask again
            return None
        return nodes[0].node_id if nodes else None

    def pids(self) -> list[int]:
        """Every process of the node: its `ray start` session and whatever runs in its namespace."""
        found = set(namespace_pids(self.net.node_ns))
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
