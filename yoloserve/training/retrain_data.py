"""Assemble the dataset a retrain job trains and judges on.

Training images: a seeded sample of the reference training split plus the feedback images that are
not held out. Evaluation images: the held-out feedback slice plus a seeded sample of the reference
validation split, so the gate sees both what users corrected and what the model already knew
(a candidate that forgets the reference data is rejected too).

Ultralytics reads image lists from text files and finds each label by replacing ``/images/`` with
``/labels/`` in the path, so nothing is copied: the job folder holds three small files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from yoloserve.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class RetrainData:
    """Where the job's dataset is and what it holds."""

    data_yaml: Path
    ref_train: int
    ref_eval: int
    feedback_train: int
    feedback_eval: int

    @property
    def train_images(self) -> int:
        return self.ref_train + self.feedback_train

    @property
    def eval_images(self) -> int:
        return self.ref_eval + self.feedback_eval


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p.resolve() for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _labelled(images: list[Path]) -> list[Path]:
    # An image without its label file would silently train as "nothing here".
    out = []
    for img in images:
        label = Path(str(img).replace("/images/", "/labels/")).with_suffix(".txt")
        if label.exists():
            out.append(img)
    return out


def is_held_out(feedback_id: str, holdout_pct: int) -> bool:
    """Stable holdout membership: the same feedback image is always on the same side."""
    digest = hashlib.sha256(feedback_id.encode()).digest()
    return digest[0] * 100 // 256 < holdout_pct


def build_retrain_dataset(
    job_dir: Path,
    ref_root: Path,
    feedback_dir: Path,
    class_names: list[str],
    *,
    ref_train_images: int = 200,
    ref_eval_images: int = 50,
    holdout_pct: int = 25,
    oversample_feedback: int = 2,
    seed: int = 0,
    exclude: Collection[str] = (),
) -> RetrainData:
    """Write ``train.txt``, ``eval.txt`` and ``data.yaml`` under ``job_dir``.

    Args:
        job_dir: the job's working folder.
        ref_root: the reference dataset (``images/train``, ``images/val`` with labels).
        feedback_dir: feedback images and labels (``images/``, ``labels/``).
        class_names: the model's classes, in index order (label files use these indices).
        ref_train_images: how many reference training images to mix in (seeded sample).
        ref_eval_images: how many reference validation images to judge on.
        holdout_pct: percentage of feedback images kept out of training for the gate.
        oversample_feedback: each feedback training image is listed this many times, so a few
            dozen corrections weigh against hundreds of reference images.
        seed: sampling seed.
        exclude: feedback ids to leave out (recorded under other class names).

    Raises:
        ValueError: when there is nothing to train on or nothing to judge with.
    """
    rng = random.Random(seed)
    ref_train = _labelled(_images(ref_root / "images" / "train"))
    ref_val = _labelled(_images(ref_root / "images" / "val"))
    rng.shuffle(ref_train)
    rng.shuffle(ref_val)
    ref_train, ref_val = ref_train[:ref_train_images], ref_val[:ref_eval_images]

    skip = set(exclude)
    feedback = [p for p in _labelled(_images(feedback_dir / "images")) if p.stem not in skip]
    fb_eval = [p for p in feedback if is_held_out(p.stem, holdout_pct)]
    fb_train = [p for p in feedback if not is_held_out(p.stem, holdout_pct)]
    if feedback and not fb_eval:
        # Too few images for the hash to pick one: judge on the newest rather than on none.
        fb_eval, fb_train = fb_train[-1:], fb_train[:-1]

    train = ref_train + fb_train * max(1, oversample_feedback)
    evaluation = ref_val + fb_eval
    if not train:
        raise ValueError("no labelled training images (reference or feedback)")
    if not evaluation:
        raise ValueError("no labelled evaluation images (reference val or feedback holdout)")

    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "train.txt").write_text("".join(f"{p}\n" for p in train))
    (job_dir / "eval.txt").write_text("".join(f"{p}\n" for p in evaluation))
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(class_names))
    data_yaml = job_dir / "data.yaml"
    data_yaml.write_text(
        f"path: {job_dir.resolve()}\ntrain: train.txt\nval: eval.txt\ntest: eval.txt\n"
        f"names:\n{names}"
    )
    return RetrainData(data_yaml, len(ref_train), len(ref_val), len(fb_train), len(fb_eval))
