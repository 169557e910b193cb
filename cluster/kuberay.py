"""The Ray side on KubeRay v1.7 (`ray.io/v1`): the RayService that serves the API, and a RayJob or RayCronJob per
batch job (cluster/jobs.py), each on a Ray cluster of its own that is deleted when the job ends.

Every Ray container runs the project's image, takes KAFKA_BOOTSTRAP from the ConfigMap and the service URLs from
the Secret by name (a missing key stops the Pod with CreateContainerConfigError instead of it falling back to a
local default), loads the rest of keyscope-config, and uses Ray token authentication (KubeRay makes the token).
"""

from __future__ import annotations

import copy
import importlib.metadata
from typing import Any

import yaml

from cluster import wiring
from cluster.core import meta
from cluster.jobs import BatchJob
from cluster.values import JobSize, Resources, Values

API = "ray.io/v1"
HEAD_PORTS = [
    {"name": "gcs-server", "containerPort": 6379},
    {"name": "dashboard", "containerPort": 8265},
    {"name": "client", "containerPort": 10001},
]
SERVE_PORT = {"name": "serve", "containerPort": 8000}
# Ray Serve's high-throughput mode, as the local stack runs it (devstack/stack.py `serve_ingress_env`): user code
# and the router on the replica's event loop, gRPC between deployments, and HAProxy (installed in the image) in
# front of the ingress replicas instead of Serve's Python proxy, without its per-request metrics (the API's own
# latency histogram covers every route). The stack's port moves are left out: a Pod holds one Ray node.
SERVE_THROUGHPUT_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy",
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    # A request a killed replica dropped unanswered is retried on another (every keyscope route is safe to repeat).
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
}
# KubeRay injects liveness and readiness probes into Ray containers that define none (for Ray >= 2.53 an HTTP GET of
# the node's /api/healthz on the dashboard agent's port, raylet and, on the head, GCS): they are kept. What it does
# not add is a startup probe, which holds those back while a Pod of a large image starts (GPU nodes, a loaded node
# pulling the image), so a slow start is not killed as a dead node. Five minutes.
STARTUP_PROBE = {
    "httpGet": {"path": "/api/healthz", "port": 52365},
    "periodSeconds": 5,
    "failureThreshold": 60,
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _resources(resources: Resources) -> dict:
    # Requests equal limits: Ray sizes its node by the limits, and a Guaranteed Pod is the last the kubelet evicts.
    quantities: dict[str, str] = {"cpu": resources.cpu, "memory": resources.memory}
    limits = dict(quantities)
    if resources.gpus:
        limits["nvidia.com/gpu"] = str(resources.gpus)  # KubeRay turns it into the node's num-gpus
    return {"requests": quantities, "limits": limits}


def _from(source: str, name: str, key: str) -> dict:
    return {"name": key, "valueFrom": {source: {"name": name, "key": key}}}


def _env(*, service: bool, job: BatchJob | None = None) -> list[dict]:
    env = [
        _from("configMapKeyRef", wiring.CONFIG_MAP, "KAFKA_BOOTSTRAP"),
        _from("secretKeyRef", wiring.SECRET, "CLICKHOUSE_URL"),
        _from("secretKeyRef", wiring.SECRET, "REDIS_URL"),
    ]
    if service:
        env += [
            _from("secretKeyRef", wiring.SECRET, "KEYSCOPE_TOKEN_SECRETS"),
            _from("secretKeyRef", wiring.SECRET, "KEYSCOPE_SERVICE_KEYS"),
            # A typist's deletion (DELETE /v1/users/{id}) also deletes their cold Parquet files: never the Pod's disk.
            _from("configMapKeyRef", wiring.CONFIG_MAP, "KEYSCOPE_COLD_URI"),
        ]
    if job is not None:
        env += [_from("configMapKeyRef", wiring.CONFIG_MAP, key) for key in job.required_config]
        env += [_from("secretKeyRef", wiring.SECRET, key) for key in job.required_secrets]
    if service or (job is not None and job.models):
        env.append({"name": "KEYSCOPE_MODELS_DIR", "value": wiring.MODELS_DIR})
    if service or (job is not None and job.language_model):
        env.append({"name": "KEYSCOPE_LM_DIR", "value": wiring.IMAGE_LM_DIR})
    if service:
        env += [{"name": name, "value": value} for name, value in SERVE_THROUGHPUT_ENV.items()]
    env.append({"name": "RAY_USAGE_STATS_ENABLED", "value": "0"})
    return env


def _pod(values: Values, component: str, container: dict, *, models: bool, gpus: bool = False) -> dict:
    spec: dict[str, Any] = {"serviceAccountName": wiring.SERVICE_ACCOUNT}
    if gpus:
        spec["tolerations"] = [GPU_TOLERATION]
    spec["containers"] = [container]
    if models:
        container["volumeMounts"] = [{"name": "models", "mountPath": wiring.MODELS_DIR}]
        spec["volumes"] = [{"name": "models", "persistentVolumeClaim": {"claimName": wiring.MODELS_CLAIM}}]
    labels = {"app.kubernetes.io/name": wiring.APP, "app.kubernetes.io/component": component}
    return {"metadata": {"labels": labels}, "spec": spec}


def _container(values: Values, name: str, resources: Resources, env: list[dict], *, head: bool,
               serve: bool = False) -> dict:
    container: dict[str, Any] = {"name": name, "image": wiring.image(values), "imagePullPolicy": "IfNotPresent"}
    if head:
        container["ports"] = HEAD_PORTS + ([SERVE_PORT] if serve else [])
    container["env"] = env
    container["envFrom"] = [{"configMapRef": {"name": wiring.CONFIG_MAP}}]  # the optional KEYSCOPE_* settings
    container["resources"] = _resources(resources)
    if serve:
        container["startupProbe"] = STARTUP_PROBE
    return container


def _cluster_spec(head: dict, workers: list[dict], **extra: Any) -> dict:
    return {
        "rayVersion": importlib.metadata.version("ray"),  # the Ray of the image: the project's pin (pyproject.toml)
        # KubeRay creates a Secret with a random token and sets RAY_AUTH_MODE / RAY_AUTH_TOKEN on every Ray
        # container and the job submitter. Serve's HTTP port is not covered by it.
        "authOptions": {"mode": "token"},
        **extra,
        "headGroupSpec": head,
        "workerGroupSpecs": workers,
    }


# -- the RayService -------------------------------------------------------------------------------------------------


def serve_config(values: Values, local: dict) -> dict:
    """serve/config.yaml as the cluster runs it: HTTP on every interface of the head Pod (Kubernetes Services reach
    it there), and the values file's per-deployment overrides (replica bounds, GPUs)."""
    config = copy.deepcopy(local)
    config["http_options"]["host"] = "0.0.0.0"
    deployments = {d["name"]: d for app in config["applications"] for d in app.get("deployments", [])}
    for name, overrides in values.serve.deployments.items():
        if name not in deployments:
            raise ValueError(f"serve.deployments.{name}: serve/config.yaml has no deployment {name!r}")
        deployment = deployments[name]
        for key, value in overrides.items():
            if key == "num_gpus":
                deployment.setdefault("ray_actor_options", {})["num_gpus"] = value
            else:
                deployment.setdefault("autoscaling_config", {})[key] = value
    return config


def rayservice(values: Values, local_serve_config: dict) -> dict:
    serve = values.serve
    component = "serve"
    head = {
        # No replicas or tasks on the head: it runs GCS, the dashboard, the Serve controller and, with
        # proxy_location HeadOnly, the one HTTP proxy all traffic passes through.
        "rayStartParams": {"num-cpus": "0"},
        "template": _pod(values, component, _container(
            values, "ray-head", serve.head, _env(service=True), head=True, serve=True), models=True),
    }
    workers = [{
        "groupName": "cpu",
        "replicas": serve.cpu_workers.min,
        "minReplicas": serve.cpu_workers.min,
        "maxReplicas": serve.cpu_workers.max,
        "rayStartParams": {},
        "template": _pod(values, component, _container(
            values, "ray-worker", serve.cpu_workers.resources, _env(service=True), head=False, serve=True),
            models=True),
    }]
    if serve.gpu_workers.max:
        # Scaled from zero by the autoscaler when a deployment asks for num_gpus (serve.deployments in the values);
        # Ray keeps CPU-only replicas off GPU nodes.
        workers.append({
            "groupName": "gpu",
            "replicas": 0,
            "minReplicas": 0,
            "maxReplicas": serve.gpu_workers.max,
            "rayStartParams": {},
            "template": _pod(values, component, _container(
                values, "ray-worker", serve.gpu_workers.resources, _env(service=True), head=False, serve=True),
                models=True, gpus=True),
        })
    # Worker Pods have no Serve proxy under proxy_location HeadOnly, so KubeRay's readiness probe for RayService
    # workers (which also checks :8000) keeps them NotReady (kuberay#4994); that is also what keeps them out of
    # keyscope-serve-svc. Switch serve/config.yaml to EveryNode to put a proxy on every worker.
    cluster = _cluster_spec(
        head, workers,
        # The Ray autoscaler adds worker Pods when Serve asks for more replicas than fit.
        enableInTreeAutoscaling=True,
        autoscalerOptions={
            "version": "v2",
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 300,
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        },
    )
    return {
        "apiVersion": API,
        "kind": "RayService",
        "metadata": meta(wiring.APP, values.namespace, **{"app.kubernetes.io/component": component}),
        "spec": {
            # A change to rayClusterConfig brings up a new cluster and moves traffic once it serves; a change to
            # serveConfigV2 alone is applied in place.
            "upgradeStrategy": {"type": "NewCluster"},
            "serveConfigV2": yaml.safe_dump(serve_config(values, local_serve_config), sort_keys=False),
            "rayClusterConfig": cluster,
        },
    }


# -- batch jobs -----------------------------------------------------------------------------------------------------


def entrypoint(job: BatchJob, size: JobSize, values: Values) -> str:
    """`python -m MODULE ARGS`, with the job's size filled in."""
    gpus = bool(size.worker and size.worker.gpus)
    fill = {
        "workers": str(size.workers),
        "worker_cpus": size.worker.cpu if size.worker else "1",
        "checkpoints_uri": values.storage.checkpoints_uri,
    }
    args = [arg.format(**fill) for arg in (*job.args, *(job.gpu_args if gpus else job.cpu_args))]
    return " ".join(["python", "-m", job.module, *args])


def _job_cluster(job: BatchJob, values: Values) -> dict:
    size = values.jobs.get(job.size)
    if size is None:
        raise ValueError(f"the values file has no jobs.{job.size} (the size of {job.name})")
    head_env = _env(service=False, job=job)
    # With workers, the driver alone runs on the head (num-cpus 0), and Ray Data tasks and Train workers go to the
    # workers; a head-only job runs its work on the head.
    params = {"num-cpus": "0"} if size.workers else {}
    head = {
        "rayStartParams": params,
        "template": _pod(values, job.component, _container(
            values, "ray-head", size.head, head_env, head=True), models=job.models),
    }
    workers = []
    if size.workers and size.worker is not None:
        gpus = bool(size.worker.gpus)
        workers.append({
            "groupName": "gpu" if gpus else "cpu",
            "replicas": size.workers,
            "minReplicas": size.workers,
            "maxReplicas": size.workers,
            "rayStartParams": {},
            "template": _pod(values, job.component, _container(
                values, "ray-worker", size.worker, _env(service=False, job=job), head=False),
                models=job.models, gpus=gpus),
        })
    return _cluster_spec(head, workers)


def _deletion_rules(job: BatchJob) -> dict:
    # shutdownAfterJobFinishes/ttlSecondsAfterFinished are mutually exclusive with deletion rules; these delete each
    # run's cluster when it ends and the RayJob itself later, standing in for the history limits v1.7 lacks.
    def rule(policy: str, condition: dict, ttl: int) -> dict:
        return {"policy": policy, "condition": {**condition, "ttlSeconds": ttl}}

    return {"deletionRules": [
        rule("DeleteCluster", {"jobStatus": "SUCCEEDED"}, 0),
        rule("DeleteSelf", {"jobStatus": "SUCCEEDED"}, job.keep_s),
        rule("DeleteCluster", {"jobStatus": "FAILED"}, 300),
        rule("DeleteSelf", {"jobStatus": "FAILED"}, job.keep_failed_s),
        # The run never finished (deadline passed, cluster failed to start).
        rule("DeleteCluster", {"jobDeploymentStatus": "Failed"}, 300),
        rule("DeleteSelf", {"jobDeploymentStatus": "Failed"}, job.keep_failed_s),
    ]}


def job_spec(job: BatchJob, values: Values) -> dict:
    """A RayJob's spec (the RayCronJob's jobTemplate): the entrypoint runs as the driver on the head Pod, from the
    project installed in the image (no runtime_env)."""
    spec: dict[str, Any] = {
        "entrypoint": entrypoint(job, values.jobs[job.size], values),
        "submissionMode": "K8sJobMode",
        "activeDeadlineSeconds": job.deadline_s,
    }
    if job.backoff_limit:
        spec["backoffLimit"] = job.backoff_limit
    if job.is_cron:
        spec["deletionStrategy"] = _deletion_rules(job)
    else:
        # The cluster goes 5 minutes after the run ends (time to read its logs); delete the RayJob to run it again.
        spec["shutdownAfterJobFinishes"] = True
        spec["ttlSecondsAfterFinished"] = 300
    spec["rayClusterSpec"] = _job_cluster(job, values)
    return spec


def batch_job(job: BatchJob, values: Values) -> dict:
    """The job's RayJob, or its RayCronJob (alpha in KubeRay v1.7: the operator needs
    --feature-gates=RayCronJob=true)."""
    metadata = meta(job.name, values.namespace, **{"app.kubernetes.io/component": job.component})
    if not job.is_cron:
        return {"apiVersion": API, "kind": "RayJob", "metadata": metadata, "spec": job_spec(job, values)}
    return {
        "apiVersion": API,
        "kind": "RayCronJob",
        "metadata": metadata,
        "spec": {"schedule": job.schedule, "timeZone": "Etc/UTC", "jobTemplate": job_spec(job, values)},
    }
