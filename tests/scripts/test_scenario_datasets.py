"""``scripts.scenario.datasets``: the shifted sets, seeded and disjoint, and their labels.

The scenario as a whole needs a running platform and a retrain (minutes of CPU); it is run by
hand (`make scenario`, or `--images 60` for a quick check) and its figures go to the notes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from scripts.scenario.datasets import (
    AFTER,
    PROD,
    TEST,
    generate_sets,
    read_label,
    split_seed,
)
from yoloserve.training.dataset import iter_images


def test_sets_are_seeded_disjoint_and_labels_read_back_in_pixels(tmp_path: Path) -> None:
    sets = generate_sets(tmp_path / "shifted", n_prod=4, n_after=2, n_test=3, seed=1, opacity=0.6)
    assert [len(sets.images(s)) for s in (PROD, AFTER, TEST)] == [4, 2, 3]
    data = yaml.safe_load(sets.data_yaml.read_text())
    assert (data["train"], data["val"], data["test"]) == ("images/prod", "images/test",
                                                          "images/test")
    digests = {
        hashlib.sha256(p.read_bytes()).hexdigest() for s in (PROD, AFTER, TEST)
        for p in sets.images(s)
    }
    assert len(digests) == 9  # no image is in two splits

    again = generate_sets(tmp_path / "again", n_prod=4, n_after=2, n_test=3, seed=1, opacity=0.6)
    same = [p.read_bytes() for p in sets.images(TEST)]
    assert [p.read_bytes() for p in again.images(TEST)] == same

    # The labels sent as feedback are the drawn shapes, back in pixels (label precision: 1e-6).
    first = sets.images(PROD)[0]
    _, shapes = next(iter_images(1, split_seed(1, PROD), background="photo", opacity=0.6))
    boxes = read_label(first)
    assert [name for _, name in boxes] == [s.name for s in shapes]
    for (xyxy, _), shape in zip(boxes, shapes, strict=True):
        assert xyxy == pytest.approx(list(shape.xyxy), abs=0.02)
