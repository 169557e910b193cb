"""The deploy contract of the Ray side, checked offline: the RayService, RayJobs and RayCronJobs that
`keyscope cluster render` writes for every size against the KubeRay v1.7.0 CRD schemas (and the operator's own rules
that a schema cannot express), serve/config.yaml against Ray Serve's schema and the application it names, and the
RayService's embedded Serve config against serve/config.yaml.

The CRD schemas are the project's own copy in `cluster/schemas/` (source and licence in its README), so a clone
validates with nothing beside it; a missing schema fails the test rather than skipping it.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.util
import json
import re
import shlex
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel

from cluster.values import SIZES, load_values
from tests.rendered import all_documents, documents

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "cluster" / "schemas"
SERVE_CONFIG = REPO / "serve" / "config.yaml"
RAY_KINDS = ("RayCluster", "RayService", "RayJob", "RayCronJob")
# Names KubeRay gives what it creates must stay valid DNS-1035 labels (utils.MaxRayJobNameLength and friends).
MAX_NAME = {"RayCluster": 53, "RayService": 47, "RayJob": 47, "RayCronJob": 47 - len("-xxxxx")}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CONFIG_MAP, SECRET = "configMapKeyRef", "secretKeyRef"
# Where each Ray container must get its service locations from.
REQUIRED_ENV = {"KAFKA_BOOTSTRAP": CONFIG_MAP, "CLICKHOUSE_URL": SECRET, "REDIS_URL": SECRET}
SECRET_LIKE = re.compile(r"URL|PASSWORD|TOKEN|SECRET|CREDENTIAL|(^|_)KEY($|_)")


MANIFESTS = [(name, doc) for name, doc in all_documents() if str(doc.get("apiVersion", "")).startswith("ray.io/")]
MANIFEST_IDS = [name for name, _ in MANIFESTS]


@functools.cache
def _kuberay_schema(kind: str) -> dict:
    if not SCHEMA_DIR.is_dir():
        pytest.fail(
            f"KubeRay CRD schemas not found: {SCHEMA_DIR} does not exist. The manifests are validated against "
            "cluster/schemas/<kind>_v1.json (see cluster/schemas/README.md for their source).",
            pytrace=False,
        )
    path = SCHEMA_DIR / f"{kind.lower()}_v1.json"
    if not path.is_file():
        pytest.fail(f"no KubeRay CRD schema for kind {kind!r}: {path} is missing", pytrace=False)
    schema = json.loads(path.read_text())
    Draft7Validator.check_schema(schema)
    return schema


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _cluster_specs(doc: dict) -> list[dict]:
    spec = doc.get("spec") or {}
    kind = doc["kind"]
    if kind == "RayCluster":
        return [spec]
    if kind == "RayService":
        return [spec["rayClusterConfig"]]
    if kind == "RayJob":
        return [spec["rayClusterSpec"]] if "rayClusterSpec" in spec else []
    if kind == "RayCronJob":
        template = spec.get("jobTemplate") or {}
        return [template["rayClusterSpec"]] if "rayClusterSpec" in template else []
    raise AssertionError(kind)


def _job_spec(doc: dict) -> dict | None:
    if doc["kind"] == "RayJob":
        return doc["spec"]
    if doc["kind"] == "RayCronJob":
        return doc["spec"]["jobTemplate"]
    return None


def _groups(cluster: dict) -> list[tuple[str, dict]]:
    return [("head", cluster["headGroupSpec"])] + [
        (f"worker group {group.get('groupName')!r}", group) for group in cluster.get("workerGroupSpecs") or []
    ]


def _ray_containers(cluster: dict) -> list[tuple[str, dict]]:
    """The Ray container of every group (KubeRay treats the first container as the Ray one)."""
    out = []
    for where, group in _groups(cluster):
        containers = group["template"]["spec"].get("containers") or []
        if containers:
            out.append((f"{where} container {containers[0].get('name')!r}", containers[0]))
    return out


def _schema_errors(doc: dict) -> list[str]:
    validator = Draft7Validator(_kuberay_schema(doc["kind"]))
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}" for e in errors]


def _operator_problems(doc: dict) -> list[str]:
    """Checks KubeRay v1.7 makes in Go or CEL at admission/reconcile time, beyond the JSON schema
    (ray-operator/controllers/ray/utils/validation.go and the CRDs' x-kubernetes-validations)."""
    import ray

    kind, problems = doc["kind"], []
    name = (doc.get("metadata") or {}).get("name", "")
    if not DNS_1035.match(name) or len(name) > MAX_NAME[kind]:
        problems.append(f"metadata.name {name!r} must be a DNS-1035 label of at most {MAX_NAME[kind]} characters")
    for cluster in _cluster_specs(doc):
        if cluster.get("rayVersion") != ray.__version__:
            problems.append(
                f"rayVersion {cluster.get('rayVersion')!r} differs from the project's Ray {ray.__version__}"
            )
        for where, group in _groups(cluster):
            if not group["template"]["spec"].get("containers"):
                problems.append(f"{where}: needs at least one container")
            params = group.get("rayStartParams") or {}
            if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
                problems.append(f"{where}: resources set both in rayStartParams and in resources")
            if "labels" in params:
                problems.append(f"{where}: use the group's labels field, not rayStartParams['labels']")
    job = _job_spec(doc)
    if job is not None:
        if job.get("ttlSecondsAfterFinished", 0) > 0 and not job.get("shutdownAfterJobFinishes"):
            problems.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
        if job.get("activeDeadlineSeconds") is not None and job["activeDeadlineSeconds"] <= 0:
            problems.append("activeDeadlineSeconds must be positive")
        if not job.get("rayClusterSpec") and not job.get("clusterSelector"):
            problems.append("one of rayClusterSpec or clusterSelector must be set")
        rules = (job.get("deletionStrategy") or {}).get("deletionRules") or []
        if rules and job.get("shutdownAfterJobFinishes"):
            problems.append("deletionStrategy.deletionRules and shutdownAfterJobFinishes are mutually exclusive")
        order = {"DeleteWorkers": 0, "DeleteCluster": 1, "DeleteSelf": 2}
        ttls: dict[str, dict[int, int]] = {}
        for i, rule in enumerate(rules):
            condition = rule.get("condition") or {}
            if ("jobStatus" in condition) == ("jobDeploymentStatus" in condition):
                problems.append(f"deletionRules[{i}]: needs exactly one of jobStatus and jobDeploymentStatus")
            status = condition.get("jobStatus", "")
            rank = order.get(rule.get("policy"))
            if rank is not None:
                if rank in ttls.setdefault(status, {}):
                    problems.append(f"deletionRules[{i}]: duplicate {rule['policy']} rule for status {status!r}")
                ttls[status][rank] = condition.get("ttlSeconds", 0)
        for status, by_rank in ttls.items():
            values = [by_rank[rank] for rank in sorted(by_rank)]
            if values != sorted(values):
                problems.append(
                    f"deletionRules for {status!r}: TTLs must grow DeleteWorkers <= DeleteCluster <= DeleteSelf"
                )
    if kind == "RayCronJob" and len(str(doc["spec"].get("schedule", "")).split()) != 5:
        problems.append(f"schedule {doc['spec'].get('schedule')!r} is not a five-field cron expression")
    if kind == "RayService":
        upgrade = (doc["spec"].get("upgradeStrategy") or {}).get("type")
        if upgrade not in (None, "NewCluster", "NewClusterWithIncrementalUpgrade", "None"):
            problems.append(
                f"upgradeStrategy.type {upgrade!r} is not NewCluster, NewClusterWithIncrementalUpgrade or None"
            )
        head_service = doc["spec"]["rayClusterConfig"]["headGroupSpec"].get("headService") or {}
        if (head_service.get("metadata") or {}).get("name"):
            problems.append("headGroupSpec.headService.metadata.name must not be set in a RayService")
    return problems


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _unknown_keys(model: type[BaseModel], data: Any, where: str = "") -> list[str]:
    """Keys that `model` would silently ignore: Serve's deploy schema accepts unknown fields (forward compatibility),
    so a misspelt option would validate and then do nothing."""
    if not isinstance(data, dict):
        return []
    fields = {**{f.alias: f for f in model.model_fields.values() if f.alias}, **model.model_fields}
    found = [f"{where}{key}" for key in data if key not in fields]
    for key, value in data.items():
        models = _models_in(fields[key].annotation) if key in fields else []
        if len(models) != 1:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                found += _unknown_keys(models[0], item, f"{where}{key}[{i}].")
        else:
            found += _unknown_keys(models[0], value, f"{where}{key}.")
    return found


def _serve_config() -> dict:
    return yaml.safe_load(SERVE_CONFIG.read_text())


def _rayservice(size: str) -> dict:
    services = [doc for _, doc in documents(size) if doc.get("kind") == "RayService"]
    assert len(services) == 1, f"expected one RayService in the {size} rendering, found {len(services)}"
    return services[0]


def _is_shipped(module: str) -> bool:
    """Whether pip installs `module`'s top-level package into the image (pyproject's package list)."""
    include = _project()["tool"]["setuptools"]["packages"]["find"]["include"]
    return any(fnmatch.fnmatch(module.split(".")[0], pattern) for pattern in include)


def test_kuberay_schemas_present():
    for kind in RAY_KINDS:
        _kuberay_schema(kind)


@pytest.mark.parametrize("size", SIZES)
def test_expected_manifests_present(size):
    kinds = [doc.get("kind") for _, doc in documents(size)]
    assert kinds.count("RayService") == 1 and "RayJob" in kinds and "RayCronJob" in kinds, f"{size} renders {kinds}"
    unknown = [name for name, doc in MANIFESTS if doc.get("kind") not in RAY_KINDS]
    assert not unknown, f"ray.io manifests of a kind with no schema to check them against: {unknown}"


@pytest.mark.parametrize("doc", [doc for _, doc in MANIFESTS], ids=MANIFEST_IDS)
def test_manifest_matches_kuberay_crd_schema(doc):
    assert doc["apiVersion"] == "ray.io/v1"
    errors = _schema_errors(doc)
    assert not errors, "not valid against the KubeRay v1.7.0 CRD schema:\n  " + "\n  ".join(errors)


@pytest.mark.parametrize("doc", [doc for _, doc in MANIFESTS], ids=MANIFEST_IDS)
def test_manifest_passes_operator_validation(doc):
    problems = _operator_problems(doc)
    assert not problems, "KubeRay would reject or misbehave:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("doc", [doc for _, doc in MANIFESTS], ids=MANIFEST_IDS)
def test_ray_containers_take_settings_from_configmap_and_secret(doc):
    version = _project()["project"]["version"]
    problems = []
    for cluster in _cluster_specs(doc):
        if (cluster.get("authOptions") or {}).get("mode") != "token":
            problems.append("authOptions.mode must be token (an open dashboard lets anyone in the network run code)")
        for where, container in _ray_containers(cluster):
            image = container.get("image", "")
            if image.rsplit("/", 1)[-1] != f"keyscope:{version}":
                problems.append(f"{where}: image {image!r} is not keyscope:{version} (the pyproject version)")
            env = {item["name"]: item for item in container.get("env") or []}
            for name, source in REQUIRED_ENV.items():
                ref = (env.get(name) or {}).get("valueFrom", {}).get(source) or {}
                if not ref.get("name") or not ref.get("key"):
                    problems.append(f"{where}: {name} must come from a {source} (name and key)")
            for name, item in env.items():
                if "value" in item and SECRET_LIKE.search(name):
                    problems.append(f"{where}: {name} is written inline; take it from a Secret or ConfigMap")
                if name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
                    problems.append(f"{where}: {name} is set by KubeRay from authOptions; do not set it by hand")
    assert not problems, "\n  ".join(["", *problems])


def test_serve_config_validates_with_ray_serve_schema():
    from ray.serve.schema import ServeDeploySchema

    config = _serve_config()
    ServeDeploySchema.model_validate(config)
    assert not _unknown_keys(ServeDeploySchema, config), "options Ray Serve would ignore"
    assert config["http_options"]["host"] == "127.0.0.1", "locally Serve binds loopback only"


def test_serve_config_names_the_real_application(monkeypatch):
    import copy

    from ray.serve import Application
    from ray.serve._private import application_state
    from ray.serve._private.application_state import override_deployment_info
    from ray.serve._private.build_app import build_app
    from ray.serve._private.deployment_info import DeploymentInfo
    from ray.serve.schema import ServeDeploySchema

    for app_config in ServeDeploySchema.model_validate(_serve_config()).applications:
        module_name, _, attr = app_config.import_path.partition(":")
        assert _is_shipped(module_name), f"{module_name} is not in the packages pyproject installs"
        app = getattr(importlib.import_module(module_name), attr)
        assert isinstance(app, Application), f"{app_config.import_path} is {type(app).__name__}, not a bound app"
        # What `serve deploy` does with it, short of starting Ray: build the app, then let the controller's own
        # merge apply the config's overrides (it raises on a deployment name the app does not have).
        built = build_app(app, name=app_config.name)
        names = {deployment.name for deployment in built.deployments}
        assert set(app_config.deployment_names) <= names, f"config names {app_config.deployment_names}, app has {names}"
        infos = {
            d.name: DeploymentInfo(
                deployment_config=d._deployment_config,
                replica_config=d._replica_config,
                start_time_ms=0,
                deployer_job_id="offline-check",
                route_prefix=app_config.route_prefix if d.name == built.ingress_deployment_name else None,
                ingress=d.name == built.ingress_deployment_name,
            )
            for d in built.deployments
        }
        # Composed deployments get DeploymentHandles as constructor arguments, and the controller's merge deep-copies
        # them, which needs a running controller; offline, handles are copied by reference.
        handles = {
            id(arg): arg for d in built.deployments for arg in d.init_args if type(arg).__name__ == "DeploymentHandle"
        }
        monkeypatch.setattr(application_state, "deepcopy", lambda value, h=handles: copy.deepcopy(value, dict(h)))
        merged = override_deployment_info(infos, app_config)
        for options in app_config.deployments:
            if options.is_autoscaling_configured():
                assert merged[options.name].deployment_config.autoscaling_config is not None


def test_serve_config_gives_live_feedback_an_application_of_its_own():
    """/v1/live's WebSockets are ongoing requests for their whole life: they must not count against the REST
    ingress's autoscaling, so they are the `live` application, which calls the `keyscope` application's
    deployments by name (serve/app.py): those must exist there, and deployment names must not repeat (the values
    files and devstack/cluster_state.py address deployments by name alone)."""
    import serve.app

    config = _serve_config()
    apps = {app["name"]: app for app in config["applications"]}
    assert {name: app["route_prefix"] for name, app in apps.items()} == {"keyscope": "/", "live": "/v1/live"}
    assert apps["live"]["import_path"] == "serve.app:live_app"
    names = [d["name"] for app in config["applications"] for d in app["deployments"]]
    assert len(names) == len(set(names)), names
    called = {d["name"] for d in apps[serve.app.KEYSCOPE_APP]["deployments"]}
    assert set(serve.app.LIVE_CALLS) <= called
    [live] = apps["live"]["deployments"]
    ingress = next(d for d in apps["keyscope"]["deployments"] if d["name"] == "ingress")
    assert live["autoscaling_config"]["target_ongoing_requests"] > ingress["autoscaling_config"][
        "target_ongoing_requests"]  # fmt: skip
    assert live["autoscaling_config"]["target_ongoing_requests"] < live["max_ongoing_requests"]


def _deployments(config: dict) -> dict[str, dict]:
    return {d["name"]: d for app in config["applications"] for d in app.get("deployments", [])}


@pytest.mark.parametrize("size", SIZES)
def test_rayservice_embeds_serve_config(size):
    """serveConfigV2 is serve/config.yaml but for the host and the values file's per-deployment overrides."""
    from ray.serve.schema import ServeDeploySchema

    embedded = yaml.safe_load(_rayservice(size)["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)
    assert not _unknown_keys(ServeDeploySchema, embedded), "options Ray Serve would ignore"
    local = _serve_config()
    assert embedded["http_options"].pop("host") == "0.0.0.0", "in a Pod the proxy must listen beyond loopback"
    local["http_options"].pop("host")
    overrides = load_values(size).serve.deployments
    for name, deployment in _deployments(embedded).items():
        for key, value in overrides.get(name, {}).items():
            where = deployment["ray_actor_options"] if key == "num_gpus" else deployment["autoscaling_config"]
            assert where.pop(key) == value, f"{name}.{key} is not the values file's {value}"
            (_deployments(local)[name].get("ray_actor_options", {}) if key == "num_gpus"
             else _deployments(local)[name].get("autoscaling_config", {})).pop(key, None)
    assert embedded == local, f"serveConfigV2 of the {size} RayService has drifted from serve/config.yaml"


def test_prod_serves_the_practice_model_on_a_gpu_group_that_starts_empty():
    cluster = _rayservice("prod")["spec"]["rayClusterConfig"]
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    embedded = _deployments(yaml.safe_load(_rayservice("prod")["spec"]["serveConfigV2"]))
    assert embedded["practice"]["ray_actor_options"]["num_gpus"] > 0, "nothing would scale the GPU group up"
    # The local stack has no GPU: serve/config.yaml must ask for none, or its replicas would never start.
    assert all("num_gpus" not in d.get("ray_actor_options", {}) for d in _deployments(_serve_config()).values())
    assert all(g["groupName"] != "gpu" for g in _rayservice("dev")["spec"]["rayClusterConfig"]["workerGroupSpecs"])


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in MANIFESTS if _job_spec(doc) is not None],
    ids=[name for name, doc in MANIFESTS if _job_spec(doc) is not None],
)
def test_job_entrypoint_runs_a_shipped_module_and_exits(doc):
    argv = shlex.split(_job_spec(doc)["entrypoint"])
    assert argv[:2] == ["python", "-m"] and len(argv) >= 3, f"entrypoint {argv} is not `python -m MODULE ...`"
    module = argv[2]
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    assert _is_shipped(module), f"{module} is not in the packages pyproject installs into the image"
    assert "--follow" not in argv, "a batch job must drain and exit, not follow the topic"
