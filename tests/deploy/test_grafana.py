"""deploy/grafana: provisioning files and the dashboard JSON are well formed, every panel says
what it measures and has a PromQL target on the provisioned data source.

Whether each query returns data is checked against a real Prometheus of a running stack in
``tests/integration/test_monitoring.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from yoloserve import paths

GRAFANA_DIR = paths.ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))


def _datasource() -> dict[str, Any]:
    path = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
    doc = yaml.safe_load(path.read_text())
    (source,) = doc["datasources"]
    return dict(source)


def test_datasource_is_the_compose_prometheus_with_a_fixed_uid() -> None:
    source = _datasource()
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == "yoloserve-prometheus"


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    doc = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_describes_itself_and_queries_the_datasource(path: Path) -> None:
    board = json.loads(path.read_text())
    uid = _datasource()["uid"]
    assert board["uid"] and board["title"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["title"] and len(panel["description"]) > 40, panel["title"]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == uid, panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_the_board_has_the_panels_operators_asked_for() -> None:
    board = json.loads((GRAFANA_DIR / "dashboards" / "yoloserve.json").read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "gateway_requests_total", "gateway_request_duration_seconds_bucket",
        "gateway_serving_version", "ts_queue_latency_microseconds",
        "gateway_feedback_rows_total", "gateway_retrain_jobs", "gateway_drift_share",
    ):
        assert metric in exprs, metric
