"""The two-node stack's pure parts: names and addresses, the settings of a stack on the head host, the environment
its Ray nodes get, and a node refused when the head is out of its reach."""

from __future__ import annotations

import pytest

from app.config import Settings
from devstack.second_node import SecondNode, TwoHosts
from devstack.stack import LocalStack, StackError, in_namespace
from devstack.two_nodes import Ports, two_node_settings

NET = TwoHosts("ks-longest", 78)
PORTS = Ports(kafka=1, clickhouse=2, redis=3, ray=4, dashboard=5, serve=6)


def test_interface_names_fit_the_kernels_limit_and_addresses_pair_up_in_two_30s():
    assert all(len(link) <= 15 for link in NET.links()) and len(set(NET.links())) == 4
    assert (NET.host_ip, NET.head_ip) == ("10.78.0.1", "10.78.0.2")
    assert (NET.head_inner_ip, NET.node_ip) == ("10.78.1.1", "10.78.1.2")
    assert (NET.head_ns, NET.node_ns) == ("ks-longest-head", "ks-longest-node")


def test_a_two_node_stack_puts_every_service_and_the_api_on_the_head_host(tmp_path):
    settings = two_node_settings(tmp_path, NET, PORTS)
    assert settings.kafka_bootstrap == "10.78.0.2:1"
    assert settings.clickhouse_url == "http://10.78.0.2:2/default"
    assert settings.redis_url == "redis://10.78.0.2:3/0"
    assert settings.ray_address == "10.78.0.2:4"
    assert (settings.serve_host, settings.serve_port) == ("10.78.0.2", 6)
    assert LocalStack(settings).dashboard_url() == "http://10.78.0.2:5"


def test_only_a_head_off_loopback_lets_other_nodes_join(tmp_path):
    loopback = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:6380"})
    assert LocalStack(loopback).ray_env()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert LocalStack(loopback).dashboard_url() == "http://127.0.0.1:8265"
    head_host = two_node_settings(tmp_path, NET, PORTS)
    assert LocalStack(head_host).ray_env()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"


def test_a_stack_in_a_namespace_runs_its_commands_there():
    assert in_namespace(["ray", "start"], "ks-head") == ["ip", "netns", "exec", "ks-head", "ray", "start"]
    assert in_namespace(["ray", "start"], None) == ["ray", "start"]


def test_a_node_is_refused_when_the_head_is_not_the_networks_head_host(tmp_path):
    loopback = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:6380"})
    with pytest.raises(StackError, match="cannot reach it"):
        SecondNode(loopback, NET)
