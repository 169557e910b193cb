"""keyscope on Kubernetes: `keyscope cluster render --size dev|prod` writes the whole deployment (namespaces,
ConfigMap, Secret templates, Strimzi Kafka, Altinity ClickHouse and Keeper, Redis Helm values, the RayService, the
RayJobs and RayCronJobs) from one values file per size, `cluster/values/<size>.yaml`.

Why the renderer lives here, as a package of its own: `cluster/` is where the project says how it is deployed, and
rendering is that knowledge in executable form. It reads `app/` (topic names, the migrations) and `serve/config.yaml`
as data, and nothing imports it back, so `app/` stays free of outer imports and no stage depends on deployment
code. It ships in the wheel (pyproject's package list) so the `keyscope` command finds it in any install.

    values.py    the values file, checked key by key (a misspelt key is an error, never ignored)
    wiring.py    the fixed names and service addresses by which the rendered objects find each other
    core.py      namespaces, the ConfigMap, the service account, the model registry's volume, Secret templates
    strimzi.py   Kafka, KafkaNodePools, KafkaTopics
    altinity.py  ClickHouseKeeperInstallation, ClickHouseInstallation
    redis.py     the Redis chart's values
    jobs.py      every batch job: entrypoint, schedule, deadline, what it needs
    kuberay.py   the RayService, RayJobs and RayCronJobs
    render.py    the files of one size, writing them, the command
"""
