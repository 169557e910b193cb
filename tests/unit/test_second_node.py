"""The two-node stack's pure parts: interface names, the settings of a stack on a veth address, the environment
its Ray nodes get, and a node refused when the head is out of its reach."""

from __future__ import annotations

import pytest

from app.config import Settings
from devstack.second_node import SecondNode, Veth
from devstack.stack import LocalStack, StackError
from devstack.two_nodes import Ports, two_node_settings

VETH = Veth("ks-a-long-namespace-name", "10.77.0.1", "10.77.0.2")
PORTS = Ports(kafka=1, clickhouse=2, redis=3, ray=4, dashboard=5, serve=6)


def test_interface_names_fit_the_kernels_limit_and_differ():
    assert len(VETH.host_link) <= 15 and len(VETH.node_link) <= 15
    assert VETH.host_link != VETH.node_link


def test_a_two_node_stack_puts_every_service_on_the_host_end_of_the_pair(tmp_path):
    settings = two_node_settings(tmp_path, VETH, PORTS)
    assert settings.kafka_bootstrap == "10.77.0.1:1"
    assert settings.clickhouse_url == "http://10.77.0.1:2/default"
    assert settings.redis_url == "redis://10.77.0.1:3/0"
    assert settings.ray_address == "10.77.0.1:4"
    assert (settings.ray_dashboard_port, settings.serve_host, settings.serve_port) == (5, "127.0.0.1", 6)


def test_only_a_head_off_loopback_lets_other_nodes_join(tmp_path):
    loopback = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:6380"})
    assert LocalStack(loopback).ray_env()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    veth = two_node_settings(tmp_path, VETH, PORTS)
    assert LocalStack(veth).ray_env()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"


def test_a_node_is_refused_when_the_head_is_not_on_its_veth_pair(tmp_path):
    loopback = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:6380"})
    with pytest.raises(StackError, match="cannot reach it"):
        SecondNode(loopback, VETH)
