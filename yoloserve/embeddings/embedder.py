"""The fitted embedder artifact: image bytes and boxes in, fixed-length vectors out.

One code path for reference and production rows: ``scripts/build_ref_data.py`` and the gateway's
feedback recorder both call ``yoloserve.images.decode_array`` and ``Embedder.embed``. An
embedding is the crop descriptor (``yoloserve.embeddings.descriptor``) standardised and projected
by PCA down to ``dim`` numbers. The projection is stored as numpy arrays in
``models/embedder/embedder.npz`` with ``embedder.json`` beside it (version, dim, descriptor
parameters, what it was fitted on); ``yoloserve.embeddings.fit`` fits it, and only fitting needs
scikit-learn.

The projection is an elementwise product and row sum, not a matrix product, so a box gets
bit-identical numbers whether it is embedded alone or in a batch, by the reference builder or
the gateway.

Example:
    >>> from yoloserve.embeddings.embedder import Embedder
    >>> from yoloserve.images import decode_array
    >>> embedder = Embedder.load()
    >>> image = decode_array(open("data/shapes/images/train/train_00000.jpg", "rb").read())
    >>> embedder.embed(image, [[10, 20, 90, 120]]).shape
    (1, 24)
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from yoloserve import paths
from yoloserve.embeddings.descriptor import (
    DESCRIPTOR_NAME,
    DESCRIPTOR_VERSION,
    DescriptorParams,
    describe,
)
from yoloserve.files import atomic_write

DEFAULT_PATH = paths.EMBEDDER_DIR / "embedder.npz"
_ARRAYS = ("mean", "scale", "components", "pca_mean")


def _digest(arrays: dict[str, np.ndarray], params: DescriptorParams) -> str:
    h = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode())
    for name in _ARRAYS:
        h.update(np.ascontiguousarray(arrays[name], dtype="<f8").tobytes())
    return h.hexdigest()


class Embedder:
    """Turns (image, boxes) into fixed-length vectors with a fitted, versioned projection.

    Attributes:
        dim: embedding length (columns ``emb_0..emb_{dim-1}``).
        version: ``cropdesc-v<descriptor>-<hash>``; the hash covers parameters and arrays, so two
            artifacts with the same version embed identically.
        params: descriptor parameters the projection was fitted with.
        meta: the artifact's JSON (fitted_on, explained variance, created_at, ...).
    """

    def __init__(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        components: np.ndarray,
        pca_mean: np.ndarray,
        params: DescriptorParams,
        meta: dict[str, Any] | None = None,
    ) -> None:
        params.validate()
        f = params.n_features
        arrays = {"mean": mean, "scale": scale, "components": components, "pca_mean": pca_mean}
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        if any(arrays[k].shape != (f,) for k in ("mean", "scale", "pca_mean")):
            raise ValueError(f"mean/scale/pca_mean must have shape ({f},)")
        if arrays["components"].ndim != 2 or arrays["components"].shape[1] != f:
            raise ValueError(f"components must have shape (dim, {f})")
        if not all(np.isfinite(a).all() for a in arrays.values()) or (arrays["scale"] <= 0).any():
            raise ValueError("embedder arrays must be finite with a positive scale")
        self._arrays = arrays
        self.params = params
        self.dim: int = int(arrays["components"].shape[0])
        digest = _digest(arrays, params)[:10]
        self.version: str = f"{DESCRIPTOR_NAME}-v{DESCRIPTOR_VERSION}-{digest}"
        self.meta: dict[str, Any] = dict(meta or {})

    def embed(
        self, image: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray
    ) -> np.ndarray:
        """Embed boxes of one image.

        Args:
            image: HxWx3 uint8 RGB (see ``yoloserve.images.decode_array``).
            boxes: xyxy in pixels of that image; clipped to it.

        Returns:
            (n, dim) float32, one row per box, in the order given.

        Raises:
            ValueError: malformed image or boxes.
        """
        z = (describe(image, boxes, self.params) - self._arrays["mean"]) / self._arrays["scale"]
        centred = z - self._arrays["pca_mean"]
        # Elementwise product + row sum instead of a BLAS matmul: BLAS may pick another kernel
        # for another batch size, and the same box must give the same bits alone or in a batch.
        proj = (centred[:, None, :] * self._arrays["components"][None, :, :]).sum(axis=2)
        return proj.astype(np.float32)

    @classmethod
    def load(cls, path: Path | None = None) -> Embedder:
        """Load an artifact written by ``save`` (default ``models/embedder/embedder.npz``).

        Raises:
            FileNotFoundError: the ``.npz`` or its ``.json`` is missing.
            ValueError: the artifact is of another descriptor version, or npz and json
                do not belong together.
        """
        path = Path(path) if path is not None else DEFAULT_PATH
        meta = json.loads(path.with_suffix(".json").read_text())
        kind = (meta.get("name"), meta.get("descriptor_version"))
        if kind != (DESCRIPTOR_NAME, DESCRIPTOR_VERSION):
            raise ValueError(
                f"{path}: descriptor {meta.get('name')} v{meta.get('descriptor_version')}, this "
                f"code computes {DESCRIPTOR_NAME} v{DESCRIPTOR_VERSION}; refit the embedder"
            )
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in _ARRAYS}
        embedder = cls(**arrays, params=DescriptorParams(**meta["params"]), meta=meta)
        if embedder.version != meta.get("version") or embedder.dim != meta.get("dim"):
            raise ValueError(f"{path} does not match its JSON (version {meta.get('version')})")
        return embedder

    def save(self, path: Path | None = None) -> Path:
        """Write ``<path>.npz`` and ``<path>.json`` atomically; returns the npz path."""
        path = Path(path) if path is not None else DEFAULT_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            **self.meta,
            "name": DESCRIPTOR_NAME,
            "descriptor_version": DESCRIPTOR_VERSION,
            "version": self.version,
            "dim": self.dim,
            "n_features": self.params.n_features,
            "params": asdict(self.params),
        }
        buf = io.BytesIO()
        a = self._arrays
        np.savez(buf, mean=a["mean"], scale=a["scale"], components=a["components"],
                 pca_mean=a["pca_mean"])
        atomic_write(path, buf.getvalue())
        atomic_write(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        self.meta = meta
        return path
