"""Derive JSON schemas of KServe's custom resources from the ``kserve`` SDK's model classes.

Two schemas, committed next to this file, which the tests validate the prod overlay against:

- ``inferenceservice-v1beta1.schema.json``: ``serving.kserve.io/v1beta1`` InferenceService;
- ``servingruntime-v1alpha1.schema.json``: ``serving.kserve.io/v1alpha1`` ServingRuntime (our
  ``yoloserve-torchserve`` runtime).

Only the SDK's generated model classes are read, never its model server: the packages are
imported without running ``kserve/__init__.py`` and ``kubernetes/__init__.py`` (which pull in
FastAPI, gRPC, numpy, OAuth...), so the two wheels without their dependencies and ``six`` are
enough (~130 MB, nearly all of it the ``kubernetes`` client; the SDK with its dependencies is
~430 MB)::

    pip install --no-deps --target /tmp/kserve-sdk "kserve==0.21.*" "kubernetes==37.0.1" six
    PYTHONPATH=/tmp/kserve-sdk python deploy/kubernetes/schema/generate.py

Each OpenAPI-generated model class (KServe's and the ``kubernetes`` client's it refers to) has
``openapi_types`` (attribute -> type) and ``attribute_map`` (attribute -> JSON key); each becomes
a ``$defs`` entry with exactly those properties (``additionalProperties: false``: an unknown or
misspelt field fails, as the SDK's deserializer would drop it silently); the root's ``status`` is
left out (the controller writes it, a manifest must not). A setter that raises on
``None`` makes its field required; a setter with ``allowed_values`` makes it an enum.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
import types
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Target:
    """One custom resource: its root model class, its apiVersion and kind, the file written."""

    root_class: str
    api_version: str
    kind: str
    out: Path


TARGETS = (
    Target(
        "V1beta1InferenceService",
        "serving.kserve.io/v1beta1",
        "InferenceService",
        HERE / "inferenceservice-v1beta1.schema.json",
    ),
    Target(
        "V1alpha1ServingRuntime",
        "serving.kserve.io/v1alpha1",
        "ServingRuntime",
        HERE / "servingruntime-v1alpha1.schema.json",
    ),
)
ROOT_CLASSES = {target.root_class for target in TARGETS}
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
    # ServingRuntimeSpec.workerSpec names it, but the 0.21 SDK generates no such class: any object
    # (our runtime sets no workerSpec).
    "V1alpha1WorkerSpec": {"type": "object"},
}
# Names the SDK's models use for classes the kubernetes client calls otherwise.
ALIASES = {
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": "V2HorizontalPodAutoscalerBehavior",
}


def _import_models() -> tuple[types.ModuleType, types.ModuleType]:
    """``kserve.models`` and ``kubernetes.client.models``, their parents' ``__init__`` skipped.

    Each parent becomes an empty package over its real folder, so only the model modules (and
    what they import: ``six``, the client's ``Configuration``) are loaded.
    """
    for package in ("kserve", "kubernetes", "kubernetes.client"):
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.submodule_search_locations is None:
                raise LookupError(f"{package} is not importable: see this module's docstring")
            module = types.ModuleType(package)
            module.__path__ = list(spec.submodule_search_locations)
            sys.modules[package] = module
    return (
        importlib.import_module("kserve.models"),
        importlib.import_module("kubernetes.client.models"),
    )


def _model_class(name: str) -> type:
    name = ALIASES.get(name, name)
    for module in _import_models():
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
        if cls.__name__ in ROOT_CLASSES and attribute == "status":
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


def build(target: Target) -> dict[str, Any]:
    """One resource's schema: its root class and every class it reaches, in ``$defs``."""
    defs: dict[str, Any] = {}
    pending = [target.root_class]
    while pending:
        name = pending.pop()
        if name not in defs:
            defs[name] = _class_schema(_model_class(name), pending)
    top = defs[target.root_class]
    top["properties"]["apiVersion"]["const"] = target.api_version
    top["properties"]["kind"]["const"] = target.kind
    top["required"] = ["apiVersion", "kind", "metadata", "spec"]
    root = {"$ref": f"#/$defs/{target.root_class}"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{target.api_version} {target.kind}",
        "description": "Derived by deploy/kubernetes/schema/generate.py from the kserve SDK models",
        "x-kserve-sdk-version": version("kserve"),
        "x-kubernetes-client-version": version("kubernetes"),
        **root,
        "$defs": dict(sorted(defs.items())),
    }


if __name__ == "__main__":
    for target in TARGETS:
        schema = build(target)
        target.out.write_text(
            json.dumps(schema, indent=1, sort_keys=False) + "\n", encoding="utf-8"
        )
        print(
            f"{target.out}: {len(schema['$defs'])} classes, kserve {schema['x-kserve-sdk-version']}"
        )
