"""Models page: versions and their metrics, rollback, retraining, and the drift dashboard.

Actions (activate, retrain) run as button callbacks: Streamlit runs a callback before the
script, so the versions table rendered afterwards already shows the action's effect.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from gateway_client import GatewayError, ModelsInfo, RetrainJob
from webapp import icons
from webapp.client import make_client
from webapp.config import Settings
from webapp.views.common import error_text, settings_or_stop, show_error
from webapp.views.session import CLASSES_KEY, PENDING_JOB_KEY

#: Session-state key of messages left by action callbacks, shown once next to their section.
FLASH_KEY = "models_flash"
SECTION_VERSIONS = "versions"
SECTION_RETRAIN = "retrain"
#: Widget key of the job id field.
JOB_INPUT_KEY = "job_lookup"
#: Session-state key of the last job status looked up.
JOB_STATUS_KEY = "job_status"
#: Seconds between two reads of an unfinished job (only the job's part of the page reruns).
JOB_POLL_S = 2.0


def _flash(section: str, kind: str, text: str) -> None:
    st.session_state.setdefault(FLASH_KEY, {})[section] = (kind, text)


def _show_flash(section: str) -> None:
    """Show, once, what the last action of ``section`` left to say."""
    flash = st.session_state.get(FLASH_KEY, {}).pop(section, None)
    if flash:
        kind, text = flash
        (st.success if kind == "success" else st.error)(text)


def _activate(settings: Settings, version: str) -> None:
    """Callback of an Activate button: make ``version`` the serving one."""
    try:
        with make_client(settings) as gateway:
            gateway.activate(version)
    except GatewayError as err:
        _flash(SECTION_VERSIONS, "error", error_text(err, f"Version {version} was not activated"))
    else:
        _flash(SECTION_VERSIONS, "success", f"Version {version} is now the default model.")


def _retrain(settings: Settings) -> None:
    """Callback of "Retrain now": start a job and put its id in the lookup field."""
    try:
        with make_client(settings) as gateway:
            job = gateway.retrain()
    except GatewayError as err:
        _flash(SECTION_RETRAIN, "error", error_text(err, "The retrain did not start"))
        return
    state = f" ({job.state})" if job.state else ""
    _flash(SECTION_RETRAIN, "success", f"Retrain job `{job.job_id}` started{state}.")
    # Callbacks run before widgets are created, so setting the field's value here is allowed.
    st.session_state[JOB_INPUT_KEY] = job.job_id
    st.session_state[JOB_STATUS_KEY] = job


def _lookup_job(settings: Settings) -> None:
    """Callback of "Check status": read the job named in the field."""
    job_id = str(st.session_state.get(JOB_INPUT_KEY, "")).strip()
    if not job_id:
        _flash(SECTION_RETRAIN, "error", "Enter a job id first.")
        return
    try:
        with make_client(settings) as gateway:
            st.session_state[JOB_STATUS_KEY] = gateway.retrain_status(job_id)
    except GatewayError as err:
        st.session_state.pop(JOB_STATUS_KEY, None)
        _flash(SECTION_RETRAIN, "error", error_text(err, f"Cannot read job {job_id}"))


def _version_rows(info: ModelsInfo) -> list[dict[str, Any]]:
    """One table row per version; metrics and training-set sizes get a column each."""
    metric_names = sorted({m for v in info.versions for m in v.metrics})
    # map50 and map50_95 first: those are the ones the contract promises.
    metric_names.sort(key=lambda m: (m not in ("map50", "map50_95"), m))
    trained_keys = sorted({k for v in info.versions for k in v.trained_on})
    rows = []
    for v in info.versions:
        row: dict[str, Any] = {
            "version": v.version,
            "serving": "default" if v.version == info.default_version else "",
            "status": v.status or "",
            "created_at": v.created_at or "",
            "parent": v.parent or "",
        }
        for m in metric_names:
            value = v.metrics.get(m)
            row[m] = round(value, 4) if value is not None else None
        # Which images the numbers above come from, then the same images for every version.
        row["eval set"] = _set_label(v.eval_set)
        for m in ("map50", "map50_95"):
            value = v.benchmark.get(m)
            row[f"benchmark {m}"] = round(value, 4) if isinstance(value, int | float) else None
        row["benchmark set"] = _set_label(v.benchmark.get("set"))
        for k in trained_keys:
            row[f"trained_on.{k}"] = v.trained_on.get(k)
        row["MLflow run"] = v.mlflow_run_url
        rows.append(row)
    return rows


def _set_label(named: dict[str, Any] | None) -> str:
    """``shapes-test · 150 images · 9f2c1a0b``: an eval set's name, size and manifest hash."""
    if not named:
        return ""
    sha = str(named.get("manifest_sha256") or "")[:8]
    return f"{named.get('name', '?')} · {named.get('images', '?')} images · {sha}"


