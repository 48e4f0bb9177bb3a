"""The review queue of one gateway app: sampling after a prediction, and closing items.

:meth:`ReviewService.offer` runs as a background task after ``/predict`` has answered, so the
strategies, the embeddings of the ``novel`` strategy and the store's writes never add to a
prediction's latency. Its order keeps it cheap: the rate limit is checked first (a full minute
costs one read of the store), then the strategies that need no pixels, then the embeddings,
only when ``novel`` is on, the embedder loads and the reference set has embeddings of the same
length.

The reference rows are read once, on the first offer, in the thread pool; a missing
``ref_data.csv`` turns ``rare`` and ``novel`` off until a retry (``REFERENCE_RETRY_S``) finds it.

Example (what a route does)::

    background.add_task(review.offer, prediction, embedder)    # after /predict
    await review.check_open(labels.review_id)                  # /feedback, before model time
    await review.close(labels.review_id, "labelled")           # /feedback, once rows are stored
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend
from gateway.metrics import GatewayMetrics
from gateway.prediction import Prediction
from gateway.review.ratelimit import RateLimiter
from gateway.review.reference import Reference, load_reference
from gateway.review.store import NewItem, Outcome, StoredItem, open_review_store
from gateway.review.strategies import Pick, choose, nearest_distances, novel, rare, uncertain
from yoloserve.errors import EmbeddingsUnavailable, ReviewItemClosed, UnknownReviewItem
from yoloserve.schemas import Box
from yoloserve.store.engine import Store, open_store

logger = logging.getLogger("gateway.review")

REFERENCE_RETRY_S = 60.0
_EXTENSIONS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "BMP": "bmp"}


class ReviewService:
    """Samples predictions into the store and closes items, counting both in the metrics.

    Args:
        settings: The ``review_*`` settings and the data folder.
        metrics: Where sampled and reviewed items are counted.
        store: The store the replicas share (items and the rate limit live there);
            ``open_store(settings.store.url)`` when None.
        clock: Monotonic seconds, for the reference retry (tests).
        limiter_clock: Wall-clock seconds, for the rate limit shared by the replicas (tests).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        store: Store | None = None,
        clock: Callable[[], float] | None = None,
        limiter_clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        store = store or open_store(settings.store.url)
        self.queue = open_review_store(store, settings.review_folder, settings.review_max_items)
        self._clock = clock or time.monotonic
        self.limiter = RateLimiter(
            store, settings.review_max_per_minute, clock=limiter_clock or time.time
        )
        self._reference: Reference | None = None
        self._reference_failed_at: float | None = None
        self._reference_lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any strategy is on."""
        return bool(self.settings.review_strategies)

    def _needs_reference(self) -> bool:
        return bool({"rare", "novel"} & set(self.settings.review_strategies))

    async def reference(self) -> Reference:
        """The reference rows, read once (an empty reference while none can be read)."""
        if self._reference is not None or not self._needs_reference():
            return self._reference or Reference()
        async with self._reference_lock:
            failed = self._reference_failed_at
            if self._reference is not None:
                return self._reference
            if failed is not None and self._clock() - failed < REFERENCE_RETRY_S:
                return Reference()
            path = self.settings.ref_data_file
            try:
                self._reference = await run_in_threadpool(
                    load_reference,
                    path,
                    self.settings.review_ref_sample,
                    self.settings.review_novel_quantile,
                )
            except (OSError, ValueError) as exc:
                self._reference_failed_at = self._clock()
                logger.warning("review: no reference data (%s): rare and novel are off", exc)
                return Reference()
            logger.info(
                "review: reference of %d rows, novel distance %s",
                self._reference.rows,
                self._reference.novel_distance,
            )
            return self._reference

    async def _novel_pick(
        self, prediction: Prediction, reference: Reference, embedder: EmbedderProvider
    ) -> Pick | None:
        boxes = prediction.response.boxes
        if reference.embeddings is None or reference.novel_distance is None or not boxes:
            return None
        if all(box.embedding is not None for box in boxes):
            vectors = np.asarray([box.embedding for box in boxes], dtype=np.float64)
        else:
            try:
                backend = await embedder.get()
            except EmbeddingsUnavailable:
                return None
            vectors = await run_in_threadpool(_embed, backend, prediction.image_bytes, boxes)
        if vectors.shape[1] != reference.embeddings.shape[1]:
            logger.warning(
                "review: embeddings of %d numbers, reference of %d: novel is off",
                vectors.shape[1],
                reference.embeddings.shape[1],
            )
            return None
        distances = nearest_distances(vectors, reference.embeddings)
        return novel(distances.tolist(), reference.novel_distance)

    async def pick(self, prediction: Prediction, embedder: EmbedderProvider) -> Pick | None:
        """What the configured strategies say about one prediction (no rate limit, no store)."""
        settings = self.settings
        boxes = prediction.response.boxes
        reference = await self.reference()
        picks: list[Pick | None] = []
        for strategy in settings.review_strategies:
            if strategy == "uncertain":
                picks.append(
                    uncertain(boxes, settings.review_conf_threshold, settings.review_conf_band)
                )
            elif strategy == "rare":
                picks.append(rare(boxes, reference.class_share, settings.review_rare_share))
            elif strategy == "novel":
                picks.append(await self._novel_pick(prediction, reference, embedder))
        return choose(picks)

    async def offer(self, prediction: Prediction, embedder: EmbedderProvider) -> StoredItem | None:
        """Sample one answered prediction into the queue if a strategy picks it.

        Never raises: it runs after the answer was sent, where an error has no one to go to;
        failures are logged.

        Returns:
            The new item, or None when nothing was picked or the rate limit was reached.
        """
        if not self.enabled:
            return None
        try:
            if not await run_in_threadpool(self.limiter.has_room):
                return None
            pick = await self.pick(prediction, embedder)
            if pick is None or not await run_in_threadpool(self.limiter.try_acquire):
                return None
            response = prediction.response
            item = NewItem(
                reason=pick.reason,
                priority=pick.priority,
                model_version=response.model.version,
                request_id=response.request_id,
                width=response.image.width,
                height=response.image.height,
                boxes=[_box_json(box) for box in response.boxes],
                image_ext=_EXTENSIONS.get(prediction.info.format, "png"),
            )
            stored = await run_in_threadpool(self.queue.add, item, prediction.image_bytes)
        except Exception:
            logger.exception("review: sampling a prediction failed")
            return None
        self.metrics.review_sampled.labels(reason=pick.reason).inc()
        return stored

    async def list_open(self, limit: int) -> tuple[list[StoredItem], int]:
        """Open items, highest priority first, and the queue depth."""
        return await run_in_threadpool(self.queue.list_open, limit)

    async def image(self, review_id: str) -> tuple[Path, str]:
        """The stored image of an open item and its content type (raises UnknownReviewItem /
        ReviewItemClosed)."""
        return await run_in_threadpool(self.queue.image, review_id)

    async def check_open(self, review_id: str) -> StoredItem:
        """The item, if open (raises UnknownReviewItem / ReviewItemClosed)."""
        return await run_in_threadpool(self.queue.get_open, review_id)

    async def close(self, review_id: str, outcome: Outcome) -> StoredItem:
        """Close an item as labelled or dismissed and count it."""
        item = await run_in_threadpool(self.queue.close, review_id, outcome)
        self.metrics.reviewed.labels(outcome=outcome, reason=item.reason).inc()
        return item

    def depth(self) -> int:
        """Open items (blocking; read at scrape time)."""
        return self.queue.open_count()


async def close_reviewed(review: ReviewService, review_id: str) -> None:
    """Close an item as labelled once its feedback rows are stored.

    The rows are stored and answered 201 whatever happens here: an item closed by a concurrent
    request since the route's check is left as it is (logged), never a reason to fail feedback
    that is already on disk.
    """
    try:
        await review.close(review_id, "labelled")
    except (UnknownReviewItem, ReviewItemClosed) as exc:
        logger.info("review: feedback for %s, which closed meanwhile: %s", review_id, exc)


def _box_json(box: Box) -> dict[str, object]:
    # The queue stores what the user is shown: the boxes without their embeddings.
    return box.model_dump(exclude={"embedding"})


def _embed(backend: EmbeddingBackend, data: bytes, boxes: list[Box]) -> np.ndarray:
    pixels = backend.decode(data)
    vectors = backend.embedder.embed(pixels, [box.xyxy for box in boxes])
    return np.asarray(vectors, dtype=np.float64)
