"""Redis: values for the Bitnami `redis` Helm chart, one primary without persistence.

One primary, not Redis Cluster: keyscope's clients are plain `redis` clients (app/cache.py and the stores beside
it) that send multi-key commands (MGET of many typists' features, WATCH/MULTI transactions), which a Redis Cluster
refuses across hash slots. No replicas either: without persistence a primary that restarts comes back empty and its
replicas would copy the empty set, so they would add cost, not safety.

No persistence because what keyscope keeps in Redis is a cache or can be rebuilt (REDIS_NOTES, which the rendered
file carries as its header). The eviction policy spares keys without a TTL, the rebuildable state, so a full Redis
evicts cached reads first and refuses writes rather than drop a typist's features.
"""

from __future__ import annotations

import re

from cluster import wiring
from cluster.values import Values

REDIS_NOTES = """\
What a Redis restart loses, and how it comes back:
  - cached reads (keyscope:user:{id}, TTL KEYSCOPE_INSIGHTS_TTL_S): refilled on the next read and by the hourly
    insights job;
  - rate-limit buckets: start full again;
  - practice texts' hot set: refilled from ClickHouse practice_texts on the next request for a signature;
  - the practice generation queues: the daily practice job also writes for every typist active in the last 7 days;
  - per-typist practice records (keyscope:practice:served:{id}, :signature:{id}): the next texts may repeat a
    recent one, and the signature is recorded again at the typist's next insights refresh;
  - online features (keyscope:features:{id}, no TTL): predictions for those typists are the population's until
    rebuilt from ClickHouse by the RayJob keyscope-features (`python -m pipelines.features`), safe while ingest
    runs."""

_MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")


def maxmemory(container_memory: str) -> str:
    """Redis's memory limit: seven eighths of the container's, the rest for the process, buffers and forks."""
    match = _MEMORY.match(container_memory)
    if match is None:
        raise ValueError(f"redis.memory must be a whole number of Mi or Gi, got {container_memory!r}")
    mebibytes = int(match[1]) * (1024 if match[2] == "Gi" else 1)
    return f"{mebibytes * 7 // 8}mb"


def chart_values(values: Values) -> dict:
    quantities = {"cpu": values.redis.cpu, "memory": values.redis.memory}
    return {
        "architecture": "standalone",
        "auth": {"enabled": True, "existingSecret": wiring.REDIS_SECRET, "existingSecretPasswordKey": "password"},
        "master": {
            "persistence": {"enabled": False},
            "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        },
        "replica": {"replicaCount": 0},
        "commonConfiguration": "\n".join([
            "appendonly no",
            'save ""',
            f"maxmemory {maxmemory(values.redis.memory)}",
            "maxmemory-policy volatile-lru",
        ]) + "\n",
    }
