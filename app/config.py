"""One Settings object, read once from the environment, with defaults for the local stack.

Every process (CLI, Serve replicas, Ray Data workers) builds its Settings with `Settings.from_env()`
and passes it down; no other module reads `os.environ`. Pointing KAFKA_BOOTSTRAP, CLICKHOUSE_URL,
REDIS_URL and RAY_ADDRESS at real servers needs no code change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from exc


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"environment variable {name} must be a share from 0 to 1, got {env.get(name)!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value < 0:
        raise ValueError(f"environment variable {name} must be 0 or a number of seconds, got {env.get(name)!r}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ValueError(f"environment variable {name} must be a positive number of seconds, got {env.get(name)!r}")
    return value


# Ray settings for a local cluster: no token auth, no usage reporting, and the node IP kept on loopback.
# They must be in the environment before `import ray` (Ray reads some at import time).
LOCAL_RAY_ENV: dict[str, str] = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def apply_local_ray_env(env: dict[str, str] | None = None) -> None:
    """Put LOCAL_RAY_ENV defaults into `env` (the process environment by default), keeping set values."""
    target = os.environ if env is None else env
    for name, value in LOCAL_RAY_ENV.items():
        target.setdefault(name, value)


def child_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a process keyscope starts begins with: this process's own (PATH, locale, Ray's variables),
    with `overrides` on top. The local stack and the load benchmarks hand it to the servers they start."""
    return {**os.environ, **(overrides or {})}


SECRETS_FILE_NAME = "secrets.json"  # under data_dir; written once by `keyscope up` (app.auth.ensure_local_secrets)


