"""Keeps the local stack's Ray processes listening on loopback only.

Ray 2.60 binds two listeners to every interface with no setting to change it: each Serve replica's
inter-deployment gRPC server (`[::]:0`) and HAProxy's stats and Prometheus frontends (`bind *:PORT`, `bind :PORT`).
The local stack puts this directory on the Ray head's PYTHONPATH (devstack/stack.py), so every Ray worker process runs
this file at start-up (Python imports `sitecustomize` from sys.path) and the two modules are patched to bind
127.0.0.1 as soon as they are imported. A cluster (KubeRay) does not use it: there the pod network is the boundary.
tests/integration/test_stack.py checks that no process of the stack listens beyond loopback.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_TEMPLATE_BINDS = {
    "bind :{{ config.metrics_port }}": "bind 127.0.0.1:{{ config.metrics_port }}",
    "bind *:{{ config.stats_port }}": "bind 127.0.0.1:{{ config.stats_port }}",
}


def _haproxy_templates(module: ModuleType) -> None:
    for name, value in list(vars(module).items()):
        if isinstance(value, str) and any(old in value for old in _TEMPLATE_BINDS):
            for old, new in _TEMPLATE_BINDS.items():
                value = value.replace(old, new)
            setattr(module, name, value)


def _replica(module: ModuleType) -> None:
    add_port = getattr(module, "add_port_to_grpc_server", None)
    if add_port is None:
        return

    def on_loopback(server, address: str):
        return add_port(server, address.replace("[::]:", "127.0.0.1:", 1))

    module.add_port_to_grpc_server = on_loopback


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
