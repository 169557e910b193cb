"""HTTP calls to the session stack's API as a typing platform's backend (the stack's service key)."""

from __future__ import annotations

from typing import Any

import httpx

SERVICE_HEADERS: dict[str, str] = {}  # filled by the `stack` fixture once the stack's secrets exist


def _headers(extra: Any) -> dict[str, str]:
    return {**SERVICE_HEADERS, **(extra or {})}


def api_get(url: str, headers: dict[str, str] | None = None, **options: Any) -> httpx.Response:
    return httpx.get(url, headers=_headers(headers), **{"timeout": 60, **options})


def api_post(url: str, headers: dict[str, str] | None = None, **options: Any) -> httpx.Response:
    return httpx.post(url, headers=_headers(headers), **{"timeout": 60, **options})


def api_client(api_url: str, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=api_url, headers=SERVICE_HEADERS, timeout=timeout)
