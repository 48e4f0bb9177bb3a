"""The scenario's steps in order: score, rounds of feedback and retrain, score again, "after".

Round 1 is "before": every row is predicted by the old version. Further rounds go on feeding the
loop until its retrains have seen ``--min-images`` shifted images: with a small k the loop
retrains after a handful of images, and each retrain learns from all feedback so far.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway_client import GatewayClient
from scripts.scenario.datasets import AFTER, PROD, ShiftedSets, generate_sets
from scripts.scenario.errors import ScenarioError, calling
from scripts.scenario.evaluation import map50, reporting_run, weights_of
from scripts.scenario.feedback import (
    Sent,
    send_feedback,
    start_retrain,
    wait_for_default,
    wait_for_job,
)
from scripts.scenario.output import console
from scripts.scenario.report import Outcome
from yoloserve import paths
from yoloserve.modelserver.registry import open_registry


def _score(
    version: str, sets: ShiftedSets, n_test: int, ref_yaml: Path | None
) -> tuple[float, float | None]:
    """mAP50 of ``version`` on the shifted test split and, if given, the unshifted one."""
    with tempfile.TemporaryDirectory(prefix="scenario-") as tmp:
        weights = weights_of(version, open_registry(), paths.STORE_DIR, Path(tmp))
        console.log(f"evaluating v{version} on {n_test} shifted test images ...")
        shifted = map50(weights, sets.data_yaml)
        console.log(f"v{version}: mAP50 {shifted:.3f} on the shifted test set")
        reference = map50(weights, ref_yaml) if ref_yaml else None
        if reference is not None:
            console.log(f"v{version}: mAP50 {reference:.3f} on the unshifted test split")
    return shifted, reference


def play(
    gateway: GatewayClient, admin_key: str | None, images: int, n_after: int, n_test: int,
    opacity: float, seed: int, out: Path, workspace: Path | None, ref_yaml: Path | None,
    retrain_timeout: float, min_images: int,
) -> Outcome:
    """Run every step against the gateway and return the figures (``seconds`` left at 0).

    Raises:
        ScenarioError: a step cannot go on (the message says which and why).
    """
    with calling("GET /models"):
        models = gateway.models()
    old = models.default_version
    if not old:
        raise ScenarioError("the gateway serves no default version")
    console.log(f"gateway serves v{old}; classes {models.classes}")

    sets = generate_sets(out, images, n_after, n_test, seed, opacity)
    if ref_yaml is not None and not ref_yaml.is_file():
        console.log(f"no {ref_yaml}: the unshifted test split is not scored")
        ref_yaml = None
    map_old, ref_old = _score(old, sets, n_test, ref_yaml)

    prod_images = sets.images(PROD)
    before = Sent()
    jobs: list[dict[str, Any]] = []
    values_before: dict[str, float] = {}
    manual = False
    new: str | None = None
    while True:
        batch = send_feedback(
            gateway, prod_images[before.images:], stop_on_trigger=True,
            label=f"feedback, round {len(jobs) + 1}",
        )
        before.extend(batch)
        console.log(
            f"round {len(jobs) + 1}: sent {batch.images} images, {batch.rows} feedback rows "
            f"(predicted by {dict(batch.versions)})"
        )
        if not jobs:
            values_before = reporting_run(batch.rows, workspace)
            console.log(
                "reporting (before): drift share "
                f"{values_before.get('drift_share', float('nan')):.3f}, "
                f"F1 {values_before.get('f1', float('nan')):.3f}"
            )
        job_id = batch.job_id
        if job_id is not None:
            # k (RETRAIN_EVERY_K of the gateway) decides how much of the shift a retrain sees.
            console.log(f"the loop started retrain {job_id} after {before.images} images in all")
        elif not jobs:
            manual = True
            console.log(
                f"the loop did not trigger within {before.images} images (next at "
                f"{before.next_at_rows} rows): starting the retrain with POST /retrain"
            )
            job_id = start_retrain(gateway, admin_key)
        else:
            break  # images used up before the next trigger
        job = wait_for_job(gateway, job_id, retrain_timeout, poll=5.0)
        jobs.append(asdict(job))
        gate = {
            name: round(float(values["map50"]), 3)
            for name, values in job.metrics.items()
            if isinstance(values, dict) and "map50" in values
        }
        console.log(f"retrain {job_id} {job.state}; its gate (mAP50 on its eval set): {gate}")
        if job.state != "succeeded" or not job.candidate_version:
            console.log(f"[yellow]retrain {job.state}:[/yellow] {job.reason}")
            break
        new = job.candidate_version
        wait_for_default(gateway, new, 120)
        console.log(f"v{new} is serving")
        if before.images >= min_images or before.images >= len(prod_images):
            break

    map_new = ref_new = None
    if new:
        map_new, ref_new = _score(new, sets, n_test, ref_yaml)

    # Up to the next trigger only: a second job would compete for the CPU and could swap the
    # model while the "after" rows are being predicted.
    after_images = sets.images(AFTER)
    after = send_feedback(
        gateway, after_images, stop_on_trigger=False, label="feedback after the retrain",
        avoid_trigger_from=(
            (before.prod_rows_total, before.next_at_rows)
            if before.prod_rows_total is not None and before.next_at_rows is not None
            else None
        ),
    )
    if after.images < min(5, len(after_images)):
        console.log(
            f"[yellow]only {after.images} images fit before the next trigger at "
            f"{before.next_at_rows} rows: sending the rest anyway, the loop will start another "
            "retrain[/yellow]"
        )
        after.extend(send_feedback(
            gateway, after_images[after.images:], stop_on_trigger=False,
            label="feedback after the retrain",
        ))
    if after.job_id:
        console.log(f"this feedback started retrain {after.job_id} (not waited for)")
    values_after = reporting_run(after.rows, workspace)
    return Outcome(
        old_version=old, new_version=new, jobs=jobs, before=values_before, after=values_after,
        map50_old=map_old, map50_new=map_new, ref_map50_old=ref_old, ref_map50_new=ref_new,
        sent_before=before.as_dict(), sent_after=after.as_dict(), test_images=n_test,
        manual_trigger=manual, seconds=0.0,
    )
