"""The embeddings benchmark: how long ``Embedder.embed`` takes per box on this machine's CPU.

It needs no stack (no TorchServe, no gateway), so it is its own command rather than a section
of ``python -m benchmarks``. It prints milliseconds per box for three call patterns: one box per
call (the worst case), one call per image (what the gateway does) and large batches (building
the reference data), plus the image decode that precedes them. Best of --repeat runs, so other
load on a shared machine inflates the figures less.

    python -m benchmarks.embeddings --help
    python -m benchmarks.embeddings --images 40 --repeat 3
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from yoloserve.embeddings.embedder import DEFAULT_PATH, Embedder
from yoloserve.images import decode_array
from yoloserve.training.dataset import iter_images

app = typer.Typer(add_completion=False, help=__doc__)


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@app.command()
def main(
    images: Annotated[int, typer.Option(help="Synthetic images to embed (seeded).")] = 40,
    background: Annotated[str, typer.Option(help="synthetic | photo.")] = "synthetic",
    repeat: Annotated[int, typer.Option(help="Runs per pattern; the best one is reported.")] = 3,
    embedder_path: Annotated[Path, typer.Option("--embedder", help="Embedder artifact.")] = (
        DEFAULT_PATH
    ),
) -> None:
    """Print ms/box for single-box calls, per-image calls and one large batch."""
    embedder = Embedder.load(embedder_path)
    scenes, encoded = [], []
    for img, shapes in iter_images(images, seed=123, background=background):  # type: ignore[arg-type]
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=92)
        encoded.append(buf.getvalue())
        scenes.append((np.asarray(img), [s.xyxy for s in shapes]))
    n_boxes = sum(len(b) for _, b in scenes)
    big_image = scenes[0][0]
    batch = [box for _, boxes in scenes for box in boxes]

    def single() -> None:
        for image, boxes in scenes:
            for box in boxes:
                embedder.embed(image, [box])

    def per_image() -> None:
        for image, boxes in scenes:
            embedder.embed(image, boxes)

    def batched() -> None:  # every box against one image: the cost of describe() alone
        embedder.embed(big_image, batch)

    def decode() -> None:
        for data in encoded:
            decode_array(data)

    typer.echo(f"embedder {embedder.version} dim={embedder.dim}; {len(scenes)} {background} "
               f"images, {n_boxes} boxes, best of {repeat}")
    for name, fn, per in (("one box per call", single, n_boxes),
                          ("one call per image", per_image, n_boxes),
                          ("one batch", batched, n_boxes),
                          ("decode_array (per image)", decode, len(scenes))):
        unit = "image" if per == len(scenes) and fn is decode else "box"
        typer.echo(f"{name:26s} {best_of(repeat, fn) / per * 1000:8.3f} ms/{unit}")


if __name__ == "__main__":
    app()
