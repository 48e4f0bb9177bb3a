"""Schemathesis hooks for ``test_openapi_contract``: real images and labels in positive cases.

The gateway's document says what it accepts: a non-empty file part of type JPEG, PNG, WebP or
BMP (``encoding.contentType``) and non-empty JSON ``labels``. A generator still cannot draw a
decodable photo or boxes of the served classes from that, so:

- each image media type gets a strategy of real files (schemathesis' ``media_type`` registry):
  positive cases upload real photos and scenes, negative ones keep what schemathesis makes;
- ``labels`` has a named string format (``LABELS_FORMAT``), given a strategy of valid documents;
- ``filter_failure`` drops two false alarms where the request as sent contradicts the mode it was
  generated in: a query invalid as generated but valid as sent (the invalid part does not survive
  serialisation, e.g. schemathesis issues #4600 and #4762), and a "valid" form whose required
  part went out empty (the coverage phase draws ``""`` for a string with ``minLength: 1`` and a
  named format). Each is judged against the operation's declared schema; any other failure
  stands.

Loaded by the CLI through ``SCHEMATHESIS_HOOKS``.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData

from gateway.routes.feedback import LABELS_FORMAT
from yoloserve import paths

SAMPLES = paths.ROOT / "data" / "samples"
PICTURES = [Image.open(SAMPLES / name).convert("RGB")
            for name in ("shapes_1.jpg", "photo_1.jpg", "shapes_4.jpg")]


def _encoded(image_format: str) -> list[bytes]:
    out = []
    for picture in PICTURES:
        buffer = io.BytesIO()
        picture.save(buffer, format=image_format)
        out.append(buffer.getvalue())
    return out


for _media_type, _format in (("image/jpeg", "JPEG"), ("image/png", "PNG"),
                             ("image/webp", "WEBP"), ("image/bmp", "BMP")):
    schemathesis.openapi.media_type(_media_type, st.sampled_from(_encoded(_format)))

# ``labels`` is a string of the named format the gateway documents: its JSON document.
_DOCUMENTS: tuple[dict[str, Any], ...] = (
    {"boxes": []},
    {"boxes": [{"xyxy": [4.0, 4.0, 44.0, 40.0], "name": "circle"}]},
    {"request_id": "schemathesis", "boxes": [{"xyxy": [10, 10, 60, 70], "name": "square"},
                                             {"xyxy": [70, 5, 120, 50], "name": "triangle"}]},
)
LABELS = [json.dumps(document) for document in _DOCUMENTS]
schemathesis.openapi.format(LABELS_FORMAT, st.sampled_from(LABELS))


def _operation(case: Any) -> dict[str, Any]:
    operation = case.operation
    return dict(operation.schema.raw_schema["paths"][operation.path][operation.method.lower()])


def _as_json(text: str) -> Any:
    """A query string value as the JSON value it stands for (``0.5``, ``true``, else the text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _valid_as_sent(case: Any, url: str) -> bool:
    """Whether the query actually sent satisfies the operation's declared query parameters."""
    declared = _operation(case).get("parameters", [])
    params = {p["name"]: p for p in declared if p.get("in") == "query"}
    sent = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    if any(name not in params for name, _ in sent):
        return False
    names = {name for name, _ in sent}
    if any(p.get("required") and name not in names for name, p in params.items()):
        return False
    for name, text in sent:
        validator = jsonschema.Draft202012Validator(params[name].get("schema", {}))
        if not (validator.is_valid(_as_json(text)) or validator.is_valid(text)):
            return False
    return True


def _body_schema(case: Any) -> dict[str, Any]:
    raw = case.operation.schema.raw_schema
    schema = next(iter(_operation(case)["requestBody"]["content"].values()))["schema"]
    if "$ref" in schema:  # "#/components/schemas/Body_..."
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return dict(schema)


def _form_valid_as_sent(case: Any) -> bool:
    """Whether a multipart body, as its parts go on the wire, satisfies the declared lengths (an
    empty part is no value at all once sent)."""
    if not isinstance(case.body, dict):
        return True
    properties = _body_schema(case).get("properties", {})
    for name, value in case.body.items():
        sent = getattr(value, "data", value)  # schemathesis' Binary carries bytes in .data
        if isinstance(sent, str | bytes) and len(sent) < properties.get(name, {}).get(
                "minLength", 0):
            return False
    return True


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep a failure unless the request as sent contradicts how it was generated."""
    if isinstance(failure, AcceptedNegativeData):
        meta = case.meta
        only_query = meta is not None and meta.is_negative_at(ParameterLocation.QUERY) and not any(
            meta.is_negative_at(where) for where in ParameterLocation
            if where is not ParameterLocation.QUERY)
        return not (only_query and _valid_as_sent(case, str(response.request.url)))
    if isinstance(failure, RejectedPositiveData):
        return _form_valid_as_sent(case)
    return True
