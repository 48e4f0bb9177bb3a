"""benchmarks.feedback: the upload pools and the two in-process write paths (no stack), with
every acknowledged row found in the CSV."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from benchmarks.feedback import feedback_pool, record_feedback, store_append
from yoloserve.embeddings.embedder import Embedder


def test_feedback_pool_true_or_dense_labels() -> None:
    pool = feedback_pool(2)
    assert len(pool) == 2 and all(item.boxes for item in pool)
    with Image.open(io.BytesIO(pool[0].image)) as image:
        assert image.format == "JPEG"
    dense = feedback_pool(2, dense_boxes=5)
    assert [len(item.boxes) for item in dense] == [5, 5]
    assert feedback_pool(2)[1].image == pool[1].image  # seeded


def test_store_append_counts_every_row_back(tmp_path: Path) -> None:
    out = store_append(tmp_path, dim=4, rows_per_append=3, calls=6, threads=3)
    assert (out["calls"], out["failed"], out["rows_acknowledged"]) == (6, 0, 18)
    assert out["rows_in_file_added"] == 18 and out["rows_lost"] == 0
    assert out["rows_per_call"] == 3.0 and out["feedback_ids_with_lost_rows"] == 0


def test_record_feedback_counts_every_row_back(tmp_path: Path) -> None:
    embedder = Embedder.load()
    pool = feedback_pool(2)
    out = record_feedback(tmp_path, embedder, pool, [[], []], calls=4, threads=2)
    assert out["failed"] == 0, out["first_error"]
    assert out["rows_acknowledged"] == out["rows_in_file_added"] > 0 and out["rows_lost"] == 0
