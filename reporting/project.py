"""Get or create the Evidently project and its dashboard.

The dashboard reads the metric points Evidently stores for every snapshot; each panel selects
them by metric type and labels. The metric types named here are the ones
:func:`reporting.runs.build_run` puts into its two reports, so the two modules change together.

Panels (tab "Drift"): share of drifted embedding columns, embedding drift score, prod rows.
Panels (tab "Quality"): F1 / precision / recall / balanced accuracy over time, per-class F1 and
recall, feedback rows.

Example:
    >>> from evidently.ui.workspace import Workspace
    >>> from reporting.project import get_or_create_project
    >>> project = get_or_create_project(Workspace("/tmp/ws"), "YOLO detection monitoring")
"""

from __future__ import annotations

from pathlib import Path

from evidently.sdk.models import (
    DashboardModel,
    DashboardPanelPlot,
    DashboardTabModel,
    PanelMetric,
)
from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel
from evidently.ui.workspace import Project, Workspace, WorkspaceBase

# Tags put on the snapshots by reporting.runs; panels filter on them where one metric type
# (RowCount) appears in both reports.
DRIFT_TAG = "drift"
QUALITY_TAG = "classification"
BALANCED_ACCURACY_COLUMN = "balanced_accuracy"

_M = "evidently:metric_v2:"
DRIFT_TAB = "Drift"
QUALITY_TAB = "Quality"


def open_workspace(path: Path) -> Workspace:
    """Open (and create if needed) a local Evidently workspace folder."""
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


def _quality_metrics() -> list[PanelMetric]:
    return [
        PanelMetric(legend="F1 (macro)", metric=f"{_M}F1Score"),
        PanelMetric(legend="precision (macro)", metric=f"{_M}Precision"),
        PanelMetric(legend="recall (macro)", metric=f"{_M}Recall"),
        PanelMetric(
            legend="balanced accuracy (sklearn)",
            metric=f"{_M}MaxValue",
            metric_labels={"column": BALANCED_ACCURACY_COLUMN},
        ),
    ]


def dashboard_panels() -> list[tuple[str, DashboardPanelPlot]]:
    """The dashboard as (tab, panel) pairs, in display order."""
    drifted_share = PanelMetric(
        legend="share of drifted columns",
        metric=f"{_M}DriftedColumnsCount",
        metric_labels={"value_type": "share"},
    )
    embedding_drift = PanelMetric(legend="mean-embedding distance", metric=f"{_M}EmbeddingsDrift")
    return [
        (DRIFT_TAB, text_panel(
            title="Embedding drift: production boxes vs reference data",
            description="One point per run; a run compares the latest prod rows with ref_data.csv.",
        )),
        (DRIFT_TAB, counter_panel(
            title="Share of drifted embedding columns (last run)",
            values=[drifted_share], size="half", aggregation="last",
        )),
        (DRIFT_TAB, counter_panel(
            title="Embedding drift score (last run)",
            values=[embedding_drift], size="half", aggregation="last",
        )),
        (DRIFT_TAB, line_plot_panel(
            title="Share of drifted embedding columns",
            description="A column drifts when its stattest fires (KS p <= 0.05 by default); "
            "the data set drifts when the share reaches REPORTING_DRIFT_SHARE (0.5).",
            values=[drifted_share], size="half",
        )),
        (DRIFT_TAB, line_plot_panel(
            title="Embedding drift score (EmbeddingsDrift)",
            description="Euclidean distance between the mean prod and mean ref embedding.",
            values=[embedding_drift], size="half",
        )),
        (DRIFT_TAB, line_plot_panel(
            title="Prod rows per run",
            values=[PanelMetric(legend="rows", metric=f"{_M}RowCount", tags=[DRIFT_TAG])],
            size="full",
        )),
        (QUALITY_TAB, text_panel(
            title="Detection quality on feedback rows",
            description="Classes include __background__ (false positives) and __missed__ "
            "(missed objects); macro averages count them as classes. __background__ scores 0 "
            "by construction: nothing is ever predicted as background.",
        )),
        (QUALITY_TAB, counter_panel(
            title="F1 (macro, last run)", values=[_quality_metrics()[0]], size="half",
        )),
        (QUALITY_TAB, counter_panel(
            title="Balanced accuracy (last run)", values=[_quality_metrics()[3]], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="F1, precision, recall, balanced accuracy",
            values=_quality_metrics(), size="full",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="F1 per class",
            values=[PanelMetric(legend="{{label}}", metric=f"{_M}F1ByLabel")], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="Recall per class",
            values=[PanelMetric(legend="{{label}}", metric=f"{_M}RecallByLabel")], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="Feedback rows per run",
            values=[PanelMetric(legend="rows", metric=f"{_M}RowCount", tags=[QUALITY_TAG])],
            size="full",
        )),
    ]


def find_project(workspace: WorkspaceBase, name: str) -> Project | None:
    """The first project called ``name``, or None (nothing is created)."""
    return next((p for p in workspace.list_projects() if p.name == name), None)


def get_or_create_project(workspace: WorkspaceBase, name: str) -> Project:
    """Return the project called ``name``, creating it with its dashboard if absent.

    A project that exists but has an empty dashboard (created by hand, or by an interrupted
    call) gets the panels; a project with panels is left as it is, so edits made in the UI stay.

    Args:
        workspace: Local (or remote) Evidently workspace.
        name: Project name; the first project with this exact name is used.

    Returns:
        The project, saved.
    """
    project = find_project(workspace, name)
    if project is None:
        project = workspace.create_project(name)
        project.description = (
            "Drift of per-box embeddings and detection quality on user feedback "
            "(written by `python -m reporting`)."
        )
        project.save()
    if not workspace.get_dashboard(project.id).panels:
        workspace.save_dashboard(project.id, build_dashboard())
    return project


def build_dashboard() -> DashboardModel:
    """The whole dashboard model: tabs in order, each listing its panels once."""
    # Written in one piece rather than with ``project.dashboard.add_panel(panel, tab=...)``:
    # in evidently 0.7.23 that call lists a panel twice when its tab already exists, and it
    # rewrites the dashboard file once per panel.
    panels = dashboard_panels()
    tabs: dict[str, DashboardTabModel] = {}
    for tab, panel in panels:
        tabs.setdefault(tab, DashboardTabModel(title=tab, panels=[])).panels.append(panel.id)
    return DashboardModel(tabs=list(tabs.values()), panels=[panel for _, panel in panels])
