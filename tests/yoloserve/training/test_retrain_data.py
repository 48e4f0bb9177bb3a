from __future__ import annotations

from pathlib import Path

import pytest

from yoloserve.training.dataset import CLASSES, generate_dataset, write_split
from yoloserve.training.retrain_data import build_retrain_dataset, is_held_out


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ref")
    generate_dataset(root, n_train=12, n_val=6, n_test=2, seed=3)
    return root


def _feedback(tmp_path: Path, n: int) -> Path:
    fb = tmp_path / "feedback"
    write_split(fb, "x", n, seed=9)
    # The gateway stores feedback flat: images/<id>.jpg and labels/<id>.txt.
    (fb / "images" / "x").rename(fb / "imgs")
    (fb / "labels" / "x").rename(fb / "lbls")
    (fb / "images").rmdir()
    (fb / "labels").rmdir()
    (fb / "imgs").rename(fb / "images")
    (fb / "lbls").rename(fb / "labels")
    return fb


def test_mixes_reference_and_feedback(ref_root: Path, tmp_path: Path) -> None:
    fb = _feedback(tmp_path, 20)
    data = build_retrain_dataset(tmp_path / "job", ref_root, fb, list(CLASSES),
                                 ref_train_images=10, ref_eval_images=4, holdout_pct=25,
                                 oversample_feedback=2)
    assert data.ref_train == 10 and data.ref_eval == 4
    assert data.feedback_train + data.feedback_eval == 20
    assert data.feedback_eval >= 1
    train = (tmp_path / "job" / "train.txt").read_text().split()
    evaluation = set((tmp_path / "job" / "eval.txt").read_text().split())
    assert len(train) == 10 + 2 * data.feedback_train
    assert not evaluation & set(train), "held-out images must never be trained on"
    assert "names:\n  0: circle" in data.data_yaml.read_text()


def test_holdout_is_stable() -> None:
    ids = [f"fb-{i}" for i in range(200)]
    first = [is_held_out(i, 25) for i in ids]
    assert first == [is_held_out(i, 25) for i in ids]
    assert 20 < sum(first) < 80


def test_single_feedback_image_still_gets_judged(ref_root: Path, tmp_path: Path) -> None:
    fb = _feedback(tmp_path, 1)
    data = build_retrain_dataset(tmp_path / "job", ref_root, fb, list(CLASSES), holdout_pct=0)
    assert data.feedback_eval == 1 and data.feedback_train == 0


def test_unlabelled_images_are_ignored(ref_root: Path, tmp_path: Path) -> None:
    fb = _feedback(tmp_path, 4)
    for label in (fb / "labels").iterdir():
        label.unlink()
    data = build_retrain_dataset(tmp_path / "job", ref_root, fb, list(CLASSES))
    assert data.feedback_train == data.feedback_eval == 0


def test_nothing_to_train_on_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training"):
        build_retrain_dataset(tmp_path / "job", tmp_path / "none", tmp_path / "fb", list(CLASSES))


def test_excluded_feedback_is_neither_trained_nor_judged_on(ref_root: Path,
                                                             tmp_path: Path) -> None:
    fb = _feedback(tmp_path, 8)
    stems = sorted(p.stem for p in (fb / "images").iterdir())
    data = build_retrain_dataset(tmp_path / "job", ref_root, fb, list(CLASSES),
                                 exclude=set(stems[:5]))
    assert data.feedback_train + data.feedback_eval == 3
    listed = (tmp_path / "job" / "train.txt").read_text() + (tmp_path / "job" / "eval.txt"
                                                               ).read_text()
    assert not any(f"/{stem}." in listed for stem in stems[:5])
    assert all(f"/{stem}." in listed for stem in stems[5:])
