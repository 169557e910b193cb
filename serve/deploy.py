"""Deploy serve/config.yaml (the deploy contract) onto the running Ray cluster: `python -m serve.deploy`.

The config goes through the dashboard's Serve REST API, exactly as `serve deploy` and KubeRay's RayService
submit it; only `http_options` host and port are taken from Settings (127.0.0.1:8000 locally). It holds two
applications, `keyscope` and `live` (`app_routes`); each answers GET <its route prefix>/healthz once it serves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings

CONFIG_PATH = Path(__file__).with_name("config.yaml")
log = logging.getLogger("keyscope.deploy")


def deploy_config(settings: Settings, path: Path = CONFIG_PATH) -> dict[str, Any]:
    """The deploy contract with this environment's HTTP host and port."""
    config = yaml.safe_load(path.read_text())
    config.setdefault("http_options", {}).update(host=settings.serve_host, port=settings.serve_port)
    return config


def app_routes(path: Path = CONFIG_PATH) -> dict[str, str]:
    """Each application of the deploy contract by name, with its route prefix."""
    return {app["name"]: app["route_prefix"] for app in yaml.safe_load(path.read_text())["applications"]}


def health_path(route_prefix: str) -> str:
    """Where an application of the contract answers a liveness check (serve/routes.py): /healthz, /v1/live/healthz."""
    return route_prefix.rstrip("/") + "/healthz"


def deploy(settings: Settings) -> None:
    """Submit the Serve config to the cluster's dashboard; the applications outlive this process."""
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    dashboard = f"http://127.0.0.1:{settings.ray_dashboard_port}"
    ServeSubmissionClient(dashboard).deploy_applications(deploy_config(settings))
    log.info("submitted %s to %s", CONFIG_PATH.name, dashboard)


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    deploy(Settings.from_env())
    print(f"keyscope Serve config submitted: applications {', '.join(app_routes())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
