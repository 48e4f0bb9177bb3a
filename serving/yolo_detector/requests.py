"""One request of a TorchServe batch: where its image is, and its thresholds.

TorchServe hands the handler raw bytes for a binary body or a file part, a ``str`` for a text
part and an already parsed ``dict`` for an ``application/json`` body; a JSON body sent with another
content type arrives as bytes starting with ``{`` (no image format starts so).

Example:
    >>> image, sources = split_request({"data": b"\\xff\\xd8...", "conf": b"0.4"})
    >>> parse_params(sources, Params(0.25, 0.7, 300))
    Params(conf=0.4, iou=0.7, max_det=300)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DET_LIMIT = 1000  # the public contract caps max_det at 1000
# Request headers that carry a request's thresholds (lower-case: HTTP names are case-blind).
PARAM_HEADERS = {"x-yolo-conf": "conf", "x-yolo-iou": "iou", "x-yolo-max-det": "max_det"}


class RequestError(Exception):
    """A problem with one request of a batch; it fails that request only.

    Attributes:
        status: the HTTP status TorchServe answers that request with (400, 413, 415).
        code: the machine-readable error code of the public contract.
        message: what the client is told.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Params:
    """Detection thresholds of one request."""

    conf: float
    iou: float
    max_det: int


def _shown(value: Any) -> str:
    # Multipart text parts arrive as bytes: show what the client typed, not bytearray(b'...').
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:40]).decode("utf-8", errors="replace")
    return repr(value)


def _number(value: Any, message: str) -> float:
    if isinstance(value, bool):  # JSON true is an int to Python, never a threshold
        raise RequestError(400, "invalid_parameter", message)
    if isinstance(value, int | float):
        return float(value)
    try:
        text = bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value)
        return float(text.strip())
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "invalid_parameter", f"{message}, got {_shown(value)}") from None


def _unit_interval(name: str, value: Any) -> float:
    message = f"{name} must be a number in [0, 1]"
    number = _number(value, message)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise RequestError(400, "invalid_parameter", f"{message}, got {_shown(value)}")
    return number


def _max_det(value: Any) -> int:
    message = f"max_det must be an integer in [1, {MAX_DET_LIMIT}]"
    number = _number(value, message)
    if not (math.isfinite(number) and number.is_integer() and 1 <= number <= MAX_DET_LIMIT):
        raise RequestError(400, "invalid_parameter", f"{message}, got {_shown(value)}")
    return int(number)


def parse_params(sources: list[Mapping[str, Any]], defaults: Params) -> Params:
    """Merge ``conf``/``iou``/``max_det`` from ``sources`` (later wins) over ``defaults``.

    Raises:
        RequestError: 400 when a value is not a number in its range.
    """
    conf, iou, max_det = defaults.conf, defaults.iou, defaults.max_det
    for source in sources:
        if source.get("conf") is not None:
            conf = _unit_interval("conf", source["conf"])
        if source.get("iou") is not None:
            iou = _unit_interval("iou", source["iou"])
        if source.get("max_det") is not None:
            max_det = _max_det(source["max_det"])
    return Params(conf=conf, iou=iou, max_det=max_det)


def header_params(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The thresholds a request sent as ``X-Yolo-*`` headers (the gateway sends them so)."""
    return {
        PARAM_HEADERS[name.lower()]: value
        for name, value in headers.items()
        if isinstance(name, str) and name.lower() in PARAM_HEADERS
    }


def _b64decode(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL, as browsers produce them
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(415, "invalid_image", "image is not valid base64") from None


def split_request(item: Mapping[str, Any]) -> tuple[bytes, list[Mapping[str, Any]]]:
    """Find the image bytes of one request and the mappings its parameters may come from.

    Args:
        item: one request of the batch, parts by name (``data``, ``conf``, ...) or ``body``.

    Returns:
        The image bytes, and the parameter sources in increasing priority.

    Raises:
        RequestError: 400 when no image is present or the JSON is malformed, 415 when the JSON
            body's image is not base64.
    """
    payload = item.get("data")
    if payload is None:
        payload = item.get("body")
    if isinstance(payload, str):
        payload = payload.encode() if payload.lstrip().startswith("{") else _b64decode(payload)
    if isinstance(payload, bytes | bytearray) and bytes(payload[:1]) == b"{":
        try:
            payload = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = "the body starts with '{' but is not JSON"
            raise RequestError(400, "invalid_request", message) from None
    if isinstance(payload, dict):
        image = payload.get("image")
        if not isinstance(image, str) or not image:
            raise RequestError(400, "missing_image", "JSON body needs 'image': a base64 string")
        return _b64decode(image), [payload, item]
    if isinstance(payload, bytes | bytearray) and payload:
        return bytes(payload), [item]
    raise RequestError(400, "missing_image", "no image in the request (part 'data' or the body)")
