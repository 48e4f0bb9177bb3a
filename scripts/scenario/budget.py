"""The labelling-budget modes: which images a labeller spends a fixed budget on, and what it buys.

Both modes start from the serving version and the same pool of shifted production images, label
``budget`` of them with their true boxes through ``POST /feedback``, start one retrain with
``POST /retrain`` and score the candidate on the held-out shifted test set:

- ``queue``: every pool image goes through ``POST /predict`` first (production traffic nobody
  labels); the gateway samples its review queue from that traffic, and the labeller takes the
  queue's first ``budget`` items (highest priority first), each sent with its ``review_id``;
- ``random``: the labeller takes ``budget`` pool images drawn at random (seeded).

One retrain per run, and the loop must not start one on its own (``RETRAIN_EVERY_K`` above the
rows of the budget): two modes are only comparable from the same starting version and with no
other feedback in the retrain's data, so each run belongs on a fresh platform
(``--isolated``, :mod:`scripts.scenario.isolated`).
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway_client import GatewayClient, LabelBox, ReviewItem
from scripts.scenario.datasets import PROD, generate_sets, read_label
from scripts.scenario.errors import ScenarioError, calling
from scripts.scenario.evaluation import map50, weights_of
from scripts.scenario.feedback import start_retrain, wait_for_job
from scripts.scenario.output import console, progress
from yoloserve.modelserver.registry import Registry

Mode = Literal["queue", "random"]
#: ``GET /review`` answers at most this many items per call.
REVIEW_PAGE = 100


@dataclass(frozen=True)
class Choice:
    """One image the labeller spends a label on."""

    image: Path
    review_id: str | None = None
    reason: str | None = None
    request_id: str | None = None


@dataclass
class BudgetOutcome:
    """The figures of one budget run (``budget_<mode>_<n>.json``)."""

    mode: Mode
    budget: int
    pool: int
    labelled: int
    reasons: dict[str, int]
    queue_total: int | None
    old_version: str
    candidate_version: str | None
    job_state: str | None
    job_reason: str | None
    map50_old: float
    map50_new: float | None
    test_images: int
    seconds: float = 0.0
    feedback_rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def gain(self) -> float | None:
        return None if self.map50_new is None else self.map50_new - self.map50_old

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "map50_gain": self.gain}


def choose_random(pool: list[Path], budget: int, seed: int) -> list[Choice]:
    """``budget`` distinct pool images drawn with ``seed`` (all of them when the pool is smaller).

    Example:
        >>> [c.image.name for c in choose_random([Path("a"), Path("b"), Path("c")], 2, seed=0)]
        ['b', 'c']
    """
    picked = random.Random(seed).sample(pool, min(budget, len(pool)))
    return [Choice(image) for image in picked]


def choose_from_queue(
    items: list[ReviewItem], by_request: dict[str, Path], budget: int
) -> list[Choice]:
    """The first ``budget`` queue items that are pool images, in the queue's order.

    Items whose prediction this run did not send (``request_id`` unknown: another client's
    traffic, or an item left from an earlier run) are skipped: their true labels are unknown.
    An image sampled twice is labelled once.
    """
    chosen: list[Choice] = []
    seen: set[Path] = set()
    for item in items:
        image = by_request.get(item.request_id or "")
        if image is None or image in seen:
            continue
        seen.add(image)
        chosen.append(Choice(image, item.review_id, item.reason, item.request_id))
        if len(chosen) == budget:
            break
    return chosen


def predict_pool(gateway: GatewayClient, pool: list[Path]) -> dict[str, Path]:
    """Send every pool image through ``POST /predict``; request id -> image."""
    by_request: dict[str, Path] = {}
    with progress() as bar:
        task = bar.add_task("production traffic (predict only)", total=len(pool))
        for image in pool:
            with calling("POST /predict"):
                prediction = gateway.predict(image.read_bytes(), image.name, "image/jpeg")
            if prediction.request_id:
                by_request[prediction.request_id] = image
            bar.advance(task)
    return by_request


def read_queue(gateway: GatewayClient, wanted: int) -> tuple[list[ReviewItem], int]:
    """The queue's first ``wanted`` items (at most one page) and its total."""
    with calling("GET /review"):
        queue = gateway.review(limit=max(1, min(wanted, REVIEW_PAGE)))
    return queue.items, queue.total


