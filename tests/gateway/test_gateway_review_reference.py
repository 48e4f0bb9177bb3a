"""``gateway.review.reference``: class shares and the embedding sample of ``ref_data.csv``, and
the service reading them once (and again only after a failure's retry period)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend
from gateway.metrics import GatewayMetrics
from gateway.review import service as service_module
from gateway.review.reference import load_reference, novelty_threshold
from gateway.review.service import ReviewService
from tests.gateway.fake_torchserve import FakeEmbedder
from tests.support import store_settings
from yoloserve.images import decode_array


def _write(path: Path, rows: list[tuple[list[float], str]]) -> Path:
    dim = len(rows[0][0])
    lines = [",".join([*(f"emb_{i}" for i in range(dim)), "target"])]
    lines += [",".join([*(str(v) for v in vec), target]) for vec, target in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shares_ignore_bookkeeping_targets(tmp_path: Path) -> None:
    rows = [([0.0], "circle")] * 3 + [([0.0], "square")] + [([0.0], "__background__")] * 4
    ref = load_reference(_write(tmp_path / "r.csv", rows), sample=100, quantile=0.9)
    assert ref.class_share == {"circle": 0.75, "square": 0.25}
    assert ref.rows == 8


def test_the_sample_is_bounded_and_seeded(tmp_path: Path) -> None:
    rows = [([float(i), 0.0], "circle") for i in range(1000)]
    path = _write(tmp_path / "r.csv", rows)
    first = load_reference(path, sample=50, quantile=0.9)
    again = load_reference(path, sample=50, quantile=0.9)
    assert first.embeddings is not None and first.embeddings.shape == (50, 2)
    assert np.array_equal(first.embeddings, again.embeddings)
    # A uniform sample of 0..999, not the first 50 rows.
    assert first.embeddings[:, 0].max() > 500


def test_novelty_threshold_is_a_quantile_of_nearest_neighbour_distances() -> None:
    # Points on a line 1 apart, plus one 10 away from its neighbour.
    sample = np.array([[0.0], [1.0], [2.0], [3.0], [13.0]])
    assert novelty_threshold(sample, 0.5) == pytest.approx(1.0)
    assert novelty_threshold(sample, 1.0) == pytest.approx(10.0)
    assert novelty_threshold(sample[:1], 0.5) is None


@pytest.mark.parametrize(
    ("content", "error"),
    [("emb_0,label\n1,circle\n", ValueError), ("emb_0,target\nx,circle\n", ValueError)],
)
def test_bad_files_raise(tmp_path: Path, content: str, error: type[Exception]) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(error):
        load_reference(path, sample=10, quantile=0.9)


def test_a_file_without_embeddings_still_gives_shares(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("target\ncircle\nsquare\n")
    ref = load_reference(path, sample=10, quantile=0.9)
    assert ref.class_share == {"circle": 0.5, "square": 0.5}
    assert ref.embeddings is None and ref.novel_distance is None


def test_the_service_reads_the_reference_once_and_retries_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    settings = Settings(data_dir=tmp_path, store=store_settings(tmp_path))
    review = ReviewService(settings, GatewayMetrics(), clock=lambda: now[0])
    calls: list[Path] = []
    real = service_module.load_reference

    def counting(path: Path, sample: int, quantile: float) -> object:
        calls.append(path)
        return real(path, sample, quantile)

    monkeypatch.setattr(service_module, "load_reference", counting)

    async def scenario() -> None:
        assert (await review.reference()).rows == 0  # no file yet: rare and novel are off
        assert (await review.reference()).rows == 0  # within the retry period: not read again
        assert len(calls) == 1
        _write(tmp_path / "ref_data.csv", [([0.0], "circle"), ([1.0], "square")])
        now[0] = service_module.REFERENCE_RETRY_S + 1
        assert (await review.reference()).rows == 2
        assert (await review.reference()).rows == 2
        assert len(calls) == 2

    asyncio.run(scenario())


def test_a_full_minute_skips_the_embeddings(tmp_path: Path) -> None:
    """The rate limit is checked before any pixel is embedded."""
    settings = Settings(
        data_dir=tmp_path, store=store_settings(tmp_path),
        review_strategies=["novel"], review_max_per_minute=1,
    )
    embedded: list[int] = []

    class CountingEmbedder(FakeEmbedder):
        def embed(self, image: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
            embedded.append(len(boxes))
            return super().embed(image, boxes)

    review = ReviewService(settings, GatewayMetrics())
    review.limiter.try_acquire()  # the minute is used up
    provider = EmbedderProvider(lambda: EmbeddingBackend(CountingEmbedder(), decode_array))
    prediction = object()  # never looked at: the limit answers first
    assert asyncio.run(review.offer(prediction, provider)) is None  # type: ignore[arg-type]
    assert embedded == []
