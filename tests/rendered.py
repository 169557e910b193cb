"""The deployment as `keyscope cluster render` writes it, for the tests that check it: both sizes, rendered once
per test session, as files and as (id, document) pairs."""

from __future__ import annotations

import functools
import json

import yaml

from cluster.render import render
from cluster.values import SIZES

NOT_MANIFESTS = ("redis/values.yaml",)  # Helm values, not a Kubernetes object


@functools.cache
def files(size: str) -> dict[str, str]:
    return render(size)


@functools.cache
def _parsed(size: str) -> str:
    """The size's objects as one JSON text: parsed once, and a fresh copy for every caller (tests may edit theirs)."""
    found = []
    for path, text in files(size).items():
        if path in NOT_MANIFESTS:
            continue
        for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            found.append((f"{size}/{path}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return json.dumps(found)


def documents(size: str) -> list[tuple[str, dict]]:
    """Every Kubernetes object of the size: (`size/path:Kind/name`, document)."""
    return [(name, doc) for name, doc in json.loads(_parsed(size))]


def all_documents() -> list[tuple[str, dict]]:
    return [item for size in SIZES for item in documents(size)]
