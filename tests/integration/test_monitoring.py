"""Real Prometheus over the real stack: every Grafana panel's query returns data, and the alert
rules load and evaluate without error.

Debian's Prometheus (``devstack/prometheus.py``, the program ``make demo`` runs) scrapes the
session's gateway and TorchServe every second with the rules of ``deploy/prometheus/rules``.
After two bursts of traffic (predictions, a refused upload, a 404, feedback) and one reporting
run (what the watcher runs) that writes the drift summary the gateway exports, each expression of
``deploy/grafana/dashboards/yoloserve.json`` goes to ``/api/v1/query`` with Grafana's variables
replaced by a concrete window, and must answer at least one finite sample.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from devstack.ports import free_port
from devstack.prometheus import RULES_DIR, prometheus_program
from devstack.supervisor import Supervisor
from tests.integration.conftest import USER_KEY, Stack
from tests.integration.loop_support import wait_exported
from yoloserve import paths
from yoloserve.drift_summary import FILE_NAME as DRIFT_SUMMARY_FILE

pytestmark = pytest.mark.integration

DASHBOARD = paths.ROOT / "deploy" / "grafana" / "dashboards" / "yoloserve.json"
SCRAPE_S = 1.0
# What Grafana would put for $__rate_interval at a 1 s scrape is 4 x 1 s; a wider window keeps
# both traffic bursts in every rate().
WINDOW = "30s"
GRAFANA_VARIABLES = re.compile(r"\$\{?__(rate_interval|interval|range)\b\}?")


def panel_queries() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL with Grafana's time variables replaced) of every target."""
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = GRAFANA_VARIABLES.sub(WINDOW, target["expr"])
            assert "$" not in expr, f"{panel['title']}: unreplaced variable in {expr}"
            queries.append((f"{panel['title']} / {target['refId']}", expr))
    return queries


def rule_names() -> set[str]:
    return {
        rule.get("alert") or rule["record"]
        for path in RULES_DIR.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    }


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[httpx.Client]:
    """Debian's Prometheus scraping ``stack`` every second, under its own supervisord."""
    port = free_port()
    program = prometheus_program(
        tmp_path / "prometheus", port, stack.gateway_url, stack.torchserve.metrics_url,
        scrape_interval_s=SCRAPE_S,
    )
    supervisor = Supervisor(tmp_path / "supervisor")
    try:
        supervisor.apply([program])
        supervisor.wait_ready(program.name, 60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        supervisor.shutdown()


def _query(prom: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = prom.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return [{"metric": {}, "value": result}]
    return result


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def _traffic(gateway: httpx.Client, stack: Stack, feedback: bool) -> None:
    """Two predictions, a refused upload (415), an unknown route (404), optionally feedback."""
    sample = stack.data_dir / "samples" / "shapes_1.jpg"
    image = sample.read_bytes()
    predicted: dict[str, Any] = {}
    for _ in range(2):
        response = gateway.post("/predict", files={"file": (sample.name, image)})
        assert response.status_code == 200, response.text
        predicted = response.json()
    assert gateway.post("/predict", files={"file": ("a.txt", b"no image")}).status_code == 415
    assert gateway.get("/no-such-route").status_code == 404
    if feedback:
        classes = gateway.get("/models").json()["classes"]
        # Confirm what the model found and add three boxes it missed: at least 3 rows.
        boxes = [{"xyxy": b["xyxy"], "name": b["name"]} for b in predicted["boxes"]]
        boxes += [{"xyxy": [4.0 + 50 * i, 4.0, 44.0 + 50 * i, 40.0], "name": classes[0]}
                  for i in range(3)]
        labels = {"request_id": predicted["request_id"], "boxes": boxes}
        response = gateway.post(
            "/feedback",
            headers={"X-API-Key": USER_KEY},
            files={"file": (sample.name, image)},
            data={"labels": json.dumps(labels)},
        )
        assert response.status_code == 201, response.text


def _drift_report(stack: Stack, tmp_path: Path) -> None:
    """One reporting run over the stack's prod rows, as ``python -m reporting watch`` makes."""
    from reporting.config import Settings
    from reporting.service import run_once

    prod = wait_exported(stack)  # the gateway appends the rows moments after each answer
    # The reference only has to share the embedding columns: the prod rows themselves will do
    # (drift share 0); what is checked is that the result reaches Prometheus.
    rows = pd.read_csv(prod)
    ref = tmp_path / "ref_data.csv"
    rows[[c for c in rows.columns if c.startswith("emb_")] + ["target"]].to_csv(ref, index=False)
    settings = Settings(workspace=tmp_path / "workspace", ref_csv=ref, prod_csv=prod, min_rows=3)
    outcome = run_once(settings)
    assert outcome.run is not None and "drift" in outcome.run.snapshots, outcome.message
    assert (stack.data_dir / DRIFT_SUMMARY_FILE).is_file()


def _wait_for(check: Any, timeout: float) -> Any:
    """``check()`` until it is truthy or ``timeout`` passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_every_panel_query_has_data_and_every_rule_evaluates(
    stack: Stack, gateway: httpx.Client, prometheus: httpx.Client, tmp_path: Path
) -> None:
    started = time.monotonic()

    def targets_up() -> bool:
        active = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        return {t["labels"]["job"] for t in active if t["health"] == "up"} == {
            "gateway", "torchserve"
        }

    assert _wait_for(targets_up, 20), prometheus.get("/api/v1/targets").text
    # Two bursts a few scrapes apart: a labelled series is born at its first request, and a
    # rate() needs it to grow after that.
    _traffic(gateway, stack, feedback=False)
    time.sleep(3 * SCRAPE_S)
    _traffic(gateway, stack, feedback=True)
    _drift_report(stack, tmp_path)

    queries = panel_queries()
    missing: dict[str, str] = {}

    def all_have_data() -> bool:
        missing.clear()
        for name, expr in queries:
            result = _query(prometheus, expr)
            if not _has_data(result):
                missing[name] = f"{expr} -> {result}"
        return not missing

    assert _wait_for(all_have_data, 30), "panels without data:\n" + "\n".join(
        f"  {name}: {why}" for name, why in missing.items()
    )

    def rules_evaluated() -> list[dict[str, Any]]:
        groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if {r["name"] for r in rules} != rule_names():
            return []
        return rules if all(r["health"] != "unknown" for r in rules) else []

    rules = _wait_for(rules_evaluated, 20)
    assert rules, prometheus.get("/api/v1/rules").text
    bad = {r["name"]: (r["health"], r.get("lastError")) for r in rules
           if r["health"] != "ok" or r.get("lastError")}
    assert not bad, bad
    assert time.monotonic() - started < 60