def _show_versions(settings: Settings) -> None:
    """The versions table and one Activate button per version."""
    _show_flash(SECTION_VERSIONS)
    try:
        with make_client(settings) as gateway:
            info = gateway.models()
    except GatewayError as err:
        show_error(err, "Cannot list the model versions")
        return
    st.session_state[CLASSES_KEY] = info.classes  # fresher than what Detect fetched
    serving = info.default_version or "none"
    st.markdown(f"Model **{info.name or 'unnamed'}**: serving version **{serving}**.")
    st.caption("Classes: " + (", ".join(info.classes) or "none"))
    if not info.versions:
        st.info("No model versions are registered yet.")
        return
    st.dataframe(
        _version_rows(info), hide_index=True, width="stretch",
        column_config={"MLflow run": st.column_config.LinkColumn("MLflow run",
                                                                 display_text="open run")},
    )
    st.caption("Compare versions on the benchmark columns: the same images for every version. "
               "The other metrics come from the set named in 'eval set'.")

    st.markdown("**Activate a version** (rollback or roll forward)")
    per_row = 6
    for start in range(0, len(info.versions), per_row):
        cols = st.columns(per_row)
        for col, v in zip(cols, info.versions[start : start + per_row], strict=False):
            is_default = v.version == info.default_version
            col.button(
                f"Activate v{v.version}",
                key=f"activate-{v.version}",
                disabled=is_default,
                help="Already serving" if is_default else f"Make version {v.version} the default",
                on_click=_activate,
                args=(settings, v.version),
            )


def _show_job(job: RetrainJob) -> None:
    """A job's state, times, candidate and the metrics it was judged on."""
    icon = icons.JOB_STATES.get(job.state or "", icons.UNKNOWN)
    st.markdown(f"{icon} Job `{job.job_id}`: **{job.state or 'unknown'}**")
    facts = {
        "started": job.started_at,
        "finished": job.finished_at,
        "candidate version": job.candidate_version,
    }
    st.caption(" · ".join(f"{k} {v}" for k, v in facts.items() if v) or "No details yet.")
    if job.progress is not None and not job.finished:
        # One bar across the phases; the label says the phase, epoch i of N and the time left.
        st.progress(job.progress.fraction, text=job.progress.label)
    if job.reason:
        st.write(f"Reason: {job.reason}")
    candidate = job.metrics.get("candidate") or {}
    current = job.metrics.get("current") or {}
    if isinstance(candidate, dict) and isinstance(current, dict) and (candidate or current):
        names = sorted(set(candidate) | set(current))
        st.dataframe(
            [
                {"metric": n, "candidate": candidate.get(n), "current": current.get(n)}
                for n in names
            ],
            hide_index=True,
        )


def _show_retraining(settings: Settings) -> None:
    """The "Retrain now" button and the job status lookup."""
    st.subheader("Retraining")
    _show_flash(SECTION_RETRAIN)
    st.button(
        "Retrain now",
        key="retrain",
        help="Fine-tune on the feedback collected so far; the new version is activated only "
        "if it beats the current one.",
        on_click=_retrain,
        args=(settings,),
    )
    pending = st.session_state.pop(PENDING_JOB_KEY, None)
    if pending:  # a feedback on the Detect page triggered this job: look it up by default
        st.session_state[JOB_INPUT_KEY] = pending
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.text_input("Job id", key=JOB_INPUT_KEY, placeholder="r-0007")
    right.button("Check status", key="job_check", on_click=_lookup_job, args=(settings,))
    job: RetrainJob | None = st.session_state.get(JOB_STATUS_KEY)
    if job is not None and job.finished:
        _show_job(job)
    elif job is not None:
        _follow_job(settings)


@st.fragment(run_every=JOB_POLL_S)
def _follow_job(settings: Settings) -> None:
    """An unfinished job, read again every ``JOB_POLL_S`` seconds until it ends."""
    job: RetrainJob | None = st.session_state.get(JOB_STATUS_KEY)
    if job is None:
        return
    try:
        with make_client(settings) as gateway:
            job = gateway.retrain_status(job.job_id)
    except GatewayError as err:
        if err.status == 404:  # gone from the registry: nothing left to follow
            st.session_state.pop(JOB_STATUS_KEY, None)
            show_error(err, f"Cannot read job {job.job_id}")
            return
        # The gateway may be restarting: keep the last known state and try again.
        st.warning(error_text(err, f"Cannot refresh job {job.job_id}"), icon=icons.GATEWAY_DOWN)
    else:
        st.session_state[JOB_STATUS_KEY] = job
    _show_job(job)
    if job.finished:
        # The whole page, once: the versions table shows the new version and the polling stops.
        st.rerun()


def render() -> None:
    """The whole Models page."""
    settings = settings_or_stop()
    st.title("Models")
    _show_versions(settings)
    _show_retraining(settings)
    st.subheader("Monitoring")
    st.link_button("Open the Evidently dashboard", settings.evidently_url, icon=icons.MONITORING)
    st.caption(f"Data drift and production accuracy reports at {settings.evidently_url}")
