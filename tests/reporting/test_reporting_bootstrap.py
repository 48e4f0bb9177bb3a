"""Monitoring from minute one: the project, its panels and the reference-only run before feedback.

The first tests call :func:`reporting.service.bootstrap` on a real local Evidently workspace
(no server); the last one starts the real ``evidently ui`` and the real ``reporting watch``
under supervisord as ``make demo`` does, with no production rows at all, and reads the project,
the dashboard and the reference panels' data back over the UI's HTTP API, then restarts the
watcher and checks that nothing was duplicated.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from conftest import CLASSES, emb_columns, make_prod, make_ref, write_csvs

from devstack.ports import free_ports
from devstack.supervisor import Program, Supervisor
from devstack.waiting import url_ready
from reporting.config import Settings
from reporting.project import (
    REFERENCE_TAB,
    REFERENCE_TAG,
    dashboard_panels,
    merge_dashboard,
    open_workspace,
)


def _settings(root: Path, ref: pd.DataFrame, prod: pd.DataFrame | None = None) -> Settings:
    ref_path, prod_path = write_csvs(root / "data", ref, prod if prod is not None else ref[0:0])
    if prod is None:
        prod_path.unlink()  # a fresh platform: no prod_data.csv yet
    return Settings(workspace=root / "ws", ref_csv=ref_path, prod_csv=prod_path)


def _reference_snapshots(settings: Settings) -> list[str]:
    from reporting.project import find_project

    workspace = open_workspace(settings.workspace)
    project = find_project(workspace, settings.project_name)
    assert project is not None
    ids = []
    for snapshot_id in workspace.list_runs(project.id):
        model = workspace.get_run(project.id, snapshot_id)
        if model is not None and REFERENCE_TAG in model.tags:
            ids.append(str(snapshot_id))
    return ids


def test_every_panel_says_what_it_measures() -> None:
    panels = dashboard_panels()
    assert len({panel.title for _, panel in panels}) == len(panels)  # titles are the merge key
    for tab, panel in panels:
        assert panel.subtitle and len(panel.subtitle) > 20, f"{tab} / {panel.title}"


def test_bootstrap_without_prod_rows_creates_project_panels_and_reference_run(
    tmp_path: Path,
) -> None:
    from reporting.service import bootstrap, latest_values

    ref = make_ref(n=300)
    settings = _settings(tmp_path, ref)
    outcome = bootstrap(settings)
    assert outcome.added
    workspace = open_workspace(settings.workspace)
    projects = workspace.list_projects()
    assert [(str(p.id), p.name) for p in projects] == [(outcome.project_id, settings.project_name)]
    dashboard = workspace.get_dashboard(outcome.project_id)
    assert [t.title for t in dashboard.tabs] == ["Drift", "Quality", REFERENCE_TAB]
    assert sorted(p.title for p in dashboard.panels) == sorted(
        p.title for _, p in dashboard_panels()
    )
    assert _reference_snapshots(settings) == [outcome.snapshot_id]
    # The reference run is not a production run: "latest" still has nothing to show.
    assert latest_values(settings) == {}


def test_reference_values_are_the_csvs(tmp_path: Path) -> None:
    from evidently.core.report import Snapshot

    from reporting.reference import reference_values
    from reporting.service import bootstrap

    ref = make_ref(n=250, seed=7)
    settings = _settings(tmp_path, ref)
    outcome = bootstrap(settings)
    model = open_workspace(settings.workspace).get_run(outcome.project_id, outcome.snapshot_id)
    assert model is not None
    values = reference_values(Snapshot.load_model(model).dict())
    assert values["rows"] == 250
    counts = ref["target"].value_counts()
    for label in CLASSES:
        assert values[f"count:{label}"] == counts[label]
        assert values[f"share:{label}"] == pytest.approx(counts[label] / 250)
    for column in emb_columns():
        assert values[f"mean:{column}"] == pytest.approx(ref[column].mean())
        assert values[f"std:{column}"] == pytest.approx(ref[column].std(), rel=1e-3)


def test_bootstrap_twice_duplicates_nothing(tmp_path: Path) -> None:
    from reporting.service import bootstrap, run_once

    settings = _settings(tmp_path, make_ref(), make_prod(n=40))
    first = bootstrap(settings)
    run_once(settings)  # the watcher's first run goes to the same project
    second = bootstrap(settings)
    assert not second.added and second.snapshot_id == first.snapshot_id
    workspace = open_workspace(settings.workspace)
    assert len(workspace.list_projects()) == 1
    assert len(workspace.get_dashboard(first.project_id).panels) == len(dashboard_panels())
    assert _reference_snapshots(settings) == [first.snapshot_id]


def test_new_reference_data_adds_a_point_and_a_lost_snapshot_is_stored_again(
    tmp_path: Path,
) -> None:
    from reporting.reference import MARKER_NAME
    from reporting.service import bootstrap

    settings = _settings(tmp_path, make_ref(seed=0))
    first = bootstrap(settings)
    make_ref(seed=1).to_csv(settings.ref_csv, index=False)  # ref data rebuilt
    second = bootstrap(settings)
    assert second.added and second.snapshot_id != first.snapshot_id
    assert sorted(_reference_snapshots(settings)) == sorted([first.snapshot_id, second.snapshot_id])
    # The marker is only a cache: a snapshot deleted behind its back is stored again.
    open_workspace(settings.workspace).delete_run(second.project_id, second.snapshot_id)
    third = bootstrap(settings)
    assert third.added
    marker = json.loads((settings.workspace / MARKER_NAME).read_text())
    assert marker["snapshot_id"] == third.snapshot_id


def test_bootstrap_refuses_missing_or_bad_reference_data(tmp_path: Path) -> None:
    from reporting.service import bootstrap

    settings = _settings(tmp_path, make_ref())
    settings.ref_csv.unlink()
    with pytest.raises(FileNotFoundError):
        bootstrap(settings)
    make_ref().drop(columns=["target"]).to_csv(settings.ref_csv, index=False)
    with pytest.raises(ValueError, match="target"):
        bootstrap(settings)


def test_an_older_dashboard_gets_only_the_missing_panels() -> None:
    from evidently.sdk.models import DashboardModel

    from reporting.project import build_dashboard

    full = build_dashboard()
    (reference_tab,) = [t for t in full.tabs if t.title == REFERENCE_TAB]
    reference_ids = set(reference_tab.panels)
    # An older release's dashboard: no Reference tab, and one panel the user retitled.
    old = DashboardModel(
        tabs=[t for t in full.copy(deep=True).tabs if t.title != REFERENCE_TAB],
        panels=[p for p in full.copy(deep=True).panels if p.id not in reference_ids],
    )
    old.panels[1].title = "my own title"
    merged = merge_dashboard(old, dashboard_panels())
    titles = [p.title for p in merged.panels]
    assert len(titles) == len(set(titles))
    assert "my own title" in titles  # what was there stays
    assert [t.title for t in merged.tabs] == ["Drift", "Quality", REFERENCE_TAB]
    # The retitled panel comes back once under its own title; every Reference panel is added.
    assert len(merged.panels) == len(old.panels) + 1 + len(reference_ids)
    assert merge_dashboard(merged, dashboard_panels()) is merged  # nothing missing: no write


def _series_values(url: str, project_id: str, metric: str, labels: dict[str, str],
                   tags: list[str]) -> dict[str, list[float | None]]:
    body = {"series_filter": [
        {"tags": tags, "metadata": {}, "metric": metric, "metric_labels": labels}
    ]}
    response = httpx.post(
        f"{url}/api/v2/snapshots/{project_id}/data_series_batch", json=body, timeout=10
    )
    assert response.status_code in (200, 201), response.text[:300]
    return {
        json.dumps(s["params"], sort_keys=True): s["values"] for s in response.json()["series"]
    }


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def _demo_programs(settings: Settings, port: int, ui_args: tuple[str, ...] = ()) -> list[Program]:
    """The UI and the watcher as scripts.stack runs them (same commands, test paths)."""
    env = {
        "DO_NOT_TRACK": "1",
        "REPORTING_WORKSPACE": str(settings.workspace),
        "REPORTING_REF_CSV": str(settings.ref_csv),
        "REPORTING_PROD_CSV": str(settings.prod_csv),
    }
    return [
        Program("evidently", [sys.executable, "-m", "reporting", "ui", *ui_args],
                {**env, "REPORTING_UI_PORT": str(port)},
                ready=url_ready(f"http://127.0.0.1:{port}/api/projects")),
        Program("watcher", [sys.executable, "-m", "reporting", "watch"], env),
    ]


@pytest.mark.integration
def test_demo_ui_shows_project_and_reference_panels_before_any_feedback(tmp_path: Path) -> None:
    ref = make_ref(n=300)
    settings = _settings(tmp_path, ref)  # no prod_data.csv: a fresh demo
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    supervisor = Supervisor(tmp_path / "sup")
    started = time.monotonic()
    supervisor.apply(_demo_programs(settings, port))
    try:
        supervisor.wait_ready("evidently", 120)
        # Listed from the UI's first answer: `reporting ui` bootstraps before it starts.
        projects = _get(f"{url}/api/projects")
        print(f"project listed {time.monotonic() - started:.1f} s after start")  # noqa: T201
        assert [p["name"] for p in projects] == [settings.project_name]
        project_id = projects[0]["id"]
        board = _get(f"{url}/api/v2/dashboards/{project_id}")
        assert [t["title"] for t in board["tabs"]] == ["Drift", "Quality", REFERENCE_TAB]
        assert len(board["panels"]) == len(dashboard_panels())
        assert all(p["subtitle"] for p in board["panels"])
        # Every Reference panel gets its series from the reference run, with the CSV's values.
        for tab, panel in dashboard_panels():
            if tab != REFERENCE_TAB:
                continue
            for value in panel.values:
                series = _series_values(url, project_id, value.metric, value.metric_labels or {},
                                        value.tags or [])
                assert series, f"{panel.title}: no data"
                assert all(len(v) == 1 and v[0] is not None for v in series.values())
        shares = _series_values(url, project_id, "evidently:metric_v2:UniqueValueCount",
                                {"column": "target", "value_type": "share"}, [REFERENCE_TAG])
        counts = ref["target"].value_counts(normalize=True)
        by_label = {json.loads(k)["label"]: v[0] for k, v in shares.items()}
        assert by_label == pytest.approx({c: counts[c] for c in CLASSES})

        # The watcher bootstraps too, at the same time (supervisord starts both at once):
        # whichever takes the workspace lock second finds everything there.
        logs = [supervisor.log_path(name) for name in ("evidently", "watcher")]
        assert _wait(lambda: all("ready;" in log.read_text() for log in logs), 90), [
            log.read_text() for log in logs
        ]
        assert sorted("already stored" in log.read_text() for log in logs) == [False, True]
        # A restarted demo: both start again over the same workspace; nothing is duplicated.
        for name in ("evidently", "watcher"):
            supervisor.stop(name)
        for log in logs:
            log.write_text("")
        for name in ("evidently", "watcher"):
            supervisor.start(name)
        supervisor.wait_ready("evidently", 120)
        assert _wait(lambda: all("already stored" in log.read_text() for log in logs), 90), [
            log.read_text() for log in logs
        ]
        assert len(_get(f"{url}/api/projects")) == 1
        assert len(_get(f"{url}/api/v2/dashboards/{project_id}")["panels"]) == len(
            dashboard_panels()
        )
        snapshots = _get(f"{url}/api/projects/{project_id}/snapshots")
        assert [s["tags"] for s in snapshots] == [[REFERENCE_TAG]]
    finally:
        assert supervisor.shutdown()


@pytest.mark.integration
def test_projects_created_while_the_ui_runs_are_listed(tmp_path: Path) -> None:
    # Evidently's UI learns about new projects from a watchdog thread that dies if it reads a
    # metadata.json still empty; the SDK's create-then-write lost that race within a few
    # projects. Created staged (reporting.project._create_staged), every one must show up.
    from reporting.project import get_or_create_project

    settings = _settings(tmp_path, make_ref())
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    ui, _ = _demo_programs(settings, port, ui_args=("--no-bootstrap",))
    supervisor = Supervisor(tmp_path / "sup")
    supervisor.apply([ui])
    try:
        seconds = supervisor.wait_ready("evidently", 120)
        print(f"UI without bootstrap ready in {seconds:.1f} s")  # noqa: T201
        assert _get(f"{url}/api/projects") == []
        workspace = open_workspace(settings.workspace)
        names = {f"project {i}" for i in range(20)}
        for name in sorted(names):
            get_or_create_project(workspace, name)
        assert _wait(lambda: {p["name"] for p in _get(f"{url}/api/projects")} == names, 30), (
            supervisor.log_tail("evidently")
        )
        # The UI still follows the workspace: a run added now reaches it too.
        from reporting.service import bootstrap

        outcome = bootstrap(settings)
        assert _wait(lambda: _reference_in_ui(url, outcome.project_id), 30)
        assert "Traceback" not in supervisor.log_tail("evidently", lines=200)
    finally:
        assert supervisor.shutdown()


def _reference_in_ui(url: str, project_id: str) -> bool:
    snapshots = _get(f"{url}/api/projects/{project_id}/snapshots")
    return any(REFERENCE_TAG in s["tags"] for s in snapshots)
