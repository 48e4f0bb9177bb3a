"""What the rare and novel strategies compare with, read once from ``data/ref_data.csv``.

One pass over the file with the standard ``csv`` module (the gateway image has no pandas):
class counts of the ``target`` column, and a uniform sample (reservoir) of the ``emb_*``
columns, so a reference set of any size costs ``sample`` rows of memory. The novelty threshold
is a quantile of the sample's own nearest-neighbour distances: "as far from the reference set
as only the farthest few reference boxes are from each other".

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ref.csv"
    >>> _ = path.write_text("emb_0,emb_1,target\\n0,0,circle\\n1,0,circle\\n0,1,square\\n")
    >>> ref = load_reference(path, sample=10, quantile=0.5)
    >>> ref.class_share["circle"], ref.embeddings.shape
    (0.6667, (3, 2))
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.review.strategies import nearest_distances

TARGET = "target"
# Rows that are not real objects never count as a class (prod_data.csv's bookkeeping targets).
_NOT_CLASSES = frozenset({"__background__", "__missed__"})


@dataclass(frozen=True)
class Reference:
    """Class shares and a sample of reference embeddings.

    Attributes:
        class_share: Share of reference boxes per class (empty: no reference data).
        embeddings: (n, dim) sample of reference embeddings, or None without any.
        novel_distance: Distance beyond which a box is novel, or None without embeddings.
        rows: Reference rows read.
    """

    class_share: dict[str, float] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    novel_distance: float | None = None
    rows: int = 0


def novelty_threshold(sample: np.ndarray, quantile: float) -> float | None:
    """The ``quantile`` of each sample row's distance to its nearest other row."""
    if len(sample) < 2:
        return None
    distances = np.empty(len(sample))
    for start in range(0, len(sample), 256):  # bounds the distance matrix to 256 x n
        chunk = sample[start : start + 256]
        squared = (
            (chunk**2).sum(axis=1)[:, None] - 2.0 * chunk @ sample.T + (sample**2).sum(axis=1)
        )
        # A row is not its own neighbour.
        squared[np.arange(len(chunk)), np.arange(start, start + len(chunk))] = np.inf
        distances[start : start + len(chunk)] = np.sqrt(np.clip(squared.min(axis=1), 0.0, None))
    return float(np.quantile(distances, quantile))


def load_reference(path: Path, sample: int, quantile: float, seed: int = 0) -> Reference:
    """Read class counts and an embedding sample from ``path``.

    Args:
        path: A CSV with ``emb_0..emb_{n-1}`` and ``target`` columns (``ref_data.csv``).
        sample: Most embedding rows kept.
        quantile: Of the sample's nearest-neighbour distances: the novelty threshold.
        seed: Of the reservoir sample (the same file gives the same sample).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file has no ``target`` column or a row that is not numbers.
    """
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    kept: list[list[float]] = []
    rows = 0
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        if TARGET not in header:
            raise ValueError(f"{path}: no {TARGET!r} column")
        target = header.index(TARGET)
        emb = [i for i, name in enumerate(header) if name.startswith("emb_")]
        for row in reader:
            if not row:
                continue
            rows += 1
            if row[target] not in _NOT_CLASSES:
                counts[row[target]] += 1
            if not emb:
                continue
            # Reservoir sampling: every row ends up kept with the same probability.
            slot = len(kept) if len(kept) < sample else rng.randrange(rows)
            if slot < sample:
                vector = [float(row[i]) for i in emb]
                if slot == len(kept):
                    kept.append(vector)
                else:
                    kept[slot] = vector
    total = sum(counts.values())
    shares = {name: round(n / total, 4) for name, n in counts.items()} if total else {}
    embeddings = np.asarray(kept, dtype=np.float64) if kept else None
    threshold = novelty_threshold(embeddings, quantile) if embeddings is not None else None
    return Reference(shares, embeddings, threshold, rows)


__all__ = ["Reference", "load_reference", "nearest_distances", "novelty_threshold"]