MYSQL_DSN_ENV = "KEYSCOPE_MYSQL_DSN"  # the MySQL migration's source (Settings.mysql_dsn)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def read_secrets_file(path: Path) -> dict[str, tuple[str, ...]]:
    """The token secrets and service keys stored in a secrets file ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a keyscope secrets file: {exc}") from exc
    stored: dict[str, tuple[str, ...]] = {}
    for name in ("token_secrets", "service_keys"):
        values = raw.get(name, []) if isinstance(raw, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"{path} is not a keyscope secrets file: {name!r} must be a list of strings")
        stored[name] = tuple(values)
    return stored


def _mask(values: tuple[str, ...], what: str) -> str:
    return f"<{len(values)} {what}>" if values else "<none>"


@dataclass(frozen=True)
class Settings:
    """Where every service lives and the limits every stage shares."""

    data_dir: Path = Path(".keyscope")
    kafka_bootstrap: str = "127.0.0.1:9092"
    keystroke_topic: str = "keystroke-analytics"
    dlq_topic: str = "keystroke-analytics-dlq"
    topic_partitions: int = 8
    consumer_group: str = "keyscope-ingest"
    clickhouse_url: str = "http://127.0.0.1:8123/default"
    redis_url: str = "redis://127.0.0.1:6379/0"
    ray_address: str = "127.0.0.1:6380"
    ray_dashboard_port: int = 8265
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    max_keystrokes: int = 20_000
    max_body_bytes: int = 2 * 1024 * 1024
    max_text_chars: int = 10_000
    max_message_bytes: int = 4 * 1024 * 1024  # larger Kafka messages are dead-lettered, never decoded
    write_retry_s: float = 300.0  # how long the ingest job retries an unavailable ClickHouse before failing
    # Retention (pipelines/archive.py): raw keystrokes stay in ClickHouse `hot_days`, then live as Parquet under
    # `cold_uri` (a directory or a pyarrow filesystem URI, s3://…; empty = <data_dir>/cold) until `cold_days`.
    cold_uri: str = ""
    hot_days: int = 90
    cold_days: int = 730
    insights_ttl_s: int = 3600
    # Follow mode: how long to wait before looking again when a pass found nothing (a look asks the broker for its
    # end offsets, nothing else), and how many long-lived Kafka readers carry the passes (pipelines/ingest/readers.py).
    ingest_interval_s: float = 0.25
    # Follow mode under load: a pass starts at most this often, so a busy topic is stored in fewer, larger passes
    # (each pass costs a fixed set of ClickHouse inserts and parts to merge, whatever its size). A pass after an idle
    # look starts at once, so a quiet topic's test still shows within the look interval. In 30-s steps on 2 cores,
    # 1 s held 150 tests/s where back-to-back passes held 100 (docs/benchmarks.md, "Capacity").
    ingest_min_pass_s: float = 1.0
    ingest_readers: int = 2
    ingest_max_messages: int = 0  # per partition and pass; 0 = everything up to the end offsets
    # The ingest job deletes the keystroke topic's records below its stored offsets (Kafka DeleteRecords) at most
    # this often: what is stored in ClickHouse leaves the broker, so the broker holds only what is still to be
    # ingested. 0 = never (set it where other consumer groups read the topic; retention then bounds it).
    topic_trim_interval_s: float = 30.0
    # Root of the warehouse export (pipelines/warehouse.py): a directory or a pyarrow filesystem URI (s3://…);
    # empty = <data_dir>/warehouse.
    warehouse_uri: str = ""
    # Root of the model registry's artifact folders (app/models/registry.py): <models_dir>/<model>/<version>/;
    # empty = <data_dir>/models. Training writes here and serving reads here, so in a cluster it is shared storage.
    models_dir: str = ""
    # The converted practice-text language model (app/practice/model_files.py); empty = <data_dir>/lm/<model>.
    lm_dir: str = ""
    # The practice deployment writes texts for signatures that missed the cache, in the background, so the next
    # request gets one (serve/practice.py). Off: only the pre-generation job (pipelines/practice.py) writes them.
    practice_live_generation: bool = True
    # The ingest job's drift check (pipelines/ingest/drift.py): this share of the stored tests is predicted with the
    # promoted pattern model and compared with how they were typed (the live MAE). 0 = no drift check.
    drift_sample_share: float = 0.1
    # Fault injection for the crash tests: the ingest job SIGKILLs itself at this point ("after_read": data
    # read, nothing written; "mid_write": a batch's raw keystrokes written, its other tables not; "after_features":
    # a batch folded into the online features, its result rows not stored; "after_write": data written, offsets not
    # stored). Empty in normal operation.
    fault_injection: str = ""
    # Bearer credentials (app/auth.py). Secrets sign and verify user/admin tokens; the first signs, the rest still
    # verify (rotation). Service keys are "name:ksk_…" (or a bare "ksk_…"). repr=False: they never reach logs.
    token_secrets: tuple[str, ...] = field(default=(), repr=False)
    service_keys: tuple[str, ...] = field(default=(), repr=False)
    user_token_ttl_s: int = 3600
    admin_token_ttl_s: int = 900  # admin tokens can delete and export: keep their exposure short
    # A typing platform's own identity provider (app/auth.py): its RS256/ES256 user tokens are verified against the
    # keys at `jwks_url` (https, or http on loopback); empty = only keyscope's HS256 tokens. `jwt_issuer` is the
    # `iss` those tokens must carry (empty = not checked); `jwt_audience` the `aud` every token must carry, keyscope's
    # own included (required with a JWKS URL); `jwt_user_claim` the claim holding the keyscope user id. A platform's
    # token is always a user token: admin rights come only from keyscope's own secrets.
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_user_claim: str = "sub"
    # Rate limits per principal, enforced across all replicas in Redis (app/ratelimit.py); 0 per second = no limit.
    # A platform backend submits for all of its users: 2,000/s sustained with a 2 s burst. A person's browser needs a
    # handful of reads per page view: 20/s with a burst of 40 covers reloads and tabs, stops scraping.
    # Admin tokens share the service limits (operators' scripts export in bulk).
    rate_limit_service_per_s: float = 2000.0
    rate_limit_service_burst: int = 4000
    rate_limit_user_per_s: float = 20.0
    rate_limit_user_burst: int = 40
    # Source of `keyscope migrate mysql` / `python -m pipelines.migrate_mysql` when --dsn is not given
    # (mysql://USER[:PASS]@HOST[:PORT]/DB). repr=False: it may hold a password.
    mysql_dsn: str = field(default="", repr=False)
    # The MySQL clients' own variable: the password when the DSN carries none. repr=False.
    mysql_password: str = field(default="", repr=False)
    # The local ClickHouse endpoint's query log (devstack): statements slower than this, in ms (0 = every one).
    clickhouse_slow_query_ms: int = 1000
    # How often each predictor replica (serve/predictor.py) asks the model registry for newly promoted versions;
    # a promotion serves within this many seconds, without a redeploy.
    model_poll_s: float = 10.0
    # Live feedback (serve/live.py): a connection silent this long ends its session; a dropped connection's session
    # can be resumed this long (app/live/parking.py).
    live_idle_s: float = 120.0
    live_resume_s: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from KEYSCOPE_* and service URL variables, local defaults otherwise.

        KEYSCOPE_TOKEN_SECRETS and KEYSCOPE_SERVICE_KEYS (comma-separated) fall back, each on its own, to
        `<data_dir>/secrets.json` when unset or empty: that is how the local stack hands out its generated secrets.
        """
        env = os.environ if env is None else env
        base = cls()
        data_dir = Path(env.get("KEYSCOPE_DATA_DIR", str(base.data_dir))).resolve()
        token_secrets = _csv(env.get("KEYSCOPE_TOKEN_SECRETS", ""))
        service_keys = _csv(env.get("KEYSCOPE_SERVICE_KEYS", ""))
        if not token_secrets or not service_keys:
            stored = read_secrets_file(data_dir / SECRETS_FILE_NAME)
            token_secrets = token_secrets or stored.get("token_secrets", ())
            service_keys = service_keys or stored.get("service_keys", ())
        return cls(
            data_dir=data_dir,
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", base.kafka_bootstrap),
            keystroke_topic=env.get("KEYSCOPE_TOPIC", base.keystroke_topic),
            dlq_topic=env.get("KEYSCOPE_DLQ_TOPIC", base.dlq_topic),
            topic_partitions=_int(env, "KEYSCOPE_TOPIC_PARTITIONS", base.topic_partitions),
            consumer_group=env.get("KEYSCOPE_CONSUMER_GROUP", base.consumer_group),
            clickhouse_url=env.get("CLICKHOUSE_URL", base.clickhouse_url),
            redis_url=env.get("REDIS_URL", base.redis_url),
            ray_address=env.get("RAY_ADDRESS", base.ray_address),
            ray_dashboard_port=_int(env, "KEYSCOPE_RAY_DASHBOARD_PORT", base.ray_dashboard_port),
            serve_host=env.get("KEYSCOPE_SERVE_HOST", base.serve_host),
            serve_port=_int(env, "KEYSCOPE_SERVE_PORT", base.serve_port),
            max_keystrokes=_int(env, "KEYSCOPE_MAX_KEYSTROKES", base.max_keystrokes),
            max_body_bytes=_int(env, "KEYSCOPE_MAX_BODY_BYTES", base.max_body_bytes),
            insights_ttl_s=_int(env, "KEYSCOPE_INSIGHTS_TTL_S", base.insights_ttl_s),
            ingest_max_messages=_int(env, "KEYSCOPE_INGEST_MAX_MESSAGES", base.ingest_max_messages),
            topic_trim_interval_s=_seconds(env, "KEYSCOPE_TOPIC_TRIM_INTERVAL_S", base.topic_trim_interval_s),
            warehouse_uri=env.get("KEYSCOPE_WAREHOUSE_URI", base.warehouse_uri),
            models_dir=env.get("KEYSCOPE_MODELS_DIR", base.models_dir),
            lm_dir=env.get("KEYSCOPE_LM_DIR", base.lm_dir),
            practice_live_generation=_flag(env, "KEYSCOPE_PRACTICE_LIVE_GENERATION", base.practice_live_generation),
            drift_sample_share=_share(env, "KEYSCOPE_DRIFT_SAMPLE_SHARE", base.drift_sample_share),
            max_message_bytes=_int(env, "KEYSCOPE_MAX_MESSAGE_BYTES", base.max_message_bytes),
            write_retry_s=_float(env, "KEYSCOPE_WRITE_RETRY_S", base.write_retry_s),
            cold_uri=env.get("KEYSCOPE_COLD_URI", base.cold_uri),
            hot_days=_int(env, "KEYSCOPE_HOT_DAYS", base.hot_days),
            cold_days=_int(env, "KEYSCOPE_COLD_DAYS", base.cold_days),
            fault_injection=env.get("KEYSCOPE_FAULT_INJECTION", ""),
            ingest_interval_s=_float(env, "KEYSCOPE_INGEST_INTERVAL_S", base.ingest_interval_s),
            ingest_min_pass_s=_seconds(env, "KEYSCOPE_INGEST_MIN_PASS_S", base.ingest_min_pass_s),
            ingest_readers=_int(env, "KEYSCOPE_INGEST_READERS", base.ingest_readers),
            token_secrets=token_secrets,
            service_keys=service_keys,
            user_token_ttl_s=_int(env, "KEYSCOPE_USER_TOKEN_TTL_S", base.user_token_ttl_s),
            admin_token_ttl_s=_int(env, "KEYSCOPE_ADMIN_TOKEN_TTL_S", base.admin_token_ttl_s),
            jwks_url=env.get("KEYSCOPE_JWKS_URL", base.jwks_url),
            jwt_issuer=env.get("KEYSCOPE_JWT_ISSUER", base.jwt_issuer),
            jwt_audience=env.get("KEYSCOPE_JWT_AUDIENCE", base.jwt_audience),
            jwt_user_claim=env.get("KEYSCOPE_JWT_USER_CLAIM") or base.jwt_user_claim,
            rate_limit_service_per_s=_float(env, "KEYSCOPE_RATE_LIMIT_SERVICE_PER_S", base.rate_limit_service_per_s),
            rate_limit_service_burst=_int(env, "KEYSCOPE_RATE_LIMIT_SERVICE_BURST", base.rate_limit_service_burst),
            rate_limit_user_per_s=_float(env, "KEYSCOPE_RATE_LIMIT_USER_PER_S", base.rate_limit_user_per_s),
            rate_limit_user_burst=_int(env, "KEYSCOPE_RATE_LIMIT_USER_BURST", base.rate_limit_user_burst),
            mysql_dsn=env.get(MYSQL_DSN_ENV, base.mysql_dsn),
            mysql_password=env.get("MYSQL_PWD", base.mysql_password),
            clickhouse_slow_query_ms=_int(env, "KEYSCOPE_CLICKHOUSE_SLOW_QUERY_MS", base.clickhouse_slow_query_ms),
            model_poll_s=_positive_seconds(env, "KEYSCOPE_MODEL_POLL_S", base.model_poll_s),
            live_idle_s=_positive_seconds(env, "KEYSCOPE_LIVE_IDLE_S", base.live_idle_s),
            live_resume_s=_positive_seconds(env, "KEYSCOPE_LIVE_RESUME_S", base.live_resume_s),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the stack use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {
            "KEYSCOPE_DATA_DIR": str(self.data_dir),
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "KEYSCOPE_TOPIC": self.keystroke_topic,
            "KEYSCOPE_DLQ_TOPIC": self.dlq_topic,
            "KEYSCOPE_TOPIC_PARTITIONS": str(self.topic_partitions),
            "KEYSCOPE_CONSUMER_GROUP": self.consumer_group,
            "CLICKHOUSE_URL": self.clickhouse_url,
            "REDIS_URL": self.redis_url,
            "RAY_ADDRESS": self.ray_address,
            "KEYSCOPE_RAY_DASHBOARD_PORT": str(self.ray_dashboard_port),
            "KEYSCOPE_SERVE_HOST": self.serve_host,
            "KEYSCOPE_SERVE_PORT": str(self.serve_port),
            "KEYSCOPE_MAX_KEYSTROKES": str(self.max_keystrokes),
            "KEYSCOPE_MAX_BODY_BYTES": str(self.max_body_bytes),
            "KEYSCOPE_INSIGHTS_TTL_S": str(self.insights_ttl_s),
            "KEYSCOPE_INGEST_MAX_MESSAGES": str(self.ingest_max_messages),
            "KEYSCOPE_TOPIC_TRIM_INTERVAL_S": str(self.topic_trim_interval_s),
            "KEYSCOPE_WAREHOUSE_URI": self.warehouse_uri,
            "KEYSCOPE_MODELS_DIR": self.models_dir,
            "KEYSCOPE_LM_DIR": self.lm_dir,
            "KEYSCOPE_PRACTICE_LIVE_GENERATION": "1" if self.practice_live_generation else "0",
            "KEYSCOPE_DRIFT_SAMPLE_SHARE": str(self.drift_sample_share),
            "KEYSCOPE_MAX_MESSAGE_BYTES": str(self.max_message_bytes),
            "KEYSCOPE_WRITE_RETRY_S": str(int(self.write_retry_s)),
            "KEYSCOPE_COLD_URI": self.cold_uri,
            "KEYSCOPE_HOT_DAYS": str(self.hot_days),
            "KEYSCOPE_COLD_DAYS": str(self.cold_days),
            "KEYSCOPE_INGEST_INTERVAL_S": str(self.ingest_interval_s),
            "KEYSCOPE_INGEST_MIN_PASS_S": str(self.ingest_min_pass_s),
            "KEYSCOPE_INGEST_READERS": str(self.ingest_readers),
            "KEYSCOPE_TOKEN_SECRETS": ",".join(self.token_secrets),
            "KEYSCOPE_SERVICE_KEYS": ",".join(self.service_keys),
            "KEYSCOPE_USER_TOKEN_TTL_S": str(self.user_token_ttl_s),
            "KEYSCOPE_ADMIN_TOKEN_TTL_S": str(self.admin_token_ttl_s),
            "KEYSCOPE_JWKS_URL": self.jwks_url,
            "KEYSCOPE_JWT_ISSUER": self.jwt_issuer,
            "KEYSCOPE_JWT_AUDIENCE": self.jwt_audience,
            "KEYSCOPE_JWT_USER_CLAIM": self.jwt_user_claim,
            "KEYSCOPE_RATE_LIMIT_SERVICE_PER_S": str(self.rate_limit_service_per_s),
            "KEYSCOPE_RATE_LIMIT_SERVICE_BURST": str(self.rate_limit_service_burst),
            "KEYSCOPE_RATE_LIMIT_USER_PER_S": str(self.rate_limit_user_per_s),
            "KEYSCOPE_RATE_LIMIT_USER_BURST": str(self.rate_limit_user_burst),
            MYSQL_DSN_ENV: self.mysql_dsn,
            "MYSQL_PWD": self.mysql_password,
            "KEYSCOPE_CLICKHOUSE_SLOW_QUERY_MS": str(self.clickhouse_slow_query_ms),
            "KEYSCOPE_MODEL_POLL_S": str(self.model_poll_s),
            "KEYSCOPE_LIVE_IDLE_S": str(self.live_idle_s),
            "KEYSCOPE_LIVE_RESUME_S": str(self.live_resume_s),
        }

    def describe(self) -> dict[str, str]:
        """A printable view, with secrets replaced by how many there are."""
        view = {k: str(v) for k, v in asdict(self).items() if k != "extra"}
        view["token_secrets"] = _mask(self.token_secrets, "secrets")
        view["service_keys"] = _mask(self.service_keys, "keys")
        view["mysql_dsn"] = "<set>" if self.mysql_dsn else "<none>"
        view["mysql_password"] = "<set>" if self.mysql_password else "<none>"
        return view
