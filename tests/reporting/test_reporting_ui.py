"""The real ``evidently ui``, started by reporting's own launcher, serves our project and runs.

A temporary workspace gets one project and one run (``run_once`` over the fixture CSVs); the UI
is started on a free port as ``make demo`` starts it (``python -m reporting ui`` under
supervisord, which first stores the reference-only run), and its HTTP API must list the project,
the run's two snapshots beside the reference one, and the dashboard's panels, each with data.
The process is stopped at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import TIMESTAMP, make_prod, make_ref, write_csvs

from devstack.ports import free_ports
from devstack.supervisor import Program, Supervisor
from devstack.waiting import url_ready
from reporting.config import Settings
from reporting.project import dashboard_panels

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str, str]]:
    """(settings, base URL, project id) of a running UI over a workspace with one run."""
    from reporting.service import run_once

    root = tmp_path_factory.mktemp("ui")
    ref_path, prod_path = write_csvs(root / "data", make_ref(), make_prod(n=60))
    (port,) = free_ports(1)
    settings = Settings(
        workspace=root / "ws", ref_csv=ref_path, prod_csv=prod_path, ui_port=port
    )
    outcome = run_once(settings, timestamp=TIMESTAMP)
    assert outcome.project_id is not None, outcome.message
    # Started as `make demo` starts it: `python -m reporting ui` under supervisord.
    program = Program(
        "evidently", [sys.executable, "-m", "reporting", "ui"],
        # The UI bootstraps first (project, panels, reference run) from these CSVs.
        {"REPORTING_WORKSPACE": str(settings.workspace), "REPORTING_UI_PORT": str(port),
         "REPORTING_REF_CSV": str(ref_path), "REPORTING_PROD_CSV": str(prod_path)},
        ready=url_ready(f"{settings.ui_url}/api/projects"),
    )
    supervisor = Supervisor(root / "sup")
    supervisor.apply([program])
    try:
        supervisor.wait_ready("evidently", 90)
        pid = supervisor.pid("evidently")
        assert pid is not None
        # `reporting ui` became the UI itself: no launcher between supervisord and it.
        assert "evidently.cli" in " ".join(psutil.Process(pid).cmdline())
        assert psutil.Process(pid).environ()["DO_NOT_TRACK"] == "1"
        yield settings, settings.ui_url, outcome.project_id
    finally:
        assert supervisor.shutdown()


def test_api_lists_the_project(ui: tuple[Settings, str, str]) -> None:
    settings, url, project_id = ui
    projects = httpx.get(f"{url}/api/projects", timeout=10).json()
    assert [(p["id"], p["name"]) for p in projects] == [(project_id, settings.project_name)]


def test_api_lists_the_runs_snapshots(ui: tuple[Settings, str, str]) -> None:
    _, url, project_id = ui
    snapshots = httpx.get(f"{url}/api/projects/{project_id}/snapshots", timeout=10).json()
    # The run, and the reference-only run the UI's bootstrap stored.
    assert sorted(tag for s in snapshots for tag in s["tags"]) == [
        "classification", "drift", "reference"
    ]
    runs = [s for s in snapshots if "reference" not in s["tags"]]
    assert len({s["metadata"]["run_id"] for s in runs}) == 1
    assert {s["timestamp"][:19] for s in runs} == {TIMESTAMP.isoformat()}


def test_api_serves_the_dashboard(ui: tuple[Settings, str, str]) -> None:
    _, url, project_id = ui
    response = httpx.get(f"{url}/api/v2/dashboards/{project_id}", timeout=10)
    assert response.status_code == 200, response.text[:300]
    dashboard = response.json()
    assert [t["title"] for t in dashboard["tabs"]] == ["Drift", "Quality", "Reference"]
    assert len(dashboard["panels"]) == len(dashboard_panels())


def test_ui_serves_its_web_page(ui: tuple[Settings, str, str]) -> None:
    _, url, _ = ui
    response = httpx.get(f"{url}/", timeout=10)
    assert response.status_code == 200
    assert "<html" in response.text.lower()


def test_ui_workspace_is_the_settings_one(ui: tuple[Settings, str, str]) -> None:
    settings, _, project_id = ui
    assert (Path(settings.workspace) / project_id).is_dir()


def _series(
    url: str, project_id: str, metric: str, labels: dict[str, str], tags: list[str]
) -> dict[tuple[tuple[str, str], ...], list[float | None]]:
    """What a dashboard panel gets from the UI for one PanelMetric: the series' values."""
    body = {"series_filter": [
        {"tags": tags, "metadata": {}, "metric": metric, "metric_labels": labels}
    ]}
    response = httpx.post(
        f"{url}/api/v2/snapshots/{project_id}/data_series_batch", json=body, timeout=10
    )
    assert response.status_code in (200, 201), response.text[:300]
    return {
        tuple(sorted(s["params"].items())): s["values"] for s in response.json()["series"]
    }


def test_every_dashboard_panel_gets_data(ui: tuple[Settings, str, str]) -> None:
    # A panel whose metric type or labels match nothing renders empty, silently: ask the UI
    # for each panel's series, as its front end does.
    _, url, project_id = ui
    for tab, panel in dashboard_panels():
        for value in panel.values:
            series = _series(
                url, project_id, value.metric, value.metric_labels or {}, value.tags or []
            )
            assert series, f"{tab} / {panel.title}: no data for {value.metric}"
            assert all(v is not None for values in series.values() for v in values)


def test_dashboard_values_are_the_runs(ui: tuple[Settings, str, str]) -> None:
    settings, url, project_id = ui
    from reporting.service import latest_values

    expected = latest_values(settings)
    share = _series(url, project_id, "evidently:metric_v2:DriftedColumnsCount",
                    {"value_type": "share"}, [])
    assert [v for values in share.values() for v in values] == [expected["drift_share"]]
    f1 = _series(url, project_id, "evidently:metric_v2:F1Score", {}, [])
    assert [v for values in f1.values() for v in values] == [pytest.approx(expected["f1"])]
    balanced = _series(url, project_id, "evidently:metric_v2:MaxValue",
                       {"column": "balanced_accuracy"}, [])
    assert [v for values in balanced.values() for v in values] == [
        pytest.approx(expected["balanced_accuracy"])
    ]
    per_class = _series(url, project_id, "evidently:metric_v2:F1ByLabel", {}, [])
    labels = {dict(params).get("label") for params in per_class}
    assert {"circle", "square", "triangle"} <= labels
