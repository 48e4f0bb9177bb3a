"""INT8 exports, calibrated on the version's own training images.

Two ways to INT8 on a CPU, both selectable at package time (``make package RUNTIME=onnx-int8``):

| runtime | file in the ``.mar`` | made by |
|---|---|---|
| ``onnx-int8`` | ``yolo_int8.onnx`` | ONNX Runtime ``quantize_static`` (QDQ), float ONNX |
| ``openvino-int8`` | ``yolo_int8_openvino_model/`` | Ultralytics' OpenVINO export through NNCF |

``onnx-int8`` is calibrated on images letterboxed exactly as the handler letterboxes a request
(Ultralytics ``LetterBox`` to the minimum stride rectangle of the serving size, BGR to RGB, CHW,
float32 / 255), so the activation ranges it measures are the ones it will see. Only convolutions
are quantized (weights per channel, int8; activations uint8), and not every one of them: the
head's last convolutions (``cv2.*.2``, ``cv3.*.2``: box distances and class logits) and its
decoding (DFL, Concat, Sigmoid, the box arithmetic) stay in float, because a single int8 scale
over box pixels and class scores in one tensor rounds the scores away, and those layers are a
small share of the time. ``openvino-int8`` is what Ultralytics exports (NNCF's mixed preset with
the head in its ignored scope), calibrated on the same images through a data YAML listing them;
its loader letterboxes to the square serving size, not to the request's rectangle.

Neither keeps box parity with the ``.pt``: the packager gates them on accuracy instead
(``yoloserve.modelserver.accuracy``).

Example:
    >>> calibration = sorted(Path("data/shapes/images/train").glob("*.jpg"))[:200]
    >>> quantize_onnx(Path("yolo.onnx"), Path("q.onnx"), calibration, imgsz=320)  # doctest: +SKIP
    PosixPath('q.onnx')
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yoloserve.modelserver import MODEL_NAME
from yoloserve.offline import configure_offline

ONNX_INT8_FILE = f"{MODEL_NAME}_int8.onnx"
# Where quantization costs accuracy and saves little time: the head's last convolutions and DFL.
FLOAT_NODES = (r".*\.2/Conv$", r".*/dfl/")
STRIDE = 32


def letterboxed(image: Path, imgsz: int, stride: int = STRIDE) -> np.ndarray:
    """``image`` as the handler feeds it to the model: (1, 3, h, w) float32 RGB in [0, 1].

    Raises:
        ValueError: the file is not an image OpenCV can read.
    """
    import cv2
    from ultralytics.data.augment import LetterBox

    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read {image} as an image")
    boxed: Any = LetterBox(new_shape=(imgsz, imgsz), auto=True, stride=stride)(image=bgr)
    chw = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))
    return (chw.astype(np.float32) / 255.0)[None]


class _Calibration:
    """ONNX Runtime's ``CalibrationDataReader`` over letterboxed images, one per call."""

    def __init__(self, images: Sequence[Path], imgsz: int, input_name: str) -> None:
        self.images, self.imgsz, self.input_name = list(images), imgsz, input_name
        self._it: Iterator[Path] = iter(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._it, None)
        return None if image is None else {self.input_name: letterboxed(image, self.imgsz)}

    def rewind(self) -> None:
        self._it = iter(self.images)


def float_nodes(model: Any, patterns: Sequence[str] = FLOAT_NODES) -> list[str]:
    """Nodes of an ONNX graph left in float: all but convolutions, and the convolutions that
    ``patterns`` name."""
    return [n.name for n in model.graph.node
            if n.op_type != "Conv" or any(re.match(p, n.name) for p in patterns)]


def quantize_onnx(
    source: Path, target: Path, calibration: Sequence[Path], *, imgsz: int,
    keep_float: Sequence[str] = FLOAT_NODES,
) -> Path:
    """Statically quantize the float ONNX export ``source`` into ``target`` (QDQ, int8 weights
    per channel, uint8 activations calibrated on ``calibration``).

    Args:
        source: the float ONNX export (dynamic shapes stay dynamic).
        target: where the INT8 model is written.
        calibration: image files, letterboxed as the handler does (:func:`letterboxed`).
        imgsz: the serving size.
        keep_float: patterns of convolution names left in float (see :data:`FLOAT_NODES`).

    Raises:
        ValueError: no calibration images.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calibration:
        raise ValueError("INT8 quantization needs calibration images")
    model = onnx.load(str(source))
    reader = _Calibration(calibration, imgsz, model.graph.input[0].name)
    exclude = float_nodes(model, keep_float)
    del model
    quantize_static(
        str(source), str(target), reader,  # type: ignore[arg-type]  # duck-typed reader
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
    )
    return target


def calibration_yaml(images: Sequence[Path], folder: Path, classes: Sequence[str]) -> Path:
    """A data YAML whose ``val`` split lists copies of ``images`` (what Ultralytics' INT8 export
    reads).

    Copies, unlabelled (calibration needs none): Ultralytics writes a label cache beside the
    labels of what it reads, and the training set's own cache is no packager's to rewrite.
    """
    copies = folder / "images"
    copies.mkdir(parents=True, exist_ok=True)
    listing = folder / "calibration.txt"
    paths = []
    for i, image in enumerate(images):
        copy = copies / f"{i:05d}{Path(image).suffix}"
        shutil.copyfile(image, copy)
        paths.append(copy.resolve())
    listing.write_text("".join(f"{p}\n" for p in paths))
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(classes))
    data_yaml = folder / "calibration.yaml"
    data_yaml.write_text(f"path: {folder.resolve()}\ntrain: {listing.name}\nval: {listing.name}\n"
                         f"names:\n{names}")
    return data_yaml


def export_openvino_int8(
    weights: Path, workdir: Path, calibration: Sequence[Path], *, imgsz: int, dynamic: bool = True
) -> Path:
    """Ultralytics' OpenVINO INT8 export of ``weights`` (NNCF), calibrated on ``calibration``.

    Returns:
        The ``yolo_int8_openvino_model/`` folder in ``workdir``.

    Raises:
        ValueError: no calibration images.
        Exception: whatever the exporter or NNCF raises.
    """
    configure_offline()
    from ultralytics import YOLO

    if not calibration:
        raise ValueError("INT8 quantization needs calibration images")
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"{MODEL_NAME}.pt"
    shutil.copyfile(weights, source)
    model: Any = YOLO(str(source))
    names = [model.names[i] for i in sorted(model.names)]
    data = calibration_yaml(calibration, workdir / "calibration", names)
    try:
        out = model.export(format="openvino", quantize=8, data=str(data), fraction=1.0,
                           imgsz=imgsz, dynamic=dynamic, batch=1, device="cpu", verbose=False)
    finally:
        source.unlink(missing_ok=True)
    return Path(out)
