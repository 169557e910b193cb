"""Keeps the local stack's Ray processes listening on their node's own address: 127.0.0.1 on the ordinary stack.

Ray 2.60 binds two listeners to every interface with no setting to change it: each Serve replica's
inter-deployment gRPC server (`[::]:0`) and HAProxy's stats and Prometheus frontends (`bind *:PORT`, `bind :PORT`).
And an ingress replica's direct-ingress HTTP server, which HAProxy routes to, binds `http_options.host`, one address
for every node. The local stack puts this directory on its Ray nodes' PYTHONPATH (devstack/stack.py), so every Ray
worker process runs this file at start-up (Python imports `sitecustomize` from sys.path) and the modules are patched
as soon as they are imported:

- the gRPC server and HAProxy's two frontends bind the address of the node they run on (its `--node-ip-address`,
  asked of Ray; other replicas call the gRPC server there);
- the direct-ingress server binds 127.0.0.1 on the head, where HAProxy runs and calls its own node's replicas at
  127.0.0.1, and the node's address on any other node (a two-node stack, devstack/two_nodes.py).

A cluster (KubeRay) does not use it: there the pod network is the boundary. tests/integration/test_stack.py checks
that no process of the stack listens beyond loopback; tests/e2e/test_scale_out.py that HAProxy reaches the replicas
on both nodes of a two-node stack.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType


def _node_ip() -> str:
    """The address of this worker's node; loopback in a process not (yet) connected to a node."""
    import ray._private.worker
    import ray.util

    if ray._private.worker._global_node is None:
        return "127.0.0.1"
    return ray.util.get_node_ip_address()


def _haproxy_templates(module: ModuleType) -> None:
    node_ip = _node_ip()
    binds = {
        "bind :{{ config.metrics_port }}": f"bind {node_ip}:{{{{ config.metrics_port }}}}",
        "bind *:{{ config.stats_port }}": f"bind {node_ip}:{{{{ config.stats_port }}}}",
    }
    for name, value in list(vars(module).items()):
        if isinstance(value, str) and any(old in value for old in binds):
            for old, new in binds.items():
                value = value.replace(old, new)
            setattr(module, name, value)


def _off_the_head() -> bool:
    import ray

    return _node_ip() != ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]


def _replica(module: ModuleType) -> None:
    add_port = getattr(module, "add_port_to_grpc_server", None)
    if add_port is not None:

        def on_node_address(server, address: str):
            return add_port(server, address.replace("[::]:", f"{_node_ip()}:", 1))

        module.add_port_to_grpc_server = on_node_address

    start_http = getattr(module, "start_asgi_http_server", None)
    if start_http is not None:
        # HAProxy (on the head) calls a replica on its own node at 127.0.0.1 and one on another node at that node's
        # address.
        async def on_node_http(app, http_options, *args, **kwargs):
            host = _node_ip() if _off_the_head() else "127.0.0.1"
            return await start_http(app, http_options.model_copy(update={"host": host}), *args, **kwargs)

        module.start_asgi_http_server = on_node_http


_PATCHES = {
    "ray.serve._private.haproxy_templates": _haproxy_templates,
    "ray.serve._private.replica": _replica,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
