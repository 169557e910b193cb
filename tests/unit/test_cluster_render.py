"""`keyscope cluster render`: both sizes render, every object validates against its operator's schema from the
project's own copy (cluster/schemas/), the committed prod rendering is current, the sizes say what the plan needs,
and the names every piece uses to find another agree: topics, image tag, Ray version, ClickHouse cluster, Secrets,
the model folder, the Serve settings of the local stack. Every batch job module runs as a RayJob or RayCronJob and
answers --help.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from app.clickhouse.cluster_ddl import CLUSTER, SCHEMA_MIGRATIONS_DDL
from app.config import Settings
from cluster import wiring
from cluster.jobs import ALL as JOBS
from cluster.kuberay import SERVE_THROUGHPUT_ENV, entrypoint
from cluster.render import MARKER, render, write
from cluster.values import SIZES, ValuesError, load_values
from pipelines.entry import job_parser
from tests.rendered import all_documents, documents, files

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "cluster" / "schemas"
COMMITTED = REPO / "cluster" / "prod"
SCHEMAS = {
    ("kafka.strimzi.io/v1", "Kafka"): "kafka_v1.json",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "kafkanodepool_v1.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "kafkatopic_v1.json",
    ("clickhouse.altinity.com/v1", "ClickHouseInstallation"): "clickhouseinstallation_v1.json",
    ("clickhouse-keeper.altinity.com/v1", "ClickHouseKeeperInstallation"): "clickhousekeeperinstallation_v1.json",
    ("ray.io/v1", "RayService"): "rayservice_v1.json",
    ("ray.io/v1", "RayJob"): "rayjob_v1.json",
    ("ray.io/v1", "RayCronJob"): "raycronjob_v1.json",
}
CORE_KINDS = ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DOCUMENTS = all_documents()
OPERATOR_DOCS = [(name, doc) for name, doc in DOCUMENTS if doc["kind"] not in CORE_KINDS]


@functools.cache
def _schema(file_name: str) -> dict:
    path = SCHEMA_DIR / file_name
    if not path.is_file():
        pytest.fail(f"{path} is missing: cluster/schemas/README.md says where it comes from", pytrace=False)
    schema = json.loads(path.read_text())
    Draft7Validator.check_schema(schema)
    return schema


def _of_kind(size: str, kind: str) -> list[dict]:
    return [doc for _, doc in documents(size) if doc["kind"] == kind]


def _one(size: str, kind: str) -> dict:
    found = _of_kind(size, kind)
    assert len(found) == 1, f"{size}: expected one {kind}, found {len(found)}"
    return found[0]


def test_every_schema_is_present_and_credited():
    readme = (SCHEMA_DIR / "README.md").read_text()
    for file_name in set(SCHEMAS.values()):
        _schema(file_name)
        assert file_name in readme, f"{file_name} has no source in cluster/schemas/README.md"
    assert "Apache" in readme


@pytest.mark.parametrize("size", SIZES)
def test_every_size_renders_every_kind(size):
    kinds = {doc["kind"] for _, doc in documents(size)}
    assert kinds == {kind for _, kind in SCHEMAS} | set(CORE_KINDS), f"{size} renders {sorted(kinds)}"
    assert "redis/values.yaml" in files(size)


@pytest.mark.parametrize("doc", [doc for _, doc in OPERATOR_DOCS], ids=[name for name, _ in OPERATOR_DOCS])
def test_object_matches_its_operator_schema(doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in SCHEMAS, f"{key} has no schema to check it against"
    validator = Draft7Validator(_schema(SCHEMAS[key]))
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    messages = [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in errors]
    assert not messages, f"not valid against {SCHEMAS[key]}:\n  " + "\n  ".join(messages)


@pytest.mark.parametrize("name,doc", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_object_has_a_valid_name_and_namespace(name, doc):
    metadata = doc["metadata"]
    assert DNS_1123.match(metadata["name"]) and len(metadata["name"]) <= 63, metadata["name"]
    values = load_values(name.split("/")[0])
    if doc["kind"] == "Namespace":
        assert "namespace" not in metadata
    else:
        assert metadata["namespace"] in (values.namespace, values.data_namespace)
    if doc["kind"] in CORE_KINDS:
        assert doc["apiVersion"] == "v1"


def test_the_committed_prod_rendering_is_current():
    rendered = files("prod")
    committed = {p.relative_to(COMMITTED).as_posix(): p.read_text() for p in COMMITTED.rglob("*.yaml")}
    fix = "run `keyscope cluster render --size prod --out cluster/prod` and commit the result"
    assert sorted(committed) == sorted(rendered), f"cluster/prod holds other files than the rendering: {fix}"
    stale = [path for path, text in rendered.items() if committed[path] != text]
    assert not stale, f"cluster/prod is stale ({', '.join(stale)}): {fix}"


def test_render_replaces_an_earlier_rendering_and_keeps_other_files(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "raycronjob-gone.yaml").write_text(f"{MARKER} --size prod` ...\n")
    (tmp_path / "notes.yaml").write_text("mine: true\n")
    write(files("dev"), tmp_path)
    assert not (tmp_path / "app" / "raycronjob-gone.yaml").exists()
    assert (tmp_path / "notes.yaml").read_text() == "mine: true\n"
    assert (tmp_path / "infra" / "10-kafka.yaml").read_text() == files("dev")["infra/10-kafka.yaml"]


def test_the_cli_renders_a_size(tmp_path):
    from cli.main import main

    assert main(["cluster", "render", "--size", "dev", "--out", str(tmp_path)]) == 0
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml")} == set(files("dev"))


def test_a_misspelt_value_is_an_error(tmp_path):
    text = (REPO / "cluster" / "values" / "dev.yaml").read_text().replace("topic_partitions:", "topic_partitons:")
    (tmp_path / "dev.yaml").write_text(text)
    with pytest.raises(ValuesError, match="topic_partitons"):
        load_values("dev", tmp_path)


# -- what the plan asks of prod ---------------------------------------------------------------------------------------


def test_prod_kafka_is_three_rack_aware_kraft_brokers_with_the_planned_topics():
    pools = _of_kind("prod", "KafkaNodePool")
    brokers = [p for p in pools if "broker" in p["spec"]["roles"]]
    assert sum(p["spec"]["replicas"] for p in brokers) == 3
    assert any("controller" in p["spec"]["roles"] for p in pools), "KRaft needs controllers in a node pool"
    kafka = _one("prod", "Kafka")
    assert "zookeeper" not in kafka["spec"] and kafka["spec"]["kafka"]["rack"]["topologyKey"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of_kind("prod", "KafkaTopic")}
    keystrokes = topics[Settings().keystroke_topic]
    assert keystrokes["partitions"] == 100
    for topic in topics.values():
        assert topic["replicas"] == 3 and topic["config"]["min.insync.replicas"] == 2


@pytest.mark.parametrize("size", SIZES)
def test_kafka_objects_belong_to_the_cluster_and_fit_it(size):
    kafka = _one(size, "Kafka")
    brokers = 0
    for pool in _of_kind(size, "KafkaNodePool"):
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        brokers += pool["spec"]["replicas"] if "broker" in pool["spec"]["roles"] else 0
    for topic in _of_kind(size, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"] <= brokers
    # The API's producer sends batches up to KEYSCOPE_MAX_MESSAGE_BYTES: the topic must take them.
    keystrokes = next(t for t in _of_kind(size, "KafkaTopic") if t["spec"]["topicName"] == Settings().keystroke_topic)
    assert keystrokes["spec"]["config"]["max.message.bytes"] >= Settings().max_message_bytes
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_topic_retention_outlasts_the_ingest_schedule():
    """The ingest job trims what it stored; retention must only catch what it never read, so it must outlast many
    missed runs, or a short ingest outage would lose tests."""
    cron = next(job for job in JOBS if job.module == "pipelines.ingest" and job.is_cron)
    assert cron.schedule == "*/10 * * * *"
    for size in SIZES:
        topic = next(t for t in _of_kind(size, "KafkaTopic") if t["spec"]["topicName"] == Settings().keystroke_topic)
        assert topic["spec"]["config"]["retention.ms"] >= 24 * 3600 * 1000


@pytest.mark.parametrize("size", SIZES)
def test_clickhouse_is_wired_to_its_keeper_secret_and_the_generated_ddl(size):
    chi, chk = _one(size, "ClickHouseInstallation"), _one(size, "ClickHouseKeeperInstallation")
    values = load_values(size)
    configuration = chi["spec"]["configuration"]
    # One cluster, so the operator's {cluster} macro, which the generated DDL runs ON CLUSTER, is this one.
    assert CLUSTER == "'{cluster}'" and "ON CLUSTER '{cluster}'" in SCHEMA_MIGRATIONS_DDL
    [cluster] = configuration["clusters"]
    assert cluster["name"] == wiring.CLICKHOUSE_CLUSTER
    assert cluster["layout"] == {"shardsCount": values.clickhouse.shards, "replicasCount": values.clickhouse.replicas}
    assert configuration["zookeeper"]["nodes"] == [{"host": f"keeper-{chk['metadata']['name']}."
                                                           f"{chk['metadata']['namespace']}.svc", "port": 2181}]
    assert chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == values.clickhouse.keeper_replicas
    ref = configuration["users"][f"{wiring.CLICKHOUSE_USER}/password"]["valueFrom"]["secretKeyRef"]
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in _of_kind(size, "Secret")}
    assert ref["key"] in secrets[(chi["metadata"]["namespace"], ref["name"])]["stringData"]
    templates = chi["spec"]["templates"]
    defaults = chi["spec"]["defaults"]["templates"]
    assert defaults["podTemplate"] in [t["name"] for t in templates["podTemplates"]]
    assert defaults["dataVolumeClaimTemplate"] in [t["name"] for t in templates["volumeClaimTemplates"]]
    service = next(t for t in templates["serviceTemplates"] if t["name"] == defaults["serviceTemplate"])
    assert service["spec"]["type"] == "ClusterIP", "the operator's default Service is a LoadBalancer"
    assert service["generateName"].replace("{chi}", chi["metadata"]["name"]) == wiring.clickhouse_service(
        values).split(".")[0]
    # Offsets are stored once rows are durable: inserts into Distributed tables must not return while queued.
    assert configuration["profiles"][f"{wiring.CLICKHOUSE_USER}/distributed_foreground_insert"] == 1


# -- names that must agree everywhere --------------------------------------------------------------------------------


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _ray_containers(doc: dict) -> list[dict]:
    spec = doc["spec"]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec["jobTemplate"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [group["template"]["spec"]["containers"][0] for group in groups]


def _ray_docs(size: str) -> list[dict]:
    return [doc for _, doc in documents(size) if doc["apiVersion"].startswith("ray.io/")]


@pytest.mark.parametrize("size", SIZES)
def test_image_tag_and_ray_version_agree_with_the_project(size):
    import ray

    version = _project()["project"]["version"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in dockerfile
    for doc in _ray_docs(size):
        spec = doc["spec"]
        cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec["jobTemplate"]["rayClusterSpec"]
        assert cluster["rayVersion"] == ray.__version__
        for container in _ray_containers(doc):
            assert container["image"] == f"{load_values(size).image}:{version}", doc["metadata"]["name"]


@pytest.mark.parametrize("size", SIZES)
def test_topic_names_and_service_addresses_agree(size):
    defaults = Settings()
    config = _one(size, "ConfigMap")["data"]
    topics = {t["spec"]["topicName"] for t in _of_kind(size, "KafkaTopic")}
    assert {config["KEYSCOPE_TOPIC"], config["KEYSCOPE_DLQ_TOPIC"]} == topics == {
        defaults.keystroke_topic, defaults.dlq_topic}
    keystrokes = next(t for t in _of_kind(size, "KafkaTopic") if t["spec"]["topicName"] == defaults.keystroke_topic)
    assert config["KEYSCOPE_TOPIC_PARTITIONS"] == str(keystrokes["spec"]["partitions"])
    kafka = _one(size, "Kafka")
    assert config["KAFKA_BOOTSTRAP"] == (
        f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:9092")
    secret = next(s for s in _of_kind(size, "Secret") if s["metadata"]["name"] == wiring.SECRET)["stringData"]
    chi = _one(size, "ClickHouseInstallation")
    assert f"@clickhouse-{chi['metadata']['name']}.{chi['metadata']['namespace']}.svc:8123/" in secret[
        "CLICKHOUSE_URL"]
    redis_values = yaml.safe_load(files(size)["redis/values.yaml"])
    assert redis_values["auth"]["existingSecret"] == wiring.REDIS_SECRET
    assert f"@{wiring.REDIS_RELEASE}-master.{load_values(size).data_namespace}.svc:6379/" in secret["REDIS_URL"]
    # Settings reads these URLs as they are written.
    settings = Settings.from_env({**config, **secret})
    assert settings.keystroke_topic == defaults.keystroke_topic
    assert settings.clickhouse_url.startswith("http://") and settings.redis_url.startswith("redis://")


@pytest.mark.parametrize("size", SIZES)
def test_every_ray_container_references_existing_config_keys_and_volumes(size):
    config = _one(size, "ConfigMap")["data"]
    secret = next(s for s in _of_kind(size, "Secret") if s["metadata"]["name"] == wiring.SECRET)["stringData"]
    claims = {c["metadata"]["name"] for c in _of_kind(size, "PersistentVolumeClaim")}
    accounts = {a["metadata"]["name"] for a in _of_kind(size, "ServiceAccount")}
    for doc in _ray_docs(size):
        for container in _ray_containers(doc):
            for item in container["env"]:
                source = item.get("valueFrom", {})
                if ref := source.get("configMapKeyRef"):
                    assert ref["name"] == wiring.CONFIG_MAP and ref["key"] in config, (doc["metadata"]["name"], ref)
                if ref := source.get("secretKeyRef"):
                    assert ref["name"] == wiring.SECRET and ref["key"] in secret, (doc["metadata"]["name"], ref)
        spec = doc["spec"]
        cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec["jobTemplate"]["rayClusterSpec"]
        for group in [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]:
            pod = group["template"]["spec"]
            assert pod["serviceAccountName"] in accounts
            for volume in pod.get("volumes", []):
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            mounted = {m["mountPath"] for m in pod["containers"][0].get("volumeMounts", [])}
            env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
            if "KEYSCOPE_MODELS_DIR" in env:
                assert env["KEYSCOPE_MODELS_DIR"] in mounted, "the model registry must be the shared volume"


def test_the_model_folder_is_where_the_image_puts_it():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"KEYSCOPE_LM_DIR={wiring.IMAGE_LM_DIR}" in dockerfile
    for size in SIZES:
        for doc in _ray_docs(size):
            for container in _ray_containers(doc):
                for item in container["env"]:
                    if item["name"] == "KEYSCOPE_LM_DIR":
                        assert item["value"] == wiring.IMAGE_LM_DIR
    service = _one("prod", "RayService")
    assert all(any(i["name"] == "KEYSCOPE_LM_DIR" for i in c["env"]) for c in _ray_containers(service))


def test_the_rayservice_runs_serve_as_the_local_stack_does():
    from devstack.stack import serve_ingress_env

    local = serve_ingress_env(6380, "/usr/sbin/haproxy")
    ports = {name for name in local if name.endswith("_PORT")}  # moved locally so two stacks never collide
    expected = {name: value for name, value in local.items() if name not in ports}
    assert SERVE_THROUGHPUT_ENV == expected
    assert "haproxy" in (REPO / "Dockerfile").read_text(), "RAY_SERVE_ENABLE_HA_PROXY needs haproxy in the image"
    for size in SIZES:
        for container in _ray_containers(_one(size, "RayService")):
            env = {item["name"]: item.get("value") for item in container["env"]}
            assert {name: env.get(name) for name in expected} == expected
            assert container["startupProbe"]["httpGet"]["path"] == "/api/healthz"


@pytest.mark.parametrize("size", SIZES)
def test_secret_templates_hold_placeholders_only_and_stay_out_of_the_applied_set(size):
    for path, text in files(size).items():
        for doc in yaml.safe_load_all(text) if path.endswith(".yaml") and path not in ("redis/values.yaml",) else ():
            if doc["kind"] == "Secret":
                assert path.startswith("secrets/"), f"{path}: a Secret outside secrets/ would be applied with infra"
                assert "data" not in doc
                for key, value in doc["stringData"].items():
                    assert wiring.PLACEHOLDER in value, f"{path}: {key} is not a placeholder"


def test_redis_keeps_nothing_on_disk_and_spares_keys_without_ttl():
    for size in SIZES:
        text = files(size)["redis/values.yaml"]
        values = yaml.safe_load(text)
        assert values["architecture"] == "standalone", "keyscope's plain client cannot follow a Redis Cluster"
        assert values["master"]["persistence"]["enabled"] is False
        assert values["replica"]["replicaCount"] == 0
        config = values["commonConfiguration"]
        assert "appendonly no" in config and 'save ""' in config and "maxmemory-policy volatile-lru" in config
        # The file says what a restart loses and how each piece comes back.
        assert "keyscope:features:" in text and "keyscope-features" in text


# -- batch jobs ------------------------------------------------------------------------------------------------------


def _job_modules() -> set[str]:
    """Every `python -m` module under pipelines/ and training/."""
    found = set()
    for package in ("pipelines", "training"):
        for path in (REPO / package).rglob("*.py"):
            if 'if __name__ == "__main__"' in path.read_text():
                parts = path.relative_to(REPO).with_suffix("").parts
                found.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return found


def test_every_job_module_runs_on_the_cluster():
    modules = _job_modules()
    assert {"pipelines.ingest", "pipelines.schema", "training.train"} <= modules
    deployed = {job.module for job in JOBS}
    assert modules == deployed, f"without a RayJob/RayCronJob: {sorted(modules - deployed)}"
    cron = {job.module for job in JOBS if job.is_cron}
    assert {"pipelines.insights", "training.train", "pipelines.archive", "pipelines.warehouse",
            "pipelines.practice", "pipelines.ingest"} <= cron
    one_off = {job.module for job in JOBS if not job.is_cron}
    assert {"pipelines.ingest", "pipelines.schema", "pipelines.migrate_mysql", "training.train",
            "pipelines.features", "pipelines.insights"} <= one_off


@pytest.mark.parametrize("module", sorted(_job_modules()))
def test_job_module_answers_help_without_the_stack(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "RAY_ADDRESS": "127.0.0.1:1",
             "KAFKA_BOOTSTRAP": "127.0.0.1:1", "CLICKHOUSE_URL": "http://127.0.0.1:1/default",
             "REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: python -m {module}"), done.stdout[:200]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_job_entrypoint_arguments_parse(size, job):
    """The arguments each manifest passes are ones the module accepts (its own parser, as `python -m` builds it)."""
    argv = entrypoint(job, load_values(size).jobs[job.size], load_values(size)).split()
    module = importlib.import_module(job.module)
    parser = job_parser(f"python -m {job.module}", module.DESCRIPTION, module.add_arguments)
    parser.parse_args(argv[3:])


def test_gpu_jobs_ask_for_gpus_where_their_workers_have_them():
    prod = {doc["metadata"]["name"]: doc for doc in _ray_docs("prod")}
    practice = prod["keyscope-practice-cron"]["spec"]["jobTemplate"]
    assert "--writer-cpus" not in practice["entrypoint"]
    worker = practice["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    dev = {doc["metadata"]["name"]: doc for doc in _ray_docs("dev")}
    assert "--writer-cpus 2" in dev["keyscope-practice-cron"]["spec"]["jobTemplate"]["entrypoint"]


def test_the_schema_job_runs_before_anything_can_apply_single_node_migrations():
    """Every job applies the local migrations at start unless it finds them recorded: on a cluster the schema job
    records them, and the documentation puts it before the RayService and the RayCronJobs."""
    walkthrough = (REPO / "docs" / "kubernetes.md").read_text()
    schema = walkthrough.index("jobs/rayjob-schema.yaml")
    assert schema < walkthrough.index("kubectl apply -f app/")
    assert "entrypoint: python -m pipelines.schema\n" in render("prod")["jobs/rayjob-schema.yaml"]
