"""How the rendered objects find each other: the fixed names of what the renderer creates and the in-cluster
addresses the operators give them. Only sizes vary between deployments (values.py); these do not."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

from cluster.values import Values

APP = "keyscope"
CONFIG_MAP = "keyscope-config"  # non-secret settings, loaded whole into every Ray container (envFrom)
SECRET = "keyscope-secrets"  # CLICKHOUSE_URL, REDIS_URL, the API's credentials, the MySQL DSN
CLICKHOUSE_SECRET = "keyscope-clickhouse"  # key `password`: the ClickHouse user `keyscope`
REDIS_SECRET = "keyscope-redis"  # key `password`: Redis AUTH
SERVICE_ACCOUNT = "keyscope"  # every Ray Pod; annotate it with a cloud role for object storage
MODELS_CLAIM = "keyscope-models"
MODELS_DIR = "/models"  # KEYSCOPE_MODELS_DIR where the claim is mounted

KAFKA_CLUSTER = "keyscope"  # Strimzi names its bootstrap Service <cluster>-kafka-bootstrap
CLICKHOUSE_INSTALLATION = "keyscope"
CLICKHOUSE_CLUSTER = "keyscope"  # the {cluster} macro the generated DDL runs ON CLUSTER (app/clickhouse/cluster_ddl.py)
CLICKHOUSE_USER = "keyscope"
CLICKHOUSE_DATABASE = "default"  # as locally: the migrations create their tables in the URL's database
KEEPER_INSTALLATION = "keyscope"  # the Altinity operator names its Service keeper-<name>
REDIS_RELEASE = "keyscope-redis"  # the Helm release; the chart names the primary's Service <release>-master

# The converted practice-text model inside the image (Dockerfile: ENV KEYSCOPE_LM_DIR, made by `keyscope practice
# model` at build time), so no Pod converts it at start.
IMAGE_LM_DIR = "/home/ray/keyscope/lm/smollm2-135m-instruct"
PLACEHOLDER = "CHANGE-ME"  # in every Secret template value: never a real secret in the repository


def _service(name: str, namespace: str, port: int) -> str:
    return f"{name}.{namespace}.svc:{port}"


def kafka_bootstrap(values: Values) -> str:
    return _service(f"{KAFKA_CLUSTER}-kafka-bootstrap", values.data_namespace, 9092)


def clickhouse_service(values: Values) -> str:
    return _service(f"clickhouse-{CLICKHOUSE_INSTALLATION}", values.data_namespace, 8123)


def keeper_host(values: Values) -> str:
    return f"keeper-{KEEPER_INSTALLATION}.{values.data_namespace}.svc"


def redis_service(values: Values) -> str:
    return _service(f"{REDIS_RELEASE}-master", values.data_namespace, 6379)


def clickhouse_url(values: Values, password: str = PLACEHOLDER) -> str:
    return f"http://{CLICKHOUSE_USER}:{password}@{clickhouse_service(values)}/{CLICKHOUSE_DATABASE}"


def redis_url(values: Values, password: str = PLACEHOLDER) -> str:
    return f"redis://:{password}@{redis_service(values)}/0"


def project_version() -> str:
    """keyscope's version: pyproject.toml beside the package in a checkout (the source of truth there, even before a
    reinstall), else the installed distribution's."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == APP:
            return str(project["version"])
    return importlib.metadata.version(APP)


def image(values: Values) -> str:
    """The image every Ray container runs: the values' repository, tagged with the project version."""
    return f"{values.image}:{project_version()}"


def serve_config_path() -> Path:
    """serve/config.yaml, found without importing the serve package (which loads Ray)."""
    spec = importlib.util.find_spec("serve")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the serve package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "config.yaml"
