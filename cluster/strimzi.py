"""Kafka on Strimzi 1.x (`kafka.strimzi.io/v1`: KRaft only, brokers and controllers described by KafkaNodePools) and
the two topics keyscope uses, managed by Strimzi's topic operator."""

from __future__ import annotations

from app.config import Settings
from cluster import wiring
from cluster.core import meta
from cluster.values import Resources, Values, Volume

API = "kafka.strimzi.io/v1"


def _resources(resources: Resources) -> dict:
    quantities = {"cpu": resources.cpu, "memory": resources.memory}
    return {"requests": dict(quantities), "limits": dict(quantities)}


def _storage(volume: Volume) -> dict:
    # kraftMetadata: shared puts the KRaft metadata log on the same volume, as Strimzi's own examples do.
    return {
        "type": "jbod",
        "volumes": [
            {"id": 0, "type": "persistent-claim", "size": volume.size, "class": volume.storage_class,
             "deleteClaim": False, "kraftMetadata": "shared"}
        ],
    }


def _pool(values: Values, name: str, replicas: int, roles: list[str], resources: Resources, volume: Volume) -> dict:
    metadata = meta(name, values.data_namespace)
    metadata["labels"]["strimzi.io/cluster"] = wiring.KAFKA_CLUSTER
    return {
        "apiVersion": API,
        "kind": "KafkaNodePool",
        "metadata": metadata,
        "spec": {"replicas": replicas, "roles": roles, "storage": _storage(volume), "resources": _resources(resources)},
    }


def node_pools(values: Values) -> list[dict]:
    kafka = values.kafka
    if not kafka.controllers:
        return [_pool(values, "dual-role", kafka.brokers, ["controller", "broker"], kafka.broker, kafka.broker_storage)]
    return [
        _pool(values, "controller", kafka.controllers, ["controller"], kafka.controller, kafka.controller_storage),
        _pool(values, "broker", kafka.brokers, ["broker"], kafka.broker, kafka.broker_storage),
    ]


def kafka_cluster(values: Values) -> dict:
    kafka = values.kafka
    spec: dict = {
        # No version: the operator's default Kafka release, upgraded with the operator.
        "listeners": [
            {
                # keyscope's clients speak plaintext inside the cluster; only keyscope's namespace may connect.
                "name": "plain",
                "port": 9092,
                "type": "internal",
                "tls": False,
                "networkPolicyPeers": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": values.namespace}}}
                ],
            }
        ],
        "config": {
            # Topics come from KafkaTopics only: a misspelt KEYSCOPE_TOPIC fails loudly instead of creating one.
            "auto.create.topics.enable": False,
            "default.replication.factor": kafka.replication,
            "min.insync.replicas": kafka.min_insync_replicas,
            "offsets.topic.replication.factor": kafka.replication,
            "transaction.state.log.replication.factor": kafka.replication,
            "transaction.state.log.min.isr": kafka.min_insync_replicas,
        },
    }
    if kafka.rack_topology_key:
        # Each broker takes its rack from its node's zone label; replicas of a partition go to different racks.
        spec["rack"] = {"topologyKey": kafka.rack_topology_key}
    return {
        "apiVersion": API,
        "kind": "Kafka",
        "metadata": meta(wiring.KAFKA_CLUSTER, values.data_namespace),
        "spec": {"kafka": spec, "entityOperator": {"topicOperator": {}}},
    }


def _topic(values: Values, name: str, partitions: int, config: dict) -> dict:
    metadata = meta(name, values.data_namespace)
    metadata["labels"]["strimzi.io/cluster"] = wiring.KAFKA_CLUSTER
    return {
        "apiVersion": API,
        "kind": "KafkaTopic",
        "metadata": metadata,
        "spec": {"topicName": name, "partitions": partitions, "replicas": values.kafka.replication, "config": config},
    }


def topics(values: Values) -> list[dict]:
    """The keystroke topic (keyed by user, so a typist's tests keep their order) and its dead-letter topic."""
    defaults = Settings()
    kafka = values.kafka
    common = {"cleanup.policy": "delete", "min.insync.replicas": kafka.min_insync_replicas}
    return [
        _topic(values, defaults.keystroke_topic, kafka.topic_partitions, {
            **common,
            "retention.ms": kafka.retention_hours * 3600 * 1000,
            # The API's producer batches up to KEYSCOPE_MAX_MESSAGE_BYTES (app/kafka.py); larger ones never reach here.
            "max.message.bytes": defaults.max_message_bytes,
        }),
        # Dead letters wait for a fix and a replay (`keyscope dlq replay`): kept four weeks, and room for a letter's
        # headers beside the message it carries.
        _topic(values, defaults.dlq_topic, kafka.dlq_partitions, {
            **common,
            "retention.ms": 28 * 24 * 3600 * 1000,
            "max.message.bytes": 2 * defaults.max_message_bytes,
        }),
    ]
