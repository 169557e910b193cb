"""The plain Kubernetes objects: namespaces, the ConfigMap every Ray container reads, the service account and the
model registry's volume, and the Secret templates (placeholders only: the real Secrets are created by hand, see
docs/kubernetes.md)."""

from __future__ import annotations

from app.config import Settings
from cluster import wiring
from cluster.values import Values

LABELS = {"app.kubernetes.io/name": wiring.APP, "app.kubernetes.io/part-of": wiring.APP}


def meta(name: str, namespace: str | None = None, **labels: str) -> dict:
    out: dict = {"name": name}
    if namespace:
        out["namespace"] = namespace
    out["labels"] = {**LABELS, **labels}
    return out


def namespaces(values: Values) -> list[dict]:
    names = dict.fromkeys([values.namespace, values.data_namespace])  # one, where both are the same
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name)} for name in names]


def config_map(values: Values) -> dict:
    """keyscope-config: where Kafka is, the topics, and where cold data and the warehouse go."""
    defaults = Settings()
    data = {
        "KAFKA_BOOTSTRAP": wiring.kafka_bootstrap(values),
        "KEYSCOPE_TOPIC": defaults.keystroke_topic,
        "KEYSCOPE_DLQ_TOPIC": defaults.dlq_topic,
        "KEYSCOPE_TOPIC_PARTITIONS": str(values.kafka.topic_partitions),
        "KEYSCOPE_COLD_URI": values.storage.cold_uri,
        "KEYSCOPE_WAREHOUSE_URI": values.storage.warehouse_uri,
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(wiring.CONFIG_MAP, values.namespace),
            "data": data}


def service_account(values: Values) -> dict:
    metadata = meta(wiring.SERVICE_ACCOUNT, values.namespace)
    if values.service_account_annotations:
        metadata["annotations"] = dict(values.service_account_annotations)
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def models_claim(values: Values) -> dict:
    """The model registry's artifact folders: written by the training jobs' drivers, read by every predictor
    replica and the ingest job's drift check, on whatever node they run, so ReadWriteMany."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(wiring.MODELS_CLAIM, values.namespace),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": values.storage.models.storage_class,
            "resources": {"requests": {"storage": values.storage.models.size}},
        },
    }


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, namespace), "type": "Opaque",
            "stringData": data}


def secret_templates(values: Values) -> dict[str, dict]:
    """The three Secrets, by file name, with CHANGE-ME where a secret goes. The ClickHouse and Redis passwords
    appear twice (their server's Secret and inside the URLs keyscope uses): they must match."""
    placeholder = wiring.PLACEHOLDER
    return {
        "keyscope-secrets.yaml": _secret(wiring.SECRET, values.namespace, {
            "CLICKHOUSE_URL": wiring.clickhouse_url(values),
            "REDIS_URL": wiring.redis_url(values),
            "KEYSCOPE_TOKEN_SECRETS": placeholder,
            "KEYSCOPE_SERVICE_KEYS": f"platform:ksk_{placeholder}",
            "KEYSCOPE_MYSQL_DSN": f"mysql://keyscope:{placeholder}@mysql.example:3306/typing",
        }),
        "keyscope-clickhouse.yaml": _secret(wiring.CLICKHOUSE_SECRET, values.data_namespace, {"password": placeholder}),
        "keyscope-redis.yaml": _secret(wiring.REDIS_SECRET, values.data_namespace, {"password": placeholder}),
    }
