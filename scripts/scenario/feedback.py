"""Feedback through the public API, as users would send it, and waiting for what it starts.

Every call goes through ``gateway_client``; a failed call stops the scenario with a
:class:`~scripts.scenario.errors.ScenarioError` that names it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway_client import GatewayClient, LabelBox, RetrainJob
from scripts.scenario.datasets import read_label
from scripts.scenario.errors import ScenarioError, calling
from scripts.scenario.output import console, progress

#: Seconds one call may take: a prediction competes for the CPU with a running retrain.
TIMEOUT_S = 60.0


def connect(url: str, api_key: str | None, admin_key: str | None) -> GatewayClient:
    """A client of the gateway with the user key for feedback and the admin key for retrains."""
    return GatewayClient(
        url, api_key=api_key, admin_key=admin_key, timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S
    )


@dataclass
class Sent:
    """What one batch of feedback did."""

    images: int = 0
    rows: int = 0
    boxes_predicted: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    job_id: str | None = None
    prod_rows_total: int | None = None
    next_at_rows: int | None = None

    def extend(self, more: Sent) -> None:
        """Add a later batch's counts to this one."""
        self.images += more.images
        self.rows += more.rows
        self.boxes_predicted += more.boxes_predicted
        self.versions.update(more.versions)
        self.job_id = more.job_id or self.job_id
        if more.images:
            self.prod_rows_total, self.next_at_rows = more.prod_rows_total, more.next_at_rows

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain JSON values (``versions`` as a dict)."""
        data = asdict(self)
        data["versions"] = dict(self.versions)
        return data


def send_feedback(
    gateway: GatewayClient, images: list[Path], *, stop_on_trigger: bool, label: str,
    avoid_trigger_from: tuple[int, int] | None = None,
) -> Sent:
    """Predict then send the true labels for each image, as a user correcting the model would.

    Args:
        gateway: The gateway.
        images: Images to send, in order.
        stop_on_trigger: Stop right after the feedback that starts a retrain.
        label: Progress bar text.
        avoid_trigger_from: ``(prod_rows_total, next_at_rows)`` known now: stop before a
            feedback that could reach the next trigger (no second retrain mid-measurement).
    """
    sent = Sent()
    capped = avoid_trigger_from is not None
    total, next_at = avoid_trigger_from or (0, None)
    with progress() as bar:
        task = bar.add_task(label, total=len(images))
        for image in images:
            truth = [LabelBox((xyxy[0], xyxy[1], xyxy[2], xyxy[3]), name)
                     for xyxy, name in read_label(image)]
            data = image.read_bytes()
            with calling("POST /predict"):
                prediction = gateway.predict(data, image.name, "image/jpeg")
            boxes = prediction.boxes
            # A feedback writes at most one row per true box plus one per unmatched prediction.
            if capped and next_at is not None and total + len(truth) + len(boxes) >= next_at:
                break
            with calling("POST /feedback"):
                answer = gateway.feedback(
                    data, image.name, "image/jpeg", truth, request_id=prediction.request_id
                )
            sent.images += 1
            sent.rows += answer.rows_written
            sent.boxes_predicted += len(boxes)
            sent.versions[prediction.model_version] += 1
            total = sent.prod_rows_total = answer.prod_rows_total
            sent.next_at_rows = next_at = answer.next_at_rows
            bar.advance(task)
            if answer.retrain_triggered:
                sent.job_id = answer.job_id
                if stop_on_trigger:
                    break
    return sent


def start_retrain(gateway: GatewayClient, admin_key: str | None) -> str:
    """``POST /retrain`` with the admin key; the new job's id."""
    if not admin_key:
        raise ScenarioError("POST /retrain needs the admin key (--admin-key)")
    with calling("POST /retrain"):
        return gateway.retrain().job_id


def wait_for_job(gateway: GatewayClient, job_id: str, timeout: float, poll: float) -> RetrainJob:
    """Poll ``GET /retrain/{job_id}`` until the job ends (or raise after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    state: str | None = ""
    with console.status(f"retrain {job_id}: waiting") as status:
        while True:
            with calling(f"GET /retrain/{job_id}"):
                job = gateway.retrain_status(job_id)
            if job.state != state:
                state = job.state
                console.log(f"retrain {job_id}: {state}")
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise ScenarioError(f"retrain {job_id} still {state} after {timeout:.0f} s")
            status.update(f"retrain {job_id}: {state} ({time.monotonic() - started:.0f} s)")
            time.sleep(poll)


def wait_for_default(
    gateway: GatewayClient, version: str, timeout: float, poll: float = 2.0
) -> None:
    """Wait until ``GET /models`` names ``version`` as the default (the hot swap is done)."""
    deadline = time.monotonic() + timeout
    while True:
        with calling("GET /models"):
            if gateway.models().default_version == version:
                return
        if time.monotonic() > deadline:
            raise ScenarioError(f"version {version} is not the default after {timeout:.0f} s")
        time.sleep(poll)
