"""How keyscope's own tools (CLI, simulator, benchmarks) call the API: as a typing platform's backend would,
with the first configured service key."""

from __future__ import annotations

from app.auth import parse_service_key, settings_with_local_secrets
from app.config import Settings


def service_headers(settings: Settings) -> dict[str, str]:
    """`Authorization` for the API with the configured (or the local stack's) first service key."""
    settings = settings_with_local_secrets(settings)
    if not settings.service_keys:
        raise ValueError("no service key configured: run `keyscope up` or set KEYSCOPE_SERVICE_KEYS")
    return {"Authorization": "Bearer " + parse_service_key(settings.service_keys[0])[1].decode()}


def api_url(settings: Settings) -> str:
    return f"http://{settings.serve_host}:{settings.serve_port}"
