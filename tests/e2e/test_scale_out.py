"""Scale-out on Ray, shown: a second Ray node in a network namespace of its own, joined over a veth pair as a
separate host would (devstack/second_node.py), on a stack of its own in another namespace (devstack/two_nodes.py).

(a) the Serve replicas, the ingest job's Ray Data read tasks and its follow-mode readers land on both nodes;
(b) killing the worker node (SIGKILL to every process in it) while tests are posted loses no accepted test, the API
    keeps answering, and the follow-mode ingest job carries on;
(c) the partitions' offsets stay exact: the stored offsets equal the broker's end offsets after the drain, and no
    test is stored twice.

Skipped, saying why, only where network namespaces cannot be made (`ip netns add` fails).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.api_client import service_headers
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets
from app.config import Settings
from app.kafka import end_offsets
from devstack.cluster_state import haproxy_servers, read_task_nodes, reader_nodes, replicas
from devstack.second_node import TwoHosts, namespaces_unavailable
from devstack.simulate import simulate_tests
from devstack.stack import LocalStack, _session_members, wait_until
from devstack.two_nodes import Ports, start_job, two_node_settings, two_node_stack

pytestmark = pytest.mark.stack

NET = TwoHosts("ks-scale", 77)  # `keyscope bench failover` uses another subnet
PORTS = Ports(kafka=24092, clickhouse=24123, redis=24379, ray=24380, dashboard=24265, serve=24000)
FIRST_USER = 7_800_001  # this file's users: 7,800,001 – 7,899,999
LOAD_FIRST_USER = 7_800_101
POST_RATE = 20.0  # tests a second while the node is killed
KILL_AFTER_S = 4.0


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces are unavailable here, so no second Ray node can be started: {reason}")
    settings = two_node_settings(tmp_path_factory.mktemp("two-nodes"), NET, PORTS)
    with two_node_stack(settings, NET, progress=lambda message: print(message, flush=True)) as (stack, node):
        yield stack, node


def ingest(stack: LocalStack, *args: str) -> tuple[subprocess.Popen, Path]:
    """`python -m pipelines.ingest ARGS` as a job of its own on the head host, and its log."""
    log_path = stack.logs / f"ingest{'-'.join(('', *args))}.log"
    return start_job(stack, [sys.executable, "-m", "pipelines.ingest", *args], log_path), log_path


def tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture(scope="module")
def follow_job(two_nodes):
    stack, _ = two_nodes
    job, log_path = ingest(stack, "--follow")
    try:
        wait_until(lambda: len(reader_nodes(stack.settings)) >= 2, "the follow job's two readers", 90, job, log_path)
        yield job, log_path
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGINT)
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                job.kill()


def scalar(settings: Settings, sql: str, **parameters: int) -> int:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return int(client.query(sql, parameters=parameters).result_rows[0][0])
    finally:
        client.close()


def stored_offsets(settings: Settings) -> dict[int, int]:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return load_offsets(client, settings.consumer_group, settings.keystroke_topic)
    finally:
        client.close()


def broker_end_offsets(settings: Settings) -> dict[int, int]:
    return {p: o for p, o in asyncio.run(end_offsets(settings, settings.keystroke_topic)).items() if o > 0}


def test_serve_replicas_read_tasks_and_readers_land_on_both_nodes(two_nodes, request):
    stack, node = two_nodes
    both = {r.node_id for r in replicas(stack.settings)}
    assert len(both) == 2 and node.node_id in both
    assert {r.node_id for r in replicas(stack.settings, "ingress")} == both, "an ingress replica on each node"

    # HAProxy (on the head) lists both ingress replicas: Serve updates its backends a moment after a replica starts.
    ingress = {r.replica_id for r in replicas(stack.settings, "ingress")}
    wait_until(
        lambda: {s.replica_id for s in haproxy_servers(stack.settings) if s.status.startswith("UP")} == ingress,
        "HAProxy to list both ingress replicas UP",
        timeout=60,
    )

    # A drain (no --follow) reads through Ray Data: one read task per partition, spread over the nodes.
    tests = simulate_tests(8, 3, seed=781, first_user_id=FIRST_USER)
    with httpx.Client(base_url=stack.serve_url(), headers=service_headers(stack.settings), timeout=30) as api:
        assert all(api.post("/v1/tests", json=t).status_code == 202 for t in tests)
        # ... and reaches both: each answers requests (liveness checks top up a balance the POSTs left uneven).
        deadline = time.monotonic() + 30
        while not all(s.sessions > 0 for s in haproxy_servers(stack.settings)) and time.monotonic() < deadline:
            assert api.get("/healthz").status_code == 200
    proxied = {s.replica_id: s for s in haproxy_servers(stack.settings)}
    assert set(proxied) == ingress
    assert all(s.status.startswith("UP") and s.sessions > 0 for s in proxied.values()), proxied
    drain, log_path = ingest(stack)
    assert drain.wait(timeout=120) == 0, tail(log_path)
    assert set(read_task_nodes(stack.settings)) == both
    assert scalar(
        stack.settings, "SELECT count() FROM test_results WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64}",
        a=FIRST_USER, b=FIRST_USER + 7,
    ) == len(tests)  # fmt: skip

    # Follow mode's long-lived readers, one on each node.
    request.getfixturevalue("follow_job")
    assert set(reader_nodes(stack.settings)) == both


def test_every_process_of_the_stack_runs_in_the_head_namespace(two_nodes):
    """So whatever Ray binds to every interface (it does, off loopback) is bound to the namespace's own: its loopback
    and its veth ends, never this machine's interfaces."""
    stack, node = two_nodes
    state = stack._state()
    pids = {info["pid"] for info in state.values() if isinstance(info, dict) and info.get("pid")}
    pids |= set(_session_members(state["ray"]["pid"]))
    assert len(pids) >= 8  # broker, ClickHouse, Redis, `ray start`, GCS, raylet, dashboard, HAProxy and workers

    def namespace_of(pid: int) -> int | None:
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return None  # exited meanwhile

    head, node_ns = os.stat(f"/run/netns/{NET.head_ns}").st_ino, os.stat(f"/run/netns/{NET.node_ns}").st_ino
    assert {namespace_of(p) for p in pids} - {None} == {head}
    assert {namespace_of(p) for p in node.pids()} - {None} == {node_ns}


