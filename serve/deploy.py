"""Deploy the Serve application onto the running Ray cluster: `python -m serve.deploy`.

HTTP binds Settings.serve_host (127.0.0.1 locally); the app outlives this process.
"""

from __future__ import annotations

import logging

import ray
from ray import serve

from app.config import Settings


def deploy(settings: Settings) -> None:
    """Start Serve's proxy on the configured host/port and (re)deploy the keyscope app."""
    from serve.app import app

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
    serve.run(app, name="keyscope", route_prefix="/", blocking=False)


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    deploy(Settings.from_env())
    print("keyscope Serve app deployed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
