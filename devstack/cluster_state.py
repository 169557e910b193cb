"""Where the stack's Ray work runs, asked of the Ray dashboard's APIs (no driver needed): the Serve applications'
replicas with their nodes and process ids, the ingest job's readers and Ray Data read tasks with their nodes; and
what HAProxy (in front of each application's ingress replicas) thinks of each replica, from its stats page."""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from dataclasses import dataclass

from app.config import Settings
from devstack.stack import StackError

APP = "keyscope"  # the REST application's name in serve/config.yaml (its ingress deployment is `ingress`)


def apps() -> list[str]:
    """The applications serve/config.yaml deploys: `keyscope` and `live`."""
    from serve.deploy import app_routes

    return list(app_routes())


def _head_host(settings: Settings) -> str:
    return settings.ray_address.rsplit(":", 1)[0]


def dashboard_url(settings: Settings) -> str:
    """The dashboard, at the head's address (devstack/stack.py)."""
    return f"http://{_head_host(settings)}:{settings.ray_dashboard_port}"


@dataclass(frozen=True)
class Replica:
    deployment: str
    replica_id: str
    node_id: str
    node_ip: str
    pid: int
    state: str


def serve_details(settings: Settings) -> dict:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    return ServeSubmissionClient(dashboard_url(settings)).get_serve_details()


def replicas(settings: Settings, deployment: str | None = None) -> list[Replica]:
    """The replicas of every application (of one deployment, or all), in every state Serve reports. Deployment
    names are unique across serve/config.yaml's applications (`ingress`, …, `live`)."""
    found = []
    applications = serve_details(settings).get("applications", {})
    deployments = [item for app in applications.values() for item in app.get("deployments", {}).items()]
    for name, details in deployments:
        if deployment is not None and name != deployment:
            continue
        for r in details.get("replicas", []):
            found.append(
                Replica(name, r["replica_id"], r.get("node_id") or "", r.get("node_ip") or "", int(r.get("pid") or 0),
                        r["state"])
            )  # fmt: skip
    return found


def app_running(settings: Settings, min_ingress: int = 1) -> bool:
    """True when every application of serve/config.yaml is RUNNING with every deployment HEALTHY, and at least
    `min_ingress` ingress replicas run."""
    try:
        applications = serve_details(settings).get("applications", {})
    except Exception:  # the dashboard restarting, or Serve not started yet
        return False
    for name in apps():
        app = applications.get(name)
        if not app or app.get("status") != "RUNNING":
            return False
        if any(d.get("status") != "HEALTHY" for d in app.get("deployments", {}).values()):
            return False
    ingress = applications[APP].get("deployments", {}).get("ingress", {}).get("replicas", [])
    return sum(r["state"] == "RUNNING" for r in ingress) >= min_ingress


def wait_app_running(settings: Settings, min_ingress: int = 2, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app_running(settings, min_ingress):
            return
        time.sleep(0.5)
    raise StackError(
        f"the Serve applications {', '.join(apps())} are not all RUNNING with {min_ingress} ingress replicas after "
        f"{timeout:.0f} s"
    )


def reader_nodes(settings: Settings) -> list[str]:
    """The node of each live follow-mode reader (pipelines/ingest/readers.py)."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=dashboard_url(settings),
        filters=[("class_name", "=", "PartitionReader"), ("state", "=", "ALIVE")],
        raise_on_missing_output=False,
    )
    return [a.node_id for a in actors]


def read_task_nodes(settings: Settings) -> list[str]:
    """The node of each finished Ray Data read task (`ReadKafka…`, fused with the analysis) the cluster remembers."""
    from ray.util.state import list_tasks

    tasks = list_tasks(
        address=dashboard_url(settings),
        filters=[("state", "=", "FINISHED")],
        limit=10_000,
        raise_on_missing_output=False,
    )
    return [t.node_id for t in tasks if t.name.startswith("ReadKafka")]


@dataclass(frozen=True)
class ProxiedServer:
    """An ingress replica (of an application's ingress deployment) as HAProxy sees it."""

    replica_id: str  # Serve's id, the end of HAProxy's server name
    status: str  # UP, DOWN, MAINT, …
    sessions: int  # requests (sessions) it has been given since HAProxy started


def haproxy_servers(settings: Settings, app: str = APP) -> list[ProxiedServer]:
    """The replicas behind HAProxy's backend of one application (`keyscope`: the ingress replicas; `live`: the live
    replicas; the backup, Serve's fallback proxy, left out), from the stats page the local stack moves beside its
    Ray port (devstack/stack.py, serve_ingress_env), on the head's address (devstack/loopback/sitecustomize.py)."""
    port = int(settings.ray_address.rsplit(":", 1)[1]) + 7
    with urllib.request.urlopen(f"http://{_head_host(settings)}:{port}/stats;csv", timeout=5) as response:
        text = response.read().decode().lstrip("# ")
    servers = []
    for row in csv.DictReader(io.StringIO(text)):
        name = row["svname"]
        if row["pxname"] == f"http-{app}" and name.startswith("SERVE_REPLICA_"):  # Serve's backend name
            servers.append(ProxiedServer(name.rsplit("-", 1)[1], row["status"], int(row["stot"] or 0)))
    return servers
