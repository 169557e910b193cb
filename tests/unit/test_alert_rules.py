"""The alert rules parse, carry the seed's thresholds, and name only metrics the ingest job and the API export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipelines.ingest.metrics import EXPORTED_NAMES as INGEST_NAMES
from serve.metrics import EXPORTED_NAMES as API_NAMES

EXPORTED_NAMES = (*INGEST_NAMES, *API_NAMES)

RULES = Path(__file__).resolve().parents[2] / "cluster" / "prometheus" / "keyscope-rules.yaml"


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_every_rule_is_complete_and_names_exported_metrics():
    for rule in rules():
        assert {"alert", "expr", "labels", "annotations"} <= set(rule)
        assert rule["labels"]["severity"] in {"critical", "warning"}
        names = set(re.findall(r"\bray_keyscope_\w+", rule["expr"]))
        assert names and names <= set(EXPORTED_NAMES), rule["alert"]


def test_the_seed_thresholds_are_there():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert by_name["KeyscopeQueueDepthCritical"]["expr"].endswith("> 100000")
    assert by_name["KeyscopeProcessingLatencyCritical"]["expr"].endswith("> 10")


def test_the_api_thresholds_are_there():
    by_name = {rule["alert"]: rule for rule in rules()}
    assert by_name["KeyscopeInsightsLatencyCritical"]["expr"].endswith("> 200")
    assert by_name["KeyscopeInsightsLatencyWarning"]["expr"].endswith("> 500")
    assert "0.0001" in by_name["KeyscopeApiServerErrors"]["expr"]


def test_the_pattern_drift_rule_is_the_seeds_five_percent_for_half_an_hour():
    rule = {rule["alert"]: rule for rule in rules()}["KeyscopePatternModelDrift"]
    assert rule["for"] == "30m" and rule["labels"]["severity"] == "warning"
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    live, _, training = rule["expr"].partition(" > ")
    # Each side per (model, version): a version's live MAE is compared with its own training MAE, never another's.
    assert live == 'max by (model, version) (ray_keyscope_model_live_mae_ms{model="pattern"})'
    assert training == '1.05 * max by (model, version) (ray_keyscope_model_training_mae_ms{model="pattern"})'
