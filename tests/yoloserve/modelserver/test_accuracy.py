"""mAP as Ultralytics scores it, on hand-made cases whose answer is known.

Ultralytics interpolates AP over 101 recall points, so a perfect detector scores 0.995, not 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yoloserve.modelserver.accuracy import (
    check_accuracy,
    mean_ap,
    read_labels,
    reference_detector,
)

PERFECT = 0.995
TRUTH = {"a.jpg": np.array([[0, 10, 10, 50, 50], [1, 60, 60, 100, 100]], dtype=float)}
IMAGES = [Path("a.jpg")]


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(-1, 6)


@pytest.mark.parametrize(
    ("found", "map50", "map50_95"),
    [
        # every box found: AP 0.995 at every IoU threshold
        (boxes([10, 10, 50, 50, .9, 0], [60, 60, 100, 100, .8, 1]), PERFECT, PERFECT),
        # one class of two missed entirely
        (boxes([10, 10, 50, 50, .9, 0]), PERFECT / 2, PERFECT / 2),
        # IoU 1600/1920 = 0.83: true positive at 0.50 .. 0.80 (7 of 10 thresholds)
        (boxes([10, 10, 50, 58, .9, 0], [60, 60, 100, 100, .8, 1]), PERFECT,
         (PERFECT * 0.7 + PERFECT) / 2),
        # right boxes, wrong classes
        (boxes([10, 10, 50, 50, .9, 1], [60, 60, 100, 100, .8, 0]), 0.0, 0.0),
        # nothing found
        (boxes(), 0.0, 0.0),
    ],
)
def test_known_cases(found: np.ndarray, map50: float, map50_95: float) -> None:
    scores = mean_ap(lambda image, conf: found, IMAGES, labels=TRUTH)
    assert scores.map50 == pytest.approx(map50, abs=1e-6)
    assert scores.map50_95 == pytest.approx(map50_95, abs=1e-6)


def test_a_low_confidence_false_positive_costs_little_a_confident_one_more() -> None:
    right = [[10, 10, 50, 50, .9, 0], [60, 60, 100, 100, .8, 1]]
    low = mean_ap(lambda i, c: boxes(*right, [200, 200, 240, 240, .01, 0]), IMAGES, labels=TRUTH)
    high = mean_ap(lambda i, c: boxes(*right, [200, 200, 240, 240, .95, 0]), IMAGES, labels=TRUTH)
    assert low.map50 == pytest.approx(PERFECT)
    assert high.map50 < low.map50


def test_labels_are_read_in_pixels(tmp_path: Path) -> None:
    image = tmp_path / "images" / "x.jpg"
    image.parent.mkdir()
    Image.new("RGB", (200, 100)).save(image)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("2 0.5 0.5 0.2 0.4\n")
    assert read_labels(image).tolist() == [[2, 80, 30, 120, 70]]
    (tmp_path / "labels" / "x.txt").write_text("")
    assert read_labels(image).shape == (0, 5)


def test_the_reference_against_itself_passes_with_zero_deltas(
    default_weights: Path, tmp_path: Path
) -> None:
    from yoloserve.training.dataset import write_split

    write_split(tmp_path, "test", 4, seed=2)
    images = sorted((tmp_path / "images" / "test").glob("*.jpg"))
    same = reference_detector(default_weights, 320)
    report = check_accuracy(default_weights, same, images, imgsz=320,
                            image_set={"name": "four"})
    assert report.passed and report.deltas == {"map50": 0.0, "map50_95": 0.0}
    assert report.images == 4 and report.boxes > 0 and report.set == {"name": "four"}
    assert report.reference.map50 > 0.5  # the shipped model detects shapes
    assert "within 0.01" in report.summary()