def label(gateway: GatewayClient, choices: list[Choice]) -> int:
    """Send the true boxes of each chosen image; the feedback rows written.

    Raises:
        ScenarioError: A feedback started a retrain: the run would no longer compare modes.
    """
    rows = 0
    with progress() as bar:
        task = bar.add_task("labelling", total=len(choices))
        for choice in choices:
            truth = [
                LabelBox((b[0], b[1], b[2], b[3]), name) for b, name in read_label(choice.image)
            ]
            with calling("POST /feedback"):
                answer = gateway.feedback(
                    choice.image.read_bytes(), choice.image.name, "image/jpeg", truth,
                    request_id=choice.request_id, review_id=choice.review_id,
                )
            rows += answer.rows_written
            if answer.retrain_triggered:
                raise ScenarioError(
                    f"feedback started retrain {answer.job_id} at {answer.prod_rows_total} rows: "
                    "run the budget modes with RETRAIN_EVERY_K above the budget's rows "
                    "(--isolated does)"
                )
            bar.advance(task)
    return rows


def _score(version: str, registry: Registry, store_dir: Path, data_yaml: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="scenario-") as tmp:
        weights = weights_of(version, registry, store_dir, Path(tmp))
        score = map50(weights, data_yaml)
    console.log(f"v{version}: mAP50 {score:.3f} on the shifted test set")
    return score


def play_budget(
    gateway: GatewayClient, admin_key: str | None, mode: Mode, *, pool: int, budget: int,
    n_test: int, opacity: float, seed: int, out: Path, retrain_timeout: float,
    registry: Registry, store_dir: Path,
) -> BudgetOutcome:
    """Label ``budget`` pool images chosen by ``mode``, retrain once, score the candidate.

    Args:
        registry, store_dir: The platform's registry and ``.mar`` store (the weights scored).

    Raises:
        ScenarioError: A step cannot go on.
    """
    with calling("GET /models"):
        old = gateway.models().default_version
    if not old:
        raise ScenarioError("the gateway serves no default version")
    sets = generate_sets(out, pool, 0, n_test, seed, opacity)
    map_old = _score(old, registry, store_dir, sets.data_yaml)
    images = sets.images(PROD)
    notes: list[str] = []
    queue_total: int | None = None
    if mode == "queue":
        by_request = predict_pool(gateway, images)
        items, queue_total = read_queue(gateway, budget)
        choices = choose_from_queue(items, by_request, budget)
        console.log(f"review queue: {queue_total} open items after {len(images)} predictions")
        if len(choices) < budget:
            notes.append(f"the queue held {len(choices)} usable items for a budget of {budget}")
    else:
        choices = choose_random(images, budget, seed)
    reasons = Counter(choice.reason or "random" for choice in choices)
    console.log(f"{mode}: labelling {len(choices)} images {dict(reasons)}")
    rows = label(gateway, choices)
    job = wait_for_job(gateway, start_retrain(gateway, admin_key), retrain_timeout, poll=5.0)
    console.log(f"retrain {job.job_id} {job.state}: {job.reason or ''}")
    map_new = None
    if job.candidate_version:
        map_new = _score(job.candidate_version, registry, store_dir, sets.data_yaml)
    return BudgetOutcome(
        mode=mode, budget=budget, pool=len(images), labelled=len(choices), reasons=dict(reasons),
        queue_total=queue_total, old_version=old, candidate_version=job.candidate_version,
        job_state=job.state, job_reason=job.reason, map50_old=map_old, map50_new=map_new,
        test_images=n_test, feedback_rows=rows, notes=notes,
    )
