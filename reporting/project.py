"""Get or create the Evidently project and its dashboard.

The dashboard reads the metric points Evidently stores for every snapshot; each panel selects
them by metric type and labels. The metric types named here are the ones
:func:`reporting.runs.build_run` puts into its two reports, so the two modules change together.

Panels (tab "Drift"): share of drifted embedding columns, embedding drift score, prod rows.
Panels (tab "Quality"): F1 / precision / recall / balanced accuracy over time, per-class F1 and
recall, feedback rows.
Panels (tab "Reference"): reference boxes, class balance, per-column embedding mean and spread,
from the reference-only run (:mod:`reporting.reference`) that exists before any feedback.

Example:
    >>> from evidently.ui.workspace import Workspace
    >>> from reporting.project import get_or_create_project
    >>> project = get_or_create_project(Workspace("/tmp/ws"), "YOLO detection monitoring")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from evidently.sdk.models import (
    DashboardModel,
    DashboardPanelPlot,
    DashboardTabModel,
    PanelMetric,
)
from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel, text_panel
from evidently.ui.workspace import Project, Workspace, WorkspaceBase

# Tags put on the snapshots by reporting.runs; panels filter on them where one metric type
# (RowCount) appears in both reports.
DRIFT_TAG = "drift"
QUALITY_TAG = "classification"
REFERENCE_TAG = "reference"
TARGET_COLUMN = "target"
BALANCED_ACCURACY_COLUMN = "balanced_accuracy"

_M = "evidently:metric_v2:"
DRIFT_TAB = "Drift"
QUALITY_TAB = "Quality"
REFERENCE_TAB = "Reference"


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
    """The dashboard as (tab, panel) pairs, in display order.

    Every panel carries a description (its subtitle in the UI) that says what it measures and,
    for the feedback panels, that it stays empty until the first production rows arrive.
    """
    return [*_drift_panels(), *_quality_panels(), *_reference_panels()]


def _drift_panels() -> list[tuple[str, DashboardPanelPlot]]:
    drifted_share = PanelMetric(
        legend="share of drifted columns",
        metric=f"{_M}DriftedColumnsCount",
        metric_labels={"value_type": "share"},
    )
    embedding_drift = PanelMetric(legend="mean-embedding distance", metric=f"{_M}EmbeddingsDrift")
    return [
        (DRIFT_TAB, text_panel(
            title="Embedding drift: production boxes vs reference data",
            description="One point per run; a run compares the latest prod rows with "
            "ref_data.csv. Empty until the first production rows (feedback) arrive; the "
            "Reference tab shows the reference data itself from the start.",
        )),
        (DRIFT_TAB, counter_panel(
            title="Share of drifted embedding columns (last run)",
            description="Drifted emb_* columns / all emb_* columns in the latest run.",
            values=[drifted_share], size="half", aggregation="last",
        )),
        (DRIFT_TAB, counter_panel(
            title="Embedding drift score (last run)",
            description="Euclidean distance between mean prod and mean ref embedding; "
            "drift above 2.0.",
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
            description="Production rows (boxes) each drift run looked at.",
            values=[PanelMetric(legend="rows", metric=f"{_M}RowCount", tags=[DRIFT_TAG])],
            size="full",
        )),
    ]


def _quality_panels() -> list[tuple[str, DashboardPanelPlot]]:
    return [
        (QUALITY_TAB, text_panel(
            title="Detection quality on feedback rows",
            description="Classes include __background__ (false positives) and __missed__ "
            "(missed objects); macro averages count them as classes. __background__ scores 0 "
            "by construction: nothing is ever predicted as background. Empty until the first "
            "feedback rows arrive.",
        )),
        (QUALITY_TAB, counter_panel(
            title="F1 (macro, last run)",
            description="Macro F1 of prediction vs the user's label on the latest feedback rows.",
            values=[_quality_metrics()[0]], size="half",
        )),
        (QUALITY_TAB, counter_panel(
            title="Balanced accuracy (last run)",
            description="Mean recall over the classes present in the labels (scikit-learn).",
            values=[_quality_metrics()[3]], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="F1, precision, recall, balanced accuracy",
            description="Macro averages per run, on the feedback rows of that run.",
            values=_quality_metrics(), size="full",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="F1 per class",
            description="F1 of each class (pseudo-classes included) per run.",
            values=[PanelMetric(legend="{{label}}", metric=f"{_M}F1ByLabel")], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="Recall per class",
            description="Share of each class's labelled boxes the model predicted as that class.",
            values=[PanelMetric(legend="{{label}}", metric=f"{_M}RecallByLabel")], size="half",
        )),
        (QUALITY_TAB, line_plot_panel(
            title="Feedback rows per run",
            description="Rows with both a user label and a prediction in each run.",
            values=[PanelMetric(legend="rows", metric=f"{_M}RowCount", tags=[QUALITY_TAG])],
            size="full",
        )),
    ]


def _reference_panels() -> list[tuple[str, DashboardPanelPlot]]:
    # The reference run (reporting.reference) is stored when the watcher starts, so this tab
    # has data before any feedback: what the model was trained on, which drift is judged against.
    def ref(metric: str, legend: str, **labels: str) -> PanelMetric:
        return PanelMetric(
            legend=legend, metric=f"{_M}{metric}", tags=[REFERENCE_TAG], metric_labels=labels
        )

    return [
        (REFERENCE_TAB, text_panel(
            title="Reference data: the boxes drift is measured against",
            description="data/ref_data.csv: one row per labelled box of the training data "
            "(class and embedding). Written once when monitoring starts, and again only when "
            "the reference data changes.",
        )),
        (REFERENCE_TAB, counter_panel(
            title="Reference boxes",
            description="Rows (labelled boxes) in ref_data.csv.",
            values=[ref("RowCount", "boxes")], size="half", aggregation="last",
        )),
        (REFERENCE_TAB, bar_plot_panel(
            title="Class balance (share of boxes)",
            description="Share of reference boxes per class: a class far below 1/K is rare, and "
            "its production scores are noisier.",
            values=[ref("UniqueValueCount", "{{label}}", column=TARGET_COLUMN,
                        value_type="share")],
            size="half",
        )),
        (REFERENCE_TAB, bar_plot_panel(
            title="Class balance (boxes)",
            description="Number of reference boxes per class.",
            values=[ref("UniqueValueCount", "{{label}}", column=TARGET_COLUMN,
                        value_type="count")],
            size="half",
        )),
        (REFERENCE_TAB, bar_plot_panel(
            title="Embedding summary: mean per column",
            description="Mean of each emb_* column over the reference boxes: the centre that "
            "the embedding drift score measures production's distance from.",
            values=[ref("MeanValue", "{{column}}")], size="half",
        )),
        (REFERENCE_TAB, bar_plot_panel(
            title="Embedding summary: spread per column",
            description="Standard deviation of each emb_* column over the reference boxes; a "
            "mean shift of about one spread is what the drift tests pick up.",
            values=[ref("StdValue", "{{column}}")], size="half",
        )),
    ]


def find_project(workspace: WorkspaceBase, name: str) -> Project | None:
    """The first project called ``name``, or None (nothing is created)."""
    return next((p for p in workspace.list_projects() if p.name == name), None)


def get_or_create_project(workspace: Workspace, name: str) -> Project:
    """Return the project called ``name``, creating it with its dashboard if absent.

    Idempotent: calling it again (a restarted watcher, a ``run-once`` beside it) creates no
    second project and no second copy of a panel. Panels are matched by title: the ones missing
    from an existing dashboard (an older release's, or one emptied by an interrupted call) are
    added to their tab, and the panels already there are left as they are.

    A new project is built outside the workspace and moved in whole (see
    :func:`_create_staged`), so a running ``evidently ui`` picks it up.

    Args:
        workspace: Local Evidently workspace.
        name: Project name; the first project with this exact name is used.

    Returns:
        The project, saved.
    """
    project = find_project(workspace, name) or _create_staged(workspace, name)
    current = workspace.get_dashboard(project.id)
    merged = merge_dashboard(current, dashboard_panels())
    if merged is not current:
        # dashboard.json is read on each UI request and not watched: writing it in place is safe.
        workspace.save_dashboard(project.id, merged)
    return project


def _create_staged(workspace: Workspace, name: str) -> Project:
    """Create the project with its dashboard in a staging folder, then rename it in.

    ``evidently ui`` (0.7.23) learns about new projects from a watchdog thread that parses
    ``<project>/metadata.json`` on the file's *creation* event; the SDK creates that file and
    then writes it, so the thread can read it empty, raise ``JSONDecodeError``, and die: from
    then on the UI sees no new project and no new run until it restarts (seen here: 30 projects
    created in a loop, the thread died at the third). A folder renamed in from outside arrives
    complete, announced as created with its files. The staging folder is a sibling of the
    workspace: same filesystem (rename is atomic) and outside the watched tree.
    """
    root = Path(workspace.path)
    staging = root.parent / f".{root.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)  # an interrupted earlier call
    staged = Workspace(str(staging))
    project = staged.create_project(name)
    project.description = (
        "Drift of per-box embeddings and detection quality on user feedback "
        "(written by `python -m reporting`)."
    )
    project.save()
    staged.save_dashboard(project.id, build_dashboard())
    os.rename(staging / str(project.id), root / str(project.id))
    shutil.rmtree(staging, ignore_errors=True)
    moved = workspace.get_project(project.id)
    assert moved is not None  # just renamed into the workspace, under the caller's lock
    return moved


def merge_dashboard(
    current: DashboardModel, wanted: list[tuple[str, DashboardPanelPlot]]
) -> DashboardModel:
    """``current`` plus the ``wanted`` panels whose title it lacks, each in its tab.

    Returns ``current`` itself when nothing is missing, so the caller writes only on a change.
    """
    titles = {panel.title for panel in current.panels}
    missing = [(tab, panel) for tab, panel in wanted if panel.title not in titles]
    if not missing:
        return current
    merged = current.copy(deep=True)
    tabs = {tab.title: tab for tab in merged.tabs}
    for tab_title, panel in missing:
        tab = tabs.get(tab_title)
        if tab is None:
            tab = tabs[tab_title] = DashboardTabModel(title=tab_title, panels=[])
            merged.tabs.append(tab)
        tab.panels.append(panel.id)
        merged.panels.append(panel)
    return merged


def build_dashboard() -> DashboardModel:
    """The whole dashboard model: tabs in order, each listing its panels once."""
    # Written in one piece rather than with ``project.dashboard.add_panel(panel, tab=...)``:
    # in evidently 0.7.23 that call lists a panel twice when its tab already exists, and it
    # rewrites the dashboard file once per panel.
    return merge_dashboard(DashboardModel(tabs=[], panels=[]), dashboard_panels())
