"""Derive a JSON schema of KServe's v1beta1 InferenceService from the ``kserve`` SDK's models.

The SDK with its dependencies is ~430 MB (measured: ``pip install --target DIR "kserve==0.21.*"``),
too heavy for the test environment, so the tests validate against this file's output instead:
``inferenceservice-v1beta1.schema.json``, committed next to it. Regenerate it where the SDK is
importable, for example::

    pip install --target /tmp/kserve-sdk "kserve==0.21.*"
    PYTHONPATH=/tmp/kserve-sdk python deploy/kubernetes/schema/generate.py

Each OpenAPI-generated model class (KServe's and the ``kubernetes`` client's it refers to) has
``openapi_types`` (attribute -> type) and ``attribute_map`` (attribute -> JSON key); each becomes
a ``$defs`` entry with exactly those properties (``additionalProperties: false``: an unknown or
misspelt field fails, as the SDK's deserializer would drop it silently); the root's ``status`` is
left out (the controller writes it, a manifest must not). A setter that raises on
``None`` makes its field required; a setter with ``allowed_values`` makes it an enum.
"""

from __future__ import annotations

import inspect
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("inferenceservice-v1beta1.schema.json")
ROOT_CLASS = "V1beta1InferenceService"
PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "object": {},
    "datetime": {"type": "string"},
    "date": {"type": "string"},
    # The Kubernetes Quantity ("500m", "2Gi", 1): a string or a number in a manifest.
    "ResourceQuantity": {"type": ["string", "number"]},
    "V1beta1MetricQuantity": {"type": ["string", "number"]},
    "V1Time": {"type": "string"},
}
# Names the SDK's models use for classes the kubernetes client calls otherwise.
ALIASES = {
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": "V2HorizontalPodAutoscalerBehavior",
}


def _model_class(name: str) -> type:
    import importlib

    import kserve.models
    import kubernetes.client.models

    name = ALIASES.get(name, name)
    for module in (kserve.models, kubernetes.client.models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    # A few (the Knative status types) are generated but not exported by kserve.models.
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    try:
        return getattr(importlib.import_module(f"kserve.models.{snake}"), name)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"no model class {name}") from exc


def _type_schema(type_name: str, pending: list[str]) -> dict[str, Any]:
    if type_name in PRIMITIVES:
        return dict(PRIMITIVES[type_name])
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        return {"type": "array", "items": _type_schema(match.group(1), pending)}
    if match := re.fullmatch(r"[dD]ict[(\[]str, (.+)[)\]]", type_name):
        return {"type": "object", "additionalProperties": _type_schema(match.group(1), pending)}
    pending.append(type_name)
    return {"$ref": f"#/$defs/{type_name}"}


def _setter_rules(cls: type, attribute: str) -> tuple[bool, list[str] | None]:
    prop = getattr(cls, attribute, None)
    if not isinstance(prop, property) or prop.fset is None:
        return False, None
    source = inspect.getsource(prop.fset)
    required = "must not be `None`" in source
    allowed = re.search(r"allowed_values = (\[[^\]]*\])", source)
    return required, (json.loads(allowed.group(1).replace("'", '"')) if allowed else None)


def _class_schema(cls: type, pending: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for attribute, type_name in cls.openapi_types.items():  # type: ignore[attr-defined]
        if cls.__name__ == ROOT_CLASS and attribute == "status":
            continue  # written by the controller, never by a manifest
        key = cls.attribute_map[attribute]  # type: ignore[attr-defined]
        schema = _type_schema(type_name, pending)
        is_required, allowed = _setter_rules(cls, attribute)
        if allowed is not None:
            schema["enum"] = allowed
        properties[key] = schema
        if is_required:
            required.append(key)
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = sorted(required)
    return out


def build() -> dict[str, Any]:
    """The whole schema: the root class and every class it reaches, in ``$defs``."""
    defs: dict[str, Any] = {}
    pending = [ROOT_CLASS]
    while pending:
        name = pending.pop()
        if name not in defs:
            defs[name] = _class_schema(_model_class(name), pending)
    top = defs[ROOT_CLASS]
    top["properties"]["apiVersion"]["const"] = "serving.kserve.io/v1beta1"
    top["properties"]["kind"]["const"] = "InferenceService"
    top["required"] = ["apiVersion", "kind", "metadata", "spec"]
    root = {"$ref": f"#/$defs/{ROOT_CLASS}"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "serving.kserve.io/v1beta1 InferenceService",
        "description": "Derived by deploy/kubernetes/schema/generate.py from the kserve SDK models",
        "x-kserve-sdk-version": version("kserve"),
        "x-kubernetes-client-version": version("kubernetes"),
        **root,
        "$defs": dict(sorted(defs.items())),
    }


if __name__ == "__main__":
    schema = build()
    OUT.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(schema['$defs'])} classes, kserve {schema['x-kserve-sdk-version']}")
