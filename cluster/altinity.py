"""ClickHouse on the Altinity operator: a ClickHouseKeeperInstallation (replication metadata and ON CLUSTER DDL)
and a ClickHouseInstallation of shards × replicas, the layout the generated DDL (app/clickhouse/cluster_ddl.py)
expects: it runs ON CLUSTER '{cluster}', replicates by '{shard}' and '{replica}' and shards Distributed tables over
'{cluster}', macros the operator sets on every server from this installation's one cluster.

No S3 disk: keyscope's cold data leaves ClickHouse as Parquet files written by the archive job (app/cold.py,
KEYSCOPE_COLD_URI), not as a ClickHouse storage tier, so each server has one hot volume."""

from __future__ import annotations

from cluster import wiring
from cluster.core import meta
from cluster.values import Resources, Values, Volume

API = "clickhouse.altinity.com/v1"
KEEPER_API = "clickhouse-keeper.altinity.com/v1"


def _resources(resources: Resources) -> dict:
    quantities = {"cpu": resources.cpu, "memory": resources.memory}
    return {"requests": dict(quantities), "limits": dict(quantities)}


def _claim(name: str, volume: Volume) -> dict:
    return {
        "name": name,
        # Retain: deleting the installation (or scaling it down) keeps the data's volumes.
        "reclaimPolicy": "Retain",
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": volume.storage_class,
            "resources": {"requests": {"storage": volume.size}},
        },
    }


def keeper(values: Values) -> dict:
    ch = values.clickhouse
    return {
        "apiVersion": KEEPER_API,
        "kind": "ClickHouseKeeperInstallation",
        "metadata": meta(wiring.KEEPER_INSTALLATION, values.data_namespace),
        "spec": {
            "defaults": {"templates": {"podTemplate": "keeper", "dataVolumeClaimTemplate": "keeper-data"}},
            "configuration": {"clusters": [{"name": "keeper", "layout": {"replicasCount": ch.keeper_replicas}}]},
            "templates": {
                "podTemplates": [
                    {
                        "name": "keeper",
                        # A Raft quorum survives one lost member only if members do not share a node.
                        "podDistribution": [{"type": "ClickHouseAntiAffinity", "scope": "ClickHouseInstallation"}],
                        "spec": {
                            "containers": [
                                {"name": "clickhouse-keeper", "image": ch.keeper_image,
                                 "resources": _resources(ch.keeper)}
                            ]
                        },
                    }
                ],
                "volumeClaimTemplates": [_claim("keeper-data", ch.keeper_storage)],
            },
        },
    }


def installation(values: Values) -> dict:
    ch = values.clickhouse
    user = wiring.CLICKHOUSE_USER
    return {
        "apiVersion": API,
        "kind": "ClickHouseInstallation",
        "metadata": meta(wiring.CLICKHOUSE_INSTALLATION, values.data_namespace),
        "spec": {
            "defaults": {
                "templates": {
                    "podTemplate": "clickhouse",
                    "dataVolumeClaimTemplate": "hot",
                    "serviceTemplate": "cluster-ip",
                }
            },
            "configuration": {
                "zookeeper": {"nodes": [{"host": wiring.keeper_host(values), "port": 2181}]},
                "users": {
                    f"{user}/password": {"valueFrom": {"secretKeyRef": {"name": wiring.CLICKHOUSE_SECRET,
                                                                          "key": "password"}}},
                    # The operator would otherwise admit the user from the installation's own Pods only; the Ray
                    # Pods connect from keyscope's namespace, with the password.
                    f"{user}/networks/ip": ["0.0.0.0/0", "::/0"],
                    f"{user}/profile": user,
                },
                "profiles": {
                    f"{user}/profile": "default",  # inherit the server's defaults, change only what follows
                    # An insert into a Distributed table returns once every shard has its rows, not when they are
                    # queued: the ingest job stores its Kafka offsets only after its rows are durable.
                    f"{user}/distributed_foreground_insert": 1,
                },
                "clusters": [
                    {
                        "name": wiring.CLICKHOUSE_CLUSTER,
                        "layout": {"shardsCount": ch.shards, "replicasCount": ch.replicas},
                        # A shared secret between the servers: a query through a Distributed table reaches the
                        # other shards as the user who sent it, not as an unauthenticated `default`.
                        "secret": {"auto": "yes"},
                    }
                ],
            },
            "templates": {
                "podTemplates": [
                    {
                        "name": "clickhouse",
                        # One server per node: a node's loss costs one replica of one shard.
                        "podDistribution": [{"type": "ClickHouseAntiAffinity", "scope": "ClickHouseInstallation"}],
                        "spec": {
                            "containers": [
                                {"name": "clickhouse", "image": ch.image, "resources": _resources(ch.server)}
                            ]
                        },
                    }
                ],
                "volumeClaimTemplates": [_claim("hot", ch.storage)],
                # Without a template the operator makes the installation's Service a LoadBalancer, reachable from
                # outside the cluster; keyscope needs it inside only.
                "serviceTemplates": [
                    {
                        "name": "cluster-ip",
                        "generateName": "clickhouse-{chi}",
                        "spec": {
                            "type": "ClusterIP",
                            "ports": [{"name": "http", "port": 8123}, {"name": "tcp", "port": 9000}],
                        },
                    }
                ],
            },
        },
    }