@dataclass
class Load:
    """What the platform's backend saw: each test posted until accepted (a retry reuses its test id)."""

    accepted: dict[str, int] = field(default_factory=dict)  # test id → keystrokes
    failed_attempts: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, what)
    answered_at: list[float] = field(default_factory=list)  # monotonic time of each 2xx
    given_up: list[str] = field(default_factory=list)


def post_tests(url: str, headers: dict[str, str], tests: list[dict], rate: float, load: Load) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=10) as api:
        started = time.monotonic()
        for i, test in enumerate(tests):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            deadline = time.monotonic() + 60
            while True:
                try:
                    status = api.post("/v1/tests", json=test).status_code
                    what = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    status, what = 0, f"{type(exc).__name__}: {exc}"
                if status == 202:
                    load.accepted[test["test_id"]] = len(test["keystrokes"])
                    load.answered_at.append(time.monotonic())
                    break
                load.failed_attempts.append((time.monotonic(), what))
                if time.monotonic() > deadline:
                    load.given_up.append(test["test_id"])
                    break
                time.sleep(0.1)


def test_losing_the_worker_node_under_load_loses_no_accepted_test_and_keeps_offsets_exact(two_nodes, follow_job):
    stack, node = two_nodes
    job, log_path = follow_job
    settings = stack.settings
    on_node = [r for r in replicas(settings, "ingress") if r.node_id == node.node_id]
    assert on_node, "an ingress replica runs on the node about to be lost"
    assert node.node_id in reader_nodes(settings), "a follow-mode reader runs on the node about to be lost"

    tests = simulate_tests(60, 5, seed=782, first_user_id=LOAD_FIRST_USER)
    load = Load()
    poster = threading.Thread(
        target=post_tests, args=(stack.serve_url(), service_headers(settings), tests, POST_RATE, load)
    )
    poster.start()
    time.sleep(KILL_AFTER_S)
    killed_at = time.monotonic()
    killed = node.kill()
    poster.join(timeout=120)
    assert not poster.is_alive()
    print(
        f"killed the worker node ({killed} processes) {KILL_AFTER_S:g} s into {len(tests)} tests posted at "
        f"{POST_RATE:g}/s; {len(load.failed_attempts)} failed attempts, every one retried: "
        f"{sorted({what for _, what in load.failed_attempts})[:5]}"
    )

    # The API kept answering: every test was accepted, and tests were accepted after the kill.
    assert not load.given_up
    assert len(load.accepted) == len(tests)
    assert sum(t > killed_at for t in load.answered_at) > POST_RATE * 3

    # The follow job drains the topic after its lost reader comes back on the head.
    def drained() -> bool:
        ends = broker_end_offsets(settings)
        return bool(ends) and all(stored_offsets(settings).get(p, 0) >= o for p, o in ends.items())

    wait_until(drained, "the follow job's drain after the node loss", 150, job, log_path)
    assert job.poll() is None, "the follow job survived the node loss"
    readers = reader_nodes(settings)
    assert len(readers) == 2 and node.node_id not in readers

    # (c) The offsets are exactly the broker's end offsets, and every accepted test is stored once.
    assert stored_offsets(settings) == broker_end_offsets(settings)
    users = {"a": LOAD_FIRST_USER, "b": LOAD_FIRST_USER + 59}
    where = "WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64}"
    assert scalar(settings, f"SELECT count() FROM test_results {where}", **users) == len(load.accepted)
    assert scalar(settings, f"SELECT uniqExact(test_id) FROM test_results {where}", **users) == len(load.accepted)
    assert scalar(settings, f"SELECT count() FROM test_keys {where}", **users) == len(load.accepted)
    assert scalar(settings, f"SELECT count() FROM keystrokes {where}", **users) == sum(load.accepted.values())

    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=60) == 0, tail(log_path)
