"""Recent predictions, so ``POST /feedback`` can reuse the one the user is correcting.

A user corrects a prediction moments after ``POST /predict`` made it. The feedback route used to
run the model again on the same image (one forward per feedback: 44 rows/s on 2 cores); now it
looks the prediction up here first and runs the model only on a miss.

What a hit must mean: the contract pairs feedback with the prediction of the **default version at
the default thresholds**. An entry is therefore keyed by the image's sha256, the version that
answered, and the thresholds *as the client sent them* (``None`` = the handler's defaults). A
``/predict?conf=0.1`` lands under another key than a plain ``/predict`` and is never mistaken for
it; a request pinned with ``?version=`` to the version that is the default answers exactly what
an unpinned one would (same weights, same thresholds), so it shares the key. After a swap the
feedback asks for the new default version, and entries of the old one simply miss.

Bounded twice: at most ``max_entries`` (least recently used goes first) and ``ttl_s`` seconds
(a correction that comes later than that is paired with a fresh prediction). One entry is the
boxes and, when ``/predict?embeddings=true`` computed them, their embeddings: about 1-3 KB.

Only the event loop touches the cache (routes are ``async``), so it needs no lock.

Example:
    >>> from yoloserve.schemas import ImageSize, ModelRef, PredictResponse, Timing
    >>> cache = PredictionCache(max_entries=2, ttl_s=60)
    >>> answer = PredictResponse(request_id="r1", model=ModelRef(name="yolo", version="3"),
    ...     image=ImageSize(width=4, height=4), boxes=[], timing_ms=Timing(total=1, model=1))
    >>> cache.put(b"image", DEFAULT_THRESHOLDS, answer)
    >>> cache.get(b"image", "3").request_id, cache.get(b"image", "3", (0.1, None, None))
    ('r1', None)
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from yoloserve.schemas import PredictResponse

# (conf, iou, max_det) as the client sent them; None = the handler's own default.
Thresholds = tuple[float | None, float | None, int | None]
DEFAULT_THRESHOLDS: Thresholds = (None, None, None)


def image_digest(data: bytes) -> str:
    """The sha256 of an upload: the cache's notion of "the same image"."""
    return hashlib.sha256(data).hexdigest()


def _version_key(version: str) -> str:
    # TorchServe echoes "2" for some archives and "2.0" for older ones; the registry says "2".
    return version[:-2] if version.endswith(".0") else version


@dataclass
class CacheStats:
    """Lookups since the app started (exported as ``gateway_prediction_cache_*``)."""

    hits: int = 0
    misses: int = 0
    entries: int = 0


class PredictionCache:
    """A bounded LRU map of recent predictions with a time-to-live.

    Args:
        max_entries: Most predictions kept; 0 turns the cache off (every lookup misses).
        ttl_s: Seconds an entry may serve a lookup after it was stored.
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 0 or ttl_s < 0:
            raise ValueError("max_entries and ttl_s must not be negative")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.stats = CacheStats()
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, Thresholds], tuple[float, PredictResponse]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, image: bytes | str, thresholds: Thresholds, answer: PredictResponse) -> None:
        """Remember ``answer`` for this image (bytes or their :func:`image_digest`)."""
        if self.max_entries == 0:
            return
        key = self._key(image, answer.model.version, thresholds)
        self._entries[key] = (self._clock(), answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        self.stats.entries = len(self._entries)

    def get(
        self,
        image: bytes | str,
        version: str,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> PredictResponse | None:
        """The stored answer of ``version`` at ``thresholds`` for this image, or None.

        A hit refreshes the entry's LRU position (not its age: the TTL counts from the
        prediction, which is what the answer describes).
        """
        key = self._key(image, version, thresholds)
        found = self._entries.get(key)
        if found is not None and self._clock() - found[0] > self.ttl_s:
            del self._entries[key]
            self.stats.entries = len(self._entries)
            found = None
        if found is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return found[1]

    @staticmethod
    def _key(
        image: bytes | str, version: str, thresholds: Thresholds
    ) -> tuple[str, str, Thresholds]:
        digest = image if isinstance(image, str) else image_digest(image)
        return (digest, _version_key(version), thresholds)
